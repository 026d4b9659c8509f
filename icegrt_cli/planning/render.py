"""The plan as a table: one row per model, the peak per device, and the verdict."""

from __future__ import annotations

from rich.table import Table

from icegrt_cli.planning.memory import GIB, human
from icegrt_cli.planning.plan import Plan

ENGINE_WORDS = {
    "ddp": "whole models on every device",
    "zero2": "gradients and optimizer state sharded",
    "fsdp": "parameters, gradients and optimizer state sharded",
    "zero3": "parameters, gradients and optimizer state sharded",
}


def plan_table(plan: Plan) -> Table:
    offload = ", optimizer state offloaded to CPU" if plan.offload else ""
    unit, scale, digits = ("GiB", GIB, 2) if plan.peak.total >= GIB else ("MiB", 2**20, 1)
    table = Table(
        title=(
            f"icegrt plan {plan.stage}: {unit} per device, {plan.devices} device(s), "
            f"engine {plan.engine} ({ENGINE_WORDS[plan.engine]}{offload})"
        ),
        title_justify="left",
    )

    def cell(size: int) -> str:
        return f"{size / scale:,.{digits}f}" if size else "-"

    columns = ["model", "trains", "params", "grads", "optimizer", "activations", "total"]
    if plan.cpu:
        columns.append("CPU")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "trains") else "right")
    for role in plan.roles:
        d = role.device
        figures = [d.params, d.grads, d.optimizer, d.activations, d.total]
        row = [role.role, role.trains, *(cell(x) for x in figures)]
        if plan.cpu:
            row.append(cell(role.cpu))
        table.add_row(*row)
    p = plan.peak
    peak = [f"peak: {plan.peak_pass}", ""] + [
        cell(x) for x in (p.params, p.grads, p.optimizer, p.activations, p.total)
    ]
    if plan.cpu:
        peak.append(cell(plan.cpu))
    table.add_section()
    table.add_row(*peak, style="bold")
    return table


def plan_notes(plan: Plan) -> list[str]:
    """The workload, shared models, and whether the peak fits the device."""
    lines = [f"workload: {plan.workload}"]
    lines += [f"{role.role}: {role.note}" for role in plan.roles if role.note]
    lines.append(
        "activations: the largest pass of each model (activations, logits, KV cache"
        + (", the gathered block" if plan.engine in ("fsdp", "zero3") else "")
        + "); the peak adds only the largest, as models run one after another"
    )
    if plan.cpu:
        lines.append(
            f"CPU memory: {human(plan.cpu)} per process, "
            f"{human(plan.cpu * plan.devices)} for all {plan.devices}"
        )
    if plan.device_memory is None:
        lines.append(f"peak per device: {human(plan.peak.total)} (--device-memory to check a fit)")
    elif plan.fits:
        share = plan.peak.total / plan.device_memory
        lines.append(
            f"[green]fits[/green] in {human(plan.device_memory)}: peak {human(plan.peak.total)} "
            f"per device ({share:.0%})"
        )
    else:
        lines.append(
            f"[red]does not fit[/red] in {human(plan.device_memory)}: needs "
            f"{human(plan.peak.total)} per device"
        )
    return lines
