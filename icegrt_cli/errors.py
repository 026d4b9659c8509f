"""Errors that end a command with one clear line instead of a traceback.

`reporting_errors` is the one place a failure becomes an exit code: icegrt's own errors and the
failures a user can fix (disk full, out of memory) print one `error:` line; anything else is a
bug and keeps its traceback. `run.debug=true` or `ICEGRT_DEBUG=1` shows every traceback.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class IcegrtError(Exception):
    """Base of the errors shown to the user as `error: <message>` with a non-zero exit."""


class ConfigError(IcegrtError):
    """A configuration value is wrong; the message names the key."""


class DataError(IcegrtError):
    """Input data is missing or malformed; the message names the file (and line)."""


class Diverged(IcegrtError):
    """Training produced nan / inf; the stage stops without saving or marking anything done."""


class RunInterrupted(IcegrtError):
    """The user (Ctrl-C) or the scheduler (SIGTERM) stopped a run; the work so far was
    checkpointed. Exits 128 + the signal number, as a shell reports a signalled command."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class FetchError(IcegrtError):
    """Benchmark data could not be downloaded; the message says how to bring it by hand."""


class OutOfResources(IcegrtError):
    """The machine ran out of disk or memory; the message says what was being done."""


OOM_HINT = (
    "lower train.batch_size (raise train.grad_accum to keep the same step), or use peft=lora "
    "or model.gradient_checkpointing=true"
)


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC however it arrives: a Python OSError, or the text of a Rust / C++ writer's error
    (safetensors, torch.save) that wraps it."""
    for item in _chain(err):
        if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(item) for text in ("No space left on device", "StorageFull")):
            return True
    return False


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Name `path` in the one-line error if the disk fills while the block writes it."""
    try:
        yield
    except Exception as err:
        if is_disk_full(err) or _nearly_full(Path(path)):
            raise OutOfResources(f"no space left on device while writing {path}") from err
        raise


def _nearly_full(path: Path) -> bool:
    """Whether the disk holding `path` has under 1 MiB left: torch.save reports a full disk
    only as `unexpected pos`, so a failed write is also judged by the space that is left."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < 2**20
    except OSError:
        return False


def known_error(err: BaseException) -> IcegrtError | None:
    """The one-line error for a failure the user can act on; None for a bug."""
    if isinstance(err, IcegrtError):
        return err
    if is_disk_full(err):
        where = getattr(err, "filename", None)
        return OutOfResources(f"no space left on device while writing {where or 'the run folder'}")
    if _is_out_of_memory(err):
        return OutOfResources(f"out of memory ({_first_line(err)}): {OOM_HINT}")
    if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
        return ConfigError(
            "refused to unpickle a file holding more than tensors (torch.load weights_only); "
            "load only files you trust, saved as safetensors"
        )
    return None


@contextmanager
def reporting_errors(debug: bool = False) -> Iterator[None]:
    """Turn a known failure into `error: <one line>` and its exit code (SystemExit)."""
    try:
        yield
    except Exception as err:
        known = known_error(err)
        if known is None:
            raise  # a bug: its traceback is what a report needs
        if debug or os.environ.get("ICEGRT_DEBUG", "") not in ("", "0"):
            traceback.print_exception(err)
        from icegrt_cli.console import print_error

        print_error(known)
        raise SystemExit(getattr(known, "exit_code", 2)) from None


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    try:
        import torch
    except ImportError:
        return False
    return isinstance(err, torch.OutOfMemoryError)


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    item: BaseException | None = err
    while item is not None and item not in seen:
        seen.append(item)
        item = item.__cause__ or item.__context__
    return seen
