"""The demo's entry points: all the core uses of it, named by import strings in configs and in
`icegrt_cli.plugins`, never imported by the core.

- `ad_judge`, `general_judge`: judges (`icegrt_cli.judges`) of ad reviews and general answers.
- `gold_check_pairs`: held-out answer pairs for the reward model's gold-agreement check.
- `demo_file`, `tokenizer_corpus`, `generate`: the bundled files, the preset tokenizer's corpus,
  a fresh copy of the data set.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from icegrt_cli.data.loading import read_jsonl
from icegrt_cli.demo.bundle import demo_file
from icegrt_cli.demo.general import general_correct
from icegrt_cli.demo.generator import generate_demo
from icegrt_cli.demo.gold import gold_score
from icegrt_cli.demo.negatives import rejected_answer
from icegrt_cli.judges import GoldCandidate, Judgement

__all__ = [
    "ad_judge",
    "demo_file",
    "general_judge",
    "generate",
    "gold_check_pairs",
    "tokenizer_corpus",
]


def ad_judge(response: str, record: Mapping[str, Any]) -> Judgement | None:
    """The gold score of an ad review against the record's `gold` (None without one), with its
    parts; the mean of `hallucinated` is codes wrongly named per answer."""
    gold = record.get("gold")
    if gold is None:
        return None
    judged = gold_score(response, gold)
    return Judgement(
        judged.score,
        {
            "verdict_acc": float(judged.verdict_correct),
            "recall": judged.recall,
            "evidence": judged.evidence,
            "hallucinated": float(judged.hallucinated),
            "format": float(judged.format_ok),
        },
    )


def general_judge(response: str, record: Mapping[str, Any]) -> Judgement | None:
    """1 when the response is the record's `answer` after normalisation, else 0."""
    answer = record.get("answer")
    if answer is None:
        return None
    return Judgement(float(general_correct(response, answer)))


def gold_check_pairs(seed: int) -> list[GoldCandidate]:
    """One (reference, corrupted) pair per test ad: a wrong verdict, a missing or invented
    reason, a vague or unquoted analysis, a broken layout, drawn from `seed`."""
    rng = random.Random(seed)
    pairs = []
    for _, record in read_jsonl(demo_file("test")):
        corrupted, kind = rejected_answer(rng, record["gold"], record["prompt"])
        pairs.append(GoldCandidate(record["prompt"], record["reference"], corrupted, kind, record))
    return pairs


def tokenizer_corpus() -> list[Path]:
    """The bundled training files the preset tokenizer is trained on (never the test splits)."""
    return [demo_file(part) for part in ("sft", "general_sft", "pairs", "prompts")]


def generate(out: Path, seed: int = 0) -> dict[str, Any]:
    """Write a fresh demo data set to `out`; returns its card."""
    return generate_demo(out, seed=seed)
