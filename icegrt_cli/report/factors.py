"""Which settings differ between the runs of a sweep, and a short name for each run from them.

A run's settings are its stages' Hydra group choices (`ppo.kl=adaptive`) and every key of their
configs (`ppo.kl.kind=adaptive`, `ppo.kl.coef=0.05`). Keys that only say where or how a run was
launched are left out, and paths into the run's own folder read `<run>`, so two runs differ
only where they computed something differently.
"""

from __future__ import annotations

from collections import Counter

from icegrt_cli.report.discover import Run
from icegrt_cli.schema import flatten, value_text
from icegrt_cli.stages.rerun import LAUNCH_KEYS

BASELINE = "baseline"
"""The label of a run whose every factor takes the value most runs share."""


def settings(run: Run) -> dict[str, str]:
    """Every setting of a run as `key -> value text`, group choices first."""
    own_paths = sorted({str(run.path.absolute()), str(run.path.resolve())}, key=len, reverse=True)
    found: dict[str, str] = {}
    for stage in run.stages.values():
        found.update(stage.choices)
    for name, stage in run.stages.items():
        for key, value in flatten(stage.config).items():
            if key == "stage" or key in LAUNCH_KEYS:
                continue
            text = value_text(value)
            for path in own_paths:
                text = text.replace(path, "<run>")
            found[f"{name}.{key}"] = text
    return found


def as_typed(runs: list[Run], per_run: list[dict[str, str]]) -> list[dict[str, str]]:
    """Keys as the user typed them: a sweep of one stage alone (`icegrt ppo -m kl.coef=...`)
    names `kl.coef`, not `ppo.kl.coef`; pipeline runs keep the stage (`ppo.kl.coef`)."""
    lone = {
        name
        for run in runs
        for name, stage in run.stages.items()
        if len(run.stages) == 1 and stage.path == run.path
    }
    if len(lone) != 1 or any(len(run.stages) != 1 or run.stages.keys() != lone for run in runs):
        return per_run
    prefix = f"{next(iter(lone))}."
    return [{key.removeprefix(prefix): value for key, value in found.items()} for found in per_run]


def differing_keys(per_run: list[dict[str, str]]) -> list[str]:
    """Keys with more than one value among the runs that have them, in first-seen order."""
    values: dict[str, set[str]] = {}
    for found in per_run:
        for key, value in found.items():
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1]


def _determines(a: str, b: str, per_run: list[dict[str, str]]) -> bool:
    """True when each value of `a` goes with a single value of `b` across the runs."""
    pairs = {(found.get(a), found.get(b)) for found in per_run}
    return len(pairs) == len({a_value for a_value, _ in pairs})


def factor_groups(per_run: list[dict[str, str]], keys: list[str]) -> dict[str, list[str]]:
    """The keys that tell runs apart, each with the differing keys it determines.

    `kl=adaptive` sets `kl.kind` and `kl.coef` together, and a reward-model preset sets its
    width, depth and heads: naming each run by the deciding key alone keeps labels short.
    Keys with more distinct values are tried as owners first, so a group choice names the keys
    it sets; the result keeps the order of `keys`.
    """

    def distinct(key: str) -> int:
        return len({found.get(key) for found in per_run})

    owners: dict[str, str] = {}
    for key in sorted(keys, key=distinct, reverse=True):
        kept = [owner for owner in owners if owners[owner] == owner]
        owners[key] = next((owner for owner in kept if _determines(owner, key, per_run)), key)
    return {
        owner: [key for key in keys if owners[key] == owner and key != owner]
        for owner in keys
        if owners[owner] == owner
    }


def _strict_mode(values: list[str | None]) -> str | None:
    """The value more runs share than any other; None on a tie."""
    ranked = Counter(values).most_common(2)
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def run_labels(per_run: list[dict[str, str]], keys: list[str]) -> list[str]:
    """A label per run: its values of `keys` that set it apart, `key=value, ...`.

    A key on which most runs agree shows only where a run departs from that majority (a
    one-factor-at-a-time study reads as `baseline`, `ppo.kl=none`, ...); a key without a
    majority (a plain sweep) shows on every run.
    """
    modes = {key: _strict_mode([found.get(key) for found in per_run]) for key in keys}
    labels = []
    for found in per_run:
        shown = [
            f"{key}={found[key]}"
            for key in keys
            if key in found and (modes[key] is None or found[key] != modes[key])
        ]
        labels.append(", ".join(shown) or (BASELINE if len(per_run) > 1 else ""))
    return labels
