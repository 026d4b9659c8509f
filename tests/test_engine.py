"""The shared engine: schedule, checkpoints, accumulation invariance, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from icegrt_cli.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from icegrt_cli.data.collate import LMCollator
from icegrt_cli.data.formatting import encode_sft
from icegrt_cli.engine import Checkpointer, fit, lr_multiplier, setup_runtime
from icegrt_cli.engine.checkpoint import load_checkpoint
from icegrt_cli.engine.loop import global_batches, rank_micro_batches
from icegrt_cli.engine.metrics import read_metrics
from icegrt_cli.models import load_causal_lm, load_tokenizer
from icegrt_cli.stages.sft import lm_step


def test_lr_schedule_by_hand() -> None:
    # warmup 2 of 10 steps: 1/2, 2/2, then cosine from 1.0 down to min_ratio 0.1
    assert lr_multiplier(0, 10, 2, "cosine", 0.1) == 0.5
    assert lr_multiplier(1, 10, 2, "cosine", 0.1) == 1.0
    assert lr_multiplier(2, 10, 2, "cosine", 0.1) == 1.0
    # halfway through decay: 0.1 + 0.9 * 0.5 * (1 + cos(pi/2)) = 0.55
    assert lr_multiplier(6, 10, 2, "cosine", 0.1) == pytest.approx(0.55)
    assert lr_multiplier(10, 10, 2, "linear", 0.1) == pytest.approx(0.1)
    assert lr_multiplier(7, 10, 2, "constant", 0.1) == 1.0


def test_batches_are_seeded_and_sharded() -> None:
    first = global_batches(10, 4, epoch=0, seed=1)
    assert first == global_batches(10, 4, epoch=0, seed=1)
    assert first != global_batches(10, 4, epoch=1, seed=1)
    assert len(first) == 2 and len({i for b in first for i in b}) == 8
    batch = list(range(8))
    assert rank_micro_batches(batch, rank=1, world=2, micro=2) == [[1, 3], [5, 7]]


def test_checkpoint_round_trip_and_keep_last(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    ckpt = Checkpointer(tmp_path / "checkpoints", keep_last=2)
    for step in (1, 2, 3):
        ckpt.save(step, {"model": model}, {"optimizer": optimizer}, {"note": step})
    assert [p.name for p in ckpt.list()] == ["step-2", "step-3"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))
    expected = model.weight.detach().clone()
    after_save = torch.rand(1)  # the first draw after the checkpoint
    torch.manual_seed(5)
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    state = load_checkpoint(ckpt.latest(), {"model": fresh}, {"optimizer": fresh_opt})
    assert state["step"] == 3 and state["note"] == 3
    assert torch.equal(fresh.weight, expected)
    assert fresh_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(1), after_save)  # RNG restored to the save point


def _examples(tokenizer, n: int = 32):
    return [
        encode_sft(tokenizer, {"prompt": f"what is {i} plus {i}", "response": f"{2 * i}"})
        for i in range(n)
    ]


def _train(tmp_path: Path, model_dir: Path, name: str, **train_kw) -> tuple:
    cfg = ModelConfig(name_or_path=str(model_dir))
    tokenizer = load_tokenizer(cfg)
    model = load_causal_lm(model_dir, cfg, tokenizer)
    run = RunConfig(seed=0, progress=False, log_every=1, resume=train_kw.pop("resume", None))
    train = TrainConfig(
        max_steps=train_kw.pop("max_steps", 6), eval_every=0, save_every=0, **train_kw
    )
    optim = OptimConfig(lr=1e-2, warmup_steps=1)
    rt = setup_runtime(run)
    out = tmp_path / name
    result = fit(
        rt,
        model,
        _examples(tokenizer),
        LMCollator(tokenizer.pad_token_id),
        lm_step,
        run=run,
        train=train,
        optim=optim,
        out_dir=out,
        eval_set=_examples(tokenizer, 8),
    )
    return result, model, out


def test_accumulation_equals_a_larger_batch(tmp_path: Path, tiny_model_dir: Path) -> None:
    """batch 1 x accumulation 8 takes the same step as batch 8 x accumulation 1."""
    _, big, _ = _train(tmp_path, tiny_model_dir, "big", batch_size=8, grad_accum=1, max_steps=3)
    _, small, _ = _train(tmp_path, tiny_model_dir, "small", batch_size=1, grad_accum=8, max_steps=3)
    for a, b in zip(big.parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_training_lowers_held_out_loss(tmp_path: Path, tiny_model_dir: Path) -> None:
    result, _, out = _train(tmp_path, tiny_model_dir, "learn", batch_size=8, max_steps=12)
    assert result.eval_metrics["loss"] < result.first_eval["loss"] - 0.5
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if "train/loss" in r] == list(range(1, 13))


def test_resume_matches_an_uninterrupted_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    full, full_model, full_out = _train(tmp_path, tiny_model_dir, "full", batch_size=4, max_steps=6)
    part, _, part_out = _train(
        tmp_path, tiny_model_dir, "part", batch_size=4, max_steps=6, stop_after=3
    )
    assert part.stopped_early and part.steps == 3
    resumed, resumed_model, _ = _train(
        tmp_path, tiny_model_dir, "part", batch_size=4, max_steps=6, resume="latest"
    )
    assert resumed.steps == full.steps == 6
    assert math.isclose(resumed.eval_metrics["loss"], full.eval_metrics["loss"], rel_tol=1e-6)
    for a, b in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    losses = [
        [r["train/loss"] for r in read_metrics(p / "metrics.jsonl") if "train/loss" in r]
        for p in (full_out, part_out)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert json.loads((part_out / "checkpoints" / "step-3" / "state.json").read_text())["step"] == 3


def test_progress_without_a_terminal_prints_plain_lines_at_each_tenth() -> None:
    import io

    from rich.console import Console

    from icegrt_cli.engine.progress import StepProgress

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with StepProgress(console, "sft", 20, start=0, enabled=True) as bar:
        for step in range(20):
            bar.advance({"loss": 1.0 / (step + 1)})
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == [f"{n}/20" for n in range(2, 21, 2)]
    assert lines[-1].startswith("sft step 20/20  loss 0.05  ") and lines[-1].endswith("0m00s left")
    quiet = io.StringIO()
    with StepProgress(Console(file=quiet, force_terminal=False), "sft", 20, enabled=False) as bar:
        bar.advance({"loss": 1.0})
    assert quiet.getvalue() == ""


def test_a_failed_folder_write_leaves_the_earlier_folder_as_it_was(tmp_path: Path) -> None:
    from icegrt_cli.atomic import writing_folder

    final = tmp_path / "model"
    with writing_folder(final) as folder:
        (folder / "weights").write_text("first")
    from icegrt_cli.errors import OutOfResources

    full = f"no space left on device while writing {final}$"
    with pytest.raises(OutOfResources, match=full), writing_folder(final) as folder:
        (folder / "weights").write_text("second, half")
        raise OSError(28, "No space left on device")
    assert (final / "weights").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with writing_folder(final) as folder:
        (folder / "weights").write_text("second")
    assert (final / "weights").read_text() == "second"


def test_processes_writing_the_same_file_at_once_each_write_it_whole(tmp_path: Path) -> None:
    """Every process of a launched pipeline writes its summary; one writer's rename must not
    take another's half-written file away (a shared temporary name failed the 2-process run)."""
    from concurrent.futures import ThreadPoolExecutor

    from icegrt_cli.atomic import write_text_atomically

    path = tmp_path / "summary.json"

    def write(text: str) -> None:
        for _ in range(300):
            write_text_atomically(path, text)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, ["a" * 4096, "b" * 4096]))
    assert path.read_text() in ("a" * 4096, "b" * 4096)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_tokenizer_another_process_cached_first_is_taken_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both processes of a launched run train the preset tokenizer; the one that publishes
    second found the folder already there and failed (`Directory not empty`)."""
    import shutil

    from icegrt_cli.models import preset_tokenizer_path

    monkeypatch.setenv("ICEGRT_CACHE", str(tmp_path / "cache"))
    real = Path.replace

    def other_process_first(self: Path, target: Path) -> Path:
        if Path(target).parent.name == "tokenizers":  # the other process publishes its copy now
            shutil.copytree(self, target)
        return real(self, target)

    monkeypatch.setattr(Path, "replace", other_process_first)
    folder = preset_tokenizer_path(320)
    assert (folder / "tokenizer.json").exists()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary left


def test_a_preset_is_rebuilt_when_its_settings_change(tmp_path: Path) -> None:
    import json

    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import materialize

    small = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    folder = materialize(small, tmp_path / "init", seed=0)
    built = (folder / "model.safetensors").stat().st_mtime_ns
    assert materialize(small, tmp_path / "init", seed=0) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == built  # reused as it is
    wider = ModelConfig(hidden_size=48, num_layers=1, num_heads=2, intermediate_size=64)
    materialize(wider, tmp_path / "init", seed=0)
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 48


def test_short_bf16_training_passes_on_cpu_use_the_math_attention_kernel() -> None:
    from icegrt_cli.engine.attention import SHORT_ON_CPU, training_attention

    cpu = torch.device("cpu")

    def flash_allowed(width: int, bf16: bool) -> bool:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
        with autocast, training_attention(cpu, width):
            return torch.backends.cuda.flash_sdp_enabled()

    assert not flash_allowed(SHORT_ON_CPU, bf16=True)
    assert flash_allowed(SHORT_ON_CPU + 1, bf16=True)
    assert flash_allowed(SHORT_ON_CPU, bf16=False)
    assert torch.backends.cuda.flash_sdp_enabled()  # restored on the way out


def test_results_and_summary_keep_their_old_text_when_the_disk_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """summary.json and results.json were rewritten in place: a full disk left half a file,
    and the finished run's results were gone."""
    import errno
    import json

    from icegrt_cli.errors import OutOfResources
    from icegrt_cli.eval.report import write_results
    from icegrt_cli.stages.common import write_summary

    write_results(tmp_path, {"old": 1})
    write_summary(tmp_path, {"old": 1})
    real = Path.write_text

    def disk_fills(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real(self, text[:3], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_fills)
    for write, name in ((write_results, "results.json"), (write_summary, "summary.json")):
        with pytest.raises(OutOfResources, match=name):
            write(tmp_path, {"new": 2})
    monkeypatch.undo()
    for name in ("results.json", "summary.json"):
        assert json.loads((tmp_path / name).read_text()) == {"old": 1}
