"""Data loading, checking, mixing and formatting: errors name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from icegrt_cli.config import DataConfig, SourceConfig
from icegrt_cli.data.collate import LMCollator, pack
from icegrt_cli.data.formatting import IGNORE, check_sft_record, encode_sft
from icegrt_cli.data.loading import read_source
from icegrt_cli.data.mixing import split_holdout, weighted_blend
from icegrt_cli.data.splits import load_splits
from icegrt_cli.errors import DataError
from icegrt_cli.lm import lm_loss_sum


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _file(path: Path) -> SourceConfig:
    return SourceConfig(kind="file", path=str(path))


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "sft.jsonl", [json.dumps({"prompt": "a", "response": "b"}), "{not json", ""]
    )
    with pytest.raises(DataError, match=rf"^{path}:2: not valid JSON"):
        read_source(_file(path), "sft", check_sft_record)


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "sft.jsonl",
        [json.dumps({"prompt": "a", "response": "b"}), json.dumps({"prompt": "a"})],
    )
    with pytest.raises(DataError, match=rf"^{path}:2: missing field 'response'"):
        read_source(_file(path), "sft", check_sft_record)


def test_empty_data_set_and_missing_file(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(DataError, match="the data set is empty"):
        read_source(_file(empty), "sft", check_sft_record)
    with pytest.raises(DataError, match="no such data file"):
        read_source(_file(tmp_path / "nope.jsonl"), "sft", check_sft_record)


def test_field_remapping(tmp_path: Path) -> None:
    path = _write(tmp_path / "qa.jsonl", [json.dumps({"question": "q", "answer": "a"})])
    source = SourceConfig(
        kind="file", path=str(path), fields={"prompt": "question", "response": "answer"}
    )
    (record,) = read_source(source, "sft", check_sft_record)
    assert (record["prompt"], record["response"]) == ("q", "a")


def test_csv_through_datasets(tmp_path: Path) -> None:
    path = tmp_path / "sft.csv"
    path.write_text("prompt,response\nhello,world\nfoo,bar\n")
    records = read_source(_file(path), "sft", check_sft_record)
    assert [r["response"] for r in records] == ["world", "bar"]


def test_weighted_blend_counts() -> None:
    domain, general = list(range(100)), list(range(100, 140))
    blend = weighted_blend([(domain, 1.0), (general, 0.5)], seed=0)
    assert len(blend) == 120
    assert sum(x >= 100 for x in blend) == 20
    assert len(weighted_blend([(general, 2.5)], seed=0)) == 100


def test_holdout_is_seeded_and_disjoint() -> None:
    train, held = split_holdout(list(range(40)), 0.1, seed=3)
    assert len(held) == 4 and not set(train) & set(held)
    assert split_holdout(list(range(40)), 0.1, seed=3) == (train, held)


def test_demo_blend_mixes_domain_and_general() -> None:
    data = DataConfig(
        sources=[
            SourceConfig(kind="demo"),
            SourceConfig(kind="demo", path="general_sft", weight=0.5),
        ]
    )
    train, held = load_splits(data, "sft", check_sft_record, seed=0)
    tasks = [r["task"] for r in train]
    assert tasks.count("general") == round(0.5 * 950)
    assert tasks.count("ad_moderation") == 2850
    assert len(held) == 150 + 50


def test_prompt_is_masked_and_response_ends_with_eos(tiny_lm) -> None:
    _, tokenizer = tiny_lm
    enc = encode_sft(tokenizer, {"prompt": "is the cat red", "response": "yes it is"})
    targets = [t for t in enc.labels if t != IGNORE]
    assert targets[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(targets, skip_special_tokens=True) == "yes it is"
    n_prompt = enc.labels.index(targets[0])
    assert tokenizer.decode(enc.input_ids[:n_prompt]).endswith("<|assistant|>\n")


def test_messages_format_trains_on_every_assistant_turn(tiny_lm) -> None:
    _, tokenizer = tiny_lm
    record = {
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
            {"role": "assistant", "content": "four"},
        ]
    }
    enc = encode_sft(tokenizer, record)
    targets = [t for t in enc.labels if t != IGNORE]
    assert targets.count(tokenizer.eos_token_id) == 2
    text = tokenizer.decode(enc.input_ids)
    assert text.index("two") < text.index("three") < text.index("four")


def test_collator_weight_counts_target_tokens_and_packing_keeps_them(tiny_lm) -> None:
    _, tokenizer = tiny_lm
    rows = [
        encode_sft(tokenizer, {"prompt": f"question {i}", "response": "answer " * i})
        for i in range(1, 6)
    ]
    collate = LMCollator(tokenizer.pad_token_id)
    plain = collate(rows)
    packed_rows = pack(rows, max_length=64)
    packed = collate(packed_rows)
    assert len(packed_rows) < len(rows)
    expected = sum(sum(t != IGNORE for t in r.labels) for r in rows)
    assert plain["weight"].item() == expected == packed["weight"].item()
    assert packed["position_ids"][0, 0].item() == 0


def test_per_example_loss_is_the_sum_of_each_examples_mean(tiny_lm) -> None:
    model, tokenizer = tiny_lm
    rows = [
        encode_sft(tokenizer, {"prompt": f"question {i}", "response": "answer " * (3 * i)})
        for i in range(1, 5)
    ]
    collate = LMCollator(tokenizer.pad_token_id, per_example=True)
    batch = collate(rows)
    assert batch["weight"].item() == 4
    # Each example's target tokens share weight 1/n: a row of weights sums to 1.
    assert torch.allclose(batch["token_weight"].sum(dim=1), torch.ones(4))
    with torch.no_grad():
        means = [
            lm_loss_sum(model, LMCollator(tokenizer.pad_token_id)(rows[i : i + 1]))
            / sum(t != IGNORE for t in rows[i].labels[1:])
            for i in range(4)
        ]
        assert torch.allclose(lm_loss_sum(model, batch), sum(means), atol=1e-4)
        per_token = LMCollator(tokenizer.pad_token_id)(rows)
        token_mean = lm_loss_sum(model, per_token) / per_token["weight"]
        assert not torch.allclose(token_mean, sum(means) / 4, atol=1e-3)  # lengths differ
    # Packed: positions restart per example, and each example still sums to 1.
    packed = collate(pack(rows, max_length=128))
    assert packed["input_ids"].shape[0] < 4 and packed["weight"].item() == 4
    assert torch.isclose(packed["token_weight"].sum(), torch.tensor(4.0))
