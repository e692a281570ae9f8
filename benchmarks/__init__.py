"""
picante's benchmark suite: each scenario of `/BENCHMARKS.md`'s goals, side by side with
the peers, as ratios.

Run `python -m benchmarks` for every scenario, `python -m benchmarks p3` for one, and add
`--quick` for a tiny smoke run. Each scenario module has `run(*, quick=False)`, which
returns its result rows; `SCENARIOS` maps scenario ids to those functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import (
    p1_cached_hit,
    p2_hit_in_query,
    p3_chain_recompute,
    p4_unrelated_change,
    p7_snapshot,
)


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._harness import Row


__all__ = ["SCENARIOS"]

SCENARIOS: dict[str, Callable[..., list[Row]]] = {
    "p1": p1_cached_hit.run,
    "p2": p2_hit_in_query.run,
    "p3": p3_chain_recompute.run,
    "p4": p4_unrelated_change.run,
    "p7": p7_snapshot.run,
}
"""Scenario id → `run(*, quick=False)` returning the scenario's result rows."""
