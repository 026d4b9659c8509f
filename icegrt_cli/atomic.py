"""Folders written all at once: a reader sees the old complete folder or the new one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from icegrt_cli.errors import writing


@contextmanager
def writing_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final` to write into; swap it in only when the block
    succeeds. A save that fails (disk full, a crash) leaves no half-written folder for a later
    stage to take as finished, and an earlier complete one stays as it was."""
    tmp = final.with_name(f".{final.name}.tmp")
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with writing(final):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():  # a kill between these renames leaves `.NAME.old`, the earlier folder
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
