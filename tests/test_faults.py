"""Fault injection: what a kill, a full disk, a diverged step, a torn file or a bad model folder
leaves behind, and that a run resumed after it ends as an uninterrupted one does.

The README's "What icegrt promises when things go wrong" names a test here for each line.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from icegrt_cli.engine.checkpoint import Checkpointer, load_checkpoint, missing
from icegrt_cli.engine.metrics import MetricsLogger, read_metrics
from icegrt_cli.errors import ConfigError, OutOfResources, reporting_errors
from tests.cli_helpers import TINY_SFT, icegrt

slow = pytest.mark.slow  # runs the real command in a subprocess

HELD = """
import time
from pathlib import Path
from icegrt_cli.engine import loop
_step = loop._SupervisedJob.step
def _held(self, step):
    while step >= {at} and Path("hold").exists():
        time.sleep(0.05)
    return _step(self, step)
loop._SupervisedJob.step = _held
"""
"""Prelude for a run a test stops from outside: step `at` + 1 and later wait while the file
`hold` exists, so the test knows which step the run is in when it strikes."""


def _command(prelude: str, *args: str) -> list[str]:
    """`icegrt ARGS` in a fresh interpreter, after `prelude` patched something in it."""
    code = f"{prelude}\nimport sys\nsys.argv = ['icegrt', *{list(args)!r}]\n"
    code += "from icegrt_cli.cli import main\nmain()\n"
    return [sys.executable, "-c", code]


def _run(prelude: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        _command(prelude, *args), cwd=cwd, env=env, text=True, capture_output=True, timeout=600
    )


def _start(prelude: str, *args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    return subprocess.Popen(
        _command(prelude, *args),
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _logged_step(out: Path) -> int:
    path = out / "metrics.jsonl"
    return max((r["step"] for r in read_metrics(path) if "train/loss" in r), default=0)


def _one_error(stderr: str) -> str:
    """The one `error:` line of a failed command, which shows no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def _losses(out: Path) -> list[float]:
    return [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]


def _same_as_uninterrupted(out: Path, full: Path) -> None:
    resumed = json.loads((out / "summary.json").read_text())
    expected = json.loads((full / "summary.json").read_text())
    assert resumed["steps"] == expected["steps"] == 6
    assert resumed["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-6)
    assert _losses(out) == pytest.approx(_losses(full), rel=1e-6)
    weights, reference = (load_file(p / "model" / "model.safetensors") for p in (out, full))
    assert all(torch.allclose(weights[k], reference[k], atol=1e-6) for k in reference)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 6-step tiny SFT run every interrupted one is compared with."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    icegrt("sft", "run.name=demo", *TINY_SFT, cwd=cwd)
    return cwd / "runs" / "demo" / "sft"


@slow
def test_kill_9_mid_run_then_resume_matches_uninterrupted(
    uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "demo" / "sft"
    (tmp_path / "hold").touch()
    proc = _start(HELD.format(at=4), "sft", "run.name=demo", *TINY_SFT, cwd=tmp_path)
    _wait_for(lambda: (out / "metrics.jsonl").exists() and _logged_step(out) >= 4, proc)
    proc.kill()  # SIGKILL in step 5: no handler runs, nothing is saved
    proc.communicate()
    assert Checkpointer(out / "checkpoints").latest().name == "step-3"
    assert not (out / "summary.json").exists() and not (out / "model").exists()
    icegrt("sft", "run.name=demo", *TINY_SFT, "run.resume=latest", cwd=tmp_path)
    _same_as_uninterrupted(out, uninterrupted)


@slow
def test_sigterm_finishes_the_step_saves_and_exits_143(uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "demo" / "sft"
    (tmp_path / "hold").touch()
    proc = _start(HELD.format(at=1), "sft", "run.name=demo", *TINY_SFT, cwd=tmp_path)
    _wait_for(lambda: (out / "metrics.jsonl").exists() and _logged_step(out) >= 1, proc)
    # Meanwhile a second command on the same run is refused, and changes nothing.
    second = icegrt("sft", "run.name=demo", *TINY_SFT, cwd=tmp_path, check=False)
    assert second.returncode == 2 and f"in use by icegrt (pid {proc.pid})" in second.stderr
    assert _logged_step(out) == 1 and not (out / "checkpoints").exists()
    proc.send_signal(signal.SIGTERM)  # in step 2, which still finishes
    time.sleep(0.5)
    (tmp_path / "hold").unlink()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    said = _one_error(stderr)
    assert "terminated (SIGTERM) after step 2; checkpoint saved" in said
    assert "run.resume=latest" in said
    latest = Checkpointer(out / "checkpoints").latest()
    assert latest.name == "step-2" and not missing(latest)
    assert not (out / "summary.json").exists()
    icegrt("sft", "run.name=demo", *TINY_SFT, "run.resume=latest", cwd=tmp_path)
    _same_as_uninterrupted(out, uninterrupted)


DISK_FULL_AT_MODEL_SAVE = """
import errno
from pathlib import Path
import transformers
_save = transformers.PreTrainedModel.save_pretrained
def _full(self, folder, *args, **kwargs):
    if Path(folder).name == ".model.tmp":
        (Path(folder) / "model.safetensors").write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")
    return _save(self, folder, *args, **kwargs)
transformers.PreTrainedModel.save_pretrained = _full
"""


@slow
def test_disk_full_is_one_line_and_keeps_the_earlier_model(
    uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "demo" / "sft"
    shutil.copytree(uninterrupted, out)
    before = {p.name: p.read_bytes() for p in (out / "model").iterdir()}
    proc = _run(
        DISK_FULL_AT_MODEL_SAVE, "sft", "run.name=demo", *TINY_SFT, "run.force=true", cwd=tmp_path
    )
    assert proc.returncode == 2
    said = _one_error(proc.stderr)
    assert "no space left on device while writing " in said and said.endswith("demo/sft/model")
    assert {p.name: p.read_bytes() for p in (out / "model").iterdir()} == before
    assert not (out / ".model.tmp").exists()
    assert not (out / "summary.json").exists()  # the failed rerun is not marked finished


def test_disk_full_while_checkpointing_keeps_the_earlier_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = torch.nn.Linear(3, 2)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    ckpt.save(1, {"model": model}, {}, {})

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("icegrt_cli.engine.checkpoint.save_model", full)
    with pytest.raises(OutOfResources, match="no space left on device while writing .*step-2"):
        ckpt.save(2, {"model": model}, {}, {})
    assert [p.name for p in ckpt.list()] == ["step-1"] and not ckpt.partial()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1"]


NAN_AT_STEP_5 = """
from icegrt_cli.engine import loop
_step = loop._SupervisedJob.step
def _nan(self, step):
    figures = _step(self, step)
    if step == 4:
        figures.logged["train/loss"] = float("nan")
    return figures
loop._SupervisedJob.step = _nan
"""


@slow
def test_nan_at_a_chosen_step_stops_and_keeps_the_checkpoint_before(tmp_path: Path) -> None:
    proc = _run(NAN_AT_STEP_5, "sft", "run.name=demo", *TINY_SFT, cwd=tmp_path)
    said = _one_error(proc.stderr)
    assert proc.returncode == 2 and "non-finite train/loss at step 5" in said
    out = tmp_path / "runs" / "demo" / "sft"
    checkpoints = Checkpointer(out / "checkpoints")
    assert [p.name for p in checkpoints.list()] == ["step-3"] and not checkpoints.partial()
    assert not (out / "summary.json").exists() and not (out / "model").exists()
    assert max(r["step"] for r in read_metrics(out / "metrics.jsonl")) == 4


@slow
def test_torn_metrics_and_partial_checkpoints_are_skipped_on_resume(
    uninterrupted: Path, tmp_path: Path
) -> None:
    icegrt("sft", "run.name=demo", *TINY_SFT, "train.stop_after=3", cwd=tmp_path)
    out = tmp_path / "runs" / "demo" / "sft"
    folder = out / "checkpoints"
    # What kills leave: a cut metrics line, a save cut short, a prune cut short (old code
    # deleted in place: a step-N with some files gone), a prune of the new kind cut short.
    torn = len((out / "metrics.jsonl").read_text().splitlines()) + 1
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"step": 4, "train/lo')
    shutil.copytree(folder / "step-3", folder / ".step-6.tmp")
    shutil.copytree(folder / "step-3", folder / "step-9")
    (folder / "step-9" / "state.pt").unlink()
    (folder / "step-9" / "state.json").write_text('{"step": 9}')
    shutil.copytree(folder / "step-3", folder / ".step-2.del")
    proc = icegrt(
        "sft",
        "run.name=demo",
        *TINY_SFT,
        "run.resume=latest",
        cwd=tmp_path,
        extra_env={"COLUMNS": "400"},
    )
    assert f"metrics.jsonl:{torn}: skipped a torn line" in proc.stdout
    assert "checkpoints/step-3 at step 3" in proc.stdout
    for name in (".step-6.tmp", "step-9", ".step-2.del"):
        assert f"checkpoints/{name}: a checkpoint a kill left unfinished" in proc.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["step-3"]
    _same_as_uninterrupted(out, uninterrupted)


def test_a_checkpoint_counts_only_when_its_manifest_files_all_exist(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    ckpt = Checkpointer(tmp_path / "checkpoints", keep_last=2)
    for step in (1, 2):
        ckpt.save(step, {"model": model}, {}, {})
    (ckpt.folder / "step-2" / "model.safetensors").write_bytes(b"cut")  # other size
    assert missing(ckpt.folder / "step-2") == ["model.safetensors"]
    assert ckpt.latest().name == "step-1"
    with pytest.raises(ConfigError, match="not a complete checkpoint .missing model.safetensors"):
        ckpt.resolve(str(ckpt.folder / "step-2"))
    assert [p.name for p in ckpt.clean_partial()] == ["step-2"]
    # A prune renames before it deletes: stopped in between, it leaves no `step-N` behind.
    (ckpt.folder / ".step-1.del").mkdir()
    (ckpt.folder / ".step-1.del" / "state.json").write_text("{}")
    assert [p.name for p in ckpt.list()] == ["step-1"]
    assert [p.name for p in ckpt.partial()] == [".step-1.del"]
    # Without a manifest (an older icegrt's save): not a checkpoint, but not deleted either.
    shutil.copytree(ckpt.folder / "step-1", ckpt.folder / "step-5")
    (ckpt.folder / "step-5" / "manifest.json").unlink()
    assert ckpt.latest().name == "step-1" and [p.name for p in ckpt.unmarked()] == ["step-5"]
    ckpt.clean_partial()
    assert (ckpt.folder / "step-5").exists() and ckpt.clear() == 2
    assert not list(ckpt.folder.iterdir())


def test_a_torn_metrics_line_is_dropped_and_reported(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n{"ste')
    said: list[str] = []
    MetricsLogger(tmp_path, resume_step=2, warn=said.append).close()
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1, "a": 1}, {"step": 2, "a": 2}]
    assert len(said) == 1 and "metrics.jsonl:3: skipped a torn line" in said[0]


class Payload:
    """Any object that is not a tensor: torch.load(weights_only=True) refuses to build it."""


def _error_of(action, capsys: pytest.CaptureFixture[str]) -> str:
    """Run `action` as a command would: its one error line (and no traceback)."""
    with pytest.raises(SystemExit) as stop, reporting_errors():
        action()
    assert stop.value.code == 2
    return _one_error(capsys.readouterr().err).removeprefix("error: ")


def _model_folder(tiny_model_dir: Path, tmp_path: Path, drop: tuple[str, ...] = ()) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    for name in drop:
        (folder / name).unlink()
    return folder


def _load(folder: Path, **model: object) -> None:
    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import load_causal_lm, load_tokenizer

    cfg = ModelConfig(name_or_path=str(folder), **model)
    load_causal_lm(folder, cfg, load_tokenizer(cfg))


def test_a_folder_without_weights_or_tokenizer_is_one_line(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _model_folder(tiny_model_dir, tmp_path, ("model.safetensors",))
    assert f"{folder} has no weights" in _error_of(lambda: _load(folder), capsys)
    shutil.rmtree(folder)
    folder = _model_folder(tiny_model_dir, tmp_path, ("tokenizer.json", "tokenizer_config.json"))
    assert f"{folder} has no tokenizer" in _error_of(lambda: _load(folder), capsys)


def test_weights_that_do_not_fit_the_config_are_one_line(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _model_folder(tiny_model_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config))
    said = _error_of(lambda: _load(folder), capsys)
    assert f"{folder}: its weights do not fit its config.json (" in said


def test_a_checkpoint_of_another_model_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Checkpointer(tmp_path).save(1, {"model": torch.nn.Linear(3, 2)}, {}, {})
    said = _error_of(
        lambda: load_checkpoint(tmp_path / "step-1", {"model": torch.nn.Linear(4, 2)}, {}), capsys
    )
    assert "checkpoint" in said and "does not fit this model" in said and "size mismatch" in said


def test_remote_code_and_pickles_are_refused_in_one_line(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _model_folder(tiny_model_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "icegrt-custom"
    config["auto_map"] = {"AutoConfig": "custom.Config", "AutoModelForCausalLM": "custom.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    said = _error_of(lambda: _load(folder), capsys)
    assert "ships its own Python code" in said and "model.trust_remote_code=true" in said

    Checkpointer(tmp_path).save(1, {"model": torch.nn.Linear(3, 2)}, {}, {})
    torch.save({"rng": Payload()}, tmp_path / "step-1" / "state.pt")
    said = _error_of(
        lambda: load_checkpoint(tmp_path / "step-1", {"model": torch.nn.Linear(3, 2)}, {}), capsys
    )
    assert "state.pt holds more than tensors" in said and "refused" in said


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory"),
        (MemoryError(), "out of memory"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.jsonl"), "no space"),
    ],
)
def test_out_of_memory_and_disk_are_one_line_with_a_hint(
    failure: BaseException, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> None:
        raise failure

    said = _error_of(fail, capsys)
    assert said.startswith(message)
    if message == "out of memory":
        assert "train.batch_size" in said and "peft=lora" in said
    else:
        assert said == "no space left on device while writing runs/x/metrics.jsonl"


def test_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail() -> None:
        raise MemoryError

    for debug, env in ((True, ""), (False, "1")):
        monkeypatch.setenv("ICEGRT_DEBUG", env)
        with pytest.raises(SystemExit), reporting_errors(debug):
            fail()
        err = capsys.readouterr().err
        assert "Traceback" in err and err.count("error: out of memory") == 1


def test_a_bug_keeps_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ZeroDivisionError), reporting_errors():
        _ = 1 / 0


@slow
def test_an_unknown_hub_id_offline_fails_at_once_in_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = icegrt(
        "sft",
        "model=hf",
        "model.name_or_path=nobody/no-such-model",
        "run.progress=false",
        cwd=tmp_path,
        check=False,
        extra_env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")},
    )
    assert proc.returncode == 2 and time.monotonic() - started < 40
    assert _one_error(proc.stderr) == (
        "error: model.name_or_path: nobody/no-such-model was taken for a hub id; it is not a "
        "local folder and no network or cache has it"
    )


@slow
def test_model_hf_without_a_checkpoint_names_the_key(tmp_path: Path) -> None:
    args = ("model=hf", "train.max_steps=1", "run.progress=false")
    proc = icegrt("sft", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert (
        _one_error(proc.stderr)
        == "error: model.name_or_path: must be set for model=hf (model.name_or_path=...)"
    )
    assert not (tmp_path / "runs").exists()
