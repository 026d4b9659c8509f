"""Language-model helpers shared by stages: the summed token loss and batched generation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from icegrt_cli.data.formatting import IGNORE, encode_prompt


def lm_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy summed over target tokens (labels != IGNORE), next-token aligned."""
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch.get("position_ids"),
    ).logits
    shifted = logits[:, :-1].flatten(0, 1).float()
    targets = batch["labels"][:, 1:].flatten()
    return F.cross_entropy(shifted, targets, ignore_index=IGNORE, reduction="sum")


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask: generation continues every row at the same column."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


@torch.inference_mode()
def generate_responses(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
    max_new_tokens: int = 128, batch_size: int = 16,
) -> list[str]:
    """Greedy answers to user prompts, formatted with the chat template, cut at EOS."""
    device = next(model.parameters()).device
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        rows = [encode_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
        ids, mask = left_pad(rows, tokenizer.pad_token_id)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
            max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        answers += tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    return [a.strip() for a in answers]
