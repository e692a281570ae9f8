"""`lru=N`: at most N memoized values per query; eviction changes work, never results."""

from __future__ import annotations

from typing import Any

import picante
from picante._store import EVICTED


def make_db(log: list[str]) -> Any:
    @picante.database
    class Db:
        @picante.input
        async def base(self) -> int: ...

        @picante.query(lru=3)
        async def square(self, n: int) -> int:
            log.append(f"square({n})")
            return n * n + await self.base()

        @picante.query
        async def total(self, n: int) -> int:
            return await self.square(n) + 1

    return Db()


def kept(db: Any) -> list[int]:
    table = db.__picante__.tables["square"]
    return sorted(key[0] for key, cell in table.items() if cell.value is not EVICTED)


async def test_keeps_at_most_n_values(log: list[str]) -> None:
    """Computing more than N keys evicts the least recently used values."""
    db = make_db(log)
    db.base.set(0)
    for n in range(5):
        assert await db.square(n) == n * n
    assert kept(db) == [2, 3, 4]


async def test_hits_refresh_recency(log: list[str]) -> None:
    """A cached hit makes a value the most recently used."""
    db = make_db(log)
    db.base.set(0)
    for n in (1, 2, 3):
        await db.square(n)
    await db.square(1)
    await db.square(4)
    assert kept(db) == [1, 3, 4]


async def test_evicted_value_is_recomputed_correctly(log: list[str]) -> None:
    """Reading an evicted value recomputes it; the result is what it would have been."""
    db = make_db(log)
    db.base.set(0)
    for n in range(5):
        await db.square(n)
    log.clear()
    assert await db.square(0) == 0
    assert await db.square(4) == 16
    assert log == ["square(0)"]


async def test_dependents_of_evicted_memos_revalidate(log: list[str]) -> None:
    """A memo over an evicted one still revalidates without rerunning anything."""
    db = make_db(log)
    db.base.set(0)
    assert await db.total(0) == 1
    for n in range(1, 5):
        await db.square(n)
    assert 0 not in kept(db)
    log.clear()
    db.base.set(0)  # no-op
    assert await db.total(0) == 1
    assert log == []
    db.base.set(10)
    assert await db.total(0) == 11
    assert log == ["square(0)"]


async def test_memo_evicted_during_its_own_revalidation_runs_again(log: list[str]) -> None:
    """A walk whose executions evict the memo being revalidated runs it; never returns no value."""

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int: ...

        @picante.query(lru=1)
        async def sq(self, k: int) -> int:
            log.append(f"sq({k})")
            if k == 0:
                return await self.n()
            return await self.parity() + 100

        @picante.query
        async def parity(self) -> int:
            log.append("parity()")
            return await self.sq(0) % 2

    db = Db()
    db.n.set(1)
    assert await db.sq(9) == 101
    log.clear()
    # sq(0) re-executes in the walk and pushes sq(9)'s value out; parity() is cut off.
    db.n.set(3)
    assert await db.sq(9) == 101
    assert log == ["sq(0)", "parity()", "sq(9)"]
