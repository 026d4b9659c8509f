"""The imperfect annotator who writes the SFT demonstrations.

Its mistakes are drawn independently of the ad's content, so a model that imitates it learns
to make them at the same rates; the preference pairs then show which answers are better.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from icegrt_cli.demo.answers import (
    approve_clauses,
    format_answer,
    ideal_response,
    violation_clause,
)
from icegrt_cli.demo.config import DemoConfig
from icegrt_cli.demo.policies import POLICY_BY_CODE, policy_of

# Mistakes in the order they are drawn; DemoConfig documents who is eligible for each.
MISTAKES: tuple[str, ...] = (
    "wrong_verdict",
    "vague",
    "wrong_policy",
    "partial",
    "unquoted",
    "skip_near_miss",
)

VAGUE_REJECT: tuple[str, ...] = (
    "the ad violates our policies",
    "this ad breaks the advertising rules",
    "not compliant with policy",
    "the claims in this ad are not allowed",
)
VAGUE_APPROVE: tuple[str, ...] = ("no policy applies", "the ad looks fine")


def wrong_verdict_answer(rng: random.Random, gold: Mapping[str, Any]) -> str:
    """A confident answer with the opposite verdict."""
    if gold["verdict"] == "reject":
        phrase = rng.choice(gold["violations"])["phrase"]
        return format_answer("approve", approve_clauses([phrase]))
    if gold["near_misses"]:
        phrase = rng.choice(gold["near_misses"])
        return format_answer("reject", [violation_clause(phrase, policy_of(phrase))])
    return format_answer("reject", [rng.choice(VAGUE_REJECT)])


def wrong_policy_answer(rng: random.Random, gold: Mapping[str, Any]) -> str:
    """Right verdict, but a policy that does not apply is cited.

    A near miss is flagged under the policy it resembles; without one, a violation is filed
    under a wrong code.
    """
    violations = gold["violations"]
    clauses = [violation_clause(v["phrase"], v["code"]) for v in violations]
    if gold["near_misses"]:
        phrase = rng.choice(gold["near_misses"])
        clauses.append(violation_clause(phrase, policy_of(phrase)))
    else:
        wrong = rng.choice(sorted(set(POLICY_BY_CODE) - {v["code"] for v in violations}))
        i = rng.randrange(len(violations))
        clauses[i] = violation_clause(violations[i]["phrase"], wrong)
    return format_answer("reject", clauses)


def partial_answer(rng: random.Random, gold: Mapping[str, Any]) -> str:
    """Right verdict, only one of several violations named."""
    v = rng.choice(gold["violations"])
    return format_answer("reject", [violation_clause(v["phrase"], v["code"])])


def unquoted_answer(gold: Mapping[str, Any]) -> str:
    """Right verdict and policies, but no phrase quoted as evidence."""
    clauses = [
        f"the ad makes {POLICY_BY_CODE[v['code']].name} ({v['code']})" for v in gold["violations"]
    ]
    return format_answer("reject", clauses)


def draw_chain(gold: Mapping[str, Any]) -> tuple[str, ...]:
    """The mistakes this ad is eligible for, in the order they are drawn."""
    if gold["verdict"] == "approve":
        return ("wrong_verdict", "skip_near_miss") if gold["near_misses"] else ("wrong_verdict",)
    chain = ["wrong_verdict", "vague", "wrong_policy"]
    if len(gold["violations"]) >= 2:
        chain.append("partial")
    chain.append("unquoted")
    return tuple(chain)


def choose_mode(rng: random.Random, gold: Mapping[str, Any], config: DemoConfig) -> str:
    """Draw the annotator's mode for one ad (independent of the ad's wording)."""
    for step in draw_chain(gold):
        if rng.random() < getattr(config, f"{step}_rate"):
            return step
    return "specific"


def annotate(rng: random.Random, gold: Mapping[str, Any], config: DemoConfig) -> tuple[str, str]:
    """(answer, mode) as the imperfect annotator writes it."""
    mode = choose_mode(rng, gold, config)
    if mode == "wrong_verdict":
        text = wrong_verdict_answer(rng, gold)
    elif mode == "vague":
        text = format_answer("reject", [rng.choice(VAGUE_REJECT)])
    elif mode == "wrong_policy":
        text = wrong_policy_answer(rng, gold)
    elif mode == "partial":
        text = partial_answer(rng, gold)
    elif mode == "unquoted":
        text = unquoted_answer(gold)
    elif mode == "skip_near_miss":
        text = format_answer("approve", [rng.choice(VAGUE_APPROVE)])
    else:
        text = ideal_response(gold)
    return text, mode
