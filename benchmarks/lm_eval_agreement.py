"""Score the same items with `icegrt eval` and with lm-evaluation-harness; compare per item.

Both read the sets `icegrt benchmarks fetch` wrote (lm-eval through task files that include
its own `arc_easy` / `hellaswag` definitions, pointed at those JSONL files, so no hub access is
needed) and load the same model folder in fp32. For every item the script compares the chosen
answer (acc and acc_norm) and each choice's summed log-likelihood, and reports the number of
disagreements and the largest log-likelihood difference.

lm-eval is never a dependency of icegrt: install it in a venv of its own and pass its
`lm_eval` executable. See benchmarks/README.md.

    python benchmarks/lm_eval_agreement.py --model DIR --lm-eval /path/to/venv/bin/lm_eval \
        --tasks arc_easy hellaswag --limit 200 --out /tmp/agreement
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from icegrt_cli.eval.benchmarks import benchmarks_dir, read_manifest
from icegrt_cli.eval.metrics import argmax

HARNESS_TASK = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
}
"""icegrt task -> lm-eval's own definition (prompt, target, choices), below its `tasks/`."""
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def checked(command: list[str]) -> None:
    """Run a step; a failure ends the script with one line (its own output shows why)."""
    done = subprocess.run(command, env={**os.environ, **OFFLINE}, check=False)
    if done.returncode != 0:
        sys.exit(f"error: `{' '.join(command[:3])} ...` exited with {done.returncode}")


def harness_task_file(lm_eval: Path, task: str) -> Path:
    """Where lm-eval's own yaml for icegrt's `task` lies in its venv."""
    python = lm_eval.parent / "python"
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import lm_eval, pathlib; print(pathlib.Path(lm_eval.__file__).parent / 'tasks')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(found) / HARNESS_TASK[task]


def write_task_files(lm_eval: Path, tasks: list[str], data: Path, out: Path) -> list[str]:
    """lm-eval task files: the harness's definitions on the fetched JSONL; their names."""
    manifest = read_manifest(data)
    if manifest is None:
        sys.exit(f"error: no fetched benchmarks in {data}; run `icegrt benchmarks fetch`")
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for task in tasks:
        harness = harness_task_file(lm_eval, task)
        split = "test" if task.startswith("arc") else "validation"
        name = f"icegrt_{task}"
        text = "\n".join(
            [
                f"include: {harness}",
                f"task: {name}",
                "tag: []",
                "dataset_path: json",
                "dataset_name: null",
                "dataset_kwargs: "
                + json.dumps({"data_files": {split: str(data / manifest.benchmarks[task].path)}}),
                "training_split: null",
                f"validation_split: {split if split == 'validation' else 'null'}",
                f"test_split: {split if split == 'test' else 'null'}",
                "",
            ]
        )
        (out / f"{name}.yaml").write_text(text, encoding="utf-8")
        names.append(name)
    return names


def run_harness(
    lm_eval: Path,
    model: Path,
    names: list[str],
    tasks_dir: Path,
    limit: int,
    out: Path,
    batch_size: int,
) -> dict[str, list[dict[str, Any]]]:
    checked(
        [
            str(lm_eval),
            "run",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model},dtype=float32",
            "--tasks",
            *names,
            "--include_path",
            str(tasks_dir),
            "--limit",
            str(limit),
            "--log_samples",
            "--output_path",
            str(out),
            "--batch_size",
            str(batch_size),
            "--device",
            "cpu",
        ]
    )
    samples = {}
    for name in names:
        [path] = sorted(out.rglob(f"samples_{name}_*.jsonl"))[-1:]
        rows = [json.loads(line) for line in path.open(encoding="utf-8")]
        samples[name] = sorted(rows, key=lambda row: row["doc_id"])
    return samples


def run_icegrt(
    model: Path, tasks: list[str], limit: int, out: Path, batch_size: int
) -> dict[str, list[dict[str, Any]]]:
    checked(
        [
            sys.executable,
            "-m",
            "icegrt_cli.cli",
            "eval",
            "model=hf",
            f"model.name_or_path={model}",
            f"tasks=[{','.join(tasks)}]",
            f"limit={limit}",
            f"batch_size={batch_size}",
            f"run.root={out}",
            "run.name=agreement",
            "run.progress=false",
        ]
    )
    [folder] = [p for p in (out / "agreement" / "eval" / "predictions").iterdir()]
    return {
        task: [json.loads(line) for line in (folder / f"{task}.jsonl").open()] for task in tasks
    }


def compare(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per item: the same requests, the same choices, and how far the log-likelihoods are."""
    if len(ours) != len(theirs):
        sys.exit(f"error: {len(ours)} items here against {len(theirs)} in lm-eval")
    worst, worst_item, acc, acc_norm, prompts = 0.0, None, 0, 0, 0
    for mine, row in zip(ours, theirs, strict=True):
        lls = [float(resp[0]) for resp in row["filtered_resps"]]
        arguments = row["arguments"]  # {"gen_args_<i>": {"arg_0": context, "arg_1": cont}}
        pairs = (
            [tuple(a.values()) for a in arguments.values()]
            if isinstance(arguments, dict)
            else [tuple(a) for a in arguments]
        )
        prompts += pairs != [(mine["context"], " " + choice) for choice in mine["choices"]]
        acc += argmax(lls) != argmax(mine["loglik"])
        norm = [ll / len(c) for ll, c in zip(lls, mine["choices"], strict=True)]
        mine_norm = [ll / len(c) for ll, c in zip(mine["loglik"], mine["choices"], strict=True)]
        acc_norm += argmax(norm) != argmax(mine_norm)
        gap = max(abs(a - b) for a, b in zip(lls, mine["loglik"], strict=True))
        if gap >= worst:
            worst, worst_item = gap, mine["id"]
    return {
        "items": len(ours),
        "prompt_mismatches": prompts,
        "acc_disagreements": acc,
        "acc_norm_disagreements": acc_norm,
        "max_abs_loglik_diff": worst,
        "max_diff_item": worst_item,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a save_pretrained folder")
    parser.add_argument(
        "--lm-eval",
        type=Path,
        required=True,
        help="the lm_eval executable of a venv with lm-eval installed",
    )
    parser.add_argument(
        "--tasks", nargs="+", default=["arc_easy", "hellaswag"], choices=sorted(HARNESS_TASK)
    )
    parser.add_argument("--limit", type=int, default=200, help="first N items of each task")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("lm_eval_agreement"))
    args = parser.parse_args()

    model, out = args.model.resolve(), args.out.resolve()
    names = write_task_files(args.lm_eval, args.tasks, benchmarks_dir(), out / "lm_eval_tasks")
    theirs = run_harness(
        args.lm_eval,
        model,
        names,
        out / "lm_eval_tasks",
        args.limit,
        out / "lm_eval",
        args.batch_size,
    )
    ours = run_icegrt(model, args.tasks, args.limit, out / "icegrt", args.batch_size)
    report = {
        task: compare(ours[task], theirs[name])
        for task, name in zip(args.tasks, names, strict=True)
    }
    (out / "agreement.json").write_text(json.dumps(report, indent=2) + "\n")
    for task, row in report.items():
        print(
            f"{task}: {row['items']} items, prompts differing {row['prompt_mismatches']}, "
            f"acc choices differing {row['acc_disagreements']}, acc_norm choices differing "
            f"{row['acc_norm_disagreements']}, largest |log-likelihood difference| "
            f"{row['max_abs_loglik_diff']:.2e} ({row['max_diff_item']})"
        )
    print(f"written: {out / 'agreement.json'}")


if __name__ == "__main__":
    main()
