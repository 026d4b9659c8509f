"""AdamW and the warmup + decay schedule shared by every stage."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from icegrt_cli.config import OptimConfig
from icegrt_cli.errors import ConfigError

SCHEDULES = ("cosine", "linear", "constant")


def lr_multiplier(step: int, total: int, warmup: int, kind: str, min_ratio: float) -> float:
    """Share of the peak lr at optimizer step `step` (0-based): linear warmup, then decay."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(cfg: OptimConfig, total: int) -> int:
    return cfg.warmup_steps if cfg.warmup_steps > 0 else int(cfg.warmup_ratio * total)


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: OptimConfig, fused: bool = False
) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and norms (1-d parameters), as is standard.

    `fused`: one kernel per step over all tensors (CPU and GPU), not a loop of small ops per
    tensor; PPO takes it (eight optimizer steps per rollout in its default shape: 3 ms
    instead of 12-16 ms each for a 6.6M-parameter model on 2 CPU cores)."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if len(cfg.betas) != 2:
        raise ConfigError(f"optim.betas: expected two values, got {list(cfg.betas)}")
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total: int) -> LambdaLR:
    warmup = warmup_steps(cfg, total)
    return LambdaLR(
        optimizer,
        lambda step: lr_multiplier(step, total, warmup, cfg.scheduler, cfg.min_lr_ratio),
    )
