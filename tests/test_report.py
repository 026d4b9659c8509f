"""`icegrt report` on a hand-written sweep folder, the factor-study script, and a real sweep."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from matplotlib.image import imread
from typer.testing import CliRunner

from icegrt_cli.cli import app
from icegrt_cli.errors import DataError
from icegrt_cli.report import make_report
from icegrt_cli.report.discover import find_runs, run_id
from icegrt_cli.report.factors import factor_groups, flatten, run_labels
from icegrt_cli.report.finals import Final, final_metrics, model_scores
from icegrt_cli.report.plots import pareto_front
from tests.cli_helpers import TINY_MODEL, icegrt, only_sweep

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "factor_study" / "run.sh"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# A fake sweep, written the way the stages write their folders -------------------------------


def _write_stage(
    folder: Path,
    config: dict[str, Any],
    records: list[dict[str, Any]],
    summary: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if records:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))


def _run(name: str) -> dict[str, Any]:
    return {"name": name, "root": "runs", "seed": 0, "progress": False}


def _results(
    job: Path, sft: tuple[float, float, float], ppo: tuple[float, float, float]
) -> dict[str, Any]:
    """results.json of an eval stage: (ad_moderation_valid gold, general_demo acc, arc_easy acc);
    ad_moderation (new wording) scores 0.2 below ad_moderation_valid."""
    tasks = {}
    tasks_and_metrics = (
        ("ad_moderation_valid", "gold"),
        ("general_demo", "acc"),
        ("arc_easy", "acc"),
        ("ad_moderation", "gold"),
    )
    sft, ppo = (*sft, sft[0] - 0.2), (*ppo, ppo[0] - 0.2)
    for index, (task, metric) in enumerate(tasks_and_metrics):
        tasks[task] = {
            "format": task,
            "n": 8,
            "metrics": [metric, "reward"],
            "scores": {
                "sft": {"values": {metric: sft[index]}, "stderr": {}},
                "ppo": {"values": {metric: ppo[index]}, "stderr": {}},
            },
        }
    return {
        "models": {"sft": str(job / "sft/model"), "ppo": str(job / "ppo/model")},
        "tasks": tasks,
    }


def _ppo_records(
    final: dict[str, float],
    eval_score: tuple[float, float],
    eval_gold: tuple[float, float],
    steps: int = 3,
    finished: bool = True,
) -> list[dict[str, Any]]:
    records = [{"step": 0, "time": 0.0, "eval/score": eval_score[0], "eval/gold": eval_gold[0]}]
    for step in range(1, steps + 1):
        # Earlier steps are off by a little, so only the last record gives the table's value.
        shift = 0.0 if step == steps else 0.01 * step
        records.append(
            {
                "step": step,
                "time": float(step),
                **{key: value - shift for key, value in final.items()},
            }
        )
    if finished:
        records.append(
            {"step": steps, "time": 9.0, "eval/score": eval_score[1], "eval/gold": eval_gold[1]}
        )
    return records


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """`study/multirun/pipeline/{0,1,2}`: kl none / fixed / fixed with advantage_norm off.

    Every job links sft and train_rm from `base` (reuse_from); job 2 stopped in PPO.
    """
    base = tmp_path / "runs" / "base"
    _write_stage(
        base / "sft",
        {
            "stage": "sft",
            "run": _run("base"),
            "model": {"hidden_size": 32},
            "data": {"sources": [{"kind": "demo", "path": None}]},
        },
        [{"step": 5, "time": 1.0, "train/loss": 2.0}, {"step": 5, "time": 1.0, "eval/loss": 1.5}],
        {"stage": "sft"},
    )
    _write_stage(
        base / "train_rm",
        {"stage": "train_rm", "run": _run("base"), "reward_model": {"from_stage": "sft"}},
        [{"step": 4, "time": 1.0, "eval/accuracy": 0.75}],
        {"stage": "train_rm"},
    )
    jobs = [
        (
            "none",
            0.0,
            True,
            {"rollout/score_raw": 0.5, "rollout/gold": 0.4, "kl/ref": 3.0, "kl/beta": 0.0},
            (0.1, 0.6),
            (0.3, 0.45),
            ((0.3, 0.5, 0.4), (0.45, 0.55, 0.35)),
        ),
        (
            "fixed",
            0.05,
            True,
            {"rollout/score_raw": 0.4, "rollout/gold": 0.5, "kl/ref": 1.0, "kl/beta": 0.05},
            (0.1, 0.3),
            (0.3, 0.5),
            ((0.3, 0.5, 0.4), (0.5, 0.5, 0.4)),
        ),
        (
            "fixed",
            0.05,
            False,
            {"rollout/score_raw": 0.2, "rollout/gold": 0.3, "kl/ref": 0.5, "kl/beta": 0.05},
            (0.1, 0.0),
            (0.3, 0.0),
            None,
        ),
    ]
    sweep_dir = tmp_path / "runs" / "study" / "multirun" / "pipeline"
    for number, (kind, coef, adv, final, score, gold, evals) in enumerate(jobs):
        job = sweep_dir / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "hydra.yaml").write_text(
            yaml.safe_dump(
                {
                    "hydra": {
                        "runtime": {
                            "choices": {
                                "kl@ppo.kl": kind,
                                "model@train_rm.reward_model": "sft",
                                "hydra/launcher": "basic",
                            }
                        }
                    }
                }
            )
        )
        for stage in ("sft", "train_rm"):
            (job / stage).symlink_to(base / stage, target_is_directory=True)
        finished = evals is not None
        _write_stage(
            job / "ppo",
            {
                "stage": "ppo",
                "run": _run(f"study-{number}"),
                "kl": {"kind": kind, "coef": coef, "target": 2.0},
                "ppo": {"advantage_norm": adv, "steps": 3},
            },
            _ppo_records(final, score, gold, finished=finished),
            {"stage": "ppo"} if finished else None,
        )
        if finished:
            _write_stage(
                job / "eval",
                {
                    "stage": "eval",
                    "run": _run(f"study-{number}"),
                    "model": {"paths": [str(job / "sft/model"), str(job / "ppo/model")]},
                    "reward_model": str(job / "train_rm/model"),
                    "tasks": ["ad_moderation_valid", "general_demo", "arc_easy", "ad_moderation"],
                },
                [],
                {"stage": "eval"},
                _results(job, *evals),
            )
            (job / "summary.json").write_text(json.dumps({"stage": "pipeline"}))
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")
    return tmp_path / "runs" / "study"


# The report on the fake sweep ----------------------------------------------------------------


def test_the_table_holds_each_runs_final_figures(sweep: Path) -> None:
    report = make_report(sweep)
    assert [run.id for run in report.runs] == ["0", "1", "2"]
    assert report.headers == [
        "run",
        "factors",
        "sft loss",
        "rm acc",
        "score",
        "gold",
        "KL",
        "beta",
        "held-out score",
        "held-out gold",
        "in-domain",
        "new wording",
        "general",
    ]
    assert report.rows == [
        [
            "0",
            "ppo.kl=none",
            "1.500",
            "0.750",
            "0.500",
            "0.400",
            "3.000",
            "0.000",
            "0.600 (+0.500)",
            "0.450 (+0.150)",
            "0.450 (+0.150)",
            "0.250 (+0.150)",
            "0.450 (+0.000)",
        ],
        [
            "1",
            "baseline",
            "1.500",
            "0.750",
            "0.400",
            "0.500",
            "1.000",
            "0.050",
            "0.300 (+0.200)",
            "0.500 (+0.200)",
            "0.500 (+0.200)",
            "0.300 (+0.200)",
            "0.450 (+0.000)",
        ],
        # Stopped in PPO: marked unfinished, its held-out figures only from step 0.
        [
            "2*",
            "ppo.ppo.advantage_norm=false",
            "1.500",
            "0.750",
            "0.200",
            "0.300",
            "0.500",
            "0.050",
            "0.100 (+0.000)",
            "0.300 (+0.000)",
            "-",
            "-",
            "-",
        ],
    ]


def test_the_factors_are_the_settings_that_differ(sweep: Path) -> None:
    report = make_report(sweep)
    # The kl group choice names the two keys it sets; run names and paths into each run's own
    # folder (eval.model.paths) differ too but are not factors; train_rm is shared.
    assert report.factors == {
        "ppo.kl": ["ppo.kl.kind", "ppo.kl.coef"],
        "ppo.ppo.advantage_norm": [],
    }


def test_report_md_has_the_table_the_factors_and_the_plots(sweep: Path) -> None:
    report = make_report(sweep, sweep / "out")
    text = report.markdown.read_text()
    assert report.markdown == sweep / "out" / "report.md"
    assert (
        "| run | factors | sft loss | rm acc | score | gold | KL | beta | held-out score "
        "| held-out gold | in-domain | new wording | general |"
    ) in text
    assert "| --- | --- | ---: |" in text
    assert (
        "| 0 | ppo.kl=none | 1.500 | 0.750 | 0.500 | 0.400 | 3.000 | 0.000 | 0.600 (+0.500) "
        "| 0.450 (+0.150) | 0.450 (+0.150) | 0.250 (+0.150) | 0.450 (+0.000) |"
    ) in text
    assert "- `ppo.kl`: `none` (0) · `fixed` (1, 2); with it: `ppo.kl.kind`, `ppo.kl.coef`" in text
    assert "- `ppo.ppo.advantage_norm`: `true` (0, 1) · `false` (2)" in text
    assert "* unfinished" in text
    for name in ("curves", "frontier", "domain_general"):
        assert f"![{name}]({name}.png)" in text


def test_the_plots_are_valid_pngs(sweep: Path) -> None:
    report = make_report(sweep)
    assert [image.name for image in report.images] == [
        "curves.png",
        "frontier.png",
        "domain_general.png",
    ]
    for image in report.images:
        assert image.parent == sweep / "report"
        assert image.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = imread(image).shape
        assert height > 300 and width > 500


def test_a_lone_stage_folder_is_one_run(sweep: Path) -> None:
    report = make_report(sweep / "multirun" / "pipeline" / "0" / "ppo", sweep / "single")
    assert [run.id for run in report.runs] == ["ppo"]
    assert report.factors == {}
    assert report.rows[0][:5] == ["ppo", "-", "0.500", "0.400", "3.000"]
    assert [image.name for image in report.images] == ["curves.png", "frontier.png"]
    assert "None: the runs share every setting." in report.markdown.read_text()


def test_runs_are_found_at_any_depth_in_natural_order(tmp_path: Path) -> None:
    sweep = tmp_path / "runs" / "x" / "multirun" / "ppo"
    for job in ("10", "2"):
        _write_stage(sweep / job, {"stage": "ppo", "run": _run("x")}, [])
    _write_stage(tmp_path / "runs" / "x" / "ppo", {"stage": "ppo", "run": _run("x")}, [])
    found = find_runs(tmp_path / "runs")
    assert [run.id for run in found] == ["x", "x/2", "x/10"]
    assert list(found[0].stages) == ["ppo"]  # runs/x is a run: its stages sit in it
    assert run_id(sweep / "2", tmp_path / "runs" / "x") == "2"


def test_a_lone_stage_sweep_names_its_factors_as_typed(tmp_path: Path) -> None:
    sweep = tmp_path / "runs" / "x" / "multirun" / "ppo" / "2026-01-01_10-00-00"
    for job, coef in (("0", 0.01), ("1", 0.2)):
        config = {"stage": "ppo", "run": _run("x"), "kl": {"coef": coef}}
        _write_stage(sweep / job, config, [])
    report = make_report(sweep)
    assert list(report.factors) == ["kl.coef"]
    assert "kl.coef=0.2" in report.markdown.read_text()


def test_two_sweeps_under_one_name_are_told_apart_by_their_dates(tmp_path: Path) -> None:
    sweeps = tmp_path / "runs" / "x" / "multirun" / "ppo"
    for stamp in ("2026-01-01_10-00-00", "2026-01-02_09-30-00"):
        _write_stage(sweeps / stamp / "0", {"stage": "ppo", "run": _run("x")}, [])
    ids = [run.id for run in find_runs(tmp_path / "runs" / "x")]
    assert ids == ["2026-01-01_10-00-00/0", "2026-01-02_09-30-00/0"]
    assert [run.id for run in find_runs(sweeps / "2026-01-02_09-30-00")] == ["0"]


def test_a_bad_metrics_line_is_named_by_file_and_line(sweep: Path) -> None:
    metrics = sweep / "multirun" / "pipeline" / "1" / "ppo" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().replace("\n", "\n{oops\n", 1))
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not valid JSON"):
        make_report(sweep)


# The command ---------------------------------------------------------------------------------


def test_the_command_prints_the_table_and_writes_the_report(sweep: Path) -> None:
    out = sweep.parent / "elsewhere"
    result = CliRunner().invoke(
        app, ["report", str(sweep), "--out", str(out)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "ppo.kl=none" in result.output and "0.450" in result.output
    assert f"report: {out / 'report.md'}" in result.output
    assert (out / "report.md").is_file() and (out / "curves.png").is_file()


def test_the_command_fails_in_one_line_without_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:")
    assert "no runs found" in result.output
    assert len(result.output.strip().splitlines()) == 1


# Pure helpers --------------------------------------------------------------------------------


def test_flatten_keeps_value_lists_whole_and_indexes_lists_of_mappings() -> None:
    config = {"tasks": ["a", "b"], "data": {"sources": [{"path": "x"}, {"path": "y"}]}}
    assert flatten(config) == {
        "tasks": ["a", "b"],
        "data.sources.0.path": "x",
        "data.sources.1.path": "y",
    }


def test_a_key_another_determines_goes_into_its_group() -> None:
    per_run = [
        {"rm": "tiny", "width": "128", "heads": "4"},
        {"rm": "small", "width": "256", "heads": "8"},
        {"rm": "base", "width": "384", "heads": "8"},
    ]
    assert factor_groups(per_run, ["width", "heads", "rm"]) == {"width": ["heads", "rm"]}
    # No value shared by most runs: every run shows its own.
    assert run_labels(per_run, ["rm"]) == ["rm=tiny", "rm=small", "rm=base"]


def test_the_pareto_front_keeps_runs_no_other_beats() -> None:
    points = [(1.0, 0.5), (2.0, 0.4), (3.0, 0.9), (0.5, 0.1), (3.0, 0.2)]
    assert pareto_front(points) == [(0.5, 0.1), (1.0, 0.5), (3.0, 0.9)]


# The factor-study script ---------------------------------------------------------------------


def _script_commands(*args: str) -> list[list[str]]:
    """The icegrt commands run.sh would run, printed instead of run (ICEGRT=echo)."""
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "ICEGRT": "echo"},
        capture_output=True,
        text=True,
        check=True,
    )
    return [shlex.split(line) for line in proc.stdout.splitlines()]


def test_the_factor_study_sweeps_one_factor_each_and_every_override_composes(
    tmp_path: Path,
) -> None:
    from icegrt_cli.launch import name_groups, register_resolvers, validate
    from icegrt_cli.stages.registry import register_configs

    commands = _script_commands("--quick", "--jobs", "2", "--root", str(tmp_path))
    sweeps = [c for c in commands if "-m" in c]
    assert [next(a for a in c if a.startswith("run.name=")) for c in sweeps] == [
        "run.name=kl",
        "run.name=advantage_norm",
        "run.name=reward_shaping",
        "run.name=ptx",
        "run.name=reward_size",
    ]
    assert all("hydra/launcher=joblib" in c for c in sweeps)
    assert "ppo.reward=none,scale,clip,stats_norm" in sweeps[2]
    assert f"reuse_from={tmp_path}/shared_sft" in sweeps[4]  # retrains the reward model
    assert commands[-1] == ["report", f"{tmp_path}/study"]
    register_configs()
    register_resolvers()
    for command in commands[:-1]:
        assert command[0] == "pipeline"
        validate("pipeline", "pipeline", name_groups("pipeline", command[1:]))


def test_the_factor_study_script_rejects_unknown_flags() -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--fast"],
        capture_output=True,
        text=True,
        env={**os.environ, "ICEGRT": "echo"},
    )
    assert proc.returncode == 2 and "usage:" in proc.stderr and proc.stdout == ""


def test_the_slurm_example_composes_a_submitit_launcher(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = icegrt(
        "ppo",
        "--config-dir",
        str(REPO / "examples" / "slurm"),
        "hydra/launcher=cluster",
        "hydra.launcher.partition=a100",
        "run.name=demo",
        "--cfg",
        "hydra",
        "--package",
        "hydra.launcher",
        cwd=tmp_path,
    )
    launcher = yaml.safe_load(proc.stdout.split("\n", 1)[1])  # after the "# @package" line
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["partition"] == "a100" and launcher["gpus_per_node"] == 1


# A real sweep: two PPO jobs at once through Hydra's joblib launcher, then the report --------

TINY_PIPELINE = [
    *(f"sft.{o}" for o in TINY_MODEL),
    "sft.data.sources.0.limit=120",
    "sft.data.sources.1.limit=40",
    "sft.train.max_steps=6",
    "sft.train.batch_size=8",
    "sft.sample_prompts=1",
    "train_rm.data.sources.0.limit=96",
    "train_rm.train.max_steps=4",
    "train_rm.train.batch_size=8",
    "train_rm.calibration_size=16",
    "ppo.ppo.steps=2",
    "ppo.rollout.batch_size=8",
    "ppo.rollout.max_new_tokens=16",
    "ppo.ppo.minibatch_size=4",
    "ppo.data.sources.0.limit=64",
    "ppo.train.eval_size=4",
    "ppo.train.save_every=0",
    "ppo.ptx_data.sources.0.limit=32",
    "ppo.ptx_data.sources.1.limit=32",
    "eval.tasks=[ad_moderation,general_demo]",
    "eval.task.ad_moderation.limit=4",
    "eval.task.general_demo.limit=4",
    "eval.max_new_tokens=16",
    "run.progress=false",
]


@pytest.mark.slow
def test_a_joblib_sweep_reusing_a_base_run_reports_both_jobs(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    icegrt("pipeline", "run.name=base", "stages=[sft,train_rm]", *TINY_PIPELINE, cwd=tmp_path)
    icegrt(
        "pipeline",
        "-m",
        "run.name=sweep",
        "reuse_from=runs/base",
        "ppo.kl=none,adaptive",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "run.num_threads=1",
        *TINY_PIPELINE,
        cwd=tmp_path,
    )
    jobs = only_sweep(tmp_path / "runs" / "sweep" / "multirun" / "pipeline")
    for job in ("0", "1"):
        assert (jobs / job / "sft").is_symlink() and (jobs / job / "train_rm").is_symlink()
        assert (jobs / job / "eval" / "results.json").is_file()

    proc = icegrt("report", "runs/sweep", cwd=tmp_path, extra_env={"COLUMNS": "200"})
    assert "ppo.kl=adaptive" in proc.stdout
    out = tmp_path / "runs" / "sweep" / "report"
    text = (out / "report.md").read_text()
    assert "| 0 | ppo.kl=none |" in text and "| 1 | ppo.kl=adaptive |" in text
    assert "- `ppo.kl`: `none` (0) · `adaptive` (1); with it: `ppo.kl.kind`, `ppo.kl.coef`" in text
    for name in ("curves", "frontier", "domain_general"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_SIGNATURE


def test_general_averages_real_tasks_only_else_says_it_is_a_fixture_average() -> None:
    def task(value: float, **marks: Any) -> dict[str, Any]:
        return {"metrics": ["acc"], **marks, "scores": {"m": {"values": {"acc": value}}}}

    mixed = {
        "tasks": {
            "general_demo": task(0.5, fixture=False),
            "arc_easy": task(0.25),
            "mmlu": task(1.0, fixture=True),
        }
    }
    scores = model_scores(mixed, "m")
    assert scores["general"] == 0.375 and "general (fixture)" not in scores
    # older results.json without the mark: told apart by the configured path
    fixtures = {
        "tasks": {
            "mmlu": task(1.0, fixture=True),
            "boolq": task(0.5, config={"path": "fixture:boolq/dev.jsonl"}),
        }
    }
    scores = model_scores(fixtures, "m")
    assert scores["general"] is None and scores["general (fixture)"] == 0.75


def _two_model_results() -> dict[str, Any]:
    def task(metric: str, sft: float, ppo: float, diff: float, se: float, **marks: Any) -> dict:
        return {
            "metrics": [metric],
            **marks,
            "scores": {
                "sft": {"values": {metric: sft}, "stderr": {metric: 0.02}},
                "ppo": {"values": {metric: ppo}, "stderr": {metric: 0.02}},
            },
            "paired": {"ppo": {metric: {"mean": diff, "stderr": se, "n": 300}}},
        }

    return {
        "models": {"sft": "runs/demo/sft/model", "ppo": "runs/demo/ppo/model"},
        "tasks": {
            "ad_moderation_valid": task("gold", 0.837, 0.867, 0.030, 0.005),
            "ad_moderation_valid_sampled": task("gold", 0.669, 0.774, 0.105, 0.017),
            "ad_moderation": task("gold", 0.617, 0.638, 0.021, 0.009),
            "general_demo": task("acc", 0.50, 0.52, 0.02, 0.03, fixture=False),
            "arc_easy": task("acc", 0.40, 0.60, 0.20, 0.04, fixture=False),
            "boolq": task("acc", 0.1, 0.9, 0.8, 0.1, fixture=True),  # left out: a fixture
        },
    }


def test_the_final_table_pairs_sft_and_ppo_and_fits_80_columns() -> None:
    from io import StringIO

    from rich.console import Console

    from icegrt_cli.report.finals import paired_rows
    from icegrt_cli.report.tables import final_table

    rows = paired_rows(_two_model_results())
    assert [row.name for row in rows] == [
        "unseen ads, greedy",
        "unseen ads, sampled",
        "new wording (test)",
        "general",
    ]
    general = rows[-1]
    assert general.first == pytest.approx(0.45) and general.last == pytest.approx(0.56)
    # mean of the two tasks' differences; se sqrt(0.03^2 + 0.04^2) / 2 = 0.025
    assert general.difference == pytest.approx(0.11) and general.stderr == pytest.approx(0.025)

    out = StringIO()
    Console(file=out, width=80, force_terminal=False).print(final_table(_two_model_results()))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    for row in rows:
        assert row.name in text
    assert "+0.030 ± 0.005" in text and "PPO − SFT" in text and "arc_easy" in text


def test_paired_differences_of_the_eval_stage_pair_items_in_order() -> None:
    from icegrt_cli.stages.evaluate import paired_differences

    def answers(*golds: float) -> list[dict[str, Any]]:
        return [{"id": str(i), "metrics": {"gold": g}} for i, g in enumerate(golds)]

    found = paired_differences(
        {"sft": answers(0.0, 0.0, 1.0, 0.0), "ppo": answers(1.0, 0.0, 1.0, 1.0)},
        ["gold", "reward"],
        ["sft", "ppo"],
    )
    assert found == {"ppo": {"gold": {"mean": 0.5, "stderr": pytest.approx(0.2886751), "n": 4}}}


def test_ppo_peak_memory_comes_from_its_summary() -> None:
    run = SimpleNamespace(
        stages={"ppo": SimpleNamespace(metrics=[], summary={"peak_memory_mb": 812.5})}
    )
    assert final_metrics(run)["ppo peak MiB"] == Final(812.5)
    unfinished = SimpleNamespace(stages={"ppo": SimpleNamespace(metrics=[], summary=None)})
    assert "ppo peak MiB" not in final_metrics(unfinished)


def test_kl_column_is_the_k1_estimate_whichever_estimator_a_run_optimised() -> None:
    k3_run = [{"step": 40, "kl/ref": 1.38, "kl/k1": 1.09}]
    assert final_metrics(
        SimpleNamespace(stages={"ppo": SimpleNamespace(metrics=k3_run, summary=None)})
    )["KL"] == Final(1.09)
    older = [{"step": 40, "kl/ref": 0.5}]
    assert final_metrics(
        SimpleNamespace(stages={"ppo": SimpleNamespace(metrics=older, summary=None)})
    )["KL"] == Final(0.5)
