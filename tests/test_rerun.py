"""Honest reruns: a resume with other settings, or of a finished stage, is refused in one line
naming what differs, and writes nothing, unless `run.force=true`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import TINY_SFT, icegrt


def _files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_setting_changes_name_each_key_and_skip_launch_and_cadence_keys() -> None:
    from icegrt_cli.stages.rerun import setting_changes

    saved = {"run": {"resume": None}, "kl": {"kind": "fixed"}, "train": {"stop_after": 3}}
    now = {"run": {"resume": "latest"}, "kl": {"kind": "adaptive"}, "train": {}}
    assert setting_changes(saved, now) == ["kl.kind: fixed → adaptive"]
    assert setting_changes({"a": [1, 2]}, {"a": [1, 2], "b": None}) == ["b: (absent) → null"]


@pytest.mark.slow
def test_resume_with_other_settings_or_of_a_finished_stage_needs_force(tmp_path: Path) -> None:
    icegrt("sft", "run.name=demo", *TINY_SFT, "train.stop_after=3", cwd=tmp_path)
    stage = tmp_path / "runs" / "demo" / "sft"
    before = _files(stage)

    changed = [*TINY_SFT, "optim.lr=1e-3", "run.resume=latest"]
    proc = icegrt("sft", "run.name=demo", *changed, cwd=tmp_path, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert "optim.lr: 0.003 → 0.001" in errors[0] and "run.force=true" in errors[0]
    assert "run.resume: " not in errors[0] and "stop_after" not in errors[0]  # free on resume
    assert _files(stage) == before  # not even Hydra's .hydra/ was rewritten

    proc = icegrt("sft", "run.name=demo", *changed, "run.force=true", cwd=tmp_path)
    assert (stage / "summary.json").exists()
    assert "warning: run.force=true: going ahead although settings differ" in proc.stderr
    assert not [log for log in stage.glob("*.log")]  # no empty Hydra job log

    proc = icegrt("sft", "run.name=demo", *changed, cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "already finished" in proc.stderr, proc.stderr

    finished = _files(stage)
    proc = icegrt("sft", "run.name=demo", *TINY_SFT, cwd=tmp_path, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert "already finished" in errors[0] and "run.force=true" in errors[0]
    assert _files(stage) == finished  # a plain rerun leaves the finished stage as it was

    icegrt("sft", "run.name=demo", *TINY_SFT, "run.force=true", cwd=tmp_path)
    assert json.loads((stage / "summary.json").read_text())["steps"] > 0
    assert (stage / "summary.json").stat().st_mtime_ns > finished[str(stage / "summary.json")]
