"""Language-model helpers shared by stages: the summed token loss and the one way we call
`generate`.

Generation settings are explicit and complete. A checkpoint's own `generation_config` (a chat
model ships e.g. temperature 0.6, top_p 0.9) is never consulted: transformers 4.50-4.57 put it
in place of every argument equal to a library default, and 5.x fills every unset field from it,
so "sample at temperature 1" or "greedy" would silently mean the checkpoint's settings, and PPO
would score log-probs under a distribution it did not sample from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from icegrt_cli.adapters import transformers_model
from icegrt_cli.data.formatting import IGNORE


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


NEUTRAL_DECODING: dict[str, Any] = {
    "num_beams": 1,
    "typical_p": 1.0,
    "min_p": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": None,
    "min_new_tokens": 0,
}
"""Every other setting that can reshape the next-token distribution or end a row early, set to
'off': the sampled distribution is softmax(logits / temperature), cut only by top_k / top_p."""

SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p")
SHOWN_KEYS = (*SAMPLING_KEYS, "repetition_penalty", "max_new_tokens")


def decoding_config(
    tokenizer: PreTrainedTokenizerBase,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> GenerationConfig:
    """Greedy decoding (temperature 0) or sampling at `temperature`, every knob explicit."""
    sampling = (
        {"temperature": temperature, "top_k": top_k, "top_p": top_p} if (temperature > 0) else {}
    )
    return GenerationConfig(
        do_sample=temperature > 0,
        **sampling,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **NEUTRAL_DECODING,
    )


@contextmanager
def checkpoint_defaults_ignored(model: PreTrainedModel) -> Iterator[None]:
    """Inside the block the model's saved `generation_config` is the library's blank one, so
    `generate` takes its settings from the config it is given and nowhere else."""
    saved = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = saved


def generate_ids(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    config: GenerationConfig,
    **kwargs: Any,
) -> Any:
    """`model.generate` with exactly `config` (see `checkpoint_defaults_ignored`), in eval mode;
    the model's previous mode is restored."""
    model = transformers_model(model)  # a PEFT wrapper would keep its own generation_config
    was_training = model.training
    model.eval()
    try:
        with checkpoint_defaults_ignored(model):
            return model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                **kwargs,
            )
    finally:
        model.train(was_training)


def describe_decoding(model: PreTrainedModel, config: GenerationConfig) -> str:
    """One line: the settings generation runs with, and the checkpoint's own settings that were
    set aside (so a user sees why samples differ from the model card's)."""
    shown = " ".join(f"{key}={getattr(config, key, None)}" for key in SHOWN_KEYS)
    saved = getattr(model, "generation_config", None)
    blank = GenerationConfig()
    ignored = {
        key: value
        for key in (*SAMPLING_KEYS, *NEUTRAL_DECODING)
        if saved is not None
        and (value := getattr(saved, key, None)) is not None
        and value != getattr(blank, key, None)
        and value != getattr(config, key, None)
    }
    note = (
        (
            " (the checkpoint's generation_config, not used: "
            + ", ".join(f"{k}={v}" for k, v in ignored.items())
            + ")"
        )
        if ignored
        else ""
    )
    return f"generation: {shown}, every other logits processor off{note}"
