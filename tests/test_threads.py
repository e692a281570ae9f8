"""Threads: `set`, `remove`, `batch` and `snapshot` from other threads are atomic."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

import picante


if TYPE_CHECKING:
    from collections.abc import Iterator


KEYS = range(8)


@picante.database
class Grid:
    @picante.input
    async def cell(self, k: int) -> int: ...

    @picante.query
    async def row(self) -> tuple[int, ...]:
        return tuple(await asyncio.gather(*(self.cell(k) for k in KEYS)))

    @picante.query
    async def total(self) -> int:
        return sum(await self.row())


@pytest.fixture(autouse=True)
def frequent_switches() -> Iterator[None]:
    """Make the interpreter switch threads often, so interleavings actually happen."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def fill(db: Grid, value: int) -> None:
    with picante.batch(db):
        for k in KEYS:
            db.cell.set(k, value)


async def test_batches_from_threads_are_atomic() -> None:
    """Queries on the loop never see a batch from another thread half applied."""
    db = Grid()
    fill(db, 0)
    stop, queried = threading.Event(), threading.Event()
    snapshots: list[Any] = []

    def writer(offset: int) -> None:
        value = offset
        while not stop.is_set():
            value += 2
            fill(db, value)
            if value % 50 == 0:
                snapshots.append(picante.snapshot(db))
                # Wait for the loop to query once more, so the two surely interleave.
                queried.clear()
                queried.wait(1)

    threads = [threading.Thread(target=writer, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    try:
        seen = set()
        for _ in range(300):
            row, total = await asyncio.wait_for(asyncio.gather(db.row(), db.total()), 5)
            assert len(set(row)) == 1, row
            assert total % len(KEYS) == 0, total
            seen.add(row[0])
            queried.set()
            await asyncio.sleep(0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert len(seen) > 1  # the writers really ran while the loop queried
    assert snapshots
    for snap in snapshots:
        row = await snap.row()
        assert len(set(row)) == 1
        assert snap.cell.get(0) == row[0]


async def test_single_sets_from_a_thread_each_move_one_revision() -> None:
    """Every effective set from another thread moves the revision by exactly one."""
    db = Grid()
    fill(db, 0)
    start = picante.revision(db)
    done = threading.Event()

    sets, chunks = 3000, 10
    queried = threading.Event()

    def writer() -> None:
        for chunk in range(chunks):
            for i in range(chunk * sets // chunks + 1, (chunk + 1) * sets // chunks + 1):
                db.cell.set(i % len(KEYS), i)
            # Let the loop query at least once between chunks, so the two interleave.
            queried.clear()
            queried.wait(5)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    rows = set()
    while not done.is_set():
        row = await asyncio.wait_for(db.row(), 5)
        assert all(isinstance(v, int) for v in row)
        rows.add(row)
        queried.set()
        await asyncio.sleep(0)
    thread.join(5)
    assert len(rows) > 1
    assert picante.revision(db) == start + sets
    expected = tuple(max(i for i in range(1, sets + 1) if i % len(KEYS) == k) for k in KEYS)
    assert await db.row() == expected


@picante.database
class Watched:
    @picante.input
    async def source(self) -> int:
        raise NotImplementedError

    # The `eq` below runs inside the install of a recomputed memo, between the loads
    # that decide whether the memo is clean and the stores: the one place where a commit
    # from another thread can slip into a lock-free install.
    @picante.query(eq=lambda old, new: _commit_from_a_thread() or old == new)
    async def double(self) -> int:
        CALLS.append(await self.source())
        return 2 * CALLS[-1]


CALLS: list[int] = []
_RACE: list[Any] = []


def _commit_from_a_thread() -> bool:
    """Set `source` to 100 from another thread, once, when a test armed it."""
    if _RACE:
        db = _RACE.pop()
        thread = threading.Thread(target=db.source.set, args=(100,))
        thread.start()
        thread.join(5)
        assert not thread.is_alive()
    return False


async def test_a_commit_during_a_lock_free_install_is_not_missed() -> None:
    """A memo stored while another thread commits is re-checked, never served stale."""
    db = Watched()
    db.source.set(1)
    assert await db.double() == 2
    db.source.set(2)
    CALLS.clear()
    _RACE.append(db)
    # The recomputation reads 2; during its install, `source` becomes 100.
    assert await db.double() == 4
    assert not _RACE  # the commit really ran inside the install
    assert picante.revision(db) == 3
    assert await db.double() == 200
    assert CALLS == [2, 100]
