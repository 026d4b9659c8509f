"""`icegrt pipeline`: stages chain through one run folder; finished stages are skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import TINY_SFT, icegrt

pytestmark = pytest.mark.slow

STAGES = ("sft", "train_rm", "ppo", "eval")
TINY = [
    *(f"sft.{o}" for o in TINY_SFT if not o.startswith("run.")),
    "train_rm.data.sources.0.limit=64",
    "train_rm.train.max_steps=3",
    "train_rm.train.batch_size=8",
    "train_rm.calibration_size=8",
    "ppo.ppo.steps=2",
    "ppo.rollout.batch_size=8",
    "ppo.rollout.max_new_tokens=12",
    "ppo.ppo.minibatch_size=4",
    "ppo.train.eval_size=4",
    "ppo.data.sources.0.limit=32",
    "ppo.ptx_data.sources.0.limit=32",
    "ppo.ptx_data.sources.1.limit=32",
    "ppo.ppo.ptx_batch_size=4",
    "eval.tasks=[ad_moderation,arc_easy]",
    "eval.limit=4",
    "eval.task.ad_moderation.limit=4",
    "run.progress=false",
]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("pipeline")
    proc = icegrt("pipeline", "run.name=demo", *TINY, "ppo.kl=adaptive", cwd=cwd)
    return cwd, proc.stdout


def test_each_stage_finds_the_last_and_eval_compares_sft_with_ppo(pipeline_run) -> None:
    cwd, stdout = pipeline_run
    run = cwd / "runs" / "demo"
    for stage in STAGES:
        summary = json.loads((run / stage / "summary.json").read_text())
        assert summary["seconds"] > 0, stage
    assert not list(run.rglob("*.log"))  # no empty Hydra job logs
    results = json.loads((run / "eval" / "results.json").read_text())
    paired = results["tasks"]["ad_moderation"]["paired"]["ppo"]["gold"]
    assert paired["n"] == 4 and paired["stderr"] is not None
    ppo_cfg = (run / "ppo" / "config.yaml").read_text()
    assert "kind: adaptive" in ppo_cfg and "from_stage: sft" in ppo_cfg
    results = json.loads((run / "eval" / "results.json").read_text())
    assert [Path(p).parent.name for p in results["models"].values()] == ["sft", "ppo"]
    assert "ad_moderation" in stdout and "arc_easy" in stdout


def test_rerun_skips_finished_stages_and_force_reruns_one(pipeline_run) -> None:
    cwd, _ = pipeline_run
    eval_summary = cwd / "runs" / "demo" / "eval" / "summary.json"
    before = eval_summary.stat().st_mtime_ns
    proc = icegrt("pipeline", "run.name=demo", *TINY, "ppo.kl=adaptive", cwd=cwd)
    assert proc.stdout.count("already finished") == 4
    assert eval_summary.stat().st_mtime_ns == before
    assert "PPO − SFT" in proc.stdout  # the short final table, also on a rerun
    # a finished stage is not skipped silently when the command asks for other settings
    proc = icegrt("pipeline", "run.name=demo", *TINY, cwd=cwd, check=False)
    assert proc.returncode != 0 and "ppo.kl.kind: adaptive → fixed" in proc.stderr, proc.stderr
    proc = icegrt("pipeline", "run.name=demo", *TINY, "ppo.kl=adaptive", "force=[eval]", cwd=cwd)
    assert proc.stdout.count("already finished") == 3
    assert eval_summary.stat().st_mtime_ns > before


def test_reuse_from_links_finished_stages(pipeline_run, tmp_path: Path) -> None:
    cwd, _ = pipeline_run
    base = cwd / "runs" / "demo"
    proc = icegrt(
        "pipeline", "run.name=again", f"reuse_from={base}", "stages=[sft,train_rm]", *TINY, cwd=cwd
    )
    again = cwd / "runs" / "again"
    assert (again / "sft").is_symlink() and (again / "train_rm").is_symlink()
    assert proc.stdout.count("reused from") == 2


def test_a_bad_ppo_setting_stops_the_pipeline_before_sft(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Review this ad."}\n')
    proc = icegrt(
        "pipeline",
        "run.name=own",
        "ppo.data=jsonl",
        f"ppo.data.sources.0.path={prompts}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "error: ptx_data: PPO-ptx (ppo.ptx_coef=0.2) would train on the demo's" in proc.stderr
    assert not (tmp_path / "runs" / "own" / "sft").exists()  # nothing trained, nothing lost


def test_a_group_estimator_with_one_response_per_prompt_stops_the_pipeline(tmp_path: Path) -> None:
    proc = icegrt("pipeline", "run.name=grpo", "ppo.advantage=grpo", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: advantage=grpo needs rollout.n >= 2 responses per prompt (its baseline is the "
        "rest of the group), got rollout.n=1"
    )
    assert not (tmp_path / "runs" / "grpo" / "sft").exists()
