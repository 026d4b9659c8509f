"""Batched generation until EOS or a stop string, as the harness's `generate_until`.

Greedy by default; with a temperature, one sample per prompt from a fixed seed (the global
random streams are left as they were), so a sampled score is repeatable.

Prompts are sorted by length so a batch pads little, left-padded so every row continues at the
same column, and cut from the left to leave room for the answer. A row stops when its text
contains a stop string; the returned text is cut before the first one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from icegrt_cli.data.formatting import encode_prompt
from icegrt_cli.errors import ConfigError
from icegrt_cli.eval.loglik import Progress
from icegrt_cli.lm import decoding_config, generate_ids, isolated_seed, left_pad


class StopOnStrings(StoppingCriteria):
    """Marks a row finished once its generated text contains any of `stops`.

    Only the last few tokens are decoded each step: a stop string of b bytes spans at most
    b + 1 tokens, since every token carries at least one byte.
    """

    def __init__(self, stops: Sequence[str], tokenizer: PreTrainedTokenizerBase, start: int):
        self.stops, self.tokenizer, self.start = list(stops), tokenizer, start
        self.window = max(len(s.encode("utf-8")) for s in stops) + 1

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object
    ) -> torch.BoolTensor:
        tails = input_ids[:, max(self.start, input_ids.shape[1] - self.window) :]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        hits = [any(stop in text for stop in self.stops) for text in texts]
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """Text before the earliest stop string."""
    ends = [text.find(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
    max_length: int,
    progress: Progress | None = None,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[str]:
    """Continuation text of each prompt (token ids), in the order of `prompts`: greedy, or
    sampled at `temperature` > 0."""
    room = max_length - max_new_tokens
    if room < 1:
        raise ConfigError(
            f"max_new_tokens ({max_new_tokens}) leaves no room for the prompt in "
            f"max_length {max_length}"
        )
    config = decoding_config(tokenizer, max_new_tokens, temperature)
    with isolated_seed(seed, model.device):
        return _generate_batches(
            model, tokenizer, prompts, config, stop, batch_size, room, progress
        )


def _generate_batches(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[int]],
    config: GenerationConfig,
    stop: Sequence[str],
    batch_size: int,
    room: int,
    progress: Progress | None,
) -> list[str]:
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    texts = [""] * len(prompts)
    for done, batch in enumerate(batches, start=1):
        ids, mask = left_pad([list(prompts[i][-room:]) for i in batch], tokenizer.pad_token_id)
        ids, mask = ids.to(model.device), mask.to(model.device)
        criteria = StoppingCriteriaList(
            [StopOnStrings(stop, tokenizer, ids.shape[1])] if stop else []
        )
        out = generate_ids(model, ids, mask, config, stopping_criteria=criteria)
        for i, row in zip(batch, out[:, ids.shape[1] :].tolist(), strict=True):
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            texts[i] = cut_at_stop(tokenizer.decode(row, skip_special_tokens=True), stop)
        if progress:
            progress(done, len(batches))
    return texts


def generate_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 128,
    batch_size: int = 16,
) -> list[str]:
    """Greedy answers to user prompts, formatted with the chat template, cut at EOS."""
    rows = [encode_prompt(tokenizer, p) for p in prompts]
    max_length = getattr(model.config, "max_position_embeddings", 2048)
    texts = generate(
        model,
        tokenizer,
        rows,
        max_new_tokens=max_new_tokens,
        stop=[],
        batch_size=batch_size,
        max_length=max_length,
    )
    return [t.strip() for t in texts]
