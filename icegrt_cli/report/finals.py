"""The final figures of a run: one number per column of the report's table.

"Final" is the last value a stage logged. Changes are shown against the run's own start: the
held-out figures before PPO (its step-0 evaluation), and the eval stage's first model (the SFT
model in a pipeline) for the in-domain and general scores.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from icegrt_cli.config import DOMAIN_TASKS, GENERAL_TASKS
from icegrt_cli.report.discover import Run

IN_DOMAIN: dict[str, tuple[str, str]] = {
    "in-domain": ("ad_moderation_valid", "gold"),
    "in-domain sampled": ("ad_moderation_valid_sampled", "gold"),
    "new wording": ("ad_moderation", "gold"),
}
"""Column -> (task, metric) of the in-domain scores: the demo's gold score of verdict and
analysis on unseen ads in the training phrasings (greedy, and sampled at temperature 1), and on
held-out phrasings and products."""

GENERAL = tuple(
    task
    for task in (*DOMAIN_TASKS, *GENERAL_TASKS)
    if task not in {task for task, _ in IN_DOMAIN.values()}
)
"""Tasks averaged into the general score, each by its first listed metric (`acc` for
`general_demo` and the multiple-choice benchmarks)."""

COLUMNS: dict[str, str] = {
    "sft loss": "SFT held-out loss (last eval/loss of sft)",
    "rm acc": "reward-model pairwise accuracy on held-out pairs (last eval/accuracy of train_rm)",
    "score": "reward-model score of the last PPO rollouts (rollout/score_raw)",
    "gold": "gold score of the last PPO rollouts (rollout/gold)",
    "KL": "KL to the reference per sequence, last PPO step: the k1 estimate (kl/k1), the same "
    "for every run whichever estimator it optimised (kl/ref where a run has no kl/k1)",
    "beta": "KL coefficient at the last PPO step (kl/beta)",
    "ppo peak MiB": "peak memory of the PPO process (summary.json peak_memory_mb: allocated "
    "on a GPU, resident on the CPU)",
    "held-out score": "reward-model score of greedy answers to held-out prompts after PPO "
    "(eval/score), change since step 0",
    "held-out gold": "gold score of those answers (eval/gold), change since step 0",
    "in-domain": "eval stage: ad_moderation_valid gold (unseen ads, training phrasings) of the "
    "last model, change from the first",
    "in-domain sampled": "eval stage: ad_moderation_valid_sampled gold (answers sampled at "
    "temperature 1) of the last model, change from the first",
    "new wording": "eval stage: ad_moderation gold (held-out phrasings and products) of the "
    "last model, change from the first",
    "general": "eval stage: mean over the general tasks on real data (fetched, the user's "
    "or the demo's) of their first metric, last model, change from the first",
    "general (fixture)": "the same over fixture-backed tasks (3-16 invented items each: "
    "noise), shown only when no general task ran on real data",
}
"""Table columns and what each holds; a column no run has is left out."""


KL_KEYS = ("kl/k1", "kl/ref")
"""Per-sequence KL, preferred first: kl/k1 is one estimator for every run; kl/ref is the one the
run optimised (k1, k2 or k3), comparable across runs only when they share it."""


def first_key(records: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    """The first of `keys` that some record holds (the last key when none does)."""
    return next((key for key in keys if any(key in r for r in records)), keys[-1])


class Final(NamedTuple):
    value: float
    change: float | None = None
    """value minus the run's starting value, where the run has one."""


def last_value(records: list[dict[str, Any]], key: str) -> float | None:
    return next((r[key] for r in reversed(records) if r.get(key) is not None), None)


def first_value(records: list[dict[str, Any]], key: str) -> float | None:
    return next((r[key] for r in records if r.get(key) is not None), None)


def model_scores(results: dict[str, Any], label: str) -> dict[str, float | None]:
    """The in-domain columns and the general score of one evaluated model in results.json."""
    tasks = results.get("tasks", {})
    scores: dict[str, float | None] = {
        column: tasks.get(task, {}).get("scores", {}).get(label, {}).get("values", {}).get(metric)
        for column, (task, metric) in IN_DOMAIN.items()
    }
    real, fixture = [], []
    for name in GENERAL:
        task = tasks.get(name)
        if not task or label not in task["scores"] or not task["metrics"]:
            continue
        value = task["scores"][label]["values"].get(task["metrics"][0])
        if value is not None:
            (fixture if is_fixture(task) else real).append(value)
    scores["general"] = sum(real) / len(real) if real else None
    if not real:
        scores["general (fixture)"] = sum(fixture) / len(fixture) if fixture else None
    return scores


def is_fixture(task: dict[str, Any]) -> bool:
    """Whether a results.json task ran on a bundled fixture (older results: from its path)."""
    if "fixture" in task:
        return bool(task["fixture"])
    return str(task.get("config", {}).get("path", "")).startswith("fixture:")


def _final(records: list[dict[str, Any]], key: str, with_change: bool = False) -> Final | None:
    value = last_value(records, key)
    if value is None:
        return None
    start = first_value(records, key) if with_change else None
    return Final(value, None if start is None else value - start)


def _summary_value(run: Run, stage: str, key: str) -> Final | None:
    summary = run.stages[stage].summary if stage in run.stages else None
    value = (summary or {}).get(key)
    return None if value is None else Final(float(value))


def final_metrics(run: Run) -> dict[str, Final]:
    """The run's figures by column name; columns the run has no data for are absent."""

    def records(stage: str) -> list[dict[str, Any]]:
        return run.stages[stage].metrics if stage in run.stages else []

    found = {
        "sft loss": _final(records("sft"), "eval/loss"),
        "rm acc": _final(records("train_rm"), "eval/accuracy"),
        "score": _final(records("ppo"), "rollout/score_raw"),
        "gold": _final(records("ppo"), "rollout/gold"),
        "KL": _final(records("ppo"), first_key(records("ppo"), KL_KEYS)),
        "beta": _final(records("ppo"), "kl/beta"),
        "ppo peak MiB": _summary_value(run, "ppo", "peak_memory_mb"),
        "held-out score": _final(records("ppo"), "eval/score", with_change=True),
        "held-out gold": _final(records("ppo"), "eval/gold", with_change=True),
    }
    results = run.stages["eval"].results if "eval" in run.stages else None
    if results and results.get("models"):
        labels = list(results["models"])
        first, last = model_scores(results, labels[0]), model_scores(results, labels[-1])
        for column, end in last.items():
            start = first[column]
            if end is not None:
                change = end - start if len(labels) > 1 and start is not None else None
                found[column] = Final(end, change)
    return {column: value for column, value in found.items() if value is not None}


FINAL_ROWS: dict[str, str] = {
    "in-domain": "unseen ads, greedy",
    "in-domain sampled": "unseen ads, sampled",
    "new wording": "new wording (test)",
}
"""Row names of the final table, short enough for 80 columns; its caption names the tasks."""


class PairedRow(NamedTuple):
    name: str
    first: float | None
    last: float | None
    difference: float | None
    """last - first, item by item over the same items (the mean of the differences)."""
    stderr: float | None
    """Standard error of that paired difference."""


def paired_rows(results: dict[str, Any]) -> list[PairedRow]:
    """The final table of a two-model eval (SFT vs PPO): gold on unseen ads (greedy and
    sampled) and on new wording, and the general score, each with the paired difference of the
    last model from the first (results.json `tasks.NAME.paired`)."""
    labels = list(results.get("models", {}))
    if len(labels) < 2:
        return []
    first, last = labels[0], labels[-1]
    tasks = results.get("tasks", {})
    start, end = model_scores(results, first), model_scores(results, last)

    def paired(name: str, metric: str) -> dict[str, Any]:
        return tasks.get(name, {}).get("paired", {}).get(last, {}).get(metric, {})

    rows = []
    for column, (name, metric) in IN_DOMAIN.items():
        if end[column] is None:
            continue
        found = paired(name, metric)
        rows.append(
            PairedRow(
                FINAL_ROWS[column],
                start[column],
                end[column],
                found.get("mean"),
                found.get("stderr"),
            )
        )
    column = "general" if end.get("general") is not None else "general (fixture)"
    if end.get(column) is not None:
        fixture = column != "general"
        found = [
            paired(name, tasks[name]["metrics"][0])
            for name in GENERAL
            if name in tasks and tasks[name]["metrics"] and is_fixture(tasks[name]) == fixture
        ]
        means = [f["mean"] for f in found if f.get("mean") is not None]
        errors = [f.get("stderr") for f in found]
        difference = sum(means) / len(means) if means and len(means) == len(found) else None
        # the mean of k independent tasks' differences: its variance is sum(se^2) / k^2
        stderr = (
            math.sqrt(sum(e * e for e in errors)) / len(errors)
            if difference is not None and all(e is not None for e in errors)
            else None
        )
        rows.append(PairedRow(column, start.get(column), end[column], difference, stderr))
    return rows
