"""The report's PNGs: PPO curves per step, the reward-vs-KL frontier, in-domain vs general.

Drawn with matplotlib's object API (no pyplot): no display, no global figure state. Each
function returns the file it wrote, or None when no run has the data for it. Runs keep one
colour across all plots; `names` are the legend entries (`run id: factors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from icegrt_cli.report.discover import Run
from icegrt_cli.report.finals import KL_KEYS, Final, first_key, model_scores

CURVES = (
    ("rollout/score_raw", "reward-model score of rollouts"),
    ("rollout/gold", "gold score of rollouts"),
    (KL_KEYS, "KL to the reference per sequence"),
)
"""(metric, title) of each panel of curves.png."""

FRONTIER_Y = (("held-out score", "score"), ("held-out gold", "gold"))
"""Per frontier panel, the columns to plot against KL, preferred first."""

DPI = 120


def colors(count: int) -> list[Any]:
    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(index % cmap.N) for index in range(count)]


def series(
    records: list[dict[str, Any]], key: str | tuple[str, ...]
) -> tuple[list[int], list[float]]:
    """(steps, values) of the records that hold `key` (of several keys: the first any holds)."""
    key = first_key(records, key) if isinstance(key, tuple) else key
    pairs = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [step for step, _ in pairs], [value for _, value in pairs]


def _ppo_records(run: Run) -> list[dict[str, Any]]:
    return run.stages["ppo"].metrics if "ppo" in run.stages else []


def _legend_columns(names: list[str]) -> int:
    return 1 if max(len(name) for name in names) > 45 else 2


def _legend(fig: Figure, names: list[str], handles: list[Any]) -> None:
    """One legend below all panels: runs keep their colour in every panel."""
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncols=_legend_columns(names),
        fontsize=8,
        frameon=False,
    )


def _figure(
    panels: int, names: list[str], width: float, panel_height: float, vertical: bool
) -> tuple[Figure, list[Axes]]:
    """A figure tall enough for its panels and a legend entry per name below them."""
    legend_rows = -(-len(names) // _legend_columns(names))
    height = (panel_height * panels if vertical else panel_height) + 0.22 * legend_rows + 0.4
    fig = Figure(figsize=(width, height), layout="constrained")
    grid = fig.subplots(panels, 1, sharex=True) if vertical else fig.subplots(1, panels)
    return fig, list(grid) if panels > 1 else [grid]


def _tidy(ax: Axes, integer_x: bool = False) -> None:
    """Few ticks without an offset: final figures of a sweep often differ only in late digits."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=integer_x))
    ax.ticklabel_format(useOffset=False)
    ax.grid(alpha=0.3)


def tag(index: int) -> str:
    """A short mark for a run's point: A..Z, then A1..Z1, ... (run ids are often numbers)."""
    letter, cycle = chr(ord("A") + index % 26), index // 26
    return f"{letter}{cycle}" if cycle else letter


def tagged(names: list[str]) -> list[str]:
    """Legend entries of the scatter plots, whose points carry the tag, not the long name."""
    return [f"{tag(index)}  {name}" for index, name in enumerate(names)]


def _annotate_tags(ax: Axes, points: list[tuple[float, float, str]]) -> None:
    """Write each run's tag beside its point; a run within 5% of the plotted range of an
    already labelled point joins its label (`B,C,G`), so close tags do not overprint."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_span, y_span = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    groups: list[tuple[float, float, list[str]]] = []
    for x, y, mark in points:
        near = next(
            (
                g
                for g in groups
                if abs(g[0] - x) <= 0.05 * x_span and abs(g[1] - y) <= 0.05 * y_span
            ),
            None,
        )
        if near is None:
            groups.append((x, y, [mark]))
        else:
            near[2].append(mark)
    ax.margins(x=0.15, y=0.1)  # room for the labels of the outermost points
    for x, y, marks in groups:
        text = ax.annotate(
            ",".join(marks), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7
        )
        text.set_in_layout(False)  # a long label must not shrink the axes


def plot_curves(runs: list[Run], names: list[str], path: Path) -> Path | None:
    panels = [
        (key, title)
        for key, title in CURVES
        if any(series(_ppo_records(run), key)[0] for run in runs)
    ]
    if not panels:
        return None
    fig, axes = _figure(len(panels), names, width=8.0, panel_height=2.4, vertical=True)
    handles: dict[str, Any] = {}
    for ax, (key, title) in zip(axes, panels, strict=True):
        for name, run, color in zip(names, runs, colors(len(runs)), strict=True):
            steps, values = series(_ppo_records(run), key)
            if steps:
                (line,) = ax.plot(
                    steps,
                    values,
                    color=color,
                    linewidth=1.4,
                    marker="o" if len(steps) <= 12 else None,
                    markersize=3,
                )
                handles.setdefault(name, line)
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_ylabel(key, fontsize=8)
        _tidy(ax, integer_x=True)
    axes[-1].set_xlabel("PPO step")
    fig.suptitle("PPO training curves", fontsize=11)
    _legend(fig, list(handles), list(handles.values()))
    fig.savefig(path, dpi=DPI)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats with less or equal KL (x) and a higher score (y), by KL."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def plot_frontier(
    runs: list[Run], names: list[str], finals: list[dict[str, Final]], path: Path
) -> Path | None:
    """Final score against final KL, one point per run, and the frontier through the best."""
    panels = []
    for preferred in FRONTIER_Y:
        column = next((c for c in preferred if any(c in f and "KL" in f for f in finals)), None)
        if column is not None:
            panels.append(column)
    if not panels:
        return None
    fig, axes = _figure(
        len(panels), names, width=5.0 * len(panels), panel_height=4.0, vertical=False
    )
    handles: dict[str, Any] = {}
    for ax, column in zip(axes, panels, strict=True):
        points = []
        for index, (name, found, color) in enumerate(
            zip(tagged(names), finals, colors(len(runs)), strict=True)
        ):
            if column in found and "KL" in found:
                x, y = found["KL"].value, found[column].value
                points.append((x, y, tag(index)))
                handles.setdefault(name, ax.scatter([x], [y], color=color, s=40, zorder=3))
        _annotate_tags(ax, points)
        front = pareto_front([(x, y) for x, y, _ in points])
        ax.plot(
            [x for x, _ in front],
            [y for _, y in front],
            color="grey",
            linestyle="--",
            linewidth=1,
            zorder=2,
            label="frontier",
        )
        ax.set_xlabel("final KL to the reference (kl/k1)")
        ax.set_ylabel(f"final {column}")
        ax.set_title(f"{column} vs KL", loc="left", fontsize=10)
        _tidy(ax)
    fig.suptitle("Reward vs KL across runs (dashed: the runs no other beats on both)", fontsize=11)
    _legend(fig, list(handles), list(handles.values()))
    fig.savefig(path, dpi=DPI)
    return path


class _Move(NamedTuple):
    """A run's first and last evaluated model as (general, in-domain) points."""

    tag: str
    name: str
    color: Any
    first_label: str
    start: tuple[float, float] | None
    end: tuple[float, float]
    fixture: bool
    """The general score is a fixture average (no general task ran on real data)."""


def _domain_general(scores: dict[str, float | None]) -> tuple[float | None, float | None]:
    """(in-domain, general); the test split's gold stands in where a run has no valid split."""
    domain = scores["in-domain"] if scores["in-domain"] is not None else scores["new wording"]
    general = scores["general"]
    return domain, general if general is not None else scores.get("general (fixture)")


def _moves(runs: list[Run], names: list[str]) -> list[_Move]:
    moves = []
    for index, (run, name, color) in enumerate(
        zip(runs, tagged(names), colors(len(runs)), strict=True)
    ):
        results = run.stages["eval"].results if "eval" in run.stages else None
        if not results or not results.get("models"):
            continue
        labels = list(results["models"])
        end_domain, end_general = _domain_general(model_scores(results, labels[-1]))
        if end_domain is None or end_general is None:
            continue
        start_domain, start_general = _domain_general(model_scores(results, labels[0]))
        start = (
            None
            if len(labels) < 2 or None in (start_domain, start_general)
            else (start_general, start_domain)
        )
        fixture = model_scores(results, labels[-1])["general"] is None
        moves.append(
            _Move(tag(index), name, color, labels[0], start, (end_general, end_domain), fixture)
        )
    return moves


def plot_domain_general(runs: list[Run], names: list[str], path: Path) -> Path | None:
    """Each run's last evaluated model (PPO) as a point, with an arrow from its first (SFT)."""
    moves = _moves(runs, names)
    if not moves:
        return None
    fig, (ax,) = _figure(1, [m.name for m in moves], width=6.5, panel_height=5.0, vertical=False)
    handles: dict[str, Any] = {}
    for move in moves:
        if move.start is not None:
            start = ax.scatter(
                *zip(move.start, strict=True), facecolors="none", edgecolors="grey", s=50, zorder=2
            )
            handles.setdefault(f"first model ({move.first_label})", start)
            ax.annotate(
                "",
                move.end,
                move.start,
                zorder=1,
                arrowprops={"arrowstyle": "->", "color": move.color, "alpha": 0.6},
            )
        handles[move.name] = ax.scatter(
            *zip(move.end, strict=True), color=move.color, s=45, zorder=3
        )
    _annotate_tags(ax, [(*move.end, move.tag) for move in moves])
    ax.set_xlabel(
        "general score (mean over general tasks)"
        if not any(m.fixture for m in moves)
        else "general score (fixture averages: noise)"
    )
    ax.set_ylabel("in-domain gold score")
    ax.set_title("In-domain vs general, last evaluated model per run", loc="left", fontsize=10)
    _tidy(ax)
    _legend(fig, list(handles), list(handles.values()))
    fig.savefig(path, dpi=DPI)
    return path
