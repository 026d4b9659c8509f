"""`icegrt report PATH`: read the runs under PATH and write report.md with its plots.

Steps: find the runs, name what differs between them, take each run's final figures, then
write the table, the factor list and the PNGs into the output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from icegrt_cli.report.discover import Run, find_runs
from icegrt_cli.report.factors import as_typed, differing_keys, factor_groups, run_labels, settings
from icegrt_cli.report.finals import COLUMNS, final_metrics
from icegrt_cli.report.plots import plot_curves, plot_domain_general, plot_frontier
from icegrt_cli.report.tables import UNFINISHED, markdown_table, table_cells

MARKDOWN = "report.md"


@dataclass(frozen=True)
class Report:
    runs: list[Run]
    factors: dict[str, list[str]]
    """Keys that tell the runs apart, each with the differing keys it determines."""
    headers: list[str]
    rows: list[list[str]]
    """The final-metrics table as text cells (`rich_tables` renders it for a terminal)."""
    markdown: Path
    images: list[Path]


def make_report(path: Path, out: Path | None = None) -> Report:
    """Report on the run or sweep at `path`; files go to `out` (default `path/report`)."""
    # 1. Runs and what differs between them.
    runs = find_runs(path)
    per_run = as_typed(runs, [settings(run) for run in runs])
    factors = factor_groups(per_run, differing_keys(per_run))
    labels = run_labels(per_run, list(factors))

    # 2. Final figures and the table.
    finals = [final_metrics(run) for run in runs]
    headers, rows = table_cells(runs, labels, finals)

    # 3. Plots, and report.md linking them.
    out = out or path / "report"
    out.mkdir(parents=True, exist_ok=True)
    names = [
        f"{run.id}: {label}" if label else run.id for run, label in zip(runs, labels, strict=True)
    ]
    images = [
        image
        for image in (
            plot_curves(runs, names, out / "curves.png"),
            plot_frontier(runs, names, finals, out / "frontier.png"),
            plot_domain_general(runs, names, out / "domain_general.png"),
        )
        if image is not None
    ]
    markdown = out / MARKDOWN
    markdown.write_text(
        document(path, runs, per_run, factors, markdown_table(headers, rows), headers, images),
        encoding="utf-8",
    )
    return Report(runs, factors, headers, rows, markdown, images)


def factor_lines(
    runs: list[Run], per_run: list[dict[str, str]], factors: dict[str, list[str]]
) -> list[str]:
    """One Markdown bullet per factor: each value with the runs that have it."""
    lines = []
    for key, implied in factors.items():
        by_value: dict[str, list[str]] = {}
        for run, found in zip(runs, per_run, strict=True):
            if key in found:
                by_value.setdefault(found[key], []).append(run.id)
        values = " · ".join(f"`{value}` ({', '.join(ids)})" for value, ids in by_value.items())
        also = f"; with it: {', '.join(f'`{k}`' for k in implied)}" if implied else ""
        lines.append(f"- `{key}`: {values}{also}")
    return lines


def document(
    path: Path,
    runs: list[Run],
    per_run: list[dict[str, str]],
    factors: dict[str, list[str]],
    table: str,
    headers: list[str],
    images: list[Path],
) -> str:
    """report.md: what each column holds, the table, the factors, the plots."""
    parts = [
        f"# icegrt report: `{path}`",
        "",
        f"{len(runs)} run(s). Columns (final = last logged value; in brackets: the change "
        "from the run's start):",
        "",
    ]
    parts += [f"- **{column}**: {COLUMNS[column]}" for column in headers[2:]]
    parts += ["", "## Final metrics", "", table]
    if any(not run.finished for run in runs):
        parts += [f"{UNFINISHED} unfinished: a stage has no summary.json yet.", ""]
    parts += ["## Factors that differ between runs", ""]
    if factors:
        parts += [
            "A run's *factors* cell lists where it departs from the value most runs "
            "share (or every value, when no value is shared by most).",
            "",
        ]
        parts += factor_lines(runs, per_run, factors)
    else:
        parts.append("None: the runs share every setting.")
    if images:
        parts += ["", "## Plots", ""]
        parts += [f"![{image.stem}]({image.name})" for image in images]
    return "\n".join(parts) + "\n"
