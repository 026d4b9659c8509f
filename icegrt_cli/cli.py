"""The `icegrt` command: a small table of verbs, each handing its arguments to Hydra."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from icegrt_cli.console import print_error
from icegrt_cli.errors import IcegrtError
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

HYDRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _stage_command(verb: str, stage: str, text: str) -> None:
    @app.command(verb, help=text, context_settings=HYDRA_ARGS, add_help_option=False)
    def command(ctx: typer.Context) -> None:
        _guarded(lambda: launch(stage, list(ctx.args)))


for _stage in STAGES.values():
    _stage_command(_stage.verb, _stage.name, _stage.summary)


@data_app.command("demo")
def data_demo(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the generated files into.")],
    seed: Annotated[int, typer.Option(help="Generator seed; the bundled files use 0.")] = 0,
) -> None:
    """Generate the ad-moderation demo data set (SFT, pairs, PPO prompts, test, general)."""
    from icegrt_cli.data.demo import generate_demo

    card = generate_demo(out, seed=seed)
    Console().print(f"wrote the demo data set to {out}")
    Console().print(card.get("counts", card))


@app.command("report")
def report(
    path: Annotated[Path, typer.Argument(help="A run folder, a stage folder, or a folder of "
                                              "runs (a sweep) at any depth.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for report.md and the PNGs; default PATH/report.")] = None,
) -> None:
    """Final metrics per run, the settings that differ between runs, and plots."""
    from icegrt_cli.report import make_report
    from icegrt_cli.report.tables import rich_tables

    def build() -> None:
        result = make_report(path, out)
        console = Console()
        for table in rich_tables(result.headers, result.rows, f"icegrt report: {path}",
                                 console.width):
            console.print(table)
        console.print(f"report: {result.markdown}")
        for image in result.images:
            console.print(f"plot: {image}")

    _guarded(build)


def _guarded(action) -> None:
    try:
        action()
    except IcegrtError as err:
        print_error(err)
        raise typer.Exit(getattr(err, "exit_code", 2)) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
