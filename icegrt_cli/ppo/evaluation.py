"""Held-out checks during PPO: greedy answers scored by the reward model and the gold scorer.

The two scores side by side are what separate a real gain from reward hacking: reward up while
gold goes down is over-optimisation of the reward model.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from icegrt_cli.eval.domain import gold_metrics
from icegrt_cli.lm import generate_responses
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


@torch.no_grad()
def evaluate_policy(
    actor: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: list[dict[str, Any]],
    reward_model: PreTrainedModel, rm_tokenizer: PreTrainedTokenizerBase, max_new_tokens: int,
    batch_size: int,
) -> tuple[dict[str, float], list[str]]:
    """Greedy answers to held-out prompts: mean reward-model score, length and gold figures."""
    prompts = [r["prompt"] for r in records]
    responses = generate_responses(actor, tokenizer, prompts, max_new_tokens, batch_size)
    scores = score_texts(reward_model, rm_tokenizer, prompts, responses, batch_size)
    lengths = [len(tokenizer(r, add_special_tokens=False).input_ids) for r in responses]
    figures = {"score": scores.mean().item(), "length": sum(lengths) / max(len(lengths), 1)}
    figures.update(gold_figures(responses, records))
    return figures, responses
