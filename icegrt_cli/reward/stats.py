"""Reward statistics saved beside a reward model, for PPO's reward normalisation.

Reward-model scores carry an arbitrary offset (TRL #691): the loss only sees differences. The
mean / std of the scores on reference data are stored with the model as `reward_stats.json`;
reading them fails loudly when the file is missing, rather than silently using 0 / 1
(OpenRLHF #693).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import Tensor

from icegrt_cli.errors import ConfigError

STATS_FILE = "reward_stats.json"


@dataclass(frozen=True)
class RewardStats:
    mean: float
    std: float
    """Sample std (n - 1) of the reference scores."""
    count: int
    """Number of scores the statistics come from."""
    source: str
    """What the scores were computed on, for the record."""

    @classmethod
    def of(cls, scores: Tensor, source: str) -> RewardStats:
        """Statistics of (N,) scores, N >= 2."""
        if scores.numel() < 2:
            raise ValueError(f"reward statistics need at least 2 scores, got {scores.numel()}")
        scores = scores.double()
        return cls(scores.mean().item(), scores.std().item(), scores.numel(), source)

    def save(self, model_dir: Path) -> Path:
        path = model_dir / STATS_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> RewardStats:
        """The statistics saved with the reward model in `model_dir`, or a ConfigError."""
        path = Path(model_dir) / STATS_FILE
        if not path.exists():
            raise ConfigError(
                f"reward model '{model_dir}' has no {STATS_FILE}: train it with `icegrt train-rm`, "
                "or use a normalisation that does not need saved statistics"
            )
        return cls(**json.loads(path.read_text()))
