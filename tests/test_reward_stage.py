"""`icegrt train-rm`: pair data, learning, reward-size presets, resume, and the CLI end to end.

In-process runs compose the shipped config with tiny overrides and call the stage directly;
the `slow` tests run the real command in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from icegrt_cli.config import ModelConfig
from icegrt_cli.engine.metrics import read_metrics
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.launch import conf_dir
from icegrt_cli.models import load_scalar_model, load_tokenizer, materialize
from icegrt_cli.reward.pairs import PairCollator, encode_pairs
from icegrt_cli.reward.scoring import score_texts
from icegrt_cli.reward.stats import RewardStats
from icegrt_cli.stages import reward
from icegrt_cli.stages.registry import register_configs
from tests.cli_helpers import TINY_SFT, icegrt, only_sweep

TINY_RM = [
    "reward_model.hidden_size=32",
    "reward_model.num_layers=1",
    "reward_model.num_heads=2",
    "reward_model.intermediate_size=64",
]
"""A preset reward model small enough to train in seconds."""
QUICK = [
    "train.batch_size=8",
    "train.max_steps=6",
    "train.eval_every=3",
    "train.save_every=3",
    "run.log_every=1",
    "run.progress=false",
    "calibration_size=16",
]


def compose_rm(*overrides: str) -> DictConfig:
    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose(config_name="train_rm", overrides=list(overrides))


def run_rm(root: Path, name: str, *overrides: str) -> dict:
    """The stage in-process, writing where the CLI would: <root>/<name>/train_rm."""
    cfg = compose_rm(f"run.root={root}", f"run.name={name}", *overrides)
    return reward.run(cfg, root / name / "train_rm", root / name)


def write_pairs(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def from_file(path: Path, fields: str = "") -> str:
    """Override: read pairs from one local file (field renames as `{ours: theirs}`)."""
    renames = f",fields:{fields}" if fields else ""
    return f"data.sources=[{{kind:file,path:'{path}'{renames}}}]"


def marker_pairs(n: int, seed: int = 0) -> list[dict]:
    """Chosen answers end in the marker word "fire"; rejected ones end in another word."""
    rng = random.Random(seed)
    words = ["the", "cat", "dog", "water", "red", "blue", "answer", "is", "of", "yes", "no"]
    pairs = []
    for _ in range(n):
        prompt = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) + "?"
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        pairs.append(
            {
                "prompt": prompt,
                "chosen": f"{answer} fire",
                "rejected": f"{answer} {rng.choice(words)}",
            }
        )
    return pairs


# --------------------------------------------------------------------------------------------
# Pair data
# --------------------------------------------------------------------------------------------


def test_encode_pairs_counts_identical_and_too_long(tiny_lm) -> None:
    _, tokenizer = tiny_lm
    records = [
        {"prompt": "Is water red?", "chosen": "no", "rejected": "yes"},
        {"prompt": "Is water red?", "chosen": " no ", "rejected": "no"},  # identical once trimmed
        {"prompt": "Is water red?", "chosen": "no", "rejected": "no " * 300},  # too long
    ]
    pairs, skips = encode_pairs(records, tokenizer, max_length=64)
    assert len(pairs) == 1 and (skips.identical, skips.too_long, skips.total) == (1, 1, 2)
    assert pairs[0].chosen[-1] == pairs[0].rejected[-1] == tokenizer.eos_token_id


def test_collator_stacks_chosen_then_rejected_each_with_its_own_length(tiny_lm) -> None:
    _, tokenizer = tiny_lm
    records = [
        {"prompt": "Q?", "chosen": "yes because water is blue", "rejected": "no"},
        {"prompt": "Q?", "chosen": "no", "rejected": "yes"},
    ]
    pairs, _ = encode_pairs(records, tokenizer, max_length=64)
    batch = PairCollator(tokenizer.pad_token_id)(pairs)
    assert batch["weight"] == 2 and batch["input_ids"].shape[0] == 4
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert lengths == [
        len(pairs[0].chosen),
        len(pairs[1].chosen),
        len(pairs[0].rejected),
        len(pairs[1].rejected),
    ]
    assert len(set(lengths)) > 1  # not the max of the pair: each row ends at its own EOS


# --------------------------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------------------------


def _accuracy(model: torch.nn.Module, collate: PairCollator, pairs: list) -> float:
    with torch.no_grad():
        return reward.reward_step(model.eval(), collate(pairs)).metrics["accuracy"] / len(pairs)


def test_held_out_accuracy_rises_on_a_marker_word_problem(tiny_model_dir: Path) -> None:
    cfg = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer = load_tokenizer(cfg)
    torch.manual_seed(0)
    model = load_scalar_model(tiny_model_dir, cfg, tokenizer)
    pairs, _ = encode_pairs(marker_pairs(64), tokenizer, max_length=128)
    train, held_out = pairs[:48], pairs[48:]
    collate = PairCollator(tokenizer.pad_token_id)
    before = _accuracy(model, collate, held_out)

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(36):
        batch = [train[(step * 8 + i) % len(train)] for i in range(8)]
        out = reward.reward_step(model, collate(batch))
        (out.loss_sum / len(batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = _accuracy(model, collate, held_out)
    assert after > before and after > 0.8, (before, after)


def test_reward_size_presets_differ(tmp_path: Path) -> None:
    sizes = {}
    for preset in ("tiny", "small", "base"):
        model_cfg = compose_rm(f"model@reward_model={preset}").reward_model
        assert model_cfg.from_stage is None  # a preset starts from its own random init
        tokenizer = load_tokenizer(model_cfg)
        path = materialize(model_cfg, tmp_path / preset, seed=0)
        model = load_scalar_model(path, model_cfg, tokenizer)
        assert model.config.num_labels == 1
        sizes[preset] = sum(p.numel() for p in model.parameters())
    assert sizes["tiny"] < sizes["small"] < sizes["base"], sizes


def test_default_is_the_runs_sft_model_and_needs_a_run_name(tmp_path: Path) -> None:
    cfg = compose_rm("run.progress=false")
    assert cfg.reward_model.from_stage == "sft"
    with pytest.raises(ConfigError, match=r"reward_model.from_stage=sft.*run.name"):
        reward.run(cfg, tmp_path / "out", None)
    assert not (tmp_path / "out").exists()  # failed before any work


# --------------------------------------------------------------------------------------------
# Whole stage, in-process
# --------------------------------------------------------------------------------------------


def test_resume_after_a_stop_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    args = ["model@reward_model=tiny", *TINY_RM, *QUICK, "data.sources.0.limit=64"]
    full = run_rm(tmp_path, "full", *args)
    stopped = run_rm(tmp_path, "part", *args, "train.stop_after=3")
    part = tmp_path / "part" / "train_rm"
    assert stopped["steps"] == 3 and not (part / "model").exists()
    assert (part / "checkpoints" / "step-3").exists()
    resumed = run_rm(tmp_path, "part", *args, "run.resume=latest")
    assert resumed["steps"] == full["steps"] == 6
    for key in ("eval_accuracy", "eval_margin", "eval_loss", "eval_score_std", "gold_agreement"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-5, abs=1e-6), key
    assert resumed["reward_stats"]["mean"] == pytest.approx(full["reward_stats"]["mean"], rel=1e-5)
    evals = [r for r in read_metrics(part / "metrics.jsonl") if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 3, 6]


def test_bad_pairs_are_counted_never_silently_dropped(tmp_path: Path) -> None:
    records = marker_pairs(40)
    records[5]["rejected"] = records[5]["chosen"]
    records[9]["chosen"] = "fire " * 200
    path = write_pairs(tmp_path / "pairs.jsonl", records)
    summary = run_rm(
        tmp_path,
        "bad",
        "model@reward_model=tiny",
        *TINY_RM,
        *QUICK,
        "train.max_steps=2",
        from_file(path),
        "data.eval_fraction=0.1",
        "data.max_length=128",
    )
    assert (summary["skipped_identical"], summary["skipped_too_long"]) == (1, 1)
    assert summary["train_pairs"] + summary["eval_pairs"] == 40 - 2
    assert "gold_agreement" not in summary  # only measured on the demo data
    saved = json.loads((tmp_path / "bad" / "train_rm" / "summary.json").read_text())
    assert saved["skipped_identical"] == 1


def test_all_pairs_skipped_is_an_error(tmp_path: Path) -> None:
    records = [{"prompt": "Q?", "chosen": "same", "rejected": "same"}] * 10
    path = write_pairs(tmp_path / "pairs.jsonl", records)
    with pytest.raises(DataError, match="all 9 training pairs were skipped: 9 with chosen"):
        run_rm(tmp_path, "empty", "model@reward_model=tiny", *TINY_RM, *QUICK, from_file(path))


def test_remapped_field_names_and_a_missing_field_name_file_and_line(tmp_path: Path) -> None:
    records = [
        {"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]}
        for r in marker_pairs(24)
    ]
    path = write_pairs(tmp_path / "renamed.jsonl", records)
    fields = "{prompt:question,chosen:good,rejected:bad}"
    common = ["model@reward_model=tiny", *TINY_RM, *QUICK, "train.max_steps=1"]
    summary = run_rm(tmp_path, "renamed", *common, from_file(path, fields))
    assert summary["train_pairs"] + summary["eval_pairs"] == 24
    with pytest.raises(DataError, match=r"renamed.jsonl:1: missing field 'prompt'"):
        run_rm(tmp_path, "unmapped", *common, from_file(path))


# --------------------------------------------------------------------------------------------
# The real command
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_sft_then_train_rm_saves_a_model_plain_transformers_can_score_with(
    tmp_path: Path,
) -> None:
    icegrt("sft", "run.name=demo", *TINY_SFT, cwd=tmp_path)
    proc = icegrt("train-rm", "run.name=demo", *QUICK, "data.sources.0.limit=64", cwd=tmp_path)
    out = tmp_path / "runs" / "demo" / "train_rm"
    assert "held-out accuracy" in proc.stdout  # the final table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reward_model"].endswith("runs/demo/sft/model") and summary["steps"] == 6
    assert 0.0 <= summary["gold_agreement"] <= 1.0 and summary["gold_pairs"] > 250
    model_dir = out / "model"
    held_out = json.loads((model_dir / "reward_eval.json").read_text())
    assert held_out["pairs"] == summary["eval_pairs"]
    stats = RewardStats.load(model_dir)
    assert stats.count == 2 * 16 and stats.std > 0  # both answers of 16 pairs
    assert list(model_dir.glob("*.safetensors"))

    plain = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Review this ad."}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(
        text + "Verdict: approve" + tokenizer.eos_token,
        add_special_tokens=False,
        return_tensors="pt",
    )
    with torch.no_grad():
        plain_score = plain(**ids).logits
    assert plain_score.shape == (1, 1) and torch.isfinite(plain_score).all()
    ours = score_texts(plain, tokenizer, ["Review this ad."], ["Verdict: approve"])
    assert ours.item() == pytest.approx(plain_score.item(), abs=1e-5)


@pytest.mark.slow
def test_cli_reward_size_sweep_writes_one_model_per_preset(tmp_path: Path) -> None:
    # One layer each keeps it quick; the presets still differ in width.
    icegrt(
        "train-rm",
        "-m",
        "run.name=sweep",
        "model@reward_model=tiny,small",
        *QUICK,
        "reward_model.num_layers=1",
        "train.max_steps=2",
        "data.sources.0.limit=32",
        cwd=tmp_path,
    )
    sweep = only_sweep(tmp_path / "runs" / "sweep" / "multirun" / "train_rm")
    params = [
        json.loads((sweep / str(i) / "summary.json").read_text())["parameters"] for i in (0, 1)
    ]
    assert params[0] < params[1]


@pytest.mark.slow
def test_cli_missing_chosen_exits_non_zero_naming_file_and_line(tmp_path: Path) -> None:
    records = marker_pairs(5)
    del records[2]["chosen"]
    path = write_pairs(tmp_path / "pairs.jsonl", records)
    proc = icegrt(
        "train-rm",
        "model@reward_model=tiny",
        from_file(path),
        "run.progress=false",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert f"{path}:3: missing field 'chosen'" in " ".join(proc.stderr.split())
