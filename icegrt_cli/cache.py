"""The icegrt cache: built tokenizers, fetched benchmarks and models, outside any run."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`ICEGRT_CACHE`, else ~/.cache/icegrt (tests point it at a temp dir)."""
    return Path(os.environ.get("ICEGRT_CACHE", Path.home() / ".cache" / "icegrt"))
