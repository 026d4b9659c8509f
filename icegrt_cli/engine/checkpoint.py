"""Complete, atomic checkpoints: weights, optimizers, schedulers, RNG and stage state.

A checkpoint folder is written under a temporary name and renamed when complete, and only a
`step-N` whose own manifest lists files that all exist counts: a run killed while saving or
while pruning never leaves something resume would take for a checkpoint. Old checkpoints are
renamed out of the way before they are deleted, for the same reason.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_file, save_model

from icegrt_cli.errors import ConfigError, writing

PREFIX = "step-"
SETTINGS = "settings"
"""state.json key holding the stage's composed settings, which a resume is compared with."""
MANIFEST = "manifest.json"
"""Written last into a checkpoint: the name and size of every other file in it."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Save and find `checkpoints/step-N/` folders of one run, keeping the last `keep_last`."""

    def __init__(self, folder: Path, keep_last: int = 2, is_main: bool = True) -> None:
        self.folder = folder
        self.keep_last = keep_last
        self.is_main = is_main

    def save(
        self,
        step: int,
        modules: dict[str, torch.nn.Module | dict[str, torch.Tensor]],
        stateful: dict[str, Any],
        state: dict[str, Any],
        rng_ranks: list[dict[str, Any]] | None = None,
    ) -> Path | None:
        """Write weights of `modules` (a module, or a whole state dict gathered from shards),
        `state_dict()` of each `stateful`, JSON `state`, and every process's random state
        (`rng_ranks`, from all processes; None: this process's alone)."""
        if not self.is_main:
            return None
        final = self.folder / f"{PREFIX}{step}"
        tmp = self.folder / f".{PREFIX}{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            with writing(final):
                for name, module in modules.items():
                    _save_weights(module, tmp / f"{name}.safetensors")
                tensors = {name: obj.state_dict() for name, obj in stateful.items()}
                tensors["rng"] = rng_state()
                if rng_ranks is not None:
                    tensors["rng_ranks"] = rng_ranks
                torch.save(tensors, tmp / "state.pt")
                (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
                files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
                (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=2))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists():
            _remove(final)
        tmp.rename(final)
        self._prune()
        return final

    def _prune(self) -> None:
        for old in self.list()[: -self.keep_last] if self.keep_last > 0 else []:
            _remove(old)

    def clear(self) -> int:
        """Remove an earlier run's checkpoints before a fresh start in the same folder.

        Otherwise keep-last-N would keep the old run's higher steps and delete the new ones.
        """
        found = self.list() + self.unmarked()
        if self.is_main:
            for old in found:
                _remove(old)
        return len(found)

    def list(self) -> list[Path]:
        """The complete checkpoints, oldest first."""
        if not self.folder.exists():
            return []
        found = [p for p in self.folder.glob(f"{PREFIX}*") if _step(p) is not None]
        return sorted((p for p in found if not missing(p)), key=_step)

    def partial(self) -> list[Path]:
        """What a killed save or prune left: `.step-N.tmp` / `.step-N.del` folders, and `step-N`
        folders whose manifest names a file that is not there (or not of its size)."""
        if not self.folder.exists():
            return []
        leftovers = [*self.folder.glob(f".{PREFIX}*.tmp"), *self.folder.glob(f".{PREFIX}*.del")]
        torn = [
            p
            for p in self.folder.glob(f"{PREFIX}*")
            if _step(p) is not None and (p / MANIFEST).exists() and missing(p)
        ]
        return sorted(leftovers) + sorted(torn, key=_step)

    def unmarked(self) -> list[Path]:
        """`step-N` folders without a manifest: saved before manifests existed, or cut short by
        an older icegrt. Never taken for a checkpoint, and not deleted either, except by the
        fresh start that clears all checkpoints."""
        if not self.folder.exists():
            return []
        found = [p for p in self.folder.glob(f"{PREFIX}*") if _step(p) is not None]
        return sorted((p for p in found if not (p / MANIFEST).exists()), key=_step)

    def clean_partial(self) -> list[Path]:
        """Delete `partial()` (main process only); return what was there."""
        found = self.partial()
        if self.is_main:
            for path in found:
                shutil.rmtree(path, ignore_errors=True)
        return found

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1] if found else None

    def resolve(self, resume: str | None) -> Path | None:
        """The checkpoint `run.resume` names: None, `latest`, or a folder path."""
        if resume is None:
            return None
        if resume == "latest":
            found = self.latest()
            if found is None:
                raise ConfigError(f"run.resume=latest: no checkpoint under {self.folder}")
            return found
        path = Path(resume)
        lacking = missing(path)
        if lacking:
            raise ConfigError(
                f"run.resume: '{resume}' is not a complete checkpoint (missing {lacking[0]})"
            )
        return path


def missing(path: Path) -> list[str]:
    """What a checkpoint folder lacks: its manifest, or files the manifest lists (by size)."""
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return [MANIFEST]
    return [name for name, size in files.items() if _size(path / name) != size]


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:  # deleted under us (another process cleaning up)
        return None


def _step(path: Path) -> int | None:
    number = path.name[len(PREFIX) :]
    return int(number) if path.name.startswith(PREFIX) and number.isdigit() else None


def _remove(path: Path) -> None:
    """Rename, then delete: a prune killed half-way leaves a `.step-N.del` folder, never a
    `step-N` with some of its files gone."""
    trash = path.with_name(f".{path.name}.del")
    shutil.rmtree(trash, ignore_errors=True)
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def _save_weights(weights: torch.nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    if isinstance(weights, torch.nn.Module):
        save_model(weights, str(path))  # tied weights stored once
    else:  # gathered from shards: fresh tensors, none shares memory
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(path))


def load_checkpoint(
    path: Path,
    modules: dict[str, torch.nn.Module],
    stateful: dict[str, Any],
    rank: int = 0,
    world: int = 1,
) -> dict[str, Any]:
    """Restore weights, optimizer/scheduler states and this process's RNG; return the JSON
    stage state, its `per_process` entry narrowed to this process's own."""
    try:
        for name, module in modules.items():
            load_model(module, str(path / f"{name}.safetensors"))
        tensors = torch.load(path / "state.pt", weights_only=True)
        for name, obj in stateful.items():
            obj.load_state_dict(tensors[name])
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"run.resume: {path / 'state.pt'} holds more than tensors; icegrt loads it only "
            "with torch.load(weights_only=True) and refused it"
        ) from err
    except (RuntimeError, ValueError, KeyError) as err:
        if isinstance(err, torch.OutOfMemoryError):
            raise
        raise ConfigError(
            f"run.resume: checkpoint {path} does not fit this model ({_mismatch(err)}); it was "
            "saved with other model settings: resume with those, or start afresh"
        ) from err
    state = json.loads((path / "state.json").read_text())
    saved_world = len(tensors.get("rng_ranks") or [None])
    if saved_world != world:
        raise ConfigError(
            f"run.resume: {path} was made by {saved_world} process(es), this run has {world}; "
            "each process's random streams (sampling, PPO-ptx batches) resume only on as many "
            "processes: launch with that many, or start afresh"
        )
    set_rng_state(tensors["rng_ranks"][rank] if "rng_ranks" in tensors else tensors["rng"])
    if "per_process" in state:
        state["per_process"] = state["per_process"][rank]
    return state


def checkpoint_settings(path: Path) -> dict[str, Any] | None:
    """The composed stage settings a checkpoint was made with; None for older checkpoints."""
    return json.loads((path / "state.json").read_text()).get(SETTINGS)


def _mismatch(err: BaseException) -> str:
    """The telling line of a load_state_dict error (its first line only names the class)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    telling = [line for line in lines if not line.endswith(":")] or lines or [repr(err)]
    text = telling[0]
    return text if len(text) <= 200 else text[:197] + "..."
