"""The advertising policy catalogue: codes, names, trigger phrases and allowed near misses.

The catalogue itself is data, `policies.json` beside this file (policies with their phrase frames,
product types, generic ad text), read once at import; this module gives it types and the lookups.

Phrases are built from small frames with slots so that each policy has many paraphrases. Some slot
values, and every seventh slot combination, are *held out*: they only ever appear in the test split,
so the test measures whether a model recognises a new paraphrase of a known violation rather than
whether it remembers a phrase it saw in training. Products are held out the same way.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

CATALOGUE = Path(__file__).resolve().with_name("policies.json")
_RAW: dict[str, Any] = json.loads(CATALOGUE.read_text(encoding="utf-8"))

CATEGORIES: tuple[str, ...] = tuple(_RAW["categories"])
HOLDOUT_EVERY: int = _RAW["holdout_every"]  # every 7th slot combination of a frame is held out

Slots = Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]


@dataclass(frozen=True)
class Frame:
    """A phrase template; each slot has (training values, held-out values)."""

    template: str
    slots: Slots
    categories: tuple[str, ...] = CATEGORIES

    def expand(self) -> tuple[tuple[str, bool], ...]:
        """All (phrase, held_out) pairs in a fixed order."""
        names = list(self.slots)
        values = [train + held for train, held in self.slots.values()]
        held_values = [set(held) for _, held in self.slots.values()]
        out = []
        for i, combo in enumerate(itertools.product(*values)):
            phrase = self.template.format(**dict(zip(names, combo, strict=True)))
            held = i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 or any(
                v in hv for v, hv in zip(combo, held_values, strict=True)
            )
            out.append((phrase, held))
        return tuple(out)


@dataclass(frozen=True)
class Policy:
    """One advertising policy: what breaks it (triggers) and what looks close but is allowed."""

    code: str
    name: str
    triggers: tuple[Frame, ...]
    near_misses: tuple[Frame, ...]
    weight: float = 1.0  # relative chance of being picked when the ad's category allows it

    def categories(self) -> tuple[str, ...]:
        """Categories whose ads can break this policy."""
        cats = {c for f in self.triggers for c in f.categories}
        return tuple(c for c in CATEGORIES if c in cats)


@dataclass(frozen=True)
class Products:
    """Product types of one category, split into training and held-out ones."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    headlines: tuple[str, ...]
    sentences: tuple[str, ...]  # neutral body sentences; "{product}" is filled in
    offers: tuple[str, ...]  # neutral offers with price and terms; "{price}" is filled in


def _frame(raw: Mapping[str, Any]) -> Frame:
    slots = {name: (tuple(s["train"]), tuple(s["held"])) for name, s in raw["slots"].items()}
    return Frame(raw["template"], MappingProxyType(slots), tuple(raw["categories"]))


POLICIES: tuple[Policy, ...] = tuple(
    Policy(
        raw["code"],
        raw["name"],
        tuple(_frame(f) for f in raw["triggers"]),
        tuple(_frame(f) for f in raw["near_misses"]),
        raw["weight"],
    )
    for raw in _RAW["policies"]
)

POLICY_BY_CODE: Mapping[str, Policy] = MappingProxyType({p.code: p for p in POLICIES})

PRODUCTS: Mapping[str, Products] = MappingProxyType(
    {
        category: Products(**{key: tuple(values) for key, values in raw.items()})
        for category, raw in _RAW["products"].items()
    }
)

GENERIC_HEADLINES: tuple[str, ...] = tuple(_RAW["generic_headlines"])
GENERIC_SENTENCES: tuple[str, ...] = tuple(_RAW["generic_sentences"])
PRICES: tuple[str, ...] = tuple(
    f"{d}{c}" for d in (9, 12, 19, 24, 29, 39, 49, 59, 79, 99) for c in ("", ".99")
)


@cache
def phrase_pool(code: str, kind: str, category: str, heldout: bool) -> tuple[str, ...]:
    """Phrases of one policy (`kind` is "trigger" or "near_miss") usable in `category`.

    `heldout=True` gives only held-out phrases (test split), False only training phrases.
    """
    policy = POLICY_BY_CODE[code]
    frames = policy.triggers if kind == "trigger" else policy.near_misses
    return tuple(
        phrase
        for frame in frames
        if category in frame.categories
        for phrase, held in frame.expand()
        if held == heldout
    )


def applicable(category: str, kind: str) -> tuple[Policy, ...]:
    """Policies with `kind` phrases for ads of `category`."""
    return tuple(p for p in POLICIES if phrase_pool(p.code, kind, category, False))


@cache
def _phrase_codes() -> Mapping[str, str]:
    table = {}
    for policy in POLICIES:
        for frame in policy.triggers + policy.near_misses:
            for phrase, _ in frame.expand():
                table[phrase] = policy.code
    return MappingProxyType(table)


def policy_of(phrase: str) -> str:
    """The code of the policy a trigger or near-miss phrase belongs to (near misses included)."""
    return _phrase_codes()[phrase]


def catalogue_json() -> dict[str, Any]:
    """The loaded catalogue written back in the layout of policies.json (tested to round-trip)."""

    def frame(f: Frame) -> dict[str, Any]:
        slots = {k: {"train": list(t), "held": list(h)} for k, (t, h) in f.slots.items()}
        return {"template": f.template, "categories": list(f.categories), "slots": slots}

    return {
        "categories": list(CATEGORIES),
        "holdout_every": HOLDOUT_EVERY,
        "policies": [
            {
                "code": p.code,
                "name": p.name,
                "weight": p.weight,
                "triggers": [frame(f) for f in p.triggers],
                "near_misses": [frame(f) for f in p.near_misses],
            }
            for p in POLICIES
        ],
        "products": {c: {k: list(v) for k, v in vars(p).items()} for c, p in PRODUCTS.items()},
        "generic_headlines": list(GENERIC_HEADLINES),
        "generic_sentences": list(GENERIC_SENTENCES),
    }
