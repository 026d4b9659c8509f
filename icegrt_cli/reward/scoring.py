"""Score text with a reward model: the one definition of "the reward" every stage shares.

A sequence is scored the way the reward model was trained: the prompt through the chat
template, then the response ended by EOS; right padding; the score is the head's output at
the last real token (the EOS), found from the attention mask (PAPER.md, "Which token gets
scored"). Scores are raw head logits, never squashed by a sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from icegrt_cli.data.collate import last_token_index, pad_right
from icegrt_cli.data.formatting import encode_prompt, encode_response
from icegrt_cli.errors import ConfigError


def encode_scored(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> list[int]:
    """Token ids of chat-templated `prompt` + `response` + EOS, as the reward model reads them."""
    return encode_prompt(tokenizer, prompt) + encode_response(tokenizer, response)


def pad_batch(rows: Sequence[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask), both (B, T) long, padded on the right."""
    return pad_right(rows, pad_id), pad_right([[1] * len(r) for r in rows], 0)


def score_head(model: torch.nn.Module) -> torch.nn.Module:
    """The one-output head of a transformers `...ForSequenceClassification` decoder model."""
    inner = getattr(model, "module", model)  # DDP / DeepSpeed keep the model in `.module`
    head = getattr(inner, "score", None)
    if not isinstance(head, torch.nn.Module):
        raise ConfigError(
            f"reward_model: {type(inner).__name__} has no `score` head; use a decoder-only "
            "architecture loaded as AutoModelForSequenceClassification"
        )
    return head


def head_outputs(model: torch.nn.Module, **inputs: Tensor) -> Tensor:
    """(B, T) fp32 output of the scalar head at every position, from one call of `model` itself.

    A forward hook on the head catches its per-token output, so the call runs the whole model's
    own forward, through any DDP / FSDP / DeepSpeed wrapper: every parameter is used inside it
    and its gradients are reduced across processes. Calling the backbone and head directly
    would bypass the wrapper, and each process would step with its own gradient.
    """
    caught: list[Tensor] = []
    handle = score_head(model).register_forward_hook(lambda _m, _i, out: caught.append(out))
    try:
        model(**inputs)
    finally:
        handle.remove()
    return caught[-1].squeeze(-1).float()


def sequence_scores(model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """(B,) fp32 scores at each row's last real token of `input_ids` (B, T).

    Transformers pools at the rightmost token whose id is not the pad id; we pool at the last
    position of `attention_mask` instead, so a pad id inside the text or pad == EOS cannot move
    the score (TRL #2778). The head's per-token output comes from `head_outputs`. For ordinary
    text both poolings pick the same token, so a folder loaded with plain transformers scores
    exactly as here.
    """
    per_token = head_outputs(model, input_ids=input_ids, attention_mask=attention_mask)
    last = last_token_index(attention_mask).unsqueeze(-1)  # (B, 1)
    return per_token.gather(-1, last).squeeze(-1)


@torch.inference_mode()
def score_sequences(
    model: torch.nn.Module, rows: Sequence[list[int]], pad_id: int, batch_size: int = 32
) -> Tensor:
    """(N,) fp32 CPU scores of already-encoded `rows`, in their order.

    Rows are batched by length (less padding); scoring runs in eval mode and restores the
    model's previous mode.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    scores = torch.empty(len(rows))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = pad_batch([rows[i] for i in chunk], pad_id)
            scores[chunk] = sequence_scores(model, ids.to(device), mask.to(device)).cpu()
    finally:
        model.train(was_training)
    return scores


def score_texts(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 32,
) -> Tensor:
    """(N,) reward scores of (prompt, response) pairs; reuse for PPO rollouts and evaluation.

    `tokenizer` must be the reward model's own (saved in its folder): the text is re-encoded
    with it, so an actor with another vocabulary or size can be scored by any reward model.
    """
    rows = [encode_scored(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    return score_sequences(model, rows, tokenizer.pad_token_id, batch_size)
