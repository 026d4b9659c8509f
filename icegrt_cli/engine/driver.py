"""The one step driver: how the steps of every training stage run.

A stage supplies a `Job`: what one step is, what a held-out evaluation is, and what a
checkpoint holds. The driver owns the rest, once for SFT, the reward model and PPO alike:
resume (or clearing an earlier run's checkpoints), the log / evaluation / save cadence,
stop-after, interrupts, metrics and progress.

Ctrl-C never tears a step: the first one lets the step in flight finish, saves it and exits
with a resume hint; a second one stops at once, leaving the last complete checkpoint. SIGTERM,
which SLURM and other schedulers send before they kill a job, is treated the same way (exit 143).
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate.utils import gather_object

from icegrt_cli.config import RunConfig
from icegrt_cli.engine.checkpoint import (
    MANIFEST,
    SETTINGS,
    Checkpointer,
    load_checkpoint,
    rng_state,
)
from icegrt_cli.engine.engines import SHARDED, SHARDED_PARAMETERS, full_state_dict
from icegrt_cli.engine.metrics import MetricsLogger
from icegrt_cli.engine.progress import StepProgress
from icegrt_cli.engine.runtime import Runtime
from icegrt_cli.errors import ConfigError, Diverged, RunInterrupted


@dataclass
class Saved:
    """What a checkpoint of a job holds."""

    modules: dict[str, torch.nn.Module]
    """Weights, written as safetensors (unwrapped from any DDP / FSDP wrapper on save)."""
    stateful: dict[str, Any]
    """Objects with `state_dict()` / `load_state_dict()`: optimizers, schedulers."""
    state: dict[str, Any] = field(default_factory=dict)
    """JSON-able stage state: controllers, running statistics, random generators."""
    per_process: dict[str, Any] = field(default_factory=dict)
    """JSON-able state that differs between processes (each one's random generators): saved
    for every process, given back to each as `state["per_process"]`."""


@dataclass
class StepFigures:
    logged: dict[str, float]
    """Namespaced figures for metrics.jsonl (averaged over `run.log_every` steps)."""
    shown: dict[str, float] = field(default_factory=dict)
    """A few short-named figures for the progress display."""


class Job(Protocol):
    """What a training stage tells the driver."""

    def step(self, step: int) -> StepFigures:
        """Run optimizer step `step + 1` completely."""

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out figures after `step` steps (keys without the `eval/` namespace), or {}."""

    def checkpoint(self) -> Saved:
        """The modules, optimizers and state a checkpoint holds."""

    def restore(self, state: dict[str, Any]) -> None:
        """Take back `Saved.state` after weights and optimizers were loaded."""


@dataclass(frozen=True)
class Cadence:
    total: int
    """Steps of the whole run."""
    log_every: int = 1
    eval_every: int = 0
    """0: evaluate only before the first step and after the last."""
    save_every: int = 0
    keep_last: int = 2
    stop_after: int = 0
    """Stop (as if killed) after this many steps, leaving the checkpoint."""


@dataclass
class DriveResult:
    steps: int
    stopped_early: bool = False
    first_eval: dict[str, float] = field(default_factory=dict)
    """Before the first step (empty for a resumed run)."""
    last_eval: dict[str, float] = field(default_factory=dict)
    """After the last step (empty when stopped early)."""
    last_logged: dict[str, float] = field(default_factory=dict)


class StepDriver:
    """Runs a `Job` from its first (or resumed) step to the end of its cadence."""

    def __init__(
        self,
        rt: Runtime,
        out_dir: Path,
        title: str,
        run: RunConfig,
        cadence: Cadence,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.rt, self.out_dir, self.title, self.run_cfg, self.cadence = (
            rt,
            out_dir,
            title,
            run,
            cadence,
        )
        self.settings = settings
        """The stage's composed settings, kept in every checkpoint so that a resume with other
        settings can be refused (`icegrt_cli.stages.rerun`)."""
        self.checkpoints = Checkpointer(out_dir / "checkpoints", cadence.keep_last, rt.is_main)
        for partial in self.checkpoints.clean_partial():
            rt.print(f"removed {partial}: a checkpoint a kill left unfinished")
        for folder in self.checkpoints.unmarked():
            rt.print(f"ignored {folder}: no {MANIFEST}, so not a complete checkpoint")
        self.resume_from = self.checkpoints.resolve(run.resume)
        self.start = 0

    def resume(self, job: Job) -> int:
        """Load the checkpoint `run.resume` names into `job` (before any wrapping), or clear
        an earlier run's checkpoints for a fresh start; return the step to start from."""
        if self.resume_from is None:
            if self.checkpoints.clear():
                self.rt.print(
                    f"removed the checkpoints of an earlier run in {self.checkpoints.folder}"
                )
            return 0
        if self.rt.engine in SHARDED:
            raise ConfigError(
                f"run.resume under engine.kind={self.rt.engine}: optimizer state is sharded "
                "across processes and these checkpoints keep whole weights only; resume under "
                "engine=ddp, or start afresh"
            )
        saved = job.checkpoint()
        state = load_checkpoint(
            self.resume_from, saved.modules, saved.stateful, self.rt.rank, self.rt.world_size
        )
        job.restore(state)
        self.start = state["step"]
        self.rt.print(f"resumed from {self.resume_from} at step {self.start}")
        return self.start

    def drive(self, job: Job) -> DriveResult:
        rt, cadence = self.rt, self.cadence
        logger = MetricsLogger(
            self.out_dir,
            rt.is_main,
            self.run_cfg.tensorboard,
            resume_step=self.start if self.resume_from else None,
            warn=rt.print,
        )
        step = self.start
        result = DriveResult(steps=step)

        # One autocast for everything a step or an evaluation runs (a no-op in fp32): the
        # actor's, reference's, critic's and reward model's passes share one precision, so
        # the KL between identical weights is 0 under bf16 too.
        def evaluate() -> dict[str, float]:
            with rt.accelerator.autocast():
                figures = job.evaluate(step)
            if figures:
                logger.log(step, {f"eval/{k}": v for k, v in figures.items()})
            return figures

        def save() -> None:
            saved = job.checkpoint()
            state = {**saved.state, SETTINGS: self.settings} if self.settings else saved.state
            weights: dict[str, Any] = {}
            for name, module in saved.modules.items():
                weights[name] = (
                    full_state_dict(rt.accelerator, module)  # collective: every process
                    if self.rt.engine in SHARDED_PARAMETERS
                    else rt.accelerator.unwrap_model(module)
                )
            rng_ranks, per_process = None, [saved.per_process]
            if rt.world_size > 1:  # each process's own streams, gathered to the main one
                rng_ranks = gather_object([rng_state()])
                per_process = gather_object(per_process)
            state = {**state, "per_process": per_process}
            self.checkpoints.save(step, weights, saved.stateful, state, rng_ranks)
            rt.accelerator.wait_for_everyone()

        window = _Window()
        show = self.run_cfg.progress and rt.is_main
        interrupt = _Interrupt(rt)
        try:
            if step == 0:
                result.first_eval = evaluate()
            with (
                _deferred_interrupt(interrupt),
                StepProgress(rt.console, self.title, cadence.total, step, show) as bar,
            ):
                while step < cadence.total:
                    with rt.accelerator.autocast():
                        figures = job.step(step)
                    step = result.steps = step + 1
                    self._check_finite(figures, step)
                    window.add(figures.logged)
                    if step % cadence.log_every == 0 or step == cadence.total:
                        result.last_logged = window.mean()
                        logger.log(step, result.last_logged)
                    bar.advance(figures.shown)
                    more = step < cadence.total
                    if more and cadence.eval_every and step % cadence.eval_every == 0:
                        evaluate()
                    if more and cadence.save_every and step % cadence.save_every == 0:
                        save()
                    if more and cadence.stop_after and step >= cadence.stop_after:
                        save()
                        rt.print(
                            f"{self.title}: stopped after step {step} (train.stop_after); "
                            "checkpoint kept"
                        )
                        result.stopped_early = True
                        return result
                    if more and interrupt.agreed():
                        save()
                        raise RunInterrupted(
                            f"{interrupt.cause} after step {step}; checkpoint saved in "
                            f"{self.checkpoints.latest()}: rerun with run.resume=latest to "
                            "continue",
                            interrupt.exit_code,
                        )
            result.last_eval = evaluate()
        except KeyboardInterrupt as again:
            raise RunInterrupted(
                f"stopped at once during step {step + 1}; the last complete checkpoint is "
                f"{self.checkpoints.latest() or 'none'} (run.resume=latest continues from it)",
                interrupt.exit_code,
            ) from again
        finally:
            logger.close()
        return result

    def _check_finite(self, figures: StepFigures, step: int) -> None:
        """A diverged step ends the stage: no checkpoint of it, no final model, no summary."""
        bad = [k for k, v in figures.logged.items() if not math.isfinite(v)]
        if bad:
            kept = self.checkpoints.latest()
            raise Diverged(
                f"{self.title}: non-finite {', '.join(bad)} at step {step}; nothing of this run "
                f"was saved as finished (lower the learning rate or check the data"
                f"{f'; the last checkpoint, {kept}, is from before' if kept else ''})"
            )


class _Window:
    """Mean of each figure over the steps since the last log record."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def mean(self) -> dict[str, float]:
        means = {k: v / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means


class _Interrupt:
    SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.requested = False
        self.cause = "interrupted"
        self.exit_code = 130
        """128 + the first signal's number: 130 for Ctrl-C, 143 for SIGTERM."""

    def handle(self, signum: int, _frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.cause = self.SIGNALS.get(signum, "interrupted")
        self.exit_code = 128 + signum
        self.rt.console.print(
            f"[yellow]{self.cause}: finishing this step, then saving "
            "(Ctrl-C again to stop at once)[/yellow]"
        )

    def agreed(self) -> bool:
        """Whether any process was asked to stop: all of them stop at the same step."""
        if self.rt.world_size == 1:
            return self.requested
        flag = torch.tensor(float(self.requested), device=self.rt.device)
        return self.rt.accelerator.reduce(flag, reduction="sum").item() > 0


@contextmanager
def _deferred_interrupt(interrupt: _Interrupt) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into a request the driver acts on between steps (main thread
    only: signal handlers cannot be set elsewhere, and there Ctrl-C stays a plain
    KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, interrupt.handle) for signum in _Interrupt.SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
