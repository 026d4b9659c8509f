"""Sizes and annotator-noise rates of the generated demo data set."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class DemoConfig:
    """Everything the generator draws from besides the seed.

    The annotator rates decide how much room supervised fine-tuning leaves for RLHF: a model
    that imitates the demonstrations inherits these habits. They are applied in the order listed,
    each to the ads still eligible after the previous ones (the data card reports both counts):

    - `wrong_verdict_rate`: any ad; the verdict is flipped (a violation phrase called allowed,
      or a near miss called a violation).
    - `vague_rate`: reject ads; the analysis names no policy ("violates our policies").
    - `wrong_policy_rate`: reject ads; a policy that does not apply is cited (a near miss
      flagged, or one violation filed under the wrong code).
    - `partial_rate`: reject ads with two or more violations; only one is named.
    - `unquoted_rate`: reject ads; the policies are named but no phrase is quoted.
    - `skip_near_miss_rate`: approve ads with a near miss; the near miss goes unmentioned.

    With the defaults, annotator-style answers score about 0.65 mean gold on the test split.
    """

    n_sft: int = 3000
    n_general_sft: int = 1000
    n_pairs: int = 5000
    n_prompts: int = 2000
    n_valid: int = 300
    n_test: int = 300
    n_general_test: int = 200

    # P(0, 1, 2, 3 violations): ~40% approve, mostly one or two violations otherwise.
    violation_count_weights: tuple[float, ...] = (0.40, 0.36, 0.19, 0.05)
    # P(0, 1, 2 near misses) for approve ads and for reject ads.
    near_miss_weights_approve: tuple[float, ...] = (0.25, 0.55, 0.20)
    near_miss_weights_reject: tuple[float, ...] = (0.60, 0.40)

    wrong_verdict_rate: float = 0.12
    vague_rate: float = 0.40
    wrong_policy_rate: float = 0.15
    partial_rate: float = 0.70
    unquoted_rate: float = 0.35
    skip_near_miss_rate: float = 0.75

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("n_") and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{f.name} must be a non-negative int, got {value!r}")
            if f.name.endswith("_rate") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be in [0, 1], got {value!r}")
            if f.name.endswith("_weights") and (not value or min(value) < 0 or sum(value) <= 0):
                raise ValueError(f"{f.name} must be non-negative with a positive sum")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
