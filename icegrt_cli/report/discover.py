"""Find the runs under a folder and read what their stages left behind.

A run is either a pipeline folder (`runs/NAME/`, or a pipeline multirun job) whose stages sit
in `sft/ train_rm/ ppo/ eval/` subfolders - some of them links to another run's stages
(`reuse_from`) - or a single stage folder (`runs/NAME/ppo/`, a stage multirun job). A sweep is
any folder with runs below it, at any depth: `runs/NAME/multirun/pipeline/<date>/3/`,
`runs/multirun/ppo/<date>/0/`, ... Every sweep has its own dated folder
(`runs/NAME/multirun/ppo/<date>/0/`); the date shows in a run's id only where two sweeps under
one name would otherwise give two runs the same id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from icegrt_cli.data.loading import read_jsonl
from icegrt_cli.errors import DataError
from icegrt_cli.stages.common import SUMMARY
from icegrt_cli.stages.registry import PIPELINE_ORDER as STAGES


@dataclass(frozen=True)
class Stage:
    """One stage folder's records."""

    name: str
    path: Path
    config: dict[str, Any]
    """The composed, resolved config the stage ran with (its config.yaml)."""
    metrics: list[dict[str, Any]]
    """metrics.jsonl records in order; several may share a step."""
    summary: dict[str, Any] | None
    """summary.json; None while the stage is unfinished."""
    results: dict[str, Any] | None
    """results.json of the eval stage."""
    choices: dict[str, str]
    """Hydra config-group choices of this stage, `ppo.kl -> adaptive`."""
    linked: bool
    """The folder is a link to another run's stage (shared through `reuse_from`)."""


@dataclass(frozen=True)
class Run:
    """A pipeline run or a lone stage run, named by its path below the reported folder."""

    id: str
    path: Path
    stages: dict[str, Stage]

    @property
    def finished(self) -> bool:
        return all(stage.summary is not None for stage in self.stages.values())


def find_runs(path: Path) -> list[Run]:
    """Every run at or below `path`, in natural order (job 2 before job 10)."""
    if not path.is_dir():
        raise DataError(f"{path}: no such folder")
    folders = _run_folders(path)
    if not folders:
        raise DataError(f"{path}: no runs found (no stage folder with a config.yaml below it)")
    ids = [run_id(folder, path) for folder in folders]
    if len(set(ids)) < len(ids):  # two sweeps under one name: their dates tell them apart
        ids = [run_id(folder, path, stamps=True) for folder in folders]
    return [_load_run(folder, run) for folder, run in zip(folders, ids, strict=True)]


def _run_folders(folder: Path) -> list[Path]:
    if _stage_name(folder) is not None:
        return [folder]
    stage_children = list(_pipeline_stages(folder).values())
    found = [folder] if stage_children else []
    for child in sorted(folder.iterdir(), key=_natural_key):
        # Links are stages shared with another run, read as part of the run that links them.
        if (
            child.is_dir()
            and not child.is_symlink()
            and not child.name.startswith(".")
            and child not in stage_children
        ):
            found.extend(_run_folders(child))
    return found


def _stage_name(folder: Path) -> str | None:
    """The stage a folder holds, from its config.yaml; None when it is not a stage folder."""
    config = folder / "config.yaml"
    if not config.is_file():
        return None
    name = _read_yaml(config).get("stage")
    return name if name in STAGES else None


def _pipeline_stages(folder: Path) -> dict[str, Path]:
    return {name: folder / name for name in STAGES if _stage_name(folder / name) == name}


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


SWEEP_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")
"""The dated folder each sweep gets (`multirun/<stage>/<stamp>/<job>`)."""


def run_id(folder: Path, root: Path, stamps: bool = False) -> str:
    """`kl/multirun/pipeline/<date>/3` -> `kl/3`: the path below `root` without Hydra's sweep
    parts; with `stamps`, the sweep's date stays (`kl/<date>/3`), to tell two sweeps apart."""
    parts = list(folder.relative_to(root).parts)
    while "multirun" in parts:
        index = parts.index("multirun")
        del parts[index : index + 2]  # `multirun/<stage>`
    if not stamps:
        parts = [part for part in parts if not SWEEP_STAMP.fullmatch(part)]
    return "/".join(parts) or folder.resolve().name


def _load_run(folder: Path, run_name: str) -> Run:
    name = _stage_name(folder)
    if name is not None:
        choices = _choices(folder, prefix=f"{name}.")
        stages = {name: _load_stage(folder, name, choices, linked=False)}
    else:
        choices = _choices(folder, prefix="")
        stages = {
            name: _load_stage(path, name, _stage_choices(choices, name), path.is_symlink())
            for name, path in _pipeline_stages(folder).items()
        }
    return Run(run_name, folder, stages)


def _stage_choices(choices: dict[str, str], stage: str) -> dict[str, str]:
    return {key: value for key, value in choices.items() if key.split(".")[0] == stage}


def _load_stage(folder: Path, name: str, choices: dict[str, str], linked: bool) -> Stage:
    metrics = folder / "metrics.jsonl"
    return Stage(
        name=name,
        path=folder,
        config=_read_yaml(folder / "config.yaml"),
        metrics=read_records(metrics) if metrics.is_file() else [],
        summary=_read_json(folder / SUMMARY),
        results=_read_json(folder / "results.json"),
        # A linked stage ran with its own run's choices, which this run's .hydra does not hold.
        choices={} if linked else choices,
        linked=linked,
    )


def _choices(folder: Path, prefix: str) -> dict[str, str]:
    """Config-group choices Hydra recorded for a run, keyed by package: `kl@ppo.kl` -> `ppo.kl`.

    A lone stage's packages lack the stage name (`kl`), so `prefix` adds it (`ppo.kl`).
    """
    hydra_file = folder / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return {}
    choices = (_read_yaml(hydra_file).get("hydra") or {}).get("runtime", {}).get("choices") or {}
    return {
        prefix + (key.partition("@")[2] or key).lstrip("/"): str(value)
        for key, value in choices.items()
        if value is not None and not key.startswith("hydra/")
    }


def read_records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl records; a line that is not JSON is reported as `file:line`."""
    return [record for _, record in read_jsonl(path)]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML ({err})") from None
    return data if isinstance(data, dict) else {}
