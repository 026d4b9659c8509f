"""Every shipped config composes against its schema; bad overrides fail in one line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import tomllib
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from icegrt_cli.errors import ConfigError
from icegrt_cli.launch import (
    check_one_mode,
    conf_dir,
    flags_first,
    group_slots,
    name_groups,
    register_resolvers,
    stage_help,
    validate,
)
from icegrt_cli.stages.registry import STAGES, register_configs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()
    register_resolvers()


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_group_option_composes(stage: str) -> None:
    """Each slot of each stage (and of the pipeline) accepts every option of its group."""
    slots = group_slots(stage)
    assert slots, stage
    options = {
        # each task slot holds its own task; no cross product
        package: [package.rsplit(".", 1)[-1]] if group == "task" else _group_options(group)
        for package, group in slots.items()
    }
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        assert compose(config_name=stage).stage == stage
        # Round i sets every slot to its i-th option (the groups are independent): every
        # option of every slot composes in as many rounds as the longest group has options.
        for i in range(max(map(len, options.values()))):
            chosen = {package: names[i % len(names)] for package, names in options.items()}
            overrides = name_groups(stage, [f"{p}={o}" for p, o in chosen.items()])
            cfg = compose(config_name=stage, overrides=overrides)
            for package, option in chosen.items():
                assert OmegaConf.select(cfg, package) is not None, (package, option)


def test_pipeline_routes_stage_overrides() -> None:
    assert name_groups("pipeline", ["ppo.kl=adaptive", "sft.optim.lr=1"]) == [
        "kl@ppo.kl=adaptive",
        "sft.optim.lr=1",
    ]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(
            config_name="pipeline",
            overrides=name_groups("pipeline", ["ppo.kl=adaptive", "train_rm.reward_model=small"]),
        )
    assert cfg.ppo.kl.kind == "adaptive" and cfg.train_rm.reward_model.hidden_size == 256
    assert cfg.sft.stage == "sft" and cfg.ppo.data.sources[0].eval_path == "valid"


def test_unknown_key_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^optim\.lrr: Key 'lrr' not in 'OptimConfig'"):
        validate("sft", "sft", ["optim.lrr=1"])


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^optim\.lr: Value 'abc'"):
        validate("sft", "sft", ["optim.lr=abc"])


def test_every_sweep_value_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        validate("sft", "sft", ["-m", "optim.lr=1e-3,abc"])
    validate("sft", "sft", ["-m", "optim.lr=1e-3,3e-3", "train.batch_size=2,4"])


def test_unknown_group_option_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"model/tinyy.*available: .*tiny"):
        validate("sft", "sft", ["model=tinyy"])


def test_wheel_ships_every_package() -> None:
    """pyproject lists packages by hand (conf/ is mapped into the package); none may be missed."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "icegrt_cli").rglob("__init__.py")
    }
    assert found <= listed
    assert "icegrt_cli.conf" in listed


def test_flags_move_before_overrides() -> None:
    """argparse would drop overrides that follow a flag (`icegrt ppo a=1 -m b=1,2`)."""
    args = ["a=1", "-m", "b=1,2", "--cfg", "job", "--info", "defaults", "c=3"]
    assert flags_first(args) == ["-m", "--cfg", "job", "--info", "defaults", "a=1", "b=1,2", "c=3"]


def test_hydra_modes_cannot_be_combined() -> None:
    check_one_mode(["-m", "--config-dir", "x", "kl=none,fixed"])
    check_one_mode(["--cfg", "job", "-c", "hydra"])  # one mode, two spellings
    with pytest.raises(ConfigError, match="-m and --cfg cannot be combined"):
        check_one_mode(["-m", "--cfg", "hydra", "kl=none,fixed"])


@pytest.mark.parametrize("stage", ["sft", "train_rm", "ppo"])
def test_a_data_group_replaces_the_stage_default(stage: str) -> None:
    """`data=jsonl` must reach the stage: no stage body may pin its own data sources."""
    overrides = ["data=jsonl", "data.sources.0.path=x.jsonl"]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name=stage, overrides=overrides)
    assert [s.kind for s in cfg.data.sources] == ["file"]
    assert cfg.data.sources[0].path == "x.jsonl"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_help_example_composes(stage: str) -> None:
    """Each command under `examples:` in `icegrt STAGE --help` is a valid command line."""
    help_text = stage_help(stage, stage, [])
    lines = help_text.split("\nexamples:\n", 1)[1].splitlines()
    assert len(lines) >= 2
    for line in lines:
        command = shlex.split(re.split(r"\s{2,}", line.strip())[0])
        assert command[:2] == ["icegrt", STAGES[stage].verb], line
        args = flags_first(name_groups(stage, command[2:]))
        check_one_mode(args)
        for flag in ("--cfg", "job"):  # what --cfg prints is the composed config: compose it
            if flag in args:
                args.remove(flag)
        validate(stage, stage, args)


@pytest.mark.parametrize("resolver", ["icegrt_run_dir", "icegrt_sweep_dir"])
def test_a_dated_run_started_in_the_same_second_gets_a_folder_of_its_own(
    tmp_path: Path, resolver: str
) -> None:
    """Two unnamed runs (or two sweeps) started in one second were given one folder."""
    node = {"dir": f"${{{resolver}:{tmp_path},null,sft,2026-01-02_09-30-00}}"}
    first = OmegaConf.create(node)
    chosen = first.dir
    Path(chosen).mkdir(parents=True)
    assert first.dir == chosen  # resolved again once it exists: still the run's own folder
    second = OmegaConf.create(node)
    assert second.dir == f"{chosen}-2"
    Path(second.dir).mkdir()
    assert OmegaConf.create(node).dir == f"{chosen}-3"
