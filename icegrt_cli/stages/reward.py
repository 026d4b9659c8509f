"""`icegrt train-rm`: the reward model (ICE-Reward), trained on preference pairs.

A transformer backbone with a one-output head scores prompt + response + EOS at its last real
token; the pairwise Bradley-Terry loss teaches it to score the chosen answer above the rejected
one. Its size is its own config group, independent of the actor's
(`model@reward_model=sft|tiny|small|base|hf`), so `-m model@reward_model=tiny,small,base` is a
reward-size sweep.

Held-out metrics, logged per eval in metrics.jsonl as means per pair: eval/accuracy,
eval/margin, eval/score_mean, eval/score_sq_mean. The score std is derived from the last two
(sqrt(score_sq_mean - score_mean^2)) in the summary: a std is not a sum the engine can average.
"""

from __future__ import annotations

import json
import random
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from rich.table import Table

from icegrt_cli.adapters import ADAPTER_DIR, merged, trainable_parameters, with_adapters
from icegrt_cli.atomic import writing_folder
from icegrt_cli.data.splits import load_splits
from icegrt_cli.engine import StepOutput, fit, save_run_config
from icegrt_cli.engine.engines import SHARDED_PARAMETERS
from icegrt_cli.engine.runtime import peak_memory_mb, seed_per_process
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.models import load_scalar_model, load_tokenizer, materialize
from icegrt_cli.reward.gold_check import checked_sources, gold_agreement
from icegrt_cli.reward.loss import bradley_terry_loss, pair_metrics, std_from_moments
from icegrt_cli.reward.pairs import PairCollator, PairExample, check_pair_record, encode_pairs
from icegrt_cli.reward.scoring import score_sequences, sequence_scores
from icegrt_cli.reward.stats import RewardStats
from icegrt_cli.stages.common import resolve_model, training_runtime, write_summary
from icegrt_cli.stages.rerun import settings_of

DEMO_PART = "pairs"
EVAL_FILE = "reward_eval.json"


def reward_step(
    model: torch.nn.Module, batch: dict[str, Any], margin: float = 0.0, center_coef: float = 0.0
) -> StepOutput:
    """Score the batch's 2N rows in one pass: chosen are rows [0, N), rejected rows [N, 2N)."""
    scores = sequence_scores(model, batch["input_ids"], batch["attention_mask"])  # (2N,)
    n = int(batch["weight"])
    chosen, rejected = scores[:n], scores[n:]
    loss = bradley_terry_loss(chosen, rejected, margin, center_coef)
    return StepOutput(loss, pair_metrics(chosen, rejected))


def held_out_figures(metrics: dict[str, float]) -> dict[str, float]:
    """accuracy, margin, score mean and std from the engine's per-pair eval means."""
    if not metrics:
        return {}
    return {
        "accuracy": metrics["accuracy"],
        "margin": metrics["margin"],
        "score_mean": metrics["score_mean"],
        "score_std": std_from_moments(metrics["score_mean"], metrics["score_sq_mean"]),
        "loss": metrics["loss"],
    }


def run(cfg: DictConfig, out_dir: Path, run_root: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    # 1. Config checks before any work, runtime, the reward model's tokenizer.
    if cfg.calibration_size < 2:
        raise ConfigError(f"calibration_size: needs at least 2 scores, got {cfg.calibration_size}")
    model_cfg = _reward_model_config(cfg.reward_model, run_root)
    gold_checked = bool(checked_sources(cfg.data.sources))
    if cfg.engine.kind in SHARDED_PARAMETERS:
        raise ConfigError(
            f"engine.kind={cfg.engine.kind}: train-rm calibrates and checks the reward model on "
            "one process after training, which needs whole weights; use engine=zero2 or ddp"
        )
    rt = training_runtime(cfg)
    tokenizer = load_tokenizer(model_cfg)

    # 2. Data: pairs encoded per side, unusable pairs skipped and counted.
    train_records, eval_records = load_splits(cfg.data, DEMO_PART, check_pair_record, cfg.run.seed)
    train_set, train_skips = encode_pairs(train_records, tokenizer, cfg.data.max_length)
    eval_set, eval_skips = encode_pairs(eval_records, tokenizer, cfg.data.max_length)
    skips = train_skips + eval_skips
    if not train_set:
        raise DataError(
            f"all {len(train_records)} training pairs were skipped: {train_skips.identical} with "
            f"chosen == rejected, {train_skips.too_long} longer than "
            f"data.max_length={cfg.data.max_length} tokens"
        )
    rt.print(
        f"train-rm: {len(train_set)} train / {len(eval_set)} held-out pairs; skipped "
        f"{skips.identical} with chosen == rejected and {skips.too_long} longer than "
        f"{cfg.data.max_length} tokens"
    )

    # 3. Model: the SFT model, a checkpoint or a built preset, with a new scalar head.
    with rt.accelerator.main_process_first():  # one process writes, the others read it
        init_path = materialize(model_cfg, out_dir / "init", cfg.run.seed)
    model = load_scalar_model(init_path, model_cfg, tokenizer)
    model = with_adapters(model, cfg.peft, scalar=True)
    trainable, total = trainable_parameters(model)
    seed_per_process(rt, cfg.run.seed)

    # 4. Train.
    # Recorded only now that data and models are good: a failed command leaves an earlier
    # run's config.yaml as it was.
    save_run_config(cfg, out_dir)
    step = partial(reward_step, margin=cfg.loss.margin, center_coef=cfg.loss.center_coef)
    result = fit(
        rt,
        model,
        train_set,
        PairCollator(tokenizer.pad_token_id),
        step,
        run=cfg.run,
        train=cfg.train,
        optim=cfg.optim,
        out_dir=out_dir,
        eval_set=eval_set,
        title="train-rm",
        settings=settings_of(cfg),
    )
    start_figures = held_out_figures(result.first_eval)
    figures = held_out_figures(result.eval_metrics)
    summary: dict[str, Any] = {
        "stage": "train_rm",
        "reward_model": model_cfg.name_or_path
        or f"preset {model_cfg.hidden_size}x{model_cfg.num_layers}",
        "parameters": total,
        "peft": cfg.peft.kind,
        "trainable_parameters": trainable,
        "steps": result.steps,
        "train_loss": result.train_loss,
        "eval_accuracy_start": start_figures.get("accuracy"),
        **{f"eval_{key}": value for key, value in figures.items()},
        "train_pairs": len(train_set),
        "eval_pairs": len(eval_set),
        "skipped_identical": skips.identical,
        "skipped_too_long": skips.too_long,
    }
    if result.stopped_early:
        rt.print(f"train-rm: stopped after step {result.steps} (train.stop_after); checkpoint kept")
        return summary

    # 5. Calibrate, check against the sources' judges (the demo: its gold scorer), save.
    model = rt.accelerator.unwrap_model(model)
    if rt.is_main:
        model = merged(model, out_dir / ADAPTER_DIR)
        model_dir = out_dir / "model"
        stats = _calibrate(model, train_set, tokenizer.pad_token_id, cfg)
        summary["reward_stats"] = {"mean": stats.mean, "std": stats.std, "count": stats.count}
        if gold_checked:
            gold = gold_agreement(
                model, tokenizer, cfg.data.sources, cfg.run.seed, 2 * cfg.train.batch_size
            )
            summary |= {
                "gold_agreement": gold.rate,
                "gold_agreement_by_kind": gold.by_kind,
                "gold_pairs": gold.pairs,
            }
        held_out = {"pairs": len(eval_set), **figures}
        held_out |= {k: summary[k] for k in ("gold_agreement", "gold_pairs") if k in summary}
        with writing_folder(model_dir) as folder:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            stats.save(folder)
            (folder / EVAL_FILE).write_text(json.dumps(held_out, indent=2))
        summary["seconds"] = round(time.perf_counter() - started, 1)
        summary["peak_memory_mb"] = peak_memory_mb(rt.device)
        write_summary(out_dir, summary)
        rt.print(_summary_table(summary))
        rt.print(f"train-rm: done in {result.steps} steps; reward model in {model_dir}")
    rt.accelerator.wait_for_everyone()
    return summary


def _reward_model_config(model_cfg: DictConfig, run_root: Path | None) -> DictConfig:
    stage = model_cfg.get("from_stage")
    if stage and run_root is None:
        raise ConfigError(
            f"reward_model.from_stage={stage}: starting from this run's {stage} model needs "
            "run.name=NAME (the run to take it from); or choose a size with "
            "model@reward_model=tiny|small|base"
        )
    return resolve_model(model_cfg, run_root, "reward_model")


def _calibrate(
    model: torch.nn.Module, train_set: list[PairExample], pad_id: int, cfg: DictConfig
) -> RewardStats:
    """Mean / std of the scores of both answers of `calibration_size` training pairs.

    PPO normalises the policy's own samples with these. Chosen answers alone would put the
    mean above what an SFT policy writes (it writes the flawed kinds too), so every rollout
    would start with a negative normalised reward; the two sides together bracket it.
    """
    count = min(cfg.calibration_size, len(train_set))
    picked = random.Random(cfg.run.seed).sample(range(len(train_set)), count)
    rows = [train_set[i].chosen for i in picked] + [train_set[i].rejected for i in picked]
    scores = score_sequences(model, rows, pad_id, 2 * cfg.train.batch_size)
    return RewardStats.of(
        scores, f"chosen and rejected answers of {count} pairs sampled from the training pairs"
    )


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="reward model", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    by_kind = summary.get("gold_agreement_by_kind", {})
    rows = [
        ("held-out accuracy (start)", summary["eval_accuracy_start"]),
        ("held-out accuracy", summary.get("eval_accuracy")),
        ("held-out margin", summary.get("eval_margin")),
        ("held-out score mean", summary.get("eval_score_mean")),
        ("held-out score std", summary.get("eval_score_std")),
        ("gold agreement (judged held-out pairs)", summary.get("gold_agreement")),
        *((f"  vs {kind}", rate) for kind, rate in by_kind.items()),
        ("reward stats mean", summary["reward_stats"]["mean"]),
        ("reward stats std", summary["reward_stats"]["std"]),
        (
            "skipped (identical / too long)",
            f"{summary['skipped_identical']} / {summary['skipped_too_long']}",
        ),
        ("parameters", f"{summary['parameters']:,}"),
        ("seconds", summary["seconds"]),
    ]
    for name, value in rows:
        table.add_row(name, _fmt(value))
    return table


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
