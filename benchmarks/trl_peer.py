"""icegrt against TRL's PPO trainer on the same workload, run interleaved (A B A B ...).

TRL is never a dependency of icegrt: give it a venv of its own (the CPU torch build first, or
pip pulls a CUDA build), then point `--trl-python` at it:

    python3 -m venv /work/trl-venv
    /work/trl-venv/bin/pip install torch==2.13.0
    /work/trl-venv/bin/pip install trl==1.5.0
    python benchmarks/trl_peer.py --trl-python /work/trl-venv/bin/python [--runs 3]

Both sides load the same model folder (policy, reference, reward model and critic alike) and
the same 20-token prompts written by `ppo_throughput.py`, with the same settings: batch 16,
48 new tokens at temperature 1, 4 epochs over 1 minibatch, KL coefficient 0.05 (k1, in the
reward), clip 0.2, value clip 0.2, gamma 1, lambda 0.95, whitened advantages, no entropy
bonus, fp32 (or bf16 autocast over fp32 weights). Each run is a fresh process; a side's
episodes/s counts its training loop only (TRL: `trainer.train()`), and its peak resident
memory is the whole process's. The runs alternate so that machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ppo_throughput import (  # noqa: E402  (a script beside it, not a package)
    build_workload,
    report,
    run_icegrt,
    run_measured,
    workload_args,
)


def trl_worker(args: argparse.Namespace) -> None:
    """Inside TRL's venv: one PPO run of the workload; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    root = args.workdir
    model_dir = str(root / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = [json.loads(line)["input_ids"] for line in (root / "prompts.jsonl").open()]
    train = Dataset.from_dict({"input_ids": ids})

    def scalar() -> torch.nn.Module:
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)

    config = PPOConfig(
        output_dir=str(root / "trl-out"),
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        num_mini_batches=1,
        num_ppo_epochs=args.epochs,
        total_episodes=args.episodes,
        response_length=args.response_tokens,
        local_rollout_forward_batch_size=args.batch,
        temperature=1.0,
        learning_rate=1e-4,
        kl_coef=0.05,
        cliprange=0.2,
        cliprange_value=0.2,
        gamma=1.0,
        lam=0.95,
        num_sample_generations=0,
        save_strategy="no",
        report_to=[],
        logging_steps=1_000_000,
        use_cpu=True,
        bf16=args.precision == "bf16",
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        ref_model=AutoModelForCausalLM.from_pretrained(model_dir),
        reward_model=scalar(),
        value_model=scalar(),
        train_dataset=train,
        eval_dataset=train.select(range(args.batch)),
    )
    start = time.perf_counter()
    trainer.train()
    loop = time.perf_counter() - start
    print(json.dumps({"loop_s": loop, "episodes_per_s": args.episodes / loop}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    workload_args(parser)
    parser.add_argument("--trl-python", default="/work/trl-venv/bin/python")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        trl_worker(args)
        return
    root = build_workload(args)
    icegrt, trl = [], []
    for index in range(args.runs):
        icegrt.append(run_icegrt(root, args, index))
        trl.append(run_trl(root, args))
        print(
            f"run {index + 1}: icegrt {icegrt[-1]['episodes_per_s']:.2f}, "
            f"TRL {trl[-1]['episodes_per_s']:.2f} episodes/s",
            flush=True,
        )
    print(
        f"workload: {args.batch} prompts x {args.prompt_tokens} tokens, {args.response_tokens} "
        f"new tokens, {args.epochs} epochs x 1 minibatch, {args.episodes} episodes, "
        f"{args.precision}, {args.threads} threads, {args.runs} interleaved runs per side"
    )
    report("icegrt", icegrt)
    report("TRL", trl)
    pairs = zip(icegrt, trl, strict=True)
    ratios = sorted(a["episodes_per_s"] / b["episodes_per_s"] for a, b in pairs)
    print(
        f"icegrt / TRL episodes/s, run by run: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"medians {_median(icegrt) / _median(trl):.2f}x"
    )


def _median(runs: list[dict]) -> float:
    return statistics.median(r["episodes_per_s"] for r in runs)


def run_trl(root: Path, args: argparse.Namespace) -> dict:
    """One TRL run in its own venv: its loop figures and peak memory."""
    command = [
        args.trl_python,
        __file__,
        "--worker",
        f"--workdir={root}",
        f"--batch={args.batch}",
        f"--response-tokens={args.response_tokens}",
        f"--epochs={args.epochs}",
        f"--episodes={args.episodes}",
        f"--precision={args.precision}",
        f"--threads={args.threads}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    wall, rss, output = run_measured(command, env)
    figures = json.loads(output.strip().splitlines()[-1])
    return figures | {"wall_s": wall, "peak_rss_mib": rss}


if __name__ == "__main__":
    main()
