"""Continuation log-likelihoods against a direct forward pass, and generation until a stop."""

from __future__ import annotations

import pytest
import torch

from icegrt_cli.errors import DataError
from icegrt_cli.eval.generate import StopOnStrings, cut_at_stop, generate
from icegrt_cli.eval.loglik import encode_pair, loglikelihoods


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def direct_loglik(model, context: list[int], continuation: list[int]) -> float:
    """By hand: one unpadded forward over ctx + cont[:-1]; position t predicts token t + 1."""
    ids = torch.tensor([context + continuation[:-1]])
    with torch.no_grad():
        logprobs = model(ids).logits[0].float().log_softmax(-1)
    first = len(context) - 1
    return sum(logprobs[first + i, token].item() for i, token in enumerate(continuation))


class CharTokenizer:
    """Characters as tokens, except "ab" which merges: "a" + "b" across a boundary spans it."""

    bos_token_id, eos_token_id = 0, 1

    def __init__(self, adds_bos: bool = False) -> None:
        self.adds_bos = adds_bos

    def __call__(self, text: str, add_special_tokens: bool = True):
        ids, i = [0] if add_special_tokens and self.adds_bos else [], 0
        while i < len(text):
            if text.startswith("ab", i):
                ids.append(2)
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return type("Encoding", (), {"input_ids": ids})()


def test_encode_pair_moves_trailing_space_and_splits_the_joined_encoding(tiny_lm):
    _, tokenizer = tiny_lm
    context, continuation = encode_pair(tokenizer, "Question: is water blue?\nAnswer: ", "yes")
    assert context == encode(tokenizer, "Question: is water blue?\nAnswer:")
    assert context + continuation == encode(tokenizer, "Question: is water blue?\nAnswer: yes")
    assert (
        continuation == encode(tokenizer, "Question: is water blue?\nAnswer: yes")[len(context) :]
    )


def test_encode_pair_falls_back_when_a_token_spans_the_boundary():
    tokenizer = CharTokenizer()
    # joined "xab" encodes as [x, ab]; the context "xa" alone as [x, a]: not a prefix
    assert encode_pair(tokenizer, "xa", "b") == ([ord("x"), ord("a")], [ord("b")])
    # no spanning token: the split of the joined encoding
    assert encode_pair(tokenizer, "x ", "ab") == ([ord("x")], [ord(" "), 2])
    # an empty context is replaced by BOS
    assert encode_pair(tokenizer, "", "ab") == ([0], [2])


def test_encode_pair_starts_with_bos_exactly_when_the_tokenizer_adds_it():
    with_bos = CharTokenizer(adds_bos=True)
    assert encode_pair(with_bos, "x ", "ab") == ([0, ord("x")], [ord(" "), 2])
    assert encode_pair(with_bos, "xa", "b") == ([0, ord("x"), ord("a")], [ord("b")])
    assert encode_pair(with_bos, "", "ab") == ([0], [2])  # never BOS twice
    assert encode_pair(CharTokenizer(), "x ", "ab") == ([ord("x")], [ord(" "), 2])


def test_loglikelihoods_match_a_direct_forward_pass(tiny_lm):
    model, tokenizer = tiny_lm
    requests = [
        ("The cat is", " red"),  # shared context, several continuation lengths
        ("The cat is", " green because of the water"),
        ("The cat is", " blue"),
        ("Question: total number of dogs?\nAnswer:", " 12"),  # different context length
        ("A dog", " is"),
        ("", "yes"),  # empty context: BOS / EOS prefix
    ]
    got = loglikelihoods(model, tokenizer, requests, batch_size=4, max_length=512)
    want = [direct_loglik(model, *encode_pair(tokenizer, c, x)) for c, x in requests]
    assert got == pytest.approx(want, abs=1e-4)
    assert got == pytest.approx(
        loglikelihoods(model, tokenizer, requests, batch_size=1, max_length=512), abs=1e-4
    )


def test_loglikelihood_hand_example(tiny_lm):
    """One request written out token by token: sum of log p(cont_t | everything before)."""
    model, tokenizer = tiny_lm
    ctx = encode(tokenizer, "Answer:")
    cont = encode(tokenizer, "Answer: yes")[len(ctx) :]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logits = model(ids).logits[0]
    expected = 0.0
    for t in range(len(ctx), len(ctx) + len(cont)):
        expected += torch.log_softmax(logits[t - 1], -1)[ids[0, t]].item()
    got = loglikelihoods(model, tokenizer, [("Answer:", " yes")], batch_size=8, max_length=512)
    assert got[0] == pytest.approx(expected, abs=1e-4)


def test_long_inputs_are_cut_from_the_left(tiny_lm):
    model, tokenizer = tiny_lm
    context = "the water is blue and the fire is red " * 20
    ctx, cont = encode_pair(tokenizer, context, " because")
    max_length = 24
    kept = ctx[-(max_length + 1 - len(cont)) :]
    got = loglikelihoods(
        model, tokenizer, [(context, " because")], batch_size=2, max_length=max_length
    )
    assert len(kept) + len(cont) - 1 == max_length
    assert got[0] == pytest.approx(direct_loglik(model, kept, cont), abs=1e-4)
    with pytest.raises(DataError, match="longer than max_length"):
        loglikelihoods(model, tokenizer, [("a", " b c d e f")], batch_size=1, max_length=2)


def test_progress_reports_batches(tiny_lm):
    model, tokenizer = tiny_lm
    seen = []
    requests = [(f"Answer {i}:", " yes") for i in range(5)] + [("Answer 0:", " no")]
    loglikelihoods(
        model,
        tokenizer,
        requests,
        batch_size=2,
        max_length=512,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]  # the two "Answer 0:" rows share one batch


def test_cut_at_stop():
    assert cut_at_stop("12\n\nQuestion: next", ["Question:", "\n\n"]) == "12"
    assert cut_at_stop("no stop here", ["Q:"]) == "no stop here"


def test_stop_criterion_looks_only_at_generated_text(tiny_lm):
    _, tokenizer = tiny_lm
    prompt = encode(tokenizer, "Question: one")  # the prompt itself holds the stop string
    criterion = StopOnStrings(["Question:"], tokenizer, start=len(prompt))

    def stops(generated: str) -> bool:
        row = torch.tensor([prompt + encode(tokenizer, generated)])
        return criterion(row, None).tolist() == [True]

    assert not stops(" two")
    assert stops(" two\nQuestion:")


def test_generate_is_greedy_batched_and_stops(tiny_lm):
    model, tokenizer = tiny_lm
    prompts = [encode(tokenizer, text) for text in ("The cat is", "A dog", "Question: total")]
    alone = [
        generate(model, tokenizer, [p], max_new_tokens=8, stop=[], batch_size=1, max_length=512)[0]
        for p in prompts
    ]
    batched = generate(
        model, tokenizer, prompts, max_new_tokens=8, stop=[], batch_size=3, max_length=512
    )
    assert batched == alone  # left padding does not change greedy answers
    stop = alone[0][2:4]
    assert len(stop) == 2
    cut = generate(
        model, tokenizer, prompts[:1], max_new_tokens=8, stop=[stop], batch_size=1, max_length=512
    )[0]
    assert cut == alone[0][: alone[0].find(stop)]
