"""Rollouts: sample responses with the actor, then score them without gradients.

Shapes: B rows; P = prompt width (left-padded, so every response starts at column P);
T = response width (right-padded after the first EOS).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from icegrt_cli.adapters import transformers_model
from icegrt_cli.config import RolloutConfig
from icegrt_cli.data.formatting import encode_prompt
from icegrt_cli.errors import ConfigError
from icegrt_cli.lm import decoding_config, generate_ids, left_pad
from icegrt_cli.ppo.core import entropy_from_logits, logprobs_from_logits, response_mask
from icegrt_cli.reward.scoring import head_outputs


@dataclass
class Sequences:
    """Prompt + response token layout shared by every forward pass of one rollout batch."""

    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, T) pad after the first EOS
    response_mask: torch.Tensor  # (B, T) float: 1 up to and including the first EOS
    has_eos: torch.Tensor  # (B,) bool

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    def inputs(
        self, rows: slice | torch.Tensor = slice(None), scored: bool = False
    ) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask and position_ids for rows of the joined sequences.

        Positions count real tokens only: with left padding, position 0 is the first real token
        of each row, exactly as during generation (trlx #508). `scored`: without the last
        response column, which predicts nothing PPO scores (causal attention: no other
        position sees it), so a scoring pass reads P + T - 1 tokens.
        """
        response = slice(None, -1) if scored else slice(None)
        ids = torch.cat([self.prompt_ids[rows], self.response_ids[rows][:, response]], dim=1)
        mask = torch.cat(
            [self.prompt_mask[rows], self.response_mask[rows][:, response].long()], dim=1
        )
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}

    def select(self, rows: torch.Tensor) -> Sequences:
        """These rows, trimmed to their own widths: prompt columns that are padding in every
        row and response columns past the longest response go (positions count real tokens,
        so nothing any model reads changes)."""
        prompt_mask = self.prompt_mask[rows]
        first = int(prompt_mask.any(dim=0).long().argmax()) if prompt_mask.numel() else 0
        response_mask = self.response_mask[rows]
        width = response_width(response_mask)
        return Sequences(
            self.prompt_ids[rows][:, first:],
            prompt_mask[:, first:],
            self.response_ids[rows][:, :width],
            response_mask[:, :width],
            self.has_eos[rows],
        )


def response_width(mask: torch.Tensor) -> int:
    """Columns up to the longest response of a (B, T) prefix mask (at least 1)."""
    return max(int(mask.sum(dim=1).max()), 1) if mask.numel() else mask.shape[1]


def generation_config(
    cfg: RolloutConfig, tokenizer: PreTrainedTokenizerBase, greedy: bool = False
) -> GenerationConfig:
    """Pure sampling at the rollout temperature (top-k / top-p only when asked), or greedy:
    every knob explicit, the checkpoint's saved defaults never consulted (`icegrt_cli.lm`)."""
    if cfg.temperature <= 0:
        raise ConfigError(f"rollout.temperature: must be > 0 for sampling, got {cfg.temperature}")
    return decoding_config(
        tokenizer, cfg.max_new_tokens, 0.0 if greedy else cfg.temperature, cfg.top_k, cfg.top_p
    )


@torch.no_grad()
def sample(
    actor: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_rows: list[list[int]],
    cfg: RolloutConfig,
    greedy: bool = False,
) -> Sequences:
    """One response per prompt (KV cache, left padding), cut at the first EOS."""
    device = next(actor.parameters()).device
    prompt_ids, prompt_mask = left_pad(prompt_rows, tokenizer.pad_token_id)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    out = generate_ids(actor, prompt_ids, prompt_mask, generation_config(cfg, tokenizer, greedy))
    return _cut_at_eos(tokenizer, prompt_ids, prompt_mask, out[:, prompt_ids.shape[1] :])


def _cut_at_eos(
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
) -> Sequences:
    mask, has_eos = response_mask(response_ids, tokenizer.eos_token_id, tokenizer.pad_token_id)
    # Whatever follows the first EOS is padding from here on, for every model that reads it.
    response_ids = torch.where(mask, response_ids, tokenizer.pad_token_id)
    return Sequences(prompt_ids, prompt_mask, response_ids, mask.float(), has_eos)


@torch.no_grad()
def sampler_scorer_gap(
    actor: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_rows: list[list[int]],
    cfg: RolloutConfig,
) -> float:
    """Largest |log-prob difference| over the sampled tokens between the distribution
    `generate` drew them from (its processed scores) and the one PPO scores them under
    (softmax(logits / temperature) of a full forward pass). Float noise when they agree; far
    from 0 when any sampling setting PPO does not model (top-k / top-p, a checkpoint default)
    reshaped the draw."""
    device = next(actor.parameters()).device
    prompt_ids, prompt_mask = left_pad(prompt_rows, tokenizer.pad_token_id)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    config = generation_config(cfg, tokenizer)
    config.output_scores = config.return_dict_in_generate = True
    out = generate_ids(actor, prompt_ids, prompt_mask, config)
    seq = _cut_at_eos(tokenizer, prompt_ids, prompt_mask, out.sequences[:, prompt_ids.shape[1] :])
    drawn = torch.stack(out.scores, dim=1).float().log_softmax(-1)  # (B, T, V)
    sampler = drawn.gather(-1, seq.response_ids.unsqueeze(-1)).squeeze(-1)
    scorer, _ = logprobs_in_chunks(actor, seq, cfg.temperature, cfg.forward_batch_size)
    valid = seq.response_mask.bool()
    return (sampler - scorer).abs()[valid].max().item() if valid.any() else 0.0


def response_logits(model: torch.nn.Module, seq: Sequences, rows=slice(None)) -> torch.Tensor:
    """Logits that predict each response token: (B, T, V). Position P-1+t predicts token t.

    The LM head runs on those T positions only (`logits_to_keep`), not on the prompt's; fp32
    for the log-softmax (a no-op in fp32, one copy under bf16 autocast).
    """
    return _response_outputs(model, seq, rows).logits[:, -seq.response_ids.shape[1] :].float()


def logits_and_values(
    model: torch.nn.Module, seq: Sequences, rows=slice(None)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Response logits (B, T, V) and values (B, T) of the actor with a value head
    (ppo.shared_backbone) from one forward pass."""
    out = _response_outputs(model, seq, rows)
    t = seq.response_ids.shape[1]
    return out.logits[:, -t:].float(), out["values"][:, -t:]


def _response_outputs(model: torch.nn.Module, seq: Sequences, rows=slice(None)) -> Any:
    t = seq.response_ids.shape[1]
    keep = {"logits_to_keep": t} if _keeps_logits(model) else {}
    return model(**seq.inputs(rows, scored=True), **keep)


def _keeps_logits(model: torch.nn.Module) -> bool:
    """Whether the causal LM inside any wrappers takes `logits_to_keep` (transformers >= 4.45
    decoders); others compute every position's logits and are sliced."""
    forward = transformers_model(model).forward
    return "logits_to_keep" in inspect.signature(forward).parameters


def token_values(critic: torch.nn.Module, seq: Sequences, rows=slice(None)) -> torch.Tensor:
    """Per-token values (B, T) from a scalar-head model: the head applied to every hidden state.

    The value of token t is read where the policy decides it (position P-1+t). The critic is
    called as a whole (`head_outputs`), so under DDP its gradients are all-reduced.
    """
    t = seq.response_ids.shape[1]
    return head_outputs(critic, **seq.inputs(rows, scored=True))[:, -t:]


@torch.inference_mode()
def logprobs_in_chunks(
    model: torch.nn.Module,
    seq: Sequences,
    temperature: float,
    chunk: int,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, T) of the sampled tokens (and entropy), `chunk` rows per forward pass."""
    logps, entropies = [], []
    for start in range(0, seq.response_ids.shape[0], chunk):
        rows = slice(start, start + chunk)
        logits = response_logits(model, seq, rows)
        logps.append(logprobs_from_logits(logits, seq.response_ids[rows], temperature))
        if with_entropy:
            entropies.append(entropy_from_logits(logits, temperature))
    return torch.cat(logps), (torch.cat(entropies) if with_entropy else None)


@torch.inference_mode()
def values_in_chunks(
    critic: torch.nn.Module, seq: Sequences, chunk: int, shared: bool = False
) -> torch.Tensor:
    """Values (B, T), `chunk` rows per forward pass: of a critic, or (`shared`) of the actor's
    value head."""

    def values(rows: slice) -> torch.Tensor:
        return (
            logits_and_values(critic, seq, rows)[1] if shared else token_values(critic, seq, rows)
        )

    return torch.cat(
        [values(slice(s, s + chunk)) for s in range(0, seq.response_ids.shape[0], chunk)]
    )


def decode_responses(tokenizer: PreTrainedTokenizerBase, seq: Sequences) -> list[str]:
    """Response text without EOS and padding, as the gold scorer and people read it."""
    texts = []
    for ids, mask in zip(seq.response_ids, seq.response_mask, strict=True):
        texts.append(tokenizer.decode(ids[mask.bool()], skip_special_tokens=True).strip())
    return texts


def shares_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """Same vocabulary and chat template: token ids mean the same to both models."""
    return a.get_vocab() == b.get_vocab() and a.chat_template == b.chat_template


def reward_rows(
    seq: Sequences,
    tokenizer: PreTrainedTokenizerBase,
    rm_tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
) -> list[list[int]]:
    """What the reward model reads for each rollout row: exactly the tokens the policy produced.

    With a shared tokenizer these are the prompt and response ids themselves: EOS only where the
    policy ended the answer (a truncated answer is scored as the unfinished text it is), special
    tokens the policy sampled kept. With another tokenizer the response is decoded with its
    special tokens and re-encoded, and the reward model's EOS is added only where the policy
    produced one.
    """
    rows = []
    same = shares_tokenizer(tokenizer, rm_tokenizer)
    for i, prompt in enumerate(prompts):
        response = seq.response_ids[i][seq.response_mask[i].bool()].tolist()
        if same:
            rows.append(seq.prompt_ids[i][seq.prompt_mask[i].bool()].tolist() + response)
            continue
        ended = bool(seq.has_eos[i])
        text = tokenizer.decode(response[:-1] if ended else response, skip_special_tokens=False)
        rows.append(
            encode_prompt(rm_tokenizer, prompt)
            + rm_tokenizer(text, add_special_tokens=False).input_ids
            + ([rm_tokenizer.eos_token_id] if ended else [])
        )
    return rows
