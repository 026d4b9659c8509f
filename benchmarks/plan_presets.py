"""The planner's figures for PPO on the 7B and 13B presets, as a markdown table.

Full fine-tuning under ddp and fsdp, LoRA under ddp (sharded parameters cannot carry adapters
here), and the critic-free GRPO under zero3 (DeepSpeed takes one trained model), per device of
8 x 80 GiB, with the stage's default batch sizes and the prompt length given (the default, the
longest prompt Llama-2's 4096-token context allows, is rarely what a run sees).
Usage: python benchmarks/plan_presets.py [--prompt-length 512] [overrides ...]
"""

from __future__ import annotations

import argparse

from icegrt_cli.planning.memory import GIB
from icegrt_cli.planning.plan import plan_stage

DEVICES, MEMORY = 8, 80 * GIB
CASES = [
    ("none", "ddp", []),
    ("none", "fsdp", []),
    ("lora", "ddp", []),
    ("none", "zero3", ["advantage=grpo", "rollout.n=4", "rollout.batch_size=8"]),
]
"""(peft, engine, more overrides): the combinations the PPO stage runs."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-length", type=int, default=512)
    parser.add_argument("overrides", nargs="*", help="More overrides for every plan.")
    args = parser.parse_args()
    print(
        "| preset | peft | engine | actor | reference | reward model | critic "
        "| peak (pass) | fits 80 GiB |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for size in ("7b", "13b"):
        for peft, engine, extra in CASES:
            overrides = [
                f"model@policy={size}",
                f"model@reward_model={size}",
                f"peft={peft}",
                f"engine={engine}",
                *extra,
                *args.overrides,
            ]
            plan = plan_stage("ppo", overrides, DEVICES, MEMORY, args.prompt_length)
            roles = " | ".join(f"{r.device.total / GIB:.1f}" for r in plan.roles)
            verdict = "yes" if plan.fits else "no"
            label = f"{engine} ({' '.join(extra)})" if extra else engine
            print(
                f"| {size} | {peft} | {label} | {roles} | "
                f"{plan.peak.total / GIB:.1f} ({plan.peak_pass}) | {verdict} |"
            )
    print(f"\nworkload: {plan.workload}")


if __name__ == "__main__":
    main()
