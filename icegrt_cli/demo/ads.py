"""Sampling one ad and its ground truth from the policy catalogue."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from icegrt_cli.demo.config import DemoConfig
from icegrt_cli.demo.policies import (
    CATEGORIES,
    GENERIC_HEADLINES,
    GENERIC_SENTENCES,
    PRICES,
    PRODUCTS,
    Policy,
    applicable,
    phrase_pool,
)

INSTRUCTION = "Review this ad for policy violations."
_OFFER_POLICIES = ("MISSING_TERMS",)  # their phrases always sit in the Offer field
_OFFER_OR_BODY = ("FAKE_URGENCY",)  # half of the time in the Offer field, else in the Body


@dataclass(frozen=True)
class Ad:
    """A rendered ad with the ground truth the gold scorer needs."""

    category: str
    product: str
    headline: str
    body: str
    offer: str
    gold: dict[str, Any]

    @property
    def prompt(self) -> str:
        """The review instruction followed by the ad fields, as plain text."""
        return render_prompt(self.product, self.headline, self.body, self.offer)


def render_prompt(product: str, headline: str, body: str, offer: str) -> str:
    """The prompt text (not chat-templated: the toolkit applies the model's template)."""
    return f"{INSTRUCTION}\nProduct: {product}\nHeadline: {headline}\nBody: {body}\nOffer: {offer}"


def _pick_policies(rng: random.Random, pool: tuple[Policy, ...], k: int) -> list[Policy]:
    """Weighted sample of `k` distinct policies, so category-specific ones are not rare."""
    pool_list = list(pool)
    chosen: list[Policy] = []
    for _ in range(min(k, len(pool_list))):
        pick = rng.choices(pool_list, weights=[p.weight for p in pool_list])[0]
        pool_list.remove(pick)
        chosen.append(pick)
    return chosen


def _count(rng: random.Random, weights: tuple[float, ...]) -> int:
    return rng.choices(range(len(weights)), weights=weights)[0]


def sample_ad(rng: random.Random, config: DemoConfig, heldout: bool) -> Ad:
    """Draw one ad; `heldout=True` uses only held-out products and phrases (test split)."""
    category = rng.choice(CATEGORIES)
    products = PRODUCTS[category]
    product = rng.choice(products.heldout if heldout else products.train)

    n_violations = _count(rng, config.violation_count_weights)
    violated = _pick_policies(rng, applicable(category, "trigger"), n_violations)
    near_weights = config.near_miss_weights_reject if violated else config.near_miss_weights_approve
    near_pool = tuple(p for p in applicable(category, "near_miss") if p not in violated)
    near = _pick_policies(rng, near_pool, _count(rng, near_weights))

    items = [
        (p.code, rng.choice(phrase_pool(p.code, "trigger", category, heldout)), True)
        for p in violated
    ]
    items += [
        (p.code, rng.choice(phrase_pool(p.code, "near_miss", category, heldout)), False)
        for p in near
    ]

    offer_items = [it for it in items if it[0] in _OFFER_POLICIES]
    offer_items += [it for it in items if it[0] in _OFFER_OR_BODY and rng.random() < 0.5]
    rest = [it for it in items if it not in offer_items]
    rng.shuffle(rest)

    if rest and rng.random() < 0.5:
        headline = rest.pop(0)[1]
    else:
        headline = rng.choice(products.headlines + GENERIC_HEADLINES).format(product=product)

    neutral = list(products.sentences + GENERIC_SENTENCES)
    n_neutral = 1 if len(rest) >= 2 else 2
    sentences = [s.format(product=product) for s in rng.sample(neutral, n_neutral)]
    sentences += [f"{phrase}." for _, phrase, _ in rest]
    rng.shuffle(sentences)
    body = " ".join(sentences)

    offer_parts = [phrase for _, phrase, _ in offer_items]
    if not any(code in _OFFER_POLICIES for code, _, _ in offer_items):
        offer_parts.insert(0, rng.choice(products.offers).format(price=rng.choice(PRICES)))
    offer = ". ".join(offer_parts)

    text = render_prompt(product, headline, body, offer)
    in_order = sorted(items, key=lambda it: text.index(it[1]))
    gold = {
        "verdict": "reject" if violated else "approve",
        "violations": [{"code": c, "phrase": ph} for c, ph, bad in in_order if bad],
        "near_misses": [ph for _, ph, bad in in_order if not bad],
    }
    return Ad(category, product, headline, body, offer, gold)
