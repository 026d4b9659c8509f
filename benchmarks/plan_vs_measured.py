"""`icegrt plan`'s peak against the peak memory a stage really reaches, on CPU.

For each case the stage runs for a few steps in a subprocess and records its peak resident
memory (`peak_memory_mb` in summary.json). That figure includes what every process holds
before any model exists: Python, torch, transformers, the tokenizer and the data. A second
subprocess measures exactly that baseline (it composes the same config, sets up the runtime,
loads the tokenizers and the data as the stage does, and stops). The stage's increment over
the baseline is what the planner predicts; the table shows both and the error.

glibc's malloc keeps freed blocks below its mmap threshold in the heap, and raises that
threshold (up to 32 MiB) each time a larger block is freed, so on CPU the resident peak of a
training loop also grows with heap fragmentation from step to step, which no tensor count
predicts. `--allocator returning` (the default) runs both subprocesses with
MALLOC_MMAP_THRESHOLD_=65536, a fixed threshold: every tensor of 64 KiB or more is mapped on
allocation and returned on free, so resident memory follows the live tensors.
`--allocator default` measures with glibc's own settings, to show what fragmentation adds.

Usage: python benchmarks/plan_vs_measured.py [--cases sft-tiny,ppo-tiny] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUIET = ["run.progress=false", "run.num_threads=2"]
SFT_STEPS = [
    "data.packing=true",
    "data.max_length=256",
    "train.batch_size=16",
    "train.max_steps=3",
    "train.eval_every=0",
    "train.eval_batches=1",
    "train.save_every=0",
    "sample_prompts=0",
]
PPO_STEPS = [
    "ppo.steps=2",
    "ppo.ptx_coef=0",
    "train.eval_size=8",
    "train.eval_sampled=false",
    "train.save_every=0",
    "train.sample_every=0",
]
CASES: dict[str, tuple[str, list[str]]] = {
    "sft-tiny": ("sft", ["model=tiny", *SFT_STEPS]),
    "sft-small": ("sft", ["model=small", *SFT_STEPS]),
    "sft-base": ("sft", ["model=base", *SFT_STEPS]),
    "ppo-tiny": ("ppo", ["model@policy=tiny", "model@reward_model=tiny", *PPO_STEPS]),
    "ppo-small": ("ppo", ["model@policy=small", "model@reward_model=small", *PPO_STEPS]),
    "ppo-small-lora": (
        "ppo",
        ["model@policy=small", "model@reward_model=small", "peft=lora", *PPO_STEPS],
    ),
}


def baseline_mb(verb: str, overrides: list[str]) -> float:
    """Peak resident MiB of a process that does everything the stage does before its first
    model: compose, runtime, tokenizers, data read and encoded (SFT's packed too)."""
    from icegrt_cli.data.formatting import check_sft_record, encode_prompt
    from icegrt_cli.data.loading import require_text
    from icegrt_cli.data.splits import load_splits
    from icegrt_cli.engine.runtime import peak_memory_mb, setup_runtime
    from icegrt_cli.models import load_tokenizer
    from icegrt_cli.planning.plan import compose_stage

    cfg = compose_stage(verb, overrides)
    rt = setup_runtime(cfg.run)
    if verb == "sft":
        from icegrt_cli.data.collate import pack
        from icegrt_cli.stages.sft import encode_all

        tokenizer = load_tokenizer(cfg.model)
        train, held_out = load_splits(cfg.data, "sft", check_sft_record, cfg.run.seed)
        kept = [encode_all(part, tokenizer, cfg.data.max_length)[0] for part in (train, held_out)]
        if cfg.data.packing:
            pack(kept[0], cfg.data.max_length)
    else:
        import icegrt_cli.stages.ppo  # noqa: F401

        tokenizer = load_tokenizer(cfg.policy)
        load_tokenizer(cfg.reward_model)
        records, _ = load_splits(cfg.data, "prompts", require_text("prompt"), cfg.run.seed)
        [encode_prompt(tokenizer, r["prompt"]) for r in records]
    return peak_memory_mb(rt.device)


def longest_prompt(overrides: list[str]) -> int:
    """PPO's prompt width is the batch's longest prompt: the planner is given the longest."""
    from icegrt_cli.data.formatting import encode_prompt
    from icegrt_cli.data.loading import require_text
    from icegrt_cli.data.splits import load_splits
    from icegrt_cli.models import load_tokenizer
    from icegrt_cli.planning.plan import compose_stage

    cfg = compose_stage("ppo", overrides)
    tokenizer = load_tokenizer(cfg.policy)
    records, _ = load_splits(cfg.data, "prompts", require_text("prompt"), cfg.run.seed)
    return max(len(encode_prompt(tokenizer, r["prompt"])) for r in records)


ALLOCATORS = {"returning": {"MALLOC_MMAP_THRESHOLD_": "65536"}, "default": {}}


def _python(allocator: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ALLOCATORS[allocator]}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )


def measure(name: str, verb: str, overrides: list[str], root: Path, allocator: str) -> dict:
    args = [*overrides, *QUIET]
    run = [f"run.root={root}", f"run.name={name}", "run.force=true"]
    _python(allocator, "-m", "icegrt_cli.cli", verb, *args, *run)
    summary = json.loads((root / name / verb / "summary.json").read_text())
    base = _python(allocator, __file__, "--baseline", verb, *args)
    base = json.loads(base.stdout.splitlines()[-1])
    prompt = longest_prompt(args) if verb == "ppo" else None

    from icegrt_cli.planning.plan import plan_stage

    plan = plan_stage(verb, args, prompt_length=prompt)
    measured = summary["peak_memory_mb"] - base["baseline_mb"]
    planned = plan.peak.total / 2**20
    return {
        "case": name,
        "allocator": allocator,
        "measured_peak_mb": round(summary["peak_memory_mb"], 1),
        "baseline_mb": round(base["baseline_mb"], 1),
        "measured_mb": round(measured, 1),
        "planned_mb": round(planned, 1),
        "error": round((planned - measured) / measured, 3),
        "peak_pass": plan.peak_pass,
        "workload": plan.workload,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--allocator", choices=list(ALLOCATORS), default="returning")
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    parser.add_argument("--baseline", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        verb, *overrides = args.baseline
        print(json.dumps({"baseline_mb": baseline_mb(verb, overrides)}))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            verb, overrides = CASES[name]
            row = measure(name, verb, overrides, Path(tmp), args.allocator)
            rows.append(row)
            print(
                f"{name:16} stage peak {row['measured_peak_mb']:8.1f} MiB - baseline "
                f"{row['baseline_mb']:7.1f} = {row['measured_mb']:7.1f} MiB measured; planned "
                f"{row['planned_mb']:7.1f} MiB ({row['error']:+.1%}, peak: {row['peak_pass']})",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
