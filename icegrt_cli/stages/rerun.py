"""Honest reruns: a finished stage is never started again by accident, and a resume continues
the run it names, with the settings that run was made with.

Every checkpoint keeps the composed settings of its stage (`settings` in its state.json). Before
anything is written - before Hydra writes `.hydra/` - a command with `run.resume` is compared
with them, and refused in one line naming each differing key when

- the stage already finished (its summary.json exists): there is nothing left to resume, and
  resuming would retrain its last steps on top of a finished model, or
- a setting differs from the checkpoint's: the result would match neither the old settings nor
  the new ones, while config.yaml would claim the new ones.

`run.force=true` goes ahead anyway (the differences are still printed). Keys that only say
where or how a run is launched, or when it saves and stops, may change on resume: see
`FREE_ON_RESUME`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from icegrt_cli.errors import ConfigError
from icegrt_cli.schema import flatten, value_text
from icegrt_cli.stages.common import is_complete

LAUNCH_KEYS = frozenset(
    f"run.{key}"
    for key in ("name", "root", "resume", "progress", "force", "tensorboard", "num_threads")
)
"""`run.*` keys that change where or how a run is launched, not what it computes (a report
leaves them out of the factors that tell runs apart, too)."""

FREE_ON_RESUME = LAUNCH_KEYS | frozenset(
    {
        "train.stop_after",  # resume after a test stop is the point of stop_after
        "train.save_every",
        "train.keep_last",
        "train.sample_every",
        "run.log_every",
    }
)
"""Keys a resume may change: launch settings and the save / stop / log cadence. Evaluation
cadence (`train.eval_every`) is compared: PPO's held-out evaluations draw from the same seeds."""


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """The stage's settings as plain data, as a checkpoint keeps them."""
    return OmegaConf.to_container(cfg, resolve=True)


def setting_changes(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: old → new` for each setting that differs, launch and cadence keys left out; keys
    are shown after `prefix` (a pipeline's `ppo.`), as the user types them."""
    old, new = flatten(saved), flatten(now)
    absent = "(absent)"
    changes = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key in FREE_ON_RESUME or old.get(key, absent) == new.get(key, absent):
            continue
        shown = [value_text(side[key]) if key in side else absent for side in (old, new)]
        changes.append(f"{prefix}{key}: {shown[0]} → {shown[1]}")
    return changes


def check_resume(cfg: DictConfig, out_dir: Path, prefix: str = "") -> list[str]:
    """Raise ConfigError when a command would start a finished training stage afresh, or
    `cfg.run.resume` would continue a finished stage or a checkpoint made with other settings,
    unless `run.force`; return the problems found (printed by the caller when forced)."""
    if cfg.get("stage") == "eval":  # keeps no checkpoints; a rerun rewrites only its results
        return []
    if not cfg.run.get("resume"):
        return check_fresh_start(cfg, out_dir)
    from icegrt_cli.engine.checkpoint import Checkpointer, checkpoint_settings

    checkpoint = Checkpointer(out_dir / "checkpoints").resolve(cfg.run.resume)
    problems = []
    if is_complete(out_dir):
        problems.append(f"{out_dir} already finished (summary.json), nothing to resume")
    saved = checkpoint_settings(checkpoint)
    changes = [] if saved is None else setting_changes(saved, settings_of(cfg), prefix)
    if changes:
        problems.append(f"settings differ from {checkpoint}'s: {', '.join(changes)}")
    if problems and not cfg.run.get("force"):
        raise ConfigError(
            f"run.resume={cfg.run.resume}: {'; '.join(problems)} "
            "(run.force=true resumes anyway; without run.resume the stage starts afresh)"
        )
    return problems


def check_fresh_start(cfg: DictConfig, out_dir: Path) -> list[str]:
    """Refuse to start a finished stage again, which would replace its model, metrics and
    config, unless `run.force` (then `save_run_config` unmarks it once its inputs load)."""
    if not is_complete(out_dir):
        return []
    problem = f"{out_dir} already finished (summary.json); starting it again replaces its model"
    if not cfg.run.get("force"):
        raise ConfigError(f"{problem} (a new run.name keeps both; run.force=true starts it again)")
    return [problem]
