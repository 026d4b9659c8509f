"""Folders written all at once: a reader sees the old complete folder or the new one."""

from __future__ import annotations

import shutil
import uuid
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


@contextmanager
def writing_file(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` only when the block
    succeeds, so a reader (or a run killed mid-write) sees the old file or the new. Each write
    has its own temporary file: writers racing on one path (every process of a launched run)
    never rename each other's away; the last rename wins, whole."""
    with writing(path):
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            yield tmp
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write a text file whole (`writing_file`)."""
    with writing_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_folder(path: Path) -> None:
    """Remove an earlier run's output folder that this run does not write, renamed aside first
    so a reader never sees it half deleted."""
    if not path.exists():
        return
    aside = path.with_name(f".{path.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    path.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)
