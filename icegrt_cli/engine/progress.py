"""Training progress for people: a rich bar on a terminal, plain lines everywhere else.

Under `| tee`, nohup or a SLURM log a live bar prints nothing until the end, so without a
terminal a line (step, figures, rate, time left) is printed at each tenth of the run and at
least every `PLAIN_EVERY_S` seconds.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY_S = 30.0


class StepProgress(AbstractContextManager):
    """Steps done / total, elapsed and remaining time, and a line of current metrics."""

    def __init__(
        self, console: Console, title: str, total: int, start: int = 0, enabled: bool = True
    ) -> None:
        self.plain = enabled and not console.is_terminal
        enabled = enabled and not self.plain
        self.enabled = enabled
        self._console, self._title, self._total = console, title, total
        self._start = self._done = start
        self._started = self._last_line = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[figures]}"),
            console=console,
            disable=not enabled,
        )
        self._task = self._progress.add_task(title, total=total, completed=start, figures="")

    def __enter__(self) -> StepProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def advance(self, figures: dict[str, float] | None = None) -> None:
        text = "  ".join(f"{k} {_fmt(v)}" for k, v in (figures or {}).items())
        self._done += 1
        if self.plain:
            self._plain_line(text)
        if figures is None:
            self._progress.update(self._task, advance=1)
        else:
            self._progress.update(self._task, advance=1, figures=text)

    def _plain_line(self, figures: str) -> None:
        now = time.monotonic()
        tenth = max(1, self._total // 10)
        due = (
            self._done == self._total
            or self._done % tenth == 0
            or now - self._last_line >= PLAIN_EVERY_S
        )
        if not due:
            return
        self._last_line = now
        rate = (self._done - self._start) / max(now - self._started, 1e-9)
        left = (self._total - self._done) / rate if rate > 0 else 0.0
        self._console.print(
            f"{self._title} step {self._done}/{self._total}  {figures}  {rate:.3g} steps/s  "
            f"{_duration(left)} left",
            highlight=False,
            soft_wrap=True,
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value != 0 and abs(value) < 1e-2:
        return f"{value:.2e}"
    return f"{value:.4g}"
