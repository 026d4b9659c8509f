"""The judge interface: import strings resolved with one-line errors, a user's judge scoring an
eval task and PPO's gold figures, the demo's judges reached only by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icegrt_cli.config import TaskConfig
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.eval import runner
from icegrt_cli.eval.tasks import load_task
from icegrt_cli.judges import JUDGE_FIELD, Judgement, as_judgement, judge_records, resolve_judge
from icegrt_cli.plugins import DEMO_AD_JUDGE, DEMO_GENERAL_JUDGE

HERE = "tests.test_judges"


def keyword_judge(response: str, record: dict) -> Judgement:
    """A user's rubric: the share of the record's keywords the response mentions."""
    words = record["keywords"]
    found = [w for w in words if w in response]
    return Judgement(len(found) / len(words), {"mentions": float(len(found)), "short": 1.0})


def exact_judge(response: str, record: dict) -> float | None:
    """A bare number, or None for a record without an answer."""
    return None if "answer" not in record else float(response == record["answer"])


NOT_A_FUNCTION = 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.no_such_module:score", "task.x.judge: no module 'tests.no_such_module'"),
        (f"{HERE}:no_such_judge", f"module '{HERE}' has no attribute 'no_such_judge'"),
        (f"{HERE}:NOT_A_FUNCTION", rf"'{HERE}:NOT_A_FUNCTION' is not a function \(int\)"),
        ("tests.test_judges.keyword_judge", "is not an import string of the form pkg.module:name"),
    ],
)
def test_a_bad_judge_string_is_a_one_line_config_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        resolve_judge(spec, "task.x.judge")
    assert "\n" not in str(err.value)


def test_a_good_string_resolves_and_numbers_become_judgements() -> None:
    judge = resolve_judge(f"{HERE}:exact_judge", "k")
    assert judge("4", {"answer": "4"}) == Judgement(1.0, {})
    assert judge("4", {}) is None
    ad = resolve_judge(DEMO_AD_JUDGE, "k")
    record = {"gold": {"verdict": "approve", "violations": [], "near_misses": []}}
    judged = ad("Verdict: approve\nAnalysis: no policy applies.", record)
    assert judged.score == 1.0 and set(judged.parts) == {
        "verdict_acc",
        "recall",
        "evidence",
        "hallucinated",
        "format",
    }
    assert resolve_judge(DEMO_GENERAL_JUDGE, "k")(" Kesk.", {"answer": "Kesk"}).score == 1.0


def test_a_judge_returning_something_else_is_named() -> None:
    with pytest.raises(ConfigError, match=f"judge {HERE}:keyword_judge: returned str"):
        as_judgement("good", f"{HERE}:keyword_judge")


def test_gold_figures_follow_each_records_judge() -> None:
    records = [
        {"prompt": "a", "keywords": ["x", "y"], JUDGE_FIELD: f"{HERE}:keyword_judge"},
        {"prompt": "b", "keywords": ["x"], JUDGE_FIELD: f"{HERE}:keyword_judge"},
        {"prompt": "c"},  # from a source with no judge: left out
    ]
    figures = judge_records(["x", "y", "x y"], records)
    assert figures == {"gold": (0.5 + 0.0) / 2, "gold_mentions": 0.5, "gold_short": 1.0}
    assert judge_records(["x"], [{"prompt": "c"}]) == {}


def write_task(tmp_path: Path) -> Path:
    path = tmp_path / "task.jsonl"
    rows = [
        {"id": "one", "prompt": "Name two colours.", "keywords": ["red", "blue"]},
        {"id": "two", "prompt": "Name a fruit.", "keywords": ["apple"]},
        {"prompt": "Name a pet.", "keywords": ["cat"], "reference": "a cat"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_users_judge_scores_an_eval_task(tmp_path: Path, monkeypatch) -> None:
    cfg = TaskConfig(format="judged", path=str(write_task(tmp_path)), judge=f"{HERE}:keyword_judge")
    task = load_task("colours", cfg, limit=None, seed=0)
    assert task.metrics == ["score", "reward"] and task.items[2].target == "a cat"
    answers = ["red and green", "apple", "a dog"]
    # The model's part is replaced by fixed answers: what is tested is the scoring path.
    monkeypatch.setattr(runner, "encode_prompt", lambda tokenizer, query: [0])
    monkeypatch.setattr(runner, "generate", lambda *args, **kwargs: answers)
    lm, settings = runner.LoadedModel(None, None, 64), runner.Settings(2, 8)
    done = runner.run_task(task, lm, settings, None, lambda name: None)
    assert done.values == {"score": pytest.approx((0.5 + 1.0 + 0.0) / 3)}
    assert done.predictions[0]["metrics"] == {"score": 0.5, "mentions": 1.0, "short": 1.0}
    # A judge's parts may be asked for by name; they are known only once it has judged.
    cfg.metrics = ["mentions", "score"]
    done = runner.run_task(load_task("c", cfg, None, 0), lm, settings, None, lambda name: None)
    assert done.values == {"mentions": pytest.approx(2 / 3), "score": pytest.approx(0.5)}


def test_judge_config_errors_name_the_task_key(tmp_path: Path) -> None:
    path = str(write_task(tmp_path))
    with pytest.raises(ConfigError, match="task.t.judge: the judged format needs a judge"):
        load_task("t", TaskConfig(format="judged", path=path), None, 0)
    with pytest.raises(ConfigError, match="task.t.judge: no module 'nope'"):
        load_task("t", TaskConfig(format="judged", path=path, judge="nope:f"), None, 0)
    with pytest.raises(ConfigError, match="task.t.judge: the gsm8k format is not scored by"):
        load_task("t", TaskConfig(format="gsm8k", path=path, judge=f"{HERE}:exact_judge"), None, 0)


def test_a_record_the_judge_cannot_score_is_a_data_error(tmp_path: Path) -> None:
    cfg = TaskConfig(format="judged", path=str(write_task(tmp_path)), judge=f"{HERE}:exact_judge")
    task = load_task("t", cfg, None, 0)
    with pytest.raises(DataError, match="item one: judge tests.test_judges:exact_judge found"):
        task.score("red", task.items[0])


def test_the_readme_overrides_that_plug_in_a_judge_compose(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from icegrt_cli.launch import conf_dir, register_resolvers, validate
    from icegrt_cli.stages.registry import register_configs

    register_configs()
    register_resolvers()
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "rubric.yaml").write_text(
        "format: judged\npath: r.jsonl\njudge: my_pkg.rubric:score\nmetrics: [score, hits]\n"
    )
    task = ["+task@task.rubric=rubric", "tasks=[rubric]"]
    validate("eval", "eval", ["--config-dir", str(tmp_path), *task])  # as the CLI checks it
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        search = f"hydra.searchpath=[file://{tmp_path}]"  # what --config-dir adds
        cfg = compose(config_name="eval", overrides=[*task, search])
        assert cfg.task.rubric.judge == "my_pkg.rubric:score" and cfg.task.rubric.limit is None
        assert cfg.task.ad_moderation.judge == DEMO_AD_JUDGE
        source = ["data=jsonl", "data.sources.0.path=p.jsonl", "data.sources.0.judge=m:f"]
        assert compose(config_name="ppo", overrides=source).data.sources[0].judge == "m:f"
        demo = compose(config_name="ppo").data.sources[0]
        assert (demo.kind, demo.judge) == ("demo", DEMO_AD_JUDGE)


def test_every_shipped_import_string_resolves_to_a_function() -> None:
    """The demo's entry points named in icegrt_cli.plugins and in the shipped configs: a renamed
    function would otherwise surface only when a stage reaches it."""
    import re

    from icegrt_cli import plugins
    from icegrt_cli.plugins import load_callable

    conf = Path(__file__).resolve().parents[1] / "conf"
    named = {
        match
        for path in conf.rglob("*.yaml")
        for match in re.findall(r"^\s*(?:judge|gold_pairs): (\S+)", path.read_text(), re.M)
    }
    assert {plugins.DEMO_AD_JUDGE, plugins.DEMO_GENERAL_JUDGE} <= named
    constants = [v for k, v in vars(plugins).items() if k.isupper() and isinstance(v, str)]
    assert len(constants) == 5
    for spec in sorted(named | set(constants)):
        load_callable(spec, spec)
    assert plugins.demo_file("valid", "k").name == "valid.jsonl"
    with pytest.raises(ConfigError, match="k: unknown demo part 'nope'"):
        plugins.demo_file("nope", "k")
