"""Run the real `icegrt` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Small enough to finish in seconds on 2 cores, large enough to learn something.
TINY_MODEL = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=64",
]
TINY_SFT = [
    *TINY_MODEL,
    "data.sources.0.limit=120",
    "data.sources.1.limit=40",
    "train.max_steps=6",
    "train.batch_size=8",
    "train.eval_every=3",
    "train.save_every=3",
    "run.log_every=1",
    "run.progress=false",
    "sample_prompts=1",
]


def icegrt(
    *args: str,
    cwd: Path,
    check: bool = True,
    timeout: int = 600,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "icegrt_cli.cli", *args],
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"icegrt {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def sweeps(folder: Path) -> list[Path]:
    """The sweeps under `runs/NAME/multirun/<stage>`, oldest first: each has its own dated
    folder, its jobs numbered below it."""
    return sorted(p for p in folder.iterdir() if p.is_dir())


def only_sweep(folder: Path) -> Path:
    (found,) = sweeps(folder)
    return found
