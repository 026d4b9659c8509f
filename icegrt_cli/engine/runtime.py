"""Device, precision, process group, threads and seeds: set once per run."""

from __future__ import annotations

import atexit
import math
import os
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from icegrt_cli.atomic import write_text_atomically
from icegrt_cli.config import EngineConfig, RunConfig
from icegrt_cli.engine.engines import engine_plugins, has_accelerator, is_first_process

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class Runtime:
    """What every stage needs to know about where it runs."""

    accelerator: Accelerator
    console: Console
    engine: str = "ddp"
    """engine.kind: ddp, or a sharded engine (fsdp, zero2, zero3)."""

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    def print(self, *args: object, **kwargs: object) -> None:
        """Print once, from the main process."""
        if self.is_main:
            self.console.print(*args, **kwargs)

    def mean_over_processes(self, figures: dict[str, float]) -> dict[str, float]:
        """Each figure averaged over the processes that have it, the same on every process.
        Processes may differ in keys (a gold figure exists only where a batch held judged
        records), so the figures travel as objects, not as one packed tensor."""
        if self.world_size == 1:
            return figures
        return per_key(gather_object([figures]), statistics.fmean)

    def sum_over_processes(self, totals: dict[str, float]) -> dict[str, float]:
        """Each total summed over the processes, a key a process lacks counting 0 there (a
        process with no held-out batch has no metric totals)."""
        if self.world_size == 1:
            return totals
        return per_key(gather_object([totals]), math.fsum)


def per_key(
    dicts: list[dict[str, float]], combine: Callable[[list[float]], float]
) -> dict[str, float]:
    """Per key, `combine` of the values of the dicts that have it."""
    keys = sorted(set().union(*dicts))
    return {k: combine([d[k] for d in dicts if k in d]) for k in keys}


def default_threads() -> int:
    """The cores this process may use, shared among local processes, capped at 8.

    More threads than cores (or than the small matrices can use) only adds contention.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(8, (cores or 1) // local))


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far, in MiB: allocated on a GPU, resident on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def setup_runtime(
    run: RunConfig,
    engine: EngineConfig | None = None,
    *,
    trainable_models: int = 1,
    grad_accum: int = 1,
    max_grad_norm: float = 0.0,
    peft: str = "none",
) -> Runtime:
    """The Accelerator for `engine` (default DDP), on the CPU when there is no accelerator.

    Accelerate joins the processes of `accelerate launch` / torchrun on a CPU only when told
    it runs there (otherwise each process would train alone), hence `cpu` without a GPU.
    """
    join_slurm_tasks()
    torch.set_num_threads(run.num_threads or default_threads())
    on_cpu = run.cpu or not has_accelerator()
    plugins = engine_plugins(
        engine or EngineConfig(),
        on_cpu,
        trainable_models=trainable_models,
        grad_accum=grad_accum,
        max_grad_norm=max_grad_norm,
        peft=peft,
    )
    accelerator = Accelerator(cpu=on_cpu, mixed_precision=PRECISIONS[run.precision], **plugins)
    # Every rank draws the same initial weights and data order; ranks differ by their shard.
    # Once the models are built, `seed_per_process` gives each rank its own random stream.
    seed_everything(run.seed)
    _quiet_transformers()
    rt = Runtime(
        accelerator, Console(stderr=False, highlight=False), (engine or EngineConfig()).kind
    )
    if rt.world_size > 1:
        backend = accelerator.state.backend
        rt.print(f"engine={rt.engine}: {rt.world_size} processes on {rt.device.type} ({backend})")
        atexit.register(_leave_process_group)
    return rt


def _leave_process_group() -> None:
    """Tear the process group down before the interpreter exits (once, after every stage and
    sweep job of this process): a process that exits with gloo's threads still running can die
    of SIGABRT, and the launcher then reports a finished run as failed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def join_slurm_tasks() -> None:
    """Under Hydra's submitit launcher every SLURM task of a job is one icegrt process (one
    per GPU, over all nodes): give each the rank, world size and rendezvous (the first node)
    that torch.distributed reads, as torchrun would. Nothing to do outside such a job, with
    one task, or when a launcher already set them."""
    tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or tasks < 2 or "RANK" in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def seed_per_process(rt: Runtime, seed: int) -> None:
    """Give each process its own random stream (sampling, dropout) once the shared initial
    weights are drawn: rank 0 keeps `seed`, so one process runs exactly as before."""
    if rt.world_size > 1:
        seed_everything(seed + 1_000_003 * rt.rank)


def _quiet_transformers() -> None:
    """Loading bars from transformers would interleave with our own progress display."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def save_run_config(cfg: DictConfig, out_dir: Path) -> Path:
    """Write the composed config beside the outputs so the run can be repeated exactly. Called
    once the inputs have loaded: from here on the folder is being rewritten, so an earlier
    run's summary.json (a forced rerun's) goes first and "finished" means this run finished.
    Only the first process of a launched run writes."""
    path = out_dir / "config.yaml"
    if is_first_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").unlink(missing_ok=True)
        write_text_atomically(path, OmegaConf.to_yaml(cfg, resolve=True))
    return path
