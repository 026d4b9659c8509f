"""Where the bundled demo files live inside the installed package."""

from __future__ import annotations

from pathlib import Path

BUNDLE_DIR = Path(__file__).resolve().parent / "files"
PARTS: tuple[str, ...] = ("sft", "general_sft", "pairs", "prompts", "test", "valid", "general_test")


def demo_file(part: str) -> Path:
    """Path of one bundled JSONL file, e.g. `demo_file("sft")` -> .../files/sft.jsonl."""
    if part not in PARTS:
        raise ValueError(f"unknown demo part {part!r}; known parts: {', '.join(PARTS)}")
    return BUNDLE_DIR / f"{part}.jsonl"
