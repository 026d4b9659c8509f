"""What a real checkpoint exposes and the tiny demo hides: the sampler draws from the scored
distribution whatever the checkpoint's generation_config says; KL in the loss has the gradient
it claims; dropout is off for real; limits come from the checkpoint; the reward model scores
exactly the tokens the policy produced; PPO's figures do not depend on the minibatch split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, GenerationConfig

from icegrt_cli.config import KLConfig, ModelConfig, PPOAlgoConfig, PPOConfig, RolloutConfig
from icegrt_cli.data.formatting import encode_prompt
from icegrt_cli.errors import ConfigError
from icegrt_cli.eval.generate import generate
from icegrt_cli.lm import describe_decoding
from icegrt_cli.models import (
    checkpoint_context_length,
    load_causal_lm,
    load_scalar_model,
    load_tokenizer,
)
from icegrt_cli.ppo.core import kl_penalty
from icegrt_cli.ppo.experience import build_experience
from icegrt_cli.ppo.rollout import (
    Sequences,
    logprobs_in_chunks,
    reward_rows,
    sampler_scorer_gap,
    values_in_chunks,
)
from icegrt_cli.ppo.update import Learner, ppo_update
from icegrt_cli.stages.ppo import check

CHAT_MODEL_SAMPLING = {
    "do_sample": True,
    "temperature": 0.6,
    "top_p": 0.9,
    "top_k": 20,
    "min_p": 0.05,
    "repetition_penalty": 1.3,
}
"""Sampling defaults of the kind a chat checkpoint ships in generation_config.json."""


def _copy_model(source: Path, target: Path, **config_changes: object) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(config_changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def chat_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = _copy_model(tiny_model_dir, tmp_path_factory.mktemp("chat") / "model")
    GenerationConfig(**CHAT_MODEL_SAMPLING).save_pretrained(folder)
    return folder


def _load(folder: Path):
    cfg = ModelConfig(name_or_path=str(folder))
    tokenizer = load_tokenizer(cfg)
    return load_causal_lm(folder, cfg, tokenizer), tokenizer


def _rows(tokenizer) -> list[list[int]]:
    return [encode_prompt(tokenizer, p) for p in ("the red cat", "water and fire is", "a dog")]


# -- 1. Sampling and scoring use one distribution ------------------------------------------


def test_samples_come_from_the_scored_distribution_whatever_the_checkpoint_says(
    chat_model_dir: Path,
) -> None:
    model, tokenizer = _load(chat_model_dir)
    assert model.generation_config.temperature == 0.6  # the checkpoint's defaults are loaded
    torch.manual_seed(0)
    gap = sampler_scorer_gap(model, tokenizer, _rows(tokenizer), RolloutConfig(max_new_tokens=12))
    assert gap < 1e-4
    # The check can fail: a truncated sampler is visibly not the scored distribution.
    torch.manual_seed(0)
    cut = sampler_scorer_gap(
        model, tokenizer, _rows(tokenizer), RolloutConfig(max_new_tokens=12, top_k=3)
    )
    assert cut > 0.1
    assert model.generation_config.temperature == 0.6  # and they are left as they were


def test_under_bf16_rounding_stays_below_the_warning_and_a_cut_does_not(
    chat_model_dir: Path,
) -> None:
    """bf16 rounding alone made every bf16 run warn that its samples were biased."""
    from icegrt_cli.ppo.setup import GAP_TOLERANCE

    model, tokenizer = _load(chat_model_dir)
    gaps = []
    for top_k in (0, 3):
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cfg = RolloutConfig(max_new_tokens=12, top_k=top_k)
            gaps.append(sampler_scorer_gap(model, tokenizer, _rows(tokenizer), cfg))
    rounding, cut = gaps
    assert GAP_TOLERANCE["fp32"] < rounding < GAP_TOLERANCE["bf16"] < cut


def test_greedy_generation_is_greedy_on_a_checkpoint_that_samples(chat_model_dir: Path) -> None:
    model, tokenizer = _load(chat_model_dir)
    rows = _rows(tokenizer)
    runs = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        runs.append(
            generate(
                model,
                tokenizer,
                rows,
                max_new_tokens=8,
                stop=[],
                batch_size=3,
                max_length=512,
                seed=seed,
            )
        )
    assert runs[0] == runs[1] == runs[2]
    for row, text in zip(rows, runs[0], strict=True):
        ids = list(row)
        with torch.no_grad():
            for _ in range(8):
                ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
                if ids[-1] == tokenizer.eos_token_id:
                    ids.pop()
                    break
        assert text == tokenizer.decode(ids[len(row) :], skip_special_tokens=True)


def test_rollout_greedy_and_sampled_settings_are_logged_with_what_was_set_aside(
    chat_model_dir: Path,
) -> None:
    from icegrt_cli.ppo.rollout import generation_config

    model, tokenizer = _load(chat_model_dir)
    line = describe_decoding(model, generation_config(RolloutConfig(), tokenizer))
    shown, _, ignored = line.partition("not used:")
    assert "do_sample=True temperature=1.0 top_k=0 top_p=1.0 repetition_penalty=1.0" in shown
    for key, value in CHAT_MODEL_SAMPLING.items():
        if key != "do_sample":
            assert f"{key}={value}" in ignored


# -- 2. KL in the loss: the gradient each estimator really gives ----------------------------


def _expected_gradient(estimator: str, logits: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """E_{y ~ pi}[grad k(y)] by exact enumeration over a small vocabulary: the gradient a
    sampled loss term has on average (samples are drawn from pi, which is held fixed)."""
    theta = logits.clone().requires_grad_(True)
    logp, ref_logp = theta.log_softmax(-1), ref.log_softmax(-1)
    weights = logp.exp().detach()
    (weights * kl_penalty(logp, ref_logp, estimator)).sum().backward()
    return theta.grad


def _kl_gradient(logits: torch.Tensor, ref: torch.Tensor, reverse: bool) -> torch.Tensor:
    theta = logits.clone().requires_grad_(True)
    logp, ref_logp = theta.log_softmax(-1), ref.log_softmax(-1)
    p, q = (ref_logp, logp) if reverse else (logp, ref_logp)
    (p.exp() * (p - q)).sum().backward()
    return theta.grad


def test_kl_estimators_as_losses_have_the_gradients_the_docs_state() -> None:
    torch.manual_seed(0)
    logits, ref = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    k1, k2, k3 = (_expected_gradient(e, logits, ref) for e in ("k1", "k2", "k3"))
    forward = _kl_gradient(logits, ref, reverse=False)
    reverse = _kl_gradient(logits, ref, reverse=True)
    assert forward.abs().max() > 0.05 and not torch.allclose(forward, reverse, atol=1e-3)
    torch.testing.assert_close(k1, torch.zeros_like(k1), atol=1e-12, rtol=0)  # inert
    torch.testing.assert_close(k2, forward)  # KL(pi || pi_ref)
    torch.testing.assert_close(k3, reverse)  # KL(pi_ref || pi)


def _ppo_settings(**kl: object):
    cfg = OmegaConf.structured(PPOConfig())
    cfg.kl = OmegaConf.merge(cfg.kl, kl)
    return cfg


def test_k1_in_the_loss_is_refused_before_anything_loads() -> None:
    with pytest.raises(ConfigError, match="kl.estimator=k1 with kl.in_reward=false"):
        check(_ppo_settings(in_reward=False, estimator="k1"))
    for fine in (
        {"in_reward": False, "estimator": "k2"},
        {"in_reward": False, "estimator": "k3"},
        {"in_reward": True, "estimator": "k1"},
        {"in_reward": False, "estimator": "k1", "kind": "none"},
    ):
        check(_ppo_settings(**fine))


# -- 3. Dropout off for real -------------------------------------------------------------------


def test_attention_dropout_of_a_checkpoint_is_off_in_training_mode(
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    folder = _copy_model(tiny_model_dir, tmp_path / "dropout", attention_dropout=0.5)
    ids = torch.tensor([[5, 9, 17, 33, 60, 71, 80, 99]])
    plain = AutoModelForCausalLM.from_pretrained(folder).train()
    torch.manual_seed(0)
    assert not torch.equal(plain(input_ids=ids).logits, plain(input_ids=ids).logits)
    cfg = ModelConfig(name_or_path=str(folder))
    tokenizer = load_tokenizer(cfg)
    for load in (load_causal_lm, load_scalar_model):
        model = load(folder, cfg, tokenizer).train()
        torch.testing.assert_close(
            model(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0
        )


def test_gradient_checkpointing_reaches_the_critic_too(tiny_model_dir: Path) -> None:
    cfg = ModelConfig(name_or_path=str(tiny_model_dir), gradient_checkpointing=True)
    tokenizer = load_tokenizer(cfg)
    for load in (load_causal_lm, load_scalar_model):
        assert load(tiny_model_dir, cfg, tokenizer).is_gradient_checkpointing, load.__name__


# -- 4. Limits come from the loaded checkpoint ---------------------------------------------------


def test_context_length_is_the_checkpoints_not_the_size_presets(
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    folder = _copy_model(tiny_model_dir, tmp_path / "long", max_position_embeddings=4096)
    assert ModelConfig().max_position_embeddings == 512
    assert checkpoint_context_length(folder, ModelConfig(name_or_path=str(folder))) == 4096


# -- 5. The reward model reads exactly what the policy produced --------------------------------


def _sequences(
    prompts: list[list[int]], responses: list[list[int]], pad: int, eos: int
) -> Sequences:
    width = max(len(r) for r in responses)
    from icegrt_cli.lm import left_pad

    prompt_ids, prompt_mask = left_pad(prompts, pad)
    response_ids = torch.tensor([r + [pad] * (width - len(r)) for r in responses])
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (width - len(r)) for r in responses])
    has_eos = torch.tensor([r[-1] == eos for r in responses])
    return Sequences(prompt_ids, prompt_mask, response_ids, mask, has_eos)


def test_truncated_answers_reach_the_reward_model_without_an_added_eos(tiny_lm) -> None:
    _, tokenizer = tiny_lm
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    user = tokenizer.convert_tokens_to_ids("<|user|>")
    prompts = _rows(tokenizer)[:3]
    words = tokenizer(" water and fire", add_special_tokens=False).input_ids
    responses = [words + [eos], list(words), words[:1] + [user] + words[1:]]
    seq = _sequences(prompts, responses, pad, eos)
    rows = reward_rows(seq, tokenizer, tokenizer, ["p1", "p2", "p3"])
    assert rows == [p + r for p, r in zip(prompts, responses, strict=True)]
    assert rows[1][-1] != eos  # the cut answer is scored as the unfinished text it is
    assert user in rows[2]  # a special token the policy sampled is seen, not dropped


def test_another_reward_tokenizer_gets_eos_only_where_the_policy_ended(
    tiny_lm,
    tmp_path: Path,
) -> None:
    from icegrt_cli.models import train_tokenizer
    from tests.conftest import _corpus

    _, tokenizer = tiny_lm
    other = train_tokenizer(_corpus(), vocab_size=300)
    eos = tokenizer.eos_token_id
    words = tokenizer(" the red cat", add_special_tokens=False).input_ids
    seq = _sequences(
        _rows(tokenizer)[:2], [words + [eos], list(words)], tokenizer.pad_token_id, eos
    )
    ended, cut = reward_rows(seq, tokenizer, other, ["the red cat", "a dog"])
    assert ended[-1] == other.eos_token_id and cut[-1] != other.eos_token_id
    assert other.decode(cut[len(encode_prompt(other, "a dog")) :]) == " the red cat"


# -- PPO's figures do not depend on how the batch is split -------------------------------------


class _Constant:
    def step(self) -> None:
        """A constant learning rate needs no schedule."""


def test_one_minibatch_of_eight_and_eight_of_one_report_the_same_losses(tiny_model_dir, tiny_lm):
    _, tokenizer = tiny_lm
    cfg = ModelConfig(name_or_path=str(tiny_model_dir))
    actor = load_causal_lm(tiny_model_dir, cfg, tokenizer)
    critic = load_scalar_model(tiny_model_dir, cfg, tokenizer)
    texts = ["no", " water and fire", " the red cat is blue", " yes"] * 2
    responses = [
        tokenizer(t, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for t in texts
    ]
    seq = _sequences(
        _rows(tokenizer)[:2] * 4, responses, tokenizer.pad_token_id, tokenizer.eos_token_id
    )
    assert len(set(seq.response_mask.sum(dim=1).tolist())) > 2  # rows of different lengths
    old, _ = logprobs_in_chunks(actor, seq, 1.0, chunk=8)
    values = values_in_chunks(critic, seq, chunk=8)
    exp, _ = build_experience(
        seq, old, old, values, torch.randn(8), 0.1, KLConfig(), PPOAlgoConfig()
    )
    figures = []
    for size in (8, 1):
        learners = [
            Learner(m, torch.optim.AdamW(m.parameters(), lr=0.0), _Constant(), 1.0)
            for m in (actor, critic)
        ]
        figures.append(
            ppo_update(
                exp,
                *learners,
                ppo=PPOAlgoConfig(minibatch_size=size, epochs=1),
                kl_cfg=KLConfig(),
                temperature=1.0,
                update_actor=True,
                accelerator=Accelerator(cpu=True),
                generator=torch.Generator().manual_seed(0),
                step=1,
            )
        )
    whole, split = figures
    assert whole["ppo/value_loss"] > 0
    for key in (
        "ppo/policy_loss",
        "ppo/value_loss",
        "ppo/entropy",
        "ppo/approx_kl",
        "ppo/clipfrac",
        "ppo/ratio",
    ):
        assert split[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-7), key


def test_kl_goes_in_the_reward_or_in_the_loss_never_both(tiny_lm) -> None:
    _, tokenizer = tiny_lm
    eos = tokenizer.eos_token_id
    responses = [
        tokenizer(t, add_special_tokens=False).input_ids + [eos] for t in (" no", " water and fire")
    ]
    seq = _sequences(_rows(tokenizer)[:2], responses, tokenizer.pad_token_id, eos)
    old = torch.full(seq.response_ids.shape, -2.0)
    ref = old - 0.5  # d = 0.5 on every token
    scores = torch.tensor([1.0, -1.0])
    in_reward, _ = build_experience(
        seq, old, ref, torch.zeros_like(old), scores, 0.1, KLConfig(estimator="k2"), PPOAlgoConfig()
    )
    in_loss, _ = build_experience(
        seq,
        old,
        ref,
        torch.zeros_like(old),
        scores,
        0.1,
        KLConfig(estimator="k2", in_reward=False),
        PPOAlgoConfig(),
    )
    mask = seq.response_mask
    assert in_reward.loss_beta == 0.0 and in_loss.loss_beta == 0.1
    # k2 = d^2 / 2 = 0.125 per token: -0.0125 a token in the reward, nothing in the other.
    assert (in_reward.rewards.sum(dim=1) - scores).tolist() == pytest.approx(
        (-0.0125 * mask.sum(dim=1)).tolist(), abs=1e-6
    )
    assert in_loss.rewards.sum(dim=1).tolist() == pytest.approx(scores.tolist())
    assert in_loss.select(torch.tensor([1])).loss_beta == 0.1
