"""The schema is the single source of defaults: every field documented, choices checked before
anything loads, no shipped YAML restating a default, and --help built from the docstrings."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from icegrt_cli.config import DataConfig, KLConfig, ModelConfig, RewardShapingConfig, TaskConfig
from icegrt_cli.errors import ConfigError
from icegrt_cli.launch import (
    conf_dir,
    group_slots,
    name_groups,
    register_resolvers,
    stage_help,
    validate,
)
from icegrt_cli.schema import dataclasses_in, default_of, field_docs
from icegrt_cli.stages.registry import STAGES, register_configs

GROUP_SCHEMAS = {
    "model": ModelConfig,
    "data": DataConfig,
    "kl": KLConfig,
    "reward": RewardShapingConfig,
    "task": TaskConfig,
}
"""Which dataclass each config group's option files fill."""


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()
    register_resolvers()


def test_every_field_of_every_stage_has_a_docstring() -> None:
    missing = [
        f"{cls.__name__}.{item.name}"
        for stage in STAGES.values()
        for cls in dataclasses_in(stage.schema)
        for item in dataclasses.fields(cls)
        if item.name not in field_docs(cls)
    ]
    assert missing == []


def _restated(
    values: dict, schema: type, prefix: str = "", overriding: frozenset[str] = frozenset()
) -> list[str]:
    """Keys of `values` (a YAML file's content) equal to the dataclass default they set.
    Keys under `overriding` (a stage body's group slots) override the chosen group's preset,
    so they may equal the dataclass default (eval's fp32 `model.dtype` over model=hf)."""
    found = []
    fields = {item.name: item for item in dataclasses.fields(schema)}
    for key, value in values.items():
        if key == "defaults" or key not in fields or key in overriding:
            continue
        default = default_of(fields[key])
        if isinstance(value, dict) and isinstance(default, dict):
            inner = typing_nested(schema, key)
            found += _restated(value, inner, f"{prefix}{key}.") if inner else []
        elif value == default:
            found.append(f"{prefix}{key}")
    return found


def typing_nested(schema: type, name: str) -> type | None:
    from icegrt_cli.schema import _nested

    inner, how = _nested(schema, name)
    return inner if how == "one" else None


def test_no_shipped_yaml_merely_restates_a_default() -> None:
    restated = {}
    for group, schema in GROUP_SCHEMAS.items():
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            values = OmegaConf.to_container(OmegaConf.load(path)) or {}
            if keys := _restated(values, schema):
                restated[f"{group}/{path.name}"] = keys
    for stage in STAGES.values():
        for path in (
            conf_dir() / f"{stage.name}.yaml",
            conf_dir() / "stage" / f"{stage.name}.yaml",
        ):
            values = OmegaConf.to_container(OmegaConf.load(path)) if path.exists() else {}
            slots = frozenset(group_slots(stage.name)) if stage.name != "pipeline" else None
            if keys := _restated(values or {}, stage.schema, overriding=slots or frozenset()):
                restated[path.relative_to(conf_dir()).as_posix()] = keys
    assert restated == {}


@pytest.mark.parametrize(
    ("stage", "override", "message"),
    [
        ("ppo", "kl.kind=pid", "kl.kind: 'pid' is not one of fixed | none | adaptive"),
        (
            "ppo",
            "rollout.truncated=drop",
            "rollout.truncated: 'drop' is not one of score | penalty",
        ),
        ("ppo", "ppo.critic_init=random", "ppo.critic_init: 'random' is not one of"),
        ("sft", "loss_per=sentence", "loss_per: 'sentence' is not one of token | example"),
        ("sft", "run.precision=fp8", "run.precision: 'fp8' is not one of fp32 | bf16 | fp16"),
        ("sft", "model.dtype=int4", "model.dtype: 'int4' is not one of"),
        ("sft", "data.sources.1.kind=s3", "data.sources.1.kind: 's3' is not one of demo | file"),
        ("pipeline", "ppo.reward.normalize=z", "ppo.reward.normalize: 'z' is not one of none"),
    ],
)
def test_a_bad_choice_fails_before_anything_loads_with_the_valid_values(
    stage: str,
    override: str,
    message: str,
) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        validate(stage, stage, [override])
    assert str(caught.value).startswith(message)
    assert time.perf_counter() - started < 5  # composing only, no model or data


def test_the_schema_defaults_are_what_a_stage_runs_with() -> None:
    """Values that once lived only in YAML now come from the dataclasses."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        ppo = compose(config_name="ppo")
        sft = compose(config_name="sft")
    assert ppo.ppo.ptx_coef == 0.2 and [s.path for s in ppo.ptx_data.sources] == [
        "general_sft",
        "sft",
    ]
    assert ppo.kl.horizon == 500 and sft.optim.lr == 3e-3 and sft.train.epochs == 4


def test_help_shows_groups_settings_docstrings_and_examples_that_run() -> None:
    text = stage_help("ppo", "ppo", ["kl=adaptive", "--help"])
    assert "  kl                         adaptive  (fixed, none)" in text
    assert "  kl.horizon = 500\n      Adaptive: episodes over which beta adapts" in text
    assert "  ppo.ptx_coef = 0.2\n" in text
    for stage in STAGES.values():
        for example in stage.examples:
            args = [a.strip("'") for a in example.split()[2:]]
            validate(stage.name, stage.name, name_groups(stage.name, args))  # a valid command


def test_help_is_printed_by_the_cli_without_running_anything(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "icegrt_cli.cli", "sft", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "optim.lr = 0.003" in proc.stdout
    assert "Peak learning rate of AdamW." in proc.stdout and not (tmp_path / "runs").exists()
