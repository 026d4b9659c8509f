"""Hand a stage's command-line overrides to Hydra's own run machinery.

Before Hydra starts, every override (each value of a sweep too) is composed once against the
stage's typed schema, so `optim.lrr=1` or `optim.lr=abc` fails in one line naming the key,
before any work — and Hydra then owns -m, --cfg, --config-dir, launchers and sweepers.
"""

from __future__ import annotations

import importlib
import itertools
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from icegrt_cli.console import print_warning
from icegrt_cli.engine.lock import run_lock
from icegrt_cli.errors import ConfigError, reporting_errors
from icegrt_cli.schema import check_choices, settings_help
from icegrt_cli.stages.registry import PIPELINE_ORDER, STAGES, register_configs
from icegrt_cli.stages.rerun import check_resume

# Hydra flags that take a value, and flags that ask Hydra for information instead of a run.
VALUE_FLAGS = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--package",
    "-p",
    "--experimental-rerun",
    "--cfg",
    "-c",
}
INFO_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--version",
}
INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
MAX_VALIDATED_COMBINATIONS = 64
MODE_FLAGS = {
    "--run": "--run",
    "-r": "--run",
    "--multirun": "-m",
    "-m": "-m",
    "--cfg": "--cfg",
    "-c": "--cfg",
    "--info": "--info",
    "-i": "--info",
    "--shell-completion": "--shell-completion",
    "-sc": "--shell-completion",
}
"""Hydra runs in exactly one of these modes; the spellings of each."""


def conf_dir() -> Path:
    """Configs ship inside the wheel as icegrt_cli/conf; a source checkout keeps them at conf/."""
    packaged = Path(__file__).parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "conf"


def _run_dir(root: str, name: str | None, stage: str, stamp: str) -> str:
    if stage == "pipeline":
        return f"{root}/{name}" if name else _unused(f"{root}/pipeline/{stamp}")
    return f"{root}/{name}/{stage}" if name else _unused(f"{root}/{stage}/{stamp}")


def _sweep_dir(root: str, name: str | None, stage: str, stamp: str) -> str:
    """Every sweep its own dated folder, its jobs numbered below it: a second sweep under the
    same run.name never lands in (or mixes its jobs with) the first one's `0/`, `1/`, ..."""
    return _unused(
        f"{root}/{name}/multirun/{stage}/{stamp}" if name else f"{root}/multirun/{stage}/{stamp}"
    )


def _unused(folder: str) -> str:
    """`folder`, or `folder-2`, `folder-3`, ... when a run started in the same second has it."""
    found, number = folder, 1
    while Path(found).exists():
        number += 1
        found = f"{folder}-{number}"
    return found


def register_resolvers() -> None:
    """The output-folder resolvers, cached: a dated folder is chosen once per command (Hydra
    carries the cache into every job of a sweep), not again once the run has created it."""
    for key, fn in (("icegrt_run_dir", _run_dir), ("icegrt_sweep_dir", _sweep_dir)):
        if not OmegaConf.has_resolver(key):
            OmegaConf.register_new_resolver(key, fn, use_cache=True)


def group_slots(stage: str) -> dict[str, str]:
    """Config-group slots of a stage, `package -> group`, from its body's defaults list.

    For the pipeline, each stage's slots appear under the stage's name (`ppo.kl -> kl`).
    """
    if stage == "pipeline":
        return {
            f"{name}.{package}": group
            for name in PIPELINE_ORDER
            for package, group in group_slots(name).items()
        }
    body = OmegaConf.load(conf_dir() / "stage" / f"{stage}.yaml")
    slots = {}
    for entry in body.get("defaults", []):
        if isinstance(entry, str):
            continue
        (key,) = entry.keys()
        group, _, package = key.lstrip("/").partition("@")
        slots[package or group] = group
    return slots


def name_groups(stage: str, args: list[str]) -> list[str]:
    """Let a slot be chosen by its package: `reward_model=small` -> `model@reward_model=small`.

    Hydra names a group placed under another package as `group@package=option`; this keeps the
    shorter spelling working too, e.g. `icegrt pipeline ppo.kl=adaptive`.
    """
    slots = group_slots(stage)
    rewritten = []
    for arg in args:
        key, sep, value = arg.partition("=")
        group = slots.get(key) if sep and not arg.startswith("-") else None
        if group is not None and group != key:
            arg = f"{group}@{key}={value}"
        rewritten.append(arg)
    return rewritten


def flags_first(args: list[str]) -> list[str]:
    """Hydra flags before the overrides: argparse stops reading overrides after a flag, so
    `icegrt ppo kl.coef=0.1 -m seed=1,2` would otherwise lose `seed=1,2`."""
    flags, overrides = [], []
    position = 0
    while position < len(args):
        arg = args[position]
        takes = arg in VALUE_FLAGS or (
            arg in ("--info", "-i")
            and position + 1 < len(args)
            and args[position + 1] in INFO_CHOICES
        )
        if arg.startswith("-"):
            flags += args[position : position + 1 + takes]
            position += 1 + takes
        else:
            overrides.append(arg)
            position += 1
    return flags + overrides


def check_one_mode(args: list[str]) -> None:
    """Hydra accepts one mode flag at a time; say so before it fails with a traceback."""
    modes = list(dict.fromkeys(MODE_FLAGS[arg] for arg in args if arg in MODE_FLAGS))
    if len(modes) > 1:
        raise ConfigError(
            f"{' and '.join(modes)} cannot be combined: use one of -m, --cfg, "
            "--info per command (print a sweep's config without -m)"
        )


def _split_args(args: list[str]) -> tuple[list[str], dict[str, str], bool]:
    """(overrides, flags with values, wants information only)."""
    overrides, flags, info = [], {}, False
    it = iter(args)
    for arg in it:
        if arg in INFO_FLAGS:
            info = True
        if arg in VALUE_FLAGS:
            flags[arg] = next(it, "")
        elif arg.startswith("-"):
            continue
        else:
            overrides.append(arg)
    return overrides, flags, info


def _combinations(overrides: list[str]) -> list[list[str]]:
    """Each sweep expanded, so every value is checked (capped for very large sweeps)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for override in parsed:
        if override.get_key_element().startswith("hydra"):
            continue  # Hydra's own settings (launcher, sweeper, ...) are Hydra's to check.
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    combos = itertools.islice(itertools.product(*choices), MAX_VALIDATED_COMBINATIONS)
    return [list(c) for c in combos]


def explain(err: BaseException) -> str:
    """One line from Hydra / OmegaConf errors: the key and what is wrong with it."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    for item in chain:
        if isinstance(item, OmegaConfBaseException) and getattr(item, "full_key", None):
            message = str(getattr(item, "msg", item)).splitlines()[0]
            return f"{item.full_key}: {message}"
    lines = [line.strip() for line in str(chain[0]).splitlines() if line.strip()]
    if not lines:
        return type(chain[0]).__name__
    for index, line in enumerate(lines):
        if line.startswith("Available options"):
            options = itertools.takewhile(lambda x: not x.endswith(":"), lines[index + 1 :])
            return f"{lines[0]} (available: {', '.join(options)})"
    return lines[0]


def check_set(cfg: DictConfig) -> None:
    """A `???` a chosen option leaves open (`model=hf` without `model.name_or_path`) is an
    error naming the key. OmegaConf keeps the schema's default (None) when it merges `???`, so
    the chosen option files are read too: the composed config alone would quietly build the
    default preset instead."""
    body = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    unset = {key: "" for key in sorted(OmegaConf.missing_keys(body))}
    for slot, option in cfg.hydra.runtime.choices.items():
        group, _, package = slot.partition("@")
        path = conf_dir() / group / f"{option}.yaml"
        if option is None or group.startswith("hydra") or not path.is_file():
            continue
        for key in sorted(OmegaConf.missing_keys(OmegaConf.load(path))):
            full = f"{package or group}.{key}"
            if OmegaConf.select(body, full) is None:
                unset.setdefault(full, f" for {slot}={option}")
    if unset:
        key, why = next(iter(unset.items()))
        raise ConfigError(f"{key}: must be set{why} ({key}=...)")


def validate(stage: str, config_name: str, args: list[str]) -> None:
    """Compose the config for every value combination; raise ConfigError on the first failure."""
    overrides, flags, info = _split_args(args)
    if info:
        return
    user_dir = flags.get("--config-dir") or flags.get("-cd")
    name = flags.get("--config-name") or flags.get("-cn") or config_name
    extra = [f"hydra.searchpath=[file://{Path(user_dir).resolve()}]"] if user_dir else []
    try:
        combos = _combinations(overrides)
        with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name=stage):
            for combo in combos:
                composed = compose(
                    config_name=name, overrides=combo + extra, return_hydra_config=True
                )
                check_set(composed)
                check_choices(composed, STAGES[stage].schema)
    except ConfigError:
        raise
    except Exception as err:  # Hydra raises many error types; all become one line
        raise ConfigError(explain(err)) from None


def check_reruns(stage: str, config_name: str, args: list[str]) -> None:
    """Refuse a dishonest resume (`icegrt_cli.stages.rerun`) before Hydra writes `.hydra/`
    into the run folder. Sweeps are checked job by job in `run_stage`."""
    overrides, flags, info = _split_args(args)
    if info or "-m" in args or "--multirun" in args:
        return
    user_dir = flags.get("--config-dir") or flags.get("-cd")
    extra = [f"hydra.searchpath=[file://{Path(user_dir).resolve()}]"] if user_dir else []
    try:
        with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name=stage):
            cfg = compose(
                config_name=flags.get("--config-name") or flags.get("-cn") or config_name,
                overrides=overrides + extra,
                return_hydra_config=True,
            )
        # absolute, as Hydra's output_dir: stages record paths inside the run folder with it
        out_dir = Path(cfg.hydra.run.dir).absolute()
    except Exception as err:  # as in validate: one line
        raise ConfigError(explain(err)) from None
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    if stage == "pipeline":
        from icegrt_cli.stages.pipeline import check_stages

        check_stages(cfg, out_dir)
    elif cfg.run.name or cfg.run.resume != "latest":  # a dated folder has nothing to resume
        check_resume(cfg, out_dir)


def stage_help(stage: str, config_name: str, args: list[str]) -> str:
    """`icegrt STAGE --help`: the config groups with their options and current choice, every
    setting with its value (after the given overrides) and docstring, and examples."""
    overrides, flags, _ = _split_args([a for a in args if a not in ("--help", "-h")])
    try:
        combo = _combinations(overrides)[0] if overrides else []
        with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name=stage):
            cfg = compose(
                config_name=flags.get("--config-name") or config_name,
                overrides=combo,
                return_hydra_config=True,
            )
    except Exception as err:  # as in validate: one line
        raise ConfigError(explain(err)) from None
    info = STAGES[stage]
    choices = cfg.hydra.runtime.choices
    lines = [
        f"icegrt {info.verb}: {info.summary}",
        "",
        f"usage: icegrt {info.verb} [key=value ...] [group=option ...] [-m] [--cfg job]",
        "",
        "config groups (group=option), the current choice first:",
    ]
    for package, group in group_slots(stage).items():
        if group == "task":
            continue  # one slot per eval task; `tasks=[...]` chooses, conf/task/ configures
        slot = group if package == group else f"{group}@{package}"
        current = choices.get(slot) or choices.get(package)
        others = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml") if p.stem != current)
        lines.append(f"  {slot:<26} {current}  ({', '.join(others)})")
    lines += ["", "settings (key=value), with the value this command would run with:"]
    lines += settings_help(
        info.schema, OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    )
    if stage in ("eval", "pipeline"):
        lines += ["", "  each eval task's own settings: task.NAME.* (conf/task/NAME.yaml)"]
    lines += [
        "",
        "examples:",
        *(f"  {example}" for example in info.examples),
        f"  icegrt {info.verb} --cfg job        print the composed config, run nothing",
    ]
    return "\n".join(lines)


def run_stage(stage: str, cfg: DictConfig) -> dict:
    """The Hydra task: run one stage in the job's output folder."""
    hydra = HydraConfig.get()
    out_dir = Path(hydra.runtime.output_dir)
    run_root = Path(cfg.run.root) / cfg.run.name if cfg.run.name else None
    module = importlib.import_module(STAGES[stage].module)
    # A named run is locked as a whole (a pipeline and a stage of it exclude each other); the
    # jobs of a sweep, each in its own folder, only lock that folder.
    alone = hydra.mode == RunMode.MULTIRUN or run_root is None
    with run_lock(out_dir if alone else run_root):
        if stage != "pipeline":  # the pipeline checks each of its stages
            for problem in check_resume(cfg, out_dir):
                print_warning(f"run.force=true: going ahead although {problem}")
        return module.run(cfg, out_dir, run_root)


def launch(stage: str, args: list[str], config_name: str | None = None) -> None:
    """Validate, then run `stage` through hydra.main with `args` as its command line."""
    import hydra

    register_configs()
    register_resolvers()
    config_name = config_name or stage
    args = flags_first(name_groups(stage, args))
    if "--help" in args or "-h" in args:
        print(stage_help(stage, config_name, args))
        return
    check_one_mode(args)
    validate(stage, config_name, args)
    check_reruns(stage, config_name, args)

    def task(cfg: DictConfig) -> None:
        with reporting_errors(bool(OmegaConf.select(cfg, "run.debug", default=False))):
            run_stage(stage, cfg)

    task.__module__ = __name__
    sys.argv = [f"icegrt {stage}", *args]
    entry = hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")
    entry(task)()
