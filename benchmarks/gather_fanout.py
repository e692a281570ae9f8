"""
Fan-out: a query awaits 1,000 sub-queries, of which 0 %, 10 % or 100 % must run.

One operation changes the input read by the chosen share of the sub-queries (each
sub-query reads one of ten inputs; the others stay valid), then awaits the fan-out query,
which re-runs and reads all 1,000. Three ways to read them, alternately in one run:
`picante.gather`, `asyncio.gather`, and a loop of awaits. The figure is the time of the
operation per sub-query read. Goals: with hits among the reads, `picante.gather` costs
less than `asyncio.gather`; with none, at most 1.25x as much. A loop of awaits, which
reads one sub-query at a time, is shown for reference (it is cheapest when all are
hits). With `--quick`, 20 sub-queries.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import picante

from ._chain import executions
from ._harness import Check, Profile, Row, compare, verify


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._harness import Case


__all__ = ["run"]

WAYS = ("picante.gather", "asyncio.gather", "loop")
GROUPS = 10


async def _loop(reads: Iterable[Awaitable[int]]) -> list[int]:
    return [await read for read in reads]


GATHERS: dict[str, Callable[..., Awaitable[list[int]]]] = {
    "picante.gather": picante.gather,
    "asyncio.gather": asyncio.gather,
}


def _database(fan: int, way: str) -> Any:
    gather = GATHERS.get(way)

    @picante.database
    class Fan:
        @picante.input
        async def group(self, g: int) -> int:
            raise NotImplementedError

        @picante.input
        async def tick(self) -> int:
            raise NotImplementedError

        @picante.query
        async def sub(self, k: int) -> int:
            return await self.group(k % GROUPS) + k

        @picante.query
        async def total(self) -> int:
            await self.tick()
            reads = (self.sub(k) for k in range(fan))
            values = await (_loop(reads) if gather is None else gather(*reads))
            return sum(values)

    return Fan()


async def _case(fan: int, way: str, changed: int) -> Case:
    """
    *changed* of the ten groups change before each read (that share of misses), and the
    fan-out query's own input, so that it always re-runs.
    """
    db = _database(fan, way)
    for g in range(GROUPS):
        db.group.set(g, 0)
    db.tick.set(0)
    expected = sum(range(fan))
    verify(await db.total() == expected, f"{way}: fan-out value")
    value = [0]

    def change() -> None:
        value[0] += 1
        with picante.batch(db):
            db.tick.set(value[0])  # the fan-out query re-runs, whatever the share
            for g in range(changed):
                db.group.set(g, value[0])

    before = executions(db)
    change()
    await db.total()
    runs = fan * changed // GROUPS + 1
    verify(executions(db) - before == runs, f"{way}: {changed * 10} % of the reads re-run")

    async def case(n: int) -> int:
        clock = asyncio.get_running_loop().time
        elapsed = 0.0
        for _ in range(n):
            change()
            start = clock()
            await db.total()
            elapsed += clock() - start
        return int(elapsed * 1e9)

    return case


async def _main(profile: Profile) -> list[Row]:
    fan = 20 if profile.quick else 1_000
    rows: list[Row] = []
    for changed in (0, 1, GROUPS):
        cases = {way: await _case(fan, way, changed) for way in WAYS}
        per_op = await compare(cases, profile)
        ns = {way: figure / fan for way, figure in per_op.items()}
        pic = ns["picante.gather"]
        rows.append(
            Row(
                f"gather fan-out of {fan}, {changed * 100 // GROUPS} % misses: per read",
                pic,
                {"asyncio.gather": ns["asyncio.gather"], "loop": ns["loop"]},
                _checks(changed, pic / ns["asyncio.gather"]),
            )
        )
    return rows


def _checks(changed: int, to_asyncio: float) -> list[Check]:
    """What `picante.gather` is for: hits without tasks, misses at `asyncio.gather`'s cost."""
    if changed < GROUPS:
        return [Check("< asyncio.gather", to_asyncio, 1.0, strict=True)]
    return [Check("≤ 1.25x asyncio.gather", to_asyncio, 1.25)]


def run(*, quick: bool = False) -> list[Row]:
    """Measure the fan-out three ways at three shares of misses."""
    return asyncio.run(_main(Profile.of(quick=quick)))
