"""Language-model helpers shared by stages: the summed token loss and batched generation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from icegrt_cli.data.formatting import IGNORE, encode_prompt


def lm_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy summed over target tokens (labels != IGNORE), next-token aligned; each
    token scaled by `token_weight` when the batch has it (per-example averaging)."""
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch.get("position_ids"),
    ).logits
    shifted = logits[:, :-1].flatten(0, 1).float()
    targets = batch["labels"][:, 1:].flatten()
    if "token_weight" not in batch:
        return F.cross_entropy(shifted, targets, ignore_index=IGNORE, reduction="sum")
    per_token = F.cross_entropy(shifted, targets, ignore_index=IGNORE, reduction="none")
    return (per_token * batch["token_weight"].flatten()).sum()


@contextmanager
def isolated_seed(seed: int, device: torch.device) -> Iterator[None]:
    """Draw from `seed` inside the block and leave the global random streams (CPU, and the
    device's when it is a GPU) as they were: repeatable draws that do not disturb training."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask: generation continues every row at the same column."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def generate_responses(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
    max_new_tokens: int = 128, batch_size: int = 16,
) -> list[str]:
    """Greedy answers to user prompts, formatted with the chat template, cut at EOS."""
    from icegrt_cli.eval.generate import generate

    rows = [encode_prompt(tokenizer, p) for p in prompts]
    max_length = getattr(model.config, "max_position_embeddings", 2048)
    texts = generate(model, tokenizer, rows, max_new_tokens=max_new_tokens, stop=[],
                     batch_size=batch_size, max_length=max_length)
    return [t.strip() for t in texts]
