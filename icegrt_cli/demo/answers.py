"""The answer format the model learns, and the ideal answer for an ad's ground truth.

    Verdict: reject
    Analysis: "<phrase>" is <policy name> (<CODE>); "<phrase>" is <policy name> (<CODE>).

    Verdict: approve
    Analysis: no policy applies; "<near-miss phrase>" is allowed.

Violations are listed in the order they appear in the ad. An approve answer without near misses
is just `no policy applies.`
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from icegrt_cli.demo.policies import POLICY_BY_CODE


def violation_clause(phrase: str, code: str) -> str:
    """`"<phrase>" is <name> (<CODE>)`: the unit the gold scorer credits."""
    return f'"{phrase}" is {POLICY_BY_CODE[code].name} ({code})'


def format_answer(verdict: str, clauses: Iterable[str]) -> str:
    """Join the verdict line and the analysis clauses into a complete answer."""
    return f"Verdict: {verdict}\nAnalysis: {'; '.join(clauses)}."


def approve_clauses(near_misses: Iterable[str]) -> list[str]:
    """Clauses of a correct approve analysis that checks the given near misses."""
    return ["no policy applies"] + [f'"{phrase}" is allowed' for phrase in near_misses]


def ideal_response(gold: Mapping[str, Any]) -> str:
    """The complete, specific, correct answer for an ad: it scores 1.0 with the gold scorer."""
    if gold["verdict"] == "reject":
        clauses = [violation_clause(v["phrase"], v["code"]) for v in gold["violations"]]
        return format_answer("reject", clauses)
    return format_answer("approve", approve_clauses(gold["near_misses"]))
