"""
P7: `picante.snapshot(db)` on a database with many inputs and memos.

A snapshot is a new empty view that reads through to its parent as of the moment it was
taken, so its cost should not depend on how much the database holds. Two databases are
built: one with 100 inputs and 100 memos, one with 1,000,000 of each (10,000 with
`--quick`). The figure is one `snapshot(db)` call, including dropping the snapshot again
(which unpins the parent's revision). No peer has MVCC snapshots. The databases are
frozen out of the garbage collector while they are timed (`gc.freeze()`), so that the
harness's `gc.collect()` before each repetition does not traverse millions of records.

Goal: the big database costs ≤ 2 times the small one.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import TYPE_CHECKING, Any

import picante

from ._harness import Profile, Row, Sweep, compare, ratio_check, verify


if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._harness import Case


__all__ = ["run", "sweep"]


@picante.database
class Store:
    @picante.input
    async def n(self, k: int) -> int:
        raise NotImplementedError

    @picante.query
    async def doubled(self, k: int) -> int:
        return 2 * await self.n(k)

    @picante.query
    async def fill(self, size: int) -> int:
        # One top-level call evaluates every memo inline: no task per memo.
        total = 0
        for k in range(size):
            total += await self.doubled(k)
        return total


async def _store(size: int) -> Store:
    # Setup only: the collector is paused while millions of records are made (it would
    # otherwise traverse them again and again as they grow).
    enabled = gc.isenabled()
    gc.disable()
    try:
        db = Store()
        with picante.batch(db):
            for k in range(size):
                db.n.set(k, k)
        verify(await db.fill(size) == size * (size - 1), "every memo computed")
    finally:
        if enabled:
            gc.enable()
    return db


def _case(db: Any) -> Case:
    clock = time.perf_counter_ns
    snapshot = picante.snapshot

    async def case(n: int) -> int:
        start = clock()
        for _ in range(n):
            snapshot(db)
        return clock() - start

    return case


async def _measure(profile: Profile, sizes: Sequence[int]) -> dict[int, float]:
    """Nanoseconds per snapshot of a database of each size, all timed alternately."""
    dbs = {size: await _store(size) for size in sizes}
    big = max(sizes)
    snap = picante.snapshot(dbs[big])
    verify(await snap.doubled(big - 1) == 2 * (big - 1), "a snapshot reads its parent")
    del snap
    # The stores hold millions of objects, which every `gc.collect()` of the harness would
    # traverse again (most of this scenario's run time): freeze them out of the collector.
    gc.collect()
    gc.freeze()
    try:
        ns = await compare({f"picante@{size}": _case(db) for size, db in dbs.items()}, profile)
    finally:
        gc.unfreeze()
    return {size: ns[f"picante@{size}"] for size in sizes}


def _rows(ns: dict[int, float], small: int, big: int) -> list[Row]:
    low, high = ns[small], ns[big]
    return [
        Row(f"P7 snapshot, {small:,} inputs+memos", low, {}),
        Row(
            f"P7 snapshot, {big:,} inputs+memos",
            high,
            {},
            [ratio_check(f"≤ 2x at {small:,}", high, low, 2.0)],
        ),
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P7; return its result rows."""
    small, big = 100, 10_000 if quick else 1_000_000
    return _rows(asyncio.run(_measure(Profile.of(quick=quick), (small, big))), small, big)


def sweep(*, quick: bool = False) -> Sweep:
    """Measure P7 at several database sizes, for the plot of cost against size."""
    sizes = (100, 1_000, 10_000) if quick else (100, 10_000, 100_000, 1_000_000)
    ns = asyncio.run(_measure(Profile.of(quick=quick), sizes))
    return Sweep(
        scenario="p7",
        title="picante.snapshot(db) (no peer has snapshots)",
        xlabel="inputs and memos in the database (each)",
        ylabel="time per snapshot",
        sizes=sizes,
        series={"picante": tuple(ns[size] for size in sizes)},
        goal=(2 * ns[sizes[0]], f"2x the time at {sizes[0]}"),
    )
