"""Several processes on one CPU (gloo), as `accelerate launch` runs them: gradients of every
trainable model are all-reduced, and 2 processes x batch B train exactly as 1 process x 2B.

Each case spawns its processes with `torch.multiprocessing` (tiny models, seconds); rank 0
writes what it measured to a file the test reads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from icegrt_cli.engine.metrics import read_metrics
from tests.cli_helpers import TINY_SFT

VOCAB, PROMPT, RESPONSE = 48, 5, 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn: Any, world: int, *args: Any, timeout: float = 180.0) -> None:
    """Run `fn(rank, world, port, *args)` in `world` fresh processes joined by gloo; a process
    that never finishes (a collective waiting on a dead peer) fails the test, not the suite."""
    context = mp.start_processes(
        _entry, args=(fn, world, _free_port(), args), nprocs=world, join=False
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{world} gloo processes did not finish within {timeout:.0f} s")


def _entry(rank: int, fn: Any, world: int, port: int, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    fn(rank, world, *args)
    if torch.distributed.is_initialized():
        # Leave together: a process that exits while gloo still talks to its peer dies of
        # SIGABRT ("terminate called without an active exception"), which failed the test.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=32,
        num_labels=1,
        pad_token_id=0,
    )


def _critic(seed: int = 0) -> LlamaForSequenceClassification:
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(_llama_config())


def _actor(seed: int = 1) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(_llama_config())


def _sequences(rows: int, seed: int = 2):
    """Left-padded prompts and right-padded responses of unequal lengths."""
    from icegrt_cli.ppo.rollout import Sequences

    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(1, VOCAB, (rows, PROMPT), generator=g)
    prompt_mask = torch.ones(rows, PROMPT, dtype=torch.long)
    response_ids = torch.randint(1, VOCAB, (rows, RESPONSE), generator=g)
    lengths = torch.randint(1, RESPONSE + 1, (rows,), generator=g)
    for i in range(rows):
        pad = int(torch.randint(0, 3, (1,), generator=g))
        prompt_mask[i, :pad] = 0
        prompt_ids[i, :pad] = 0
        response_ids[i, lengths[i] :] = 0
    response_mask = (torch.arange(RESPONSE) < lengths[:, None]).float()
    return Sequences(prompt_ids, prompt_mask, response_ids, response_mask, lengths < RESPONSE)


def _flat_grads(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _critic_grads_worker(rank: int, world: int, out: str, peft: bool) -> None:
    from accelerate import Accelerator

    from icegrt_cli.ppo.rollout import token_values

    accelerator = Accelerator(cpu=True)
    critic = _critic()
    if peft:
        from icegrt_cli.adapters import with_adapters
        from icegrt_cli.config import PeftConfig

        critic = with_adapters(critic, PeftConfig(kind="lora", r=2), scalar=True)
    critic = accelerator.prepare(critic)
    seq = _sequences(4, seed=10 + rank)  # each rank its own rows
    accelerator.backward((token_values(critic, seq) * seq.response_mask).sum())
    grads = accelerator.gather(_flat_grads(critic)[None])  # (world, P)
    if rank == 0:
        torch.save((grads[0] - grads[1]).abs().max(), out)


@pytest.mark.parametrize("peft", [False, True], ids=["full", "lora"])
def test_critic_gradients_are_all_reduced_across_processes(tmp_path: Path, peft: bool) -> None:
    """The critic's values go through its DDP wrapper, so both ranks hold the same gradient."""
    out = tmp_path / "diff.pt"
    _spawn(_critic_grads_worker, 2, str(out), peft)
    assert torch.load(out).item() == 0.0


def _experience(rows: int):
    """A fixed scored rollout batch for the tiny actor and critic, with unequal lengths."""
    from icegrt_cli.ppo.experience import Experience
    from icegrt_cli.ppo.rollout import logprobs_in_chunks, values_in_chunks

    seq = _sequences(rows)
    mask = seq.response_mask
    g = torch.Generator().manual_seed(3)
    old_logp, _ = logprobs_in_chunks(_actor(), seq, 1.0, rows)
    ref_logp = (old_logp + 0.1 * torch.randn(old_logp.shape, generator=g)) * mask
    values = values_in_chunks(_critic(), seq, rows) * mask
    advantages = torch.randn(mask.shape, generator=g) * mask
    returns = torch.randn(mask.shape, generator=g) * mask
    zeros = torch.zeros_like(mask)
    return Experience(
        seq, old_logp, ref_logp, values, zeros, zeros, advantages, returns, zeros[:, 0], 0.1
    )


def _update_worker(rank: int, world: int, out: str, rows: int) -> None:
    """`ppo_update` of actor and critic on this process's contiguous share of the rows."""
    from accelerate import Accelerator

    from icegrt_cli.config import KLConfig, OptimConfig, PPOAlgoConfig
    from icegrt_cli.engine.optim import build_optimizer, build_scheduler
    from icegrt_cli.ppo.update import Learner, ppo_update

    accelerator = Accelerator(cpu=True)
    local = rows // world
    exp = _experience(rows).select(torch.arange(rank * local, (rank + 1) * local))
    learners = []
    for model in (_actor(), _critic()):
        optim = OptimConfig(lr=1e-3, scheduler="constant", warmup_steps=0, max_grad_norm=1.0)
        optimizer = build_optimizer(model.parameters(), optim)
        model, optimizer = accelerator.prepare(model, optimizer)
        learners.append(Learner(model, optimizer, build_scheduler(optimizer, optim, 4), 1.0))
    # One minibatch of all local rows per epoch: both layouts step on the same rows.
    ppo = PPOAlgoConfig(epochs=2, minibatch_size=local, entropy_coef=0.01)
    figures = ppo_update(
        exp,
        *learners,
        ppo=ppo,
        kl_cfg=KLConfig(estimator="k2", in_reward=False),
        temperature=1.0,
        update_actor=True,
        accelerator=accelerator,
        generator=torch.Generator().manual_seed(0),
        step=1,
    )
    if rank == 0:
        weights = [accelerator.unwrap_model(lr.model).state_dict() for lr in learners]
        torch.save((figures, *weights), out)


def test_two_processes_of_b_rows_update_as_one_process_of_2b(tmp_path: Path) -> None:
    """Actor and critic after two PPO epochs, and the reported losses: 2 processes x 4 rows
    equal 1 process x 8 rows, though the processes hold unequal numbers of response tokens."""
    exp = _experience(8)
    tokens = exp.seq.response_mask.sum(dim=1)
    assert tokens[:4].sum() != tokens[4:].sum()  # the case that needs global normalisation
    single, double = tmp_path / "one.pt", tmp_path / "two.pt"
    _spawn(_update_worker, 1, str(single), 8)
    _spawn(_update_worker, 2, str(double), 8)
    one, two = torch.load(single), torch.load(double)
    assert one[0].keys() == two[0].keys() and "ppo/value_loss" in one[0]
    # Explained variance is a ratio of variances: each process's is of its own rows.
    for key in one[0].keys() - {"ppo/explained_variance"}:
        assert two[0][key] == pytest.approx(one[0][key], rel=1e-5, abs=1e-6), key
    start = [_actor().state_dict(), _critic().state_dict()]
    for before, after_one, after_two in zip(start, one[1:], two[1:], strict=True):
        moved = max((after_one[k] - before[k]).abs().max().item() for k in before)
        apart = max((after_two[k] - after_one[k]).abs().max().item() for k in before)
        print(f"moved {moved:.2e}, 1 vs 2 processes {apart:.2e}")
        assert moved > 1e-4 and apart < 1e-6, (moved, apart)


def _figures_worker(rank: int, world: int, out: str) -> None:
    """Step figures whose keys differ between the processes, averaged over them."""
    from accelerate import Accelerator
    from rich.console import Console

    from icegrt_cli.engine.runtime import Runtime

    rt = Runtime(Accelerator(cpu=True), Console())
    figures = {"rollout/score": 1.0 + 2.0 * rank, "time/update_s": 0.5}
    if rank == 1:  # only this process's batch held records a judge scores
        figures["rollout/gold"] = 0.75
    torch.save(rt.mean_over_processes(figures), f"{out}.{rank}")


def test_step_figures_average_over_processes_whose_keys_differ(tmp_path: Path) -> None:
    """A figure only some processes have (gold, where a batch held judged records) was packed
    into one tensor per process: tensors of unequal length in one all-reduce."""
    out = str(tmp_path / "figures")
    _spawn(_figures_worker, 2, out, timeout=60.0)
    expected = {"rollout/gold": 0.75, "rollout/score": 2.0, "time/update_s": 0.5}
    assert torch.load(f"{out}.0") == torch.load(f"{out}.1") == expected


def _held_out_worker(rank: int, world: int, out: str) -> None:
    """`evaluate` over a held-out set of one pair: the second process gets no batch at all."""
    from accelerate import Accelerator
    from rich.console import Console

    from icegrt_cli.engine.loop import StepOutput, evaluate
    from icegrt_cli.engine.runtime import Runtime

    def step(model: torch.nn.Module, batch: dict[str, Any]) -> StepOutput:
        return StepOutput(batch["weight"] * 0.5, {"accuracy": float(batch["weight"])})

    rt = Runtime(Accelerator(cpu=True), Console())

    def collate(chunk: list[int]) -> dict[str, Any]:
        return {"weight": torch.tensor(float(len(chunk)))}

    figures = evaluate(rt, torch.nn.Linear(1, 1), [0], collate, step, batch_size=4)
    torch.save(figures, f"{out}.{rank}")


def test_held_out_figures_when_a_process_has_no_held_out_batch(tmp_path: Path) -> None:
    """Fewer held-out examples than processes: the empty process's totals lacked the step's
    metric keys, and the packed all-reduce of unequal lengths hung."""
    out = str(tmp_path / "held_out")
    _spawn(_held_out_worker, 2, out, timeout=60.0)
    assert torch.load(f"{out}.0") == torch.load(f"{out}.1") == {"accuracy": 1.0, "loss": 0.5}


TWO_PROCESSES = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",  # torchrun underneath; without a GPU icegrt joins the processes on the CPU
    "--num_processes",
    "2",
    "-m",
    "icegrt_cli.cli",
]
TINY_STAGES = [
    *(f"sft.{o}" for o in TINY_SFT if not o.startswith("run.")),
    "sft.train.max_steps=3",
    "sft.train.batch_size=4",
    "train_rm.data.sources.0.limit=64",
    "train_rm.train.max_steps=2",
    "train_rm.train.batch_size=4",
    "train_rm.calibration_size=8",
    "ppo.ppo.steps=2",
    "ppo.rollout.batch_size=4",
    "ppo.rollout.max_new_tokens=8",
    "ppo.ppo.minibatch_size=2",
    "ppo.train.eval_size=2",
    "ppo.train.save_every=1",
    "ppo.data.sources.0.limit=16",
    "ppo.ptx_data.sources.0.limit=16",
    "ppo.ptx_data.sources.1.limit=16",
    "ppo.ppo.ptx_batch_size=2",
    "run.progress=false",
]


def _launch(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*TWO_PROCESSES, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:  # a plain string: pytest shortens a tuple's repr to one line
        (cwd / "launch.stderr").write_text(proc.stderr)
        said = [line for line in proc.stderr.splitlines() if _tells_the_cause(line)]
        pytest.fail(f"exit {proc.returncode}; the processes said:\n" + "\n".join(said[:60]))
    return proc


def _tells_the_cause(line: str) -> bool:
    """A traceback's lines and error lines; the launcher's own report adds nothing."""
    quoted = line.startswith(("Traceback", "  File", "    ", "[rank"))
    return quoted or "rror" in line or "abort" in line


def _step_two(path: Path) -> list[dict]:
    """The training records of PPO step 2 (held-out records share the step number)."""
    return [r for r in read_metrics(path) if r["step"] == 2 and "rollout/score_raw" in r]


@pytest.mark.slow
def test_the_pipeline_runs_on_two_processes_and_ppo_resumes_each_stream(
    tmp_path: Path,
) -> None:
    """The whole pipeline under `accelerate launch` with 2 gloo processes; PPO resumed from
    its step-1 checkpoint repeats step 2 exactly, so every process got its own sampling and
    PPO-ptx streams back."""
    evaluation = ("eval.tasks=[ad_moderation,arc_easy]", "eval.limit=4")
    proc = _launch(tmp_path, "pipeline", "run.name=two", *evaluation, *TINY_STAGES)
    assert "2 processes" in proc.stdout, proc.stdout[-2000:]
    run = tmp_path / "runs" / "two"
    for stage in ("sft", "train_rm", "ppo", "eval"):
        assert (run / stage / "summary.json").exists(), stage
    results = json.loads((run / "eval" / "results.json").read_text())
    assert set(results["models"]) == {"sft", "ppo"} and (run / "summary.json").exists()
    assert (run / "ppo" / "model" / "config.json").exists()
    assert (run / "ppo" / "critic" / "config.json").exists()
    first = _step_two(run / "ppo" / "metrics.jsonl")

    ppo_args = [o.removeprefix("ppo.") for o in TINY_STAGES if o.startswith("ppo.")]
    _launch(
        tmp_path,
        "ppo",
        "run.name=two",
        *ppo_args,
        "run.progress=false",
        f"run.resume={run / 'ppo' / 'checkpoints' / 'step-1'}",
        "run.force=true",
    )
    again = _step_two(run / "ppo" / "metrics.jsonl")
    for key in ("rollout/score_raw", "rollout/length", "ppo/policy_loss", "ppo/ptx_loss"):
        assert again[-1][key] == pytest.approx(first[0][key], rel=1e-5), key

    # Grouped rollouts without a critic, one minibatch per epoch (the update's first forwards
    # give the old log-probs): each process samples its own 4 prompts x 2 responses.
    grpo = [a for a in ppo_args if not a.startswith("ppo.minibatch_size")]
    _launch(
        tmp_path,
        "ppo",
        "run.name=two",
        *grpo,
        "run.progress=false",
        "run.force=true",
        "advantage=grpo",
        "rollout.n=2",
        "ppo.minibatch_size=8",
    )
    summary = json.loads((run / "ppo" / "summary.json").read_text())
    assert summary["critic"] is False and summary["episodes_per_step"] == 2 * 4 * 2
    grouped = _step_two(run / "ppo" / "metrics.jsonl")[-1]
    assert 0.0 <= grouped["adv/zero_spread_groups"] <= 1.0 and "ppo/value_loss" not in grouped


@pytest.mark.parametrize(
    ("kind", "on_cpu", "options", "env", "says"),
    [
        ("fsdp", True, {}, {}, "engine.kind=fsdp: Accelerate runs FSDP and DeepSpeed on GPUs"),
        ("zero3", False, {"peft": "lora"}, {}, "engine.kind=zero3 with peft=lora"),
        ("zero2", False, {"grad_accum": 4}, {}, "train.grad_accum=4 with engine.kind=zero2"),
        ("ddp", False, {}, {"ACCELERATE_USE_FSDP": "true"}, "accelerate launch was told fsdp"),
    ],
)
def test_engines_that_cannot_run_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, kind: str, on_cpu: bool, options: dict, env: dict, says: str
) -> None:
    from icegrt_cli.config import EngineConfig
    from icegrt_cli.engine.engines import engine_plugins
    from icegrt_cli.errors import ConfigError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace("+", r"\+")):
        engine_plugins(EngineConfig(kind=kind), on_cpu, **options)


def test_deepspeed_is_asked_for_by_name_and_refused_for_two_trained_models() -> None:
    import importlib.util

    from icegrt_cli.config import EngineConfig
    from icegrt_cli.engine.engines import engine_plugins
    from icegrt_cli.errors import ConfigError

    # Settings first, whatever the machine: PPO's two trained models are refused everywhere.
    with pytest.raises(ConfigError, match="engine.kind=zero3: this stage trains 2 models"):
        engine_plugins(EngineConfig(kind="zero3"), False, trainable_models=2)
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match="engine.kind=zero3: DeepSpeed is not installed"):
            engine_plugins(EngineConfig(kind="zero3"), False, trainable_models=1)


def test_fsdp_plugin_shards_each_decoder_layer_with_full_state_dicts() -> None:
    from icegrt_cli.config import EngineConfig
    from icegrt_cli.engine.engines import engine_plugins

    plugin = engine_plugins(EngineConfig(kind="fsdp", offload=True), on_cpu=False)["fsdp_plugin"]
    assert plugin.fsdp_version == 2
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
    assert plugin.cpu_offload is not None and "Offload" in type(plugin.cpu_offload).__name__


@pytest.mark.slow
@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason="FSDP on CPU: torch 2.13's FSDP runs under gloo, but Accelerate 1.16 turns FSDP on "
    "only for GPUs and other accelerators (AcceleratorState keeps MULTI_CPU and ignores the "
    "plugin), so engine=fsdp on a CPU is refused; this runs on 2 GPUs",
)
def test_fsdp_runs_sft_and_ppo_on_two_gpus(tmp_path: Path) -> None:
    """SFT and PPO with sharded parameters: training, generation on the sharded actor, and
    the gathered `save_pretrained` folders, which load in plain transformers."""
    from transformers import AutoModelForCausalLM

    stages = ["stages=[sft,train_rm,ppo]", "sft.engine=fsdp", "ppo.engine=fsdp"]
    _launch(tmp_path, "pipeline", "run.name=fsdp", *stages, *TINY_STAGES, "ppo.train.save_every=0")
    for stage in ("sft", "ppo"):
        model = AutoModelForCausalLM.from_pretrained(tmp_path / "runs" / "fsdp" / stage / "model")
        assert all(torch.isfinite(p).all() for p in model.parameters())


TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")


def test_slurm_tasks_of_a_submitit_job_join_as_torchrun_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Task 5 of 8 (2 nodes of 4) learns its rank, local rank and the first node's address."""
    from icegrt_cli.engine.runtime import join_slurm_tasks

    # Set, then removed, so that monkeypatch records each as absent and removes what
    # join_slurm_tasks exports: left behind, they made the next test's Accelerator wait for
    # 7 more processes forever.
    for name in (*TORCHRUN_VARIABLES, "MASTER_PORT"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "gpu01,gpu02",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    join_slurm_tasks()
    assert [os.environ[name] for name in TORCHRUN_VARIABLES] == ["5", "8", "1", "4", "gpu01"]
    assert os.environ["MASTER_PORT"].isdigit()
