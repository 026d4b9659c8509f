"""Batches of token sequences: right padding, or packing several examples into one row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from icegrt_cli.data.formatting import IGNORE, Encoded


def pad_right(rows: Sequence[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) long index of the last valid token per row of `mask` (B, T).

    This is where the reward model's score goes (the EOS), found from the mask and never as
    "first pad - 1" (TRL #2778). A row with no valid token gets index 0; callers that place
    values there must check `mask.any(-1)` (as `shape_token_rewards` does).
    """
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask != 0, positions, -1).amax(dim=-1).clamp(min=0)


def example_token_weights(labels: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """(B, T-1) weights of the next-token targets: 1/n on each of an example's n target tokens,
    0 elsewhere, so a weighted loss sum is a sum of per-example mean losses.

    `starts` (B, T) is True at the first token of each example in a row (one per row unless
    packed); a target at column t+1 belongs to the example that contains token t+1.
    """
    targets = labels[:, 1:] != IGNORE
    example = starts.long().cumsum(dim=1)[:, 1:]  # 1, 2, ... within a row
    slots = example.max().item() + 1
    flat = (torch.arange(len(labels)).unsqueeze(1) * slots + example).flatten()
    counts = torch.zeros(len(labels) * slots).scatter_add_(0, flat, targets.flatten().float())
    per_token = counts[flat].view_as(example)
    return torch.where(targets, 1.0 / per_token.clamp(min=1), 0.0)


class LMCollator:
    """Right-pads `Encoded` rows; `weight` is what the summed loss is divided by.

    Per token (default): `weight` counts target tokens, so long answers weigh more. Per example:
    `token_weight` gives each example's tokens 1/n and `weight` counts examples, so every
    example weighs the same however long its answer.
    """

    def __init__(self, pad_id: int, per_example: bool = False) -> None:
        self.pad_id = pad_id
        self.per_example = per_example

    def __call__(self, rows: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        input_ids = pad_right([r.input_ids for r in rows], self.pad_id)
        labels = pad_right([r.labels for r in rows], IGNORE)
        attention = pad_right([[1] * len(r.input_ids) for r in rows], 0)
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
        if isinstance(rows[0], PackedRow):
            batch["position_ids"] = pad_right([r.position_ids for r in rows], 0)
        if not self.per_example:
            batch["weight"] = (labels[:, 1:] != IGNORE).sum()
            return batch
        if "position_ids" in batch:
            starts = (batch["position_ids"] == 0) & (attention == 1)
        else:
            starts = torch.zeros_like(input_ids, dtype=torch.bool)
            starts[:, 0] = True
        batch["token_weight"] = example_token_weights(labels, starts)
        batch["weight"] = batch["token_weight"].sum().round().long()
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
