"""Eval metrics on hand-worked examples (lm-evaluation-harness definitions)."""

from __future__ import annotations

import pytest

from icegrt_cli.eval.metrics import (
    argmax,
    choice_metrics,
    exact_match,
    extract_bbh_answer,
    extract_hash_answer,
    extract_last_number,
    extract_math_answer,
    gsm8k_target,
    last_boxed,
    math_equal,
    mean_stderr,
    normalize_math,
    paired_difference,
)


def test_acc_and_acc_norm_agree():
    # sums -3.0 ("ab") and -2.0 ("abcd"): acc picks 1; per char -3/2 = -1.5 vs -2/4 = -0.5 -> 1
    assert choice_metrics([-3.0, -2.0], ["ab", "abcd"], gold=1) == {
        "acc": 1.0,
        "acc_norm": 1.0,
        "acc_bytes": 1.0,
    }


def test_acc_and_acc_norm_disagree():
    # sums -2.0 ("ab") and -3.0 ("abcdef"): acc picks 0; per char -2/2 = -1.0 vs -3/6 = -0.5 -> 1
    assert choice_metrics([-2.0, -3.0], ["ab", "abcdef"], gold=1) == {
        "acc": 0.0,
        "acc_norm": 1.0,
        "acc_bytes": 1.0,
    }


def test_bytes_differ_from_chars_for_non_ascii():
    # "éé": 2 chars, 4 bytes; "abc": 3 chars, 3 bytes. Sums -2.0 and -2.7.
    # per char: -2/2 = -1.0 vs -2.7/3 = -0.9 -> 1; per byte: -2/4 = -0.5 vs -0.9 -> 0.
    assert choice_metrics([-2.0, -2.7], ["éé", "abc"], gold=0) == {
        "acc": 1.0,
        "acc_norm": 0.0,
        "acc_bytes": 1.0,
    }


def test_ties_go_to_the_first_choice():
    assert argmax([-1.0, -1.0, -2.0]) == 0
    assert choice_metrics([-1.0, -1.0], ["a", "b"], gold=1)["acc"] == 0.0


def test_paired_difference_by_hand():
    # differences 1, 0, 0, 1: mean 0.5; sample variance 4 x 0.25 / 3 = 1/3; se sqrt(1/3) / 2
    ppo, sft = [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]
    assert paired_difference(ppo, sft) == pytest.approx((0.5, 0.2886751))
    # gold scores 0.9 / 0.6 / 0.3 against 0.8 / 0.6 / 0.1: differences 0.1, 0, 0.2, mean 0.1,
    # variance (0 + 0.01 + 0.01) / 2 = 0.01, se 0.1 / sqrt(3) = 0.0577350
    assert paired_difference([0.9, 0.6, 0.3], [0.8, 0.6, 0.1]) == pytest.approx((0.1, 0.0577350))
    # the same shift on every item is certain: pairing removes the spread between items
    assert paired_difference([0.2, 0.5, 0.9], [0.1, 0.4, 0.8]) == pytest.approx((0.1, 0.0))
    assert paired_difference([1.0], [0.0]) == (1.0, None)
    with pytest.raises(ValueError, match="same"):
        paired_difference([1.0, 0.0], [1.0])


def test_mean_stderr_is_sample_std_over_sqrt_n():
    # mean 0.75; squared deviations 3 x 0.0625 + 0.5625 = 0.75; / (n - 1) = 0.25; std 0.5;
    # / sqrt(4) = 0.25
    assert mean_stderr([1.0, 0.0, 1.0, 1.0]) == pytest.approx(0.25)
    assert mean_stderr([1.0]) is None
    assert mean_stderr([0.5, 0.5]) == 0.0


def test_gsm8k_strict_and_flexible_extraction():
    target = gsm8k_target("Together that is 1250 + 2500 = <<1250+2500=3750>>3,750.\n#### 3,750")
    assert target == "3750"
    assert extract_hash_answer("So 3,750 apples.\n#### 3,750") == "3750"
    assert extract_hash_answer("#### 14.") == "14"
    assert extract_hash_answer("#### $14") is None  # the harness's strict pattern wants digits
    assert extract_hash_answer("the total is 14") is None
    assert extract_last_number("First 12, then the answer is $1,234.") == "1234"
    assert extract_last_number("no digits here") is None
    assert extract_last_number("It is 7 ...") == ".."  # the harness's pattern, quirk kept
    assert gsm8k_target("#### 1,000,000") == "1000000"
    # strict fails where flexible succeeds: no `####` line, right final number
    text = "She spends 12 + 2 = 14 dollars."
    assert exact_match(extract_hash_answer(text), "14") == 0.0
    assert exact_match(extract_last_number(text), "14") == 1.0


def test_last_boxed_balances_braces():
    assert last_boxed("so $\\boxed{\\frac{3}{4}}$.") == "\\frac{3}{4}"
    assert last_boxed("first \\boxed{1}, then \\boxed{2}") == "2"
    assert last_boxed("\\boxed 5$ done") == "5"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{unclosed") is None


@pytest.mark.parametrize(
    ("prediction", "target"),
    [
        ("\\dfrac12", "\\frac{1}{2}"),
        ("0.5", "\\frac{1}{2}"),
        ("3/4", "\\frac{3}{4}"),
        ("x = 5", "5"),
        ("70^\\circ", "70"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("10\\%", "10"),
        ("4x + 4", "4x+4"),
        ("\\left(1, 2\\right)", "(1,2)"),
        ("5\\text{ cm}", "5"),
        (".5", "0.5"),
    ],
)
def test_math_equivalence(prediction, target):
    assert math_equal(prediction, target) == 1.0


def test_math_non_equivalence():
    assert math_equal("\\frac{1}{3}", "\\frac{1}{2}") == 0.0
    assert normalize_math("\\frac{1}{2}") == "\\frac{1}{2}"


def test_math_answer_extraction_is_the_harness_dollar_span():
    assert extract_math_answer("Thus $y = \\boxed{6}$.") == "y = \\boxed{6}"
    assert extract_math_answer("The answer is $4x+4$.") == "4x+4"
    assert extract_math_answer("first $1$, then $2$") == "1$, then $2"  # first to last $
    assert extract_math_answer("We get \\boxed{3} in the end") == "We get \\boxed{3} in the end"
    assert math_equal(extract_math_answer(" 12 "), "12") == 1.0
    # a boxed answer alone is not pulled out: the harness marks it wrong
    assert math_equal(extract_math_answer("so \\boxed{12}"), "12") == 0.0


def test_bbh_answer_extraction():
    assert extract_bbh_answer(" False") == "False"
    assert extract_bbh_answer("Let's think. 2 + 2 = 4. So the answer is (B).") == "(B)"
    assert exact_match(extract_bbh_answer(" 5\n"), "5") == 1.0
    assert exact_match(None, "5") == 0.0
