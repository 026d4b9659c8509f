"""The judge interface: how a domain's gold scorer plugs into the core.

A judge is any function `(response, record) -> Judgement` named by an import string,
`judge=my_pkg.rubric:score`: it reads the ground truth a record carries (the demo's `gold`, a
reference answer, a regex...) and says how good `response` is. Reward-model gold agreement, PPO's
gold tracking of rollouts and held-out answers, and the eval's judged tasks all call judges
through this module, never a domain's own modules. A judge may return a bare number (a score
with no parts) or None for a record it cannot judge (it carries no ground truth).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, NamedTuple

from icegrt_cli.errors import ConfigError
from icegrt_cli.plugins import load_callable

JUDGE_FIELD = "_judge"
"""Record key a data source's `judge` travels under, so a mix of sources keeps each judge."""


class Judgement(NamedTuple):
    score: float
    """Overall quality in [0, 1]."""
    parts: Mapping[str, float] = {}
    """Named sub-scores, e.g. the demo's verdict_acc, recall, evidence, hallucinated, format."""


Judge = Callable[[str, Mapping[str, Any]], "Judgement | float | None"]
"""(response text, the record it answers) -> Judgement, a bare score, or None (not judged)."""


def resolve_judge(spec: str, key: str) -> Callable[[str, Mapping[str, Any]], Judgement | None]:
    """The judge `spec` names, its answers checked and made Judgements; ConfigError naming `key`
    for a bad string (no such module or attribute, not callable)."""
    judge = load_callable(spec, key)

    def judged(response: str, record: Mapping[str, Any]) -> Judgement | None:
        return as_judgement(judge(response, record), spec)

    return judged


def as_judgement(value: Any, spec: str) -> Judgement | None:
    """A judge's answer as a Judgement (a bare number is a score without parts)."""
    if value is None or isinstance(value, Judgement):
        return value
    if isinstance(value, Real):
        return Judgement(float(value))
    score, parts = getattr(value, "score", None), getattr(value, "parts", None)
    if isinstance(score, Real) and isinstance(parts, Mapping):
        return Judgement(float(score), dict(parts))
    raise ConfigError(
        f"judge {spec}: returned {type(value).__name__}; expected a Judgement or a number"
    )


def judge_records(responses: list[str], records: list[Mapping[str, Any]]) -> dict[str, float]:
    """Mean `gold` score and `gold_<part>` parts of the responses whose record names a judge
    (`JUDGE_FIELD`, set from its source's `judge`) and that the judge scores; {} if none."""
    graded: list[Judgement] = []
    judges: dict[str, Callable[[str, Mapping[str, Any]], Judgement | None]] = {}
    for response, record in zip(responses, records, strict=True):
        spec = record.get(JUDGE_FIELD)
        if spec is None:
            continue
        if spec not in judges:
            judges[spec] = resolve_judge(spec, "data source judge")
        judgement = judges[spec](response, record)
        if judgement is not None:
            graded.append(judgement)
    if not graded:
        return {}
    figures = {"gold": sum(g.score for g in graded) / len(graded)}
    for name in graded[0].parts:
        values = [g.parts[name] for g in graded if name in g.parts]
        figures[f"gold_{name}"] = sum(values) / len(values)
    return figures


class GoldCandidate(NamedTuple):
    """Two answers to one held-out prompt for the reward model's gold-agreement check: which is
    better is the judge's call, not the order here."""

    prompt: str
    first: str
    second: str
    kind: str
    """How the answers differ (the demo: the corruption applied to the reference answer)."""
    record: Mapping[str, Any]
    """What the judge reads its ground truth from."""
