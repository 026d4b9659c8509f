"""Rejected answers for preference pairs: one failure mode each, always worse than the ideal.

Kinds (drawn uniformly among those that apply to the ad):
- `wrong_verdict`: the opposite verdict, stated confidently.
- `missing_reason`: right verdict, one of two or more violations left out.
- `hallucinated_reason`: right verdict, a policy that does not apply is cited.
- `vague`: right verdict, no policy or phrase named (approve ads: only when a near miss exists).
- `unquoted`: right verdict and policies, no quoted phrase.
- `bad_format`: the ideal content with a broken verdict/analysis layout.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from icegrt_cli.data.demo.annotator import (
    VAGUE_APPROVE,
    VAGUE_REJECT,
    partial_answer,
    unquoted_answer,
    wrong_policy_answer,
    wrong_verdict_answer,
)
from icegrt_cli.data.demo.answers import format_answer, ideal_response

KINDS: tuple[str, ...] = (
    "wrong_verdict",
    "missing_reason",
    "hallucinated_reason",
    "vague",
    "unquoted",
    "bad_format",
)


def eligible_kinds(gold: Mapping[str, Any]) -> tuple[str, ...]:
    """The failure modes that make sense for this ad."""
    if gold["verdict"] == "approve":
        kinds = ["wrong_verdict", "bad_format"]
        if gold["near_misses"]:
            kinds.insert(1, "vague")
        return tuple(kinds)
    if len(gold["violations"]) >= 2:
        return KINDS
    return tuple(k for k in KINDS if k != "missing_reason")


def bad_format_answer(rng: random.Random, gold: Mapping[str, Any]) -> str:
    """The ideal content, laid out wrongly in one of a few ways."""
    verdict_line, analysis_line = ideal_response(gold).split("\n")
    verdict = gold["verdict"]
    analysis = analysis_line.removeprefix("Analysis: ")
    variants = (
        verdict_line,  # analysis missing
        f"{verdict} - {analysis}",  # one line, no labels
        f"{verdict}\n{analysis}",  # labels missing
        f"{verdict_line}\n{analysis_line}\n{analysis_line}",  # trailing repetition
    )
    return rng.choice(variants)


def rejected_answer(rng: random.Random, gold: Mapping[str, Any]) -> tuple[str, str]:
    """(answer, kind) for the rejected side of a preference pair."""
    kind = rng.choice(eligible_kinds(gold))
    if kind == "wrong_verdict":
        text = wrong_verdict_answer(rng, gold)
    elif kind == "missing_reason":
        text = partial_answer(rng, gold)
    elif kind == "hallucinated_reason":
        text = wrong_policy_answer(rng, gold)
    elif kind == "vague":
        pool = VAGUE_REJECT if gold["verdict"] == "reject" else VAGUE_APPROVE
        text = format_answer(gold["verdict"], [rng.choice(pool)])
    elif kind == "unquoted":
        text = unquoted_answer(gold)
    else:
        text = bad_format_answer(rng, gold)
    return text, kind
