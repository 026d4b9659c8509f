"""Complete, atomic checkpoints: weights, optimizers, schedulers, RNG and stage state.

A checkpoint folder is written under a temporary name and renamed when complete, so a run
killed while saving never leaves a half-written `step-N` behind for resume to trip on.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from icegrt_cli.errors import ConfigError

PREFIX = "step-"
SETTINGS = "settings"
"""state.json key holding the stage's composed settings, which a resume is compared with."""


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
        modules: dict[str, torch.nn.Module],
        stateful: dict[str, Any],
        state: dict[str, Any],
    ) -> Path | None:
        """Write weights of `modules`, `state_dict()` of each `stateful`, and JSON `state`."""
        if not self.is_main:
            return None
        final = self.folder / f"{PREFIX}{step}"
        tmp = self.folder / f".{PREFIX}{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, module in modules.items():
            save_model(module, str(tmp / f"{name}.safetensors"))
        tensors = {name: obj.state_dict() for name, obj in stateful.items()}
        tensors["rng"] = rng_state()
        torch.save(tensors, tmp / "state.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self._prune()
        return final

    def _prune(self) -> None:
        for old in self.list()[: -self.keep_last] if self.keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)

    def clear(self) -> int:
        """Remove an earlier run's checkpoints before a fresh start in the same folder.

        Otherwise keep-last-N would keep the old run's higher steps and delete the new ones.
        """
        found = self.list()
        if self.is_main:
            for old in found:
                shutil.rmtree(old, ignore_errors=True)
        return len(found)

    def list(self) -> list[Path]:
        if not self.folder.exists():
            return []
        found = [p for p in self.folder.glob(f"{PREFIX}*") if (p / "state.json").exists()]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))

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
        if not (path / "state.json").exists():
            raise ConfigError(f"run.resume: '{resume}' is not a checkpoint folder (no state.json)")
        return path


def load_checkpoint(
    path: Path, modules: dict[str, torch.nn.Module], stateful: dict[str, Any]
) -> dict[str, Any]:
    """Restore weights, optimizer/scheduler states and RNG; return the JSON stage state."""
    for name, module in modules.items():
        load_model(module, str(path / f"{name}.safetensors"))
    tensors = torch.load(path / "state.pt", weights_only=True)
    for name, obj in stateful.items():
        obj.load_state_dict(tensors[name])
    set_rng_state(tensors["rng"])
    return json.loads((path / "state.json").read_text())


def checkpoint_settings(path: Path) -> dict[str, Any] | None:
    """The composed stage settings a checkpoint was made with; None for older checkpoints."""
    return json.loads((path / "state.json").read_text()).get(SETTINGS)
