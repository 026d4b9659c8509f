"""Run one task on one model: build its prompts, score them, keep every item's prediction."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from icegrt_cli.data.formatting import encode_prompt
from icegrt_cli.eval.generate import generate
from icegrt_cli.eval.loglik import Progress, loglikelihoods
from icegrt_cli.eval.metrics import argmax, choice_metrics, mean, mean_stderr
from icegrt_cli.eval.tasks import Task, choice_requests, generation_prompt

RewardFn = Callable[[Sequence[str], Sequence[str]], Tensor]
"""(prompts, responses) -> (N,) reward-model scores."""


@dataclass(frozen=True)
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    max_length: int
    """Longest input in tokens (prompts are cut from the left to fit)."""


@dataclass(frozen=True)
class Settings:
    batch_size: int
    max_new_tokens: int
    seed: int = 0
    """Seeds the draws of tasks that sample (a task's `temperature` above 0)."""


@dataclass(frozen=True)
class TaskRun:
    """One task's scores for one model."""

    values: dict[str, float]
    """Mean of each reported metric over the items."""
    stderr: dict[str, float | None]
    n: int
    predictions: list[dict[str, Any]]
    """Per item: id, prompt, target, prediction and its metric values."""
    seconds: float


def run_task(
    task: Task,
    lm: LoadedModel,
    settings: Settings,
    reward: RewardFn | None,
    progress: Callable[[str], Progress],
) -> TaskRun:
    """Score every item of `task`; `progress(description)` gives a batch-progress callback."""
    started = time.perf_counter()
    bar = progress(task.name)
    if task.is_generation:
        predictions = _generation(task, lm, settings, reward, bar)
    else:
        predictions = _choices(task, lm, settings, bar)
    values, stderr = {}, {}
    for metric in task.metrics:
        scores = [p["metrics"][metric] for p in predictions if metric in p["metrics"]]
        if scores:  # `reward` is only there when a reward model is given
            values[metric], stderr[metric] = mean(scores), mean_stderr(scores)
    return TaskRun(values, stderr, len(predictions), predictions, time.perf_counter() - started)


def _choices(task: Task, lm: LoadedModel, settings: Settings, bar: Progress) -> list[dict]:
    per_item = [choice_requests(task, i) for i in range(len(task.items))]
    flat = [request for requests in per_item for request in requests]
    scores = loglikelihoods(
        lm.model,
        lm.tokenizer,
        flat,
        batch_size=settings.batch_size,
        max_length=lm.max_length,
        progress=bar,
    )
    predictions, offset = [], 0
    for item, requests in zip(task.items, per_item, strict=True):
        lls = scores[offset : offset + len(requests)]
        offset += len(requests)
        predictions.append(
            {
                "id": item.id,
                "context": requests[item.gold][0],
                "choices": list(item.choices),
                "gold": item.gold,
                "loglik": lls,
                "prediction": argmax(lls),
                "metrics": choice_metrics(lls, item.choices, item.gold),
            }
        )
    return predictions


def _generation(
    task: Task, lm: LoadedModel, settings: Settings, reward: RewardFn | None, bar: Progress
) -> list[dict]:
    if task.fmt.chat:
        prompts = [encode_prompt(lm.tokenizer, item.query) for item in task.items]
    else:
        # BOS when the tokenizer adds it by default, as the harness's generate_until
        prompts = [
            lm.tokenizer(generation_prompt(task, i)).input_ids for i in range(len(task.items))
        ]
    texts = generate(
        lm.model,
        lm.tokenizer,
        prompts,
        max_new_tokens=task.cfg.max_new_tokens or settings.max_new_tokens,
        stop=list(task.cfg.until),
        batch_size=settings.batch_size,
        max_length=lm.max_length,
        progress=bar,
        temperature=task.cfg.temperature,
        seed=settings.seed,
    )
    rewards = (
        reward([item.query for item in task.items], texts).tolist()
        if reward is not None and task.fmt.chat
        else None
    )
    predictions = []
    for index, (item, text) in enumerate(zip(task.items, texts, strict=True)):
        metrics = task.score(text, item)
        if rewards is not None:
            metrics["reward"] = rewards[index]
        prompt = item.query if task.fmt.chat else generation_prompt(task, index)
        predictions.append(
            {
                "id": item.id,
                "prompt": prompt,
                "target": item.target,
                "prediction": text,
                "metrics": metrics,
            }
        )
    return predictions
