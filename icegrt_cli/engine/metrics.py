"""One logging interface: JSONL always, TensorBoard when asked."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icegrt_cli.atomic import write_text_atomically


class MetricsLogger:
    """Append `{"step": N, "<namespace>/<name>": value, ...}` records to metrics.jsonl.

    On resume, records past the checkpoint's step are dropped first, so a resumed run's file
    reads the same as an uninterrupted one; so is a line a kill cut short (reported by `warn`).
    """

    def __init__(
        self,
        out_dir: Path,
        enabled: bool = True,
        tensorboard: bool = False,
        resume_step: int | None = None,
        warn: Callable[[str], None] = print,
    ) -> None:
        self.path = out_dir / "metrics.jsonl"
        self.enabled = enabled
        self._writer = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            self._truncate_after(resume_step, warn)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def _truncate_after(self, step: int, warn: Callable[[str], None]) -> None:
        if not self.path.exists():
            return
        records, torn = _parse(self.path)
        for number in torn:
            warn(f"{self.path}:{number}: skipped a torn line (a run killed while writing it)")
        kept = [json.dumps(r) for r in records if r.get("step", 0) <= step]
        write_text_atomically(self.path, "".join(line + "\n" for line in kept))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key not in ("step", "time") and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars to plain floats, so every record is valid JSON."""
    if hasattr(value, "item"):
        return value.item()
    return value


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl file, in order (without lines a kill cut short)."""
    return _parse(path)[0]


def _parse(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(the records, the numbers of the lines that are not a JSON object)."""
    records, torn = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                torn.append(number)
    return records, torn
