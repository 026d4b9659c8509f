"""From a scored rollout to the tensors PPO trains on: shaped rewards, advantages, returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from icegrt_cli.config import KLConfig, PPOAlgoConfig
from icegrt_cli.ppo.core import (
    gae,
    kl_penalty,
    masked_mean,
    masked_whiten,
    shape_token_rewards,
)
from icegrt_cli.ppo.rollout import Sequences


@dataclass
class Experience:
    """One rollout batch ready for the PPO update. All (B, T) unless noted; zero where masked."""

    seq: Sequences
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    kl: torch.Tensor
    """Per-token estimator of log pi_old - log pi_ref (the one optimised and logged)."""
    rewards: torch.Tensor
    advantages: torch.Tensor
    """Whitened over the batch's valid tokens when advantage normalisation is on."""
    returns: torch.Tensor
    scores: torch.Tensor
    """(B,) shaped sequence scores placed at each response's last token."""
    loss_beta: float = 0.0
    """KL coefficient of the policy loss: beta with kl.in_reward=false, else 0 (the one place
    where KL's placement is decided)."""

    def select(self, rows: torch.Tensor) -> Experience:
        """These rows, trimmed like `Sequences.select` to their own longest response."""
        seq = self.seq.select(rows)
        width = seq.response_ids.shape[1]
        return Experience(
            seq,
            *(
                t[rows, :width]
                for t in (
                    self.old_logprobs,
                    self.ref_logprobs,
                    self.values,
                    self.kl,
                    self.rewards,
                    self.advantages,
                    self.returns,
                )
            ),
            self.scores[rows],
            loss_beta=self.loss_beta,
        )


def build_experience(
    seq: Sequences,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    values: torch.Tensor,
    scores: torch.Tensor,
    beta: float,
    kl_cfg: KLConfig,
    ppo: PPOAlgoConfig,
    sum_across: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[Experience, dict[str, float]]:
    """Rewards r_t = -beta * KL_t (+ score at the last token), then GAE and whitening.

    With `kl.in_reward=false` the reward carries the score alone and KL enters the loss instead.
    `sum_across` (an all-reduce sum over processes) whitens with the global batch's statistics.
    """
    mask = seq.response_mask
    kl = kl_penalty(old_logprobs, ref_logprobs, kl_cfg.estimator) * mask
    reward_beta = beta if kl_cfg.in_reward else 0.0
    rewards = shape_token_rewards(scores, kl, mask, reward_beta)
    advantages, returns = gae(rewards, values * mask, mask, ppo.gamma, ppo.lam)
    stats = {
        "adv/mean": masked_mean(advantages, mask).item(),
        "adv/std": masked_mean(advantages.pow(2), mask)
        .sub(masked_mean(advantages, mask).pow(2))
        .clamp(min=0)
        .sqrt()
        .item(),
        "returns/mean": masked_mean(returns, mask).item(),
        "values/mean": masked_mean(values, mask).item(),
    }
    if ppo.advantage_norm:
        advantages = masked_whiten(advantages, mask, sum_across=sum_across)
    exp = Experience(
        seq,
        old_logprobs,
        ref_logprobs,
        values * mask,
        kl,
        rewards,
        advantages,
        returns,
        scores,
        loss_beta=0.0 if kl_cfg.in_reward else beta,
    )
    return exp, stats
