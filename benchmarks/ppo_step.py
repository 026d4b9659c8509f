"""Time the parts of one PPO step on the tiny preset: sampling, scoring passes, the update.

Reports the median of several repeats and each part's ratio to a baseline measured in the
same run (one forward + backward of the actor on the same batch), so numbers from different
machines can be compared. Usage: python benchmarks/ppo_step.py [--repeats 5] [--batch 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from icegrt_cli import plugins
from icegrt_cli.config import KLConfig, ModelConfig, PPOAlgoConfig, RolloutConfig
from icegrt_cli.data.formatting import encode_prompt
from icegrt_cli.data.loading import read_jsonl
from icegrt_cli.models import build_preset_config, load_causal_lm, load_scalar_model, load_tokenizer
from icegrt_cli.ppo.experience import build_experience
from icegrt_cli.ppo.rollout import logprobs_in_chunks, response_logits, sample, values_in_chunks
from icegrt_cli.ppo.update import Learner, ppo_update


def _timed(fn):
    """(result, seconds) of calling fn()."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


class _Constant:
    def step(self) -> None:
        """Constant learning rate."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = ModelConfig()
    tokenizer = load_tokenizer(cfg)
    folder = Path(tempfile.mkdtemp()) / "tiny"
    AutoModelForCausalLM.from_config(build_preset_config(cfg, tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    actor = load_causal_lm(folder, cfg, tokenizer)
    reference = load_causal_lm(folder, cfg, tokenizer).eval()
    critic = load_scalar_model(folder, cfg, tokenizer)
    prompts = [
        encode_prompt(tokenizer, r["prompt"])
        for _, r in read_jsonl(plugins.demo_file("prompts", "benchmark prompts"))[: args.batch]
    ]
    rollout = RolloutConfig(max_new_tokens=args.new_tokens, batch_size=args.batch)
    # A freshly initialised model rarely samples EOS among 2k tokens: responses run to the
    # full length, so every repeat does the same work.

    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    learners = [
        Learner(m, torch.optim.AdamW(m.parameters(), lr=1e-5), _Constant(), 1.0)
        for m in (actor, critic)
    ]
    timings: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        timings.setdefault(name, []).append(seconds)

    def score(seq):
        return (
            logprobs_in_chunks(actor, seq, 1.0, 32)[0],
            logprobs_in_chunks(reference, seq, 1.0, 32)[0],
            values_in_chunks(critic, seq, 32),
        )

    def update(exp) -> None:
        ppo_update(
            exp,
            learners[0],
            learners[1],
            ppo=PPOAlgoConfig(),
            kl_cfg=KLConfig(),
            beta=0.05,
            temperature=1.0,
            update_actor=True,
            accelerator=accelerator,
            generator=torch.Generator().manual_seed(0),
            step=1,
        )

    def baseline(seq) -> None:
        response_logits(actor, seq).sum().backward()
        actor.zero_grad(set_to_none=True)

    for _ in range(args.repeats):
        seq, seconds = _timed(partial(sample, actor, tokenizer, prompts, rollout))
        record("sample", seconds)
        (old, ref, values), seconds = _timed(partial(score, seq))
        record("score (3 no-grad passes)", seconds)
        exp, _ = build_experience(
            seq, old, ref, values, torch.randn(len(prompts)), 0.05, KLConfig(), PPOAlgoConfig()
        )
        record("update (2 epochs x 2 minibatches)", _timed(partial(update, exp))[1])
        record("baseline: actor forward+backward", _timed(partial(baseline, seq))[1])

    base = statistics.median(timings["baseline: actor forward+backward"])
    print(f"batch {args.batch}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    print(f"{'part':40s} {'median s':>9s} {'x baseline':>11s}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:40s} {median:9.3f} {median / base:11.2f}")


if __name__ == "__main__":
    main()
