"""Length limits applied to data: what fits is kept, and what does not is counted and said.

Dropping or cutting examples silently hides a wrong limit (a preset's 512 tokens applied to a
4096-token checkpoint, say), so every filter reports through `length_note`.
"""

from __future__ import annotations

from collections.abc import Sequence


def within_limit(lengths: Sequence[int], limit: int) -> list[int]:
    """Indices of the items whose length is at most `limit`, in order."""
    return [i for i, length in enumerate(lengths) if length <= limit]


def length_note(
    what: str, affected: int, total: int, limit: int, why: str, action: str = "skipped"
) -> str | None:
    """'12 of 2000 prompts longer than 416 tokens (why) skipped', or None when none was."""
    if affected == 0:
        return None
    return f"{affected} of {total} {what} longer than {limit} tokens ({why}) {action}"
