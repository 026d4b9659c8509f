"""A small closed-world general-skills set, to see whether domain training causes forgetting.

Three skills: arithmetic word problems, comparisons, and facts about an invented world. The
world is fixed (not seeded) so the SFT mix and the test always agree on it. SFT teaches every
fact; the test asks about the same facts with question wordings never used in SFT, and poses
the arithmetic and comparison skills with new numbers and names.

Grading (`general_correct`): exact match after normalisation — case-folded, whitespace
collapsed, an optional leading "Answer:" and outer punctuation removed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

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

# attribute: (SFT question wordings, held-out test wordings)
FACT_QUESTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "capital": (
        ("What is the capital of {c}?", "Which city is the capital of {c}?"),
        ("Name the capital city of {c}.", "{c} has which city as its capital?"),
    ),
    "river": (
        ("Which river flows through {c}?", "What river runs through {c}?"),
        ("Name the main river of {c}.", "Which river crosses {c}?"),
    ),
    "currency": (
        ("What currency is used in {c}?", "What is the currency of {c}?"),
        ("What do people in {c} pay with?", "Name the money used in {c}."),
    ),
    "export": (
        ("What is the main export of {c}?", "What does {c} export most?"),
        ("Name the chief export of {c}.", "What is {c} known for exporting?"),
    ),
    "animal": (
        ("What is the national animal of {c}?", "Which animal is the emblem of {c}?"),
        ("Name the national animal of {c}.", "Which animal is the symbol of {c}?"),
    ),
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


def _answer_of(country: str, attribute: str) -> str:
    return WORLD[country][ATTRIBUTES.index(attribute)]


def fact_item(rng: random.Random, heldout: bool) -> GeneralItem:
    """A question about one fact, worded as in SFT or in a held-out way."""
    country = rng.choice(sorted(WORLD))
    attribute = rng.choice(ATTRIBUTES)
    wordings = FACT_QUESTIONS[attribute][1 if heldout else 0]
    question = rng.choice(wordings).format(c=country)
    return GeneralItem(question, _answer_of(country, attribute), "fact")


def arithmetic_item(rng: random.Random) -> GeneralItem:
    """A one-step word problem with addition, subtraction or multiplication."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    op = rng.choice(("add", "sub", "mul"))
    if op == "add":
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        prompt = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        return GeneralItem(prompt, str(a + b), "arithmetic")
    if op == "sub":
        a = rng.randint(10, 60)
        b = rng.randint(1, a - 1)
        prompt = f"{name} had {a} {item} and gave away {b}. How many {item} are left?"
        return GeneralItem(prompt, str(a - b), "arithmetic")
    a, b = rng.randint(2, 12), rng.randint(2, 9)
    prompt = f"A box holds {a} {item}. How many {item} are in {b} boxes?"
    return GeneralItem(prompt, str(a * b), "arithmetic")


def comparison_item(rng: random.Random) -> GeneralItem:
    """Larger/smaller of two numbers, or the end of a three-person ordering."""
    if rng.random() < 0.5:
        a, b = rng.sample(range(2, 200), 2)
        word, pick = rng.choice((("larger", max), ("smaller", min)))
        return GeneralItem(f"Which is {word}, {a} or {b}?", str(pick(a, b)), "comparison")
    p, q, r = rng.sample(NAMES, 3)
    trait, top, bottom = rng.choice(
        (("taller", "tallest", "shortest"), ("older", "oldest", "youngest"))
    )
    ask_top = rng.random() < 0.5
    prompt = (
        f"{p} is {trait} than {q}. {q} is {trait} than {r}. "
        f"Who is the {top if ask_top else bottom}?"
    )
    return GeneralItem(prompt, p if ask_top else r, "comparison")


_SKILLS: tuple[tuple[str, float], ...] = (("arithmetic", 0.4), ("comparison", 0.3), ("fact", 0.3))


def _draw(rng: random.Random, heldout: bool) -> GeneralItem:
    makers: dict[str, Callable[[], GeneralItem]] = {
        "arithmetic": lambda: arithmetic_item(rng),
        "comparison": lambda: comparison_item(rng),
        "fact": lambda: fact_item(rng, heldout),
    }
    kind = rng.choices([k for k, _ in _SKILLS], weights=[w for _, w in _SKILLS])[0]
    return makers[kind]()


def teaching_items() -> list[GeneralItem]:
    """Items that guarantee every fact is taught in SFT: a description of each country and one
    direct question per fact."""
    items = [GeneralItem(f"Tell me about {c}.", describe(c), "fact") for c in sorted(WORLD)]
    for c in sorted(WORLD):
        for attribute in ATTRIBUTES:
            question = FACT_QUESTIONS[attribute][0][0].format(c=c)
            items.append(GeneralItem(question, _answer_of(c, attribute), "fact"))
    return items


def general_sft_items(rng: random.Random, n: int) -> list[GeneralItem]:
    """`n` SFT items: the teaching items first, then random skill items."""
    items = teaching_items()[:n]
    while len(items) < n:
        items.append(_draw(rng, heldout=False))
    return items


def general_test_items(rng: random.Random, n: int, seen_prompts: set[str]) -> list[GeneralItem]:
    """`n` distinct held-out items whose prompts never occur in SFT."""
    items: list[GeneralItem] = []
    prompts = set(seen_prompts)
    for _ in range(100 * n):
        if len(items) == n:
            break
        item = _draw(rng, heldout=True)
        if item.prompt not in prompts:
            prompts.add(item.prompt)
            items.append(item)
    if len(items) < n:
        raise ValueError(f"could not draw {n} distinct general test items")
    return items


def _normalise(text: str) -> str:
    text = " ".join(text.casefold().split())
    text = re.sub(r"^answer\s*:\s*", "", text)
    return text.strip(" .,;:!?\"'")


def general_correct(response: str, answer: str) -> bool:
    """Exact match of the response and the answer after normalisation (see module doc)."""
    return _normalise(response) == _normalise(answer)
