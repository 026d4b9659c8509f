"""`icegrt sft`: supervised fine-tuning on demonstrations, loss on response tokens only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from icegrt_cli.adapters import ADAPTER_DIR, merged, trainable_parameters, with_adapters
from icegrt_cli.data.collate import LMCollator, pack
from icegrt_cli.data.formatting import Encoded, check_sft_record, encode_sft
from icegrt_cli.data.splits import load_splits
from icegrt_cli.engine import StepOutput, fit, save_run_config
from icegrt_cli.engine.runtime import peak_memory_mb, seed_per_process
from icegrt_cli.errors import DataError
from icegrt_cli.eval.generate import generate_responses
from icegrt_cli.lm import lm_loss_sum
from icegrt_cli.models import load_causal_lm, load_tokenizer, materialize
from icegrt_cli.stages.common import (
    gathered_weights,
    resolve_model,
    save_model_folder,
    training_runtime,
    write_summary,
)
from icegrt_cli.stages.rerun import settings_of


def lm_step(model: Any, batch: dict[str, Any]) -> StepOutput:
    return StepOutput(lm_loss_sum(model, batch), {})


def encode_all(
    records: list[dict[str, Any]], tokenizer: Any, max_length: int
) -> tuple[list[Encoded], int]:
    """Encoded examples that fit `max_length`, and how many were skipped for length."""
    kept = [encode_sft(tokenizer, r) for r in records]
    fitting = [e for e in kept if len(e.input_ids) <= max_length]
    return fitting, len(kept) - len(fitting)


def run(cfg: DictConfig, out_dir: Path, run_root: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    # 1. Runtime, tokenizer.
    rt = training_runtime(cfg)
    model_cfg = resolve_model(cfg.model, run_root, "model")
    tokenizer = load_tokenizer(model_cfg)

    # 2. Data: the blend of sources, tokenised with the prompt masked.
    train_records, eval_records = load_splits(cfg.data, "sft", check_sft_record, cfg.run.seed)
    train_set, skipped = encode_all(train_records, tokenizer, cfg.data.max_length)
    eval_set, eval_skipped = encode_all(eval_records, tokenizer, cfg.data.max_length)
    if not train_set:
        raise DataError(f"all {len(train_records)} training examples exceed data.max_length")
    if cfg.data.packing:
        train_set = pack(train_set, cfg.data.max_length)
    rt.print(
        f"sft: {len(train_records)} train / {len(eval_records)} held-out examples"
        f" ({skipped + eval_skipped} longer than {cfg.data.max_length} tokens skipped)"
    )

    # 3. Model: a checkpoint or a preset built and saved, loaded through from_pretrained.
    with rt.accelerator.main_process_first():  # one process writes, the others read it
        init_path = materialize(model_cfg, out_dir / "init", cfg.run.seed)
    model = with_adapters(load_causal_lm(init_path, model_cfg, tokenizer), cfg.peft)
    trainable, total = trainable_parameters(model)
    seed_per_process(rt, cfg.run.seed)

    # 4. Train.
    # Recorded only now that data and models are good: a failed command leaves an earlier
    # run's config.yaml as it was.
    save_run_config(cfg, out_dir)
    collate = LMCollator(tokenizer.pad_token_id, per_example=cfg.loss_per == "example")
    result = fit(
        rt,
        model,
        train_set,
        collate,
        lm_step,
        run=cfg.run,
        train=cfg.train,
        optim=cfg.optim,
        out_dir=out_dir,
        eval_set=eval_set,
        title="sft",
        settings=settings_of(cfg),
    )
    summary = {
        "stage": "sft",
        "steps": result.steps,
        "train_loss": result.train_loss,
        "eval_loss_start": result.first_eval.get("loss"),
        "eval_loss": result.eval_metrics.get("loss"),
        "skipped_too_long": skipped + eval_skipped,
        "train_examples": len(train_records),
        "eval_examples": len(eval_records),
        "peft": cfg.peft.kind,
        "trainable_parameters": trainable,
        "parameters": total,
        "peak_memory_mb": peak_memory_mb(rt.device),
    }
    if result.stopped_early:
        rt.print(f"sft: stopped after step {result.steps} (train.stop_after); checkpoint kept")
        return summary

    # 5. Save the final model and show what it learned.
    whole = gathered_weights(rt, model)  # every process: a collective under sharded engines
    model = rt.accelerator.unwrap_model(model)
    if rt.is_main:
        model = merged(model, out_dir / ADAPTER_DIR)
        save_model_folder(model, tokenizer, out_dir / "model", whole)
        if whole is None:  # sharded weights cannot run on one process alone
            _show_samples(rt, model, tokenizer, eval_records[: cfg.sample_prompts])
        summary["seconds"] = round(time.perf_counter() - started, 1)
        write_summary(out_dir, summary)
    rt.print(
        f"sft: done in {result.steps} steps; held-out loss {_fmt(summary['eval_loss_start'])}"
        f" -> {_fmt(summary['eval_loss'])}; model in {out_dir / 'model'}"
    )
    rt.accelerator.wait_for_everyone()
    return summary


def _show_samples(rt: Any, model: Any, tokenizer: Any, records: list[dict[str, Any]]) -> None:
    prompts = [r["prompt"] for r in records if "prompt" in r]
    if not prompts:
        return
    model.eval()
    for prompt, answer in zip(prompts, generate_responses(model, tokenizer, prompts), strict=True):
        rt.print(f"[dim]{prompt}[/dim]\n[bold]{answer}[/bold]\n")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
