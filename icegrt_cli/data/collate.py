"""Batches of token sequences: right padding, or packing several examples into one row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from icegrt_cli.data.formatting import IGNORE, Encoded


def pad_right(rows: Sequence[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


class LMCollator:
    """Right-pads `Encoded` rows; `weight` counts the target tokens the loss sums over."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        input_ids = pad_right([r.input_ids for r in rows], self.pad_id)
        labels = pad_right([r.labels for r in rows], IGNORE)
        attention = pad_right([[1] * len(r.input_ids) for r in rows], 0)
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
        if isinstance(rows[0], PackedRow):
            batch["position_ids"] = pad_right([r.position_ids for r in rows], 0)
        batch["weight"] = (labels[:, 1:] != IGNORE).sum()
        return batch


@dataclass(frozen=True)
class PackedRow(Encoded):
    """Several examples in one row; positions restart at each example."""

    position_ids: list[int] = field(default_factory=list)


def pack(examples: Sequence[Encoded], max_length: int) -> list[PackedRow]:
    """Greedy first-fit packing of whole examples into rows of at most `max_length` tokens.

    Positions restart per example; attention is still causal across the row (examples
    see earlier ones), the usual trade for fewer pad tokens.
    """
    rows: list[tuple[list[int], list[int], list[int]]] = []
    for ex in sorted(examples, key=lambda e: -len(e.input_ids)):
        for ids, labels, positions in rows:
            if len(ids) + len(ex.input_ids) <= max_length:
                ids += ex.input_ids
                labels += ex.labels
                positions += list(range(len(ex.input_ids)))
                break
        else:
            rows.append((list(ex.input_ids), list(ex.labels), list(range(len(ex.input_ids)))))
    return [PackedRow(*row) for row in rows]
