"""Deterministic generation of the demo data set: same seed and config, same bytes.

Every split draws from its own `random.Random` seeded with a string derived from the seed, so
changing one split's size does not reshuffle the others; ad prompts are unique across splits.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from icegrt_cli.demo.ads import Ad, sample_ad
from icegrt_cli.demo.annotator import annotate
from icegrt_cli.demo.answers import ideal_response
from icegrt_cli.demo.card import (
    mean,
    noise_stats,
    render_markdown,
    split_stats,
)
from icegrt_cli.demo.config import DemoConfig
from icegrt_cli.demo.general import general_sft_items, general_test_items
from icegrt_cli.demo.gold import WEIGHTS, gold_score
from icegrt_cli.demo.negatives import KINDS, rejected_answer
from icegrt_cli.demo.policies import POLICIES
from icegrt_cli.demo.sampling import draw_distinct

CARD_VERSION = 1
AD_SPLITS: tuple[tuple[str, str, bool], ...] = (
    # (split, DemoConfig size field, held out)
    ("sft", "n_sft", False),
    ("pairs", "n_pairs", False),
    ("prompts", "n_prompts", False),
    ("test", "n_test", True),
    ("valid", "n_valid", False),  # drawn last, so adding it left the other splits unchanged
)


def _rng(seed: int, purpose: str) -> random.Random:
    return random.Random(f"icegrt-demo:{seed}:{purpose}")


def _unique_ads(
    rng: random.Random, n: int, config: DemoConfig, heldout: bool, seen: set[str]
) -> list[Ad]:
    return draw_distinct(
        lambda: sample_ad(rng, config, heldout), n, seen, "ads; reduce the split size"
    )


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    path.write_bytes(data)
    return {
        "rows": data.count(b"\n"),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _evaluation_rows(split: str, ads: list[Ad]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{split}-{i:05d}",
            "task": "ad_moderation",
            "prompt": ad.prompt,
            "gold": ad.gold,
            "reference": ideal_response(ad.gold),
        }
        for i, ad in enumerate(ads)
    ]


def generate_demo(out_dir: Path, seed: int = 0, config: DemoConfig | None = None) -> dict:
    """Write all demo files, card.json and CARD.md into `out_dir`; return the card."""
    config = config or DemoConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    seen: set[str] = set()
    ads = {
        split: _unique_ads(_rng(seed, f"ads:{split}"), getattr(config, size), config, held, seen)
        for split, size, held in AD_SPLITS
    }

    annotator_rng = _rng(seed, "annotator")
    sft = [annotate(annotator_rng, ad.gold, config) for ad in ads["sft"]]
    pairs_rng = _rng(seed, "pairs")
    rejected = [rejected_answer(pairs_rng, ad.gold, ad.prompt) for ad in ads["pairs"]]
    test_rng = _rng(seed, "annotator:test")
    test_annotator = [annotate(test_rng, ad.gold, config)[0] for ad in ads["test"]]

    general_rng = _rng(seed, "general")
    general_sft = general_sft_items(general_rng, config.n_general_sft)
    general_test = general_test_items(
        general_rng, config.n_general_test, {item.prompt for item in general_sft}
    )

    files = {
        "sft.jsonl": [
            {"id": f"sft-{i:05d}", "task": "ad_moderation", "prompt": ad.prompt, "response": text}
            for i, (ad, (text, _)) in enumerate(zip(ads["sft"], sft, strict=True))
        ],
        "general_sft.jsonl": [
            {"id": f"gsft-{i:05d}", "task": "general", "prompt": it.prompt, "response": it.answer}
            for i, it in enumerate(general_sft)
        ],
        "pairs.jsonl": [
            {
                "id": f"pair-{i:05d}",
                "prompt": ad.prompt,
                "chosen": ideal_response(ad.gold),
                "rejected": text,
                "rejected_kind": kind,
            }
            for i, (ad, (text, kind)) in enumerate(zip(ads["pairs"], rejected, strict=True))
        ],
        "prompts.jsonl": [
            {"id": f"ppo-{i:05d}", "task": "ad_moderation", "prompt": ad.prompt, "gold": ad.gold}
            for i, ad in enumerate(ads["prompts"])
        ],
        "test.jsonl": _evaluation_rows("test", ads["test"]),
        "valid.jsonl": _evaluation_rows("valid", ads["valid"]),
        "general_test.jsonl": [
            {
                "id": f"gtest-{i:05d}",
                "task": "general",
                "prompt": it.prompt,
                "answer": it.answer,
                "kind": it.kind,
            }
            for i, it in enumerate(general_test)
        ],
    }
    written = {name: _write_jsonl(out_dir / name, rows) for name, rows in files.items()}

    chosen_scores = [gold_score(ideal_response(ad.gold), ad.gold).score for ad in ads["pairs"]]
    rejected_scores = [
        gold_score(text, ad.gold).score
        for ad, (text, _) in zip(ads["pairs"], rejected, strict=True)
    ]
    kinds = Counter(kind for _, kind in rejected)
    card = {
        "name": "icegrt advertising-moderation demo",
        "version": CARD_VERSION,
        "seed": seed,
        "config": config.as_dict(),
        "counts": {name.removesuffix(".jsonl"): f["rows"] for name, f in written.items()},
        "files": written,
        "policies": [{"code": p.code, "name": p.name} for p in POLICIES],
        "splits": {split: split_stats(split_ads) for split, split_ads in ads.items()},
        "annotator": {
            "modes": noise_stats([ad.gold for ad in ads["sft"]], [m for _, m in sft], config),
            "mean_gold": mean(
                [
                    gold_score(text, ad.gold).score
                    for ad, (text, _) in zip(ads["sft"], sft, strict=True)
                ]
            ),
        },
        "pairs": {
            "rejected_kinds": {k: kinds[k] for k in KINDS},
            "mean_gold_chosen": mean(chosen_scores),
            "mean_gold_rejected": mean(rejected_scores),
            "rejected_not_worse": sum(
                r >= c for r, c in zip(rejected_scores, chosen_scores, strict=True)
            ),
        },
        "test": {
            "ideal_mean_gold": mean(
                [gold_score(ideal_response(ad.gold), ad.gold).score for ad in ads["test"]]
            ),
            "annotator_mean_gold": mean(
                [
                    gold_score(text, ad.gold).score
                    for ad, text in zip(ads["test"], test_annotator, strict=True)
                ]
            ),
        },
        "general": {
            "sft": dict(sorted(Counter(it.kind for it in general_sft).items())),
            "test": dict(sorted(Counter(it.kind for it in general_test).items())),
        },
        "gold_weights": dict(WEIGHTS),
    }
    card_json = json.dumps(card, indent=2, ensure_ascii=False) + "\n"
    (out_dir / "card.json").write_bytes(card_json.encode("utf-8"))
    (out_dir / "CARD.md").write_bytes(render_markdown(card).encode("utf-8"))
    return card
