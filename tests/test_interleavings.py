"""
Interleavings that once gave wrong values, errors or hangs: one regression test each.

Every test drives the engine through the public API only. Ordering comes from
`asyncio.Event` gates, never from timed sleeps, and anything that could deadlock runs
under a timeout so that a deadlock fails fast.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import tracemalloc
from typing import TYPE_CHECKING, TypeVar

import pytest

import picante


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path


TIMEOUT = 10

T = TypeVar("T")


async def bounded(awaitable: Awaitable[T]) -> T:
    """Await *awaitable* under `TIMEOUT`, so that a deadlock fails instead of hanging."""
    async with asyncio.timeout(TIMEOUT):
        return await awaitable


# -- 1. a memo adopted from a snapshot's evaluation ----------------------------------------


async def test_memo_shared_with_a_snapshot_revalidates_against_current_dependencies(
    log: list[str],
) -> None:
    """A memo taken from a snapshot's shared evaluation is revalidated like one of ours."""
    gate, started = asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.role = "db"

        @picante.input
        async def x(self) -> int: ...

        @picante.query
        async def p(self) -> int:
            log.append(f"p() in {self.role}")
            return await self.x()

        @picante.query
        async def q(self) -> int:
            log.append(f"q() in {self.role}")
            if self.role == "snapshot":
                started.set()
                await gate.wait()
            return await self.p() + 100

    db = Db()
    db.x.set(1)
    assert await db.p() == 1  # p's memo: verified at a revision where x was 1
    db.x.set(0)
    snap = picante.snapshot(db)
    snap.role = "snapshot"
    in_snapshot = asyncio.create_task(snap.q())
    await bounded(started.wait())
    # The database asks for q at the same state: it shares the snapshot's evaluation.
    in_db = asyncio.create_task(db.q())
    gate.set()
    assert await bounded(in_snapshot) == 100
    assert await bounded(in_db) == 100
    assert log == ["p() in db", "q() in snapshot", "p() in snapshot"]
    db.x.set(1)
    assert await bounded(db.q()) == 101  # from scratch: p() = 1
    assert snap.x.get() == 0


# -- 2. a dependency re-verified by another view while a revalidation walks ---------------


async def test_revalidation_sees_a_failure_installed_by_another_view(log: list[str]) -> None:
    """A dependency that another view's evaluation settled as a failure raises in its reader."""
    go, p_gate = asyncio.Event(), asyncio.Event()
    d_started, c_started, follower_started = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.role = "db"
            self.hold_p = False

        @picante.input
        async def x(self) -> int: ...

        @picante.query
        async def p(self) -> int:
            log.append(f"p() in {self.role}")
            if self.hold_p:
                await p_gate.wait()
            return await self.x()

        @picante.query
        async def d(self) -> int:
            log.append(f"d() in {self.role}")
            if self.role == "snapshot":
                d_started.set()
                await go.wait()
            value = await self.p()
            if value < 0:
                raise ValueError(value)
            return value

        @picante.query
        async def c(self) -> int:
            log.append(f"c() in {self.role}")
            c_started.set()
            await go.wait()
            return await self.d()

    db = Db()
    db.x.set(1)
    assert await db.d() == 1
    db.x.set(-1)
    snap = picante.snapshot(db)
    snap.role = "snapshot"
    db.hold_p = True
    # The snapshot evaluates d (it will fail); the database's d() shares that evaluation.
    in_snapshot = asyncio.create_task(snap.d())
    await bounded(d_started.wait())

    async def follow() -> int:
        follower_started.set()
        return await db.d()

    follower = asyncio.create_task(follow())
    await bounded(follower_started.wait())
    # c waits on the same gate after d: released, d fails first, then c reads d, whose
    # revalidation (through p, held) is under way when the follower takes the failure.
    reader = asyncio.create_task(db.c())
    await bounded(c_started.wait())
    # The follower shares the snapshot's evaluation: the database has not run d again.
    assert log == ["d() in db", "p() in db", "d() in snapshot", "c() in db"]
    go.set()
    with pytest.raises(ValueError, match="-1"):
        await bounded(in_snapshot)
    with pytest.raises(ValueError, match="-1"):
        await bounded(follower)
    p_gate.set()
    with pytest.raises(ValueError, match="-1"):
        await bounded(reader)
    with pytest.raises(ValueError, match="-1"):
        await bounded(db.c())


# -- 3. a snapshot's finalizer during a commit or a memo install --------------------------


async def test_snapshot_collected_inside_a_commit_or_an_install() -> None:
    """A snapshot released by the cyclic GC at any point never breaks a commit or a memo."""

    @picante.database
    class Db:
        @picante.input
        async def x(self) -> int: ...

        @picante.query
        async def p(self) -> int:
            return await self.x() * 10

        @picante.query
        async def q(self) -> int:
            return await self.x() + await self.p()

    def drop_a_snapshot() -> None:
        # A snapshot and its view refer to each other: unreachable, it stays pinned until
        # the cyclic GC finds it. Collecting the youngest generation first resets its
        # count, so the next collection comes after exactly `threshold` allocations and
        # finds the snapshot there.
        gc.collect(0)
        picante.snapshot(db)

    db = Db()
    db.x.set(0)
    assert await db.q() == 0
    thresholds = gc.get_threshold()
    gc.set_threshold(1_000_000)
    try:
        # Sweep the point at which the collection happens over every allocation of a commit
        # and of a revalidation that re-executes a query inside another one.
        for threshold in range(1, 400):
            drop_a_snapshot()
            gc.set_threshold(threshold)
            try:
                revision = db.x.set(threshold)
            finally:
                gc.set_threshold(1_000_000)
            assert revision == picante.revision(db) == threshold + 1
            drop_a_snapshot()
            gc.set_threshold(threshold)
            try:
                value = await db.q()
            finally:
                gc.set_threshold(1_000_000)
            assert value == threshold * 11
    finally:
        gc.set_threshold(*thresholds)


# -- 4. picante's evaluation task cancelled before its first step -------------------------


def cancel_all_but(*spared: asyncio.Task[object] | None) -> None:
    """Cancel every task of the loop but *spared*, as a shutdown does."""
    for task in asyncio.all_tasks():
        if task not in spared:
            task.cancel()


@pytest.mark.parametrize("shutdown", [False, True], ids=["caller-spared", "caller-cancelled"])
async def test_evaluation_task_cancelled_before_its_first_step(
    log: list[str], *, shutdown: bool
) -> None:
    """An evaluation whose task is cancelled before it ran is retried for every caller."""

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def q(self) -> int:
            log.append("q()")
            return await self.n() * 2

    db = Db()
    db.n.set(21)
    caller = asyncio.create_task(db.q())
    # One loop step, nothing else can express it: the caller starts the evaluation in a
    # task of picante's and waits for it, and that task has not taken its first step yet.
    await asyncio.sleep(0)
    assert log == []
    cancel_all_but(asyncio.current_task(), None if shutdown else caller)
    if shutdown:
        with pytest.raises(asyncio.CancelledError):
            await bounded(caller)
    else:
        assert await bounded(caller) == 42
    assert await bounded(db.q()) == 42
    assert log == ["q()"]


async def test_evaluation_task_cancelled_before_its_first_step_keeps_no_history() -> None:
    """After a shutdown cancelled an evaluation before it ran, replaced versions are freed."""

    @picante.database
    class Db:
        @picante.input
        async def text(self) -> str: ...

        @picante.query
        async def size(self) -> int:
            return len(await self.text())

    db = Db()
    db.text.set(kilobyte(0))
    caller = asyncio.create_task(db.size())
    # One loop step, as above: picante's evaluation task exists and has not run.
    await asyncio.sleep(0)
    cancel_all_but(asyncio.current_task())
    with pytest.raises(asyncio.CancelledError):
        await bounded(caller)

    async def edit() -> None:
        for i in range(1, 2_001):
            db.text.set(kilobyte(i))

    retained = await retained_by(edit)
    assert retained < 256 * 1024, f"{retained:,} bytes retained"
    assert db.text.get() == kilobyte(2_000)


def kilobyte(i: int) -> str:
    """A distinct string of 1,024 characters."""
    return f"{i:06d}".ljust(1_024, "x")


async def retained_by(action: Callable[[], Awaitable[object]]) -> int:
    """Bytes still allocated after *action* (and a full collection), measured by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


# -- 5. cycles through another database or a snapshot -------------------------------------


async def test_cycle_through_another_database() -> None:
    """A query of one database that needs itself through another database's query raises."""

    @picante.database
    class Left:
        @picante.query
        async def a(self, k: int) -> int:
            return await right.b(k) + 1

    @picante.database
    class Right:
        @picante.query
        async def b(self, k: int) -> int:
            return await left.a(k) + 1

    left, right = Left(), Right()
    with pytest.raises(picante.CycleError):
        await bounded(left.a(1))


@pytest.mark.parametrize("when", ["before", "inside", "older"])
async def test_cycle_through_a_snapshot(when: str) -> None:
    """
    A query that needs itself through a snapshot raises `CycleError`, not deadlocks: a
    snapshot at the same state taken before the call or inside the query, or (found beyond
    the reported cases) a snapshot at an older revision.
    """
    peers: dict[str, Db] = {}

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.role = "db"

        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def q(self) -> int:
            if self.role == "snapshot":
                return await peers["db"].q() + await self.n()
            if when == "inside":
                peers["snapshot"] = picante.snapshot(self)
                peers["snapshot"].role = "snapshot"
            return await peers["snapshot"].q() + await self.n()

    db = Db()
    peers["db"] = db
    db.n.set(1)
    if when != "inside":
        peers["snapshot"] = picante.snapshot(db)
        peers["snapshot"].role = "snapshot"
    if when == "older":
        db.n.set(2)
    with pytest.raises(picante.CycleError):
        await bounded(db.q())


async def test_snapshot_taken_during_an_evaluation_shares_it(log: list[str]) -> None:
    """
    A snapshot taken while the database evaluates a query shares that evaluation at the
    same state (found beyond the reported cases).
    """
    gate, started, follower_started = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def q(self) -> int:
            log.append("q()")
            started.set()
            await gate.wait()
            return await self.n() * 2

    db = Db()
    db.n.set(21)
    in_db = asyncio.create_task(db.q())
    await bounded(started.wait())
    snap = picante.snapshot(db)

    async def follow() -> int:
        follower_started.set()
        return await snap.q()

    in_snapshot = asyncio.create_task(follow())
    await bounded(follower_started.wait())
    gate.set()
    assert await bounded(in_db) == 42
    assert await bounded(in_snapshot) == 42
    assert log == ["q()"]


# -- 6. an override that calls the base class's query -------------------------------------


async def test_override_calls_the_base_query(log: list[str]) -> None:
    """An override may build on `super()`'s query; the override stays the handle for every key."""

    @picante.database
    class Base:
        @picante.input
        async def text(self, k: str) -> str: ...

        @picante.query
        async def words(self, k: str) -> int:
            log.append(f"Base.words({k})")
            return len((await self.text(k)).split())

    @picante.database
    class Loud(Base):
        @picante.query
        async def words(self, k: str) -> int:
            log.append(f"Loud.words({k})")
            return await super().words(k) * 10

    db = Loud()
    db.text.set("a", "one two")
    db.text.set("b", "one two three")
    assert await bounded(db.words("a")) == 20
    assert await bounded(db.words("b")) == 30
    assert log == ["Loud.words(a)", "Base.words(a)", "Loud.words(b)", "Base.words(b)"]
    db.text.set("a", "one")
    assert await bounded(db.words("a")) == 10
    assert await bounded(db.words("b")) == 30
    assert log[4:] == ["Loud.words(a)", "Base.words(a)"]


# -- 7, 8. batches ------------------------------------------------------------------------


@picante.database
class Counts:
    @picante.input
    async def n(self, k: str) -> int: ...


async def test_task_started_in_a_batch_mutates_after_it_ended() -> None:
    """A task started inside a batch that sets an input after the block commits on its own."""
    gate = asyncio.Event()
    db = Counts()
    db.n.set("a", 1)

    async def late() -> int:
        await gate.wait()
        return db.n.set("a", 2)

    with picante.batch(db):
        task = asyncio.create_task(late())
        db.n.set("b", 1)
    assert picante.revision(db) == 2
    gate.set()
    assert await bounded(task) == 3
    assert picante.revision(db) == 3
    assert db.n.get("a") == 2


def test_failed_inner_batch_is_discarded_when_the_outer_one_catches() -> None:
    """An inner batch that raises discards its own changes; the enclosing batch keeps its own."""
    db = Counts()
    db.n.set("a", 1)
    with picante.batch(db):
        db.n.set("a", 10)
        with pytest.raises(ValueError, match="inner"), picante.batch(db):
            db.n.set("b", 20)
            db.n.set("a", 99)
            raise ValueError("inner")
        db.n.set("c", 30)
    assert picante.revision(db) == 2
    assert (db.n.get("a"), db.n.get("b"), db.n.get("c")) == (10, None, 30)


# -- 9. a task that outlives its query -----------------------------------------------------


@pytest.mark.parametrize("read", ["input", "query"])
async def test_task_outliving_its_query_reads_the_query_revision(read: str) -> None:
    """
    A task spawned by a query reads an input, or a query (found beyond the reported cases),
    as of the query's revision, even after the query ended.
    """
    gate = asyncio.Event()
    spawned: list[asyncio.Task[int]] = []

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def tenfold(self) -> int:
            return await self.n() * 10

        @picante.query
        async def q(self) -> int:
            async def later() -> int:
                await gate.wait()
                return await (self.n() if read == "input" else self.tenfold())

            spawned.append(asyncio.create_task(later()))
            return await self.n()

    db = Db()
    db.n.set(1)
    assert await bounded(db.q()) == 1
    db.n.set(2)
    db.n.set(3)
    gate.set()
    assert await bounded(spawned[0]) == (1 if read == "input" else 10)
    assert await bounded(db.tenfold()) == 30


# -- 10. snapshot() racing a first touch of a handle on another thread --------------------


@picante.database
class Wide:
    def __init__(self) -> None:
        # Many plain attributes: `snapshot` copies them, so its copy takes a while.
        for i in range(100):
            setattr(self, f"field{i}", i)

    @picante.input
    async def a(self) -> int: ...

    @picante.input
    async def b(self) -> int: ...

    @picante.input
    async def c(self) -> int: ...

    @picante.query
    async def d(self) -> int:
        return await self.a()

    @picante.query
    async def e(self) -> int:
        return await self.b()

    @picante.query
    async def f(self) -> int:
        return await self.c()


def test_snapshot_while_another_thread_touches_handles_first() -> None:
    """`snapshot()` on one thread is safe while another thread first touches a handle."""
    errors: list[BaseException] = []

    def snapshots(db: Wide, started: threading.Event, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                picante.snapshot(db)
                started.set()
        except BaseException as error:
            errors.append(error)
            started.set()

    interval = sys.getswitchinterval()
    # Switch threads as often as possible, so that the two threads interleave finely.
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(300):
            db = Wide()
            picante.revision(db)
            started, stop = threading.Event(), threading.Event()
            thread = threading.Thread(target=snapshots, args=(db, started, stop))
            thread.start()
            try:
                assert started.wait(TIMEOUT)
                for name in ("a", "b", "c", "d", "e", "f"):
                    getattr(db, name)
            finally:
                stop.set()
                thread.join(TIMEOUT)
            if errors:
                break
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


# -- 11. what a live snapshot keeps --------------------------------------------------------


async def test_live_snapshot_keeps_only_the_versions_it_can_read() -> None:
    """A live snapshot keeps the version it reads and nothing of the edits made after it."""

    @picante.database
    class Db:
        @picante.input
        async def text(self) -> str: ...

        @picante.query
        async def size(self) -> int:
            return len(await self.text())

    db = Db()
    db.text.set(kilobyte(0))
    assert await db.size() == 1_024
    snap = picante.snapshot(db)

    async def edit() -> None:
        for i in range(1, 5_001):
            db.text.set(kilobyte(i))
            if i % 100 == 0:
                assert await db.size() == 1_024

    retained = await retained_by(edit)
    # Two versions (the snapshot's and the current one) are about 2 kB; 5,000 are 5 MB.
    assert retained < 512 * 1024, f"{retained:,} bytes retained"
    assert await snap.text() == kilobyte(0)
    assert await snap.size() == 1_024
    assert db.text.get() == kilobyte(5_000)


# -- found while rewriting the core --------------------------------------------------------


async def test_evaluation_bound_to_an_older_revision_memoizes_nothing_stale(
    log: list[str],
) -> None:
    """
    An evaluation suspended across changes answers for its revision but does not memoize an
    outcome whose dependency has since been re-verified, and backdated, at a later revision.
    """
    gate, started = asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        @picante.input
        async def x(self) -> int: ...

        @picante.query
        async def d(self) -> int:
            log.append("d()")
            return await self.x()

        @picante.query
        async def q(self) -> int:
            log.append("q()")
            started.set()
            await gate.wait()
            return await self.d() + 100

    db = Db()
    db.x.set(0)
    assert await db.d() == 0
    db.x.set(1)
    suspended = asyncio.create_task(db.q())  # bound to the revision where x is 1
    await bounded(started.wait())
    db.x.set(0)
    # d re-executes to 0, equal to its memo from when x was 0 before: backdated.
    assert await db.d() == 0
    gate.set()
    assert await bounded(suspended) == 101
    log.clear()
    # From scratch at the current revision: d() = 0, so q() = 100.
    assert await bounded(db.q()) == 100
    assert log == ["q()"]


async def test_a_memo_revalidated_to_none_ends_its_flight(log: list[str]) -> None:
    """A memo whose value is `None`, revalidated inside a query, leaves no flight behind."""

    @picante.database
    class Db:
        @picante.input
        async def x(self) -> int: ...

        @picante.input
        async def y(self) -> int: ...

        @picante.query
        async def parity(self) -> int:
            log.append("parity()")
            return await self.x() % 2

        @picante.query
        async def nothing(self) -> None:
            log.append("nothing()")
            await self.parity()

        @picante.query
        async def outer(self) -> int:
            log.append("outer()")
            y = await self.y()
            await self.nothing()
            return y

    db = Db()
    db.x.set(1)
    db.y.set(1)
    assert await db.outer() == 1
    # outer() reruns (y changed) and reads nothing(), which is revalidated inside it:
    # parity() reruns to an equal value.
    with picante.batch(db):
        db.x.set(3)
        db.y.set(2)
    assert await bounded(db.outer()) == 2
    assert log == ["outer()", "nothing()", "parity()", "outer()", "parity()"]
    flights = [cell.flight for cell in db.__picante__.tables["nothing"].values()]
    assert flights == [None]


async def test_a_memoized_error_keeps_no_old_versions_alive() -> None:
    """A memoized error does not keep its evaluation, and the versions it read, alive."""

    @picante.database
    class Db:
        @picante.input
        async def text(self, i: int) -> str: ...

        @picante.query
        async def inner(self) -> int:
            raise ValueError(sum([len(await self.text(i)) for i in range(1_000)]))

        @picante.query
        async def outer(self) -> int:
            return await self.inner()

    db = Db()
    with picante.batch(db):
        for i in range(1_000):
            db.text.set(i, kilobyte(i))
    with pytest.raises(ValueError, match="1024000"):
        await db.outer()

    for i in range(1_000):
        db.text.set(i, kilobyte(i + 1))
    # A live reader at the failed evaluation's revision would keep every replaced version.
    cells = db.__picante__.tables["text"].values()
    assert [cell.history for cell in cells if cell.history is not None] == []
    with pytest.raises(ValueError, match="1024000"):
        await db.outer()


async def test_evaluation_bound_to_an_older_revision_runs_each_record_once(
    log: list[str],
) -> None:
    """
    An evaluation suspended across changes runs each record it needs at most once at its
    revision, even where nothing can be memoized because the memos moved on.
    """
    gate, started = asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        @picante.input
        async def x(self) -> int: ...

        @picante.query
        async def leaf(self) -> int:
            log.append("leaf()")
            return await self.x()

        @picante.query
        async def a(self) -> int:
            log.append("a()")
            return await self.leaf() + 1

        @picante.query
        async def b(self) -> int:
            log.append("b()")
            return await self.leaf() + 2

        @picante.query
        async def q(self) -> int:
            log.append("q()")
            started.set()
            await gate.wait()
            return await self.a() + await self.b() + await self.a() + await self.b()

    db = Db()
    db.x.set(1)
    suspended = asyncio.create_task(db.q())  # bound to the revision where x is 1
    await bounded(started.wait())
    db.x.set(10)
    assert await db.a() == 11  # a and leaf move on to the new revision
    log.clear()
    gate.set()
    assert await bounded(suspended) == 2 * (2 + 3)
    assert log == ["a()", "leaf()", "b()"]
    log.clear()
    assert await db.q() == 2 * (11 + 12)
    assert sorted(log) == ["b()", "q()"]


async def test_snapshot_reuses_the_newest_state_its_database_kept(
    log: list[str], tmp_path: Path
) -> None:
    """
    A snapshot takes the newest state its database kept for its revision (found by the
    checker's thorough run): an error computed after a load, not the loaded memo without it.
    """

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.log = log

        @picante.input
        async def x(self) -> int: ...

        @picante.query
        async def q(self) -> int:
            self.log.append("q()")
            return await self.x() * 10

    first = Db()
    with pytest.raises(picante.MissingInputError):
        await first.q()
    await picante.save(first, tmp_path / "cache")
    db = Db()
    assert await picante.load(db, tmp_path / "cache")
    snap = picante.snapshot(db)
    log.clear()
    # Loaded without its exception, the error runs again when read: at the same revision.
    with pytest.raises(picante.MissingInputError):
        await db.q()
    db.x.set(1)
    assert await db.q() == 10
    assert log == ["q()", "q()"]
    log.clear()
    with pytest.raises(picante.MissingInputError):
        await snap.q()
    assert log == []


async def test_a_memo_reverified_later_is_not_valid_in_between(log: list[str]) -> None:
    """
    A memo re-verified at a later revision is not taken as valid at a revision in between
    (found by the checker's thorough run): a dependency may have been backdated across a
    value it never saw, as an input that goes 1 → 0 → 1.
    """

    @picante.database
    class Db:
        @picante.input
        async def x(self) -> int: ...

        @picante.query
        async def d(self) -> int:
            log.append("d()")
            return await self.x()

        @picante.query
        async def q(self) -> int:
            log.append("q()")
            return await self.d() + 100

    db = Db()
    db.x.set(1)
    assert await db.q() == 101
    db.x.set(0)
    snap = picante.snapshot(db)  # reads the state where x is 0
    db.x.set(1)
    assert await db.q() == 101  # d reruns to an equal value: q is re-verified, not rerun
    assert log == ["q()", "d()", "d()"]
    assert await snap.q() == 100
