"""Read records from local files, the hub or the bundled demo, checked and with fields remapped.

Every record problem names its origin (`file:line`), so a bad line in a large file is found
at once, before any training starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icegrt_cli import plugins
from icegrt_cli.config import SourceConfig
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.judges import JUDGE_FIELD, resolve_judge

Record = dict[str, Any]
Check = Callable[[Record], str | None]
"""Returns a description of what is wrong with a record, or None when it is usable."""

FILE_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def read_jsonl(path: Path) -> list[tuple[str, Record]]:
    """(origin, record) pairs; a malformed line raises DataError naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                kind = type(record).__name__
                raise DataError(f"{path}:{number}: expected a JSON object, got {kind}")
            rows.append((f"{path}:{number}", record))
    return rows


def _read_with_datasets(kind: str, name: str, split: str) -> list[tuple[str, Record]]:
    import datasets

    datasets.disable_progress_bars()
    try:
        if kind == "hub":
            dataset = datasets.load_dataset(name, split=split)
        else:
            dataset = datasets.load_dataset(kind, data_files=name, split="train")
    except Exception as err:  # datasets raises many types; the user needs the name and why
        raise DataError(f"{name}: could not load ({type(err).__name__}: {err})") from None
    return [(f"{name} record {i}", dict(row)) for i, row in enumerate(dataset)]


def _read_file(path_text: str, split: str) -> list[tuple[str, Record]]:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type (use one of {sorted(FILE_FORMATS)})")
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(loaded, list):
            raise DataError(f"{path}: expected a JSON list of records")
        return [(f"{path} record {i}", r) for i, r in enumerate(loaded)]
    return _read_with_datasets(fmt, str(path), split)


def read_records(path: Path) -> list[tuple[str, Record]]:
    """(origin, record) pairs of a JSONL / JSON / CSV / Parquet file or a `datasets`
    `save_to_disk` folder (the layouts benchmark sets are shared in)."""
    if path.is_dir() and (path / "dataset_info.json").is_file():
        import datasets

        try:
            dataset = datasets.load_from_disk(str(path))
        except Exception as err:  # datasets raises many types; the user needs the name and why
            raise DataError(f"{path}: could not load ({type(err).__name__}: {err})") from None
        return [(f"{path} record {i}", dict(row)) for i, row in enumerate(dataset)]
    return _read_file(str(path), "train")


def _raw_rows(source: SourceConfig, default_part: str, held_out: bool) -> list[tuple[str, Record]]:
    name = source.eval_path if held_out else source.path
    split = (source.eval_split or "test") if held_out else source.split
    if source.kind == "demo":
        return read_jsonl(plugins.demo_file(name or default_part, "data source path"))
    if name is None:
        raise ConfigError(f"data source of kind '{source.kind}' needs a path")
    if source.kind == "file":
        return _read_file(name, split)
    return _read_with_datasets("hub", name, split)


def remap(record: Record, fields: dict[str, str]) -> Record:
    """Rename the source's field names to the stage's (fields: stage name -> source name)."""
    if not fields:
        return record
    out = dict(record)
    for ours, theirs in fields.items():
        if theirs in record:
            out[ours] = record[theirs]
    return out


def read_source(
    source: SourceConfig, default_part: str, check: Check, held_out: bool = False
) -> list[Record]:
    """Records of one source, each passing `check`, or a DataError naming the bad one."""
    rows = _raw_rows(source, default_part, held_out)
    if source.judge is not None:
        resolve_judge(source.judge, "data source judge")  # a typo fails now, not mid-run
    records = []
    for origin, raw in rows:
        record = remap(raw, source.fields)
        if source.judge is not None:
            record[JUDGE_FIELD] = source.judge
        problem = check(record)
        if problem is not None:
            raise DataError(f"{origin}: {problem}")
        records.append(record)
    if source.limit is not None:
        records = records[: source.limit]
    if not records:
        label = source.eval_path if held_out else (source.path or default_part)
        raise DataError(f"{label}: the data set is empty")
    return records


def require_text(*names: str) -> Check:
    """A check that each named field is present and a non-empty string."""

    def check(record: Record) -> str | None:
        for name in names:
            if name not in record:
                return f"missing field '{name}' (fields present: {sorted(record)})"
            if not isinstance(record[name], str) or not record[name].strip():
                return f"field '{name}' must be a non-empty string"
        return None

    return check
