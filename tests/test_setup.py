"""`make setup` keeps a torch that is already installed and installs the pin only when asked
or when none imports (checked with `make -n`, which prints the commands without running them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = "torch==2.13.0"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(*args: str, python: str = sys.executable) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH", "TORCH_INDEX", "MAKEFLAGS")}
    proc = subprocess.run(
        ["make", "-n", "setup", f"PY={python}", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        check=True,
    )
    return proc.stdout


def test_an_importable_torch_is_left_alone() -> None:
    out = dry_run()
    assert f"install -q {PIN}" not in out and "torch already importable: kept" in out
    assert 'pip install -q -e ".[dev]"' in out


def test_torch_given_explicitly_is_installed_from_the_index_given() -> None:
    out = dry_run("TORCH=torch==2.5.1", "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert "pip install -q --index-url https://download.pytorch.org/whl/cpu torch==2.5.1" in out


def test_without_torch_the_pin_is_installed(tmp_path: Path) -> None:
    fake = tmp_path / "python"  # a Python that cannot import torch
    fake.write_text('#!/bin/sh\ncase "$*" in *"import torch"*) exit 1;; esac\nexit 0\n')
    fake.chmod(0o755)
    assert f"{fake} -m pip install -q {PIN}" in dry_run(python=str(fake))
