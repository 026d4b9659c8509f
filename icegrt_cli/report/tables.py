"""The final-metrics table: one row per run, as a rich Table for the terminal and as Markdown.

Both render the same text cells, so the terminal and report.md always agree.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from icegrt_cli.report.discover import Run
from icegrt_cli.report.finals import COLUMNS, GENERAL, IN_DOMAIN, Final, is_fixture, paired_rows

UNFINISHED = "*"
"""Marks a run with a stage that has no summary.json yet (running, stopped or failed)."""


def cell(final: Final | None) -> str:
    if final is None:
        return "-"
    text = f"{final.value:.3f}"
    return text if final.change is None else f"{text} ({final.change:+.3f})"


def table_cells(
    runs: list[Run], labels: list[str], finals: list[dict[str, Final]]
) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): run, factors, then each column of COLUMNS some run has a value for."""
    columns = [column for column in COLUMNS if any(column in found for found in finals)]
    rows = [
        [
            run.id + ("" if run.finished else UNFINISHED),
            label or "-",
            *(cell(found.get(column)) for column in columns),
        ]
        for run, label, found in zip(runs, labels, finals, strict=True)
    ]
    return ["run", "factors", *columns], rows


FACTORS_WIDTH = 32
"""Widest the factors column grows in the terminal before it wraps."""


def _terminal_text(text: str) -> str:
    """A number's change goes under it (and a header's words under each other): narrow cells."""
    return text.replace(" (", "\n(")


def _width(header: str, cells: list[str], numeric: bool) -> int:
    lines = [
        *(header.split() if numeric else [header]),
        *(line for text in cells for line in _terminal_text(text).splitlines()),
    ]
    return max(len(line) for line in lines) + 3  # padding and border


def rich_tables(headers: list[str], rows: list[list[str]], title: str, width: int) -> list[Table]:
    """The table for a terminal `width` characters wide: metric columns that do not fit move to
    a further table, which repeats the run column."""
    widths = [
        _width(header, [row[index] for row in rows], index >= 2)
        for index, header in enumerate(headers)
    ]
    widths[1] = min(widths[1], FACTORS_WIDTH + 3)
    blocks: list[list[int]] = [[]]
    used = widths[0] + widths[1] + 1
    for index in range(2, len(headers)):
        if blocks[-1] and used + widths[index] > width:
            blocks.append([])
            used = widths[0] + 1
        blocks[-1].append(index)
        used += widths[index]
    tables = []
    for number, block in enumerate(blocks):
        shown = [0, 1, *block] if number == 0 else [0, *block]
        table = Table(title=title if number == 0 else None, title_justify="left")
        for index in shown:
            if index < 2:
                table.add_column(
                    headers[index], max_width=FACTORS_WIDTH if index else None, overflow="fold"
                )
            else:
                table.add_column(headers[index].replace(" ", "\n"), justify="right")
        for row in rows:
            table.add_row(*(row[i] if i < 2 else _terminal_text(row[i]) for i in shown))
        tables.append(table)
    return tables


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(text.replace("|", "\\|") for text in cells) + " |"

    rule = ["---" if index < 2 else "---:" for index in range(len(headers))]
    return "\n".join([line(headers), line(rule), *(line(row) for row in rows)]) + "\n"


def final_table(results: dict[str, Any]) -> Table | None:
    """The short end of `icegrt pipeline`: SFT and PPO in the domain and in general, with the
    paired difference and its standard error; readable at 80 columns. None without two models.
    Every task and metric is in results.json and `icegrt report`."""
    rows = paired_rows(results)
    if not rows:
        return None
    labels = list(results["models"])
    first, last = labels[0].upper(), labels[-1].upper()
    real = [
        name
        for name in GENERAL
        if name in results["tasks"] and not is_fixture(results["tasks"][name])
    ]
    general = ", ".join(real) if real else "the fixture-backed general tasks"
    table = Table(
        title=f"{first} vs {last}",
        title_justify="left",
        caption=(
            f"gold score: {IN_DOMAIN['in-domain'][0]} (greedy), "
            f"{IN_DOMAIN['in-domain sampled'][0]}, {IN_DOMAIN['new wording'][0]} (test split); "
            f"general: mean first metric of {general}. ± one standard error of the per-item "
            "differences. Every task: results.json, icegrt report."
        ),
        caption_justify="left",
    )
    table.add_column("", no_wrap=True)
    for header in (first, last, f"{last} − {first}"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        difference = "" if row.difference is None else f"{row.difference:+.3f}"
        if difference and row.stderr is not None:
            difference += f" ± {row.stderr:.3f}"
        table.add_row(row.name, _number(row.first), _number(row.last), difference)
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
