"""`icegrt eval`: in-domain and general scores for one or several checkpoints, side by side.

The paper's claim has two sides - better in the domain, no worse in general - so one table
holds both: the demo tasks (gold score of answer and analysis, general skills) and the twelve
general benchmarks, one column per checkpoint with its delta to the first. results.json also
keeps each later model's paired difference from the first (`tasks.NAME.paired`): the mean and
standard error of the per-item differences over the same items.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from icegrt_cli.config import EvalConfig, ModelConfig, TaskConfig
from icegrt_cli.engine import save_run_config, setup_runtime
from icegrt_cli.errors import ConfigError
from icegrt_cli.eval.metrics import paired_difference
from icegrt_cli.eval.report import (
    BatchBars,
    comparison_table,
    task_line,
    write_predictions,
    write_results,
)
from icegrt_cli.eval.runner import LoadedModel, Settings, run_task
from icegrt_cli.eval.tasks import Task, load_task
from icegrt_cli.models import check_model_path, load_causal_lm, load_scalar_model, load_tokenizer
from icegrt_cli.reward.scoring import score_texts
from icegrt_cli.stages.common import resolve_model, stage_model, write_summary

DEFAULT_MAX_LENGTH = 2048


def resolve_checkpoints(model: DictConfig, run_root: Path | None) -> list[str]:
    """`model.paths`, else `model.name_or_path` (or `model.from_stage`), else the run's PPO
    actor, else its SFT model."""
    model = resolve_model(model, run_root, "model")
    paths = list(model.paths) or ([model.name_or_path] if model.name_or_path else [])
    if not paths:
        ppo = run_root / "ppo" / "model" if run_root is not None else None
        if ppo is not None and (ppo / "config.json").exists():
            return [str(ppo)]
        return [str(stage_model(run_root, "sft", "model.paths"))]
    for path in paths:
        check_model_path(path, "model.paths")
    return paths


def model_labels(paths: list[str]) -> list[str]:
    """Short unique column names: `runs/demo/ppo/model` -> `ppo`, more of the path if needed."""
    parts = [[p for p in Path(path).parts if p not in ("model", "/")] or [path] for path in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["-".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label}-{i}" for i, label in enumerate(labels, start=1)]


def paired_differences(
    predictions: dict[str, list[dict[str, Any]]], metrics: list[str], labels: list[str]
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Each later model minus the first, item by item (every model answers the task's items in
    the same order): `{label: {metric: {mean, stderr, n}}}`, from
    `icegrt_cli.eval.metrics.paired_difference`."""
    base = predictions.get(labels[0], [])
    paired: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for label in labels[1:]:
        rows = list(zip(predictions.get(label, []), base, strict=True))
        for metric in metrics:
            pairs = [
                (p["metrics"][metric], b["metrics"][metric])
                for p, b in rows
                if metric in p["metrics"] and metric in b["metrics"]
            ]
            if pairs:
                diff, stderr = paired_difference(*zip(*pairs, strict=True))
                paired.setdefault(label, {})[metric] = {
                    "mean": diff,
                    "stderr": stderr,
                    "n": len(pairs),
                }
    return paired


def _for_checkpoint(model: ModelConfig, path: str, **changes: Any) -> ModelConfig:
    """The loading settings of `model` (dtype, trust_remote_code, ...) for one checkpoint."""
    return OmegaConf.to_object(OmegaConf.merge(model, {"name_or_path": path, **changes}))


def _task_config(cfg: EvalConfig, name: str) -> TaskConfig:
    if name not in cfg.task:
        raise ConfigError(
            f"tasks: '{name}' has no settings under task.{name} "
            f"(configured: {', '.join(sorted(cfg.task))})"
        )
    return cfg.task[name]


def run(cfg: EvalConfig, out_dir: Path, run_root: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    # 1. Runtime.
    rt = setup_runtime(cfg.run)

    # 2. Tasks: every file read and checked before any model loads.
    tasks: list[Task] = [
        load_task(name, _task_config(cfg, name), cfg.limit, cfg.run.seed, cfg.subsample)
        for name in cfg.tasks
    ]
    if not tasks:
        raise ConfigError("tasks: empty; name at least one task")

    # 3. Checkpoints, and the reward model if one is given.
    # Recorded only now that data and models are good: a failed command leaves an earlier
    # run's config.yaml as it was.
    save_run_config(cfg, out_dir)
    paths = resolve_checkpoints(cfg.model, run_root)
    labels = model_labels(paths)
    reward = None
    if cfg.reward_model:
        check_model_path(cfg.reward_model, "reward_model")
        rm_cfg = _for_checkpoint(cfg.model, cfg.reward_model, tokenizer=None)
        rm_tokenizer = load_tokenizer(rm_cfg)
        rm = load_scalar_model(cfg.reward_model, rm_cfg, rm_tokenizer).to(rt.device)
        reward = partial(score_texts, rm, rm_tokenizer, batch_size=cfg.batch_size)
    settings = Settings(cfg.batch_size, cfg.max_new_tokens, cfg.run.seed)
    rt.print(
        f"eval: {len(tasks)} tasks x {len(paths)} model(s): "
        + ", ".join(f"{label} = {path}" for label, path in zip(labels, paths, strict=True))
    )

    # 4. Every task on every model, one model in memory at a time.
    scores: dict[str, dict[str, dict[str, Any]]] = {task.name: {} for task in tasks}
    per_item: dict[str, dict[str, list[dict[str, Any]]]] = {task.name: {} for task in tasks}
    with BatchBars(rt.console, cfg.run.progress) as bars, rt.accelerator.autocast():
        for label, path in zip(labels, paths, strict=True):
            model_cfg = _for_checkpoint(cfg.model, path)
            tokenizer = load_tokenizer(model_cfg)
            model = load_causal_lm(path, model_cfg, tokenizer).to(rt.device).eval()
            max_length = (
                cfg.max_length
                or getattr(model.config, "max_position_embeddings", None)
                or DEFAULT_MAX_LENGTH
            )
            lm = LoadedModel(model, tokenizer, max_length)
            bars.prefix = f"{label}/" if len(paths) > 1 else ""
            for task in tasks:
                outcome = run_task(task, lm, settings, reward, bars.bar)
                speed = len(task.items) / outcome.seconds if outcome.seconds > 0 else None
                scores[task.name][label] = {
                    "values": outcome.values,
                    "stderr": outcome.stderr,
                    "seconds": round(outcome.seconds, 3),
                    "items_per_second": round(speed, 3) if speed else None,
                }
                per_item[task.name][label] = outcome.predictions
                rt.print(task_line(task, bars.prefix + task.label, outcome, speed))
                if cfg.save_predictions and rt.is_main:
                    write_predictions(out_dir, label, task.name, outcome.predictions)
            del model, lm

    # 5. Report: the table, results.json, and the summary that marks the stage complete.
    results = {
        "models": dict(zip(labels, paths, strict=True)),
        "reward_model": cfg.reward_model,
        "settings": {
            "limit": cfg.limit,
            "batch_size": cfg.batch_size,
            "max_new_tokens": cfg.max_new_tokens,
            "max_length": cfg.max_length,
            "subsample": cfg.subsample,
            "seed": cfg.run.seed,
        },
        "tasks": {
            task.name: {
                "label": task.label,
                "source": task.source.origin,
                "fixture": task.source.fixture,
                "path": task.source.path,
                "format": task.cfg.format,
                "n": len(task.items),
                "of": task.total,
                "metrics": task.metrics,
                "config": OmegaConf.to_container(OmegaConf.structured(task.cfg)),
                "scores": scores[task.name],
                "paired": paired_differences(per_item[task.name], task.metrics, labels),
            }
            for task in tasks
        },
    }
    rt.print(comparison_table(results))
    if rt.is_main:  # under a launcher every process scores everything; one writes
        rt.print(f"results: {write_results(out_dir, results)}")
        summary = {
            "models": results["models"],
            "scores": {
                name: {label: s["values"] for label, s in per.items()}
                for name, per in scores.items()
            },
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_summary(out_dir, summary)
    rt.accelerator.wait_for_everyone()
    return results
