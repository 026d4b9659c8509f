"""Reward-model math and scoring: hand-worked Bradley-Terry values, last-token pooling.

Expected values are written as the arithmetic that produces them.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from icegrt_cli.config import ModelConfig, SourceConfig
from icegrt_cli.errors import ConfigError
from icegrt_cli.judges import GoldCandidate
from icegrt_cli.models import load_scalar_model, load_tokenizer
from icegrt_cli.reward.gold_check import GoldPair, gold_pairs, ranking_agreement
from icegrt_cli.reward.loss import bradley_terry_loss, pair_metrics, std_from_moments
from icegrt_cli.reward.scoring import encode_scored, pad_batch, score_texts, sequence_scores
from icegrt_cli.reward.stats import RewardStats


def nll_sigmoid(x: float) -> float:
    """-log sigma(x)."""
    return math.log1p(math.exp(-x))


CHOSEN = torch.tensor([2.0, 0.0])
REJECTED = torch.tensor([1.0, 1.0])


def test_bradley_terry_hand_worked() -> None:
    # differences 1 and -1: -log sigma(1) = 0.3133, -log sigma(-1) = 1.3133
    loss = bradley_terry_loss(CHOSEN, REJECTED)
    assert nll_sigmoid(1.0) == pytest.approx(0.31326, abs=1e-5)
    assert nll_sigmoid(-1.0) == pytest.approx(1.31326, abs=1e-5)
    assert loss.item() == pytest.approx(1.62652, abs=1e-5)


def test_bradley_terry_margin() -> None:
    # margin 0.5: differences become 1 - 0.5 = 0.5 and -1 - 0.5 = -1.5
    loss = bradley_terry_loss(CHOSEN, REJECTED, margin=0.5)
    expected = nll_sigmoid(0.5) + nll_sigmoid(-1.5)  # 0.47408 + 1.70141
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert loss.item() == pytest.approx(2.17549, abs=1e-5)


def test_bradley_terry_margin_per_pair() -> None:
    loss = bradley_terry_loss(CHOSEN, REJECTED, margin=torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(nll_sigmoid(0.0) + nll_sigmoid(-1.0), abs=1e-5)


def test_bradley_terry_center_penalty() -> None:
    # c * (r_c^2 + r_r^2) / 2 per pair: 0.1 * ((4 + 1) / 2 + (0 + 1) / 2) = 0.1 * 3 = 0.3
    loss = bradley_terry_loss(CHOSEN, REJECTED, center_coef=0.1)
    assert loss.item() == pytest.approx(1.62652 + 0.3, abs=1e-5)


def test_bradley_terry_gradient_pushes_chosen_up() -> None:
    # d/dr_c [-log sigma(r_c - r_r)] = -sigma(r_r - r_c): for r_c = r_r it is -0.5
    chosen = torch.zeros(1, requires_grad=True)
    rejected = torch.zeros(1, requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    assert chosen.grad.item() == pytest.approx(-0.5)
    assert rejected.grad.item() == pytest.approx(0.5)


def test_bradley_terry_is_stable_for_large_gaps() -> None:
    loss = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0]))
    assert loss.item() == pytest.approx(200.0)


def test_pair_metrics_are_sums() -> None:
    figures = pair_metrics(CHOSEN, REJECTED)
    assert figures["accuracy"] == 1  # 2 > 1; 0 < 1
    assert figures["margin"] == pytest.approx(1 + -1)
    assert figures["score_mean"] == pytest.approx((2 + 1) / 2 + (0 + 1) / 2)
    assert figures["score_sq_mean"] == pytest.approx((4 + 1) / 2 + (0 + 1) / 2)
    # per-pair means after the engine divides by 2 pairs: E[r] = 1, E[r^2] = 1.5, std = 0.7071
    std = std_from_moments(figures["score_mean"] / 2, figures["score_sq_mean"] / 2)
    assert std == pytest.approx(torch.tensor([2.0, 0.0, 1.0, 1.0]).std(correction=0).item())


def test_std_from_moments_never_negative() -> None:
    assert std_from_moments(1.0, 1.0 - 1e-12) == 0.0


def test_ranking_agreement_overall_and_per_kind() -> None:
    better = torch.tensor([1.0, 2.0, 0.0, 5.0])
    worse = torch.tensor([0.0, 3.0, 0.0, 1.0])
    rate, by_kind = ranking_agreement(better, worse, ["a", "a", "b", "b"])
    assert rate == 0.5  # the tie at index 2 counts as disagreement
    assert by_kind == {"a": 0.5, "b": 0.5}


DEMO_CHECK = SourceConfig(
    kind="demo",
    path="pairs",
    judge="icegrt_cli.demo.plugin:ad_judge",
    gold_pairs="icegrt_cli.demo.plugin:gold_check_pairs",
)


def test_demo_gold_pairs_put_the_gold_better_answer_first() -> None:
    from icegrt_cli.data.loading import read_jsonl
    from icegrt_cli.demo import demo_file, gold_score

    pairs, ties = gold_pairs([DEMO_CHECK], seed=0)
    assert len(pairs) + ties == 300
    golds = {r["prompt"]: r["gold"] for _, r in read_jsonl(demo_file("test"))}
    for pair in pairs[:50]:
        gold = golds[pair.prompt]
        assert gold_score(pair.better, gold).score > gold_score(pair.worse, gold).score


def longer_is_better(response: str, record: dict) -> float:
    """A user's judge: a bare number is a score without parts."""
    return 1.0 if len(response) > len(record["prompt"]) else 0.0


def two_candidates(seed: int) -> list[GoldCandidate]:
    record = {"prompt": "Q?"}
    return [
        GoldCandidate("Q?", "a", "a long answer", "length", record),
        GoldCandidate("Q?", "b", "c", "tie", record),
    ]


def test_a_users_judge_orders_the_gold_pairs_and_needs_naming() -> None:
    here = "tests.test_reward_loss"
    source = SourceConfig(
        kind="file", judge=f"{here}:longer_is_better", gold_pairs=f"{here}:two_candidates"
    )
    pairs, ties = gold_pairs([source, SourceConfig(kind="file")], seed=0)
    assert pairs == [GoldPair("Q?", "a long answer", "a", "length")] and ties == 1
    with pytest.raises(ConfigError, match=r"data.sources.0.judge: gold_pairs needs a judge"):
        gold_pairs([SourceConfig(gold_pairs=f"{here}:two_candidates")], seed=0)


def test_reward_stats_round_trip_and_missing_file(tmp_path) -> None:
    stats = RewardStats.of(torch.tensor([1.0, 2.0, 3.0]), "three numbers")
    assert (stats.mean, stats.std, stats.count) == (2.0, 1.0, 3)  # sample std (n - 1)
    stats.save(tmp_path)
    assert RewardStats.load(tmp_path) == stats
    with pytest.raises(ConfigError, match="reward_stats.json"):
        RewardStats.load(tmp_path / "elsewhere")


@pytest.fixture(scope="module")
def scalar_model(tiny_model_dir):
    """The tiny fixture LM as a reward model: same backbone, a fresh seeded scalar head."""
    cfg = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer = load_tokenizer(cfg)
    torch.manual_seed(0)
    return load_scalar_model(tiny_model_dir, cfg, tokenizer).eval(), tokenizer


def test_right_padded_batch_scores_like_each_row_alone(scalar_model) -> None:
    model, tokenizer = scalar_model
    short = encode_scored(tokenizer, "Is water red?", "no")
    long = encode_scored(tokenizer, "Is the cat blue?", "no because the cat is red and blue")
    assert len(long) > len(short) + 5
    with torch.no_grad():
        ids, mask = pad_batch([short, long], tokenizer.pad_token_id)
        together = sequence_scores(model, ids, mask)
        alone = [
            sequence_scores(model, *pad_batch([row], tokenizer.pad_token_id))
            for row in (short, long)
        ]
    assert together[0].item() == pytest.approx(alone[0].item(), abs=1e-5)
    assert together[1].item() == pytest.approx(alone[1].item(), abs=1e-5)
    assert together[0].item() != pytest.approx(together[1].item(), abs=1e-5)


def test_score_is_taken_at_the_eos_from_the_mask(scalar_model) -> None:
    model, tokenizer = scalar_model
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    row = encode_scored(tokenizer, "Is water red?", "no")
    assert row[-1] == eos  # scored the way it was trained: EOS appended
    with torch.no_grad():
        alone = sequence_scores(model, *pad_batch([row], pad))
        ids, mask = pad_batch([row, row + [eos] * 3], pad)
        ids[0, len(row) :] = eos  # filler that is not the pad id: only the mask marks the end
        ours = sequence_scores(model, ids, mask)
        by_ids = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    assert ours[0].item() == pytest.approx(alone.item(), abs=1e-5)
    # Pooling by token ids ("rightmost non-pad") would score the last filler token instead.
    assert by_ids[0].item() != pytest.approx(alone.item(), abs=1e-4)


def test_scores_match_plain_transformers(scalar_model, tmp_path) -> None:
    model, tokenizer = scalar_model
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    prompts, responses = ["Is water red?", "Is fire blue?"], ["no", "yes because fire is blue"]
    ours = score_texts(model, tokenizer, prompts, responses)
    rows = [encode_scored(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    ids, mask = pad_batch(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        theirs = plain(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
