"""Held-out checks during PPO: answers scored by the reward model and the sources' judges.

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
from icegrt_cli.judges import judge_records
from icegrt_cli.lm import isolated_seed
from icegrt_cli.ppo.rollout import Sequences, decode_responses, reward_rows, sample
from icegrt_cli.reward.scoring import score_sequences


def gold_figures(responses: list[str], records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean gold score and its parts (`gold_<part>`) from the judges the records' sources name;
    records without a judge, or that their judge cannot score, are left out."""
    return judge_records(responses, records)


def answers(
    actor: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_rows: list[list[int]],
    cfg: RolloutConfig,
    greedy: bool,
) -> list[Sequences]:
    """One answer per prompt through the rollout sampler, `cfg.forward_batch_size` at a time."""
    size = cfg.forward_batch_size
    return [
        sample(actor, tokenizer, prompt_rows[i : i + size], cfg, greedy=greedy)
        for i in range(0, len(prompt_rows), size)
    ]


def sampled_answers(
    actor: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_rows: list[list[int]],
    cfg: RolloutConfig,
    seed: int,
) -> list[Sequences]:
    """Answers sampled from a fixed seed without touching the global RNG streams, so every
    evaluation draws alike and training (and resume) is not disturbed."""
    with isolated_seed(seed, next(actor.parameters()).device):
        return answers(actor, tokenizer, prompt_rows, cfg, greedy=False)


def score_answers(
    batches: list[Sequences],
    prompts: list[str],
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    reward_model: PreTrainedModel,
    rm_tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
) -> tuple[dict[str, float], list[str]]:
    """Mean reward-model score (of the exact tokens, as in rollouts), length in tokens and gold
    figures of the answers to `records`; and the answers as text."""
    rows: list[list[int]] = []
    texts: list[str] = []
    lengths: list[float] = []
    for seq in batches:
        done = len(texts)
        rows += reward_rows(seq, tokenizer, rm_tokenizer, prompts[done : done + len(seq)])
        texts += decode_responses(tokenizer, seq)
        lengths += seq.response_mask.sum(dim=1).tolist()
    scores = score_sequences(reward_model, rows, rm_tokenizer.pad_token_id, batch_size)
    figures = {"score": scores.mean().item(), "length": sum(lengths) / max(len(lengths), 1)}
    figures.update(gold_figures(texts, records))
    return figures, texts


@torch.no_grad()
def evaluate_policy(
    actor: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[dict[str, Any]],
    reward_model: PreTrainedModel,
    rm_tokenizer: PreTrainedTokenizerBase,
    rollout: RolloutConfig,
    sampled_seed: int | None = None,
) -> tuple[dict[str, float], list[str]]:
    """Greedy answers to held-out prompts (and, with `sampled_seed`, sampled ones, their keys
    prefixed `sampled_`): reward-model score, length and gold figures; the greedy answers."""
    prompts = [r["prompt"] for r in records]
    rows = [encode_prompt(tokenizer, p) for p in prompts]
    batch = rollout.forward_batch_size
    greedy = answers(actor, tokenizer, rows, rollout, greedy=True)
    figures, texts = score_answers(
        greedy, prompts, records, tokenizer, reward_model, rm_tokenizer, batch
    )
    if sampled_seed is not None:
        drawn = sampled_answers(actor, tokenizer, rows, rollout, sampled_seed)
        sampled, _ = score_answers(
            drawn, prompts, records, tokenizer, reward_model, rm_tokenizer, batch
        )
        figures.update({f"sampled_{k}": v for k, v in sampled.items()})
    return figures, texts
