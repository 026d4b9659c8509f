"""`icegrt ppo` end to end: sft -> train-rm -> ppo through the real CLI on tiny models."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from icegrt_cli.engine.metrics import read_metrics
from tests.cli_helpers import TINY_MODEL, TINY_SFT, icegrt, only_sweep

pytestmark = pytest.mark.slow

TINY_RM = [
    "data.sources.0.limit=96",
    "train.max_steps=4",
    "train.batch_size=8",
    "train.eval_every=0",
    "train.save_every=0",
    "run.progress=false",
    "calibration_size=16",
]
TINY_PPO = [
    "ppo.steps=4",
    "rollout.batch_size=8",
    "rollout.max_new_tokens=16",
    "ppo.minibatch_size=4",
    "train.eval_size=8",
    "train.eval_every=2",
    "train.save_every=0",
    "train.sample_every=2",
    "run.log_every=1",
    "run.progress=false",
    "data.sources.0.limit=64",
    "ptx_data.sources.0.limit=32",
    "ptx_data.sources.1.limit=32",
    "ppo.ptx_batch_size=4",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with finished sft and train_rm stages that ppo finds by run.name."""
    cwd = tmp_path_factory.mktemp("ppo")
    icegrt("sft", "run.name=demo", *TINY_SFT, cwd=cwd)
    icegrt("train-rm", "run.name=demo", *TINY_RM, cwd=cwd)
    return cwd


def _copy_run(cwd: Path, name: str) -> None:
    """The prepared sft + train_rm stages under another run name."""
    target = cwd / "runs" / name
    if not target.exists():
        shutil.copytree(
            cwd / "runs" / "demo", target, ignore=shutil.ignore_patterns("ppo", "checkpoints")
        )


def _ppo(cwd: Path, name: str, *args: str, check: bool = True):
    _copy_run(cwd, name)
    return icegrt("ppo", f"run.name={name}", *TINY_PPO, *args, cwd=cwd, check=check)


def test_ppo_logs_every_named_quantity_and_saves_the_actor(run_dir: Path) -> None:
    _ppo(run_dir, "basic")
    out = run_dir / "runs" / "basic" / "ppo"
    records = read_metrics(out / "metrics.jsonl")
    steps = [r for r in records if "rollout/score_raw" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    expected = {
        "rollout/score_raw",
        "rollout/score",
        "kl/ref",
        "kl/beta",
        "ppo/entropy",
        "ppo/policy_loss",
        "ppo/value_loss",
        "ppo/clipfrac",
        "ppo/approx_kl",
        "ppo/explained_variance",
        "adv/mean",
        "adv/std",
        "rollout/length",
        "rollout/eos_rate",
        "rollout/truncated",
        "rollout/truncated_penalty",
        "rollout/gold",
    }
    assert expected <= set(steps[0])
    assert steps[0]["kl/ref"] == 0.0  # the actor equals the reference before any update
    evals = [r for r in records if "eval/gold" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert {"eval/sampled_score", "eval/sampled_gold", "eval/sampled_length"} <= set(evals[0])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["eval_before"]) == set(summary["eval_after"])
    run = (run_dir / "runs" / "basic").resolve()
    assert summary["models"] == {
        "policy": str(run / "sft" / "model"),
        "reward_model": str(run / "train_rm" / "model"),
    }
    assert (out / "samples.jsonl").read_text().count("\n") == 2 * 4
    AutoModelForCausalLM.from_pretrained(out / "model")


def test_resumed_run_matches_an_uninterrupted_one(run_dir: Path) -> None:
    _ppo(run_dir, "whole")
    _ppo(run_dir, "parts", "train.stop_after=2")
    _ppo(run_dir, "parts", "run.resume=latest")
    whole, parts = (
        [
            r
            for r in read_metrics(run_dir / "runs" / n / "ppo" / "metrics.jsonl")
            if "rollout/score_raw" in r
        ]
        for n in ("whole", "parts")
    )
    assert len(whole) == len(parts) == 4
    for a, b in zip(whole, parts, strict=True):
        for key in ("rollout/score_raw", "kl/ref", "ppo/policy_loss", "ppo/value_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)
    summaries = [
        json.loads((run_dir / "runs" / n / "ppo" / "summary.json").read_text())
        for n in ("whole", "parts")
    ]
    assert summaries[1]["eval_before"] == summaries[0]["eval_before"] != {}


def _long_context_copy(run_dir: Path, stage: str) -> Path:
    """The run's `stage` model with a 4096-token context (RoPE: any length is a config edit)."""
    source = run_dir / "runs" / "demo" / stage / "model"
    target = run_dir / f"long_{stage}"
    if not target.exists():
        shutil.copytree(source, target)
        config = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    return target


def test_prompt_limit_comes_from_the_checkpoint_and_drops_are_said(run_dir: Path) -> None:
    # 512-token models with 500 new tokens leave 12 for a prompt: no demo prompt is that short.
    short = _ppo(run_dir, "ctx512", "rollout.max_new_tokens=500", "ppo.steps=1", check=False)
    said = " ".join((short.stdout + short.stderr).split())
    assert short.returncode != 0
    assert (
        "64 of 64 prompts longer than 12 tokens (context 512 - rollout.max_new_tokens 500) skipped"
    ) in said, said[-2000:]
    # The same setting on checkpoints that take 4096 tokens keeps every prompt.
    long = _ppo(
        run_dir,
        "ctx4096",
        "rollout.max_new_tokens=500",
        "ppo.steps=1",
        "train.eval_every=0",
        "train.eval_size=2",
        "model@policy=hf",
        f"policy.name_or_path={_long_context_copy(run_dir, 'sft')}",
        "model@reward_model=hf",
        f"reward_model.name_or_path={_long_context_copy(run_dir, 'train_rm')}",
    )
    assert "skipped" not in long.stdout, long.stdout[-2000:]


def test_generation_settings_and_truncation_are_said_and_logged(run_dir: Path) -> None:
    proc = _ppo(
        run_dir,
        "truncation",
        "ppo.steps=2",
        "rollout.truncated=penalty",
        "rollout.truncated_penalty=2.5",
        "rollout.max_new_tokens=4",
        "train.eval_every=0",
    )
    said = " ".join(proc.stdout.split())
    assert "generation: do_sample=True temperature=1.0 top_k=0 top_p=1.0" in said
    assert "truncated responses scored as they are, minus 2.5" in said
    out = run_dir / "runs" / "truncation" / "ppo"
    steps = [r for r in read_metrics(out / "metrics.jsonl") if "rollout/truncated" in r]
    assert len(steps) == 2
    for record in steps:  # 4 tokens are too few to finish an answer: every row pays
        assert record["rollout/truncated"] > 0.5
        assert record["rollout/truncated_penalty"] == pytest.approx(
            2.5 * record["rollout/truncated"]
        )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sampler_scorer_gap"] < 1e-3


def test_non_finite_reward_stops_with_step_and_quantity(run_dir: Path) -> None:
    proc = _ppo(run_dir, "nan", "reward.scale=nan", check=False)
    assert proc.returncode != 0
    assert "non-finite shaped score at step 1" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.returncode == 2
    assert not (run_dir / "runs" / "nan" / "ppo" / "summary.json").exists()


def test_stats_normalisation_fails_loudly_without_statistics(run_dir: Path) -> None:
    proc = _ppo(
        run_dir,
        "nostats",
        "model@reward_model=tiny",
        *[f"reward_{o}" for o in TINY_MODEL],
        "reward=stats_norm",
        check=False,
    )
    assert proc.returncode != 0 and "reward_stats.json not found" in proc.stderr, proc.stderr


def test_factor_switches_change_the_logged_curves(run_dir: Path) -> None:
    """kl, advantage normalisation and reward shaping are real switches, not labels."""
    _copy_run(run_dir, "factors")
    proc = icegrt(
        "ppo",
        "run.name=factors",
        *TINY_PPO,
        "ppo.steps=2",
        "-m",
        "kl=none,adaptive",
        "reward=none,running_norm",
        cwd=run_dir,
    )
    sweep = only_sweep(run_dir / "runs" / "factors" / "multirun" / "ppo")
    finals = {}
    for job in sorted(sweep.iterdir()):
        if not (job / "metrics.jsonl").exists():
            continue
        cfg = (job / "config.yaml").read_text()
        steps = [r for r in read_metrics(job / "metrics.jsonl") if "rollout/score" in r]
        finals[job.name] = (cfg, steps[-1])
    assert len(finals) == 4, proc.stdout[-2000:]
    betas = {round(s["kl/beta"], 6) for _, s in finals.values()}
    assert 0.0 in betas and len(betas) >= 2
    shaped = [s["rollout/score"] for _, s in finals.values()]
    raw = [s["rollout/score_raw"] for _, s in finals.values()]
    assert any(abs(a - b) > 1e-6 for a, b in zip(shaped, raw, strict=True))


def _wait_for_step(metrics: Path, step: int, proc: subprocess.Popen, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and any(
            r.get("step", 0) >= step and "rollout/score_raw" in r for r in read_metrics(metrics)
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} in {metrics} (exit code {proc.poll()})")


def test_ctrl_c_finishes_the_step_saves_it_and_resumes_exactly(run_dir: Path) -> None:
    """The interrupted step is completed and saved under its own number, never half of it."""
    _ppo(run_dir, "straight")
    _copy_run(run_dir, "ctrl_c")
    out = run_dir / "runs" / "ctrl_c" / "ppo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "icegrt_cli.cli", "ppo", "run.name=ctrl_c", *TINY_PPO],
        cwd=run_dir,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for_step(out / "metrics.jsonl", 1, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    said = " ".join((stdout + stderr).split())
    assert proc.returncode == 130, said[-2000:]
    stopped = int(re.search(r"interrupted after step (\d+)", said)[1])
    assert 1 <= stopped < 4 and "Traceback" not in said
    assert (out / "checkpoints" / f"step-{stopped}").exists() and not (out / "model").exists()
    _ppo(run_dir, "ctrl_c", "run.resume=latest")
    straight, resumed = (
        [
            r
            for r in read_metrics(run_dir / "runs" / n / "ppo" / "metrics.jsonl")
            if "rollout/score_raw" in r
        ]
        for n in ("straight", "ctrl_c")
    )
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed, strict=True):
        for key in ("rollout/score_raw", "kl/ref", "ppo/policy_loss", "ppo/value_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)


def test_grpo_runs_without_a_critic_and_resumes_exactly(run_dir: Path) -> None:
    grpo = ("advantage=grpo", "rollout.n=2", "rollout.batch_size=2", "train.eval_every=4")
    out = run_dir / "runs" / "grpo_whole" / "ppo"
    _copy_run(run_dir, "grpo_whole")
    for stale in ("critic", "critic_adapter", "adapter"):  # an earlier run's, with LoRA
        (out / stale).mkdir(parents=True)
        (out / stale / "model.safetensors").write_text("an earlier run's weights")
    _ppo(run_dir, "grpo_whole", *grpo)
    assert not [p.name for p in out.iterdir() if "adapter" in p.name or "critic" in p.name]
    _ppo(run_dir, "grpo_parts", *grpo, "train.stop_after=2")
    checkpoint = next((run_dir / "runs" / "grpo_parts" / "ppo" / "checkpoints").iterdir())
    assert not [p.name for p in checkpoint.rglob("*critic*")]
    _ppo(run_dir, "grpo_parts", *grpo, "run.resume=latest")
    assert (out / "model").is_dir()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["critic"] is False and set(summary["trainable_parameters"]) == {"actor"}
    assert summary["episodes_per_step"] == 4
    whole, parts = (
        [
            r
            for r in read_metrics(run_dir / "runs" / n / "ppo" / "metrics.jsonl")
            if "rollout/score_raw" in r
        ]
        for n in ("grpo_whole", "grpo_parts")
    )
    assert len(whole) == len(parts) == 4
    assert "ppo/value_loss" not in whole[0]
    assert 0.0 <= whole[0]["adv/zero_spread_groups"] <= 1.0 and "adv/grpo_abs_mean" in whole[0]
    assert "ppo/kl_loss" in whole[0] and whole[0]["kl/ref"] == 0.0  # GRPO: k3 in the loss
    for a, b in zip(whole, parts, strict=True):
        for key in ("rollout/score_raw", "kl/ref", "ppo/policy_loss", "adv/group_reward_std"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)


def test_a_value_head_on_a_lora_actor_replaces_the_critic_and_resumes_exactly(
    run_dir: Path,
) -> None:
    shared = ("ppo.shared_backbone=true", "peft=lora", "ppo.steps=2", "train.eval_every=0")
    _ppo(run_dir, "shared", *shared)
    out = run_dir / "runs" / "shared" / "ppo"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["value_head_on_actor"] is True and summary["critic"] is False
    assert set(summary["trainable_parameters"]) == {"actor"}
    assert (out / "value_head.safetensors").is_file() and not (out / "critic").exists()
    assert (out / "adapter").is_dir()
    AutoModelForCausalLM.from_pretrained(out / "model")  # a plain causal LM folder
    _ppo(run_dir, "shared_parts", *shared, "train.stop_after=1")
    _ppo(run_dir, "shared_parts", *shared, "run.resume=latest")
    whole, parts = (
        [
            r
            for r in read_metrics(run_dir / "runs" / n / "ppo" / "metrics.jsonl")
            if "ppo/value_loss" in r
        ]
        for n in ("shared", "shared_parts")
    )
    assert len(whole) == len(parts) == 2 and all(r["ppo/value_loss"] > 0 for r in whole)
    for key in ("rollout/score_raw", "ppo/policy_loss", "ppo/value_loss"):
        assert parts[1][key] == pytest.approx(whole[1][key], rel=1e-4, abs=1e-6), key
    heads = [
        load_file(run_dir / "runs" / n / "ppo" / "value_head.safetensors")
        for n in ("shared", "shared_parts")
    ]
    assert heads[0]["weight"].abs().max() > 0  # trained: it starts at zero
    for name, weight in heads[0].items():  # the resumed head is the checkpoint's, trained on
        torch.testing.assert_close(heads[1][name], weight, rtol=1e-4, atol=1e-7)
