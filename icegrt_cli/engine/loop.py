"""The supervised step shared by SFT and reward-model training, run by the step driver.

Loss normalisation is global: each micro-batch contributes `loss_sum / units in the whole
optimizer step (all micro-batches, all ranks)`, so batch 8 x accumulation 1 and batch 1 x
accumulation 8 take the same step, and a step is the same on one process or several.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from icegrt_cli.config import OptimConfig, RunConfig, TrainConfig
from icegrt_cli.engine.driver import Cadence, Saved, StepDriver, StepFigures
from icegrt_cli.engine.optim import build_optimizer, build_scheduler
from icegrt_cli.engine.runtime import Runtime
from icegrt_cli.errors import DataError


class StepOutput(NamedTuple):
    """What a stage's step function returns for one micro-batch."""

    loss_sum: torch.Tensor
    """Loss summed over the batch's units (tokens, pairs); carries the graph."""
    metrics: dict[str, float]
    """Other figures, also summed over units; logged as means per unit."""


StepFn = Callable[[torch.nn.Module, dict[str, Any]], StepOutput]
Collate = Callable[[list[Any]], dict[str, Any]]


@dataclass
class FitResult:
    steps: int
    stopped_early: bool
    train_loss: float | None = None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    first_eval: dict[str, float] = field(default_factory=dict)


def global_batches(n: int, global_size: int, epoch: int, seed: int) -> list[list[int]]:
    """One epoch's global batches of example indices, in a seeded order.

    The order depends only on (seed, epoch), not on RNG history, so a resumed run sees
    exactly the batches it would have seen. The incomplete last batch is dropped.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i : i + global_size] for i in range(0, n - global_size + 1, global_size)]


def rank_micro_batches(batch: list[int], rank: int, world: int, micro: int) -> list[list[int]]:
    """This rank's share of a global batch, split into micro-batches of `micro`."""
    mine = batch[rank::world]
    return [mine[i : i + micro] for i in range(0, len(mine), micro)]


def _units(batch: dict[str, Any]) -> float:
    return float(batch["weight"])


def _move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


UNITS = "\0units"
"""The held-out units' total travels with the figures under a key no figure has."""


@torch.no_grad()
def evaluate(
    rt: Runtime,
    model: torch.nn.Module,
    dataset: Sequence[Any],
    collate: Collate,
    step_fn: StepFn,
    batch_size: int,
    max_batches: int = 0,
) -> dict[str, float]:
    """Mean loss and metrics per unit over a held-out set, summed across ranks."""
    was_training = model.training
    model.eval()
    indices = list(range(len(dataset)))[rt.rank :: rt.world_size]
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if max_batches > 0:
        chunks = chunks[:max_batches]
    totals: dict[str, float] = {"loss": 0.0}
    units = 0.0
    for chunk in chunks:
        batch = _move(collate([dataset[i] for i in chunk]), rt.device)
        out = step_fn(model, batch)
        totals["loss"] += out.loss_sum.item()
        for key, value in out.metrics.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        units += _units(batch)
    summed = rt.sum_over_processes({**totals, UNITS: units})
    model.train(was_training)
    denominator = max(summed.pop(UNITS), 1.0)
    return {k: v / denominator for k, v in summed.items()}


def fit(
    rt: Runtime,
    model: torch.nn.Module,
    train_set: Sequence[Any],
    collate: Collate,
    step_fn: StepFn,
    *,
    run: RunConfig,
    train: TrainConfig,
    optim: OptimConfig,
    out_dir: Path,
    eval_set: Sequence[Any] | None = None,
    title: str = "train",
    settings: dict[str, Any] | None = None,
) -> FitResult:
    """Train `model` on `train_set` through the step driver (resume, cadence, interrupts);
    `settings` (the stage's composed config) go into every checkpoint."""
    global_size = train.batch_size * train.grad_accum * rt.world_size
    steps_per_epoch = len(train_set) // global_size
    if steps_per_epoch == 0:
        raise DataError(
            f"{title}: {len(train_set)} training examples do not fill one optimizer step of "
            f"{global_size} (batch_size x grad_accum x processes)"
        )
    total = train.max_steps or max(1, round(train.epochs * steps_per_epoch))
    optimizer = build_optimizer(model.parameters(), optim)
    job = _SupervisedJob(
        rt,
        model,
        optimizer,
        build_scheduler(optimizer, optim, total),
        train_set,
        eval_set,
        collate,
        step_fn,
        train,
        optim,
        run.seed,
        total,
        steps_per_epoch,
    )
    driver = StepDriver(
        rt,
        out_dir,
        title,
        run,
        Cadence(
            total,
            run.log_every,
            train.eval_every,
            train.save_every,
            train.keep_last,
            train.stop_after,
        ),
        settings,
    )
    driver.resume(job)
    job.model, job.optimizer = rt.accelerator.prepare(job.model, job.optimizer)
    job.model.train()
    done = driver.drive(job)
    return FitResult(
        done.steps,
        done.stopped_early,
        done.last_logged.get("train/loss"),
        done.last_eval,
        done.first_eval,
    )


@dataclass
class _SupervisedJob:
    """One optimizer step = the global batch's micro-batches of this rank, accumulated."""

    rt: Runtime
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_set: Sequence[Any]
    eval_set: Sequence[Any] | None
    collate: Collate
    step_fn: StepFn
    train: TrainConfig
    optim: OptimConfig
    seed: int
    total: int
    steps_per_epoch: int

    def step(self, step: int) -> StepFigures:
        rt, started = self.rt, time.perf_counter()
        epoch, position = divmod(step, self.steps_per_epoch)
        global_size = self.train.batch_size * self.train.grad_accum * rt.world_size
        batch_ids = global_batches(len(self.train_set), global_size, epoch, self.seed)[position]
        micros = [
            _move(self.collate([self.train_set[i] for i in ids]), rt.device)
            for ids in rank_micro_batches(batch_ids, rt.rank, rt.world_size, self.train.batch_size)
        ]
        local_units = torch.tensor(sum(_units(b) for b in micros), device=rt.device)
        step_units = rt.accelerator.reduce(local_units, reduction="sum").item()
        loss = _accumulate(rt, self.model, micros, self.step_fn, step_units)
        grad_norm = _clip(rt, self.model, self.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        rate = step_units / max(time.perf_counter() - started, 1e-9)
        return StepFigures(
            {
                "train/loss": loss,
                "train/lr": lr,
                "train/grad_norm": grad_norm,
                "train/units_per_s": rate,
                "train/epoch": (step + 1) / self.steps_per_epoch,
            },
            {"loss": loss, "lr": lr, "units/s": rate},
        )

    def evaluate(self, step: int) -> dict[str, float]:
        if not self.eval_set:
            return {}
        return evaluate(
            self.rt,
            self.model,
            self.eval_set,
            self.collate,
            self.step_fn,
            self.train.batch_size,
            self.train.eval_batches,
        )

    def checkpoint(self) -> Saved:
        return Saved(
            {"model": self.model},
            {"optimizer": self.optimizer, "scheduler": self.scheduler},
            {"total_steps": self.total},
        )

    def restore(self, state: dict[str, Any]) -> None:
        """Weights, optimizer and scheduler are all this job keeps."""


def _accumulate(
    rt: Runtime,
    model: torch.nn.Module,
    micros: list[dict[str, Any]],
    step_fn: StepFn,
    step_units: float,
) -> float:
    """Backward every micro-batch of one step; gradients sync on the last one only."""
    loss_total = 0.0
    scale = rt.world_size / max(step_units, 1.0)  # DDP averages over ranks: undo it
    for index, batch in enumerate(micros):
        last = index == len(micros) - 1
        sync = contextlib.nullcontext() if last else rt.accelerator.no_sync(model)
        with sync:
            out = step_fn(model, batch)
            loss = out.loss_sum * scale
        rt.accelerator.backward(loss)
        loss_total += out.loss_sum.item()
    summed = rt.accelerator.reduce(torch.tensor(loss_total, device=rt.device), reduction="sum")
    return summed.item() / max(step_units, 1.0)


def _clip(rt: Runtime, model: torch.nn.Module, max_norm: float) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return float(rt.accelerator.clip_grad_norm_(params, max_norm))
    norms = [p.grad.detach().norm() for p in params]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
