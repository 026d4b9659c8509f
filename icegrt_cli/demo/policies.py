"""The advertising policy catalogue: codes, names, trigger phrases and allowed near misses.

Phrases are built from small frames with slots so that each policy has many paraphrases. Some slot
values, and every seventh slot combination, are *held out*: they only ever appear in the test split,
so the test measures whether a model recognises a new paraphrase of a known violation rather than
whether it remembers a phrase it saw in training. Products are held out the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

CATEGORIES: tuple[str, ...] = ("health", "finance", "restricted", "retail")
HOLDOUT_EVERY = 7  # every 7th slot combination of a frame is held out for the test split

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


def _s(train: tuple[str, ...] | list[str], held: tuple[str, ...] | list[str]) -> tuple:
    return (tuple(train), tuple(held))


def _frame(template: str, categories: tuple[str, ...] = CATEGORIES, **slots: tuple) -> Frame:
    return Frame(template, MappingProxyType(dict(slots)), categories)


def _list(train: list[str], held: list[str], categories: tuple[str, ...] = CATEGORIES) -> Frame:
    return _frame("{x}", categories, x=_s(train, held))


_H, _F, _R, _T = ("health",), ("finance",), ("restricted",), ("retail",)

POLICIES: tuple[Policy, ...] = (
    Policy(
        "HEALTH_CLAIM",
        "an absolute health claim",
        triggers=(
            _frame(
                "{verb} {condition} {time}",
                _H,
                verb=_s(
                    ["Cures", "Eliminates", "Reverses", "Permanently heals", "Ends"], ["Wipes out"]
                ),
                condition=_s(
                    [
                        "arthritis",
                        "back pain",
                        "insomnia",
                        "acne",
                        "migraines",
                        "high blood pressure",
                        "hair loss",
                    ],
                    ["gout", "eczema"],
                ),
                time=_s(
                    ["in 7 days", "overnight", "for good", "in one week", "in just 3 days"],
                    ["within 48 hours"],
                ),
            ),
            _frame(
                "{claim} to cure {condition}",
                _H,
                claim=_s(["Guaranteed", "Proven", "Certified"], ["Scientifically certain"]),
                condition=_s(
                    ["arthritis", "insomnia", "acne", "migraines", "hair loss"], ["gout", "eczema"]
                ),
            ),
        ),
        near_misses=(
            _frame(
                "{hedge} {mild}",
                _H,
                hedge=_s(
                    [
                        "May help relieve",
                        "Can help ease",
                        "May support relief from",
                        "Designed to soothe",
                    ],
                    ["Might help calm"],
                ),
                mild=_s(
                    [
                        "minor joint aches",
                        "occasional sleeplessness",
                        "mild skin dryness",
                        "everyday muscle tension",
                        "occasional headaches",
                    ],
                    ["mild seasonal sniffles"],
                ),
            ),
        ),
        weight=2.0,
    ),
    Policy(
        "GUARANTEED_RETURN",
        "a guaranteed financial return",
        triggers=(
            _frame(
                "{sure} {pct}% {period} return",
                _F,
                sure=_s(["Guaranteed", "Risk-free", "Locked-in", "Certain"], ["Promised"]),
                pct=_s(["10", "20", "30", "50"], ["40"]),
                period=_s(["monthly", "weekly", "daily"], ["yearly"]),
            ),
            _frame(
                "{mult} your money in {days} days",
                _F,
                mult=_s(["Double", "Triple"], ["Quadruple"]),
                days=_s(["30", "60", "90"], ["14"]),
            ),
        ),
        near_misses=(
            _list(
                [
                    "Past returns do not guarantee future results",
                    "Returns may vary and capital is at risk",
                    "Your investment can go down as well as up",
                    "Historical average return of 6% a year",
                    "Capital at risk, returns not guaranteed",
                ],
                ["Earnings are never guaranteed"],
                _F,
            ),
        ),
        weight=2.0,
    ),
    Policy(
        "PROHIBITED_PRODUCT",
        "a prohibited product",
        triggers=(
            _frame(
                "{drug} {how}",
                _H,
                drug=_s(
                    ["Strong painkillers", "Sleeping pills", "Antibiotics", "Diet pills"],
                    ["Steroid injections"],
                ),
                how=_s(
                    [
                        "with no prescription needed",
                        "sold without a prescription",
                        "shipped with no doctor's note",
                    ],
                    ["no prescription, no questions"],
                ),
            ),
            _frame(
                "{fake} {brand}",
                _T,
                fake=_s(
                    ["Counterfeit", "Replica", "Knockoff", "Unlicensed copies of"], ["Bootleg"]
                ),
                brand=_s(
                    ["designer logos", "luxury brand labels", "famous brand sneakers"],
                    ["name-brand watches"],
                ),
            ),
        ),
        near_misses=(
            _list(
                [
                    "Prescription required at checkout",
                    "Pharmacist-approved, prescription needed",
                    "Sold by a licensed pharmacy",
                ],
                ["Dispensed only with a valid prescription"],
                _H,
            ),
            _list(
                [
                    "Officially licensed merchandise",
                    "Authentic, with certificate of origin",
                    "Inspired by classic designs",
                ],
                ["Genuine stock from the maker"],
                _T,
            ),
        ),
        weight=1.5,
    ),
    Policy(
        "MISSING_TERMS",
        "an offer without terms",
        triggers=(
            _frame(
                "{free}, {catch}",
                free=_s(
                    ["Totally free", "100% free", "Zero cost", "Free of charge"],
                    ["Completely free"],
                ),
                catch=_s(
                    ["no catch", "no strings attached", "no fine print", "no terms needed"],
                    ["nothing to read"],
                ),
            ),
        ),
        near_misses=(
            _frame(
                "{deal}, {terms}",
                deal=_s(
                    [
                        "Up to 20% off",
                        "Save 15% today",
                        "Buy one get one half price",
                        "Free shipping over $50",
                    ],
                    ["Save 25% on your first order"],
                ),
                terms=_s(
                    ["terms apply", "see terms at checkout", "conditions apply"],
                    ["full terms on our site"],
                ),
            ),
        ),
    ),
    Policy(
        "MINORS_RESTRICTED",
        "age-restricted goods aimed at minors",
        triggers=(
            _frame(
                "{appeal} {young}",
                _R,
                appeal=_s(["Perfect for", "Made for", "A hit with", "Great for"], ["Designed for"]),
                young=_s(
                    ["teens", "high schoolers", "kids after school", "middle schoolers"],
                    ["your younger siblings"],
                ),
            ),
            _frame(
                "{noid}, {welcome}",
                _R,
                noid=_s(["No ID needed", "No age check"], ["Skip the ID check"]),
                welcome=_s(
                    ["under-18s welcome", "students of any age welcome"], ["schoolkids welcome"]
                ),
            ),
        ),
        near_misses=(
            _list(
                [
                    "For adults 21 and over",
                    "Must be 18 or older to buy",
                    "ID checked on delivery",
                    "Please enjoy responsibly",
                ],
                ["Age verification required at checkout"],
                _R,
            ),
        ),
        weight=2.0,
    ),
    Policy(
        "FAKE_URGENCY",
        "fake urgency",
        triggers=(
            _frame(
                "{only} {n} minutes left to {act}",
                only=_s(["Only", "Just"], ["A mere"]),
                n=_s(["2", "5", "10"], ["3"]),
                act=_s(["order", "claim this price", "buy"], ["grab yours"]),
            ),
            _frame(
                "{push}, {threat}",
                push=_s(["Act now", "Hurry", "Last chance ever"], ["Do not wait"]),
                threat=_s(
                    [
                        "price doubles at midnight",
                        "this deal never returns",
                        "stock vanishes in minutes",
                    ],
                    ["the offer self-destructs tonight"],
                ),
            ),
        ),
        near_misses=(
            _frame(
                "{event} {ending}",
                event=_s(["Sale", "Spring offer", "Holiday deal"], ["Summer promotion"]),
                ending=_s(
                    ["ends Sunday", "runs through March 31", "ends at the end of the month"],
                    ["closes on June 30"],
                ),
            ),
        ),
    ),
    Policy(
        "UNVERIFIABLE_SUPERLATIVE",
        "an unverifiable superlative",
        triggers=(
            _frame(
                "The {sup} {thing} {scope}",
                sup=_s(["best", "greatest", "most effective", "number one"], ["finest"]),
                thing=_s(["product", "brand", "choice"], ["option"]),
                scope=_s(
                    ["in the world", "ever made", "on the planet", "of all time"],
                    ["in human history"],
                ),
            ),
        ),
        near_misses=(
            _frame(
                "Rated {stars} stars by {count} buyers",
                stars=_s(["4.5", "4.7", "4.8"], ["4.6"]),
                count=_s(["1,200", "3,000", "800"], ["2,500"]),
            ),
            _list(
                [
                    "One of our most popular items",
                    "Our best-selling model this year",
                    "A favourite with regular customers",
                ],
                ["Among this season's top sellers"],
            ),
        ),
    ),
)

POLICY_BY_CODE: Mapping[str, Policy] = MappingProxyType({p.code: p for p in POLICIES})


@dataclass(frozen=True)
class Products:
    """Product types of one category, split into training and held-out ones."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    headlines: tuple[str, ...]
    sentences: tuple[str, ...]  # neutral body sentences; "{product}" is filled in
    offers: tuple[str, ...]  # neutral offers with price and terms; "{price}" is filled in


PRODUCTS: Mapping[str, Products] = MappingProxyType(
    {
        "health": Products(
            (
                "herbal joint supplement",
                "sleep aid tea",
                "acne serum",
                "vitamin gummies",
                "posture brace",
                "detox drink",
            ),
            ("collagen powder", "hearing drops"),
            (
                "Feel like yourself again",
                "Your daily wellness routine",
                "Natural care for busy people",
            ),
            (
                "Our {product} fits into any daily routine.",
                "Made in small batches.",
                "Our {product} comes in a travel-size pack.",
                "Vegan and gluten free.",
            ),
            ("${price} for a one-month supply", "${price}, returns accepted for 30 days"),
        ),
        "finance": Products(
            (
                "crypto trading app",
                "investment newsletter",
                "forex signals service",
                "gold savings plan",
            ),
            ("peer-to-peer lending platform", "robo-advisor app"),
            ("Take control of your savings", "Investing made simple", "Smarter money, every day"),
            (
                "Open an account in minutes.",
                "Track everything in one dashboard.",
                "Our {product} sends a weekly summary.",
                "Regulated and audited every year.",
            ),
            ("${price} per month, cancel anytime", "${price} a year, billed annually"),
        ),
        "restricted": Products(
            (
                "craft beer",
                "fruit vape pens",
                "online casino",
                "hard seltzer",
                "sports betting app",
            ),
            ("cigar club membership", "whisky tasting box"),
            ("Crafted for grown-up evenings", "Taste the difference", "Your weekend, upgraded"),
            (
                "Try our {product} this weekend.",
                "New flavours every season.",
                "Delivered in discreet packaging.",
                "Made by a small local team.",
            ),
            ("${price} per pack", "${price} per month, cancel anytime"),
        ),
        "retail": Products(
            (
                "running shoes",
                "wireless earbuds",
                "leather handbag",
                "phone case",
                "coffee maker",
                "desk chair",
                "language course",
                "streaming subscription",
            ),
            ("smart watch", "camping tent", "sunglasses"),
            ("Built for everyday life", "Designed to last", "New season, new look"),
            (
                "Our {product} comes with a quick-start guide.",
                "Easy to set up in minutes.",
                "Backed by a friendly support team.",
                "Gift wrapping on request.",
            ),
            ("${price} with standard shipping", "${price}, one-year warranty included"),
        ),
    }
)

GENERIC_HEADLINES: tuple[str, ...] = ("Meet the new {product}", "Introducing our {product}")
GENERIC_SENTENCES: tuple[str, ...] = (
    "Ships within two business days.",
    "Customer support is available by chat.",
    "Order online or in store.",
)
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
