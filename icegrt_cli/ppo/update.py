"""The PPO update over one rollout batch: clipped policy loss for the actor, clipped value loss
for the critic, epochs x shuffled minibatches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from icegrt_cli.config import KLConfig, PPOAlgoConfig
from icegrt_cli.ppo.core import (
    check_finite,
    entropy_from_logits,
    explained_variance,
    kl_penalty,
    logprobs_from_logits,
    masked_mean,
    policy_loss,
    value_loss,
)
from icegrt_cli.ppo.experience import Experience
from icegrt_cli.ppo.rollout import Sequences, response_logits, token_values


@dataclass
class Learner:
    """A trainable model with its optimizer and schedule."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    max_grad_norm: float


PtxLoss = Callable[[torch.nn.Module], torch.Tensor]
"""Returns the mean LM loss of the actor on the next PPO-ptx batch."""


@dataclass
class FirstPass:
    """The update's first forward passes over the whole rollout batch, run before the
    experience is built. With one minibatch per epoch the first minibatch is the batch, read by
    the weights that sampled it, so these passes give the old log-probs and the values too:
    two fewer forwards per step, and the first epoch's ratio is exactly 1."""

    logits: torch.Tensor | None
    """(B, T, V) actor response logits, with graph; None when the actor does not train."""
    values: torch.Tensor
    """(B, T) critic values, with graph."""


def first_pass(actor: Learner, critic: Learner, seq: Sequences, update_actor: bool) -> FirstPass:
    """Forward actor (when it trains) and critic over the whole batch, keeping their graphs."""
    logits = response_logits(actor.model, seq) if update_actor else None
    return FirstPass(logits, token_values(critic.model, seq))


def _step(learner: Learner, loss: torch.Tensor, accelerator: Any) -> None:
    accelerator.backward(loss)
    if learner.max_grad_norm > 0:
        accelerator.clip_grad_norm_(learner.model.parameters(), learner.max_grad_norm)
    learner.optimizer.step()
    learner.scheduler.step()
    learner.optimizer.zero_grad(set_to_none=True)


def minibatches(
    n: int, size: int, epochs: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Row indices: every row once per epoch, in a fresh seeded order each epoch."""
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, size):
            yield order[start : start + size]


def ppo_update(
    exp: Experience,
    actor: Learner,
    critic: Learner,
    *,
    ppo: PPOAlgoConfig,
    kl_cfg: KLConfig,
    temperature: float,
    update_actor: bool,
    accelerator: Any,
    generator: torch.Generator,
    step: int,
    ptx_loss: PtxLoss | None = None,
    first: FirstPass | None = None,
) -> dict[str, float]:
    """Run `ppo.epochs` passes of minibatch updates; return each figure averaged over the
    response tokens of all minibatches, so the figures do not depend on how the batch was
    split (one minibatch of 8 and eight of 1 report the same loss at lr = 0). `first`: the
    first minibatch's forward passes, already run (one minibatch per epoch only)."""
    sums: dict[str, float] = {}
    tokens = 0.0
    n = exp.seq.response_ids.shape[0]
    if first is not None and ppo.minibatch_size < n:
        raise ValueError("a first pass stands for the whole batch: one minibatch per epoch")
    for index, rows in enumerate(minibatches(n, ppo.minibatch_size, ppo.epochs, generator)):
        mb = exp.select(rows)
        given = first if index == 0 else None
        width = mb.seq.response_ids.shape[1]
        figures: dict[str, float] = {}
        if update_actor:
            logits = given.logits[rows, :width] if given and given.logits is not None else None
            figures.update(
                _actor_step(
                    mb, actor, ppo, kl_cfg, temperature, accelerator, step, ptx_loss, logits
                )
            )
        values = given.values[rows, :width] if given else None
        figures.update(_critic_step(mb, critic, ppo, accelerator, step, values))
        weight = mb.seq.response_mask.sum().item()
        for key, value in figures.items():
            sums[key] = sums.get(key, 0.0) + weight * value
        tokens += weight
    return {k: v / max(tokens, 1.0) for k, v in sums.items()}


def _actor_step(
    mb: Experience,
    actor: Learner,
    ppo: PPOAlgoConfig,
    kl_cfg: KLConfig,
    temperature: float,
    accelerator: Any,
    step: int,
    ptx_loss: PtxLoss | None,
    logits: torch.Tensor | None = None,
) -> dict[str, float]:
    mask = mb.seq.response_mask
    if logits is None:
        logits = response_logits(actor.model, mb.seq)
    logp = logprobs_from_logits(logits, mb.seq.response_ids, temperature)
    # Without a bonus the entropy is only reported: no graph over (B, T, V) for it.
    with torch.set_grad_enabled(torch.is_grad_enabled() and ppo.entropy_coef != 0):
        entropy = masked_mean(entropy_from_logits(logits, temperature), mask)
    out = policy_loss(logp, mb.old_logprobs, mb.advantages, mask, ppo.clip_eps)
    loss = out.loss - ppo.entropy_coef * entropy
    figures = {}
    if mb.loss_beta > 0:
        kl_loss = masked_mean(kl_penalty(logp, mb.ref_logprobs, kl_cfg.estimator), mask)
        loss = loss + mb.loss_beta * kl_loss
        figures["ppo/kl_loss"] = kl_loss.item()
    if ptx_loss is not None and ppo.ptx_coef > 0:
        lm = ptx_loss(actor.model)
        loss = loss + ppo.ptx_coef * lm
        figures["ppo/ptx_loss"] = lm.item()
    check_finite("policy loss", loss, step)
    _step(actor, loss, accelerator)
    figures.update(
        {
            "ppo/policy_loss": out.loss.item(),
            "ppo/clipfrac": out.clipfrac.item(),
            "ppo/approx_kl": out.approx_kl.item(),
            "ppo/ratio": out.ratio_mean.item(),
            "ppo/entropy": entropy.item(),
        }
    )
    return figures


def _critic_step(
    mb: Experience,
    critic: Learner,
    ppo: PPOAlgoConfig,
    accelerator: Any,
    step: int,
    values: torch.Tensor | None = None,
) -> dict[str, float]:
    mask = mb.seq.response_mask
    if values is None:
        values = token_values(critic.model, mb.seq)
    out = value_loss(values, mb.values, mb.returns, mask, ppo.value_clip_eps)
    check_finite("value loss", out.loss, step)
    # No value-loss coefficient: the critic has its own Adam, which is invariant to the scale
    # of its loss, so a coefficient could only ever be a no-op.
    _step(critic, out.loss, accelerator)
    return {
        "ppo/value_loss": out.loss.item(),
        "ppo/value_clipfrac": out.clipfrac.item(),
        "ppo/explained_variance": explained_variance(values.detach(), mb.returns, mask).item(),
    }
