"""The demo's own tasks: ad moderation (answer and analysis) and closed-world general skills.

Both are chat tasks: the prompt goes through the chat template, the model answers until EOS.
The gold scorer judges ad answers from the generator's ground truth; a reward model, when
given, adds its own mean score, so a reward rising while the gold score falls shows up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from icegrt_cli.data.demo import general_correct, gold_score
from icegrt_cli.eval.formats import Item, line_id, need, rows

AD_METRICS = ("gold", "verdict_acc", "recall", "evidence", "hallucinated", "format")


def read_ad_moderation(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """Demo test JSONL: `id`, `prompt`, `gold` (verdict, violations, near misses), `reference`."""
    items = []
    for origin, record in rows(path):
        gold = need(record, "gold", origin, dict)
        for key in ("verdict", "violations", "near_misses"):
            need(gold, key, f"{origin}: gold", str if key == "verdict" else list)
        items.append(
            Item(
                id=str(record.get("id", line_id(origin))),
                query=need(record, "prompt", origin),
                target=record.get("reference", ""),
                meta={"gold": gold},
            )
        )
    return items


def score_ad(response: str, item: Item) -> dict[str, float]:
    return gold_metrics(response, item.meta["gold"])


def gold_metrics(response: str, gold: dict) -> dict[str, float]:
    """Gold score and its parts: mean of `hallucinated` is codes wrongly named per answer."""
    judged = gold_score(response, gold)
    return {
        "gold": judged.score,
        "verdict_acc": float(judged.verdict_correct),
        "recall": judged.recall,
        "evidence": judged.evidence,
        "hallucinated": float(judged.hallucinated),
        "format": float(judged.format_ok),
    }


def read_general_demo(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """Demo general-skills JSONL: `id`, `prompt`, `answer`, `kind` (the few-shot group)."""
    return [
        Item(
            id=str(record.get("id", line_id(origin))),
            query=need(record, "prompt", origin),
            target=need(record, "answer", origin),
            group=str(record.get("kind", "")),
        )
        for origin, record in rows(path)
    ]


def score_general(response: str, item: Item) -> dict[str, float]:
    return {"acc": float(general_correct(response, item.target))}
