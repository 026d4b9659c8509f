"""`icegrt pipeline`: sft -> train-rm -> ppo -> eval in one run folder.

Each stage runs with its own settings (`cfg.<stage>`) and the pipeline's `run` settings, writes
to `<run folder>/<stage>/`, and finds the earlier stages there. Finished stages are skipped,
so a pipeline stopped in PPO continues at PPO when started again.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from icegrt_cli.console import print_warning
from icegrt_cli.engine.checkpoint import Checkpointer
from icegrt_cli.engine.engines import check_engine_machine, has_accelerator, is_first_process
from icegrt_cli.errors import ConfigError
from icegrt_cli.stages.common import SUMMARY, is_complete, write_summary
from icegrt_cli.stages.registry import PIPELINE_ORDER, STAGES
from icegrt_cli.stages.rerun import check_resume, setting_changes, settings_of


def stage_config(cfg: DictConfig, name: str, run_dir: Path) -> DictConfig:
    """The settings a stage runs with inside the pipeline."""
    run = OmegaConf.to_container(cfg.run)
    stage_dir = run_dir / name
    if run["resume"] == "latest" and Checkpointer(stage_dir / "checkpoints").latest() is None:
        run["resume"] = None  # nothing of this stage to resume: start it fresh
    overrides: dict[str, Any] = {"run": run}
    if name == "eval":
        overrides.update(_eval_models(cfg.eval, run_dir))
    return OmegaConf.merge(cfg[name], overrides)


def check_stages(cfg: DictConfig, run_dir: Path) -> list[str]:
    """Refuse, before any stage runs, a finished stage that would be skipped although its
    settings differ from this command's (unless it is in `force`, which reruns it), and a
    resume that `check_resume` refuses; with `run.force=true` return the problems instead."""
    problems = []
    for name in cfg.stages:
        stage_dir = run_dir / name
        if stage_dir.is_symlink() or name not in PIPELINE_ORDER:
            continue  # a stage reused from another run ran with that run's settings
        now = stage_config(cfg, name, run_dir)
        if not is_complete(stage_dir) or name in cfg.force:
            problems += check_resume(now, stage_dir, f"{name}.")
            continue
        saved = stage_dir / "config.yaml"
        if not saved.is_file():
            continue
        changes = setting_changes(
            OmegaConf.to_container(OmegaConf.load(saved)), settings_of(now), f"{name}."
        )
        if changes:
            problems.append(
                f"{name} already finished in {stage_dir} with other settings: {', '.join(changes)}"
            )
    if problems and not cfg.run.force:
        raise ConfigError(
            f"{'; '.join(problems)} (force=[STAGE] reruns a finished stage; run.force=true "
            "keeps it as it is)"
        )
    return problems


def _eval_models(eval_cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Compare the run's SFT and PPO models, scored by its reward model, unless told otherwise."""
    found = [
        str(run_dir / s / "model")
        for s in ("sft", "ppo")
        if (run_dir / s / "model" / "config.json").exists()
    ]
    extra: dict[str, Any] = {}
    if not eval_cfg.model.paths and not eval_cfg.model.name_or_path and found:
        extra["model"] = {"paths": found}
    rm = run_dir / "train_rm" / "model"
    if eval_cfg.reward_model is None and (rm / "config.json").exists():
        extra["reward_model"] = str(rm)
    return extra


def _link_finished(source: Path, run_dir: Path, name: str) -> bool:
    """Link a finished stage of another run into this one; True when linked."""
    origin = source / name
    target = run_dir / name
    if target.exists() or not is_complete(origin):
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        target.symlink_to(origin.resolve(), target_is_directory=True)
    except FileExistsError:  # another process of a launched run linked it a moment ago
        return False
    return True


def run(cfg: DictConfig, out_dir: Path, run_root: Path | None) -> dict[str, Any]:
    from rich.console import Console

    started = time.perf_counter()
    first = is_first_process()  # the others run the same stages and print nothing of their own
    console = Console(highlight=False, quiet=not first)
    unknown = [s for s in cfg.stages if s not in PIPELINE_ORDER]
    if unknown:
        raise ConfigError(f"stages: unknown {unknown}; choose from {list(PIPELINE_ORDER)}")
    reuse = Path(cfg.reuse_from) if cfg.reuse_from else None
    if reuse is not None and not reuse.is_dir():
        raise ConfigError(f"reuse_from: no run folder '{reuse}'")
    for problem in check_stages(cfg, out_dir):
        print_warning(f"run.force=true: going ahead although {problem}")
    modules = {name: importlib.import_module(STAGES[name].module) for name in cfg.stages}
    for name, module in modules.items():  # a late stage's bad setting must not cost the early ones
        if hasattr(module, "check"):
            module.check(cfg[name])
        if "engine" in cfg[name]:
            check_engine_machine(cfg[name].engine.kind, cfg[name].run.cpu or not has_accelerator())
    summaries: dict[str, Any] = {}
    for name in cfg.stages:
        stage_dir = out_dir / name
        if reuse is not None and name not in cfg.force and _link_finished(reuse, out_dir, name):
            console.print(f"[dim]pipeline: {name} reused from {reuse / name}[/dim]")
        if is_complete(stage_dir) and name not in cfg.force:
            console.print(
                f"[dim]pipeline: {name} already finished in {stage_dir}; skipped "
                f"(force=\\[{name}] reruns it)[/dim]"
            )
            summaries[name] = json.loads((stage_dir / SUMMARY).read_text())
            continue
        if stage_dir.is_symlink():
            raise ConfigError(f"force: {name} is linked from another run; rerun it there")
        console.rule(f"[bold]{name}")
        summaries[name] = modules[name].run(stage_config(cfg, name, out_dir), stage_dir, out_dir)
        if summaries[name].get("stopped_early"):
            console.print(f"pipeline: {name} stopped early; rerun with run.resume=latest")
            return summaries
    results = out_dir / "eval" / "results.json"
    if "eval" in cfg.stages and results.is_file():
        from icegrt_cli.report.tables import final_table

        table = final_table(json.loads(results.read_text()))
        if table is not None:
            console.print(table)
    seconds = round(time.perf_counter() - started, 1)
    if first:
        summary = {"stage": "pipeline", "stages": list(cfg.stages), "seconds": seconds}
        write_summary(out_dir, summary)
    return summaries
