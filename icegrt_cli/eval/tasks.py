"""Task registry: which reader and scorer each format uses, and how prompts are assembled.

A prompt is built as the harness builds it: description, then k solved examples each followed
by "\\n\\n", then the question; a multiple-choice continuation is " " + choice. Few-shot
examples come from `fewshot_path` (the train / dev split), from the same subject as the
question, or from the other items of the evaluated file when there is no such split.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from icegrt_cli import plugins
from icegrt_cli.config import TaskConfig
from icegrt_cli.errors import ConfigError
from icegrt_cli.eval import formats, judged
from icegrt_cli.eval.benchmarks import Source, display_name, resolve_source
from icegrt_cli.eval.formats import Item, Reader
from icegrt_cli.eval.metrics import (
    exact_match,
    extract_bbh_answer,
    extract_hash_answer,
    extract_last_number,
    extract_math_answer,
    gsm8k_target,
    math_equal,
)
from icegrt_cli.judges import resolve_judge

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
CHOICE_METRICS = ("acc", "acc_norm", "acc_bytes")
SAMPLERS = ("random", "first_n")

Scorer = Callable[[str, Item], dict[str, float]]
"""(generated text, item) -> per-item metric values."""


@dataclass(frozen=True)
class Format:
    read: Reader
    metrics: tuple[str, ...]
    """Every metric the format can report."""
    score: Scorer | None = None
    """None: multiple choice by log-likelihood; else generation scored by this function."""
    chat: bool = False
    """Prompt through the chat template, zero-shot (the judged tasks); adds `reward`."""
    judged_as: str | None = None
    """Scored by the task's judge, its score reported under this name, its parts under theirs."""
    judge: str | None = None
    """The judge when the task names none (the demo's formats: the demo's judges)."""
    folders: bool = False
    """Reads a folder of subject / subtask files, so `subtasks` applies."""


def _score_gsm8k(text: str, item: Item) -> dict[str, float]:
    target = gsm8k_target(item.target)
    return {
        "exact_match": exact_match(extract_hash_answer(text), target),
        "exact_match_flex": exact_match(extract_last_number(text), target),
    }


def _score_math(text: str, item: Item) -> dict[str, float]:
    return {"exact_match": math_equal(extract_math_answer(text), item.target)}


def _score_bbh(text: str, item: Item) -> dict[str, float]:
    return {"exact_match": exact_match(extract_bbh_answer(text), item.target)}


FORMATS: dict[str, Format] = {
    "mmlu": Format(formats.read_mmlu, CHOICE_METRICS, folders=True),
    "agieval": Format(formats.read_agieval, CHOICE_METRICS, folders=True),
    "arc": Format(formats.read_arc, CHOICE_METRICS),
    "hellaswag": Format(formats.read_hellaswag, CHOICE_METRICS),
    "winogrande": Format(formats.read_winogrande, CHOICE_METRICS),
    "race": Format(formats.read_race, CHOICE_METRICS),
    "boolq": Format(formats.read_boolq, CHOICE_METRICS),
    "bbh": Format(formats.read_bbh, ("exact_match",), _score_bbh, folders=True),
    "gsm8k": Format(formats.read_gsm8k, ("exact_match", "exact_match_flex"), _score_gsm8k),
    "math": Format(formats.read_math, ("exact_match",), _score_math, folders=True),
    "judged": Format(judged.read_judged, ("score", "reward"), chat=True, judged_as="score"),
    "ad_moderation": Format(
        judged.read_judged,
        (*judged.AD_METRICS, "reward"),
        chat=True,
        judged_as="gold",
        judge=plugins.DEMO_AD_JUDGE,
    ),
    "general_demo": Format(
        judged.read_judged,
        ("acc", "reward"),
        chat=True,
        judged_as="acc",
        judge=plugins.DEMO_GENERAL_JUDGE,
    ),
}


def resolve_path(value: str, key: str) -> Path:
    """`fixture:REL` (bundled fixtures), `demo:PART` (bundled demo data) or a local path."""
    if value.startswith("fixture:"):
        return FIXTURES / value.removeprefix("fixture:")
    if value.startswith("demo:"):
        return plugins.demo_file(value.removeprefix("demo:"), key)
    return Path(value).expanduser()


@dataclass(frozen=True)
class Task:
    """A task ready to run: its items, each item's few-shot examples, and how to score it."""

    name: str
    cfg: TaskConfig
    fmt: Format
    items: list[Item]
    shots: list[list[Item]]
    metrics: list[str]
    """Reported metrics, in order."""
    source: Source
    total: int
    """Items in the source; more than `len(items)` under a limit."""

    score: Scorer | None = None
    """How a generated answer is scored: the format's scorer or the task's judge."""

    @property
    def is_generation(self) -> bool:
        return self.score is not None

    @property
    def label(self) -> str:
        """The name a score is shown under: fixture-backed tasks say so."""
        return display_name(self.name, self.source, len(self.items))


def load_task(
    name: str, cfg: TaskConfig, limit: int | None, seed: int, subsample: bool = False
) -> Task:
    """Read and check a task's files; errors name the config key or the file and line.

    Under a limit the first items are kept, as the harness's `--limit` does, or with
    `subsample` a seeded random draw (MMLU's first items are all one subject).
    """
    key = f"task.{name}"
    fmt = FORMATS.get(cfg.format)
    if fmt is None:
        raise ConfigError(
            f"{key}.format: unknown format '{cfg.format}' (known: {', '.join(sorted(FORMATS))})"
        )
    if cfg.subtasks and not fmt.folders:
        raise ConfigError(f"{key}.subtasks: the {cfg.format} format has no subtasks")
    if fmt.chat and cfg.num_fewshot:
        raise ConfigError(f"{key}.num_fewshot: chat tasks are zero-shot")
    if cfg.fewshot_sampler not in SAMPLERS:
        raise ConfigError(
            f"{key}.fewshot_sampler: '{cfg.fewshot_sampler}' is not one of {list(SAMPLERS)}"
        )
    score = fmt.score
    if fmt.judged_as is not None:
        spec = cfg.judge or fmt.judge
        if spec is None:
            raise ConfigError(f"{key}.judge: the {cfg.format} format needs a judge (pkg.module:fn)")
        score = judged.judge_scorer(resolve_judge(spec, f"{key}.judge"), spec, fmt.judged_as)
    elif cfg.judge is not None:
        raise ConfigError(f"{key}.judge: the {cfg.format} format is not scored by a judge")
    # A judge's parts are known only once it has judged: a judged task may list any of them.
    unknown = [m for m in cfg.metrics if m not in fmt.metrics and fmt.judged_as is None]
    if unknown:
        raise ConfigError(
            f"{key}.metrics: {unknown} not computed by the {cfg.format} format "
            f"(it computes {list(fmt.metrics)})"
        )
    source = resolve_source(cfg)
    everything = fmt.read(resolve_path(source.path, f"{key}.path"), list(cfg.subtasks))
    cap = cfg.limit if cfg.limit is not None else limit
    kept = range(len(everything))
    if cap is not None and cap < len(everything):
        kept = (
            sorted(random.Random(f"{seed}:{name}:subsample").sample(kept, cap))
            if subsample
            else kept[:cap]
        )
    items = [everything[i] for i in kept]
    if not items:
        raise ConfigError(f"{key}: no items to evaluate in {source.path}")
    pool = everything
    if source.fewshot_path and cfg.num_fewshot:
        pool = fmt.read(
            resolve_path(source.fewshot_path, f"{key}.fewshot_path"), list(cfg.subtasks)
        )
    rng = random.Random(f"{seed}:{name}")
    by_group: dict[str, list[Item]] = {}
    for example in pool:
        by_group.setdefault(example.group, []).append(example)
    shots = [
        _shots(
            item,
            by_group.get(item.group) or pool,
            cfg.num_fewshot,
            rng if cfg.fewshot_sampler == "random" else None,
        )
        for item in items
    ]
    return Task(
        name,
        cfg,
        fmt,
        items,
        shots,
        list(cfg.metrics or fmt.metrics),
        source,
        len(everything),
        score,
    )


def _shots(item: Item, candidates: list[Item], k: int, rng: random.Random | None) -> list[Item]:
    """k examples, never the item itself: as the harness, take k + 1 (at random, or the first
    ones when `rng` is None) and drop the item."""
    if k == 0:
        return []
    n = min(k + 1, len(candidates))
    drawn = rng.sample(candidates, n) if rng is not None else candidates[:n]
    return [c for c in drawn if c != item][:k]


def solved(example: Item) -> str:
    """A few-shot example with its answer filled in."""
    if example.partial:
        return example.choices[example.gold] + TARGET_DELIMITER + example.target
    return example.query + TARGET_DELIMITER + example.target


def prefix(task: Task, index: int) -> str:
    """Description and solved examples that precede item `index`."""
    item = task.items[index]
    return item.description + "".join(solved(s) + FEWSHOT_DELIMITER for s in task.shots[index])


def choice_requests(task: Task, index: int) -> list[tuple[str, str]]:
    """(context, continuation) per choice; WinoGrande varies the context, not the continuation."""
    item, head = task.items[index], prefix(task, index)
    if item.partial:
        return [(head + c, TARGET_DELIMITER + item.target) for c in item.choices]
    return [(head + item.query, TARGET_DELIMITER + c) for c in item.choices]


def generation_prompt(task: Task, index: int) -> str:
    """The plain-text prompt of a generation item (chat tasks are templated by the runner)."""
    return prefix(task, index) + task.items[index].query
