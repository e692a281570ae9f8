"""
P2: a cached hit from inside a running query, where the read is recorded as a dependency.

A query `outer` reads `fan` different, already-memoized `inner(k)` in a loop; each
repetition makes it run again by changing the input `tick` it also reads. Only the loop
is timed (from inside the body), so the figure is the cost of one `await self.inner(k)`
hit, dependency recording included, and nothing of running `outer` itself. The peers do
the same: an `alru_cache` coroutine awaiting `fan` `alru_cache` hits, and a plain
`async def` awaiting a plain dict-memoizing `async def`.

Goal: ≤ 0.6 times the `alru_cache` hit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import picante

from ._chain import executions
from ._harness import Profile, Row, compare, load_peer, ratio_check, verify


__all__ = ["run"]


class Stopwatch:
    """Nanoseconds accumulated by the timed loops inside the outer bodies."""

    elapsed = 0


def _make_db(keys: tuple[int, ...], stopwatch: Stopwatch) -> Any:
    clock = time.perf_counter_ns

    @picante.database
    class Db:
        @picante.input
        async def tick(self) -> int:
            raise NotImplementedError

        @picante.query
        async def inner(self, k: int) -> int:
            return k * 2

        @picante.query
        async def outer(self) -> int:
            await self.tick()
            start = clock()
            for k in keys:
                await self.inner(k)
            stopwatch.elapsed += clock() - start
            return 0

    return Db()


async def _main(profile: Profile) -> list[Row]:
    clock = time.perf_counter_ns
    fan = 20 if profile.quick else 1_000
    keys = tuple(range(fan))
    stopwatch = Stopwatch()

    db = _make_db(keys, stopwatch)
    db.tick.set(0)
    for k in keys:
        await db.inner(k)
    await db.outer()
    ticks = [0]
    before = executions(db)
    db.tick.set(-1)
    await db.outer()
    verify(executions(db) == before + 1, "outer re-runs and every inner read is a hit")

    async def picante_case(n: int) -> int:
        stopwatch.elapsed = 0
        for _ in range(n):
            ticks[0] += 1
            db.tick.set(ticks[0])
            await db.outer()
        return stopwatch.elapsed

    memo: dict[int, int] = {}

    async def plain_inner(k: int) -> int:
        value = memo.get(k)
        if value is None:
            value = memo[k] = k * 2
        return value

    async def plain_outer() -> int:
        inner = plain_inner
        start = clock()
        for k in keys:
            await inner(k)
        stopwatch.elapsed += clock() - start
        return 0

    async def plain_case(n: int) -> int:
        stopwatch.elapsed = 0
        for _ in range(n):
            await plain_outer()
        return stopwatch.elapsed

    cases = {"picante": picante_case, "plain": plain_case}
    async_lru = load_peer("async-lru")
    if async_lru is not None:

        @async_lru.alru_cache(maxsize=None)
        async def alru_inner(k: int) -> int:
            return k * 2

        @async_lru.alru_cache(maxsize=None)
        async def alru_outer() -> int:
            inner = alru_inner
            start = clock()
            for k in keys:
                await inner(k)
            stopwatch.elapsed += clock() - start
            return 0

        for k in keys:
            await alru_inner(k)

        async def alru_case(n: int) -> int:
            stopwatch.elapsed = 0
            for _ in range(n):
                alru_outer.cache_clear()
                await alru_outer()
            return stopwatch.elapsed

        cases["async-lru"] = alru_case

    per_run = await compare(cases, profile)
    ns = {name: value / fan for name, value in per_run.items()}
    alru = ns.get("async-lru")
    return [
        Row(
            f"P2 cached hit, inside a query (fan {fan})",
            ns["picante"],
            {"async-lru": alru, "plain": ns["plain"]},
            [
                ratio_check(
                    "≤ 0.6x async-lru", ns["picante"], alru, 0.6, missing="async-lru not installed"
                )
            ],
        )
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P2; return its result rows."""
    return asyncio.run(_main(Profile.of(quick=quick)))
