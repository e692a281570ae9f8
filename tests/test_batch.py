"""Batches: deferred mutations applied at once, at one revision, or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import picante


def make_db(log: list[str]) -> Any:
    @picante.database
    class Db:
        @picante.input
        async def n(self, k: str) -> int: ...

        @picante.query
        async def total(self) -> int:
            log.append("total()")
            return sum([self.n.get(k, default=0) for k in "abc"])

    return Db()


async def test_applied_at_exit_as_one_revision(log: list[str]) -> None:
    """All changes of a batch land together at a single new revision."""
    db = make_db(log)
    db.n.set("a", 1)
    assert await db.total() == 1
    with picante.batch(db):
        assert db.n.set("b", 2) == 1
        assert db.n.set("c", 3) == 1
        db.n.remove("a")
        assert picante.revision(db) == 1
    assert picante.revision(db) == 2
    assert (db.n.get("a"), db.n.get("b"), db.n.get("c")) == (None, 2, 3)
    assert await db.total() == 5
    assert log == ["total()", "total()"]


async def test_reads_inside_see_the_state_before(log: list[str]) -> None:
    """Inside the block, reads and queries see the pre-batch state."""
    db = make_db(log)
    db.n.set("a", 1)
    with picante.batch(db):
        db.n.set("a", 10)
        assert db.n.get("a") == 1
        assert await db.total() == 1
    assert await db.total() == 10


async def test_applied_in_order_and_noop_if_unchanged(log: list[str]) -> None:
    """Later changes to a key win; a batch that ends where it began moves nothing."""
    db = make_db(log)
    db.n.set("a", 1)
    with picante.batch(db):
        db.n.set("a", 5)
        db.n.remove("a")
        db.n.set("a", 1)
    assert picante.revision(db) == 1
    with picante.batch(db):
        db.n.set("a", 5)
        db.n.set("a", 6)
    assert (picante.revision(db), db.n.get("a")) == (2, 6)


async def test_raising_block_discards_everything(log: list[str]) -> None:
    """If the block raises, none of its changes applies."""
    db = make_db(log)
    db.n.set("a", 1)
    with pytest.raises(RuntimeError, match="boom"), picante.batch(db):
        db.n.set("a", 2)
        db.n.set("b", 3)
        raise RuntimeError("boom")
    assert (picante.revision(db), db.n.get("a"), db.n.get("b")) == (1, 1, None)


async def test_nested_batch_joins_outer(log: list[str]) -> None:
    """A batch inside a batch of the same database is part of the outer one."""
    db = make_db(log)
    with picante.batch(db):
        db.n.set("a", 1)
        with picante.batch(db):
            db.n.set("b", 2)
        assert picante.revision(db) == 0
        db.n.set("c", 3)
    assert picante.revision(db) == 1
    assert await db.total() == 6


async def test_inner_failure_discards_outer_too(log: list[str]) -> None:
    """An exception escaping a joined inner batch discards the whole batch."""
    db = make_db(log)
    with pytest.raises(KeyError), picante.batch(db):
        db.n.set("a", 1)
        with picante.batch(db):
            db.n.set("b", 2)
            raise KeyError("x")
    assert picante.revision(db) == 0


async def test_batch_on_snapshot(log: list[str]) -> None:
    """A batch on a snapshot applies to the snapshot only."""
    db = make_db(log)
    db.n.set("a", 1)
    snap = picante.snapshot(db)
    with picante.batch(snap):
        snap.n.set("a", 7)
        snap.n.set("b", 8)
        db.n.set("c", 100)  # not in a batch of db: applies at once
        assert picante.revision(db) == 2
    assert (picante.revision(snap), await snap.total(), await db.total()) == (2, 15, 101)


async def test_other_tasks_are_not_batched(log: list[str]) -> None:
    """A task outside the block mutates directly while the block is open."""
    db = make_db(log)
    entered, done = asyncio.Event(), asyncio.Event()

    async def outsider() -> None:
        await entered.wait()
        db.n.set("c", 3)
        done.set()

    task = asyncio.create_task(outsider())
    with picante.batch(db):
        db.n.set("a", 1)
        entered.set()
        await asyncio.wait_for(done.wait(), 5)
        assert (picante.revision(db), db.n.get("c"), db.n.get("a")) == (1, 3, None)
    await task
    assert (picante.revision(db), db.n.get("a")) == (2, 1)


async def test_batch_inside_query_refused(log: list[str]) -> None:
    """Mutations in a batch are still mutations: refused inside a running query."""

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def sneaky(self) -> int:
            with picante.batch(self):
                self.n.set(1)
            return 0

    db = Db()
    with pytest.raises(picante.UsageError):
        await db.sneaky()
    assert picante.revision(db) == 0
