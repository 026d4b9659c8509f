"""The eval stage end to end on tiny models: table, results.json, predictions, model lookup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from icegrt_cli.config import EvalConfig, TaskConfig
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.stages.evaluate import model_labels, resolve_checkpoints, run

CONF = Path(__file__).resolve().parents[1] / "conf" / "task"


@pytest.fixture(scope="module")
def second_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its weights nudged: a second checkpoint to compare against."""
    out = tmp_path_factory.mktemp("second") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, out / name)
    return out


def eval_config(paths: list[Path], tasks: list[str], **changes) -> EvalConfig:
    cfg = OmegaConf.structured(EvalConfig)
    cfg.model.paths = [str(p) for p in paths]
    cfg.tasks = tasks
    for name in tasks:
        cfg.task[name] = OmegaConf.merge(
            OmegaConf.structured(TaskConfig), OmegaConf.load(CONF / f"{name}.yaml")
        )
        cfg.task[name].limit = 3
        cfg.task[name].max_new_tokens = 8
    cfg.run.progress = False
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_two_checkpoints_side_by_side(tiny_model_dir, second_model_dir, tmp_path, capsys):
    tasks = ["ad_moderation", "general_demo", "arc_easy", "winogrande", "gsm8k"]
    cfg = eval_config([tiny_model_dir, second_model_dir], tasks, reward_model=str(tiny_model_dir))
    results = run(cfg, tmp_path, None)

    labels = list(results["models"])
    assert labels == model_labels([str(tiny_model_dir), str(second_model_dir)])
    assert json.loads((tmp_path / "results.json").read_text()) == results
    for name in tasks:
        entry = results["tasks"][name]
        assert entry["n"] == 3 and entry["config"]["limit"] == 3
        for label in labels:
            values = entry["scores"][label]["values"]
            assert set(values) == set(entry["metrics"]), name  # reward included: RM given
            rows = (tmp_path / "predictions" / label / f"{name}.jsonl").read_text().splitlines()
            assert len(rows) == 3 and "metrics" in json.loads(rows[0])
    assert set(results["tasks"]["ad_moderation"]["metrics"]) >= {
        "gold",
        "verdict_acc",
        "recall",
        "hallucinated",
        "reward",
    }
    out = capsys.readouterr().out
    assert "ad_moderation" in out and "exact_match_flex" in out
    assert "(+" in out or "(-" in out  # deltas of the second model to the first
    assert (tmp_path / "summary.json").exists() and (tmp_path / "config.yaml").exists()


def test_predictions_hold_what_was_scored(tiny_model_dir, tmp_path):
    run(eval_config([tiny_model_dir], ["arc_easy", "bbh"]), tmp_path, None)
    label = model_labels([str(tiny_model_dir)])[0]
    arc = [
        json.loads(line)
        for line in (tmp_path / "predictions" / label / "arc_easy.jsonl").read_text().splitlines()
    ]
    first = arc[0]
    assert first["context"].endswith("Question: Which state of matter has a fixed shape?\nAnswer:")
    assert first["prediction"] == max(range(4), key=lambda i: first["loglik"][i])
    assert first["metrics"]["acc"] == float(first["prediction"] == first["gold"])
    bbh = json.loads((tmp_path / "predictions" / label / "bbh.jsonl").read_text().splitlines()[0])
    assert bbh["prompt"].endswith("\nA:") and "\n\n" not in bbh["prediction"]


def test_fixture_backed_tasks_are_marked_and_each_task_prints_its_line(
    tiny_model_dir, tmp_path, capsys
):
    own = tmp_path / "boolq.jsonl"
    own.write_text(
        "".join(
            json.dumps({"question": f"is {i} even", "passage": f"{i}.", "answer": i % 2 == 0})
            + "\n"
            for i in range(6)
        )
    )
    cfg = eval_config([tiny_model_dir], ["arc_easy", "boolq"], subsample=True)
    cfg.task.boolq.path = str(own)
    cfg.task.boolq.limit = 4
    results = run(cfg, tmp_path / "out", None)
    arc, boolq = results["tasks"]["arc_easy"], results["tasks"]["boolq"]
    assert (arc["label"], arc["fixture"], arc["source"]) == (
        "arc_easy (fixture, 3 items)",
        True,
        "fixture",
    )
    assert (boolq["label"], boolq["fixture"], boolq["n"], boolq["of"]) == ("boolq", False, 4, 6)
    assert results["settings"]["subsample"] is True
    out = capsys.readouterr().out
    assert "arc_easy (fixture, 3 items): 3 of 8 items from fixture  acc " in out
    line = out[out.index("boolq: 4 of 6 items from") :]
    line = line[: line.index("items/s")]  # rich may wrap the long path
    assert own.name in line and line.count("acc ") == 1 and line.count("±") == 1
    [label] = results["models"]
    assert boolq["scores"][label]["items_per_second"] > 0


def test_bad_task_file_fails_before_any_model_loads(tmp_path):
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q"}\n')
    cfg = eval_config([tmp_path / "no-model-here"], ["gsm8k"])
    cfg.task.gsm8k.path = str(bad)
    with pytest.raises(DataError, match=f"{bad}:2: missing field 'answer'"):
        run(cfg, tmp_path / "out", None)


def test_unknown_task_names_the_key(tmp_path):
    cfg = eval_config([tmp_path], [])
    cfg.tasks = ["nope"]
    with pytest.raises(ConfigError, match="tasks: 'nope' has no settings under task.nope"):
        run(cfg, tmp_path / "out", None)


def _finished(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_run_name_finds_the_latest_model(tmp_path):
    model = OmegaConf.structured(EvalConfig).model
    with pytest.raises(ConfigError, match="model.paths: not set, and no run.name"):
        resolve_checkpoints(model, None)
    with pytest.raises(ConfigError, match="no finished sft stage"):
        resolve_checkpoints(model, tmp_path)
    sft = _finished(tmp_path / "sft" / "model")
    assert resolve_checkpoints(model, tmp_path) == [str(sft)]
    ppo = _finished(tmp_path / "ppo" / "model")
    assert resolve_checkpoints(model, tmp_path) == [str(ppo)]
    model.from_stage = "sft"
    assert resolve_checkpoints(model, tmp_path) == [str(sft)]
    model.from_stage = None
    model.paths = [str(sft), str(ppo)]
    assert resolve_checkpoints(model, tmp_path) == [str(sft), str(ppo)]
    model.paths = ["./missing/model"]
    with pytest.raises(ConfigError, match="model.paths: no such model folder"):
        resolve_checkpoints(model, None)
    model.paths, model.name_or_path = [], str(sft)
    assert resolve_checkpoints(model, None) == [str(sft)]


def test_model_labels_are_short_and_unique():
    assert model_labels(["runs/demo/sft/model", "runs/demo/ppo/model"]) == ["sft", "ppo"]
    assert model_labels(["runs/a/sft/model", "runs/b/sft/model"]) == ["a-sft", "b-sft"]
    assert model_labels(["org/llama-7b"]) == ["llama-7b"]
    assert model_labels(["x/m", "x/m"]) == ["x-m-1", "x-m-2"]
