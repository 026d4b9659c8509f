"""Regenerate the bundled demo files: `python -m icegrt_cli.demo [out_dir]`."""

from __future__ import annotations

import sys
from pathlib import Path

from icegrt_cli.demo.bundle import BUNDLE_DIR
from icegrt_cli.demo.generator import generate_demo

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else BUNDLE_DIR
    card = generate_demo(out)
    print(f"wrote {len(card['files'])} files to {out}")
