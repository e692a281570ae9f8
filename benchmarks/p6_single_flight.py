"""
P6: 10,000 tasks await one cold key.

One operation is `asyncio.gather` of 10,000 `db.q(k)` calls for a key `k` never asked
before (a fresh key every operation): gather runs each call in a task of its own, the
first one starts the evaluation and the 9,999 others wait for it. The query body runs
exactly once per key, which is verified with picante's execution counter over every
timed operation. Peers: async-lru (`alru_cache` is single-flight too; its executions
are counted the same way) and plain Python: the same 10,000 tasks each running the
function itself, with no memo and no waiting; that is the floor, the cost of the tasks.

Rows: the time per waiter, task included; then the same above the floor (a contender
minus plain), which is what a waiter costs beyond the task it runs in, since a task
alone costs more than the goal (see the floors of BENCHMARKS.md).

Goals: exactly one execution per key; ≤ 2 µs per waiter above the task.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import picante

from ._chain import executions
from ._harness import Check, Profile, Row, compare, load_peer, verify


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._harness import Case


__all__ = ["run"]


@picante.database
class Db:
    @picante.query
    async def q(self, k: int) -> int:
        return k * 2


def _case(fn: Callable[[int], Awaitable[int]], waiters: int, keys: list[int]) -> Case:
    """Each operation: *waiters* tasks await `fn(k)` for a fresh key *k*."""
    clock = time.perf_counter_ns
    gather = asyncio.gather

    async def case(n: int) -> int:
        elapsed = 0
        for _ in range(n):
            keys[0] += 1
            k = keys[0]
            start = clock()
            await gather(*[fn(k) for _ in range(waiters)])
            elapsed += clock() - start
        return elapsed

    return case


async def _main(profile: Profile, waiters: int) -> list[Row]:
    db = Db()
    keys = [0]
    results = await asyncio.gather(*[db.q(-1) for _ in range(waiters)])
    verify(results == [-2] * waiters, "every waiter gets the value")
    verify(executions(db) == 1, "one execution for all waiters")

    async def plain_q(k: int) -> int:
        return k * 2

    cases: dict[str, Case] = {
        "picante": _case(db.q, waiters, keys),
        "plain": _case(plain_q, waiters, [0]),
    }
    alru_runs = [0]
    alru_keys = [0]
    async_lru = load_peer("async-lru")
    if async_lru is not None:

        @async_lru.alru_cache(maxsize=None)
        async def alru_q(k: int) -> int:
            alru_runs[0] += 1
            return k * 2

        results = await asyncio.gather(*[alru_q(-1) for _ in range(waiters)])
        verify(results == [-2] * waiters, "every alru_cache waiter gets the value")
        verify(alru_runs[0] == 1, "alru_cache single-flights")
        cases["async-lru"] = _case(alru_q, waiters, alru_keys)

    before = executions(db)
    ns = await compare(cases, profile, max_ops=1_000)
    per_waiter = {name: value / waiters for name, value in ns.items()}
    # Keys asked during calibration and timing; each must have run exactly once.
    runs = executions(db) - before
    verify(runs >= keys[0], "every key was evaluated")
    if async_lru is not None:
        verify(alru_runs[0] - 1 == alru_keys[0], "alru_cache ran once per key")

    pic = per_waiter["picante"]
    plain = per_waiter["plain"]
    alru = per_waiter.get("async-lru")
    label = f"P6 {waiters:,} waiters"
    return [
        Row(
            f"{label}, one cold key: per waiter",
            pic,
            {"async-lru": alru, "plain": plain},
            [Check("exactly 1 execution per key", runs / keys[0], 1.0)],
        ),
        Row(
            f"{label}: per waiter above the task",
            pic - plain,
            {"async-lru": None if alru is None else alru - plain},
            [Check("≤ 2 µs per waiter", (pic - plain) / 2_000, 1.0)],
        ),
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P6; return its result rows."""
    return asyncio.run(_main(Profile.of(quick=quick), 1_000 if quick else 10_000))
