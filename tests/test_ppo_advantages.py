"""Critic-free advantage estimators (grpo, dr_grpo, rloo, reinforce_pp) against hand-worked
values, where KL goes for each, and the settings they refuse."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from icegrt_cli.config import AdvantageConfig, KLConfig, PPOAlgoConfig, PPOConfig, resolve_kl
from icegrt_cli.errors import ConfigError
from icegrt_cli.ppo.core import (
    discounted_returns,
    dr_grpo_advantages,
    group_spread,
    grpo_advantages,
    policy_loss,
    reinforce_pp_advantages,
    rloo_advantages,
    token_loss,
)
from icegrt_cli.ppo.experience import build_experience
from icegrt_cli.ppo.rollout import Sequences
from icegrt_cli.stages.ppo import check, group_rows

# Two groups of three: returns 1, 2, 3 (mean 2, unbiased std 1) and a group of equal returns.
RETURNS = torch.tensor([1.0, 2.0, 3.0, 0.5, 0.5, 0.5])


def test_grpo_divides_by_the_group_std_plus_eps_and_ties_give_zero() -> None:
    assert grpo_advantages(RETURNS, 3, eps=0.0).tolist() == [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    # eps = 0.5: (R - 2) / (1 + 0.5)
    assert grpo_advantages(RETURNS, 3, eps=0.5).tolist() == pytest.approx(
        [-1 / 1.5, 0.0, 1 / 1.5, 0.0, 0.0, 0.0]
    )
    # Pairs: (0, 4) has mean 2, std sqrt(8) -> -+2 / 2.828 = -+0.7071.
    assert grpo_advantages(torch.tensor([0.0, 4.0]), 2, eps=0.0).tolist() == pytest.approx(
        [-1 / math.sqrt(2), 1 / math.sqrt(2)]
    )


def test_equal_returns_give_exactly_zero_not_rounding_noise_over_eps() -> None:
    # 0.1 three times: the float mean differs from 0.1 by one ulp, which / 1e-6 would be noise.
    tied = torch.full((3,), 0.1)
    for estimator in (
        lambda r: grpo_advantages(r, 3),
        lambda r: dr_grpo_advantages(r, 3),
        lambda r: rloo_advantages(r, 3),
    ):
        assert estimator(tied).tolist() == [0.0, 0.0, 0.0]


def test_dr_grpo_subtracts_the_group_mean_only() -> None:
    assert dr_grpo_advantages(RETURNS, 3).tolist() == [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert dr_grpo_advantages(torch.tensor([0.0, 4.0]), 2).tolist() == [-2.0, 2.0]


def test_rloo_baseline_is_the_mean_of_the_other_responses() -> None:
    # 1 - (2 + 3) / 2 = -1.5; 2 - (1 + 3) / 2 = 0; 3 - (1 + 2) / 2 = 1.5.
    assert rloo_advantages(RETURNS, 3).tolist() == [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]
    assert rloo_advantages(torch.tensor([0.0, 4.0]), 2).tolist() == [-4.0, 4.0]
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(RETURNS, 1)


def test_groups_must_divide_the_batch() -> None:
    with pytest.raises(ValueError, match="5 returns do not split into groups of 2"):
        grpo_advantages(torch.ones(5), 2)


def test_group_spread_reports_mean_std_and_the_share_with_no_signal() -> None:
    spread = group_spread(RETURNS, 3)
    assert spread.std.item() == pytest.approx(0.5)  # (1 + 0) / 2
    assert spread.zero_share.item() == 0.5


def test_discounted_returns_sum_the_rewards_to_go_and_ignore_padding() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0, float("nan")]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # gamma 0.5: G2 = 3, G1 = 2 + 1.5 = 3.5, G0 = 1 + 1.75 = 2.75.
    assert discounted_returns(rewards, mask, 0.5).tolist() == [[2.75, 3.5, 3.0, 0.0]]


def test_reinforce_pp_whitens_the_returns_over_the_batch() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    # Returns (gamma 1): [1, 1, 1] and [2, 2, -]; mean 1.4, unbiased var (3 * 0.16 + 2 * 0.36) / 4
    # = 0.3: 1 -> -0.4 / sqrt(0.3), 2 -> 0.6 / sqrt(0.3).
    low, high = -0.4 / math.sqrt(0.3), 0.6 / math.sqrt(0.3)
    advantages, returns = reinforce_pp_advantages(rewards, mask)
    assert returns.tolist() == [[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]]
    assert advantages.tolist() == [
        pytest.approx([low, low, low], abs=1e-6),
        pytest.approx([high, high, 0.0], abs=1e-6),
    ]


def test_dr_grpo_loss_sums_tokens_over_a_constant_not_per_token() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, float("inf"), 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert token_loss(x, mask).item() == 2.5  # (1 + 2 + 3 + 4) / 4 tokens
    assert token_loss(x, mask, horizon=5).item() == 1.0  # 10 / (2 rows x 5)
    # At ratio 1 the clipped surrogate is -A per token: -(1 + 1 + 1 + 2) over 4 tokens, or over
    # 2 rows x horizon 4.
    logp = torch.zeros(2, 3)
    advantages = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    assert policy_loss(logp, logp, advantages, mask, 0.2).loss.item() == -1.25
    assert policy_loss(logp, logp, advantages, mask, 0.2, horizon=4).loss.item() == -0.625


def test_kl_placement_follows_the_estimator_unless_set() -> None:
    for estimator, in_reward, kl in (
        ("gae", True, "k1"),
        ("rloo", True, "k1"),
        ("reinforce_pp", True, "k1"),
        ("grpo", False, "k3"),
        ("dr_grpo", False, "k3"),
    ):
        resolved = resolve_kl(KLConfig(), estimator)
        assert (resolved.in_reward, resolved.estimator) == (in_reward, kl), estimator
    assert resolve_kl(KLConfig(in_reward=True), "grpo").estimator == "k1"
    assert resolve_kl(KLConfig(estimator="k2"), "grpo").estimator == "k2"
    assert resolve_kl(KLConfig(in_reward=False), "gae").estimator == "k3"


def _pairs(lengths: list[int]) -> Sequences:
    """Rows with `lengths` valid response tokens (width 3); pairs of rows share a prompt."""
    rows = len(lengths)
    mask = torch.tensor([[1.0] * n + [0.0] * (3 - n) for n in lengths])
    return Sequences(
        torch.ones(rows, 2, dtype=torch.long),
        torch.ones(rows, 2, dtype=torch.long),
        torch.ones(rows, 3, dtype=torch.long),
        mask,
        torch.ones(rows, dtype=torch.bool),
    )


def _experience(estimator: str, scores: list[float], d: float = 0.5, **kl: object):
    seq = _pairs([2, 2, 3, 1])
    ref = torch.full((4, 3), -2.0)
    old = ref.clone()
    old[0] += d  # only row 0 moved from the reference: d on each of its 2 tokens
    return build_experience(
        seq,
        old,
        ref,
        None,
        torch.tensor(scores),
        0.1,
        KLConfig(**kl),
        PPOAlgoConfig(),
        advantage=AdvantageConfig(estimator=estimator),
        group_size=2,
        horizon=3,
    )


def test_rloo_return_carries_the_kl_penalty_so_equal_scores_still_differ() -> None:
    exp, stats = _experience("rloo", [1.0, 1.0, 0.0, 2.0])
    # k1 = 0.5 on row 0's 2 tokens: R = (1 - 0.1, 1, 0, 2); RLOO in pairs: -+0.1, -+2.
    assert exp.loss_beta == 0.0
    assert exp.advantages.tolist() == [
        pytest.approx([-0.1, -0.1, 0.0]),
        pytest.approx([0.1, 0.1, 0.0]),
        [-2.0, -2.0, -2.0],
        [2.0, 0.0, 0.0],
    ]
    assert stats["adv/zero_spread_groups"] == 0.0
    assert stats["adv/group_reward_std"] == pytest.approx((0.1 + 2.0) / math.sqrt(2) / 2)


def test_grpo_keeps_kl_out_of_the_reward_and_in_the_loss() -> None:
    exp, stats = _experience("grpo", [1.0, 1.0, 0.0, 2.0])
    # The scores alone: the first pair is tied (no signal); (0, 2) gets -+1 / (sqrt(2) + eps).
    assert exp.loss_beta == 0.1 and exp.loss_horizon is None
    assert exp.rewards.sum(dim=1).tolist() == [1.0, 1.0, 0.0, 2.0]
    side = 1 / (math.sqrt(2) + 1e-6)
    assert exp.advantages.tolist() == [
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
        pytest.approx([-side] * 3),
        pytest.approx([side, 0.0, 0.0]),
    ]
    assert stats["adv/zero_spread_groups"] == 0.5
    # k3 = exp(-0.5) - 1 + 0.5 on row 0's tokens: what the loss would use.
    assert exp.kl[0, 0].item() == pytest.approx(math.exp(-0.5) - 0.5)


def test_dr_grpo_marks_its_constant_loss_denominator() -> None:
    exp, _ = _experience("dr_grpo", [1.0, 3.0, 0.0, 0.0])
    assert exp.loss_horizon == 3
    assert exp.advantages[:2, 0].tolist() == [-1.0, 1.0]


def test_reinforce_pp_places_kl_per_token_and_whitens() -> None:
    exp, _ = _experience("reinforce_pp", [1.0, 1.0, 0.0, 2.0])
    assert exp.loss_beta == 0.0
    assert exp.rewards[0].tolist() == pytest.approx([-0.05, 0.95, 0.0])
    assert exp.returns[0].tolist() == pytest.approx([0.9, 0.95, 0.0])
    assert exp.advantages.sum().item() == pytest.approx(0.0, abs=1e-5)  # whitened: mean 0


def _settings(**overrides: object):
    cfg = OmegaConf.structured(PPOConfig())
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_group_estimators_refuse_one_response_per_prompt_and_critic_settings() -> None:
    for estimator in ("grpo", "dr_grpo", "rloo"):
        with pytest.raises(ConfigError, match=f"advantage={estimator} needs rollout.n >= 2"):
            check(_settings(**{"advantage.estimator": estimator}))
        check(_settings(**{"advantage.estimator": estimator, "rollout.n": 2}))
    check(_settings(**{"advantage.estimator": "reinforce_pp"}))  # no group needed
    with pytest.raises(ConfigError, match="ppo.critic_warmup_steps=2 with advantage=grpo"):
        check(
            _settings(
                **{"advantage.estimator": "grpo", "rollout.n": 2, "ppo.critic_warmup_steps": 2}
            )
        )
    with pytest.raises(ConfigError, match="rollout.n: responses per prompt must be >= 1"):
        check(_settings(**{"rollout.n": 0}))


def test_a_shared_backbone_needs_values_to_learn_and_no_warm_up() -> None:
    shared = {"ppo.shared_backbone": True}
    check(_settings(**shared))
    with pytest.raises(ConfigError, match="ppo.shared_backbone=true with advantage=grpo"):
        check(_settings(**shared, **{"advantage.estimator": "grpo", "rollout.n": 2}))
    with pytest.raises(ConfigError, match="warming the value head up"):
        check(_settings(**shared, **{"ppo.critic_warmup_steps": 2}))
    with pytest.raises(ConfigError, match="engine=fsdp"):
        check(_settings(**shared, **{"engine.kind": "fsdp"}))


def test_groups_are_adjacent_and_whole_on_each_process() -> None:
    ids = [5, 6, 7, 8]
    assert group_rows(ids, 0, 1, 2) == [5, 5, 6, 6, 7, 7, 8, 8]
    rank0, rank1 = group_rows(ids, 0, 2, 3), group_rows(ids, 1, 2, 3)
    assert rank0 == [5, 5, 5, 7, 7, 7] and rank1 == [6, 6, 6, 8, 8, 8]
    assert not set(rank0) & set(rank1)  # no prompt's group on both processes
