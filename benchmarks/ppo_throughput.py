"""PPO throughput of `icegrt ppo` on a fixed workload: episodes/s, where the time goes, memory.

The workload is built offline and matches the TRL configuration of `trl_peer.py`: one random
Llama (hidden 256, 6 layers, 8 heads, MLP 1024, the demo's BPE with a 1,024-token vocabulary:
6.6M parameters) serves as policy, reference, reward model and critic; 16 prompts of exactly
20 tokens per step, responses of up to 48 tokens (a random model almost never samples EOS),
4 PPO epochs over 1 minibatch, 256 episodes, fp32, 2 threads. Each run is a fresh
`icegrt ppo` process; the figures come from its metrics.jsonl (the step loop only: loading,
the held-out evaluation and the final save are not counted) and its peak resident memory from
the operating system. Prints the median of `--runs` runs with their min-max.

    python benchmarks/ppo_throughput.py [--runs 3] [--precision fp32|bf16] [--batch 16]
        [--response-tokens 48] [--hidden 256 --layers 6 --heads 8 --intermediate 1024]
        [icegrt overrides ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

SPLIT = {
    "generate": "time/generate_s",
    "score: old log-probs": "time/score_old_s",
    "score: reference": "time/score_ref_s",
    "score: values": "time/score_value_s",
    "score: reward": "time/score_reward_s",
    "update: first forwards": "time/first_pass_s",
    "update": "time/update_s",
}
"""The step's parts as metrics.jsonl names them."""


def workload_args(parser: argparse.ArgumentParser) -> None:
    """The flags that define the workload (shared with trl_peer.py)."""
    parser.add_argument("--runs", type=int, default=3, help="runs per side (median, min-max)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=1024, help="BPE vocabulary trained offline")
    parser.add_argument("--batch", type=int, default=16, help="prompts per PPO step")
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--response-tokens", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=4, help="PPO epochs (1 minibatch each)")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a fresh temp dir")


def build_workload(args: argparse.Namespace) -> Path:
    """Write model/ (a save_pretrained folder with its tokenizer) and prompts.jsonl (text and
    templated ids, every prompt exactly --prompt-tokens long) under the work dir; reused when
    the same settings built it before."""
    from transformers import AutoModelForCausalLM

    from icegrt_cli import plugins
    from icegrt_cli.config import ModelConfig
    from icegrt_cli.data.formatting import encode_prompt
    from icegrt_cli.data.loading import read_jsonl
    from icegrt_cli.models import build_preset_config, load_tokenizer

    root = args.workdir or Path(tempfile.mkdtemp(prefix="icegrt-throughput-"))
    spec = {k: getattr(args, k) for k in ("hidden", "layers", "heads", "intermediate", "vocab")}
    spec |= {"prompt_tokens": args.prompt_tokens, "prompts": args.episodes}
    record = root / "workload.json"
    if record.exists() and json.loads(record.read_text()) == spec:
        return root
    import torch

    torch.manual_seed(0)
    cfg = ModelConfig(
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        intermediate_size=args.intermediate,
        vocab_size=args.vocab,
        max_position_embeddings=512,
    )
    tokenizer = load_tokenizer(cfg)
    model = AutoModelForCausalLM.from_config(build_preset_config(cfg, tokenizer))
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")

    # Cut each demo prompt so its templated encoding is exactly prompt_tokens long.
    overhead = len(encode_prompt(tokenizer, ""))
    rows = []
    for _, r in read_jsonl(plugins.demo_file("prompts", "benchmark prompts")):
        words = tokenizer(r["prompt"], add_special_tokens=False).input_ids
        text = tokenizer.decode(words[: args.prompt_tokens - overhead]).strip()
        ids = encode_prompt(tokenizer, text)
        if len(ids) == args.prompt_tokens:
            rows.append({"prompt": text, "input_ids": ids})
        if len(rows) == args.episodes:
            break
    if len(rows) < args.episodes:
        raise SystemExit(f"only {len(rows)} demo prompts cut to {args.prompt_tokens} tokens")
    with open(root / "prompts.jsonl", "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    record.write_text(json.dumps(spec))
    return root


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run `command`; (wall seconds, its peak resident memory in MiB, its output). Stops on
    failure."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{output[-4000:]}")
    return time.perf_counter() - start, usage.ru_maxrss // 1024, output


def run_icegrt(root: Path, args: argparse.Namespace, index: int) -> dict[str, Any]:
    """One `icegrt ppo` run on the workload; its loop figures."""
    model = root / "model"
    steps = args.episodes // args.batch
    name = f"icegrt-{args.precision}-{index}-{time.time_ns()}"
    command = [
        sys.executable,
        "-m",
        "icegrt_cli.cli",
        "ppo",
        f"run.root={root / 'runs'}",
        f"run.name={name}",
        f"run.precision={args.precision}",
        f"run.num_threads={args.threads}",
        "run.progress=false",
        "model@policy=hf",
        f"policy.name_or_path={model}",
        "policy.dtype=float32",
        "model@reward_model=hf",
        f"reward_model.name_or_path={model}",
        "reward_model.dtype=float32",
        "data=jsonl",
        f"data.sources.0.path={root / 'prompts.jsonl'}",
        "data.eval_fraction=0",
        "reward=none",
        f"rollout.batch_size={args.batch}",
        f"rollout.max_new_tokens={args.response_tokens}",
        "rollout.temperature=1.0",
        f"ppo.steps={steps}",
        f"ppo.epochs={args.epochs}",
        f"ppo.minibatch_size={args.batch}",
        "ppo.ptx_coef=0",
        "train.eval_every=0",
        "train.save_every=0",
        "train.sample_every=0",
        *getattr(args, "overrides", []),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(args.threads))
    wall, rss, _ = run_measured(command, env)
    records = [
        json.loads(line)
        for line in (root / "runs" / name / "ppo" / "metrics.jsonl").read_text().splitlines()
    ]
    steps_logged = [r for r in records if "time/update_s" in r]
    split = {part: sum(r.get(key, 0.0) for r in steps_logged) for part, key in SPLIT.items()}
    loop = sum(r["time/rollout_s"] + r["time/update_s"] for r in steps_logged)
    tokens = sum(r["rollout/length"] * args.batch for r in steps_logged)
    return {
        "episodes_per_s": len(steps_logged) * args.batch / loop,
        "loop_s": loop,
        "wall_s": wall,
        "peak_rss_mib": rss,
        "split_s": split,
        "generation_tokens_per_s": tokens / split["generate"] if split["generate"] else 0.0,
        "mean_response_tokens": tokens / (len(steps_logged) * args.batch),
    }


def spread(values: list[float], digits: int = 2) -> str:
    """median (min-max)."""
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def report(label: str, runs: list[dict[str, Any]]) -> None:
    """Print one side's figures: throughput, memory, and the split of the loop."""
    print(
        f"{label}: {spread([r['episodes_per_s'] for r in runs])} episodes/s, "
        f"peak RSS {spread([r['peak_rss_mib'] for r in runs], 0)} MiB"
    )
    if "split_s" not in runs[0]:
        return
    # The split of the median run: parts of one run add up to its loop.
    middle = sorted(runs, key=lambda r: r["episodes_per_s"])[len(runs) // 2]
    loop = middle["loop_s"]
    print(
        f"  median run: loop {loop:.1f} s; generation {middle['generation_tokens_per_s']:.0f}"
        f" tokens/s, mean response {middle['mean_response_tokens']:.1f} tokens"
    )
    for part in SPLIT:
        seconds = middle["split_s"][part]
        print(f"  {part:22s} {seconds:7.2f} s  {100 * seconds / loop:5.1f}%")
    rest = loop - sum(middle["split_s"].values())
    print(f"  {'other (shaping, GAE)':22s} {rest:7.2f} s  {100 * rest / loop:5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    workload_args(parser)
    parser.add_argument(
        "overrides", nargs="*", help="more icegrt overrides, e.g. ppo.shared_backbone=true"
    )
    args = parser.parse_args()
    root = build_workload(args)
    runs = [run_icegrt(root, args, i) for i in range(args.runs)]
    print(
        f"workload: {args.batch} prompts x {args.prompt_tokens} tokens, <= {args.response_tokens} "
        f"new tokens, {args.epochs} epochs x 1 minibatch, {args.episodes} episodes, "
        f"{args.precision}, {args.threads} threads, {args.runs} runs"
    )
    report("icegrt", runs)


if __name__ == "__main__":
    main()
