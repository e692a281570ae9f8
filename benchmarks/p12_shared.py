"""
P12: a build from a warm shared store, against a cold build, on two graphs: a tree of
11,111 queries here, and the site example in `p12_site` (`run` returns the rows of both).

A tree of 11,111 queries (fan-in 10, four levels above 10,000 leaves reading inputs)
whose every body spends about 100 µs computing (`--quick`: 111 queries). One operation
builds the whole tree on a fresh database: cold, with no store; then, through a store
that an earlier database filled, warm. The stores: `MemoryStore` (revert reuse, one
process) and `SqliteStore` (a file, one machine); Redis is measured by the tests
against a real server, not here. Reported: the time of each build, the bodies the warm
build ran, and its round trips to the store.

Goals: the warm build runs no body; it takes at most a tenth of the cold build; its round
trips are at most the graph's depth + 2 (the depth: the tree's levels of queries, 5).

The site example (`p12_site`) builds `examples/site.py`'s content cold, then a second
clean checkout of it in a fresh process through a warm `SqliteStore`, each build in a
process of its own and timed inside it, against the same goals.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import picante
from picante.stores import MemoryStore, SqliteStore

from . import p12_site
from ._harness import Check, Profile, Row, verify


if TYPE_CHECKING:
    from picante.stores import Store


__all__ = ["run"]

FAN = 10
WORK_SECONDS = 100e-6


def _spin() -> None:
    """About 100 µs of computing: the body of a query worth sharing."""
    until = time.perf_counter() + WORK_SECONDS
    while time.perf_counter() < until:
        pass


@picante.database(name="benchmarks.p12.Tree")
class Tree:
    def __init__(self) -> None:
        self.ran = 0

    @picante.input
    async def leaf(self, i: int) -> int:
        raise NotImplementedError

    @picante.query
    async def node(self, level: int, i: int) -> int:
        self.ran += 1
        _spin()
        if level == 0:
            return await self.leaf(i)
        first = i * FAN
        return sum([await self.node(level - 1, child) for child in range(first, first + FAN)])


def _tree(height: int) -> Tree:
    db = Tree()
    with picante.batch(db):
        for i in range(FAN**height):
            db.leaf.set(i, i)
    return db


async def _build(height: int, store: Store | None) -> tuple[float, int, int]:
    """Seconds, bodies run and round trips of one build of a fresh tree."""
    db = _tree(height)
    if store is not None:
        picante.share(db, store)
    trips = 0 if store is None else store.counters.round_trips
    start = time.perf_counter()
    total = await db.node(height, 0)
    seconds = time.perf_counter() - start
    verify(total == sum(range(FAN**height)), "tree value")
    if store is not None:
        await picante.flush_shared(db)
        trips = store.counters.round_trips - trips
    return seconds, db.ran, trips


async def _main(profile: Profile) -> list[Row]:
    height = 2 if profile.quick else 4
    queries = sum(FAN**level for level in range(height + 1))
    repeats = 1 if profile.quick else 3
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="picante-p12-") as folder:
        stores: dict[str, Any] = {
            "memory": MemoryStore(max_entries=4 * queries),
            "sqlite": SqliteStore(Path(folder) / "shared.sqlite"),
        }
        for name, store in stores.items():
            async with store:
                cold = min([(await _build(height, None))[0] for _ in range(repeats)])
                # Fill the store, then build fresh databases through it.
                _, filled, _ = await _build(height, store)
                verify(filled == queries, "the filling build runs every body")
                warm = [await _build(height, store) for _ in range(repeats)]
                seconds = min(each[0] for each in warm)
                ran = max(each[1] for each in warm)
                trips = max(each[2] for each in warm)
                limit = height + 1 + 2  # levels, plus the root's own list and one spare
                rows.append(
                    Row(
                        f"P12 warm build through {name} ({queries:,} queries of ~100 µs)",
                        seconds * 1e9,
                        {"plain": cold * 1e9},
                        [
                            # Bodies run, plus one: 1.00x when none ran (ratios are > 0).
                            Check("no body runs", ran + 1.0, 1.0),
                            Check("≤ 1/10 of the cold build", seconds / cold, 0.1),
                            # In process, a memory store makes no round trip to count.
                            *(
                                [Check(f"round trips ≤ depth + 2 ({limit})", trips / limit, 1.0)]
                                if name != "memory"
                                else []
                            ),
                        ],
                    )
                )
    return rows


def run(*, quick: bool = False) -> list[Row]:
    """Measure P12, the tree then the site example; return its rows (cold is `plain`)."""
    profile = Profile.of(quick=quick)
    return asyncio.run(_main(profile)) + p12_site.rows(profile)
