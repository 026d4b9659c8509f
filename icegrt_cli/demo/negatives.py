"""Rejected answers for preference pairs: one failure mode each, always worse than the ideal.

Kinds (drawn among those that apply to the ad, with the weights in `KIND_WEIGHTS`):
- `wrong_verdict`: the opposite verdict, stated confidently.
- `missing_reason`: right verdict, one of two or more violations left out.
- `hallucinated_reason`: right verdict, a policy that does not apply is cited.
- `vague`: right verdict, no policy or phrase named (approve ads: only when a near miss exists).
- `unquoted`: right verdict and policies, no quoted phrase.
- `bad_format`: the ideal content with a broken verdict/analysis layout.
- `invented_reason`: a violation is claimed with a quote that is not in the ad (a reject ad keeps
  its real clauses and gains the invented one; an approve ad is rejected for it).
- `misquoted`: right verdict and policies, but one quote is a phrase of that policy that the ad
  does not contain.

The last two teach a reward model to check quotes against the ad: without them it pays for
confident, specific-looking analyses, and PPO learns to invent them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from icegrt_cli.demo.annotator import (
    VAGUE_APPROVE,
    VAGUE_REJECT,
    partial_answer,
    unquoted_answer,
    wrong_policy_answer,
    wrong_verdict_answer,
)
from icegrt_cli.demo.answers import format_answer, ideal_response, violation_clause
from icegrt_cli.demo.policies import POLICY_BY_CODE, phrase_pool

KINDS: tuple[str, ...] = (
    "wrong_verdict",
    "missing_reason",
    "hallucinated_reason",
    "vague",
    "unquoted",
    "bad_format",
    "invented_reason",
    "misquoted",
)

# Completeness and quote checks are the hardest lessons, and `invented_reason` (one clause too
# many) on its own would teach "fewer clauses is better"; `missing_reason` (one too few) and
# `misquoted` are drawn more often to balance it.
KIND_WEIGHTS: Mapping[str, float] = {"missing_reason": 4.0, "misquoted": 2.0}


def eligible_kinds(gold: Mapping[str, Any]) -> tuple[str, ...]:
    """The failure modes that make sense for this ad."""
    if gold["verdict"] == "approve":
        kinds = ["wrong_verdict", "bad_format", "invented_reason"]
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


def absent_phrase(rng: random.Random, code: str, ad_text: str) -> str:
    """A training trigger phrase of policy `code` that does not occur in the ad's text."""
    policy = POLICY_BY_CODE[code]
    text = ad_text.casefold()
    pool = sorted(
        {
            phrase
            for category in policy.categories()
            for phrase in phrase_pool(code, "trigger", category, False)
            if phrase.casefold() not in text
        }
    )
    return rng.choice(pool)


def invented_reason_answer(rng: random.Random, gold: Mapping[str, Any], ad_text: str) -> str:
    """A violation the ad does not commit, argued with a quote the ad does not contain."""
    broken = {v["code"] for v in gold["violations"]}
    code = rng.choice(sorted(set(POLICY_BY_CODE) - broken))
    invented = violation_clause(absent_phrase(rng, code, ad_text), code)
    clauses = [violation_clause(v["phrase"], v["code"]) for v in gold["violations"]]
    clauses.insert(rng.randint(0, len(clauses)), invented)
    return format_answer("reject", clauses)


def misquoted_answer(rng: random.Random, gold: Mapping[str, Any], ad_text: str) -> str:
    """The right policies, but one of them 'evidenced' by a phrase that is not in the ad."""
    violations = gold["violations"]
    i = rng.randrange(len(violations))
    clauses = [violation_clause(v["phrase"], v["code"]) for v in violations]
    code = violations[i]["code"]
    clauses[i] = violation_clause(absent_phrase(rng, code, ad_text), code)
    return format_answer("reject", clauses)


def rejected_answer(rng: random.Random, gold: Mapping[str, Any], ad_text: str) -> tuple[str, str]:
    """(answer, kind) for the rejected side of a preference pair about the ad `ad_text`."""
    kinds = eligible_kinds(gold)
    kind = rng.choices(kinds, weights=[KIND_WEIGHTS.get(k, 1.0) for k in kinds])[0]
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
    elif kind == "invented_reason":
        text = invented_reason_answer(rng, gold, ad_text)
    elif kind == "misquoted":
        text = misquoted_answer(rng, gold, ad_text)
    else:
        text = bad_format_answer(rng, gold)
    return text, kind
