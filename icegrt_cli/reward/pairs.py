"""Preference pairs: checked, encoded, filtered with counted skips, and collated.

A pair that cannot teach anything (chosen == rejected) or does not fit (longer than
`data.max_length` tokens) is skipped and counted, never dropped silently; a pair with a
missing or empty field is an error naming its file and line (`check_pair_record`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from transformers import PreTrainedTokenizerBase

from icegrt_cli.data.formatting import encode_prompt, encode_response
from icegrt_cli.data.loading import require_text
from icegrt_cli.reward.scoring import pad_batch

check_pair_record = require_text("prompt", "chosen", "rejected")
"""Each pair needs non-empty `prompt`, `chosen` and `rejected` strings (after field remapping)."""


class PairExample(NamedTuple):
    """One encoded pair; each side is prompt + response + EOS and has its own length."""

    chosen: list[int]
    rejected: list[int]


@dataclass(frozen=True)
class SkipCounts:
    identical: int = 0
    """Pairs whose chosen and rejected texts are equal (after trimming outer whitespace)."""
    too_long: int = 0
    """Pairs with a side longer than data.max_length tokens."""

    def __add__(self, other: SkipCounts) -> SkipCounts:
        return SkipCounts(self.identical + other.identical, self.too_long + other.too_long)

    @property
    def total(self) -> int:
        return self.identical + self.too_long


def encode_pairs(
    records: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[list[PairExample], SkipCounts]:
    """Encoded pairs that can be trained on, and how many were skipped and why."""
    kept: list[PairExample] = []
    identical = too_long = 0
    for record in records:
        if record["chosen"].strip() == record["rejected"].strip():
            identical += 1
            continue
        prompt = encode_prompt(tokenizer, record["prompt"])
        pair = PairExample(
            prompt + encode_response(tokenizer, record["chosen"]),
            prompt + encode_response(tokenizer, record["rejected"]),
        )
        if max(len(pair.chosen), len(pair.rejected)) > max_length:
            too_long += 1
            continue
        kept.append(pair)
    return kept, SkipCounts(identical, too_long)


class PairCollator:
    """N pairs -> one batch of 2N right-padded rows: chosen in rows [0, N), rejected in [N, 2N).

    One forward pass scores both sides; `weight` = N, the pairs the loss sums over.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, pairs: Sequence[PairExample]) -> dict[str, torch.Tensor | int]:
        rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        input_ids, attention_mask = pad_batch(rows, self.pad_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "weight": len(pairs)}
