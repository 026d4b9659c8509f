"""Small pieces every stage shares: run folders, finding earlier stages, summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from icegrt_cli.atomic import write_text_atomically, writing_folder
from icegrt_cli.engine.engines import SHARDED_PARAMETERS, full_state_dict
from icegrt_cli.engine.runtime import Runtime, setup_runtime
from icegrt_cli.errors import ConfigError

SUMMARY = "summary.json"


def training_runtime(cfg: DictConfig) -> Runtime:
    """The runtime of a one-model training stage (sft, train-rm): its engine, with the
    accumulation and clipping the engine must know of."""
    return setup_runtime(
        cfg.run,
        cfg.engine,
        grad_accum=cfg.train.grad_accum,
        max_grad_norm=cfg.optim.max_grad_norm,
        peft=cfg.peft.kind,
    )


def stage_model(run_root: Path | None, stage: str, key: str) -> Path:
    """The final model folder an earlier stage of the same run wrote."""
    if run_root is None:
        raise ConfigError(f"{key}: not set, and no run.name to find the {stage} stage's model by")
    path = run_root / stage / "model"
    if not (path / "config.json").exists():
        raise ConfigError(
            f"{key}: not set, and run '{run_root}' has no finished {stage} stage ({path} missing)"
        )
    return path


def save_model_folder(
    model: Any, tokenizer: Any, final: Path, state_dict: dict[str, Any] | None = None
) -> None:
    """A plain `save_pretrained` folder (weights and tokenizer), written atomically;
    `state_dict`: the whole weights gathered from a sharded model (`gathered_weights`)."""
    with writing_folder(final) as folder:
        model.save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)


def gathered_weights(rt: Any, model: Any) -> dict[str, Any] | None:
    """Under FSDP / ZeRO the whole state dict, gathered from every process's shard onto the
    main one (every process must call this); None where each process holds whole weights."""
    if rt.engine not in SHARDED_PARAMETERS:
        return None
    return full_state_dict(rt.accelerator, model)


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    """Marks the stage complete; the pipeline skips stages that have one."""
    write_text_atomically(out_dir / SUMMARY, json.dumps(summary, indent=2))


def is_complete(out_dir: Path) -> bool:
    return (out_dir / SUMMARY).exists()


def resolve_model(cfg: DictConfig, run_root: Path | None, key: str) -> DictConfig:
    """A model config with `from_stage` turned into the path of that stage's final model."""
    if not cfg.get("from_stage"):
        return cfg
    path = stage_model(run_root, cfg.from_stage, f"{key}.from_stage={cfg.from_stage}")
    return OmegaConf.merge(cfg, {"name_or_path": str(path), "from_stage": None})
