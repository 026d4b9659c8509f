"""Held-out checks during PPO: answers scored by the reward model and the gold scorer.

The two scores side by side are what separate a real gain from reward hacking: reward up while
gold goes down is over-optimisation of the reward model. Greedy answers show the policy's mode;
sampled answers, at the rollout temperature, the distribution PPO actually optimises. The two
can move differently: PPO mostly removes the bad answers the mode already avoided.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from icegrt_cli.config import RolloutConfig
from icegrt_cli.data.formatting import encode_prompt
from icegrt_cli.eval.domain import gold_metrics
from icegrt_cli.lm import generate_responses, isolated_seed
from icegrt_cli.ppo.rollout import decode_responses, sample
from icegrt_cli.reward.scoring import score_texts


def gold_figures(responses: list[str], records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean gold score and its parts over the records that carry ground truth (`gold`)."""
    graded = [gold_metrics(r, rec["gold"])
              for r, rec in zip(responses, records, strict=True) if "gold" in rec]
    if not graded:
        return {}
    return {
        ("gold" if key == "gold" else f"gold_{key}"): sum(g[key] for g in graded) / len(graded)
        for key in graded[0]
    }


def sampled_responses(
    actor: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
    cfg: RolloutConfig, seed: int,
) -> list[str]:
    """One sampled answer per prompt, from a fixed seed and without touching the global RNG
    streams, so every evaluation draws alike and training (and resume) is not disturbed."""
    rows = [encode_prompt(tokenizer, p) for p in prompts]
    responses: list[str] = []
    with isolated_seed(seed, next(actor.parameters()).device):
        for start in range(0, len(rows), cfg.forward_batch_size):
            seq = sample(actor, tokenizer, rows[start : start + cfg.forward_batch_size], cfg)
            responses += decode_responses(tokenizer, seq)
    return responses


def score_responses(
    prompts: list[str], responses: list[str], records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase, reward_model: PreTrainedModel,
    rm_tokenizer: PreTrainedTokenizerBase, batch_size: int,
) -> dict[str, float]:
    """Mean reward-model score, length in tokens and gold figures of answers to `records`."""
    scores = score_texts(reward_model, rm_tokenizer, prompts, responses, batch_size)
    lengths = [len(tokenizer(r, add_special_tokens=False).input_ids) for r in responses]
    figures = {"score": scores.mean().item(), "length": sum(lengths) / max(len(lengths), 1)}
    figures.update(gold_figures(responses, records))
    return figures


@torch.no_grad()
def evaluate_policy(
    actor: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: list[dict[str, Any]],
    reward_model: PreTrainedModel, rm_tokenizer: PreTrainedTokenizerBase, rollout: RolloutConfig,
    sampled_seed: int | None = None,
) -> tuple[dict[str, float], list[str]]:
    """Greedy answers to held-out prompts (and, with `sampled_seed`, sampled ones, their keys
    prefixed `sampled_`): reward-model score, length and gold figures; the greedy answers."""
    prompts = [r["prompt"] for r in records]
    batch = rollout.forward_batch_size
    greedy = generate_responses(actor, tokenizer, prompts, rollout.max_new_tokens, batch)
    figures = score_responses(prompts, greedy, records, tokenizer, reward_model, rm_tokenizer,
                              batch)
    if sampled_seed is not None:
        drawn = sampled_responses(actor, tokenizer, prompts, rollout, sampled_seed)
        sampled = score_responses(prompts, drawn, records, tokenizer, reward_model,
                                  rm_tokenizer, batch)
        figures.update({f"sampled_{k}": v for k, v in sampled.items()})
    return figures, greedy
