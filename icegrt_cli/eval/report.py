"""What `icegrt eval` shows and keeps: progress bars, the comparison table, results on disk."""

from __future__ import annotations

import json
import math
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from icegrt_cli.atomic import write_text_atomically
from icegrt_cli.eval.loglik import Progress as ProgressCallback
from icegrt_cli.eval.metrics import LOWER_IS_BETTER
from icegrt_cli.eval.runner import TaskRun
from icegrt_cli.eval.tasks import Task


class BatchBars(AbstractContextManager):
    """One bar per (model, task), counting forward batches; `bar(name)` makes the next one."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.prefix = ""
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )

    def __enter__(self) -> BatchBars:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def bar(self, name: str) -> ProgressCallback:
        task_id = self._progress.add_task(f"{self.prefix}{name}", total=None)

        def update(done: int, total: int) -> None:
            self._progress.update(task_id, completed=done, total=total)

        return update


def _cell(value: float | None, stderr: float | None, base: float | None, metric: str) -> Text:
    if value is None:
        return Text("-", style="dim")
    text = Text(f"{value:.3f}")
    if stderr is not None and math.isfinite(stderr):
        text.append(f" ±{stderr:.3f}", style="dim")
    if base is not None:
        delta = value - base
        better = delta < 0 if metric in LOWER_IS_BETTER else delta > 0
        style = "dim" if abs(delta) < 5e-4 else ("green" if better else "red")
        text.append(f" ({delta:+.3f})", style=style)
    return text


def task_line(task: Task, label: str, outcome: TaskRun, speed: float | None) -> Text:
    """One line per finished (model, task): items and their source, every score with its
    standard error, and the speed."""
    of = f" of {task.total}" if task.total > len(task.items) else ""
    line = Text(f"{label}: {len(task.items)}{of} items from {task.source.origin}")
    for metric in task.metrics:
        if metric in outcome.values:
            line.append(f"  {metric} ")
            line.append_text(_cell(outcome.values[metric], outcome.stderr[metric], None, metric))
    if speed is not None:
        line.append(f"  {speed:.2f} items/s", style="dim")
    return line


def comparison_table(results: dict[str, Any]) -> Table:
    """Rows: task x metric; columns: models; later models show their delta to the first."""
    labels = list(results["models"])
    table = Table(title="icegrt eval", title_justify="left")
    for header in ("task", "metric", "n", "source"):
        table.add_column(header, justify="right" if header == "n" else "left")
    for label in labels:
        table.add_column(label, justify="right")
    for name, task in results["tasks"].items():
        shown = [
            m
            for m in task["metrics"]  # `reward` exists only with a reward model
            if any(m in task["scores"][label]["values"] for label in labels)
        ]
        for row, metric in enumerate(shown):
            base = task["scores"][labels[0]]["values"].get(metric)
            cells = [
                _cell(
                    task["scores"][label]["values"].get(metric),
                    task["scores"][label]["stderr"].get(metric),
                    base if i > 0 else None,
                    metric,
                )
                for i, label in enumerate(labels)
            ]
            shown_name = task.get("label", name)
            first = row == 0
            table.add_row(
                shown_name if first else "",
                metric,
                str(task["n"]) if first else "",
                task.get("source", "") if first else "",
                *cells,
                end_section=row == len(shown) - 1,
            )
    return table


def write_results(out_dir: Path, results: dict[str, Any]) -> Path:
    path = out_dir / "results.json"
    write_text_atomically(path, json.dumps(results, indent=2, ensure_ascii=False))
    return path


def write_predictions(out_dir: Path, label: str, task: str, rows: list[dict[str, Any]]) -> Path:
    path = out_dir / "predictions" / label / f"{task}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
