"""`engine=ddp|fsdp|zero2|zero3`: the Accelerate plugin each engine needs, what each refuses,
and the two things a sharded model needs beyond training: whole parameters for `generate`,
and a whole state dict for a plain `save_pretrained` folder.

Accelerate (1.16) turns FSDP and DeepSpeed on only for GPUs and other accelerators: on a CPU
its state stays MULTI_CPU and a given FSDP plugin is ignored (DDP would run instead), so both
are refused there rather than silently replaced.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from icegrt_cli.config import EngineConfig
from icegrt_cli.errors import ConfigError

SHARDED = ("fsdp", "zero2", "zero3")
"""Engines whose optimizer state is split over the processes."""
SHARDED_PARAMETERS = ("fsdp", "zero3")
"""Engines whose parameters are split too: whole weights are gathered to save or generate."""


def is_first_process() -> bool:
    """Rank 0 of a launched run (or the only process), known before any process group exists:
    the one that writes what every process would otherwise write at once."""
    return os.environ.get("RANK", "0") == "0"


def has_accelerator() -> bool:
    """A GPU (or other torch accelerator) this process can use."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def engine_plugins(
    engine: EngineConfig,
    on_cpu: bool,
    *,
    trainable_models: int = 1,
    grad_accum: int = 1,
    max_grad_norm: float = 0.0,
    peft: str = "none",
) -> dict[str, Any]:
    """Keyword arguments for `Accelerator` that select `engine.kind`; {} for ddp.

    `trainable_models`: PPO trains two (actor and critic). Accelerate drives DeepSpeed through
    one engine per Accelerator for `backward`, so two trained models are refused under zero2 /
    zero3; FSDP takes any number (each prepared with its own optimizer).
    """
    kind = engine.kind
    launched = [
        name
        for name, flag in (
            ("fsdp", "ACCELERATE_USE_FSDP"),
            ("zero2|zero3", "ACCELERATE_USE_DEEPSPEED"),
        )
        if os.environ.get(flag, "false").lower() == "true"
    ]
    if launched and kind not in launched[0].split("|"):
        raise ConfigError(
            f"engine.kind={kind}, but accelerate launch was told {launched[0]}: choose the engine "
            f"with engine={launched[0].split('|')[0]} (the launcher only starts the processes)"
        )
    if kind == "ddp":
        return {}
    check_engine_settings(kind, trainable_models=trainable_models, grad_accum=grad_accum, peft=peft)
    check_engine_machine(kind, on_cpu)
    if kind == "fsdp":
        return {"fsdp_plugin": _fsdp_plugin(engine)}
    return {"deepspeed_plugin": _deepspeed_plugin(engine, max_grad_norm)}


def check_engine_machine(kind: str, on_cpu: bool) -> None:
    """Refuse, in one line, an engine this machine cannot run: a sharded engine on a CPU, or
    DeepSpeed not installed."""
    if kind == "ddp":
        return
    if on_cpu:
        raise ConfigError(
            f"engine.kind={kind}: Accelerate runs FSDP and DeepSpeed on GPUs only (on a CPU it "
            "would silently fall back to DDP); use engine=ddp here"
        )
    if kind != "fsdp" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"engine.kind={kind}: DeepSpeed is not installed; pip install 'icegrt-cli[deepspeed]' "
            "(or pip install deepspeed), or use engine=fsdp"
        )


def check_engine_settings(
    kind: str, *, trainable_models: int = 1, grad_accum: int = 1, peft: str = "none"
) -> None:
    """Refuse, in one line, what `kind` cannot run whatever the machine: the stage and the
    memory planner (`icegrt plan`) ask the same question."""
    if peft != "none" and kind in SHARDED_PARAMETERS:
        raise ConfigError(
            f"engine.kind={kind} with peft={peft}: adapters are merged into whole weights on "
            "save, which sharded parameters do not offer; LoRA fits each process: use engine=ddp"
        )
    if kind not in ("zero2", "zero3"):
        return
    if grad_accum > 1:
        raise ConfigError(
            f"train.grad_accum={grad_accum} with engine.kind={kind}: DeepSpeed steps its "
            "optimizer at every backward here; raise train.batch_size instead"
        )
    if trainable_models > 1:
        raise ConfigError(
            f"engine.kind={kind}: this stage trains {trainable_models} models (PPO: actor and "
            "critic), and Accelerate's DeepSpeed integration steps one model per process; use "
            "engine=fsdp for PPO (sft and train-rm run under zero2 / zero3)"
        )


def _fsdp_plugin(engine: EngineConfig) -> Any:
    """FSDP2: every decoder layer (the model's `_no_split_modules`) its own shard group; full
    state dicts on save, so checkpoints and model folders are plain."""
    from accelerate import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        state_dict_type="FULL_STATE_DICT",
        reshard_after_forward=True,
        cpu_offload=engine.offload,
    )


def _deepspeed_plugin(engine: EngineConfig, max_grad_norm: float) -> Any:
    """ZeRO stage 2 or 3; with offload the optimizer state (zero3: parameters too) lives on
    the CPU. One backward per optimizer step; clipping is DeepSpeed's own, from the stage."""
    from accelerate import DeepSpeedPlugin

    stage = 3 if engine.kind == "zero3" else 2
    return DeepSpeedPlugin(
        zero_stage=stage,
        gradient_accumulation_steps=1,
        gradient_clipping=max_grad_norm if max_grad_norm > 0 else None,
        offload_optimizer_device="cpu" if engine.offload else "none",
        offload_param_device="cpu" if engine.offload and stage == 3 else "none",
        zero3_init_flag=False,
        zero3_save_16bit_model=stage == 3,
    )


@contextmanager
def whole_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Every parameter of `model` whole on this process for the block: what `generate` needs.

    FSDP2 gathers each layer in its own forward hook, but a call that enters below the root
    (PEFT's inner model, `generate` on the unwrapped model) would find the root's parameters
    (embeddings, head) still sharded, so the root is unsharded for the block. ZeRO-3
    parameters are gathered as a whole (read-only). DDP, ZeRO-2 and single processes hold
    whole parameters already.
    """
    fsdp_module = _fsdp2_class()
    if fsdp_module is not None and isinstance(model, fsdp_module):
        model.unshard()
        try:
            yield
        finally:
            model.reshard()
        return
    zero3 = [p for p in model.parameters() if hasattr(p, "ds_id")]
    if zero3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(zero3, modifier_rank=None):
            yield
        return
    yield


def _fsdp2_class() -> type | None:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6
        return None
    return FSDPModule


def full_state_dict(accelerator: Any, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole model's state dict on the main process (None elsewhere), gathered from the
    shards under FSDP / ZeRO-3. Every process must call it: the gather is collective."""
    state = accelerator.get_state_dict(model, unwrap=True)
    return state if accelerator.is_main_process else None
