"""PPO math for RLHF as pure tensor functions.

Nothing here touches trainer state, so every function is tested alone with hand-worked values.
Shapes: B = batch size, T = response length, V = vocabulary size. A mask is a bool or float
(B, T) tensor where a nonzero entry marks a valid response token; padded positions may hold
anything (even inf / nan) and reach neither a result nor, in the losses, a gradient. All
arithmetic runs in at least fp32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from icegrt_cli.data.collate import last_token_index
from icegrt_cli.errors import Diverged

KLEstimator = Literal["k1", "k2", "k3"]
KLControllerKind = Literal["none", "fixed", "adaptive"]


def _f32(x: Tensor) -> Tensor:
    """Upcast half / bfloat16 / integer tensors to fp32; leave fp32 and fp64 as they are."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _valid(mask: Tensor) -> Tensor:
    """Bool view of a mask (nonzero = valid)."""
    return mask if mask.dtype == torch.bool else mask != 0


# --------------------------------------------------------------------------------------------
# Masked statistics
# --------------------------------------------------------------------------------------------


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of `x` over valid entries; over all dims (0-d result) or along `dim`.

    `torch.where` rather than `x * mask`, so inf / nan in padding cannot leak (0 * inf = nan).
    """
    kept = torch.where(_valid(mask), _f32(x), 0.0)
    return kept.sum() if dim is None else kept.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `x` over valid entries; over all dims (0-d result) or along `dim`.

    An all-zero mask (or an all-zero row with `dim`) gives 0, not nan: an empty batch must not
    poison a loss or a logged metric.
    """
    count = _valid(mask).sum() if dim is None else _valid(mask).sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance (0-d) of `x` over all valid entries.

    `unbiased` applies Bessel's correction (divide by n - 1). With fewer than two valid entries
    the unbiased variance is undefined; it is returned as 0 (likewise 0 for an all-zero mask).
    """
    valid = _valid(mask)
    count = valid.sum()
    centred = torch.where(valid, _f32(x) - masked_mean(x, valid), 0.0)
    denom = count - 1 if unbiased else count
    return centred.square().sum() / denom.clamp(min=1)


def masked_whiten(
    x: Tensor,
    mask: Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    sum_across: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Normalise valid entries of `x` to mean 0, (unbiased) variance 1; masked entries become 0.

    Used on advantages, once per rollout batch (Huang et al. 2022, "The 37 implementation
    details of PPO", detail 7). With `shift_mean=False` only the scale changes, the mean is kept.
    With several processes, `sum_across` (an all-reduce sum) makes the mean and variance those
    of the whole global batch, as if one process held it; without it each rank whitens alone.
    """
    total = sum_across or (lambda t: t)
    valid = _valid(mask)
    count_and_sum = total(torch.stack([valid.sum().float(), masked_sum(x, valid)]))
    count = count_and_sum[0]
    mean = count_and_sum[1] / count.clamp(min=1)
    centred = torch.where(valid, _f32(x) - mean, 0.0)
    var = total(centred.square().sum()) / (count - 1).clamp(min=1)
    # A <- (A - mean) / sqrt(var + eps)
    whitened = (_f32(x) - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(valid, whitened, 0.0)


# --------------------------------------------------------------------------------------------
# Log-probabilities, entropy, KL
# --------------------------------------------------------------------------------------------


def logprobs_from_logits(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """Log-probability (B, T) of `tokens` (B, T) under softmax(`logits` (B, T, V) / temperature).

    The logits are divided by the sampling temperature so the scored distribution is exactly the
    sampled one (TRL #4159); fp32 because bf16 log-softmax is too coarse for PPO ratios.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = _f32(logits) / temperature
    picked = scaled.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    # log softmax(z)_y = z_y - logsumexp(z), without materialising the full (B, T, V) log-softmax.
    return picked - torch.logsumexp(scaled, dim=-1)


def entropy_from_logits(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy (B, T) of softmax(`logits` (B, T, V) / temperature), in nats, computed in fp32.

    `torch.special.entr` defines 0 * log 0 = 0, so -inf logits (banned tokens) stay finite.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    probs = torch.softmax(_f32(logits) / temperature, dim=-1)
    return torch.special.entr(probs).sum(-1)


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: KLEstimator = "k1") -> Tensor:
    """Per-token estimate (same shape as the inputs) of KL(pi || pi_ref) from sampled tokens.

    With d = log pi(y) - log pi_ref(y) for y ~ pi (Schulman 2020, "Approximating KL
    Divergence", http://joschu.net/blog/kl-approx.html):
      k1 = d                  unbiased, high variance, can be negative per token;
      k2 = d^2 / 2            biased, low variance, >= 0;
      k3 = exp(-d) - 1 + d    unbiased, low variance, >= 0.
    """
    d = _f32(logp) - _f32(ref_logp)
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d.square()
    if estimator == "k3":
        return torch.expm1(-d) + d
    raise ValueError(f"unknown KL estimator {estimator!r}; expected 'k1', 'k2' or 'k3'")


# --------------------------------------------------------------------------------------------
# Response masks and reward shaping
# --------------------------------------------------------------------------------------------


class ResponseMask(NamedTuple):
    """Which response tokens count, and whether the response ended properly."""

    mask: Tensor
    """(B, T) bool: tokens up to and including the first EOS."""
    has_eos: Tensor
    """(B,) bool: the response contains an EOS (False = truncated at the length limit)."""


def response_mask(tokens: Tensor, eos_id: int, pad_id: int) -> ResponseMask:
    """Mask the valid part of generated responses `tokens` (B, T) (response tokens only).

    A row is valid up to and including its first EOS. Everything after it is 0, and so is a
    pad token before any EOS (a pad ends a row that was cut without EOS). Search only the
    response: chat templates put EOS inside prompts (TRL #2012). If `pad_id == eos_id`, the
    first such token counts as the EOS; a dedicated pad token is safer (TRL #2778).
    """
    is_eos = tokens == eos_id
    eos_before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()  # EOS strictly before t
    stops = (eos_before > 0) | ((tokens == pad_id) & ~is_eos)
    mask = torch.cumsum(stops.long(), dim=-1) == 0  # a prefix: valid until the first stop
    return ResponseMask(mask=mask, has_eos=(is_eos & mask).any(dim=-1))


def shape_token_rewards(scores: Tensor, kl: Tensor, mask: Tensor, beta: float) -> Tensor:
    """Per-token rewards (B, T): -beta * kl (B, T) on valid tokens, plus the sequence score
    `scores` (B,) at each row's last valid token; 0 on masked tokens.

    r_t = -beta * KL_t, and r_T = -beta * KL_T + score: the KL-penalised reward of Ziegler et
    al. 2019 (arXiv:1909.08593) and Stiennon et al. 2020 (arXiv:2009.01325), spread per token.
    A row with no valid token gets no score.
    """
    valid = _valid(mask)
    rewards = torch.where(valid, -beta * _f32(kl), 0.0)
    placed = torch.where(valid.any(dim=-1), _f32(scores).to(rewards.dtype), 0.0)
    return rewards.scatter_add(-1, last_token_index(valid).unsqueeze(-1), placed.unsqueeze(-1))


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------


class GAEOutput(NamedTuple):
    """Advantages and returns (GAE's value targets), both (B, T), 0 on masked positions,
    without grad."""

    advantages: Tensor
    returns: Tensor


@torch.no_grad()
def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> GAEOutput:
    """Generalised advantage estimation over `rewards` and `values` (B, T).

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}
    (Schulman et al. 2016, arXiv:1506.02438, eq. 16); returns R_t = A_t + V_t.
    V beyond the last valid token is 0, so values after EOS never leak into the estimate.
    `mask` must be a prefix per row (as from `response_mask`): valid tokens first, then padding.
    """
    valid = _valid(mask)
    r = torch.where(valid, _f32(rewards), 0.0)
    v = torch.where(valid, _f32(values), 0.0)
    next_v = F.pad(v[:, 1:], (0, 1))  # V_{t+1}; 0 past the end and past the last valid token
    deltas = r + gamma * next_v - v
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    for t in reversed(range(deltas.shape[1])):
        running = deltas[:, t] + gamma * lam * running
        advantages[:, t] = running
    advantages = torch.where(valid, advantages, 0.0)
    return GAEOutput(advantages=advantages, returns=advantages + v)


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Reward-to-go G_t = r_t + gamma * G_{t+1} over valid tokens of `rewards` (B, T); 0 where
    masked. `mask` must be a prefix per row (valid tokens first), as from `response_mask`.

    With gamma = 1 every token's return is the sum of the rewards from it to the end: for a
    KL-shaped reward, the score minus beta times the KL still to come (REINFORCE++).
    """
    valid = _valid(mask)
    r = torch.where(valid, _f32(rewards), 0.0)
    returns = torch.zeros_like(r)
    running = torch.zeros_like(r[:, 0])
    for t in reversed(range(r.shape[1])):
        running = r[:, t] + gamma * running
        returns[:, t] = running
    return torch.where(valid, returns, 0.0)


def _groups(returns: Tensor, n: int) -> Tensor:
    """Sequence returns (B,) as (B / n, n): row i of the result is group i, whose n responses
    answer the same prompt and sit next to each other in the batch."""
    if n < 1 or returns.shape[0] % n:
        raise ValueError(f"{returns.shape[0]} returns do not split into groups of {n}")
    return _f32(returns).reshape(-1, n)


def _tied(groups: Tensor) -> Tensor:
    """(G, 1) bool: every return in the group is exactly equal (no signal to learn from)."""
    return (groups.amax(dim=1) == groups.amin(dim=1)).unsqueeze(1)


@torch.no_grad()
def grpo_advantages(returns: Tensor, n: int, eps: float = 1e-6) -> Tensor:
    """GRPO (Shao et al. 2024, arXiv:2402.03300): A_i = (R_i - mean_g) / (std_g + eps) over the
    group g of `n` adjacent responses; `returns` (B,) -> (B,).

    std_g is the unbiased (n - 1) standard deviation. A group whose returns are all equal
    gets exactly 0, not float noise divided by eps. Needs n >= 2.
    """
    groups = _groups(returns, n)
    centred = groups - groups.mean(dim=1, keepdim=True)
    scaled = centred / (groups.std(dim=1, keepdim=True) + eps)
    return torch.where(_tied(groups), 0.0, scaled).reshape(-1)


@torch.no_grad()
def dr_grpo_advantages(returns: Tensor, n: int) -> Tensor:
    """Dr. GRPO (Liu et al. 2025, arXiv:2503.20783): A_i = R_i - mean_g, GRPO without the
    division by the group's std, which up-weights prompts that are nearly always right or
    nearly always wrong. `returns` (B,) -> (B,); a group of equal returns gets exactly 0.
    """
    groups = _groups(returns, n)
    centred = groups - groups.mean(dim=1, keepdim=True)
    return torch.where(_tied(groups), 0.0, centred).reshape(-1)


@torch.no_grad()
def rloo_advantages(returns: Tensor, n: int) -> Tensor:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024, arXiv:2402.14740): A_i = R_i minus the
    mean of the other n - 1 returns of its group, an unbiased baseline because it does not
    depend on response i. `returns` (B,) -> (B,); equal returns give exactly 0. Needs n >= 2.
    """
    groups = _groups(returns, n)
    if n < 2:
        raise ValueError("RLOO needs at least 2 responses per group")
    others = (groups.sum(dim=1, keepdim=True) - groups) / (n - 1)
    return torch.where(_tied(groups), 0.0, groups - others).reshape(-1)


@torch.no_grad()
def reinforce_pp_advantages(
    rewards: Tensor,
    mask: Tensor,
    gamma: float = 1.0,
    sum_across: Callable[[Tensor], Tensor] | None = None,
) -> GAEOutput:
    """REINFORCE++ (Hu 2025, arXiv:2501.03262): the returns are the reward-to-go of the
    per-token rewards (B, T) (score at the last token, -beta * KL_t on every token); the
    advantages are those returns whitened over the valid tokens of the whole batch
    (`sum_across`: over every process). No critic and no groups: the batch mean is the
    baseline."""
    returns = discounted_returns(rewards, mask, gamma)
    return GAEOutput(masked_whiten(returns, mask, sum_across=sum_across), returns)


class GroupSpread(NamedTuple):
    """How much the returns within groups differ: 0-d tensors."""

    std: Tensor
    """Mean over groups of the unbiased within-group standard deviation."""
    zero_share: Tensor
    """Share of groups whose returns are all equal: no learning signal from them."""


@torch.no_grad()
def group_spread(returns: Tensor, n: int) -> GroupSpread:
    """Within-group spread of `returns` (B,) in groups of `n` adjacent rows (n >= 2)."""
    groups = _groups(returns, n)
    return GroupSpread(groups.std(dim=1).mean(), _tied(groups).float().mean())


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


class PolicyLossOutput(NamedTuple):
    """Clipped-surrogate loss (0-d, differentiable) and detached 0-d diagnostics."""

    loss: Tensor
    clipfrac: Tensor
    """Fraction of valid tokens where the clipped branch was taken (strictly larger)."""
    approx_kl: Tensor
    """KL(pi_old || pi) estimate, k3 form (ratio - 1) - log ratio."""
    ratio_mean: Tensor


def token_loss(x: Tensor, mask: Tensor, horizon: int | None = None) -> Tensor:
    """A per-token loss `x` (B, T) reduced to 0-d over valid tokens.

    horizon None: the mean over every valid token of the batch (each token weighs the same).
    horizon L: the sum over valid tokens divided by B * L, a constant (Dr. GRPO, arXiv:
    2503.20783): no per-sequence length normalisation, so a long response's tokens are not
    down-weighted and a short one's not up-weighted.
    """
    if horizon is None:
        return masked_mean(x, mask)
    return masked_sum(x, mask) / (x.shape[0] * horizon)


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float,
    horizon: int | None = None,
) -> PolicyLossOutput:
    """PPO clipped surrogate over (B, T) tensors, reduced over valid tokens by `token_loss`
    (a token mean, or with `horizon` a sum over a constant).

    loss = mean max(-A * rho, -A * clip(rho, 1 - eps, 1 + eps)), rho = exp(logp - old_logp)
    (Schulman et al. 2017, arXiv:1707.06347, eq. 7, as a loss to minimise).
    `old_logp` and `advantages` are treated as constants.
    """
    valid = _valid(mask)
    # Zero the pads *before* the arithmetic: a nan there would otherwise turn the zero gradient
    # that masking sends back into nan (0 * nan).
    log_ratio = torch.where(valid, _f32(logp) - _f32(old_logp).detach(), 0.0)
    ratio = torch.exp(log_ratio)
    adv = torch.where(valid, _f32(advantages).detach(), 0.0)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    loss = token_loss(torch.maximum(unclipped, clipped), valid, horizon)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), valid)
        # k3 estimator, lower variance than -log ratio (Schulman 2020; CleanRL ppo.py).
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, valid)
        ratio_mean = masked_mean(ratio, valid)
    return PolicyLossOutput(loss, clipfrac, approx_kl, ratio_mean)


class ValueLossOutput(NamedTuple):
    """Clipped value loss (0-d, differentiable) and the detached 0-d clip fraction."""

    loss: Tensor
    clipfrac: Tensor


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_eps: float
) -> ValueLossOutput:
    """Clipped value loss over (B, T) tensors, averaged over valid tokens.

    loss = 1/2 * mean max((V - R)^2, (clip(V, V_old - eps, V_old + eps) - R)^2)
    (OpenAI baselines ppo2; Huang et al. 2022, "The 37 implementation details of PPO",
    detail 9). eps is in reward units, so keep rewards normalised.
    """
    valid = _valid(mask)
    # Pads zeroed before the arithmetic, as in `policy_loss`, so their gradient is exactly 0.
    v = torch.where(valid, _f32(values), 0.0)
    old_v = torch.where(valid, _f32(old_values).detach(), 0.0)
    ret = torch.where(valid, _f32(returns).detach(), 0.0)
    v_clipped = old_v + (v - old_v).clamp(-clip_eps, clip_eps)
    unclipped = (v - ret).square()
    clipped = (v_clipped - ret).square()
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), valid)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), valid)
    return ValueLossOutput(loss, clipfrac)


@torch.no_grad()
def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var[R - V] / Var[R] over valid tokens of (B, T) tensors, as a 0-d tensor.

    1 = the critic predicts returns perfectly, 0 = no better than a constant, < 0 = worse
    (CleanRL ppo.py). When Var[R] == 0 (or no valid token) the ratio is undefined; 0 is
    returned so the logged metric stays finite.
    """
    var_returns = masked_var(returns, mask)
    var_residual = masked_var(_f32(returns) - _f32(values), mask)
    safe = torch.where(var_returns > 0, var_returns, 1.0)
    return torch.where(var_returns > 0, 1.0 - var_residual / safe, 0.0)


# --------------------------------------------------------------------------------------------
# KL coefficient controllers
# --------------------------------------------------------------------------------------------


class KLController(Protocol):
    """The KL coefficient beta and how it moves between PPO steps."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None: ...

    def state_dict(self) -> dict[str, float]: ...

    def load_state_dict(self, state: dict[str, float]) -> None: ...


class FixedKLController:
    """Constant beta; `update` is a no-op."""

    def __init__(self, coef: float) -> None:
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Beta that steers the measured KL toward `target` (Ziegler et al. 2019,
    arXiv:1909.08593): e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n / horizon),
    n = episodes in the step. The clip bounds how fast beta moves on one noisy KL reading.
    """

    def __init__(self, init_coef: float, target: float, horizon: float) -> None:
        if target <= 0:
            raise ValueError(f"adaptive KL target must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"adaptive KL horizon must be > 0, got {horizon}")
        self.value = float(init_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


def make_kl_controller(
    kind: KLControllerKind, coef: float, target: float, horizon: float
) -> KLController:
    """Build the controller for `kind`: "none" (beta fixed at 0), "fixed" or "adaptive".

    `target` and `horizon` are used by "adaptive" only.
    """
    if kind == "none":
        return FixedKLController(0.0)
    if kind == "fixed":
        return FixedKLController(coef)
    if kind == "adaptive":
        return AdaptiveKLController(coef, target, horizon)
    raise ValueError(f"unknown KL controller kind {kind!r}; expected 'none', 'fixed' or 'adaptive'")


# --------------------------------------------------------------------------------------------
# Score statistics and shaping
# --------------------------------------------------------------------------------------------


class RunningMeanStd:
    """Running mean and (population) variance of every element seen by `update`.

    Batches merge with Chan et al.'s parallel algorithm (Chan, Golub & LeVeque 1979), kept in
    Python floats (fp64) so long runs do not drift. Before the first update the statistics are
    the identity (mean 0, std 1). `std` is floored at `eps` so dividing by it is always safe.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean

    def update(self, x: Tensor) -> None:
        """Fold in all elements of `x` (any shape); an empty tensor is a no-op."""
        batch = x.detach().double().flatten()
        n = batch.numel()
        if n == 0:
            return
        batch_mean = batch.mean().item()
        batch_m2 = (batch - batch_mean).square().sum().item()
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self._m2 += batch_m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def var(self) -> float:
        return self._m2 / self.count if self.count else 1.0

    @property
    def std(self) -> float:
        return max(math.sqrt(self.var), self.eps)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self._m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count = int(state["count"])
        self.mean = float(state["mean"])
        self._m2 = float(state["m2"])


def shape_scores(
    scores: Tensor,
    *,
    scale: float = 1.0,
    mean: float | None = None,
    std: float | None = None,
    clip: float | None = None,
) -> Tensor:
    """Reward-model scores (B,) -> shaped scores (B,): normalise, then scale, then clip.

    Subtract `mean` if given (the RM's arbitrary offset, TRL #691), divide by `std` if given,
    multiply by `scale`, clip to [-clip, clip] if given. Clipping comes last: "scaling alone is
    not enough", and clipping raw scores would cut at an offset-dependent place.
    """
    if std is not None and not std > 0:
        raise ValueError(f"score std must be > 0, got {std}")
    if clip is not None and not clip > 0:
        raise ValueError(f"score clip must be > 0, got {clip}")
    shaped = _f32(scores)
    if mean is not None:
        shaped = shaped - mean
    if std is not None:
        shaped = shaped / std
    shaped = shaped * scale
    if clip is not None:
        shaped = shaped.clamp(-clip, clip)
    return shaped


# --------------------------------------------------------------------------------------------
# Guards
# --------------------------------------------------------------------------------------------


class NonFiniteError(Diverged, ValueError):
    """A loss or statistic became nan / inf; training must stop rather than continue silently."""


def check_finite(name: str, value: Tensor | float, step: int) -> None:
    """Raise `NonFiniteError` ("non-finite policy loss at step 12: nan") if `value` has any
    nan / inf entry. Syncs with the device for tensors, so call it on logged scalars.
    """
    if isinstance(value, Tensor):
        bad = ~torch.isfinite(value)
        if bad.any():
            shown = value.item() if value.numel() == 1 else f"{int(bad.sum())} of {value.numel()}"
            raise NonFiniteError(f"non-finite {name} at step {step}: {shown}")
    elif not math.isfinite(value):
        raise NonFiniteError(f"non-finite {name} at step {step}: {value}")
