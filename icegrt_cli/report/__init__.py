"""`icegrt report`: final metrics, differing factors and plots for a run or a sweep of runs."""

from icegrt_cli.report.build import Report, make_report

__all__ = ["Report", "make_report"]
