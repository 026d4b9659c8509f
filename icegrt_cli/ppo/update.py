"""The PPO update over one rollout batch: clipped policy loss for the actor, clipped value loss
for the critic (when there is one), epochs x shuffled minibatches."""

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
    token_loss,
    value_loss,
)
from icegrt_cli.ppo.experience import Experience
from icegrt_cli.ppo.rollout import Sequences, logits_and_values, response_logits, token_values


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
    values: torch.Tensor | None
    """(B, T) values of the critic or the actor's value head, with graph; None without."""


def first_pass(
    actor: Learner,
    critic: Learner | None,
    seq: Sequences,
    update_actor: bool,
    shared: bool = False,
) -> FirstPass:
    """Forward actor (when it trains) and critic (if any) over the whole batch, keeping their
    graphs; `shared`: one forward of the actor gives both (ppo.shared_backbone)."""
    if shared:
        return FirstPass(*logits_and_values(actor.model, seq))
    logits = response_logits(actor.model, seq) if update_actor else None
    values = None if critic is None else token_values(critic.model, seq)
    return FirstPass(logits, values)


def _step(learner: Learner, loss: torch.Tensor, accelerator: Any) -> None:
    accelerator.backward(loss)
    if learner.max_grad_norm > 0:
        accelerator.clip_grad_norm_(learner.model.parameters(), learner.max_grad_norm)
    learner.optimizer.step()
    # The step runs inside one autocast, which keeps the bf16 copy of each trainable weight it
    # cast; those copies are stale now, and the next epoch must read the weights just written.
    torch.clear_autocast_cache()
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
    critic: Learner | None,
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
    value_coef: float | None = None,
) -> dict[str, float]:
    """Run `ppo.epochs` passes of minibatch updates; return each figure averaged over the
    response tokens of all minibatches and all processes, so the figures do not depend on how
    the batch was split (one minibatch of 8 and eight of 1 report the same loss at lr = 0; two
    processes of 4 rows report what one process of 8 does). `kl_cfg` is resolved
    (`config.resolve_kl`): its estimator is the loss's when KL is in it. Without a `critic`
    (the critic-free estimators) only the actor steps. Rows are shuffled across groups:
    advantages are final before the update, so a split group changes nothing. `first`: the
    first minibatch's forward passes, already run (one minibatch per epoch only). `value_coef`:
    the actor carries the value head (ppo.shared_backbone), its loss weighted so in the actor's
    one loss; None: values come from `critic`, if any."""
    sums: dict[str, float] = {}
    tokens = 0.0
    n = exp.seq.response_ids.shape[0]
    if first is not None and ppo.minibatch_size < n:
        raise ValueError("a first pass stands for the whole batch: one minibatch per epoch")
    for index, rows in enumerate(minibatches(n, ppo.minibatch_size, ppo.epochs, generator)):
        mb = exp.select(rows)
        share = process_share(mb.seq.response_mask.sum(), accelerator)
        # A loss summed over a constant horizon (dr_grpo) is a mean over rows, not tokens.
        actor_share = (
            share
            if mb.loss_horizon is None
            else process_share(mb.seq.response_mask.new_tensor(len(mb.seq)), accelerator)
        )
        given = first if index == 0 else None
        width = mb.seq.response_ids.shape[1]
        figures: dict[str, float] = {}
        values = given.values[rows, :width] if given and given.values is not None else None
        if update_actor:
            logits = given.logits[rows, :width] if given and given.logits is not None else None
            figures.update(
                _actor_step(
                    mb,
                    actor,
                    ppo,
                    kl_cfg,
                    temperature,
                    accelerator,
                    step,
                    ptx_loss,
                    actor_share,
                    logits,
                    value_coef,
                    values,
                )
            )
        if critic is not None:
            figures.update(_critic_step(mb, critic, ppo, accelerator, step, share, values))
        weight = mb.seq.response_mask.sum().item()
        for key, value in figures.items():
            sums[key] = sums.get(key, 0.0) + weight * value
        tokens += weight
    return _across_processes(sums, tokens, accelerator)


def process_share(units: torch.Tensor, accelerator: Any) -> float:
    """world x this process's units / all processes' units in this minibatch, where a unit is
    what the loss averages over: response tokens (a token mean), or rows (dr_grpo's sum over a
    constant horizon per row).

    A loss averaged over this process's units, times its share, is the process's part of the
    loss averaged over the global minibatch's units once DDP averages gradients over the
    processes: processes with more units weigh more, exactly as one process holding the
    whole minibatch would weigh them. 1 on a single process.
    """
    if accelerator.num_processes == 1:
        return 1.0
    local = units.float().reshape(1)
    total = accelerator.reduce(local.clone(), reduction="sum")
    return (local * accelerator.num_processes / total.clamp(min=1)).item()


def _across_processes(sums: dict[str, float], tokens: float, accelerator: Any) -> dict[str, float]:
    """Token-weighted sums of every process, divided by all processes' tokens."""
    keys = sorted(sums)
    if accelerator.num_processes > 1:
        device = accelerator.device
        packed = torch.tensor(
            [sums[k] for k in keys] + [tokens], device=device, dtype=torch.float64
        )
        packed = accelerator.reduce(packed, reduction="sum").tolist()
        sums, tokens = dict(zip(keys, packed[:-1], strict=True)), packed[-1]
    return {k: sums[k] / max(tokens, 1.0) for k in keys}


def _actor_step(
    mb: Experience,
    actor: Learner,
    ppo: PPOAlgoConfig,
    kl_cfg: KLConfig,
    temperature: float,
    accelerator: Any,
    step: int,
    ptx_loss: PtxLoss | None,
    share: float = 1.0,
    logits: torch.Tensor | None = None,
    value_coef: float | None = None,
    values: torch.Tensor | None = None,
) -> dict[str, float]:
    mask = mb.seq.response_mask
    if logits is None and value_coef is not None:
        logits, values = logits_and_values(actor.model, mb.seq)
    elif logits is None:
        logits = response_logits(actor.model, mb.seq)
    logp = logprobs_from_logits(logits, mb.seq.response_ids, temperature)
    # Without a bonus the entropy is only reported: no graph over (B, T, V) for it.
    with torch.set_grad_enabled(torch.is_grad_enabled() and ppo.entropy_coef != 0):
        entropy = masked_mean(entropy_from_logits(logits, temperature), mask)
    out = policy_loss(
        logp, mb.old_logprobs, mb.advantages, mask, ppo.clip_eps, horizon=mb.loss_horizon
    )
    loss = out.loss - ppo.entropy_coef * entropy
    figures = {}
    if mb.loss_beta > 0:
        kl_tokens = kl_penalty(logp, mb.ref_logprobs, kl_cfg.estimator)
        kl_loss = token_loss(kl_tokens, mask, mb.loss_horizon)
        loss = loss + mb.loss_beta * kl_loss
        figures["ppo/kl_loss"] = kl_loss.item()
    if value_coef is not None:  # the value head on the actor's backbone: one loss
        fit = value_loss(values, mb.values, mb.returns, mask, ppo.value_clip_eps)
        loss = loss + value_coef * fit.loss
        figures.update(_value_figures(fit, values, mb))
    loss = loss * share  # the token-averaged terms, averaged over the global minibatch
    if ptx_loss is not None and ppo.ptx_coef > 0:
        lm = ptx_loss(actor.model)  # equal batches on every process: a plain mean
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
    share: float = 1.0,
    values: torch.Tensor | None = None,
) -> dict[str, float]:
    mask = mb.seq.response_mask
    if values is None:
        values = token_values(critic.model, mb.seq)
    out = value_loss(values, mb.values, mb.returns, mask, ppo.value_clip_eps)
    check_finite("value loss", out.loss, step)
    # No value-loss coefficient: the critic has its own Adam, which is invariant to the scale
    # of its loss, so a coefficient could only ever be a no-op.
    _step(critic, out.loss * share, accelerator)
    return _value_figures(out, values, mb)


def _value_figures(out: Any, values: torch.Tensor, mb: Experience) -> dict[str, float]:
    return {
        "ppo/value_loss": out.loss.item(),
        "ppo/value_clipfrac": out.clipfrac.item(),
        "ppo/explained_variance": explained_variance(
            values.detach(), mb.returns, mb.seq.response_mask
        ).item(),
    }
