"""A ChatML checkpoint whose pad token is its EOS (SmolLM2's case): icegrt adds a distinct pad,
grows the embeddings, and the answer's closing EOS stays a target that padding never hides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from icegrt_cli.config import ModelConfig
from icegrt_cli.data.collate import LMCollator
from icegrt_cli.data.formatting import IGNORE, encode_sft
from icegrt_cli.lm import lm_loss_sum
from icegrt_cli.model_import import import_gguf
from icegrt_cli.models import load_causal_lm, load_tokenizer
from tests.gguf_files import write_tiny_gguf


@pytest.fixture(scope="module")
def chatml_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chatml")
    import_gguf(write_tiny_gguf(folder / "tiny-chat.gguf"), folder / "hf")
    return folder / "hf"


def test_pad_is_added_distinct_from_eos_and_the_embeddings_grow(chatml_folder: Path) -> None:
    cfg = ModelConfig(name_or_path=str(chatml_folder))
    tokenizer = load_tokenizer(cfg)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    model = load_causal_lm(chatml_folder, cfg, tokenizer)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) == 360
    assert model.config.pad_token_id == tokenizer.pad_token_id


def test_padded_batch_loss_is_the_sum_of_each_answers_loss_eos_included(
    chatml_folder: Path,
) -> None:
    cfg = ModelConfig(name_or_path=str(chatml_folder))
    tokenizer = load_tokenizer(cfg)
    model = load_causal_lm(chatml_folder, cfg, tokenizer).eval()
    records = [
        {"prompt": "Is this ad allowed?", "response": "No: an unproven health claim."},
        {"prompt": "Buy one get one free on shoes", "response": "Yes."},
    ]
    rows = [encode_sft(tokenizer, record) for record in records]
    for row in rows:  # the answer ends with EOS, and EOS is a target
        assert row.input_ids[-1] == tokenizer.eos_token_id == row.labels[-1]
    collate = LMCollator(tokenizer.pad_token_id)
    batch = collate(rows)
    assert batch["input_ids"][1, -1] == tokenizer.pad_token_id  # the short row is padded
    assert (batch["labels"][1][batch["attention_mask"][1] == 0] == IGNORE).all()
    with torch.no_grad():
        together = lm_loss_sum(model, batch)
        alone = sum(lm_loss_sum(model, collate([row])) for row in rows)
    assert together.item() == pytest.approx(alone.item(), rel=1e-5)
    assert batch["weight"].item() == sum(
        sum(label != IGNORE for label in row.labels[1:]) for row in rows
    )
