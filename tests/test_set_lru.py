"""
`picante.set_lru(db.query, n)`: cap a query's memoized values at run time, per database
instance. Eviction changes work (an evicted memo re-executes when read), never results,
and the memos that read an evicted one stay valid.
"""

from __future__ import annotations

from typing import Any

import pytest

import picante
from picante._runtime import view_of
from picante._store import EVICTED, NEVER


@picante.database
class Db:
    """`square` has no declared cap; `capped` is declared with `lru=3`."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def base(self) -> int:
        raise NotImplementedError

    @picante.query
    async def square(self, n: int) -> int:
        self.log.append(f"square({n})")
        return n * n + await self.base()

    @picante.query(lru=3)
    async def capped(self, n: int) -> int:
        self.log.append(f"capped({n})")
        return n + await self.base()

    @picante.query
    async def total(self, n: int) -> int:
        self.log.append(f"total({n})")
        return await self.square(n) + 1


def make_db(log: list[str]) -> Db:
    db = Db(log)
    db.base.set(0)
    return db


def kept(db: object, name: str) -> list[int]:
    """The keys (ints) of *name*'s memos that still hold their value."""
    table = view_of(db).tables.get(name, {})
    return sorted(
        key[0]  # type: ignore[misc]
        for key, cell in table.items()
        if cell.verified_at != NEVER and cell.value is not EVICTED
    )


async def test_set_lru_evicts_at_once_on_a_query_without_lru(log: list[str]) -> None:
    """
    On a query declared without `lru=`, the cap applies at once: the least recently
    computed values beyond it go; an evicted memo re-executes when read, a kept one not.
    """
    db = make_db(log)
    assert [await db.square(n) for n in range(5)] == [0, 1, 4, 9, 16]
    assert kept(db, "square") == [0, 1, 2, 3, 4]
    picante.set_lru(db.square, 2)
    assert kept(db, "square") == [3, 4]
    log.clear()
    assert await db.square(4) == 16
    assert log == []
    assert await db.square(0) == 0
    assert log == ["square(0)"]
    assert kept(db, "square") == [0, 4]


async def test_dependents_of_evicted_memos_stay_valid(log: list[str]) -> None:
    """
    Evicting a value leaves its bookkeeping: memos that read it are still hits, and after
    an input change they revalidate through it (re-running it for its value).
    """
    db = make_db(log)
    assert [await db.total(n) for n in range(3)] == [1, 2, 5]
    picante.set_lru(db.square, 1)
    assert kept(db, "square") == [2]
    log.clear()
    assert [await db.total(n) for n in range(3)] == [1, 2, 5]
    assert log == []
    db.base.set(10)
    assert await db.total(0) == 11
    assert log == ["square(0)", "total(0)"]


async def test_hits_count_as_uses_once_the_handle_is_fetched_again(log: list[str]) -> None:
    """After `set_lru`, hits through `db.square` (fetched again) make a value recent."""
    db = make_db(log)
    picante.set_lru(db.square, 2)
    square = db.square
    await square(1)
    await square(2)
    await square(1)  # a hit: now 2 is the least recently used
    await square(3)
    assert kept(db, "square") == [1, 3]
    assert log == ["square(1)", "square(2)", "square(3)"]


async def test_a_handle_fetched_before_the_cap_still_answers(log: list[str]) -> None:
    """A handle taken before the first `set_lru` keeps giving correct values."""
    db = make_db(log)
    old = db.square
    picante.set_lru(db.square, 1)
    assert [await old(n) for n in (1, 2, 1)] == [1, 4, 1]
    assert len(kept(db, "square")) == 1


async def test_set_lru_on_a_query_declared_with_lru(log: list[str]) -> None:
    """A declared `lru=3` can be lowered (evicting at once), lifted with None, and raised."""
    db = make_db(log)
    assert [await db.capped(n) for n in range(5)] == [0, 1, 2, 3, 4]
    assert kept(db, "capped") == [2, 3, 4]
    picante.set_lru(db.capped, 1)
    assert kept(db, "capped") == [4]
    await db.capped(7)
    assert kept(db, "capped") == [7]
    picante.set_lru(db.capped, None)
    for n in range(10):
        await db.capped(n)
    assert kept(db, "capped") == list(range(10))
    picante.set_lru(db.capped, 2)
    assert kept(db, "capped") == [8, 9]
    log.clear()
    assert [await db.capped(n) for n in (9, 8, 0)] == [9, 8, 0]
    assert log == ["capped(0)"]


async def test_capacity_belongs_to_the_instance(log: list[str]) -> None:
    """
    `set_lru` changes one database instance: another keeps the declared capacity (or
    none); a snapshot taken after the call inherits the new capacity.
    """
    first, second = make_db(log), make_db(log)
    picante.set_lru(first.capped, 1)
    picante.set_lru(first.square, 1)
    for db in (first, second):
        for n in range(5):
            await db.capped(n)
            await db.square(n)
    assert (kept(first, "capped"), kept(first, "square")) == ([4], [4])
    assert (kept(second, "capped"), kept(second, "square")) == ([2, 3, 4], [0, 1, 2, 3, 4])

    snap = picante.snapshot(first)
    for n in range(10, 14):
        assert await snap.capped(n) == n
        assert await snap.square(n) == n * n
    assert len(kept(snap, "capped")) == 1
    assert len(kept(snap, "square")) == 1


async def test_set_lru_never_changes_results(log: list[str]) -> None:
    """Under a cap of 1, every read across input changes equals a from-scratch value."""
    db = make_db(log)
    picante.set_lru(db.square, 1)
    for base in (0, 3, 3, 7):
        db.base.set(base)
        for n in (2, 0, 2, 5, 0):
            assert await db.total(n) == n * n + base + 1
            assert await db.square(n) == n * n + base


@pytest.mark.parametrize("bad", [0, -1, True, False, "3", 2.0])
async def test_bad_capacity_is_refused(log: list[str], bad: Any) -> None:
    """The capacity must be a positive int or None; a refused call evicts nothing."""
    db = make_db(log)
    for n in range(3):
        await db.square(n)
    with pytest.raises(picante.UsageError, match="capacity"):
        picante.set_lru(db.square, bad)
    assert kept(db, "square") == [0, 1, 2]


async def test_set_lru_needs_a_bound_query(log: list[str]) -> None:
    """Anything but a query of a database instance is refused (an input, the class attribute)."""
    db = make_db(log)
    bads: list[Any] = [db.base, Db.square, print, lambda n: n, None, db]
    for bad in bads:
        with pytest.raises(picante.UsageError, match="query of a database instance"):
            picante.set_lru(bad, 2)


async def test_snapshots_have_capacities_of_their_own(log: list[str]) -> None:
    """
    A snapshot taken before `set_lru` keeps the capacity it started with; `set_lru` on a
    snapshot changes only the snapshot.
    """
    db = make_db(log)
    before = picante.snapshot(db)
    picante.set_lru(db.square, 1)
    after = picante.snapshot(db)
    picante.set_lru(after.square, 2)
    for n in range(4):
        for each in (db, before, after):
            assert await each.square(n) == n * n
    assert kept(db, "square") == [3]
    assert kept(before, "square") == [0, 1, 2, 3]
    assert kept(after, "square") == [2, 3]
