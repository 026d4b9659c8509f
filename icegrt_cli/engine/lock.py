"""One command at a time per run: two commands on the same run.name would interleave their
metrics and mix their checkpoints, so the second one stops in one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from icegrt_cli.engine.engines import is_first_process
from icegrt_cli.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded there
    fcntl = None

LOCK_FILE = ".icegrt.lock"


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold `folder/.icegrt.lock` for the block; raise ConfigError if another process holds it.
    Only the first process of a process group locks (the others run the same command)."""
    if fcntl is None or not is_first_process():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"run folder {folder} is in use by {holder}; wait for it to end "
                "or choose another run.name"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"icegrt (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
