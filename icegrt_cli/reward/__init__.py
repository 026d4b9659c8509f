"""The reward model (ICE-Reward): pairwise loss, scoring, pair data, saved score statistics."""

from icegrt_cli.reward.loss import bradley_terry_loss, pair_metrics, std_from_moments
from icegrt_cli.reward.pairs import PairCollator, PairExample, SkipCounts, encode_pairs
from icegrt_cli.reward.scoring import score_sequences, score_texts, sequence_scores
from icegrt_cli.reward.stats import STATS_FILE, RewardStats

__all__ = [
    "STATS_FILE",
    "PairCollator",
    "PairExample",
    "RewardStats",
    "SkipCounts",
    "bradley_terry_loss",
    "encode_pairs",
    "pair_metrics",
    "score_sequences",
    "score_texts",
    "sequence_scores",
    "std_from_moments",
]
