"""The gold scorer on hand-worked answers, and the ideal answer on every bundled item."""

from __future__ import annotations

import json

import pytest

from icegrt_cli.demo import demo_file, gold_score, ideal_response, parse_answer
from icegrt_cli.demo.general import general_correct

TWO = {
    "verdict": "reject",
    "violations": [
        {"code": "HEALTH_CLAIM", "phrase": "Cures arthritis in 7 days"},
        {"code": "GUARANTEED_RETURN", "phrase": "Guaranteed 30% monthly return"},
    ],
    "near_misses": [],
}
CLEAN = {"verdict": "approve", "violations": [], "near_misses": ["Sale ends Sunday"]}
IDEAL_TWO = (
    "Verdict: reject\n"
    'Analysis: "Cures arthritis in 7 days" is an absolute health claim (HEALTH_CLAIM); '
    '"Guaranteed 30% monthly return" is a guaranteed financial return (GUARANTEED_RETURN).'
)


def test_ideal_response_is_the_documented_format_and_scores_one() -> None:
    assert ideal_response(TWO) == IDEAL_TWO
    s = gold_score(IDEAL_TWO, TWO)
    assert (s.score, s.verdict_correct, s.recall, s.evidence, s.hallucinated, s.format_ok) == (
        1.0,
        True,
        1.0,
        1.0,
        0,
        True,
    )
    assert ideal_response(CLEAN) == (
        'Verdict: approve\nAnalysis: no policy applies; "Sale ends Sunday" is allowed.'
    )
    assert gold_score(ideal_response(CLEAN), CLEAN).score == 1.0


def test_approve_without_near_misses_reaches_one() -> None:
    gold = {"verdict": "approve", "violations": [], "near_misses": []}
    assert gold_score("Verdict: approve\nAnalysis: no policy applies.", gold).score == 1.0


def test_wrong_verdict_earns_only_format() -> None:
    s = gold_score(
        'Verdict: approve\nAnalysis: no policy applies; "Cures arthritis in 7 days" is allowed.',
        TWO,
    )
    assert not s.verdict_correct
    assert s.score == pytest.approx(0.1)


def test_missing_one_of_two_violations_halves_recall() -> None:
    answer = 'Verdict: reject\nAnalysis: "Cures arthritis in 7 days" is a claim (HEALTH_CLAIM).'
    s = gold_score(answer, TWO)
    assert (s.recall, s.evidence, s.hallucinated) == (0.5, 0.5, 0)
    assert s.score == pytest.approx(0.4 + 0.15 + 0.1 + 0.1)


def test_hallucinated_code_is_penalised() -> None:
    answer = IDEAL_TWO[:-1] + '; "Sale ends Sunday" is fake urgency (FAKE_URGENCY).'
    s = gold_score(answer, TWO)
    assert s.hallucinated == 1 and s.recall == 1.0
    assert s.score == pytest.approx(0.8)
    invented = gold_score(IDEAL_TWO[:-1] + '; "x" is bad (MADE_UP_RULE).', TWO)
    assert invented.hallucinated == 1 and "MADE_UP_RULE" in invented.named_codes


def test_naming_every_code_does_not_pay() -> None:
    codes = [
        "HEALTH_CLAIM",
        "GUARANTEED_RETURN",
        "PROHIBITED_PRODUCT",
        "MISSING_TERMS",
        "MINORS_RESTRICTED",
        "FAKE_URGENCY",
        "UNVERIFIABLE_SUPERLATIVE",
    ]
    answer = "Verdict: reject\nAnalysis: " + "; ".join(f"({c})" for c in codes) + "."
    s = gold_score(answer, TWO)
    assert s.recall == 1.0 and s.hallucinated == 5 and s.score == 0.0


def test_vague_answer_scores_well_below_ideal() -> None:
    s = gold_score("Verdict: reject\nAnalysis: the ad violates our policies.", TWO)
    assert s.verdict_correct and s.format_ok and s.recall == 0.0
    assert s.score == pytest.approx(0.5)


def test_code_without_quote_gets_recall_but_no_evidence() -> None:
    answer = (
        "Verdict: reject\nAnalysis: the ad makes an absolute health claim (HEALTH_CLAIM); "
        "and a guaranteed financial return (GUARANTEED_RETURN)."
    )
    s = gold_score(answer, TWO)
    assert (s.recall, s.evidence) == (1.0, 0.0)
    assert s.score == pytest.approx(0.8)


def test_quote_must_match_the_phrase_in_the_same_clause() -> None:
    swapped = (
        'Verdict: reject\nAnalysis: "Cures arthritis in 7 days" is (GUARANTEED_RETURN); '
        '"Guaranteed 30% monthly return" is (HEALTH_CLAIM).'
    )
    assert gold_score(swapped, TWO).evidence == 0.0
    whole_ad = (
        'Verdict: reject\nAnalysis: "Cures arthritis in 7 days and more" is '
        '(HEALTH_CLAIM); "Guaranteed 30% monthly return" is (GUARANTEED_RETURN).'
    )
    assert gold_score(whole_ad, TWO).evidence == 0.5


def test_malformed_answers() -> None:
    no_labels = gold_score(IDEAL_TWO.replace("Verdict: ", "").replace("Analysis: ", ""), TWO)
    assert no_labels.verdict is None and not no_labels.format_ok and no_labels.score == 0.0
    only_verdict = gold_score("Verdict: reject", TWO)
    assert only_verdict.verdict_correct and not only_verdict.format_ok
    assert only_verdict.score == pytest.approx(0.4)
    rambling = gold_score(IDEAL_TWO + "\nAnalysis: more.", TWO)
    assert not rambling.format_ok and rambling.score == pytest.approx(0.9)
    assert gold_score("", TWO).score == 0.0


def test_parse_is_tolerant_to_whitespace_and_label_case() -> None:
    messy = "\n  verdict :  REJECT \n\n ANALYSIS:" + IDEAL_TWO.split("Analysis:")[1] + "  \n"
    assert parse_answer(messy).verdict == "reject"
    assert gold_score(messy, TWO).score == 1.0
    assert gold_score(IDEAL_TWO.replace("Cures arthritis", "cures  arthritis"), TWO).score == 1.0


def test_approve_with_codes_or_missed_near_miss() -> None:
    flagged = 'Verdict: approve\nAnalysis: "Sale ends Sunday" is fake urgency (FAKE_URGENCY).'
    s = gold_score(flagged, CLEAN)
    assert s.recall == 0.0 and s.hallucinated == 1 and s.score == pytest.approx(0.3)
    skipped = gold_score("Verdict: approve\nAnalysis: no policy applies.", CLEAN)
    assert skipped.evidence == 0.0 and skipped.score == pytest.approx(0.8)


def test_as_dict_is_json_ready() -> None:
    d = gold_score(IDEAL_TWO, TWO).as_dict()
    assert json.loads(json.dumps(d))["named_codes"] == ["HEALTH_CLAIM", "GUARANTEED_RETURN"]


@pytest.mark.parametrize("part", ["prompts", "test"])
def test_ideal_scores_one_on_every_bundled_item(part: str) -> None:
    rows = [json.loads(line) for line in demo_file(part).read_text(encoding="utf-8").splitlines()]
    assert rows
    for row in rows:
        answer = row.get("reference") or ideal_response(row["gold"])
        assert answer == ideal_response(row["gold"])
        assert gold_score(answer, row["gold"]).score == 1.0, row["id"]


def test_general_correct() -> None:
    assert general_correct(" Answer: 12. ", "12")
    assert general_correct("marn", "Marn")
    assert general_correct("Yes.", "yes")
    assert not general_correct("yes, 12", "yes")
    assert not general_correct("12 apples", "12")
    assert not general_correct("Marn or Telth", "Marn")
