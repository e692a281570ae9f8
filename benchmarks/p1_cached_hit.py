"""
P1: a cached hit from outside any query.

`await db.q(k)` with the memo valid at the current revision, against a hit of an
`async_lru.alru_cache` function and a plain `async def` that memoizes in a dict. Each
contender runs in a tight `for` loop inside one coroutine, so the loop costs the same for
all; nothing is subtracted. picante pays the attribute read `db.q` in every iteration (as
users write it); the peers are called through a local name, their cheapest form.

Goal: ≤ 0.4 times the `alru_cache` hit.
"""

from __future__ import annotations

import asyncio
import time

import picante

from ._harness import Profile, Row, compare, load_peer, ratio_check, verify


__all__ = ["run"]

KEY = 7


@picante.database
class Db:
    @picante.input
    async def n(self, k: int) -> int:
        raise NotImplementedError

    @picante.query
    async def q(self, k: int) -> int:
        return await self.n(k) * 2


async def _main(profile: Profile) -> list[Row]:
    clock = time.perf_counter_ns
    db = Db()
    db.n.set(KEY, KEY)
    verify(await db.q(KEY) == 2 * KEY, "db.q")

    async def picante_case(n: int) -> int:
        k = KEY
        start = clock()
        for _ in range(n):
            await db.q(k)
        return clock() - start

    memo: dict[int, int] = {}

    async def plain_q(k: int) -> int:
        value = memo.get(k)
        if value is None:
            value = memo[k] = k * 2
        return value

    async def plain_case(n: int) -> int:
        q, k = plain_q, KEY
        start = clock()
        for _ in range(n):
            await q(k)
        return clock() - start

    cases = {"picante": picante_case, "plain": plain_case}
    async_lru = load_peer("async-lru")
    if async_lru is not None:

        @async_lru.alru_cache(maxsize=None)
        async def alru_q(k: int) -> int:
            return k * 2

        verify(await alru_q(KEY) == 2 * KEY, "alru_q")

        async def alru_case(n: int) -> int:
            q, k = alru_q, KEY
            start = clock()
            for _ in range(n):
                await q(k)
            return clock() - start

        cases["async-lru"] = alru_case

    ns = await compare(cases, profile)
    alru = ns.get("async-lru")
    return [
        Row(
            "P1 cached hit, outside a query",
            ns["picante"],
            {"async-lru": alru, "plain": ns["plain"]},
            [
                ratio_check(
                    "≤ 0.4x async-lru", ns["picante"], alru, 0.4, missing="async-lru not installed"
                )
            ],
        )
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P1; return its result rows."""
    return asyncio.run(_main(Profile.of(quick=quick)))
