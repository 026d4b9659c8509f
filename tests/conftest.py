"""Shared fixtures: a tiny causal LM saved and reloaded through `from_pretrained`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


def _corpus(n: int = 400) -> list[str]:
    """Plain English-ish text so a small BPE learns ordinary words, digits and punctuation."""
    rng = random.Random(0)
    words = [
        "the",
        "a",
        "an",
        "of",
        "to",
        "and",
        "is",
        "are",
        "was",
        "in",
        "on",
        "for",
        "with",
        "answer",
        "question",
        "choice",
        "water",
        "fire",
        "cat",
        "dog",
        "red",
        "blue",
        "yes",
        "no",
        "true",
        "false",
        "because",
        "number",
        "total",
        "Verdict",
        "approve",
        "reject",
        "Analysis",
        "policy",
        "claim",
        "price",
        "offer",
        "health",
        "return",
        "guaranteed",
    ]
    lines = []
    for _ in range(n):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
        lines.append(f"{sentence.capitalize()}. {rng.randint(0, 999)} + {rng.randint(0, 99)} = ?")
    return lines


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tokenizer caches of the tests out of the user's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ICEGRT_CACHE", str(tmp_path_factory.mktemp("icegrt-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with a 512-token BPE vocabulary, written with save_pretrained."""
    from transformers import AutoModelForCausalLM

    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import build_preset_config, train_tokenizer

    out = tmp_path_factory.mktemp("tiny-model")
    tokenizer = train_tokenizer(_corpus(), vocab_size=512)
    cfg = ModelConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(build_preset_config(cfg, tokenizer))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path):
    """(model, tokenizer) loaded back through the same code real checkpoints use."""
    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import load_causal_lm, load_tokenizer

    cfg = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer = load_tokenizer(cfg)
    model = load_causal_lm(tiny_model_dir, cfg, tokenizer).eval()
    return model, tokenizer
