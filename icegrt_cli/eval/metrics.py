"""Scoring as pure functions: multiple-choice accuracy, answer extraction, exact match, stderr.

Definitions follow lm-evaluation-harness so numbers compare with published tables:
- `acc`: the choice with the largest summed continuation log-prob is the gold one;
  `acc_norm` divides each sum by the choice's length in characters, `acc_bytes` by its UTF-8
  bytes (harness `api/task.py`, multiple-choice `process_results`). Ties go to the first.
- standard error of a mean: sample standard deviation (n - 1) / sqrt(n) (harness
  `api/metrics.py: mean_stderr`).
- GSM8K: strict `#### n` (first match) and flexible "last number in the text"; both sides drop
  ",", "$" and a trailing "." before comparing (harness `gsm8k.yaml` filters and
  `regexes_to_ignore`).
- MATH: the last `\\boxed{}` of the solution against the model's boxed / `$...$` answer, both
  normalised the way Hendrycks et al.'s `is_equiv` does (harness `hendrycks_math/utils.py`).

How agreement was checked: each rule above was restated from the harness source files named,
then pinned by hand-worked examples in tests/test_eval_metrics.py (a case where acc and
acc_norm disagree, one where characters and bytes disagree, strict vs flexible GSM8K, the MATH
normalisations); the context / continuation split and the summed log-probs are compared with
a direct, unpadded forward pass in tests/test_eval_loglik.py. The harness is not a dependency,
so no side-by-side run is part of the tests.
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


def exact_match(prediction: str | None, target: str) -> float:
    return float(prediction is not None and prediction.strip() == target.strip())


# --- GSM8K -------------------------------------------------------------------------------

_HASH_ANSWER = re.compile(r"#### (-?[0-9.,]+)")
_NUMBER = re.compile(r"-?\$?[0-9][0-9,]*(?:\.[0-9]+)?")


def clean_number(text: str) -> str:
    """Drop thousands separators, dollar signs and a trailing full stop."""
    return text.strip().replace(",", "").replace("$", "").removesuffix(".")


def gsm8k_target(answer: str) -> str:
    """The number after `#### ` in a GSM8K solution."""
    return clean_number(answer.rsplit("####", 1)[-1])


def extract_hash_answer(text: str) -> str | None:
    """Strict: the first `#### n` the model wrote."""
    found = _HASH_ANSWER.search(text)
    return clean_number(found.group(1)) if found else None


def extract_last_number(text: str) -> str | None:
    """Flexible: the last number anywhere in the text."""
    found = _NUMBER.findall(text)
    return clean_number(found[-1]) if found else None


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
    """The model's final answer: last boxed, else a `\\[...\\]` display, else `$...$`, else all."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    display = re.search(r"\\\[(.+?)\\\]", text, re.DOTALL)
    if display:
        return display.group(1).strip()
    dollars = [i for i, ch in enumerate(text) if ch == "$"]
    if len(dollars) >= 2:
        return text[dollars[0] + 1 : dollars[-1]]
    return text.strip()


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
