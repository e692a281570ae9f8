"""
picante's benchmark suite: each scenario of `/BENCHMARKS.md`'s goals, side by side with
the peers, as ratios.

Run `python -m benchmarks` for every scenario, `python -m benchmarks p3` for one, and add
`--quick` for a tiny smoke run. Each scenario module has `run(*, quick=False)`, which
returns its result rows; `SCENARIOS` maps scenario ids to those functions. The scenarios
whose cost is plotted against graph size (`python -m benchmarks --plot DIR`) also have
`sweep(*, quick=False)`, which returns the figures of the plot; `SWEEPS` maps their ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import (
    gather_fanout,
    p1_cached_hit,
    p2_hit_in_query,
    p3_chain_recompute,
    p4_unrelated_change,
    p5_fan_in_sum,
    p6_single_flight,
    p7_snapshot,
    p8_memory,
    p9_persist,
    p10_cold_tree,
    p11_scale,
    p12_shared,
    p13_accumulate,
    p13_fixpoint,
)


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._harness import Row, Sweep


__all__ = ["SCENARIOS", "SWEEPS"]


def _p13(*, quick: bool = False) -> list[Row]:
    """P13 has two parts, fixpoint cycles and accumulators, each in its own module."""
    return p13_fixpoint.run(quick=quick) + p13_accumulate.run(quick=quick)


SCENARIOS: dict[str, Callable[..., list[Row]]] = {
    "p1": p1_cached_hit.run,
    "p2": p2_hit_in_query.run,
    "p3": p3_chain_recompute.run,
    "p4": p4_unrelated_change.run,
    "p5": p5_fan_in_sum.run,
    "p6": p6_single_flight.run,
    "p7": p7_snapshot.run,
    "p8": p8_memory.run,
    "p9": p9_persist.run,
    "p10": p10_cold_tree.run,
    "p11": p11_scale.run,
    "p12": p12_shared.run,
    "p13": _p13,
    "gather": gather_fanout.run,
}
"""Scenario id → `run(*, quick=False)` returning the scenario's result rows."""

SWEEPS: dict[str, Callable[..., Sweep]] = {
    "p3": p3_chain_recompute.sweep,
    "p4": p4_unrelated_change.sweep,
    "p7": p7_snapshot.sweep,
    "p11": p11_scale.sweep,
}
"""Scenario id → `sweep(*, quick=False)` returning its cost at several graph sizes."""
