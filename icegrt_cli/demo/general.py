"""A small closed-world general-skills set, to see whether domain training causes forgetting.

Three skills, each asked two ways: an open question with a short answer, and a yes/no check of
a stated answer (half of them true). Every item is answerable with what SFT teaches:

- arithmetic: one-step word problems with small numbers (sums of two numbers up to 5,
  differences from minuends up to 10) in the SFT templates, with new name/item combinations.
- comparison: the larger or smaller of two numbers up to 20, in new pairs and orders.
- fact: facts about an invented world. Each fact has one open wording and one check wording
  held out (rotating with the country, so every wording is taught for most countries): SFT asks
  the fact every other way and describes the country, the test asks it the held-out ways.

The checks exist because, in the default SFT mix, the one-token general answers are a small
share of the loss (it is summed over tokens, and the ad answers are long): the ~1M preset then
learns little beyond each template's usual answer and stays near the floor on open questions.
A model answering a check template with a constant scores half of those checks, so the score
starts mid-range and can move both ways: answers drifting to the domain's style drop it,
learned skills raise it (a larger general weight in the SFT mix lifts the open questions).

The test: `TEST_SHARES` of open fact questions and of fact checks (whole true/false pairs, so
balanced), the rest half arithmetic, half comparison, `CHECK_SHARE` of those as checks.

The world is fixed (not seeded) so the SFT mix and the test always agree on it. No test prompt
occurs in SFT.

Grading (`general_correct`): exact match after normalisation — case-folded, whitespace
collapsed, an optional leading "Answer:" and outer punctuation removed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from icegrt_cli.demo.sampling import draw_distinct

# country: (capital, river, currency, export, national animal)
WORLD: dict[str, tuple[str, str, str, str, str]] = {
    "Veloria": ("Marn", "Sel", "dram", "amber", "lynx"),
    "Tarnis": ("Telth", "Omber", "lune", "salt", "heron"),
    "Oskeld": ("Ossa", "Vey", "pell", "wool", "ibex"),
    "Brevane": ("Brill", "Cask", "mark", "copper", "otter"),
    "Quillon": ("Quenby", "Lorr", "tael", "glass", "crane"),
    "Ysolde": ("Yarrow", "Fenn", "crown", "tea", "boar"),
    "Karthen": ("Kesk", "Dray", "groat", "figs", "hare"),
    "Dunmere": ("Dolm", "Ashe", "florin", "cedar", "falcon"),
    "Pellory": ("Pira", "Wend", "shell", "iron", "bison"),
    "Ashvale": ("Ashby", "Tamm", "penny", "silk", "seal"),
    "Corvane": ("Coll", "Rhee", "bead", "honey", "stag"),
    "Mirrith": ("Mott", "Glen", "ring", "tin", "wren"),
}
ATTRIBUTES: tuple[str, ...] = ("capital", "river", "currency", "export", "animal")

# attribute: question wordings, all naming the attribute so a held-out one is still familiar
FACT_QUESTIONS: dict[str, tuple[str, ...]] = {
    "capital": (
        "What is the capital of {c}?",
        "Which city is the capital of {c}?",
        "Name the capital city of {c}.",
        "{c} has which city as its capital?",
        "What is {c}'s capital?",
    ),
    "river": (
        "Which river flows through {c}?",
        "What river runs through {c}?",
        "Name the main river of {c}.",
        "Which river crosses {c}?",
        "What is the river of {c}?",
    ),
    "currency": (
        "What currency is used in {c}?",
        "What is the currency of {c}?",
        "Name the currency of {c}.",
        "Which currency does {c} use?",
        "What is {c}'s currency?",
    ),
    "export": (
        "What is the main export of {c}?",
        "What does {c} export most?",
        "Name the chief export of {c}.",
        "Which export is {c} known for?",
        "What is {c}'s main export?",
    ),
    "animal": (
        "What is the national animal of {c}?",
        "Which animal is the emblem of {c}?",
        "Name the national animal of {c}.",
        "Which animal is the national animal of {c}?",
        "What is {c}'s national animal?",
    ),
}

# attribute: two yes/no wordings of "is {v} the attribute of {c}?"
FACT_CHECKS: dict[str, tuple[str, str]] = {
    "capital": ("Is {v} the capital of {c}?", "Is the capital of {c} {v}?"),
    "river": ("Does the {v} flow through {c}?", "Is the {v} the river of {c}?"),
    "currency": ("Is the {v} the currency of {c}?", "Does {c} use the {v}?"),
    "export": ("Is {v} the main export of {c}?", "Does {c} mainly export {v}?"),
    "animal": ("Is the {v} the national animal of {c}?", "Is the national animal of {c} the {v}?"),
}

NAMES: tuple[str, ...] = (
    "Mira",
    "Tomas",
    "Ana",
    "Lee",
    "Priya",
    "Omar",
    "Jun",
    "Sofia",
    "Ravi",
    "Elena",
    "Noor",
    "Felix",
)
ITEMS: tuple[str, ...] = ("apples", "pencils", "stamps", "marbles", "books", "shells")
MAX_OPERAND = 5  # sums of two operands up to this; differences from minuends up to 10
MAX_COMPARED = 20  # numbers compared are 1..MAX_COMPARED
CHECK_SHARE = 0.6  # of arithmetic and comparison items asked as yes/no checks
# of the test; the rest is half arithmetic, half comparison
TEST_SHARES: dict[str, float] = {"open fact": 0.1, "fact check": 0.2}


@dataclass(frozen=True)
class GeneralItem:
    """One question with its short answer; `kind` is arithmetic, comparison or fact."""

    prompt: str
    answer: str
    kind: str


def describe(country: str) -> str:
    """All five facts about a country in two sentences (taught in SFT)."""
    capital, river, currency, export, animal = WORLD[country]
    return (
        f"The capital of {country} is {capital} and the {river} flows through it. "
        f"{country} uses the {currency}, exports {export}, and its national animal is "
        f"the {animal}."
    )


def _rotation(country: str, attribute: str) -> int:
    return sorted(WORLD).index(country) + ATTRIBUTES.index(attribute)


def heldout_wording(country: str, attribute: str) -> int:
    """Index of the open wording kept for the test; rotates so no wording is only ever held
    out."""
    return _rotation(country, attribute) % len(FACT_QUESTIONS[attribute])


def fact_questions(heldout: bool) -> list[GeneralItem]:
    """Every fact asked in its held-out wording (test) or in all the other wordings (SFT)."""
    items = []
    for country in sorted(WORLD):
        for attribute, answer in zip(ATTRIBUTES, WORLD[country], strict=True):
            kept = heldout_wording(country, attribute)
            for i, wording in enumerate(FACT_QUESTIONS[attribute]):
                if (i == kept) == heldout:
                    items.append(GeneralItem(wording.format(c=country), answer, "fact"))
    return items


def teaching_items() -> list[GeneralItem]:
    """The open SFT fact items: a description of each country and the non-held-out questions."""
    descriptions = [GeneralItem(f"Tell me about {c}.", describe(c), "fact") for c in sorted(WORLD)]
    return descriptions + fact_questions(heldout=False)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def fact_checks(rng: random.Random, heldout: bool) -> list[GeneralItem]:
    """Every fact checked twice, stated rightly and with another country's value, in its test
    check wording (`heldout`) or in the other one (SFT); pairs stay adjacent."""
    items = []
    for country in sorted(WORLD):
        for attribute, answer in zip(ATTRIBUTES, WORLD[country], strict=True):
            wording = FACT_CHECKS[attribute][(_rotation(country, attribute) + int(heldout)) % 2]
            other = rng.choice([c for c in sorted(WORLD) if c != country])
            wrong = WORLD[other][ATTRIBUTES.index(attribute)]
            items.append(GeneralItem(wording.format(v=answer, c=country), "yes", "fact"))
            items.append(GeneralItem(wording.format(v=wrong, c=country), "no", "fact"))
    return items


def _stated(rng: random.Random, result: int) -> tuple[int, bool]:
    """The result to check: half the time the right one, else one or two off (never negative)."""
    if rng.random() < 0.5:
        return result, True
    offset = rng.choice((1, 2))
    return (result - offset if result >= offset and rng.random() < 0.5 else result + offset), False


def arithmetic_item(rng: random.Random) -> GeneralItem:
    """A one-step word problem (a small sum, or a difference from a minuend up to 10) that asks
    for the result or whether a stated result is right."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if rng.random() < 0.5:
        a, b = rng.randint(1, MAX_OPERAND), rng.randint(1, MAX_OPERAND)
        story, result = f"{name} has {a} {item} and gets {b} more.", a + b
        question, check = (
            f"How many {item} does {name} have now?",
            f"Does {name} have {{}} {item} now?",
        )
    else:
        a = rng.randint(2, 2 * MAX_OPERAND)
        b = rng.randint(1, min(MAX_OPERAND, a - 1))
        story, result = f"{name} had {a} {item} and gave away {b}.", a - b
        question, check = f"How many {item} are left?", f"Are {{}} {item} left?"
    if rng.random() >= CHECK_SHARE:
        return GeneralItem(f"{story} {question}", str(result), "arithmetic")
    stated, right = _stated(rng, result)
    return GeneralItem(f"{story} {check.format(stated)}", _yes_no(right), "arithmetic")


def comparison_item(rng: random.Random) -> GeneralItem:
    """The larger or smaller of two numbers, or whether the first is larger/smaller."""
    a, b = rng.sample(range(1, MAX_COMPARED + 1), 2)
    word, pick = rng.choice((("larger", max), ("smaller", min)))
    if rng.random() >= CHECK_SHARE:
        return GeneralItem(f"Which is {word}, {a} or {b}?", str(pick(a, b)), "comparison")
    return GeneralItem(f"Is {a} {word} than {b}?", _yes_no(pick(a, b) == a), "comparison")


def distinct_items(
    rng: random.Random, maker: Callable[[random.Random], GeneralItem], n: int, seen: set[str]
) -> list[GeneralItem]:
    """`n` items from `maker` whose prompts are not in `seen` (which is updated)."""
    return draw_distinct(lambda: maker(rng), n, seen, f"general {maker.__name__} items")


def _arithmetic_and_comparison(rng: random.Random, n: int, seen: set[str]) -> list[GeneralItem]:
    """`n` new items (prompts not in `seen`), split evenly between arithmetic and comparison."""
    n = max(n, 0)
    return distinct_items(rng, arithmetic_item, n // 2, seen) + distinct_items(
        rng, comparison_item, n - n // 2, seen
    )


def general_sft_items(rng: random.Random, n: int) -> list[GeneralItem]:
    """`n` SFT items in random order: every fact taught (open questions, descriptions, checks),
    then arithmetic and comparison."""
    items = (teaching_items() + fact_checks(rng, heldout=False))[:n]
    items += _arithmetic_and_comparison(rng, n - len(items), {item.prompt for item in items})
    rng.shuffle(items)
    return items


def general_test_items(rng: random.Random, n: int, seen_prompts: set[str]) -> list[GeneralItem]:
    """`n` items in random order whose prompts never occur in SFT: held-out open fact questions
    and fact checks (both ways, so balanced) in their `TEST_SHARES`, then arithmetic and
    comparison."""
    opens, checks = fact_questions(heldout=True), fact_checks(rng, heldout=True)
    n_open = min(round(n * TEST_SHARES["open fact"]), len(opens))
    n_pairs = min(round(n * TEST_SHARES["fact check"] / 2), len(checks) // 2)
    items = rng.sample(opens, n_open)
    items += [
        item for i in rng.sample(range(0, len(checks), 2), n_pairs) for item in checks[i : i + 2]
    ]
    seen = set(seen_prompts) | {item.prompt for item in opens + checks}
    items += _arithmetic_and_comparison(rng, n - len(items), seen)
    rng.shuffle(items)
    return items


def _normalise(text: str) -> str:
    text = " ".join(text.casefold().split())
    text = re.sub(r"^answer\s*:\s*", "", text)
    return text.strip(" .,;:!?\"'")


def general_correct(response: str, answer: str) -> bool:
    """Exact match of the response and the answer after normalisation (see module doc)."""
    return _normalise(response) == _normalise(answer)
