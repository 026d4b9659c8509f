"""The generated demo data: determinism, the bundled copy, held-out splits, noise rates."""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections import Counter
from itertools import product
from pathlib import Path

import pytest

from icegrt_cli.demo import POLICIES, DemoConfig, demo_file, generate_demo, gold_score
from icegrt_cli.demo.ads import sample_ad
from icegrt_cli.demo.answers import ideal_response
from icegrt_cli.demo.bundle import BUNDLE_DIR, PARTS
from icegrt_cli.demo.general import (
    ATTRIBUTES,
    FACT_CHECKS,
    FACT_QUESTIONS,
    WORLD,
    general_correct,
)
from icegrt_cli.demo.negatives import KINDS, eligible_kinds, rejected_answer
from icegrt_cli.demo.policies import CATALOGUE, CATEGORIES, PRODUCTS, catalogue_json, phrase_pool

SMALL = DemoConfig(
    n_sft=200, n_general_sft=120, n_pairs=150, n_prompts=100, n_test=60, n_general_test=40
)
FILES = [f"{part}.jsonl" for part in PARTS] + ["card.json", "CARD.md"]
FIELDS = {
    "sft": {"id", "task", "prompt", "response"},
    "general_sft": {"id", "task", "prompt", "response"},
    "pairs": {"id", "prompt", "chosen", "rejected", "rejected_kind"},
    "prompts": {"id", "task", "prompt", "gold"},
    "test": {"id", "task", "prompt", "gold", "reference"},
    "valid": {"id", "task", "prompt", "gold", "reference"},
    "general_test": {"id", "task", "prompt", "answer", "kind"},
}


def _rows(part: str) -> list[dict]:
    return [json.loads(line) for line in demo_file(part).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((BUNDLE_DIR / "card.json").read_text(encoding="utf-8"))


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    generate_demo(tmp_path / "a", seed=3, config=SMALL)
    generate_demo(tmp_path / "b", seed=3, config=SMALL)
    generate_demo(tmp_path / "c", seed=4, config=SMALL)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "sft.jsonl").read_bytes() != (
        tmp_path / "c" / "sft.jsonl"
    ).read_bytes()


def test_bundled_files_are_the_default_generation(tmp_path: Path) -> None:
    fresh = generate_demo(tmp_path, seed=0)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (BUNDLE_DIR / name).read_bytes(), name
    assert fresh["counts"] == {
        "sft": 3000,
        "general_sft": 1000,
        "pairs": 5000,
        "prompts": 2000,
        "test": 300,
        "valid": 300,
        "general_test": 200,
    }
    assert sum(f.stat().st_size for f in BUNDLE_DIR.iterdir()) < 8_000_000


def test_demo_file_rejects_unknown_parts() -> None:
    assert demo_file("sft") == BUNDLE_DIR / "sft.jsonl"
    with pytest.raises(ValueError, match="general_test"):
        demo_file("train")


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="vague_rate"):
        DemoConfig(vague_rate=1.5)
    with pytest.raises(ValueError, match="n_sft"):
        DemoConfig(n_sft=-1)


@pytest.mark.parametrize("part", PARTS)
def test_rows_have_the_documented_fields(part: str) -> None:
    rows = _rows(part)
    assert all(set(row) == FIELDS[part] for row in rows)
    assert len({row["id"] for row in rows}) == len(rows)


def test_gold_matches_the_ad_text() -> None:
    for part in ("prompts", "test", "valid"):
        for row in _rows(part):
            gold, prompt = row["gold"], row["prompt"]
            assert prompt.startswith("Review this ad for policy violations.\nProduct: ")
            assert gold["verdict"] == ("reject" if gold["violations"] else "approve")
            phrases = [v["phrase"] for v in gold["violations"]] + gold["near_misses"]
            assert all(p in prompt for p in phrases)
            assert [prompt.index(v["phrase"]) for v in gold["violations"]] == sorted(
                prompt.index(v["phrase"]) for v in gold["violations"]
            )
            assert len(prompt) < 600 and len(ideal_response(gold)) < 400


def test_ad_prompts_are_unique_across_splits() -> None:
    prompts = [
        row["prompt"]
        for part in ("sft", "pairs", "prompts", "test", "valid")
        for row in _rows(part)
    ]
    assert len(set(prompts)) == len(prompts)


def test_held_out_phrases_and_products_never_reach_training() -> None:
    train_text = "\n".join(
        json.dumps(row, ensure_ascii=False)
        for part in ("sft", "pairs", "prompts")
        for row in _rows(part)
    ).casefold()
    test_rows = _rows("test")
    phrases = {v["phrase"] for r in test_rows for v in r["gold"]["violations"]}
    phrases |= {p for r in test_rows for p in r["gold"]["near_misses"]}
    assert len(phrases) > 100
    assert [p for p in sorted(phrases) if p.casefold() in train_text] == []
    products = {r["prompt"].split("\n")[1] for r in test_rows}
    assert all(p.casefold() not in train_text for p in products)


def test_valid_ads_use_only_training_phrasings() -> None:
    training = {
        phrase
        for policy in POLICIES
        for frame in policy.triggers + policy.near_misses
        for phrase, held in frame.expand()
        if not held
    }
    rows = _rows("valid")
    phrases = {v["phrase"] for r in rows for v in r["gold"]["violations"]}
    phrases |= {p for r in rows for p in r["gold"]["near_misses"]}
    assert len(phrases) > 100
    assert phrases <= training


def test_catalogue_shape() -> None:
    assert 6 <= len(POLICIES) <= 8
    train_all: list[str] = []
    held_all: list[str] = []
    for policy in POLICIES:
        for category in policy.categories():
            for kind in ("trigger", "near_miss"):
                train = phrase_pool(policy.code, kind, category, False)
                held = phrase_pool(policy.code, kind, category, True)
                assert train and held, (policy.code, category, kind)
                train_all += train
                held_all += held
        assert len(phrase_pool(policy.code, "trigger", policy.categories()[0], False)) >= 10
    assert not any(c in p for p in train_all + held_all for c in '";')
    train_folded = [t.casefold() for t in set(train_all)]
    assert [h for h in set(held_all) if any(h.casefold() in t for t in train_folded)] == []
    assert all(PRODUCTS[c].heldout for c in CATEGORIES)


def test_catalogue_file_round_trips() -> None:
    """policies.json is read into typed policies and products, which write back to the same
    data: nothing in the file is dropped or reinterpreted on load."""
    assert catalogue_json() == json.loads(CATALOGUE.read_text(encoding="utf-8"))
    assert POLICIES[0].triggers[0].slots["verb"][1] == ("Wipes out",)  # (training, held out)


def test_triggers_never_hide_in_allowed_text() -> None:
    triggers = {
        p.casefold()
        for pol in POLICIES
        for c in CATEGORIES
        for held in (False, True)
        for p in phrase_pool(pol.code, "trigger", c, held)
    }
    allowed = [
        p.casefold()
        for pol in POLICIES
        for c in CATEGORIES
        for held in (False, True)
        for p in phrase_pool(pol.code, "near_miss", c, held)
    ]
    for products in PRODUCTS.values():
        allowed += [s.casefold() for s in products.sentences + products.headlines]
    assert [(t, a) for t in triggers for a in allowed if t in a] == []


def test_split_balance(card: dict) -> None:
    for split in ("sft", "pairs", "prompts"):
        stats = card["splits"][split]
        assert 0.35 <= stats["approve_rate"] <= 0.45
        per_ad = {int(k): v for k, v in stats["violations_per_ad"].items()}
        assert max(per_ad) <= 3 and per_ad.get(3, 0) < 0.1 * stats["ads"]
        assert min(stats["violations"].values()) >= 100


def test_annotator_noise_matches_config(card: dict) -> None:
    modes = card["annotator"]["modes"]
    for name, m in modes.items():
        if name == "specific":
            continue
        p, n = m["target"], m["eligible"]
        assert n >= 200, name
        assert abs(m["rate"] - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9, (name, m)
    assert sum(m["count"] for m in modes.values()) == card["counts"]["sft"]


def test_annotator_scores_leave_room(card: dict) -> None:
    assert card["test"]["ideal_mean_gold"] == 1.0
    assert 0.55 <= card["test"]["annotator_mean_gold"] <= 0.75
    assert card["pairs"]["mean_gold_chosen"] == 1.0
    assert card["pairs"]["rejected_not_worse"] == 0
    assert card["pairs"]["mean_gold_rejected"] < 0.6


def test_every_rejected_kind_scores_below_the_ideal() -> None:
    rng = random.Random(7)
    seen = set()
    for _ in range(2000):
        ad = sample_ad(rng, DemoConfig(), heldout=False)
        text, kind = rejected_answer(rng, ad.gold, ad.prompt)
        seen.add(kind)
        assert kind in eligible_kinds(ad.gold)
        assert gold_score(text, ad.gold).score < gold_score(ideal_response(ad.gold), ad.gold).score
    assert seen == set(KINDS)


def test_sft_responses_are_short_and_parse() -> None:
    rows = _rows("sft")
    assert max(len(r["response"]) for r in rows) < 400
    assert all(r["response"].startswith(("Verdict: approve\n", "Verdict: reject\n")) for r in rows)
    vague = sum("violates our policies" in r["response"] for r in rows)
    assert 100 < vague < 600


@functools.cache
def _fact_prompts() -> dict[str, tuple[str, str, str]]:
    """Every possible fact prompt: (country, wording, right answer)."""
    prompts = {}
    for country, (i, attribute) in product(WORLD, enumerate(ATTRIBUTES)):
        right = WORLD[country][i]
        for wording in FACT_QUESTIONS[attribute]:
            prompts[wording.format(c=country)] = (country, wording, right)
        for wording, facts in product(FACT_CHECKS[attribute], WORLD.values()):
            answer = "yes" if facts[i] == right else "no"
            prompts[wording.format(c=country, v=facts[i])] = (country, wording, answer)
    return prompts


def _solve(prompt: str) -> str:
    """Answer a general item from its prompt alone, independently of the generator."""
    yes_no = {True: "yes", False: "no"}
    story = r"(\w+) (has|had) (\d+) (\w+) and (gets|gave away) (\d+)( more)?\. "
    if m := re.fullmatch(
        story + r"(How many .*|Does \1 have (\d+) \4 now|Are (\d+) \4 left)\?", prompt
    ):
        result = int(m[3]) + int(m[6]) if m[2] == "has" else int(m[3]) - int(m[6])
        stated = m[9] or m[10]
        return str(result) if stated is None else yes_no[int(stated) == result]
    if m := re.fullmatch(r"Which is (larger|smaller), (\d+) or (\d+)\?", prompt):
        return str((max if m[1] == "larger" else min)(int(m[2]), int(m[3])))
    if m := re.fullmatch(r"Is (\d+) (larger|smaller) than (\d+)\?", prompt):
        a, b = int(m[1]), int(m[3])
        return yes_no[a > b if m[2] == "larger" else a < b]
    return _fact_prompts()[prompt][2]


def test_general_answers_are_correct_by_construction() -> None:
    sft = [r for r in _rows("general_sft") if not r["prompt"].startswith("Tell me about ")]
    test = _rows("general_test")
    assert [r["prompt"] for r in sft if _solve(r["prompt"]) != r["response"]] == []
    assert [r["prompt"] for r in test if _solve(r["prompt"]) != r["answer"]] == []
    assert max(len(r["response"]) for r in sft) <= 8


def test_general_scorer_accepts_the_answer_in_any_surface_form_and_nothing_else() -> None:
    test = _rows("general_test")
    answers = sorted({r["answer"] for r in test})
    for row in test:
        answer = row["answer"]
        for form in (answer.upper(), f"  Answer: {answer}.", f"{answer}!", f'"{answer}"'):
            assert general_correct(form, answer), (form, answer)
        wrong = next(a for a in answers if a.casefold() != answer.casefold())
        assert not general_correct(wrong, answer), (wrong, answer)
        assert not general_correct(f"{answer} {answer}", answer)
        assert not general_correct("", answer)


def test_general_test_is_disjoint_from_sft() -> None:
    sft, test = _rows("general_sft"), _rows("general_test")
    sft_prompts = [r["prompt"] for r in sft]
    test_prompts = [r["prompt"] for r in test]
    assert len(set(sft_prompts)) == len(sft_prompts)
    assert len(set(test_prompts)) == len(test_prompts)
    assert not set(sft_prompts) & set(test_prompts)


def test_general_facts_are_taught_and_asked_in_a_familiar_wording() -> None:
    sft = _rows("general_sft")
    taught = "\n".join(r["response"] for r in sft)
    for country, facts in WORLD.items():
        assert f"Tell me about {country}." in {r["prompt"] for r in sft}
        assert all(fact in taught for fact in facts)
    known = _fact_prompts()
    asked = {known[r["prompt"]][:2] for r in sft if r["prompt"] in known}
    siblings = list(FACT_QUESTIONS.values()) + list(FACT_CHECKS.values())
    for row in [r for r in _rows("general_test") if r["kind"] == "fact"]:
        country, wording, _ = known[row["prompt"]]
        assert (country, wording) not in asked
        (same_fact,) = [ws for ws in siblings if wording in ws]
        assert {(country, w) for w in same_fact if w != wording} <= asked, row["prompt"]
        assert sum((c, wording) in asked for c in WORLD) >= len(WORLD) // 2


def test_general_test_mix(card: dict) -> None:
    test = _rows("general_test")
    assert card["general"]["test"] == {"arithmetic": 70, "comparison": 70, "fact": 60}
    assert Counter(r["answer"] for r in test if r["kind"] == "fact")["yes"] == 20
    assert Counter(r["answer"] for r in test if r["kind"] == "fact")["no"] == 20
    checks = Counter(r["answer"] for r in test if r["answer"] in ("yes", "no"))
    assert abs(checks["yes"] - checks["no"]) <= 10
    first = Counter(r["kind"] for r in test[:100])
    assert min(first.values()) >= 20
