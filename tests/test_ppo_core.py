"""Unit tests for the PPO math in icegrt_cli.ppo.core.

Expected values are worked by hand and written as the arithmetic that produces them.
"""

from __future__ import annotations

import math
import threading

import pytest
import torch

from icegrt_cli.data.collate import last_token_index
from icegrt_cli.ppo.core import (
    AdaptiveKLController,
    FixedKLController,
    NonFiniteError,
    RunningMeanStd,
    check_finite,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_penalty,
    logprobs_from_logits,
    make_kl_controller,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    policy_loss,
    response_mask,
    shape_scores,
    shape_token_rewards,
    value_loss,
)

NAN, INF = float("nan"), float("inf")


def t(values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def close(actual, expected, atol=1e-6) -> None:
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=torch.float64),
        torch.as_tensor(expected, dtype=torch.float64),
        atol=atol,
        rtol=0.0,
    )


# Valid entries 1, 2, 3 | 4, 5; the padding holds garbage that must never leak.
X = t([[1.0, 2.0, 3.0, 99.0], [4.0, 5.0, INF, NAN]])
MASK = t([[1, 1, 1, 0], [1, 1, 0, 0]])


# ---------------------------------------------------------------- masked statistics


@pytest.mark.parametrize("mask", [MASK, MASK.bool(), MASK.float()])
def test_masked_stats_ignore_padding(mask):
    close(masked_sum(X, mask), 1 + 2 + 3 + 4 + 5)
    close(masked_mean(X, mask), (1 + 2 + 3 + 4 + 5) / 5)
    # deviations from the mean 3: -2, -1, 0, 1, 2 -> squares sum to 10
    close(masked_var(X, mask), 10 / (5 - 1))
    close(masked_var(X, mask, unbiased=False), 10 / 5)


def test_masked_stats_along_dim():
    close(masked_sum(X, MASK, dim=1), [1 + 2 + 3, 4 + 5])
    close(masked_mean(X, MASK, dim=1), [(1 + 2 + 3) / 3, (4 + 5) / 2])
    # a row with no valid entry has mean 0, not nan
    close(masked_mean(X, t([[1, 0, 0, 0], [0, 0, 0, 0]]), dim=1), [1.0, 0.0])


def test_masked_stats_all_zero_mask_are_zero_not_nan():
    empty = torch.zeros_like(MASK)
    close(masked_sum(X, empty), 0.0)
    close(masked_mean(X, empty), 0.0)
    close(masked_var(X, empty), 0.0)
    close(masked_whiten(X, empty), torch.zeros_like(X))


def test_masked_var_single_entry_is_zero():
    close(masked_var(X, t([[0, 1, 0, 0], [0, 0, 0, 0]])), 0.0)


def test_masked_whiten_ignores_pads():
    out = masked_whiten(X, MASK)
    # mean 3, unbiased var 10 / 4 = 2.5
    expected = t([[1 - 3, 2 - 3, 3 - 3, 0.0], [4 - 3, 5 - 3, 0.0, 0.0]])
    expected[MASK.bool()] /= math.sqrt(2.5 + 1e-8)
    close(out, expected)
    close(masked_mean(out, MASK), 0.0)
    close(masked_var(out, MASK), 1.0)
    assert out[~MASK.bool()].eq(0).all()


def test_masked_whiten_without_shift_keeps_mean():
    out = masked_whiten(X, MASK, shift_mean=False)
    close(masked_mean(out, MASK), 3.0)
    close(masked_var(out, MASK), 1.0)
    assert out[~MASK.bool()].eq(0).all()


def test_masked_stats_upcast_half_precision_to_fp32():
    assert masked_mean(X.to(torch.bfloat16), MASK).dtype == torch.float32


# ---------------------------------------------------------------- log-probs, entropy, KL


def test_logprobs_from_logits_hand_value():
    logits = t([[[0.0, math.log(3.0)]]])
    tokens = torch.tensor([[1]])
    # softmax([0, ln 3]) = [1/4, 3/4]
    close(logprobs_from_logits(logits, tokens), [[math.log(3 / 4)]])
    # T = 2: softmax([0, ln(3) / 2]) = [1, sqrt 3] / (1 + sqrt 3)
    close(
        logprobs_from_logits(logits, tokens, temperature=2.0),
        [[math.log(math.sqrt(3) / (1 + math.sqrt(3)))]],
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
def test_logprobs_from_logits_equals_gathered_log_softmax(temperature):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=gen).to(torch.bfloat16)
    tokens = torch.randint(0, 11, (2, 5), generator=gen)
    expected = torch.log_softmax(logits.float() / temperature, dim=-1)
    expected = expected.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    out = logprobs_from_logits(logits, tokens, temperature)
    assert out.dtype == torch.float32 and out.shape == (2, 5)
    torch.testing.assert_close(out, expected)


def test_logprobs_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), 0.0)


def test_entropy_from_logits():
    # uniform over 4 -> ln 4; a -inf logit is a zero-probability token -> ln 2, not nan
    logits = t([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -INF, -INF]]])
    close(entropy_from_logits(logits), [[math.log(4), math.log(2)]])
    # T = 2 on [0, 2 ln 3] -> softmax([0, ln 3]) = [1/4, 3/4]
    p = [1 / 4, 3 / 4]
    close(
        entropy_from_logits(t([[[0.0, 2 * math.log(3)]]]), temperature=2.0),
        [[-(p[0] * math.log(p[0]) + p[1] * math.log(p[1]))]],
    )


D = [-1.0, 0.0, 0.5, 2.0]  # d = logp - ref_logp


def test_kl_k1():
    close(kl_penalty(t(D), torch.zeros(4), "k1"), [-1.0, 0.0, 0.5, 2.0])


def test_kl_k2():
    close(kl_penalty(t(D), torch.zeros(4), "k2"), [0.5 * 1.0, 0.0, 0.5 * 0.25, 0.5 * 4.0])


def test_kl_k3():
    expected = [
        math.exp(1.0) - 1 - 1.0,
        math.exp(0.0) - 1 + 0.0,
        math.exp(-0.5) - 1 + 0.5,
        math.exp(-2.0) - 1 + 2.0,
    ]
    close(kl_penalty(t(D), torch.zeros(4), "k3"), expected)


def test_kl_uses_difference_of_inputs():
    # same d = -1 from logp = -3, ref = -2
    close(kl_penalty(t([-3.0]), t([-2.0]), "k3"), [math.e - 2])


def test_kl_unknown_estimator_is_named():
    with pytest.raises(ValueError, match="'k4'"):
        kl_penalty(torch.zeros(1), torch.zeros(1), "k4")  # type: ignore[arg-type]


# ---------------------------------------------------------------- response masks


EOS, PAD = 2, 0


def test_response_mask_cases():
    tokens = torch.tensor(
        [
            [5, 2, 7, 7],  # EOS in the middle: later tokens are not pads but still masked
            [5, 6, 7, 2],  # EOS last
            [5, 6, 7, 8],  # no EOS, full length
            [5, 6, 0, 0],  # no EOS, padded
            [2, 0, 0, 0],  # EOS first
            [5, 2, 2, 0],  # second EOS is not part of the response
        ]
    )
    mask, has_eos = response_mask(tokens, eos_id=EOS, pad_id=PAD)
    expected = [
        [1, 1, 0, 0],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [1, 1, 0, 0],
    ]
    assert mask.dtype == torch.bool
    assert mask.long().tolist() == expected
    assert has_eos.tolist() == [True, True, False, False, True, True]


def test_response_mask_pad_is_another_id():
    tokens = torch.tensor([[5, 2, 9, 9], [5, 0, 6, 9]])
    mask, has_eos = response_mask(tokens, eos_id=2, pad_id=9)
    # 0 is an ordinary token here
    assert mask.long().tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    assert has_eos.tolist() == [True, False]


def test_response_mask_pad_equal_to_eos_keeps_first_eos():
    tokens = torch.tensor([[5, 2, 2, 2], [5, 6, 7, 2]])
    mask, has_eos = response_mask(tokens, eos_id=2, pad_id=2)
    assert mask.long().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert has_eos.tolist() == [True, True]


def test_last_token_index():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [1, 3, 0, 0]
    assert last_token_index(mask.bool()).tolist() == [1, 3, 0, 0]


def test_shape_token_rewards_places_score_at_last_valid_token():
    scores = t([2.0, -1.0, 5.0])
    kl = t([[0.1, 0.2, 0.3, NAN], [0.4, 0.0, -0.2, 0.1], [1.0, 1.0, 1.0, 1.0]])
    mask = t([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    beta = 0.5
    expected = [
        [-0.5 * 0.1, -0.5 * 0.2 + 2.0, 0.0, 0.0],
        [-0.5 * 0.4, -0.5 * 0.0, -0.5 * -0.2, -0.5 * 0.1 + -1.0],
        [0.0, 0.0, 0.0, 0.0],  # no valid token: no score, no penalty
    ]
    close(shape_token_rewards(scores, kl, mask, beta), expected)


# ---------------------------------------------------------------- GAE


def test_gae_gamma_1_lambda_095():
    rewards, values = t([[0.0, 0.0, 1.0]]), t([[0.5, 0.6, 0.7]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    d2 = 1.0 + 1.0 * 0.0 - 0.7  # V after the last token is 0
    d1 = 0.0 + 1.0 * 0.7 - 0.6
    d0 = 0.0 + 1.0 * 0.6 - 0.5
    a2 = d2
    a1 = d1 + 1.0 * 0.95 * a2
    a0 = d0 + 1.0 * 0.95 * a1
    close(adv, [[a0, a1, a2]])  # = [0.46575, 0.385, 0.3]
    close(ret, [[a0 + 0.5, a1 + 0.6, a2 + 0.7]])


def test_gae_gamma_09():
    rewards, values = t([[0.0, 0.0, 1.0]]), t([[0.5, 0.6, 0.7]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.95)
    d2 = 1.0 - 0.7
    d1 = 0.0 + 0.9 * 0.7 - 0.6
    d0 = 0.0 + 0.9 * 0.6 - 0.5
    a2 = d2
    a1 = d1 + 0.9 * 0.95 * a2
    a0 = d0 + 0.9 * 0.95 * a1
    close(adv, [[a0, a1, a2]])  # = [0.2849575, 0.2865, 0.3]
    close(ret, [[a0 + 0.5, a1 + 0.6, a2 + 0.7]])


def test_gae_masked_tail_does_not_leak():
    # Same 3-token response as above, followed by two padded steps full of garbage.
    rewards = t([[0.0, 0.0, 1.0, 7.0, NAN], [0.0, 0.0, 1.0, 0.0, 0.0]])
    values = t([[0.5, 0.6, 0.7, 100.0, INF], [0.5, 0.6, 0.7, 0.0, 0.0]])
    mask = t([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    a2 = 1.0 - 0.7
    a1 = (0.7 - 0.6) + 0.95 * a2
    a0 = (0.6 - 0.5) + 0.95 * a1
    close(adv, [[a0, a1, a2, 0.0, 0.0]] * 2)
    close(ret, [[a0 + 0.5, a1 + 0.6, a2 + 0.7, 0.0, 0.0]] * 2)
    short_adv, _ = gae(rewards[:, :3], values[:, :3], mask[:, :3], gamma=1.0, lam=0.95)
    close(adv[:, :3], short_adv)


def test_gae_has_no_grad():
    values = torch.tensor([[0.5, 0.6, 0.7]], requires_grad=True)
    adv, ret = gae(torch.zeros(1, 3), values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    assert not adv.requires_grad and not ret.requires_grad


# ---------------------------------------------------------------- policy loss


def test_policy_loss_clip_cases():
    log_ratio = [math.log(1.1), 1.0, 1.0, -1.0, -1.0, 123.0]  # last column is padding
    adv = [2.0, 2.0, -2.0, -2.0, 2.0, NAN]
    mask = t([[1, 1, 1, 1, 1, 0]])
    old_logp = t([[-1.0] * 6])
    logp = (old_logp + t([log_ratio])).requires_grad_()
    out = policy_loss(logp, old_logp, t([adv]), mask, clip_eps=0.2)
    e = math.e
    per_token = [
        -(2.0 * 1.1),  # A > 0, ratio 1.1 inside the range
        -(2.0 * 1.2),  # A > 0, ratio = e, clipped to 1.2 (clipped branch larger)
        2.0 * e,  # A < 0, ratio = e: unclipped -A * e is larger, no clip
        2.0 * 0.8,  # A < 0, ratio = 1/e, clipped to 0.8 (clipped branch larger)
        -(2.0 / e),  # A > 0, ratio = 1/e: unclipped -A / e is larger, no clip
    ]
    close(out.loss, sum(per_token) / 5)
    close(out.clipfrac, 2 / 5)
    ratios = [1.1, e, e, 1 / e, 1 / e]
    close(out.ratio_mean, sum(ratios) / 5)
    close(out.approx_kl, sum((r - 1) - math.log(r) for r in ratios) / 5)
    out.loss.backward()
    # d loss / d logp = -A * rho / 5 where unclipped wins, 0 where clipped wins, 0 on the pad
    grad = [-(2.0 * 1.1) / 5, 0.0, 2.0 * e / 5, 0.0, -(2.0 / e) / 5, 0.0]
    close(logp.grad, [grad])


def test_policy_loss_ratio_exactly_one_when_logp_equals_old():
    logp = t([[-0.3, -1.7, -2.2], [-0.9, -0.1, 50.0]])
    adv = t([[1.0, -2.0, 0.5], [3.0, 0.25, NAN]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    out = policy_loss(logp, logp.clone(), adv, mask, clip_eps=0.2)
    close(out.loss, -(1.0 - 2.0 + 0.5 + 3.0 + 0.25) / 5, atol=0.0)
    close(out.ratio_mean, 1.0, atol=0.0)
    close(out.approx_kl, 0.0, atol=0.0)
    close(out.clipfrac, 0.0, atol=0.0)


# ---------------------------------------------------------------- value loss


def test_value_loss_clip_cases():
    old_values = t([[1.0, 1.0, 1.0, 0.0]])
    values = t([[1.1, 1.5, 2.0, NAN]]).requires_grad_()
    returns = t([[1.5, 2.0, 1.0, 9.0]])
    mask = t([[1, 1, 1, 0]])
    out = value_loss(values, old_values, returns, mask, clip_eps=0.2)
    per_token = [
        (1.1 - 1.5) ** 2,  # inside the range: both branches equal
        (1.2 - 2.0) ** 2,  # V = 1.5 clipped to 1.2, further from R: clipped branch larger
        (2.0 - 1.0) ** 2,  # V = 2.0 clipped to 1.2, but unclipped error is larger
    ]
    close(out.loss, 0.5 * sum(per_token) / 3)
    close(out.clipfrac, 1 / 3)
    out.loss.backward()
    # d/dV of 0.5 * (V - R)^2 / 3 = (V - R) / 3 where unclipped wins; 0 when clipped (constant)
    close(values.grad, [[(1.1 - 1.5) / 3, 0.0, (2.0 - 1.0) / 3, 0.0]])


# ---------------------------------------------------------------- explained variance


def test_explained_variance():
    returns = t([[1.0, 2.0, 3.0, 99.0]])
    mask = t([[1, 1, 1, 0]])
    close(explained_variance(t([[1.0, 2.0, 3.0, -7.0]]), returns, mask), 1.0)
    # a constant prediction explains nothing: Var[R - 5] = Var[R]
    close(explained_variance(t([[5.0, 5.0, 5.0, 0.0]]), returns, mask), 0.0)
    # residual [-2, 0, 2] has var 4, returns var 1 -> 1 - 4 / 1
    close(explained_variance(t([[3.0, 2.0, 1.0, 0.0]]), returns, mask), 1 - 4 / 1)


def test_explained_variance_constant_returns_is_zero():
    out = explained_variance(t([[0.0, 1.0]]), t([[2.0, 2.0]]), torch.ones(1, 2))
    close(out, 0.0, atol=0.0)
    close(explained_variance(t([[0.0]]), t([[1.0]]), torch.zeros(1, 1)), 0.0, atol=0.0)


# ---------------------------------------------------------------- KL controllers


def test_adaptive_kl_controller_one_update():
    ctl = AdaptiveKLController(init_coef=0.1, target=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_steps=256)
    # e = 9 / 6 - 1 = 0.5, clipped to 0.2
    close(ctl.value, 0.1 * (1 + 0.2 * 256 / 10000))  # = 0.100512
    ctl.update(current_kl=5.7, n_steps=256)
    # e = 5.7 / 6 - 1 = -0.05, inside the clip
    close(ctl.value, 0.1 * (1 + 0.2 * 256 / 10000) * (1 - 0.05 * 256 / 10000))


def test_adaptive_kl_controller_clips_low_kl():
    ctl = AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10000)
    ctl.update(current_kl=0.0, n_steps=100)
    # e = 0 / 6 - 1 = -1, clipped to -0.2
    close(ctl.value, 0.2 * (1 - 0.2 * 100 / 10000))


def test_adaptive_kl_controller_state_round_trip():
    ctl = AdaptiveKLController(0.1, 6.0, 10000)
    ctl.update(9.0, 256)
    restored = AdaptiveKLController(0.1, 6.0, 10000)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value


def test_adaptive_kl_controller_rejects_bad_target():
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, 0.0, 10000)


def test_fixed_kl_controller_is_unchanged():
    ctl = FixedKLController(0.05)
    ctl.update(current_kl=100.0, n_steps=256)
    assert ctl.value == 0.05
    restored = FixedKLController(0.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == 0.05


def test_make_kl_controller():
    none = make_kl_controller("none", 0.1, 6.0, 10000)
    none.update(9.0, 256)
    assert none.value == 0.0
    assert isinstance(make_kl_controller("fixed", 0.1, 6.0, 10000), FixedKLController)
    adaptive = make_kl_controller("adaptive", 0.1, 6.0, 10000)
    assert isinstance(adaptive, AdaptiveKLController) and adaptive.value == 0.1
    with pytest.raises(ValueError, match="'pid'"):
        make_kl_controller("pid", 0.1, 6.0, 10000)  # type: ignore[arg-type]


# ---------------------------------------------------------------- running statistics


def test_running_mean_std_two_batches_equal_concatenation():
    a = t([1.0, 2.0, 3.0, 4.0])
    b = t([[10.0, 20.0], [-5.0, 0.5]])
    rms = RunningMeanStd()
    rms.update(a)
    rms.update(b)
    both = torch.cat([a, b.flatten()])
    assert rms.count == 8
    close(rms.mean, both.mean())
    close(rms.std, both.std(correction=0))


def test_running_mean_std_identity_before_update_and_state_round_trip():
    rms = RunningMeanStd()
    assert (rms.count, rms.mean, rms.std) == (0, 0.0, 1.0)
    rms.update(torch.empty(0))
    assert rms.count == 0
    rms.update(t([2.0, 4.0]))
    restored = RunningMeanStd()
    restored.load_state_dict(rms.state_dict())
    assert (restored.count, restored.mean, restored.std) == (2, 3.0, 1.0)


def test_running_mean_std_floors_std():
    rms = RunningMeanStd(eps=1e-8)
    rms.update(t([3.0, 3.0]))
    assert rms.std == 1e-8


# ---------------------------------------------------------------- score shaping


def test_shape_scores_normalise_then_scale_then_clip():
    scores = t([4.0, -6.0, 0.0])
    out = shape_scores(scores, scale=3.0, mean=1.0, std=2.0, clip=5.0)
    expected = [
        (4.0 - 1.0) / 2.0 * 3.0,  # 4.5, inside the clip
        -5.0,  # (-6 - 1) / 2 * 3 = -10.5, clipped
        (0.0 - 1.0) / 2.0 * 3.0,  # -1.5
    ]
    close(out, expected)
    # scaling before normalising would give (4 * 3 - 1) / 2 = 5.5 -> 5.0 for the first score
    assert out[0] != 5.0
    close(scores, [4.0, -6.0, 0.0])  # input untouched


def test_shape_scores_partial_options():
    scores = t([4.0, -6.0])
    close(shape_scores(scores), [4.0, -6.0])
    close(shape_scores(scores, mean=1.0), [4.0 - 1.0, -6.0 - 1.0])
    close(shape_scores(scores, std=2.0), [4.0 / 2.0, -6.0 / 2.0])
    close(shape_scores(scores, scale=0.5, clip=2.5), [2.0, -2.5])


def test_shape_scores_rejects_bad_std_and_clip():
    with pytest.raises(ValueError, match="std"):
        shape_scores(t([1.0]), std=0.0)
    with pytest.raises(ValueError, match="clip"):
        shape_scores(t([1.0]), clip=-1.0)


# ---------------------------------------------------------------- guards


def test_check_finite_raises_with_name_and_step():
    with pytest.raises(NonFiniteError, match=r"non-finite policy loss at step 12: nan"):
        check_finite("policy loss", torch.tensor(NAN), step=12)
    with pytest.raises(NonFiniteError, match=r"non-finite value loss at step 3: inf"):
        check_finite("value loss", INF, step=3)
    with pytest.raises(ValueError, match=r"non-finite kl at step 0: 1 of 3"):
        check_finite("kl", t([0.0, -INF, 1.0]), step=0)


def test_check_finite_passes_finite_values():
    check_finite("policy loss", torch.tensor(0.5), step=1)
    check_finite("score", -2.0, step=1)
    check_finite("kl", t([0.0, 1.0]), step=1)


def test_masked_whiten_across_processes_uses_the_global_batch():
    """Two ranks (threads with a summing all-reduce) whiten as one process holding both."""
    halves = [(X[:1], MASK[:1]), (X[1:], MASK[1:])]
    barrier = threading.Barrier(2)
    slots: list[torch.Tensor | None] = [None, None]

    def all_reduce_sum(rank: int):
        def reduce(t: torch.Tensor) -> torch.Tensor:
            slots[rank] = t
            barrier.wait()
            total = slots[0] + slots[1]
            barrier.wait()  # both have read before the next call overwrites a slot
            return total

        return reduce

    out: list[torch.Tensor | None] = [None, None]

    def work(rank: int) -> None:
        x, m = halves[rank]
        out[rank] = masked_whiten(x, m, sum_across=all_reduce_sum(rank))

    threads = [threading.Thread(target=work, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    close(torch.cat(out), masked_whiten(X, MASK))
    assert not torch.allclose(out[0], masked_whiten(*halves[0]))  # rank-local would differ
