"""LoRA adapters through PEFT: adding them, turning them off, and saving plain folders.

With `peft=lora` a stage trains low-rank adapters on a frozen base. Everything a later stage or
a user loads is still a plain transformers folder: the adapter is merged into the weights on
save, and kept beside them (`adapter/`) for `icegrt export --merge` and for inspection. PPO uses
"adapters off" as its frozen reference, so the policy's weights are held once; because a LoRA
SFT run is merged before PPO starts, "adapters off" is the SFT model, not the untouched base
(the pitfall of TRL #1340).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from icegrt_cli.atomic import remove_folder, writing_folder
from icegrt_cli.config import PeftConfig
from icegrt_cli.errors import ConfigError

ADAPTER_DIR = "adapter"
SCALAR_HEAD = "score"
"""The one-output head of transformers' `...ForSequenceClassification` decoders: it is new (or
the reward model's own), so it always trains in full beside the adapters."""


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError("peft=lora needs the peft package: pip install peft") from None
    return peft


def with_adapters(model: torch.nn.Module, cfg: PeftConfig, scalar: bool = False) -> torch.nn.Module:
    """`model` with fresh LoRA adapters (base frozen), or `model` itself when `cfg.kind` is none.

    `scalar`: a reward model or critic, whose head trains in full (PEFT's `modules_to_save`
    keeps the original head too, so turning the adapters off gives back the original model).
    """
    if cfg.kind == "none":
        return model
    peft = _peft()
    targets = list(cfg.target_modules)
    lora = peft.LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        modules_to_save=[SCALAR_HEAD] if scalar else None,
        task_type=peft.TaskType.SEQ_CLS if scalar else peft.TaskType.CAUSAL_LM,
    )
    if any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules()):
        model.enable_input_require_grads()  # frozen embeddings: recomputed blocks need a grad
    try:
        return peft.get_peft_model(model, lora)
    except ValueError as err:  # no module matched target_modules
        raise ConfigError(f"peft.target_modules: {err}".splitlines()[0]) from None


def is_adapted(model: torch.nn.Module) -> bool:
    return hasattr(getattr(model, "module", model), "disable_adapter")


def policy_model(model: torch.nn.Module) -> torch.nn.Module:
    """The causal LM, with its adapters if any, inside DDP (`.module`) and the value-head
    wrapper of ppo.shared_backbone: what samples and what is saved."""
    model = getattr(model, "module", model)
    return model.policy if getattr(model, "wraps_policy", False) else model


def transformers_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside DDP, value-head and PEFT wrappers; its LoRA layers stay in
    place, so calling its parts still applies the adapters."""
    model = policy_model(model)
    return model.get_base_model() if is_adapted(model) else model


@dataclass
class FrozenModel:
    """A frozen model to score with: a model of its own, or an adapted model seen with its
    adapters off (no second copy of its weights)."""

    model: torch.nn.Module
    adapters_off: bool = False

    @contextmanager
    def use(self) -> Iterator[torch.nn.Module]:
        inner = getattr(self.model, "module", self.model)
        with inner.disable_adapter() if self.adapters_off else nullcontext():
            yield inner


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def merged(model: torch.nn.Module, adapter_dir: Path) -> torch.nn.Module:
    """The plain model with its adapters merged in, the adapter itself saved to `adapter_dir`
    first (atomically); a model without adapters comes back as it is, and an adapter an
    earlier run left in `adapter_dir` goes: it does not belong to this model."""
    if not is_adapted(model):
        remove_folder(adapter_dir)
        return model
    for settings in model.peft_config.values():  # so the base is found from any folder
        base = settings.base_model_name_or_path
        if base and Path(base).exists():
            settings.base_model_name_or_path = str(Path(base).resolve())
    with writing_folder(adapter_dir) as folder:
        model.save_pretrained(folder)
    return model.merge_and_unload()


def adapter_folder(path: Path) -> Path:
    """The adapter folder `path` names: the folder itself, a stage folder holding `adapter/`,
    or a run folder (its PPO adapter, else its SFT one)."""
    for candidate in (
        path,
        path / ADAPTER_DIR,
        path / "ppo" / ADAPTER_DIR,
        path / "sft" / ADAPTER_DIR,
    ):
        if (candidate / "adapter_config.json").exists():
            return candidate
    raise ConfigError(
        f"{path}: no LoRA adapter here (looked for adapter_config.json in it, in adapter/, "
        "ppo/adapter/ and sft/adapter/)"
    )


def merge_adapter(path: Path, out: Path, base: str | None = None) -> Path:
    """Merge the adapter at `path` into its base (the folder it was trained on, or `base`) and
    write a plain transformers folder with the base's tokenizer to `out`."""
    from transformers import AutoTokenizer

    peft = _peft()
    folder = adapter_folder(path)
    settings = json.loads((folder / "adapter_config.json").read_text())
    base = base or settings.get("base_model_name_or_path")
    if not base or not Path(base).exists():
        raise ConfigError(
            f"{folder}: its base model '{base}' is not a folder here; give it with --base DIR"
        )
    scalar = settings.get("task_type") == "SEQ_CLS"
    loader = AutoModelForSequenceClassification if scalar else AutoModelForCausalLM
    extra = {"num_labels": 1} if scalar else {}
    model = peft.PeftModel.from_pretrained(loader.from_pretrained(base, **extra), folder)
    tokenizer = AutoTokenizer.from_pretrained(base)
    merged = model.merge_and_unload()
    with writing_folder(out) as target:
        merged.save_pretrained(target)
        tokenizer.save_pretrained(target)
    return out
