"""Rollout layout: left padding, position ids, masking after EOS, log-prob alignment."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from icegrt_cli.config import KLConfig, PPOAlgoConfig, RolloutConfig
from icegrt_cli.data.formatting import encode_prompt
from icegrt_cli.errors import ConfigError
from icegrt_cli.lm import left_pad
from icegrt_cli.ppo.core import logprobs_from_logits
from icegrt_cli.ppo.evaluation import sampled_answers
from icegrt_cli.ppo.experience import build_experience
from icegrt_cli.ppo.rollout import (
    Sequences,
    generation_config,
    logprobs_in_chunks,
    sample,
    token_values,
)
from icegrt_cli.ppo.update import Learner, ppo_update


def _direct_logprobs(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    """Log-probs of `response` after `prompt` from one unpadded forward pass."""
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[:, len(prompt) - 1 : -1]
    return logprobs_from_logits(logits, torch.tensor([response]))[0]


def _sequences(tokenizer, prompts: list[list[int]], responses: list[list[int]]) -> Sequences:
    prompt_ids, prompt_mask = left_pad(prompts, tokenizer.pad_token_id)
    width = max(len(r) for r in responses)
    pad = tokenizer.pad_token_id
    response_ids = torch.tensor([r + [pad] * (width - len(r)) for r in responses])
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (width - len(r)) for r in responses])
    return Sequences(prompt_ids, prompt_mask, response_ids, mask, mask[:, -1] > 0)


def test_left_padded_batch_scores_like_each_row_alone(tiny_lm) -> None:
    model, tokenizer = tiny_lm
    prompts = [tokenizer("the cat is red").input_ids, tokenizer("yes").input_ids]
    responses = [
        tokenizer(" no").input_ids + [tokenizer.eos_token_id],
        tokenizer(" water and fire").input_ids,
    ]
    seq = _sequences(tokenizer, prompts, responses)
    batched, _ = logprobs_in_chunks(model, seq, temperature=1.0, chunk=2)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        alone = _direct_logprobs(model, prompt, response)
        torch.testing.assert_close(batched[row, : len(response)], alone, rtol=1e-4, atol=1e-5)
    inputs = seq.inputs()
    first_real = int(inputs["attention_mask"][1].argmax())
    assert first_real > 0 and inputs["position_ids"][1, first_real].item() == 0


def test_sampling_masks_everything_after_eos(tiny_lm) -> None:
    model, tokenizer = tiny_lm
    eos = tokenizer.eos_token_id

    def likelier_eos(_module, _inputs, logits):  # EOS often, but not always
        logits[..., eos] += 3.0
        return logits

    handle = model.lm_head.register_forward_hook(likelier_eos)
    try:
        torch.manual_seed(0)
        rows = [tokenizer("the dog").input_ids, tokenizer("a blue cat is").input_ids] * 4
        seq = sample(model, tokenizer, rows, RolloutConfig(max_new_tokens=12))
    finally:
        handle.remove()
    lengths = seq.response_mask.sum(dim=1)
    # The branch under test runs: some rows end early with EOS, some are cut at the limit.
    assert seq.has_eos.any() and (~seq.has_eos).any()
    assert (lengths[seq.has_eos] < seq.response_ids.shape[1]).any()
    for ids, mask, has_eos in zip(seq.response_ids, seq.response_mask, seq.has_eos, strict=True):
        valid = int(mask.sum())
        assert torch.all(ids[valid:] == tokenizer.pad_token_id)
        assert eos not in ids[: valid - 1].tolist()
        assert (ids[valid - 1].item() == eos) == bool(has_eos)
        assert has_eos or valid == seq.response_ids.shape[1]


def test_generation_refuses_zero_temperature_and_keeps_pure_sampling(tiny_lm) -> None:
    _, tokenizer = tiny_lm
    with pytest.raises(ConfigError, match="rollout.temperature"):
        generation_config(RolloutConfig(temperature=0.0), tokenizer)
    config = generation_config(RolloutConfig(), tokenizer)
    assert (config.top_k, config.top_p, config.repetition_penalty) == (0, 1.0, 1.0)


def test_values_are_read_where_the_policy_decides(tiny_model_dir) -> None:
    critic = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    critic.eval()
    seq = _sequences(_tok(tiny_model_dir), [[5, 6, 7], [8]], [[9, 10], [11, 12]])
    values = token_values(critic, seq)
    hidden = critic.model(input_ids=torch.tensor([[5, 6, 7, 9, 10]])).last_hidden_state
    expected = critic.score(hidden).squeeze(-1)[0, 2:4]  # states before tokens 9 and 10
    torch.testing.assert_close(values[0], expected, rtol=1e-4, atol=1e-5)


def _tok(path):
    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import load_tokenizer

    return load_tokenizer(ModelConfig(name_or_path=str(path)))


def test_at_zero_learning_rate_ratio_is_one_and_kl_zero(tiny_model_dir, tiny_lm) -> None:
    """PAPER.md pitfall: the rollout pass and the loss pass must score identically."""

    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import load_causal_lm

    _, tokenizer = tiny_lm
    cfg = ModelConfig(name_or_path=str(tiny_model_dir))
    actor = load_causal_lm(tiny_model_dir, cfg, tokenizer)
    reference = load_causal_lm(tiny_model_dir, cfg, tokenizer).eval()
    critic = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    torch.manual_seed(1)
    rows = [tokenizer("the cat").input_ids, tokenizer("is the red dog blue").input_ids] * 4
    seq = sample(actor, tokenizer, rows, RolloutConfig(max_new_tokens=10))
    old, _ = logprobs_in_chunks(actor, seq, 1.0, chunk=3)  # other chunking than the update
    ref, _ = logprobs_in_chunks(reference, seq, 1.0, chunk=8)
    values = torch.zeros_like(old)
    exp, _ = build_experience(
        seq, old, ref, values, torch.randn(8), 0.1, KLConfig(), PPOAlgoConfig()
    )
    assert torch.count_nonzero(exp.kl) == 0
    zero = [
        Learner(m, torch.optim.SGD(m.parameters(), lr=0.0), _NoSchedule(), 0.0)
        for m in (actor, critic)
    ]
    figures = _update(exp, zero[0], zero[1], minibatch_size=4, epochs=2)
    assert figures["ppo/ratio"] == pytest.approx(1.0, abs=1e-6)
    assert figures["ppo/approx_kl"] == pytest.approx(0.0, abs=1e-7)
    assert figures["ppo/clipfrac"] == 0.0


def _update(
    exp,
    actor: Learner,
    critic: Learner | None,
    *,
    minibatch_size: int,
    epochs: int,
    first=None,
    value_coef: float | None = None,
) -> dict[str, float]:
    """One PPO update at the settings these tests share (temperature 1, default KL, step 1)."""
    from accelerate import Accelerator

    return ppo_update(
        exp,
        actor,
        critic,
        ppo=PPOAlgoConfig(minibatch_size=minibatch_size, epochs=epochs),
        kl_cfg=KLConfig(),
        temperature=1.0,
        update_actor=True,
        accelerator=Accelerator(cpu=True),
        generator=torch.Generator().manual_seed(0),
        step=1,
        first=first,
        value_coef=value_coef,
    )


class _NoSchedule:
    def step(self) -> None:
        """A constant learning rate needs no schedule."""


def test_sampled_evaluation_repeats_and_leaves_training_randomness_alone(tiny_lm) -> None:
    model, tokenizer = tiny_lm
    cfg = RolloutConfig(max_new_tokens=8, forward_batch_size=2)
    rows = [
        encode_prompt(tokenizer, p) for p in ("Review this ad.", "What is 2 + 3?", "Name a colour.")
    ]

    def drawn(seed: int) -> list[list[int]]:
        return [
            ids
            for seq in sampled_answers(model, tokenizer, rows, cfg, seed=seed)
            for ids in seq.response_ids.tolist()
        ]

    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    first = drawn(5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert drawn(5) == first
    assert any(drawn(s) != first for s in range(6, 9))  # the seed, not a fixed stream, picks


def test_a_minibatch_is_trimmed_to_its_own_rows_and_scores_as_in_the_batch(tiny_lm) -> None:
    model, tokenizer = tiny_lm
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    responses = [[20, 21, 22, 23, 24], [25, 26], [27]]
    seq = _sequences(tokenizer, prompts, responses)
    batch, _ = logprobs_in_chunks(model, seq, 1.0, chunk=3)
    rows = torch.tensor([2, 1])
    part = seq.select(rows)
    # The widest prompt and the longest response are not among these rows: both shrink.
    assert part.prompt_ids.shape[1] == 3 and part.response_ids.shape[1] == 2
    alone, _ = logprobs_in_chunks(model, part, 1.0, chunk=2)
    valid = part.response_mask.bool()
    torch.testing.assert_close(alone[valid], batch[rows, :2][valid], rtol=1e-4, atol=1e-5)


def test_the_first_pass_is_the_scoring_pass_and_updates_alike(tiny_model_dir, tiny_lm) -> None:
    """One minibatch per epoch: taking old log-probs and values from the update's first forward
    passes gives the numbers the no-grad scoring passes give, and the same update."""

    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import load_causal_lm, load_scalar_model
    from icegrt_cli.ppo.rollout import values_in_chunks
    from icegrt_cli.ppo.update import first_pass

    _, tokenizer = tiny_lm
    cfg = ModelConfig(name_or_path=str(tiny_model_dir))
    torch.manual_seed(1)
    rows = [tokenizer("the cat").input_ids, tokenizer("is the red dog blue").input_ids] * 3
    results = []
    for fused in (False, True):
        torch.manual_seed(2)  # the critic's new head is drawn
        actor = load_causal_lm(tiny_model_dir, cfg, tokenizer)
        critic = load_scalar_model(tiny_model_dir, cfg, tokenizer)
        seq = sample(actor, tokenizer, rows, RolloutConfig(max_new_tokens=8))
        learners = [
            Learner(m, torch.optim.SGD(m.parameters(), lr=0.5), _NoSchedule(), 1.0)
            for m in (actor, critic)
        ]
        old, _ = logprobs_in_chunks(actor, seq, 1.0, chunk=4)
        values = values_in_chunks(critic, seq, chunk=4)
        first = None
        if fused:
            first = first_pass(learners[0], learners[1], seq, update_actor=True)
            fused_old = logprobs_from_logits(first.logits.detach(), seq.response_ids)
            valid = seq.response_mask.bool()
            torch.testing.assert_close(fused_old[valid], old[valid], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(first.values.detach(), values, rtol=1e-5, atol=1e-6)
            old, values = fused_old, first.values.detach()
        exp, _ = build_experience(
            seq, old, old - 0.1, values, torch.arange(6.0), 0.1, KLConfig(), PPOAlgoConfig()
        )
        figures = _update(exp, *learners, minibatch_size=6, epochs=2, first=first)
        results.append((figures, [p.detach().clone() for p in actor.parameters()]))
    (plain, plain_weights), (fused_figures, fused_weights) = results
    assert plain["ppo/policy_loss"] == pytest.approx(fused_figures["ppo/policy_loss"], abs=1e-5)
    assert plain["ppo/value_loss"] == pytest.approx(fused_figures["ppo/value_loss"], rel=1e-4)
    start = load_causal_lm(tiny_model_dir, cfg, tokenizer).parameters()
    assert any(not torch.equal(p, q) for p, q in zip(start, plain_weights, strict=True))
    for p, q in zip(plain_weights, fused_weights, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_under_bf16_autocast_every_epoch_reads_the_weights_the_last_step_wrote(
    tiny_model_dir, tiny_lm
) -> None:
    """A step runs inside one autocast, which caches the bf16 copy of every trainable weight
    it casts: after an optimizer step that copy is stale. It was read: every epoch after the
    first ran the linear layers on the step's first weights. The update must compute what it
    computes with no cache at all."""

    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import load_causal_lm

    _, tokenizer = tiny_lm
    rows = [tokenizer("the cat").input_ids, tokenizer("is the red dog blue").input_ids] * 3
    results = []
    for cache in (True, False):  # the step driver's autocast caches
        context = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache)
        cfg = ModelConfig(name_or_path=str(tiny_model_dir))
        actor = load_causal_lm(tiny_model_dir, cfg, tokenizer)
        torch.manual_seed(1)
        with context:
            seq = sample(actor, tokenizer, rows, RolloutConfig(max_new_tokens=8))
            old, _ = logprobs_in_chunks(actor, seq, 1.0, chunk=6)
            exp, _ = build_experience(
                seq,
                old,
                old,
                torch.zeros_like(old),
                torch.arange(6.0),
                0.0,
                KLConfig(),
                PPOAlgoConfig(),
            )
            optimizer = torch.optim.SGD(actor.parameters(), lr=1.0)
            figures = _update(
                exp, Learner(actor, optimizer, _NoSchedule(), 0.0), None, minibatch_size=6, epochs=3
            )
        results.append((figures, actor.model.layers[0].self_attn.q_proj.weight.detach()))
    (cached, cached_weight), (uncached, uncached_weight) = results
    assert cached["ppo/approx_kl"] == pytest.approx(uncached["ppo/approx_kl"], rel=1e-3)
    torch.testing.assert_close(cached_weight, uncached_weight)


def test_the_shared_value_head_reads_what_the_lm_head_reads_and_learns(
    tiny_model_dir, tiny_lm
) -> None:
    from icegrt_cli.config import ModelConfig
    from icegrt_cli.models import load_causal_lm
    from icegrt_cli.ppo.rollout import logits_and_values, response_logits
    from icegrt_cli.ppo.update import first_pass
    from icegrt_cli.ppo.value_head import PolicyWithValueHead

    _, tokenizer = tiny_lm
    policy = load_causal_lm(
        tiny_model_dir, ModelConfig(name_or_path=str(tiny_model_dir)), tokenizer
    )
    shared = PolicyWithValueHead(policy)
    rows = [tokenizer("the cat").input_ids, tokenizer("is the red dog blue").input_ids] * 3
    torch.manual_seed(1)
    seq = sample(policy, tokenizer, rows, RolloutConfig(max_new_tokens=8))
    logits, values = logits_and_values(shared, seq)
    torch.testing.assert_close(logits, response_logits(policy, seq))
    assert torch.count_nonzero(values) == 0  # the head starts at zero
    torch.nn.init.normal_(shared.value_head.weight)
    _, values = logits_and_values(shared, seq)
    t = seq.response_ids.shape[1]
    hidden = policy.model(**seq.inputs(scored=True)).last_hidden_state[:, -t:]
    torch.testing.assert_close(values, shared.value_head(hidden).squeeze(-1))

    # One loss, one optimizer: the value head fits the returns while the policy updates.
    old = logprobs_from_logits(logits.detach(), seq.response_ids)
    start = [p.detach().clone() for p in policy.parameters()]
    optimizer = torch.optim.Adam(shared.parameters(), lr=1e-2)
    learner = Learner(shared, optimizer, _NoSchedule(), 1.0)
    losses = []
    for _ in range(3):
        first = first_pass(learner, None, seq, update_actor=True, shared=True)
        exp, _ = build_experience(
            seq,
            old,
            old,
            first.values.detach(),
            torch.arange(6.0),
            0.0,
            KLConfig(),
            PPOAlgoConfig(),
        )
        figures = _update(
            exp, learner, None, minibatch_size=6, epochs=2, first=first, value_coef=1.0
        )
        losses.append(figures["ppo/value_loss"])
    assert losses[-1] < losses[0]
    assert any(not torch.equal(p, q) for p, q in zip(policy.parameters(), start, strict=True))
