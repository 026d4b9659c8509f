"""Pairwise reward-model math as pure tensor functions.

Shapes: N = number of preference pairs. `chosen` and `rejected` are (N,) scalar scores (raw
logits of the reward head, never squashed by a sigmoid). Every function returns SUMS over the
pairs, the unit the training engine divides by, so a step's loss is the same for any split of
its pairs into micro-batches.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def bradley_terry_loss(
    chosen: Tensor, rejected: Tensor, margin: float | Tensor = 0.0, center_coef: float = 0.0
) -> Tensor:
    """Summed pairwise loss: sum_i [-log sigma(r_c - r_r - m) + c * (r_c^2 + r_r^2) / 2].

    The Bradley-Terry likelihood of the human preference (Ouyang et al. 2022, arXiv:2203.02155,
    eq. 1). `margin` m (a float, or (N,) per pair) asks the chosen score to win by at least m,
    as in Llama 2 (arXiv:2307.09288, eq. 2). `center_coef` c adds c x the mean of r^2 over
    both scores of a pair: an L2 pull keeping scores near 0, since the loss only sees
    differences and leaves the offset free to drift. Computed in fp32 at least.
    """
    chosen, rejected = chosen.float(), rejected.float()
    # -log sigma(x) == softplus(-x), stable for large |x|.
    loss = F.softplus(-(chosen - rejected - margin))
    if center_coef:
        loss = loss + center_coef * (chosen.square() + rejected.square()) / 2
    return loss.sum()


def pair_metrics(chosen: Tensor, rejected: Tensor) -> dict[str, float]:
    """Sums over pairs that become per-pair means once divided by the pair count.

    accuracy: pairs with r_c > r_r (a tie counts as wrong). margin: r_c - r_r.
    score_mean: the pair's mean score. score_sq_mean: the pair's mean squared score; with
    score_mean it gives the score std (`std_from_moments`), which is not itself a sum.
    """
    chosen, rejected = chosen.detach().float(), rejected.detach().float()
    return {
        "accuracy": (chosen > rejected).sum().item(),
        "margin": (chosen - rejected).sum().item(),
        "score_mean": ((chosen + rejected) / 2).sum().item(),
        "score_sq_mean": ((chosen.square() + rejected.square()) / 2).sum().item(),
    }


def std_from_moments(mean: float, mean_sq: float) -> float:
    """Population std from E[r] and E[r^2]; rounding can make the variance a hair below 0."""
    return math.sqrt(max(mean_sq - mean * mean, 0.0))
