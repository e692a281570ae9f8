"""Snapshots: O(1) isolated views that reuse memos and share evaluations at one state."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

import picante
from tests.helpers import until


TIMEOUT = 5


def make_site(log: list[str]) -> Any:
    @picante.database
    class Site:
        def __init__(self, title: str = "t") -> None:
            self.title = title

        @picante.input
        async def source(self, path: str) -> str: ...

        @picante.input
        async def other(self) -> int: ...

        @picante.query
        async def words(self, path: str) -> int:
            log.append(f"words({path!r})")
            return len((await self.source(path)).split())

        @picante.query
        async def total(self) -> int:
            log.append("total()")
            return await self.words("a") + await self.words("b")

    return Site()


async def test_same_class_same_revision_user_fields_copied(log: list[str]) -> None:
    """A snapshot is an instance of the same class, at the same revision, with user fields."""
    db = make_site(log)
    db.title = "mine"
    db.source.set("a", "x")
    snap = picante.snapshot(db)
    assert type(snap) is type(db)
    assert picante.revision(snap) == picante.revision(db) == 1
    assert snap.title == "mine"
    assert snap.source.get("a") == "x"


async def test_isolated_both_ways(log: list[str]) -> None:
    """Changes to the database are invisible in the snapshot, and the other way round."""
    db = make_site(log)
    db.source.set("a", "one")
    db.source.set("b", "two words")
    snap = picante.snapshot(db)
    db.source.set("a", "one two three")
    snap.source.set("b", "x")
    snap.source.remove("a")
    assert (await db.words("a"), await db.words("b")) == (3, 2)
    assert snap.source.get("a") is None
    assert await snap.words("b") == 1
    with pytest.raises(picante.MissingInputError):
        await snap.words("a")
    assert db.source.get("b") == "two words"


async def test_own_revision_timeline(log: list[str]) -> None:
    """After creation a snapshot counts revisions on its own; no-ops move neither."""
    db = make_site(log)
    db.source.set("a", "x")
    snap = picante.snapshot(db)
    assert db.source.set("a", "y") == 2
    assert db.source.set("a", "z") == 3
    assert snap.source.set("a", "x") == 1  # equal to its own value: a no-op
    assert snap.source.set("b", "q") == 2
    assert (picante.revision(db), picante.revision(snap)) == (3, 2)


async def test_reuses_valid_memos_without_recomputing() -> None:
    """Memos valid at the snapshot's revision are reused, including after unrelated changes."""
    db = make_site([])
    db.source.set("a", "one")
    db.source.set("b", "two words")
    assert await db.total() == 3
    db.other.set(1)  # unrelated: every memo stays valid
    snap = picante.snapshot(db)
    with picante.testing.assert_nothing_runs(db), picante.testing.assert_nothing_runs(snap) as log:
        assert await snap.total() == 3
        assert (await snap.words("a"), await snap.words("b")) == (1, 2)
    assert log.verified == {"total()", "words('a')", "words('b')"}  # taken from the database


async def test_reuses_memos_after_the_database_moved_on(log: list[str]) -> None:
    """A snapshot reuses the memos valid at its revision even after the database recomputes."""
    db = make_site(log)
    db.source.set("a", "one")
    db.source.set("b", "two words")
    assert await db.total() == 3
    snap = picante.snapshot(db)
    db.source.set("a", "one two three four")
    assert await db.total() == 6
    log.clear()
    assert await snap.total() == 3
    assert log == []


async def test_snapshot_recomputes_only_what_its_own_changes_affect() -> None:
    """Changing an input on a snapshot recomputes, on the snapshot only, what read it."""
    db = make_site([])
    db.source.set("a", "one")
    db.source.set("b", "two words")
    assert await db.total() == 3
    snap = picante.snapshot(db)
    snap.source.set("a", "one two three")
    with picante.testing.assert_nothing_runs(db), picante.testing.record(snap) as log:
        assert await snap.total() == 5
        assert await db.total() == 3
    assert log.executed == ["words('a')", "total()"]
    assert log.verified == {"words('b')"}  # its memo taken from the database


async def test_snapshot_of_snapshot(log: list[str]) -> None:
    """Snapshots nest: each level sees its parent as of the moment it was taken."""
    db = make_site(log)
    db.source.set("a", "1")
    first = picante.snapshot(db)
    db.source.set("a", "1 2")
    first.source.set("b", "x y z")
    second = picante.snapshot(first)
    first.source.set("a", "1 2 3 4")
    db.source.set("b", "q")
    assert (second.source.get("a"), second.source.get("b")) == ("1", "x y z")
    assert await second.total() == 4
    assert await first.total() == 7
    assert await db.total() == 3


def gated_db(log: list[str], gate: asyncio.Event, started: asyncio.Event) -> Any:
    """A database whose `slow()` logs, signals *started*, then waits for *gate*."""

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def slow(self) -> int:
            log.append("slow()")
            started.set()
            await gate.wait()
            return await self.n() * 2

    return Db()


async def test_concurrent_evaluation_shared_with_snapshot(log: list[str]) -> None:
    """The same record at the same state is evaluated once for a database and its snapshot."""
    gate, started = asyncio.Event(), asyncio.Event()

    db = gated_db(log, gate, started)
    db.n.set(21)
    snap = picante.snapshot(db)
    first = asyncio.create_task(db.slow())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    second = asyncio.create_task(snap.slow())
    third = asyncio.create_task(picante.snapshot(db).slow())
    flight = db.__picante__.tables["slow"][()].flight
    await until(lambda: len(flight.followers or ()) == 3)  # db's own caller and both views
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, second, third), TIMEOUT) == [42] * 3
    assert log == ["slow()"]
    assert await snap.slow() == 42
    assert log == ["slow()"]


async def test_diverged_views_never_share() -> None:
    """Once a snapshot has its own changes, its evaluations are its own."""
    gate, started = asyncio.Event(), asyncio.Event()

    db = gated_db([], gate, started)
    db.n.set(1)
    snap = picante.snapshot(db)
    snap.n.set(5)
    db.n.set(2)  # both at revision 2 now, with different states
    assert picante.revision(db) == picante.revision(snap)
    with picante.testing.record(db) as mine, picante.testing.record(snap) as theirs:
        first = asyncio.create_task(db.slow())
        await asyncio.wait_for(started.wait(), TIMEOUT)
        second = asyncio.create_task(snap.slow())
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT) == [4, 10]
    assert (mine.executed, theirs.executed) == (["slow()"], ["slow()"])


async def test_creation_cost_does_not_depend_on_size(log: list[str]) -> None:
    """Taking a snapshot touches no table: the new view starts empty."""
    db = make_site(log)
    for i in range(1000):
        db.source.set(f"p{i}", "x")
    snap = picante.snapshot(db)
    assert snap.__picante__.tables == {}
    assert snap.source.get("p999") == "x"


async def test_dropped_snapshot_releases_history(log: list[str]) -> None:
    """Old versions kept for a snapshot are released at the first commit after it is gone."""
    db = make_site(log)
    db.source.set("a", "x")
    snap = picante.snapshot(db)
    db.source.set("a", "y")
    cell = db.__picante__.tables["source"][("a",)]
    assert cell.history == [(1, "x")]
    del snap
    gc.collect()
    # The collector only clears a weak reference; the next commit notices, under the lock.
    assert cell.history == [(1, "x")]
    db.source.set("b", "z")
    assert cell.history is None
    assert db.__picante__.readers.entries == []


async def test_snapshot_keeps_only_the_versions_it_can_read(log: list[str]) -> None:
    """While a snapshot lives, versions set and replaced after it was taken are not kept."""
    db = make_site(log)
    db.source.set("a", "v0")
    snap = picante.snapshot(db)
    for i in range(1, 50):
        db.source.set("a", f"v{i}")
    cell = db.__picante__.tables["source"][("a",)]
    assert cell.history == [(1, "v0")]
    assert snap.source.get("a") == "v0"


async def test_reuse_survives_snapshot_own_unrelated_change(log: list[str]) -> None:
    """After its own unrelated change, a snapshot still reuses its parent's memos."""
    db = make_site(log)
    db.source.set("a", "one")
    db.source.set("b", "two words")
    assert await db.total() == 3
    snap = picante.snapshot(db)
    snap.other.set(5)
    log.clear()
    assert await snap.total() == 3
    assert log == []


async def test_family_shrinks_when_snapshots_go(log: list[str]) -> None:
    """Dropping every snapshot returns the database to its single-view fast paths."""
    db = make_site(log)
    snaps = [picante.snapshot(db) for _ in range(3)]
    assert db.__picante__.sync.views == 4
    del snaps
    gc.collect()
    db.source.set("a", "x")  # released at the next commit
    assert db.__picante__.sync.views == 1


async def test_snapshot_reuses_memo_valid_by_durability(log: list[str]) -> None:
    """A memo the database knows valid through durability alone is reused by a snapshot."""
    gate, started = asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        @picante.input(durability=picante.Durability.HIGH)
        async def cfg(self) -> int: ...

        @picante.input
        async def src(self) -> int: ...

        @picante.query
        async def high(self) -> int:
            log.append("high()")
            if not started.is_set():
                started.set()
                await gate.wait()
            return await self.cfg() * 2

    db = Db()
    db.cfg.set(1)
    db.src.set(1)
    task = asyncio.create_task(db.high())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    db.src.set(2)  # a LOW change while high() runs: its memo is installed, not clean
    gate.set()
    assert await asyncio.wait_for(task, TIMEOUT) == 2
    assert not db.__picante__.tables["high"][()].clean
    snap = picante.snapshot(db)
    db.src.set(3)
    assert await snap.high() == 2
    assert log == ["high()"]


async def test_a_call_that_followed_a_snapshot_answers_at_its_own_revision() -> None:
    """
    `db.value()` starts at revision 1 and follows the evaluation a snapshot at the same
    state runs. Meanwhile a commit, and a read at revision 2, memoize `value()` anew, so
    the snapshot's memo of revision 1 cannot be taken here: the outcome still answers the
    call, at the revision it started at (before, it was computed again at revision 2).
    """
    gate = asyncio.Event()
    started = asyncio.Event()
    runs: list[int] = []

    @picante.database
    class Gated:
        @picante.input
        async def src(self) -> int:
            raise NotImplementedError

        @picante.query
        async def value(self) -> int:
            runs.append(picante.revision(self))
            found = await self.src()
            if len(runs) == 1:
                started.set()
                await gate.wait()
            return found

    db = Gated()
    db.src.set(0)
    view = picante.snapshot(db)
    first = asyncio.create_task(view.value())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    entered = asyncio.Event()

    async def follow() -> tuple[int, int]:
        revision = picante.revision(db)
        entered.set()
        return revision, await db.value()

    second = asyncio.create_task(follow())
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    db.src.set(5)
    assert await asyncio.wait_for(db.value(), TIMEOUT) == 5
    gate.set()
    assert await asyncio.wait_for(first, TIMEOUT) == 0
    assert await asyncio.wait_for(second, TIMEOUT) == (1, 0)
    assert runs == [1, 2]  # the snapshot's evaluation, and the read at revision 2
