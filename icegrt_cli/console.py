"""How the command line reports problems to people."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def print_error(message: object) -> None:
    """One unwrapped `error: ...` line on stderr, so scripts and people both read it. The
    message is text, not markup: a list value such as `[runs/a, runs/b]` shows as it is."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        f"[bold red]error:[/bold red] {escape(str(message))}"
    )


def print_warning(message: object) -> None:
    """One unwrapped `warning: ...` line on stderr: the command goes on."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        f"[bold yellow]warning:[/bold yellow] {escape(str(message))}"
    )
