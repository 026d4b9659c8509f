"""Does the reward model rank answers the way a judge does?

A source's `gold_pairs` gives held-out prompts each with two answers (the demo: its test ads'
reference answer against one corrupted answer - a wrong verdict, a missing or invented reason,
a vague or unquoted analysis, a broken layout); the source's `judge` says which is better. The
judge scores from ground truth and never sees a preference pair, so agreement with it on
held-out prompts measures what the reward model learned, not what it memorised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from icegrt_cli.config import SourceConfig
from icegrt_cli.errors import ConfigError
from icegrt_cli.judges import resolve_judge
from icegrt_cli.plugins import load_callable
from icegrt_cli.reward.scoring import score_texts


class GoldPair(NamedTuple):
    prompt: str
    better: str
    """The answer the judge scores higher."""
    worse: str
    kind: str
    """How the two answers differ (the demo: the corruption applied to the reference)."""


class GoldAgreement(NamedTuple):
    rate: float
    """Share of pairs where the reward model scores `better` above `worse`."""
    by_kind: dict[str, float]
    """The same share per kind."""
    pairs: int
    gold_ties: int
    """Pairs left out because the judge gave both answers the same score (or judged neither)."""


def checked_sources(sources: Sequence[SourceConfig]) -> list[tuple[str, SourceConfig]]:
    """(config key, source) of the sources with a gold check, their strings resolved now so a
    typo fails before training; a ConfigError for gold_pairs without a judge."""
    checked = []
    for index, source in enumerate(sources):
        if source.gold_pairs is None:
            continue
        key = f"data.sources.{index}"
        if source.judge is None:
            raise ConfigError(f"{key}.judge: gold_pairs needs a judge to rank each pair")
        resolve_judge(source.judge, f"{key}.judge")
        load_callable(source.gold_pairs, f"{key}.gold_pairs")
        checked.append((key, source))
    return checked


def gold_pairs(sources: Sequence[SourceConfig], seed: int) -> tuple[list[GoldPair], int]:
    """The sources' candidate pairs ordered by their judges, and the number of ties left out."""
    pairs: list[GoldPair] = []
    ties = 0
    for key, source in checked_sources(sources):
        judge = resolve_judge(source.judge, f"{key}.judge")
        for candidate in load_callable(source.gold_pairs, f"{key}.gold_pairs")(seed):
            first = judge(candidate.first, candidate.record)
            second = judge(candidate.second, candidate.record)
            if first is None or second is None or first.score == second.score:
                ties += 1
                continue
            better, worse = (
                (candidate.first, candidate.second)
                if first.score > second.score
                else (candidate.second, candidate.first)
            )
            pairs.append(GoldPair(candidate.prompt, better, worse, candidate.kind))
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


def gold_agreement(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sources: Sequence[SourceConfig],
    seed: int,
    batch_size: int = 32,
) -> GoldAgreement:
    """Score every gold pair of `sources` with the reward model and compare with the judges."""
    pairs, ties = gold_pairs(sources, seed)
    prompts = [p.prompt for p in pairs]
    better = score_texts(model, tokenizer, prompts, [p.better for p in pairs], batch_size)
    worse = score_texts(model, tokenizer, prompts, [p.worse for p in pairs], batch_size)
    rate, by_kind = ranking_agreement(better, worse, [p.kind for p in pairs])
    return GoldAgreement(rate, by_kind, len(pairs), ties)
