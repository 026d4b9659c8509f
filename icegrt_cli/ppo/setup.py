"""PPO set-up: the prompts that fit, the PPO-ptx supply, optimisers, reward statistics, and
the once-per-run statement of how sampling runs (and the check that it matches scoring)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from icegrt_cli.adapters import FrozenModel, is_adapted, trainable_parameters, with_adapters
from icegrt_cli.config import OptimConfig, separate_critic
from icegrt_cli.data.collate import LMCollator
from icegrt_cli.data.formatting import check_sft_record, encode_prompt, encode_sft
from icegrt_cli.data.limits import length_note, within_limit
from icegrt_cli.data.splits import load_splits
from icegrt_cli.engine.optim import build_optimizer, build_scheduler
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.lm import describe_decoding, isolated_seed, lm_loss_sum
from icegrt_cli.models import load_causal_lm, load_scalar_model
from icegrt_cli.ppo.rollout import generation_config, sampler_scorer_gap
from icegrt_cli.ppo.update import Learner
from icegrt_cli.ppo.value_head import PolicyWithValueHead


def _frozen(model: torch.nn.Module) -> FrozenModel:
    model.eval()
    model.requires_grad_(False)
    return FrozenModel(model)


@dataclass
class FourModels:
    """PPO's models. With LoRA the reference is the actor with its adapters off, and (with
    critic_init=reward_model and peft.share_base) the reward model is the critic with its
    adapters off: one copy of each base in memory. `critic` is None for the critic-free
    advantage estimators: three models."""

    actor: torch.nn.Module
    reference: FrozenModel
    critic: torch.nn.Module | None
    reward_model: FrozenModel

    def trainable(self) -> dict[str, list[int]]:
        """[trainable, total] parameters of actor and critic (when there is one)."""
        learners = {"actor": self.actor, "critic": self.critic}
        return {
            name: list(trainable_parameters(model))
            for name, model in learners.items()
            if model is not None
        }

    def describe(self) -> str:
        a, a_all = trainable_parameters(self.actor)
        if isinstance(self.actor, PolicyWithValueHead):
            critic = "values from a head on the actor (ppo.shared_backbone)"
        elif self.critic is None:
            critic = "no critic (the advantage estimator needs none)"
        else:
            c, c_all = trainable_parameters(self.critic)
            critic = f"critic {c:,} of {c_all:,}"
        shared = [
            name
            for name, frozen in (("reference", self.reference), ("reward model", self.reward_model))
            if frozen.adapters_off
        ]
        note = f"; {' and '.join(shared)} by turning adapters off (no copy)" if shared else ""
        return f"ppo: actor trains {a:,} of {a_all:,} parameters, {critic}{note}"


def load_four_models(
    cfg: DictConfig,
    policy_path: Path | str,
    policy_cfg: DictConfig,
    rm_path: Path | str,
    rm_cfg: DictConfig,
    tokenizer: Any,
    rm_tokenizer: Any,
) -> FourModels:
    """Actor and reference from the policy, the frozen reward model, and the critic, which is
    not loaded at all when advantage.estimator needs none."""
    actor = with_adapters(load_causal_lm(policy_path, policy_cfg, tokenizer), cfg.peft)
    reference = (
        FrozenModel(actor, adapters_off=True)
        if is_adapted(actor)
        else _frozen(load_causal_lm(policy_path, policy_cfg, tokenizer))
    )
    from_rm = cfg.ppo.critic_init == "reward_model"
    critic = (
        with_adapters(
            load_scalar_model(
                rm_path if from_rm else policy_path, rm_cfg if from_rm else policy_cfg, tokenizer
            ),
            cfg.peft,
            scalar=True,
        )
        if separate_critic(cfg)
        else None
    )
    reward_model = (
        FrozenModel(critic, adapters_off=True)
        if critic is not None and from_rm and is_adapted(critic) and cfg.peft.share_base
        else _frozen(load_scalar_model(rm_path, rm_cfg, rm_tokenizer))
    )
    if cfg.ppo.shared_backbone:
        actor = PolicyWithValueHead(actor)
    return FourModels(actor, reference, critic, reward_model)


def learner(model: torch.nn.Module, lr: float, cfg: DictConfig, steps: int) -> Learner:
    """An AdamW learner at a constant `lr`, clipped at ppo.max_grad_norm."""
    optim = OptimConfig(
        lr=lr,
        weight_decay=cfg.ppo.weight_decay,
        scheduler="constant",
        warmup_steps=0,
        warmup_ratio=0.0,
        max_grad_norm=cfg.ppo.max_grad_norm,
    )
    optimizer = build_optimizer(model.parameters(), optim, fused=True)
    scheduler = build_scheduler(optimizer, optim, steps)
    return Learner(model, optimizer, scheduler, cfg.ppo.max_grad_norm)


def reward_stats(rm_path: Path | str, normalize: str) -> tuple[float | None, float | None]:
    """The reward model's calibration statistics, required (loudly) by reward.normalize=stats."""
    if normalize != "stats":
        return None, None
    path = Path(rm_path) / "reward_stats.json"
    if not path.exists():
        raise ConfigError(
            f"reward.normalize=stats: {path} not found; train the reward model with "
            "icegrt train-rm, or choose reward=running_norm"
        )
    stats = json.loads(path.read_text())
    return float(stats["mean"]), float(stats["std"])


def check_critic_tokenizer(cfg: DictConfig, tokenizer: Any, rm_tokenizer: Any) -> None:
    if (
        separate_critic(cfg)
        and cfg.ppo.critic_init == "reward_model"
        and tokenizer.get_vocab() != rm_tokenizer.get_vocab()
    ):
        raise ConfigError(
            "ppo.critic_init=reward_model: the reward model's tokenizer differs from "
            "the policy's, and the critic reads policy tokens; use "
            "ppo.critic_init=policy"
        )


def fitting_prompts(
    rt: Any,
    tokenizer: Any,
    records: list[dict[str, Any]],
    limit: int,
    what: str,
    why: str,
) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """The records whose templated prompt fits `limit` tokens, and their token ids; the rest
    are counted and said."""
    rows = [encode_prompt(tokenizer, r["prompt"]) for r in records]
    keep = within_limit([len(row) for row in rows], limit)
    if note := length_note(what, len(rows) - len(keep), len(rows), limit, why):
        rt.print(f"[yellow]ppo: {note}[/yellow]")
    return [records[i] for i in keep], [rows[i] for i in keep]


def ptx_source(rt: Any, cfg: DictConfig, tokenizer: Any, generator: torch.Generator, seed: int):
    """A supply of LM-loss batches for PPO-ptx drawn with `generator` (checkpointed, so a
    resumed run draws the same batches), or None when the coefficient is 0."""
    if cfg.ppo.ptx_coef <= 0:
        return None
    records, _ = load_splits(cfg.ptx_data, "sft", check_sft_record, seed)
    every = [encode_sft(tokenizer, r) for r in records]
    encoded = [
        every[i] for i in within_limit([len(e.input_ids) for e in every], cfg.ptx_data.max_length)
    ]
    if note := length_note(
        "PPO-ptx examples",
        len(every) - len(encoded),
        len(every),
        cfg.ptx_data.max_length,
        "ptx_data.max_length",
    ):
        rt.print(f"[yellow]ppo: {note}[/yellow]")
    if not encoded:
        raise DataError("ptx_data: no example fits ptx_data.max_length")
    collate = LMCollator(tokenizer.pad_token_id)
    size = cfg.ppo.ptx_batch_size

    def next_loss(model: torch.nn.Module) -> torch.Tensor:
        rows = torch.randint(len(encoded), (size,), generator=generator).tolist()
        batch = collate([encoded[i] for i in rows])
        device = next(model.parameters()).device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return lm_loss_sum(model, batch) / batch["weight"].clamp(min=1)

    return next_loss


GAP_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 1e-1}
"""Largest sampler / scorer log-prob difference that is rounding (a KV-cached pass against a
full forward pass) at each precision; above it the samples come from another distribution than
the one scored. 16-bit activations keep 3 (bf16) or 4 (fp16) significant digits of each logit:
the demo's policy under bf16 differs by 3.5e-02 there, where a top-k cut differs by whole nats."""


def announce_sampling(
    rt: Any, actor: torch.nn.Module, tokenizer: Any, prompt_rows: list[list[int]], cfg: DictConfig
) -> float:
    """Say once what generation runs with, and check on a few prompts (from a fixed seed, the
    training streams untouched) that the sampler draws from the distribution PPO scores."""
    rt.print(describe_decoding(actor, generation_config(cfg.rollout, tokenizer)))
    with isolated_seed(cfg.run.seed, rt.device):
        gap = sampler_scorer_gap(actor, tokenizer, prompt_rows[:4], cfg.rollout)
    truncation = cfg.rollout.truncated_penalty if cfg.rollout.truncated == "penalty" else 0.0
    rt.print(
        f"sampler vs scorer: max |log-prob difference| {gap:.1e} on 4 prompts; truncated "
        f"responses scored as they are, minus {truncation:g}"
    )
    if gap > GAP_TOLERANCE[cfg.run.precision]:
        cut = (
            " (expected with rollout.top_k / rollout.top_p)"
            if (cfg.rollout.top_k or cfg.rollout.top_p < 1)
            else ""
        )
        rt.print(
            f"[yellow]warning: samples are not drawn from the scored distribution{cut}: "
            "PPO's ratios and KL are biased[/yellow]"
        )
    return gap
