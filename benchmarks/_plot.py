"""
Plots of cost against graph size (`python -m benchmarks --plot DIR`).

Each plotted scenario's `sweep()` measures the figures (with the same code as its table
row); this module only draws them: one PNG per scenario, log-scale sizes on x, time per
operation in µs on y (or, for a sweep of shares, a percentage), from zero, or log-scale
when the sweep asks for it and its figures span a decade or more; the goal as a dashed
line when it is one value. matplotlib, from
the `benchmarks` dependency group, is imported only here and only when plotting.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._harness import format_value


if TYPE_CHECKING:
    from pathlib import Path

    from ._harness import Sweep


__all__ = ["MissingMatplotlibError", "load_pyplot", "render_sweep", "write_plot"]

# Contender -> (colour, marker), the same in every plot.
_STYLE: dict[str, tuple[str, str]] = {
    "picante": ("#c0392b", "o"),
    "plain": ("#7f8c8d", "s"),
    "async-lru": ("#e67e22", "x"),
    "observ": ("#2980b9", "^"),
    "reaktiv": ("#27ae60", "v"),
    "shiny": ("#8e44ad", "D"),
}


class MissingMatplotlibError(RuntimeError):
    """`--plot` was asked for, but matplotlib cannot be imported."""


def load_pyplot() -> Any:
    """Import `matplotlib.pyplot` with a file-only backend, or say how to install it."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError as error:
        msg = (
            "--plot needs matplotlib, which is not installed; install the benchmarks "
            "dependency group: pip install -e . --group benchmarks"
        )
        raise MissingMatplotlibError(msg) from error


def write_plot(sweep: Sweep, directory: Path, pyplot: Any) -> Path:
    """Draw *sweep* with *pyplot* into `directory/<scenario>.png`; return the file's path."""
    figure, axes = pyplot.subplots(figsize=(8, 5), dpi=110)
    # Durations are drawn in µs; any other unit as it is.
    scale, unit = (1_000, "µs") if sweep.unit == "ns" else (1, sweep.unit)
    figures: list[float] = []
    for name, values in sweep.series.items():
        colour, marker = _STYLE.get(name, ("#34495e", "o"))
        scaled = [value / scale for value in values]
        figures += scaled
        axes.plot(
            sweep.sizes,
            scaled,
            label=name,
            color=colour,
            marker=marker,
            linewidth=2.5 if name == "picante" else 1.5,
        )
    if sweep.goal is not None:
        value, label = sweep.goal
        figures.append(value / scale)
        axes.axhline(
            value / scale, color=_STYLE["picante"][0], linestyle="--", linewidth=1, label=label
        )
    axes.set_xscale("log")
    axes.set_xticks(sweep.sizes, [f"{size:,}" for size in sweep.sizes])
    axes.set_xticks([], minor=True)
    positive = [figure for figure in figures if figure > 0]
    # Log-scale only across a decade or more, so that a labelled power of ten shows.
    if sweep.log_y and positive and max(positive) >= 10 * min(positive):
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(_plain_number)
        axes.yaxis.set_minor_formatter(_no_label)
    else:
        # From zero, with room above the highest line for the legend.
        axes.set_ylim(bottom=0, top=max(figures, default=1) * 1.4)
    title = sweep.title
    if sweep.missing:
        title += f"\n(not installed in this run: {', '.join(sweep.missing)})"
    axes.set_title(title, fontsize=11)
    axes.set_xlabel(sweep.xlabel)
    axes.set_ylabel(f"{sweep.ylabel} ({unit})")
    axes.grid(visible=True, which="major", alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    path = directory / f"{sweep.scenario}.png"
    figure.savefig(path)
    pyplot.close(figure)
    return path


def _plain_number(value: float, _position: object) -> str:
    """Label a log-scale tick as a plain number (0.1, 1, 10), not a power of ten."""
    return f"{value:g}"


def _no_label(_value: float, _position: object) -> str:
    return ""


def render_sweep(sweep: Sweep) -> str:
    """The figures of *sweep* as a small table: one line per size, one column per contender."""
    names = list(sweep.series)
    header = ["size", *names]
    lines = [
        [f"{size:,}", *(format_value(sweep.series[name][index], sweep.unit) for name in names)]
        for index, size in enumerate(sweep.sizes)
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    out = [
        "  ".join(cell.rjust(widths[i]) for i, cell in enumerate(line)) for line in [header, *lines]
    ]
    return "\n".join(line.rstrip() for line in out)
