"""Eval task configs, loaders on their fixtures, prompts and few-shot, and bad-file errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from icegrt_cli.config import DOMAIN_TASKS, GENERAL_TASKS, EvalConfig, TaskConfig
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.eval.tasks import (
    FORMATS,
    choice_requests,
    generation_prompt,
    load_task,
    resolve_path,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
TASK_FILES = sorted((CONF / "task").glob("*.yaml"))


def task_cfg(name: str) -> TaskConfig:
    """A shipped task file merged onto the schema, as Hydra composes it."""
    merged = OmegaConf.merge(
        OmegaConf.structured(TaskConfig), OmegaConf.load(CONF / "task" / f"{name}.yaml")
    )
    return OmegaConf.to_object(merged)


def test_every_task_ships_a_config():
    assert {p.stem for p in TASK_FILES} == {*GENERAL_TASKS, *DOMAIN_TASKS}
    assert len(GENERAL_TASKS) == 12


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.stem)
def test_shipped_task_config_composes_and_loads(path: Path):
    task = load_task(path.stem, task_cfg(path.stem), limit=None, seed=0)
    assert task.items and len(task.shots) == len(task.items)
    # fixtures hold fewer solved examples than the harness's 5-shot tasks ask for
    assert all(
        min(task.cfg.num_fewshot, 1) <= len(shots) <= task.cfg.num_fewshot for shots in task.shots
    )
    assert task.source.fixture == task.cfg.path.startswith("fixture:")
    assert set(task.metrics) <= set(task.fmt.metrics)


def test_eval_yaml_composes_with_overrides():
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)
    overrides = [
        "tasks=[ad_moderation,arc_easy]",
        "task.gsm8k.path=/data/gsm8k/test.jsonl",
        "task.gsm8k.num_fewshot=5",
        "model.paths=[a,b]",
    ]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=overrides)
    assert list(cfg.tasks) == ["ad_moderation", "arc_easy"]
    assert set(cfg.task) == {*GENERAL_TASKS, *DOMAIN_TASKS}
    assert cfg.task.gsm8k.path == "/data/gsm8k/test.jsonl" and cfg.task.gsm8k.num_fewshot == 5
    assert list(cfg.model.paths) == ["a", "b"]
    with (
        initialize_config_dir(str(CONF), version_base="1.3"),
        pytest.raises(ConfigCompositionException, match="num_fewshott"),
    ):
        compose("eval", overrides=["task.gsm8k.num_fewshott=5"])


# --- loaders on their fixtures -----------------------------------------------------------


def load(name: str, **changes):
    cfg = task_cfg(name)
    for key, value in changes.items():
        setattr(cfg, key, value)
    return load_task(name, cfg, limit=None, seed=0)


def test_mmlu_loader_and_prompt():
    task = load("mmlu", num_fewshot=1)
    assert len(task.items) == 10 and {i.group for i in task.items} == {
        "astronomy",
        "elementary_mathematics",
    }
    item = task.items[0]
    assert item.choices == ("A", "B", "C", "D") and item.gold == 1
    assert item.query.startswith("Roughly how long") and item.query.endswith("D. 8 days\nAnswer:")
    context, continuation = choice_requests(task, 0)[1]
    shot = task.shots[0][0]
    assert shot.group == "astronomy"  # shots from the same subject's dev file
    assert context == (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        + shot.query
        + " "
        + shot.target
        + "\n\n"
        + item.query
    )
    assert continuation == " B"


def test_agieval_loader_builds_harness_query():
    task = load("agieval")
    assert len(task.items) == 16 and len({i.group for i in task.items}) == 8
    aqua = next(i for i in task.items if i.group == "aqua-rat")
    assert aqua.query == (
        "Q: A shop sells pens at 3 for $2. How much do 12 pens cost? Answer "
        "Choices: (A)$6 (B)$8 (C)$9 (D)$10 (E)$12\nA: Among A through E, "
        "the answer is"
    )
    assert aqua.choices[aqua.gold] == "(B)$8"
    sat = next(i for i in task.items if i.group == "sat-en")
    assert sat.query.startswith("Mara had always") and "lighthouse.Q: " not in sat.query


def test_agieval_unknown_subtask_is_an_error():
    with pytest.raises(DataError, match="no file for subtask"):
        load("agieval", subtasks=["gaokao-physics"])


def test_bbh_loader_and_fewshot_from_the_same_file():
    task = load("bbh")
    assert len(task.items) == 12
    for item, shots in zip(task.items, task.shots, strict=True):
        assert all(s.group == item.group and s != item for s in shots)
    prompt = generation_prompt(task, 0)
    assert prompt.endswith("Q: not ( True ) and ( True ) is\nA:")
    assert prompt.count("\nA: ") == 2  # two solved examples


def test_arc_loaders():
    easy, challenge = load("arc_easy"), load("arc_challenge")
    assert len(easy.items) == len(challenge.items) == 8
    numeric = next(i for i in easy.items if i.id == "FX_E_6")  # answerKey "2" of labels 1..4
    assert numeric.target == "the Sun"
    assert len(next(i for i in easy.items if i.id == "FX_E_8").choices) == 5
    context, continuation = choice_requests(easy, 0)[2]
    assert context.endswith("Question: Which state of matter has a fixed shape?\nAnswer:")
    assert continuation == " solid"


def test_hellaswag_loader_cleans_wikihow_tags():
    task = load("hellaswag")
    item = next(i for i in task.items if i.id == "15")
    # as in the harness, the removed "[step]" leaves a trailing space, which the
    # log-likelihood split then moves onto the continuation
    assert (
        item.query == "Personal Care and Style: How to tie a scarf. Drape the scarf around "
        "your neck. "
    )
    assert item.gold == 0 and len(item.choices) == 4


def test_winogrande_partial_scoring_requests():
    task = load("winogrande", num_fewshot=0)
    assert len(task.items) == 8
    assert choice_requests(task, 0) == [
        ("The soup was too hot to eat, so Maria waited for the soup", " to cool down."),
        ("The soup was too hot to eat, so Maria waited for the Maria", " to cool down."),
    ]
    shot_task = load("winogrande", num_fewshot=1)
    shot = shot_task.shots[0][0]
    assert choice_requests(shot_task, 0)[0][0].startswith(
        shot.choices[shot.gold] + " " + shot.target + "\n\n"
    )


def test_race_loaders_answer_earlier_questions_in_context():
    middle, high = load("race_middle"), load("race_high")
    assert len(middle.items) == len(high.items) == 3
    item = middle.items[0]
    article = json.loads(resolve_path("fixture:race/test/middle/1.txt", "k").read_text())
    assert item.query == (
        f"Article: {article['article']}\n\nQuestion: What does Lucy do every morning?\n"
        "Answer: She feeds the hens.\nLucy likes the market because  _  ."
    )
    assert item.target == "she can talk with many people"


def test_gsm8k_loader():
    task = load("gsm8k")
    assert len(task.items) == 8 and task.items[6].target.endswith("#### 3,750")
    prompt = generation_prompt(task, 0)
    assert prompt.count("####") == 3 and prompt.endswith(  # 5-shot; the fixture has 3
        "pen for $2. How much does she spend?\nAnswer:"
    )


def test_math_loader_reads_subject_folders():
    task = load("math")
    assert len(task.items) == 8 and {i.group for i in task.items} == {"algebra", "prealgebra"}
    assert {i.target for i in task.items} >= {"4x+4", "\\frac{1}{2}", "70^\\circ"}
    assert all(
        s.group == i.group for i, shots in zip(task.items, task.shots, strict=True) for s in shots
    )
    one = load_task("m", TaskConfig(format="math", path="fixture:math/test/algebra"), None, 0)
    assert len(one.items) == 4 and one.items[0].group == "algebra"


def test_boolq_loader():
    task = load("boolq", num_fewshot=0)
    assert len(task.items) == 8
    assert choice_requests(task, 1)[1] == (task.items[1].query, " yes") and task.items[1].gold == 0
    assert task.items[0].query.endswith(
        "\nQuestion: does water boil at 100 degrees celsius at sea level?\nAnswer:"
    )


def test_domain_loaders():
    ads, general = load("ad_moderation"), load("general_demo")
    gold = ads.items[0].meta["record"]["gold"]
    assert len(ads.items) == 300 and gold["verdict"] in ("approve", "reject")
    valid = load("ad_moderation_valid")
    assert len(valid.items) == 300 and {i.query for i in valid.items}.isdisjoint(
        i.query for i in ads.items
    )
    assert len(general.items) == 100 and general.items[0].target


def test_limit_and_fewshot_are_deterministic():
    a = load_task("arc_easy", task_cfg("arc_easy"), limit=3, seed=0)
    b = load_task("arc_easy", task_cfg("arc_easy"), limit=3, seed=0)
    assert len(a.items) == 3 and a.shots == b.shots


def test_fewshot_without_a_split_never_uses_the_item():
    cfg = task_cfg("arc_easy")
    cfg.fewshot_path, cfg.num_fewshot = None, 7
    task = load_task("arc_easy", cfg, limit=None, seed=1)
    assert all(
        item not in shots and len(shots) == 7
        for item, shots in zip(task.items, task.shots, strict=True)
    )


# --- Hugging Face / lm-eval layouts --------------------------------------------------------


def jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


HUB_ARC = {
    "id": "Q1",
    "question": "Which is a liquid?",
    "choices": {"text": ["ice", "water", "steam"], "label": ["1", "2", "3"]},
    "answerKey": "2",
}


def test_arc_reads_the_hub_layout_from_jsonl_parquet_and_save_to_disk(tmp_path):
    import datasets

    datasets.Dataset.from_list([HUB_ARC]).to_parquet(str(tmp_path / "test.parquet"))
    datasets.Dataset.from_list([HUB_ARC]).save_to_disk(str(tmp_path / "saved"))
    paths = [
        jsonl(tmp_path / "test.jsonl", [HUB_ARC]),
        tmp_path / "test.parquet",
        tmp_path / "saved",
    ]
    for path in paths:
        [item] = load_task("a", TaskConfig(format="arc", path=str(path)), None, 0).items
        assert (item.id, item.query, item.choices, item.gold) == (
            "Q1",
            "Question: Which is a liquid?\nAnswer:",
            ("ice", "water", "steam"),
            1,
        )


def mmlu_rows(subject: str, split: str, n: int) -> list[dict]:
    """MMLU records in the hub layout, `<subject> <split> <i>?` with answer i mod 4."""
    return [
        {
            "question": f"{subject} {split} {i}?",
            "subject": subject,
            "choices": ["w", "x", "y", "z"],
            "answer": i % 4,
        }
        for i in range(n)
    ]


def test_mmlu_reads_hub_records_per_subject_with_first_n_dev_shots(tmp_path):
    for subject in ("anatomy", "virology"):
        jsonl(tmp_path / "test" / f"{subject}.jsonl", mmlu_rows(subject, "test", 3))
        jsonl(tmp_path / "dev" / f"{subject}.jsonl", mmlu_rows(subject, "dev", 6))
    cfg = TaskConfig(
        format="mmlu",
        path=str(tmp_path / "test"),
        fewshot_path=str(tmp_path / "dev"),
        num_fewshot=5,
        fewshot_sampler="first_n",
        subtasks=["virology"],
    )
    task = load_task("mmlu", cfg, None, seed=3)
    assert [i.id for i in task.items] == ["virology-0", "virology-1", "virology-2"]
    assert task.items[2].gold == 2 and task.items[2].query == (
        "virology test 2?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    )
    assert all(
        [s.query.split("\n")[0] for s in shots] == [f"virology dev {i}?" for i in range(5)]
        for shots in task.shots
    )


def test_boolq_reads_super_glue_labels_and_math_reads_subject_records(tmp_path):
    boolq = jsonl(tmp_path / "boolq.jsonl", [{"question": "is it", "passage": "p", "label": 1}])
    [item] = load_task("b", TaskConfig(format="boolq", path=str(boolq)), None, 0).items
    assert (item.gold, item.target) == (1, "yes")
    jsonl(
        tmp_path / "math" / "geometry.jsonl",
        [{"problem": "Area?", "solution": "It is $\\boxed{\\frac{1}{2}}$."}],
    )
    [item] = load_task("m", TaskConfig(format="math", path=str(tmp_path / "math")), None, 0).items
    assert (item.id, item.group, item.target) == ("geometry-0", "geometry", "\\frac{1}{2}")


# --- configuration and file errors -------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "nope"}, "task.t.format: unknown format 'nope'"),
        ({"metrics": ["bleu"]}, "task.t.metrics: \\['bleu'\\] not computed"),
        ({"subtasks": ["x"]}, "task.t.subtasks: the arc format has no subtasks"),
        ({"path": "demo:nope"}, "task.t.path: unknown demo part"),
    ],
)
def test_config_errors_name_the_key(changes, message):
    cfg = TaskConfig(format="arc", path="fixture:arc/ARC-Easy/ARC-Easy-Test.jsonl")
    for key, value in changes.items():
        setattr(cfg, key, value)
    with pytest.raises(ConfigError, match=message):
        load_task("t", cfg, limit=None, seed=0)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


GOOD_ARC = json.dumps(
    {
        "id": "a",
        "question": {
            "stem": "Q?",
            "choices": [{"text": "x", "label": "A"}, {"text": "y", "label": "B"}],
        },
        "answerKey": "A",
    }
)


@pytest.mark.parametrize(
    ("fmt", "name", "text", "where"),
    [
        ("arc", "arc.jsonl", GOOD_ARC + "\n{broken\n", ":2: not valid JSON"),
        (
            "arc",
            "arc.jsonl",
            GOOD_ARC + "\n" + GOOD_ARC.replace('"answerKey": "A"', '"answerKey": "E"') + "\n",
            ":2: answerKey 'E' is not one of the labels",
        ),
        ("boolq", "dev.jsonl", '{"question": "q", "passage": "p"}\n', ":1: missing field 'answer'"),
        (
            "gsm8k",
            "test.jsonl",
            '{"question": "q", "answer": "7"}\n',
            ":1: the answer has no '####",
        ),
        (
            "winogrande",
            "dev.jsonl",
            '{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}\n',
            ":1: the sentence must contain exactly one '_'",
        ),
        (
            "hellaswag",
            "val.jsonl",
            '{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", '
            '"endings": ["x", "y"], "label": ""}\n',
            ":1: label must be the index",
        ),
        ("mmlu", "data/x_test.csv", "q,a,b,c,d,A\nq,a,b,c,A\n", ":2: expected 6 columns"),
        ("mmlu", "data/x_test.csv", "q,a,b,c,d,F\n", ":1: answer 'F' is not one of the 4"),
        (
            "agieval",
            "lsat.jsonl",
            '{"question": "q", "options": ["(A)x", "(B)y"], "label": "C"}\n',
            ":1: answer 'C'",
        ),
        (
            "bbh",
            "task.json",
            '{"examples": [\n  {"input": "x"\n  "target": "y"}]}',
            ":3: not valid JSON",
        ),
        ("bbh", "task.json", '{"examples": [{"input": "x"}]}', "examples\\[0\\]: missing field"),
        (
            "race",
            "race/1.txt",
            '{"article": "a", "questions": ["q"], "options": [], "answers": []}',
            "equally long",
        ),
        (
            "math",
            "math/algebra/1.json",
            '{"problem": "p", "solution": "no box"}',
            "has no \\\\boxed",
        ),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path, fmt, name, text, where):
    path = write(tmp_path, name, text)
    target = {"mmlu": "data", "race": "race", "math": "math"}.get(fmt)
    cfg = TaskConfig(format=fmt, path=str(tmp_path / target) if target else path)
    with pytest.raises(DataError) as err:
        load_task("t", cfg, limit=None, seed=0)
    assert Path(path).name in str(err.value)
    assert err.match(where)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_task("t", TaskConfig(format="gsm8k", path=str(tmp_path / "nope.jsonl")), None, 0)


def test_registry_covers_every_format():
    # `judged` is the format of a user's own judged tasks (tests/test_judges.py); none ships
    assert {task_cfg(p.stem).format for p in TASK_FILES} == set(FORMATS) - {"judged"}
