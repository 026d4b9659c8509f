"""`icegrt sft` end to end through the real CLI, in a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoTokenizer

from icegrt_cli.engine.metrics import read_metrics
from tests.cli_helpers import TINY_SFT, icegrt, sweeps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("sft")
    icegrt("sft", "run.name=demo", *TINY_SFT, cwd=cwd)
    return cwd / "runs" / "demo" / "sft"


def test_run_folder_holds_config_metrics_and_a_loadable_model(sft_run: Path) -> None:
    assert (sft_run / "config.yaml").exists() and (sft_run / "summary.json").exists()
    records = read_metrics(sft_run / "metrics.jsonl")
    evals = [r["eval/loss"] for r in records if "eval/loss" in r]
    assert len(evals) == 3 and evals[-1] < evals[0]
    model = AutoModelForCausalLM.from_pretrained(sft_run / "model")
    tokenizer = AutoTokenizer.from_pretrained(sft_run / "model")
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Review this ad."}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.shape[1]
    assert list((sft_run / "model").glob("*.safetensors"))


def test_resume_after_a_stop_ends_like_an_uninterrupted_run(sft_run: Path, tmp_path: Path) -> None:
    icegrt("sft", "run.name=demo", *TINY_SFT, "train.stop_after=3", cwd=tmp_path)
    part = tmp_path / "runs" / "demo" / "sft"
    assert not (part / "model").exists() and (part / "checkpoints" / "step-3").exists()
    icegrt("sft", "run.name=demo", *TINY_SFT, "run.resume=latest", cwd=tmp_path)
    full = json.loads((sft_run / "summary.json").read_text())
    resumed = json.loads((part / "summary.json").read_text())
    assert resumed["steps"] == full["steps"] == 6
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], rel=1e-6)


def test_multirun_writes_one_folder_per_job_and_per_sweep(tmp_path: Path) -> None:
    def sweep(*values: str) -> None:
        args = ("-m", f"optim.lr={','.join(values)}", *TINY_SFT, "train.max_steps=1")
        icegrt("sft", *args, "train.eval_every=0", "run.name=sweep", cwd=tmp_path)

    sweep("1e-3", "3e-3")
    sweep("5e-3")
    first, second = sweeps(tmp_path / "runs" / "sweep" / "multirun" / "sft")
    lrs = sorted(OmegaConf.load(first / str(i) / "config.yaml").optim.lr for i in (0, 1))
    assert lrs == [1e-3, 3e-3]
    assert OmegaConf.load(second / "0" / "config.yaml").optim.lr == 5e-3
    assert not (second / "1").exists()


def test_cfg_job_prints_the_config_and_runs_nothing(tmp_path: Path) -> None:
    proc = icegrt("sft", "--cfg", "job", "optim.lr=0.5", cwd=tmp_path)
    assert "lr: 0.5" in proc.stdout and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optim.lrr=1"], "optim.lrr: Key 'lrr' not in 'OptimConfig'"),
        (["optim.lr=abc"], "optim.lr: Value 'abc'"),
        (["model=hf", "model.name_or_path=./no/such/model"], "no such model folder"),
        (["data=jsonl", "data.sources.0.path=missing.jsonl"], "missing.jsonl: no such data file"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path: Path, args: list[str], message: str) -> None:
    proc = icegrt("sft", *args, "run.progress=false", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a", "response": "b"}', "{broken"], "bad.jsonl:2: not valid JSON"),
        (
            ['{"prompt": "a", "response": "b"}', '{"prompt": "a"}'],
            "bad.jsonl:2: missing field 'response'",
        ),
        ([""], "bad.jsonl: the data set is empty"),
    ],
)
def test_bad_data_names_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    proc = icegrt(
        "sft",
        "data=jsonl",
        "data.sources.0.path=bad.jsonl",
        "run.progress=false",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_runs_under_accelerate_with_two_processes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",  # torchrun: `--cpu` alone starts one process
            "--num_processes",
            "2",
            "-m",
            "icegrt_cli.cli",
            "sft",
            "run.name=ddp",
            *TINY_SFT,
            "train.max_steps=3",
            "train.batch_size=4",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "engine=ddp: 2 processes on cpu (gloo)" in proc.stdout, proc.stdout[-2000:]
    records = read_metrics(tmp_path / "runs" / "ddp" / "sft" / "metrics.jsonl")
    assert max(r["step"] for r in records) == 3
    assert (tmp_path / "runs" / "ddp" / "sft" / "model" / "config.json").exists()


def test_a_diverged_run_fails_in_one_line_and_marks_nothing_finished(tmp_path: Path) -> None:
    proc = icegrt(
        "sft",
        "run.name=demo",
        *TINY_SFT,
        "optim.lr=1e10",
        "optim.max_grad_norm=0",
        cwd=tmp_path,
        check=False,
    )
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2 and "Traceback" not in said, said[-2000:]
    assert "sft: non-finite train/loss" in said and "nothing of this run was saved" in said
    out = tmp_path / "runs" / "demo" / "sft"
    assert not (out / "summary.json").exists() and not (out / "model").exists()


def test_a_second_command_on_a_run_in_use_stops_in_one_line(tmp_path: Path) -> None:
    from icegrt_cli.engine.lock import run_lock

    with run_lock(tmp_path / "runs" / "demo"):
        proc = icegrt("sft", "run.name=demo", *TINY_SFT, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "run folder runs/demo is in use by icegrt (pid" in proc.stderr
    assert not (tmp_path / "runs" / "demo" / "sft" / "metrics.jsonl").exists()
    icegrt("sft", "run.name=demo", *TINY_SFT, "train.max_steps=1", cwd=tmp_path)  # free again


def test_a_failed_rerun_leaves_the_finished_runs_record_alone(
    sft_run: Path, tmp_path: Path
) -> None:
    import shutil

    shutil.copytree(sft_run, tmp_path / "runs" / "demo" / "sft")
    out = tmp_path / "runs" / "demo" / "sft"
    before = {
        name: (out / name).read_bytes() for name in ("config.yaml", "metrics.jsonl", "summary.json")
    }
    proc = icegrt(
        "sft",
        "run.name=demo",
        *TINY_SFT,
        "data.sources.0.kind=file",
        "data.sources.0.path=missing.jsonl",
        "run.force=true",  # past the finished-stage refusal, to the input check
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "missing.jsonl" in proc.stderr
    assert {name: (out / name).read_bytes() for name in before} == before
