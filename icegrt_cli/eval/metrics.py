"""Scoring as pure functions: multiple-choice accuracy, answer extraction, exact match, stderr.

Definitions follow lm-evaluation-harness so numbers compare with published tables:
- `acc`: the choice with the largest summed continuation log-prob is the gold one;
  `acc_norm` divides each sum by the choice's length in characters, `acc_bytes` by its UTF-8
  bytes (harness `api/task.py`, multiple-choice `process_results`). Ties go to the first.
- standard error of a mean: sample standard deviation (n - 1) / sqrt(n) (harness
  `api/metrics.py: mean_stderr`).
- GSM8K: strict `#### n` (first match) and flexible (last match of the harness's number
  pattern); both sides drop ",", "$", everything up to "#### " and a trailing "." and are
  lower-cased before comparing (harness `gsm8k.yaml` filters and `regexes_to_ignore`).
- MATH: the last `\\boxed{}` of the solution against the text between the model's first and
  last `$` (all of it without two), both normalised the way Hendrycks et al.'s `is_equiv` does
  (harness `hendrycks_math/utils.py`).

How agreement was checked: each rule above was restated from the harness source files named,
then pinned by hand-worked examples in tests/test_eval_metrics.py (a case where acc and
acc_norm disagree, one where characters and bytes disagree, strict vs flexible GSM8K, the MATH
normalisations); the context / continuation split and the summed log-probs are compared with
a direct, unpadded forward pass in tests/test_eval_loglik.py. The harness is not a dependency;
benchmarks/lm_eval_agreement.py runs it side by side on the same model and items.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

LOWER_IS_BETTER = frozenset({"hallucinated"})
"""Metrics where a drop is an improvement (the comparison table colours deltas by this)."""


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties, as numpy's argmax."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def choice_metrics(logliks: Sequence[float], choices: Sequence[str], gold: int) -> dict[str, float]:
    """acc, acc_norm (per character) and acc_bytes (per UTF-8 byte) of one multiple-choice item.

    `logliks[i]` is the summed log-prob of continuation i; `choices[i]` its text without the
    target delimiter (the harness measures the choice, not the joined " " + choice).
    """
    chars = [ll / len(c) for ll, c in zip(logliks, choices, strict=True)]
    nbytes = [ll / len(c.encode("utf-8")) for ll, c in zip(logliks, choices, strict=True)]
    return {
        "acc": float(argmax(logliks) == gold),
        "acc_norm": float(argmax(chars) == gold),
        "acc_bytes": float(argmax(nbytes) == gold),
    }


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean; None for fewer than two values (undefined)."""
    n = len(values)
    if n < 2:
        return None
    mu = mean(values)
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error of the per-item differences a_i - b_i of two models scored on
    the same items (item i of `a` and of `b` is the same question).

    Pairing removes the spread between items that both models share - an easy item is easy for
    both - so the standard error of a difference in means is that of the differences, not
    sqrt(se_a^2 + se_b^2), and it is usually much smaller. None for fewer than two items.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference: {len(a)} and {len(b)} items; need the same, >= 1")
    differences = [x - y for x, y in zip(a, b, strict=True)]
    return mean(differences), mean_stderr(differences)


def exact_match(prediction: str | None, target: str) -> float:
    return float(prediction is not None and prediction.strip() == target.strip())


# --- GSM8K -------------------------------------------------------------------------------

_HASH_ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_IGNORED = tuple(re.compile(p) for p in (",", r"\$", r"(?s).*#### ", r"\.$"))
"""Removed from answer and target before comparing, in this order (`regexes_to_ignore`)."""


def clean_number(text: str) -> str:
    """The harness's comparison form: `regexes_to_ignore` removed, lower case."""
    for pattern in _IGNORED:
        text = pattern.sub("", text)
    return text.lower()


def gsm8k_target(answer: str) -> str:
    """The number after `#### ` in a GSM8K solution."""
    return clean_number(answer)


def extract_hash_answer(text: str) -> str | None:
    """Strict: the first `#### n` the model wrote."""
    found = _HASH_ANSWER.search(text)
    return clean_number(found.group(1)) if found else None


def extract_last_number(text: str) -> str | None:
    """Flexible: the last match of the harness's number pattern (its quirks kept: a run of
    two or more of `$0-9.,` counts, so "7 ..." ends in ".." rather than 7)."""
    found = _FLEXIBLE.findall(text)
    return clean_number(next(g for g in found[-1] if g)) if found else None


# --- MATH --------------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Contents of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced; None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:]
    if rest.startswith("\\boxed "):  # `\boxed 5$` form, ended by the math delimiter
        return rest[len("\\boxed ") :].split("$")[0].strip()
    open_at = rest.find("{")
    if open_at < 0:
        return None
    depth = 0
    for index in range(open_at, len(rest)):
        depth += {"{": 1, "}": -1}.get(rest[index], 0)
        if depth == 0:
            return rest[open_at + 1 : index]
    return None


def extract_math_answer(text: str) -> str:
    """The model's answer as the harness's `hendrycks_math` takes it: the text between the
    first and the last `$`, else all of it (a `\\boxed{}` is not looked for)."""
    dollars = [i for i, ch in enumerate(text) if ch == "$"]
    return text[dollars[0] + 1 : dollars[-1]] if len(dollars) >= 2 else text


def _brace_fracs(text: str) -> str:
    r"""`\frac12` -> `\frac{1}{2}`, `\frac1{x}` -> `\frac{1}{x}`."""
    head, *parts = text.split("\\frac")
    out = head
    for part in parts:
        out += "\\frac"
        if part.startswith("{"):
            out += part
        elif len(part) < 2:
            return text
        elif part[1] == "{":
            out += "{" + part[0] + "}" + part[1:]
        else:
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
    return out


def _brace_sqrt(text: str) -> str:
    r"""`\sqrt3` -> `\sqrt{3}`."""
    return re.sub(r"\\sqrt([^{])", r"\\sqrt{\1}", text)


def _slash_to_frac(text: str) -> str:
    r"""`3/4` (two plain integers) -> `\frac{3}{4}`."""
    match = re.fullmatch(r"(-?[0-9]+)/([0-9]+)", text)
    return f"\\frac{{{match.group(1)}}}{{{match.group(2)}}}" if match else text


def normalize_math(text: str) -> str:
    """Canonical form of a MATH answer, step for step as Hendrycks et al.'s `strip_string`."""
    s = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "")
    s = s.split("\\text{ ")[0]  # units written as `\text{ cm}` on the right
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "x = 5" -> "5"
        s = sides[1]
    s = _brace_sqrt(s).replace(" ", "")
    s = _brace_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _slash_to_frac(s)


def math_equal(prediction: str, target: str) -> float:
    return float(normalize_math(prediction) == normalize_math(target))


# --- BBH ---------------------------------------------------------------------------------

_ANSWER_IS = re.compile(r"the answer is\s*(.+?)\s*\.?\s*$", re.IGNORECASE | re.MULTILINE)


def extract_bbh_answer(text: str) -> str:
    """Answer-only prompts: the text itself; chain-of-thought: what follows "the answer is"."""
    found = _ANSWER_IS.findall(text)
    return found[-1].strip() if found else text.strip()
