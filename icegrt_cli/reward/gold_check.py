"""Does the reward model rank answers the way the demo's gold scorer does?

The gold scorer judges from the generator's ground truth and never sees a preference pair, so
agreement with it on the held-out test ads (unseen phrasings and products) measures what the
reward model learned, not what it memorised. Each test ad gives one pair: its reference answer
against one corrupted answer (a wrong verdict, a missing or invented reason, a vague or
unquoted analysis, a broken layout), ordered by gold score.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from icegrt_cli.data.demo import demo_file, gold_score
from icegrt_cli.data.demo.negatives import rejected_answer
from icegrt_cli.data.loading import read_jsonl
from icegrt_cli.reward.scoring import score_texts


class GoldPair(NamedTuple):
    prompt: str
    better: str
    """The answer the gold scorer scores higher."""
    worse: str
    kind: str
    """The corruption applied to the reference answer."""


class GoldAgreement(NamedTuple):
    rate: float
    """Share of pairs where the reward model scores `better` above `worse`."""
    by_kind: dict[str, float]
    """The same share per corruption kind."""
    pairs: int
    gold_ties: int
    """Pairs left out because the gold scorer gave both answers the same score."""


def demo_gold_pairs(seed: int) -> tuple[list[GoldPair], int]:
    """One (reference, corrupted) pair per demo test ad, and the number of gold ties left out."""
    rng = random.Random(seed)
    pairs: list[GoldPair] = []
    ties = 0
    for _, record in read_jsonl(demo_file("test")):
        gold, reference = record["gold"], record["reference"]
        corrupted, kind = rejected_answer(rng, gold, record["prompt"])
        ref_score, bad_score = gold_score(reference, gold).score, gold_score(corrupted, gold).score
        if ref_score == bad_score:
            ties += 1
            continue
        better, worse = (reference, corrupted) if ref_score > bad_score else (corrupted, reference)
        pairs.append(GoldPair(record["prompt"], better, worse, kind))
    return pairs, ties


def ranking_agreement(
    better: Tensor, worse: Tensor, kinds: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """Share of (N,) pairs with better > worse (a tie disagrees), overall and per kind."""
    agree = (better > worse).float()
    by_kind = {
        kind: agree[[i for i, k in enumerate(kinds) if k == kind]].mean().item()
        for kind in sorted(set(kinds))
    }
    return agree.mean().item(), by_kind


def demo_gold_agreement(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, seed: int, batch_size: int = 32
) -> GoldAgreement:
    """Score every demo gold pair with the reward model and compare with the gold ranking."""
    pairs, ties = demo_gold_pairs(seed)
    prompts = [p.prompt for p in pairs]
    better = score_texts(model, tokenizer, prompts, [p.better for p in pairs], batch_size)
    worse = score_texts(model, tokenizer, prompts, [p.worse for p in pairs], batch_size)
    rate, by_kind = ranking_agreement(better, worse, [p.kind for p in pairs])
    return GoldAgreement(rate, by_kind, len(pairs), ties)
