"""
P4: the chain of P3; change an unrelated input and await the tail.

Nothing the chain reads changed, so the tail's memo is still valid; picante knows it
without walking the chain (its memos are `clean`), so the cost should not grow with the
depth. The figure is one `other.set(v)` plus one `await db.step(depth - 1)`, at three
depths, all measured alternately in one comparison. Peers: reaktiv (re-checks its
dependencies, which grows with depth) and observ.

Goals: depth 1000 costs ≤ 2 times depth 10 (flat), and ≤ 0.1 times reaktiv at depth 100.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from ._chain import (
    change_and_await,
    change_and_call,
    executions,
    observ_chain,
    picante_chain,
    reaktiv_chain,
)
from ._harness import (
    Check,
    Profile,
    Row,
    Sweep,
    compare,
    deep_recursion,
    load_peer,
    ratio_check,
    verify,
)


if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._harness import Case


__all__ = ["run", "sweep"]

PEERS = ("observ", "reaktiv")


async def _measure(profile: Profile, depths: Sequence[int]) -> dict[str, dict[int, float]]:
    """Nanoseconds per change and read: contender -> depth -> ns, all timed alternately."""
    cases: dict[str, Case] = {}
    for depth in depths:
        db = await picante_chain(depth)
        before = executions(db)
        db.other.set(-1)
        verify(await db.step(depth - 1) == depth - 1, "picante chain value")
        verify(executions(db) == before, "an unrelated change recomputes nothing")
        cases[f"picante@{depth}"] = change_and_await(db.other.set, partial(db.step, depth - 1))
        for name, build in (("observ", observ_chain), ("reaktiv", reaktiv_chain)):
            module = load_peer(name)
            if module is None:
                continue
            chain = build(module, depth)
            chain.set_other(-1)
            verify(chain.tail() == depth - 1, f"{name} chain value")
            cases[f"{name}@{depth}"] = change_and_call(chain.set_other, chain.tail)

    ns = await compare(cases, profile, max_ops=1_000_000)
    return {
        name: {depth: ns[f"{name}@{depth}"] for depth in depths}
        for name in ("picante", *PEERS)
        if f"{name}@{depths[0]}" in ns
    }


def _rows(series: dict[str, dict[int, float]], depths: tuple[int, int, int]) -> list[Row]:
    shallow, middle, deep = depths
    rows: list[Row] = []
    for depth in depths:
        pic = series["picante"][depth]
        peers = {name: series[name][depth] if name in series else None for name in PEERS}
        checks: list[Check] = []
        if depth == middle:
            checks.append(
                ratio_check(
                    "≤ 0.1x reaktiv", pic, peers["reaktiv"], 0.1, missing="reaktiv not installed"
                )
            )
        if depth == deep:
            checks.append(
                ratio_check(f"≤ 2x depth {shallow}", pic, series["picante"][shallow], 2.0)
            )
        rows.append(Row(f"P4 chain {depth}: unrelated change", pic, peers, checks))
    return rows


def _run(profile: Profile, depths: Sequence[int]) -> dict[str, dict[int, float]]:
    with deep_recursion(max(depths) * 10 + 1_000):
        return asyncio.run(_measure(profile, depths))


def run(*, quick: bool = False) -> list[Row]:
    """Measure P4; return its result rows."""
    depths = (5, 10, 50) if quick else (10, 100, 1_000)
    return _rows(_run(Profile.of(quick=quick), depths), depths)


def sweep(*, quick: bool = False) -> Sweep:
    """Measure P4 at several chain depths, for the plot of cost against depth."""
    depths = (5, 10, 50) if quick else (10, 30, 100, 300, 1_000)
    series = _run(Profile.of(quick=quick), depths)
    shallow = series["picante"][depths[0]]
    return Sweep(
        scenario="p4",
        title="Change an unrelated input, await the tail of a chain",
        xlabel="chain depth (queries)",
        ylabel="time per change and read",
        sizes=depths,
        series={name: tuple(by_depth[d] for d in depths) for name, by_depth in series.items()},
        missing=tuple(name for name in PEERS if name not in series),
        goal=(2 * shallow, f"2x picante at depth {depths[0]}"),
        # reaktiv grows with the depth, picante and observ do not: orders of magnitude apart.
        log_y=True,
    )
