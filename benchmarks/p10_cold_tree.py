"""
P10: cold evaluation of a tree of 111,111 queries with fan-in 10.

`node(level, i)` at level 0 reads the input `leaf(i)`; above, it awaits its ten children
`node(level - 1, 10 i … 10 i + 9)` and sums them. The root is `node(5, 0)`: 100,000
leaves, 111,111 queries in all (1,111 with `--quick`, a tree of height 3). One operation
is one `await db.node(height, 0)` on a fresh database whose inputs were set beforehand,
outside the timing (in one batch), so every query runs cold: the root in a task of its
own, everything below inline. The figure is the time per query; each operation is long
and steady, so the median is over three repetitions rather than nine.

Peers: plain Python (the same `async def` tree over a list, no memo: the floor) and
async-lru (the same tree of `alru_cache` functions, fresh per operation: every miss runs
in a task). The signal libraries are left out: their cold cost is mostly building one
computed object per node, and at 10 to 15 µs per node they would take most of the run.

Goal: ≤ 2 µs per query (issue 15; it was 3 µs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING

import picante

from ._chain import executions
from ._harness import Check, Profile, Row, compare, load_peer, verify


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import ModuleType

    from ._harness import Case


__all__ = ["run"]

FAN = 10
PEERS = ("async-lru", "plain")


@picante.database
class Tree:
    @picante.input
    async def leaf(self, i: int) -> int:
        raise NotImplementedError

    @picante.query
    async def node(self, level: int, i: int) -> int:
        if level == 0:
            return await self.leaf(i)
        total = 0
        below = level - 1
        first = i * FAN
        for child in range(first, first + FAN):
            total += await self.node(below, child)
        return total


def _tree(leaves: list[int]) -> Tree:
    db = Tree()
    with picante.batch(db):
        for i, value in enumerate(leaves):
            db.leaf.set(i, value)
    return db


def _case(prepare: Callable[[], Callable[[], Awaitable[object]]]) -> Case:
    """Each operation: `prepare()` untimed (inputs), then the timed cold evaluation."""
    clock = time.perf_counter_ns

    async def case(n: int) -> int:
        elapsed = 0
        for _ in range(n):
            evaluate = prepare()
            start = clock()
            await evaluate()
            elapsed += clock() - start
        return elapsed

    return case


def _plain(leaves: list[int], height: int) -> Callable[[], Awaitable[int]]:
    async def node(level: int, i: int) -> int:
        if level == 0:
            return leaves[i]
        total = 0
        below = level - 1
        first = i * FAN
        for child in range(first, first + FAN):
            total += await node(below, child)
        return total

    async def root() -> int:
        return await node(height, 0)

    return root


def _alru(async_lru: ModuleType, leaves: list[int], height: int) -> Callable[[], Awaitable[int]]:
    @async_lru.alru_cache(maxsize=None)
    async def node(level: int, i: int) -> int:
        if level == 0:
            return leaves[i]
        total = 0
        below = level - 1
        first = i * FAN
        for child in range(first, first + FAN):
            total += await node(below, child)
        return total

    async def root() -> int:
        return int(await node(height, 0))

    return root


async def _main(profile: Profile, height: int) -> list[Row]:
    count = sum(FAN**level for level in range(height + 1))
    leaves = list(range(FAN**height))
    expected = sum(leaves)

    db = _tree(leaves)
    verify(await db.node(height, 0) == expected, "picante tree value")
    verify(executions(db) == count, "every query ran once")

    def prepare_picante() -> Callable[[], Awaitable[object]]:
        fresh = _tree(leaves)

        def evaluate() -> Awaitable[object]:
            return fresh.node(height, 0)

        return evaluate

    root = _plain(leaves, height)
    verify(await root() == expected, "plain tree value")
    cases: dict[str, Case] = {
        "picante": _case(prepare_picante),
        "plain": _case(lambda: root),
    }
    async_lru = load_peer("async-lru")
    if async_lru is not None:
        verify(await _alru(async_lru, leaves, height)() == expected, "async-lru tree value")
        cases["async-lru"] = _case(lambda: _alru(async_lru, leaves, height))

    # Each operation is long (a whole tree, up to seconds for async-lru) and steady: three
    # repetitions keep the run short.
    ns = await compare(cases, dataclasses.replace(profile, repetitions=min(profile.repetitions, 3)))
    per_query = {name: value / count for name, value in ns.items()}
    pic = per_query["picante"]
    peers = {name: per_query.get(name) for name in PEERS}
    return [
        Row(
            f"P10 cold tree of {count:,} queries, per query",
            pic,
            peers,
            [Check("≤ 2 µs per query", pic / 2_000, 1.0)],
        )
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P10; return its result rows."""
    return asyncio.run(_main(Profile.of(quick=quick), 3 if quick else 5))
