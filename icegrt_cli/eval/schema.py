"""The typed schema of `icegrt eval`: which checkpoints, which tasks, and how each task reads.

Per-task values (format, paths, shots, stop strings) live in `conf/task/<name>.yaml`; every
field they may set is declared here, so a typo in a task file or an override is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from icegrt_cli.config import ModelConfig, RunConfig

GENERAL_TASKS: tuple[str, ...] = (
    "mmlu", "agieval", "bbh", "arc_easy", "arc_challenge", "hellaswag", "winogrande",
    "race_middle", "race_high", "gsm8k", "math", "boolq",
)
"""The paper's twelve general benchmarks."""

DOMAIN_TASKS: tuple[str, ...] = ("ad_moderation", "general_demo")
"""The embedded demo: in-domain answers and analyses, and closed-world general skills."""


@dataclass
class TaskConfig:
    format: str = MISSING
    """Reader and scorer: mmlu | agieval | bbh | arc | hellaswag | winogrande | race | gsm8k |
    math | boolq | ad_moderation | general_demo."""
    path: str = MISSING
    """The evaluated split in the benchmark's public layout (file or folder). `fixture:REL` is a
    file bundled under icegrt_cli/eval/fixtures, `demo:PART` a part of the bundled demo data."""
    fewshot_path: str | None = None
    """Where k-shot examples come from (the train / dev split); None: other items of `path`."""
    subtasks: list[str] = field(default_factory=list)
    """Subjects / subtask files to read from a folder (MMLU, AGIEval, BBH, MATH); empty: all."""
    num_fewshot: int = 0
    """Solved examples placed before each question, drawn from the item's own subject."""
    limit: int | None = None
    """Evaluate only the first N items (overrides the global `limit`)."""
    metrics: list[str] = field(default_factory=list)
    """Metrics to report, in order; empty: every metric the format computes."""
    until: list[str] = field(default_factory=list)
    """Generation stops at the first of these strings (and always at EOS)."""
    max_new_tokens: int | None = None
    """Generation budget; None: the stage's `max_new_tokens`."""


@dataclass
class EvalModelConfig(ModelConfig):
    paths: list[str] = field(default_factory=list)
    """Checkpoints to compare, the first being the baseline for deltas. Empty: `name_or_path`,
    else the run's latest model (`<run>/ppo/model`, else `<run>/sft/model`)."""


@dataclass
class EvalConfig:
    stage: str = "eval"
    run: RunConfig = field(default_factory=RunConfig)
    model: EvalModelConfig = field(default_factory=EvalModelConfig)
    """Which checkpoints, and the loading settings (dtype, trust_remote_code, ...) for all."""
    reward_model: str | None = None
    """A reward-model folder; adds its mean score on the chat tasks' answers."""
    tasks: list[str] = field(default_factory=lambda: [*DOMAIN_TASKS, *GENERAL_TASKS])
    """Tasks to run, in table order; each needs an entry under `task`."""
    task: dict[str, TaskConfig] = field(default_factory=dict)
    limit: int | None = None
    """Cap on items per task (a task's own `limit` wins); None: all."""
    batch_size: int = 32
    """Sequences per forward pass (log-likelihood continuations or generations)."""
    max_new_tokens: int = 96
    max_length: int | None = None
    """Longest input in tokens; None: the model's max_position_embeddings (else 2048)."""
    save_predictions: bool = True
    """Write every item's prompt, prediction and per-item scores to predictions/<model>/."""
