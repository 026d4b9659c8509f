"""Train and held-out records of a stage, blended across its sources."""

from __future__ import annotations

from icegrt_cli.config import DataConfig
from icegrt_cli.data.loading import Check, Record, read_source
from icegrt_cli.data.mixing import split_holdout, weighted_blend
from icegrt_cli.errors import ConfigError


def load_splits(
    data: DataConfig, default_part: str, check: Check, seed: int
) -> tuple[list[Record], list[Record]]:
    """(train blend, held-out set): each source gives its eval file or a seeded hold-out."""
    if not data.sources:
        raise ConfigError("data.sources: no data source configured")
    train_parts, held_out = [], []
    for index, source in enumerate(data.sources):
        records = read_source(source, default_part, check)
        if source.eval_path:
            train, evaluation = records, read_source(source, default_part, check, held_out=True)
        else:
            train, evaluation = split_holdout(records, data.eval_fraction, seed + index)
        if source.weight < 0:
            raise ConfigError(f"data.sources.{index}.weight: must be >= 0, got {source.weight}")
        train_parts.append((train, source.weight))
        held_out.extend(evaluation)
    return weighted_blend(train_parts, seed), held_out
