"""Hold-out splits and the weighted blend of sources (the domain + general mix)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def split_holdout(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(train, held-out): a seeded random `fraction` held out, at least one item each side."""
    if fraction <= 0 or len(items) < 2:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(items) - 1, max(1, round(fraction * len(items))))
    held = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


def weighted_blend(parts: Sequence[tuple[Sequence[T], float]], seed: int) -> list[T]:
    """Blend sources: each contributes round(weight x size) items per epoch.

    Weight 1 takes every item once; 0.3 a seeded 30% sample; 2.5 every item twice plus a
    half sample. The blend's order does not matter: the engine shuffles each epoch.
    """
    rng = random.Random(seed)
    blend: list[T] = []
    for items, weight in parts:
        if weight < 0:
            raise ValueError(f"source weight must be >= 0, got {weight}")
        want = round(weight * len(items))
        whole, rest = divmod(want, len(items)) if items else (0, 0)
        blend.extend(list(items) * whole)
        blend.extend(rng.sample(list(items), rest))
    return blend
