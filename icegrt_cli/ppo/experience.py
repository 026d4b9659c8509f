"""From a scored rollout to the tensors PPO trains on: shaped rewards, advantages, returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from icegrt_cli.config import (
    GROUP_ESTIMATORS,
    AdvantageConfig,
    KLConfig,
    PPOAlgoConfig,
    resolve_kl,
)
from icegrt_cli.ppo.core import (
    dr_grpo_advantages,
    gae,
    group_spread,
    grpo_advantages,
    kl_penalty,
    masked_mean,
    masked_whiten,
    reinforce_pp_advantages,
    rloo_advantages,
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
    loss_horizon: int | None = None
    """None: policy and KL losses are token means. An int L (Dr. GRPO): token sums over
    rows x L, see `core.token_loss`."""

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
            loss_horizon=self.loss_horizon,
        )


def build_experience(
    seq: Sequences,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    values: torch.Tensor | None,
    scores: torch.Tensor,
    beta: float,
    kl_cfg: KLConfig,
    ppo: PPOAlgoConfig,
    sum_across: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    advantage: AdvantageConfig | None = None,
    group_size: int = 1,
    horizon: int | None = None,
) -> tuple[Experience, dict[str, float]]:
    """Rewards r_t = -beta * KL_t (+ score at the last token), then advantages by
    `advantage.estimator`.

    KL goes where `kl_cfg` says, its nulls filled in for the estimator (`config.resolve_kl`):
    with in_reward=false the reward carries the score alone and KL enters the loss instead.
    `advantage` defaults to gae. gae reads the critic's `values` and whitens when
    ppo.advantage_norm; the others take `values=None`. The group estimators read the
    sequence return R_i = sum_t r_t of `group_size` adjacent rows per prompt and give every
    token of response i its A_i; advantages are final here, before any minibatching, so the
    update may split groups freely. `horizon` (rollout.max_new_tokens) is dr_grpo's constant
    loss denominator. `sum_across` (an all-reduce sum over processes) whitens with the global
    batch's statistics (gae, reinforce_pp); groups never need it, being whole on each process.
    """
    advantage = advantage or AdvantageConfig()
    kl_cfg = resolve_kl(kl_cfg, advantage.estimator)
    mask = seq.response_mask
    kl = kl_penalty(old_logprobs, ref_logprobs, kl_cfg.estimator) * mask
    reward_beta = beta if kl_cfg.in_reward else 0.0
    rewards = shape_token_rewards(scores, kl, mask, reward_beta)
    estimator = advantage.estimator
    stats: dict[str, float] = {}
    if group_size > 1:
        spread = group_spread(rewards.sum(dim=1), group_size)
        stats["adv/group_reward_std"] = spread.std.item()
        stats["adv/zero_spread_groups"] = spread.zero_share.item()
    if estimator == "gae":
        values = values * mask
        advantages, returns = gae(rewards, values, mask, ppo.gamma, ppo.lam)
        stats["values/mean"] = masked_mean(values, mask).item()
    elif estimator == "reinforce_pp":
        advantages, returns = reinforce_pp_advantages(rewards, mask, ppo.gamma, sum_across)
    elif estimator in GROUP_ESTIMATORS:
        sequence_returns = rewards.sum(dim=1)
        per_sequence = {
            "grpo": lambda r: grpo_advantages(r, group_size, advantage.group_std_eps),
            "dr_grpo": lambda r: dr_grpo_advantages(r, group_size),
            "rloo": lambda r: rloo_advantages(r, group_size),
        }[estimator](sequence_returns)
        advantages = per_sequence.unsqueeze(1) * mask
        returns = sequence_returns.unsqueeze(1) * mask
    else:
        raise ValueError(f"unknown advantage estimator {estimator!r}")
    stats.update(
        {
            "adv/mean": masked_mean(advantages, mask).item(),
            "adv/std": masked_mean(advantages.pow(2), mask)
            .sub(masked_mean(advantages, mask).pow(2))
            .clamp(min=0)
            .sqrt()
            .item(),
            "returns/mean": masked_mean(returns, mask).item(),
            f"adv/{estimator}_abs_mean": masked_mean(advantages.abs(), mask).item(),
        }
    )
    if estimator == "gae" and ppo.advantage_norm:
        advantages = masked_whiten(advantages, mask, sum_across=sum_across)
    exp = Experience(
        seq,
        old_logprobs,
        ref_logprobs,
        torch.zeros_like(old_logprobs) if values is None else values,
        kl,
        rewards,
        advantages,
        returns,
        scores,
        loss_beta=0.0 if kl_cfg.in_reward else beta,
        loss_horizon=horizon if estimator == "dr_grpo" else None,
    )
    return exp, stats
