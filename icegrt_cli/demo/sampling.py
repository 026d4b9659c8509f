"""Drawing distinct generated items: the one loop the ad and general generators share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar


class Prompted(Protocol):
    prompt: str


T = TypeVar("T", bound=Prompted)


def draw_distinct(draw: Callable[[], T], n: int, seen: set[str], what: str) -> list[T]:
    """`n` draws whose prompts are not in `seen` (which is updated); a bounded number of tries,
    so a split larger than the generator can fill fails instead of looping forever."""
    items: list[T] = []
    for _ in range(100 * n):
        if len(items) == n:
            break
        item = draw()
        if item.prompt not in seen:
            seen.add(item.prompt)
            items.append(item)
    if len(items) < n:
        raise ValueError(f"could not draw {n} distinct {what}")
    return items
