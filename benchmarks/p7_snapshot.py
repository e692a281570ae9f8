"""
P7: `picante.snapshot(db)` on a database with many inputs and memos.

A snapshot is a new empty view that reads through to its parent as of the moment it was
taken, so its cost should not depend on how much the database holds. Two databases are
built: one with 100 inputs and 100 memos, one with 1,000,000 of each (10,000 with
`--quick`). The figure is one `snapshot(db)` call, including dropping the snapshot again
(which unpins the parent's revision). No peer has MVCC snapshots.

Goal: the big database costs ≤ 2 times the small one.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import picante

from ._harness import Profile, Row, compare, ratio_check, verify


if TYPE_CHECKING:
    from ._harness import Case


__all__ = ["run"]


@picante.database
class Store:
    @picante.input
    async def n(self, k: int) -> int: ...  # type: ignore[empty-body]  # mypy: inputs have no body

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
    db = Store()
    with picante.batch(db):
        for k in range(size):
            db.n.set(k, k)
    verify(await db.fill(size) == size * (size - 1), "every memo computed")
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


async def _main(profile: Profile, small: int, big: int) -> list[Row]:
    dbs = {size: await _store(size) for size in (small, big)}
    snap = picante.snapshot(dbs[big])
    verify(await snap.doubled(big - 1) == 2 * (big - 1), "a snapshot reads its parent")
    del snap
    ns = await compare({f"picante@{size}": _case(db) for size, db in dbs.items()}, profile)
    low, high = ns[f"picante@{small}"], ns[f"picante@{big}"]
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
    return asyncio.run(_main(Profile.of(quick=quick), 100, 10_000 if quick else 1_000_000))
