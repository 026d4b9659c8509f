"""Log-likelihood of continuations given contexts, batched, each shared context run once.

The context / continuation split follows lm-evaluation-harness (`HFLM._encode_pair`, PRs #63,
#546, #1053): trailing whitespace of the context moves to the continuation; the joined string
is encoded once and split at the context's token count, so the continuation's first token is
the one the model would really see; where a token spans the boundary (the joined encoding does
not start with the context's), the two parts are encoded separately and concatenated. BOS
leads the context when the tokenizer adds it by default; an empty context is replaced by the
BOS (else EOS) token.

The score of a continuation is sum_t log p(cont_t | ctx, cont_<t). Choices of one question
usually share their context: it is run once (left-padded, with position ids from the mask) and
its key/value cache is copied to every continuation, which then runs only its own tokens.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from icegrt_cli.data.collate import pad_right
from icegrt_cli.errors import DataError
from icegrt_cli.lm import left_pad


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) split as the harness splits them. The context starts
    with BOS exactly when the tokenizer adds one by default (Llama's do, GPT-2's do not), as
    the harness's `add_bos_token=None` leaves it."""

    def encode(text: str, special: bool = True) -> list[int]:
        return tokenizer(text, add_special_tokens=special).input_ids

    if not context:
        prefix = (
            tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
        return [prefix], encode(continuation, special=False)
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    context_ids = encode(context)
    whole = encode(context + continuation)
    if whole[: len(context_ids)] == context_ids and len(whole) > len(context_ids):
        return context_ids, whole[len(context_ids) :]
    return context_ids, encode(continuation, special=False)  # a token spans the boundary


@dataclass(frozen=True)
class _Row:
    index: int
    """Position of the request in the caller's list."""
    continuation: list[int]


Group = tuple[tuple[int, ...], list[_Row]]
"""One context's token ids and the continuations scored after it."""


def _truncate(
    context: list[int], continuation: list[int], max_length: int, where: str
) -> list[int]:
    """Keep the context's last tokens so that context + continuation[:-1] fits `max_length`."""
    if len(continuation) > max_length:
        raise DataError(
            f"{where}: continuation of {len(continuation)} tokens is longer than "
            f"max_length {max_length}"
        )
    return context[-(max_length + 1 - len(continuation)) :]


def _with_cache(model: PreTrainedModel, cache: DynamicCache, last_only: bool) -> dict[str, Any]:
    """Forward arguments that fill / read `cache` (transformers renamed `past_key_values` to
    `cache`) and, where the model supports it, compute logits for the last position only."""
    params = inspect.signature(model.forward).parameters
    kwargs: dict[str, Any] = {"cache" if "cache" in params else "past_key_values": cache}
    if last_only and "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    return kwargs


Progress = Callable[[int, int], None]
"""Called as (batches done, batches in all) after each batch."""


@torch.inference_mode()
def loglikelihoods(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int,
    max_length: int,
    progress: Progress | None = None,
) -> list[float]:
    """Summed log-prob of each (context, continuation), in the order of `requests`."""
    groups: dict[tuple[int, ...], list[_Row]] = {}
    for index, (context, continuation) in enumerate(requests):
        ctx, cont = encode_pair(tokenizer, context, continuation)
        ctx = _truncate(ctx, cont, max_length, f"request {index}")
        groups.setdefault(tuple(ctx), []).append(_Row(index, cont))
    # Longest first: an out-of-memory batch shows up at once, not at the end of the run.
    ordered = sorted(
        groups.items(), key=lambda g: -(len(g[0]) + max(len(r.continuation) for r in g[1]))
    )
    chunks: list[list[Group]] = []
    for group in ordered:  # whole groups, up to batch_size continuations per chunk
        if not chunks or sum(len(rows) for _, rows in chunks[-1]) + len(group[1]) > batch_size:
            chunks.append([])
        chunks[-1].append(group)
    scores = [0.0] * len(requests)
    for done, chunk in enumerate(chunks, start=1):
        _score_chunk(model, tokenizer.pad_token_id, chunk, scores)
        if progress:
            progress(done, len(chunks))
    return scores


def _score_chunk(
    model: PreTrainedModel,
    pad_id: int,
    chunk: list[Group],
    scores: list[float],
) -> None:
    device = model.device
    # 1. Each distinct context once, left-padded so every row ends at the same column.
    ids, mask = left_pad([list(ctx) for ctx, _ in chunk], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **_with_cache(model, cache, last_only=True),
    )
    first = out.logits[:, -1].float().log_softmax(-1)  # (G, V): predicts continuation token 0

    rows = [(g, row) for g, (_, group_rows) in enumerate(chunk) for row in group_rows]
    owner = torch.tensor([g for g, _ in rows], device=device)
    totals = first[owner, torch.tensor([r.continuation[0] for _, r in rows], device=device)]

    # 2. The rest of each continuation on top of its context's copied cache.
    width = max(len(r.continuation) for _, r in rows) - 1
    if width > 0:
        cache.reorder_cache(owner)
        tails = [r.continuation[:-1] for _, r in rows]  # inputs: every token but the last
        tail_ids = pad_right(tails, pad_id).to(device)  # (R, W)
        tail_mask = pad_right([[1] * len(t) for t in tails], 0).to(device)
        start = mask.sum(-1)[owner]  # (R,) real context length = first continuation position
        out = model(
            input_ids=tail_ids,
            attention_mask=torch.cat([mask[owner], tail_mask], dim=1),
            position_ids=start[:, None] + torch.arange(width, device=device)[None],
            use_cache=True,
            **_with_cache(model, cache, last_only=False),
        )
        logprobs = out.logits.float().log_softmax(-1)  # (R, W, V): predicts tokens 1..W
        targets = pad_right([r.continuation[1:] for _, r in rows], 0).to(device)
        picked = logprobs.gather(-1, targets[..., None])[..., 0]  # (R, W)
        totals = totals + (picked * tail_mask).sum(-1)

    for (_, row), total in zip(rows, totals.tolist(), strict=True):
        scores[row.index] = total
