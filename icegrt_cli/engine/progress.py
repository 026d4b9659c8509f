"""A rich progress bar with live training figures."""

from __future__ import annotations

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


class StepProgress(AbstractContextManager):
    """Steps done / total, elapsed and remaining time, and a line of current metrics."""

    def __init__(
        self, console: Console, title: str, total: int, start: int = 0, enabled: bool = True
    ) -> None:
        self.enabled = enabled
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
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def advance(self, figures: dict[str, float] | None = None) -> None:
        text = "  ".join(f"{k} {_fmt(v)}" for k, v in (figures or {}).items())
        if figures is None:
            self._progress.update(self._task, advance=1)
        else:
            self._progress.update(self._task, advance=1, figures=text)


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value != 0 and abs(value) < 1e-2:
        return f"{value:.2e}"
    return f"{value:.4g}"
