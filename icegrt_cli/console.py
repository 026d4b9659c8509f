"""How the command line reports problems to people."""

from __future__ import annotations

from rich.console import Console


def print_error(message: object) -> None:
    """One unwrapped `error: ...` line on stderr, so scripts and people both read it."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        f"[bold red]error:[/bold red] {message}"
    )


def print_warning(message: object) -> None:
    """One unwrapped `warning: ...` line on stderr: the command goes on."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        f"[bold yellow]warning:[/bold yellow] {message}"
    )
