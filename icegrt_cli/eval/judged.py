"""Judged chat tasks: each answer scored by a judge (`icegrt_cli.judges`) against its record.

The bundled demo's tasks are of this kind (ad moderation: answer and analysis; closed-world
general skills), and so is any user's task that names a judge: `format: judged`,
`judge: my_pkg.rubric:score`. The prompt goes through the chat template and the model answers
until EOS; a reward model, when given, adds its own mean score, so a reward rising while the
judge's score falls shows up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icegrt_cli.errors import DataError
from icegrt_cli.eval.formats import Item, line_id, need, rows
from icegrt_cli.judges import Judgement

AD_METRICS = ("gold", "verdict_acc", "recall", "evidence", "hallucinated", "format")
"""The demo's ad-moderation judge: its score (`gold`) and its parts."""


def read_judged(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """JSONL with a `prompt` per record; the whole record goes to the judge. Optional: `id`,
    `reference` or `answer` (shown as the target), `kind` (the group)."""
    return [
        Item(
            id=str(record.get("id", line_id(origin))),
            query=need(record, "prompt", origin),
            target=str(record.get("reference", record.get("answer", ""))),
            group=str(record.get("kind", "")),
            meta={"record": record},
        )
        for origin, record in rows(path)
    ]


def judge_scorer(
    judge: Callable[[str, Mapping[str, Any]], Judgement | None], spec: str, score_name: str
) -> Callable[[str, Item], dict[str, float]]:
    """An eval scorer: the judge's score under `score_name`, its parts under their own names."""

    def score(response: str, item: Item) -> dict[str, float]:
        judged = judge(response, item.meta["record"])
        if judged is None:
            raise DataError(f"item {item.id}: judge {spec} found nothing to judge it by")
        return {score_name: judged.score, **judged.parts}

    return score
