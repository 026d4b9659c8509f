"""The shared training engine: runtime, optimisation, checkpoints, metrics and the step loop.

A stage says what one step is (a loss on a batch); the engine says how steps run.
"""

from icegrt_cli.engine.checkpoint import Checkpointer
from icegrt_cli.engine.loop import FitResult, StepOutput, evaluate, fit
from icegrt_cli.engine.metrics import MetricsLogger
from icegrt_cli.engine.optim import build_optimizer, build_scheduler, lr_multiplier
from icegrt_cli.engine.runtime import Runtime, save_run_config, setup_runtime

__all__ = [
    "Checkpointer",
    "FitResult",
    "MetricsLogger",
    "Runtime",
    "StepOutput",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit",
    "lr_multiplier",
    "save_run_config",
    "setup_runtime",
]
