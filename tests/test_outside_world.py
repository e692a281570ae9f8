"""
The outside world: untracked reads, volatile queries, `refresh`, errors that revalidate,
`eq=False`, `debug.verify`'s not-comparable values, reads of another database, cycles.

A memo that read something picante cannot track is valid at the revision it was verified
at only: it re-executes, once, on its next read at a later revision, and early cutoff
still protects what read it. Every test pins what ran with a call log.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import pytest

import picante
from picante import debug
from picante._runtime import view_of
from tests.helpers import until


if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from picante._runtime import Counters


TIMEOUT = 5


def counters(db: object) -> Counters:
    """The work counters of *db*: executions (bodies run) and dependency checks (walks)."""
    return view_of(db).counters


async def drain(stream: AsyncIterator[object], count: int) -> list[object]:
    """The next *count* events of *stream* (each awaited with a timeout)."""
    return [await asyncio.wait_for(anext(stream), TIMEOUT) for _ in range(count)]


@picante.database
class Clocked:
    """
    A clock read from the outside world (`self.now`, which picante does not track), and
    memos over it and over ordinary inputs.
    """

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.now = 0

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input
    async def unrelated(self) -> int:
        raise NotImplementedError

    @picante.input(durability=picante.Durability.HIGH)
    async def config(self) -> str:
        raise NotImplementedError

    @picante.query(volatile=True)
    async def clock(self) -> int:
        self.log.append("clock()")
        return self.now

    @picante.query
    async def stamped(self, path: str) -> str:
        self.log.append(f"stamped({path!r})")
        return f"{await self.source(path)}@{await self.clock()}"

    @picante.query
    async def shout(self, path: str) -> str:
        self.log.append(f"shout({path!r})")
        return (await self.stamped(path)).upper()

    @picante.query
    async def banner(self) -> str:
        # Reads only a HIGH input and the volatile clock.
        self.log.append("banner()")
        return f"{await self.config()} {await self.clock()}"

    @picante.query
    async def top(self) -> str:
        self.log.append("top()")
        return f"[{await self.banner()}]"

    @picante.query
    async def words(self, path: str) -> int:
        self.log.append(f"words({path!r})")
        return len((await self.source(path)).split())

    @picante.query
    async def parity(self, path: str) -> int:
        self.log.append(f"parity({path!r})")
        return await self.words(path) % 2


def clocked(log: list[str]) -> Clocked:
    """A `Clocked` with sources a.md and b.md, `unrelated` and `config` set."""
    db = Clocked(log)
    with picante.batch(db):
        db.source.set("a.md", "one two")
        db.source.set("b.md", "three")
        db.unrelated.set(0)
        db.config.set("cfg")
    return db


# -- report_untracked_read ------------------------------------------------------------------


async def test_report_untracked_read_outside_a_query_raises() -> None:
    """Outside any running query, `report_untracked_read()` is a UsageError."""
    with pytest.raises(picante.UsageError, match="inside a running query"):
        picante.report_untracked_read()


async def test_untracked_read_is_valid_at_its_revision_only(log: list[str]) -> None:
    """
    A memo that reported an untracked read is reused within its revision (even if the
    world changed meanwhile), and re-executes once at the next revision it is read at.
    """

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.mtime = 1

        @picante.query
        async def stat(self) -> int:
            log.append("stat()")
            picante.report_untracked_read()
            return self.mtime

    db = Db()
    assert await db.stat() == 1
    db.mtime = 2
    assert await db.stat() == 1  # same revision: the memo holds
    assert log == ["stat()"]
    picante.refresh(db)
    assert await db.stat() == 2
    assert await db.stat() == 2
    assert log == ["stat()", "stat()"]
    picante.refresh(db)
    picante.refresh(db)
    assert await db.stat() == 2  # several revisions unread: one execution on the read
    assert log == ["stat()"] * 3


@pytest.mark.parametrize("spawn", ["gather", "taskgroup"])
async def test_untracked_read_reported_from_a_child_task(log: list[str], spawn: str) -> None:
    """`report_untracked_read()` in a child task of the query marks the query's memo."""

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.mtime = 1

        async def peek(self) -> int:
            picante.report_untracked_read()
            return self.mtime

        @picante.query
        async def stat(self) -> int:
            log.append("stat()")
            if spawn == "gather":
                (value,) = await asyncio.gather(self.peek())
                return value
            async with asyncio.TaskGroup() as group:
                task = group.create_task(self.peek())
            return task.result()

    db = Db()
    assert await db.stat() == 1
    db.mtime = 5
    picante.refresh(db)
    assert await db.stat() == 5
    assert log == ["stat()", "stat()"]


# -- volatile -------------------------------------------------------------------------------


async def test_volatile_reruns_once_per_revision_and_never_twice_in_one(log: list[str]) -> None:
    """
    A volatile query runs once per revision it is read at: two reads in one revision run
    it once; so do concurrent reads (`asyncio.gather`); each new revision (a refresh, an
    input set) runs it once more.
    """
    gate = asyncio.Event()
    started = asyncio.Event()

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.now = 0

        @picante.input
        async def other(self) -> int:
            raise NotImplementedError

        @picante.query(volatile=True)
        async def clock(self) -> int:
            log.append("clock()")
            started.set()
            await gate.wait()
            return self.now

    db = Db()
    gate.set()
    assert await db.clock() == 0
    assert await db.clock() == 0
    assert log == ["clock()"]

    # Concurrent first reads at a new revision share one evaluation.
    picante.refresh(db)
    db.now = 1
    gate.clear()
    started.clear()
    reads = asyncio.gather(*(db.clock() for _ in range(5)))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    cell = view_of(db).tables["clock"][()]
    await until(lambda: cell.flight is not None and len(cell.flight.followers or ()) == 5)
    gate.set()
    assert await asyncio.wait_for(reads, TIMEOUT) == [1] * 5
    assert await db.clock() == 1
    assert log == ["clock()"] * 2

    # An input set opens a revision too: one more run, and again only one.
    db.now = 2
    db.other.set(1)
    together = asyncio.gather(db.clock(), db.clock(), db.clock())
    assert list(await asyncio.wait_for(together, TIMEOUT)) == [2, 2, 2]
    assert await db.clock() == 2
    assert log == ["clock()"] * 3


async def test_readers_meeting_at_a_volatile_memo_run_it_once(log: list[str]) -> None:
    """
    Concurrent reads of several memos over one volatile memo, at a new revision, run it
    once between them (and re-run only the readers whose input from it changed).
    """
    db = clocked(log)
    reads = [db.stamped("a.md"), db.stamped("b.md"), db.banner(), db.top(), db.shout("a.md")]
    assert len(await asyncio.wait_for(asyncio.gather(*reads), TIMEOUT)) == 5
    for now in (0, 0, 1):
        log.clear()
        db.now = now
        picante.refresh(db)
        reads = [db.stamped("a.md"), db.stamped("b.md"), db.banner(), db.top(), db.shout("a.md")]
        assert list(await asyncio.wait_for(asyncio.gather(*reads), TIMEOUT)) == [
            f"one two@{now}",
            f"three@{now}",
            f"cfg {now}",
            f"[cfg {now}]",
            f"ONE TWO@{now}",
        ]
        assert log.count("clock()") == 1
    assert sorted(log) == sorted(
        ["clock()", "stamped('a.md')", "stamped('b.md')", "banner()", "top()", "shout('a.md')"]
    )


async def test_refresh_during_a_volatile_evaluation(log: list[str]) -> None:
    """
    An evaluation in flight when a refresh (from another thread) opens a revision answers
    for its own revision; reads at the new revision share one new evaluation.
    """
    gate = asyncio.Event()

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.now = 0

        @picante.query(volatile=True)
        async def clock(self) -> int:
            log.append(f"clock() at {picante.revision(self)}")
            now = self.now
            await gate.wait()
            return now

    db = Db()
    first = asyncio.ensure_future(db.clock())
    await until(lambda: len(log) == 1)
    db.now = 1
    assert await asyncio.wait_for(asyncio.to_thread(picante.refresh, db), TIMEOUT) == 1
    second = asyncio.ensure_future(db.clock())
    third = asyncio.ensure_future(db.clock())
    await until(lambda: len(log) == 2)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, second, third), TIMEOUT)
    assert list(results) == [0, 1, 1]
    assert await db.clock() == 1
    assert log == ["clock() at 0", "clock() at 1"]


async def test_volatile_runs_only_when_read(log: list[str]) -> None:
    """Revisions nobody reads at run nothing; the next read runs the volatile query once."""
    db = clocked(log)
    assert await db.clock() == 0
    for _ in range(5):
        picante.refresh(db)
        db.unrelated.set(picante.revision(db))
    assert log == ["clock()"]
    db.now = 7
    assert await db.clock() == 7
    assert log == ["clock()", "clock()"]


async def test_equal_volatile_value_recomputes_no_dependent(log: list[str]) -> None:
    """
    At a new revision the volatile query re-runs; if its value is equal, the memos that
    read it (directly or not) are not recomputed. A different value recomputes them.
    """
    db = clocked(log)
    assert await db.shout("a.md") == "ONE TWO@0"
    assert log == ["shout('a.md')", "stamped('a.md')", "clock()"]
    log.clear()
    picante.refresh(db)
    assert await db.shout("a.md") == "ONE TWO@0"
    assert log == ["clock()"]
    log.clear()
    db.now = 1
    picante.refresh(db)
    assert await db.shout("a.md") == "ONE TWO@1"
    assert log == ["clock()", "stamped('a.md')", "shout('a.md')"]
    log.clear()
    assert await db.shout("a.md") == "ONE TWO@1"  # same revision: nothing runs
    assert log == []


async def test_reader_of_volatile_memo_rechecks_it_every_revision(log: list[str]) -> None:
    """
    A memo that read a volatile memo re-checks it at each new revision, although all its
    inputs are HIGH and none changed: it walks to the volatile memo (dependency checks
    grow), and is re-executed only when that memo's value changed. So does a memo over
    it (no clean flag, no durability is trusted past a volatile memo).
    """
    db = clocked(log)
    assert await db.top() == "[cfg 0]"
    log.clear()
    for round_ in range(3):
        db.unrelated.set(round_ + 1)  # a LOW input nothing here read
        checks = counters(db).dependency_checks
        assert await db.top() == "[cfg 0]"
        assert log == ["clock()"]
        assert counters(db).dependency_checks > checks
        # The same revision: no second walk, no second run.
        checks = counters(db).dependency_checks
        assert await db.top() == "[cfg 0]"
        assert counters(db).dependency_checks == checks
        log.clear()
    db.now = 3
    picante.refresh(db)
    assert await db.top() == "[cfg 3]"
    assert log == ["clock()", "banner()", "top()"]
    log.clear()
    # The volatile memo read first, on its own: its readers still see that it changed.
    db.now = 4
    picante.refresh(db)
    assert await db.clock() == 4
    assert await db.top() == "[cfg 4]"
    assert log == ["clock()", "banner()", "top()"]


async def test_explain_says_untracked(log: list[str]) -> None:
    """explain() gives "untracked" for a volatile re-run; "changed" for its reader."""
    db = clocked(log)
    await db.stamped("a.md")
    before = picante.revision(db)
    db.now = 1
    picante.refresh(db)
    await db.stamped("a.md")
    why = debug.explain(db, db.clock)
    assert (why.reason, why.revision, why.verified_at) == ("untracked", before + 1, before)
    assert "something picante cannot track" in str(why)
    reader = debug.explain(db, db.stamped, "a.md")
    assert reader.reason == "changed"
    assert reader.changed == (("clock()", before + 1),)


# -- refresh --------------------------------------------------------------------------------


async def test_refresh_opens_a_revision_and_changes_no_input(log: list[str]) -> None:
    """refresh returns the new revision (one more), and every input keeps its value."""
    db = clocked(log)
    revision = picante.revision(db)
    assert picante.refresh(db) == revision + 1
    assert picante.revision(db) == revision + 1
    assert db.source.get("a.md") == "one two"
    assert db.config.get() == "cfg"


async def test_refresh_keeps_non_volatile_memos_without_a_walk(log: list[str]) -> None:
    """
    After a refresh, every memo that read no volatile memo is answered as is: no body runs
    and no dependency is checked. Only the volatile memo re-runs.
    """
    db = clocked(log)
    paths = ("a.md", "b.md")
    assert [await db.parity(p) for p in paths] == [0, 1]
    assert await db.clock() == 0
    log.clear()
    checks, runs = counters(db).dependency_checks, counters(db).executions
    for _ in range(10):
        picante.refresh(db)
        assert [await db.parity(p) for p in paths] == [0, 1]
        assert [await db.words(p) for p in paths] == [2, 1]
    assert counters(db).dependency_checks == checks
    assert counters(db).executions == runs
    assert log == []
    assert await db.clock() == 0
    assert log == ["clock()"]
    assert counters(db).executions == runs + 1


async def test_refresh_emits_only_revision_bumped(log: list[str]) -> None:
    """A refresh emits `RevisionBumped` and nothing else: no input set, no invalidation."""
    db = clocked(log)
    await db.shout("a.md")
    await db.parity("a.md")
    revision = picante.revision(db)
    stream = picante.events(db)
    picante.refresh(db)
    db.source.set("b.md", "x")  # a marker: what follows the refresh's events
    assert await drain(stream, 3) == [
        picante.RevisionBumped(revision + 1),
        picante.InputSet(revision + 2, "source", ("b.md",)),
        picante.RevisionBumped(revision + 2),
    ]
    await stream.aclose()


async def test_refresh_from_another_thread(log: list[str]) -> None:
    """refresh works from a worker thread; the volatile memo re-runs on the loop after it."""
    db = clocked(log)
    assert await db.stamped("a.md") == "one two@0"
    revision = picante.revision(db)
    db.now = 4
    assert await asyncio.wait_for(asyncio.to_thread(picante.refresh, db), TIMEOUT) == revision + 1
    assert picante.revision(db) == revision + 1
    assert await db.stamped("a.md") == "one two@4"
    assert log == ["stamped('a.md')", "clock()", "clock()", "stamped('a.md')"]


async def test_refresh_inside_a_batch_joins_it(log: list[str]) -> None:
    """Inside a batch, refresh and input sets make one revision at exit, not before."""
    db = clocked(log)
    assert await db.stamped("a.md") == "one two@0"
    log.clear()
    revision = picante.revision(db)
    db.now = 1
    with picante.batch(db):
        assert picante.refresh(db) == revision
        db.source.set("b.md", "four five")
        assert picante.refresh(db) == revision
        assert picante.revision(db) == revision
        assert await db.stamped("a.md") == "one two@0"  # still the old revision
    assert picante.revision(db) == revision + 1
    assert await db.stamped("a.md") == "one two@1"
    assert log == ["clock()", "stamped('a.md')"]


async def test_batch_with_only_refreshes_opens_exactly_one_revision(log: list[str]) -> None:
    """A batch holding only refreshes (even several, even nested) opens one revision."""
    db = clocked(log)
    revision = picante.revision(db)
    with picante.batch(db):
        picante.refresh(db)
        with picante.batch(db):
            picante.refresh(db)
        picante.refresh(db)
    assert picante.revision(db) == revision + 1


async def test_batch_that_raises_opens_no_revision(log: list[str]) -> None:
    """A batch that raises discards its refresh (and sets): no revision, nothing re-runs."""
    db = clocked(log)
    assert await db.stamped("a.md") == "one two@0"
    revision = picante.revision(db)
    db.now = 9
    with pytest.raises(RuntimeError, match="abort"), picante.batch(db):
        picante.refresh(db)
        db.source.set("a.md", "changed")
        raise RuntimeError("abort")
    assert picante.revision(db) == revision
    assert db.source.get("a.md") == "one two"
    assert await db.stamped("a.md") == "one two@0"
    assert log == ["stamped('a.md')", "clock()"]


async def test_refresh_inside_a_running_query_raises(log: list[str]) -> None:
    """A query may not open a revision: refresh inside it is a UsageError."""

    @picante.database
    class Db:
        @picante.query
        async def sneaky(self) -> int:
            log.append("sneaky()")
            picante.refresh(self)
            return 1

    db = Db()
    with pytest.raises(picante.UsageError, match="inside the running query"):
        await db.sneaky()
    assert picante.revision(db) == 0
    assert log == ["sneaky()"]


async def test_refresh_of_a_non_database_raises() -> None:
    """refresh needs a database instance."""
    with pytest.raises(picante.UsageError):
        picante.refresh(object())


# -- errors revalidate like values ----------------------------------------------------------


async def test_error_with_unchanged_dependencies_runs_once_across_100_revisions(
    log: list[str],
) -> None:
    """
    A memoized error is re-raised (the same exception object) without re-running, across
    100 revisions that changed nothing it read (input sets and refreshes); so is the
    value of a memo that caught it.
    """

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int:
            raise NotImplementedError

        @picante.input
        async def other(self) -> int:
            raise NotImplementedError

        @picante.query
        async def failing(self) -> int:
            log.append("failing()")
            raise ValueError(await self.n())

        @picante.query
        async def caught(self) -> str:
            log.append("caught()")
            try:
                return str(await self.failing())
            except ValueError as error:
                return f"error {error}"

    db = Db()
    db.n.set(1)
    db.other.set(0)
    with pytest.raises(ValueError, match="1") as first:
        await db.failing()
    assert await db.caught() == "error 1"
    for step in range(100):
        if step % 2:
            picante.refresh(db)
        else:
            db.other.set(step + 1)
        with pytest.raises(ValueError, match="1") as again:
            await db.failing()
        assert again.value is first.value
        assert await db.caught() == "error 1"
    assert log == ["failing()", "caught()"]


async def test_error_reexecutes_when_a_dependency_changed(log: list[str]) -> None:
    """A memoized error re-runs when what it read changed: a new error, or a value."""

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int:
            raise NotImplementedError

        @picante.query
        async def inverse(self) -> float:
            log.append("inverse()")
            n = await self.n()
            if n == 0:
                raise ZeroDivisionError(f"n is {n}")
            return 1 / n

        @picante.query
        async def shown(self) -> str:
            log.append("shown()")
            try:
                return str(await self.inverse())
            except ZeroDivisionError:
                return "undefined"

    db = Db()
    db.n.set(0)
    with pytest.raises(ZeroDivisionError) as first:
        await db.inverse()
    assert await db.shown() == "undefined"
    db.n.set(0)  # an equal set: no revision, nothing re-runs
    with pytest.raises(ZeroDivisionError) as again:
        await db.inverse()
    assert again.value is first.value
    assert log == ["inverse()", "shown()"]
    db.n.set(4)
    assert await db.shown() == "0.25"
    assert log == ["inverse()", "shown()", "inverse()", "shown()"]


async def test_error_after_an_untracked_read_reexecutes_each_revision(log: list[str]) -> None:
    """
    An error from an evaluation that read the outside world is reused within its revision
    (the same object), and re-executes at the next one; an equal error recomputes no
    reader (same type and args).
    """

    @picante.database
    class Db:
        def __init__(self) -> None:
            self.online = False

        @picante.query
        async def download(self) -> str:
            log.append("download()")
            picante.report_untracked_read()
            if not self.online:
                raise ConnectionError("offline")
            return "page"

        @picante.query
        async def status(self) -> str:
            log.append("status()")
            try:
                return await self.download()
            except ConnectionError as error:
                return str(error)

    db = Db()
    with pytest.raises(ConnectionError) as first:
        await db.download()
    with pytest.raises(ConnectionError) as second:
        await db.download()
    assert second.value is first.value
    assert await db.status() == "offline"
    assert log == ["download()", "status()"]
    picante.refresh(db)
    assert await db.status() == "offline"
    assert log == ["download()", "status()", "download()"]
    db.online = True
    picante.refresh(db)
    assert await db.status() == "page"
    assert log == ["download()", "status()", "download()", "download()", "status()"]


# -- eq=False ---------------------------------------------------------------------------------


async def test_eq_false_query_recompute_is_always_a_change(log: list[str]) -> None:
    """
    With `eq=False`, a recomputed value counts as changed even if equal: its readers
    recompute. A default-eq query with the same value cuts its readers off.
    """

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int:
            raise NotImplementedError

        @picante.query(eq=False)
        async def tens(self) -> int:
            log.append("tens()")
            return await self.n() // 10

        @picante.query
        async def plain_tens(self) -> int:
            log.append("plain_tens()")
            return await self.n() // 10

        @picante.query
        async def reader(self) -> int:
            log.append("reader()")
            return await self.tens() + 1

        @picante.query
        async def plain_reader(self) -> int:
            log.append("plain_reader()")
            return await self.plain_tens() + 1

    db = Db()
    db.n.set(1)
    assert (await db.reader(), await db.plain_reader()) == (1, 1)
    log.clear()
    db.n.set(2)  # tens stays 0
    assert (await db.reader(), await db.plain_reader()) == (1, 1)
    assert log == ["tens()", "reader()", "plain_tens()"]
    log.clear()
    picante.refresh(db)  # nothing read changed: nothing recomputes, eq=False or not
    assert (await db.reader(), await db.plain_reader()) == (1, 1)
    assert log == []


async def test_eq_false_volatile_query_recomputes_readers_every_revision(log: list[str]) -> None:
    """A volatile `eq=False` query changes at every revision it re-runs at."""

    @picante.database
    class Db:
        @picante.query(volatile=True, eq=False)
        async def now(self) -> int:
            log.append("now()")
            return 0

        @picante.query
        async def reader(self) -> int:
            log.append("reader()")
            return await self.now()

    db = Db()
    assert await db.reader() == 0
    picante.refresh(db)
    assert await db.reader() == 0
    assert await db.reader() == 0
    assert log == ["reader()", "now()", "now()", "reader()"]


async def test_eq_false_input_every_set_is_a_change(log: list[str]) -> None:
    """
    With `@picante.input(eq=False)`, setting an equal value opens a revision and
    recomputes its readers; with the default eq it is a no-op.
    """

    @picante.database
    class Db:
        @picante.input(eq=False)
        async def raw(self) -> int:
            raise NotImplementedError

        @picante.input
        async def plain(self) -> int:
            raise NotImplementedError

        @picante.query
        async def raw_reader(self) -> int:
            log.append("raw_reader()")
            return await self.raw()

        @picante.query
        async def plain_reader(self) -> int:
            log.append("plain_reader()")
            return await self.plain()

    db = Db()
    db.raw.set(1)
    db.plain.set(1)
    assert (await db.raw_reader(), await db.plain_reader()) == (1, 1)
    log.clear()
    revision = picante.revision(db)
    assert db.plain.set(1) == revision
    assert db.raw.set(1) == revision + 1
    assert (await db.raw_reader(), await db.plain_reader()) == (1, 1)
    assert log == ["raw_reader()"]


# -- debug.verify ------------------------------------------------------------------------------


class Opaque:
    """A value whose `==` answers a string (truthy, but not a bool)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> Any:
        return "maybe"

    __hash__ = object.__hash__


class Touchy:
    """A value whose `==` raises."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        msg = "no comparing"
        raise TypeError(msg)

    __hash__ = object.__hash__


async def test_verify_returns_a_verification(log: list[str]) -> None:
    """verify returns a `Verification`: a list of mismatches (`== []`), and not_comparable."""
    db = clocked(log)
    await db.parity("a.md")
    report = await debug.verify(db)
    assert isinstance(report, debug.Verification)
    assert isinstance(report, list)
    assert report == []
    assert report.not_comparable == []


async def test_verify_puts_uncomparable_values_apart(log: list[str]) -> None:
    """
    Values verify cannot compare go to `not_comparable` with the reason, never to the
    mismatches: eq=False, an `==` that raises, an `==` returning a string, a custom eq
    that raises or returns a non-bool. A comparable pure query is neither.
    """

    def custom_raises(a: object, b: object) -> bool:
        msg = "custom eq failed"
        raise RuntimeError(msg)

    def custom_non_bool(a: object, b: object) -> Any:
        return 1

    @picante.database
    class Db:
        @picante.query(eq=False)
        async def no_eq(self) -> list[int]:
            return [1]

        @picante.query
        async def touchy(self) -> Touchy:
            return Touchy(1)

        @picante.query
        async def opaque(self) -> Opaque:
            return Opaque(1)

        @picante.query(eq=custom_raises)
        async def custom_raising(self) -> list[int]:
            return [1]  # a new list each run: not `is` the memo

        @picante.query(eq=custom_non_bool)
        async def custom_int(self) -> list[int]:
            return [1]

        @picante.query
        async def fine(self) -> list[int]:
            return [1]

    db = Db()
    for query in (db.no_eq, db.touchy, db.opaque, db.custom_raising, db.custom_int, db.fine):
        await query()
    report = await debug.verify(db)
    assert report == []
    why = {entry.record: entry.why for entry in report.not_comparable}
    assert sorted(why) == sorted(
        ["no_eq()", "touchy()", "opaque()", "custom_raising()", "custom_int()"]
    )
    assert why["no_eq()"] == "eq=False"
    assert why["touchy()"] == "== raised TypeError: no comparing"
    assert why["opaque()"] == "== returned a str, not a bool"
    assert why["custom_raising()"] == "eq raised RuntimeError: custom eq failed"
    assert why["custom_int()"] == "eq returned a int, not a bool"
    assert all(isinstance(entry, debug.NotComparable) for entry in report.not_comparable)


async def test_verify_reports_an_impure_query_beside_not_comparable() -> None:
    """An impure query (it reads a global) is still a Mismatch when others are not comparable."""
    state = {"salt": 0}

    @picante.database
    class Db:
        @picante.query
        async def impure(self) -> int:
            return state["salt"]

        @picante.query(eq=False)
        async def no_eq(self) -> int:
            return state["salt"]

    db = Db()
    await db.impure()
    await db.no_eq()
    state["salt"] = 1
    report = await debug.verify(db)
    assert [(m.record, m.memoized, m.fresh) for m in report] == [("impure()", 0, 1)]
    assert [(n.record, n.why) for n in report.not_comparable] == [("no_eq()", "eq=False")]
    assert await db.impure() == 0  # verify changed no memo


async def test_verify_does_not_call_an_uncomparable_error_a_mismatch() -> None:
    """
    A pure query that raises an error whose args cannot be compared (their `==` raises)
    is not reported as a mismatch: like such a value, it is not comparable.
    """

    @picante.database
    class Db:
        @picante.query
        async def failing(self) -> int:
            raise ValueError(Touchy(1))

    db = Db()
    with pytest.raises(ValueError):
        await db.failing()
    report = await debug.verify(db)
    assert list(report) == []
    assert [n.record for n in report.not_comparable] == ["failing()"]


async def test_verify_skips_memos_that_read_the_outside_world(log: list[str]) -> None:
    """
    Memos that read the outside world (volatile, `report_untracked_read`, another
    database) differ by design: verify reports them neither as mismatches nor as not
    comparable. A pure reader of a volatile memo compares equal.
    """
    ticks = {"n": 0}

    def tick() -> int:
        ticks["n"] += 1
        return ticks["n"]

    @picante.database
    class Other:
        @picante.query(volatile=True)
        async def counter(self) -> int:
            return tick()

    @picante.database
    class Db:
        def __init__(self, other: Other) -> None:
            self.other = other

        @picante.query(volatile=True)
        async def volatile(self) -> int:
            return tick()

        @picante.query
        async def untracked(self) -> int:
            picante.report_untracked_read()
            return tick()

        @picante.query
        async def remote(self) -> int:
            return await self.other.counter()

        @picante.query
        async def reader(self) -> int:
            return await self.volatile() * 0 + 1

    other = Other()
    db = Db(other)
    for query in (db.volatile, db.untracked, db.remote, db.reader):
        await query()
    report = await debug.verify(db)
    assert report == []
    assert report.not_comparable == []


# -- another database -------------------------------------------------------------------------


@picante.database
class Remote:
    """A database whose queries and inputs another database reads."""

    def __init__(self, log: list[str], other: Remote | None = None) -> None:
        self.log = log
        self.other = other

    @picante.input
    async def n(self) -> int:
        raise NotImplementedError

    @picante.input
    async def own(self) -> int:
        raise NotImplementedError

    @picante.query
    async def double(self) -> int:
        return 2 * await self.n()

    @picante.query
    async def peek_query(self) -> int:
        self.log.append("peek_query()")
        assert self.other is not None
        return await self.other.double()

    @picante.query
    async def peek_input(self) -> int:
        self.log.append("peek_input()")
        assert self.other is not None
        return await self.other.n()

    @picante.query
    async def peek_get(self) -> int:
        self.log.append("peek_get()")
        assert self.other is not None
        return self.other.n.get(default=-1)

    @picante.query
    async def summary(self) -> str:
        self.log.append("summary()")
        return f"sum {await self.peek_query()}"


@pytest.mark.parametrize("read", ["peek_query", "peek_input", "peek_get"])
async def test_reading_another_database_is_untracked(log: list[str], read: str) -> None:
    """
    A query that reads a query or an input (awaited, or with `.get`) of another database
    instance holds at its own revision, and re-executes at its database's next revision.
    """
    inner = Remote([])
    inner.n.set(1)
    outer = Remote(log, inner)
    outer.own.set(0)
    expected = {"peek_query": (2, 4), "peek_input": (1, 2), "peek_get": (1, 2)}[read]
    query = getattr(outer, read)
    assert await query() == expected[0]
    inner.n.set(2)
    assert await query() == expected[0]  # outer's revision did not move
    assert log == [f"{read}()"]
    picante.refresh(outer)
    assert await query() == expected[1]
    assert log == [f"{read}()", f"{read}()"]
    assert debug.explain(outer, read).reason == "untracked"
    outer.own.set(1)  # any new revision of outer: it runs again (once)
    assert await query() == expected[1]
    assert await query() == expected[1]
    assert log == [f"{read}()"] * 3


async def test_reader_of_a_cross_database_memo_is_cut_off_when_equal(log: list[str]) -> None:
    """A memo over a cross-database read re-checks it; an equal value recomputes it not."""
    inner = Remote([])
    inner.n.set(1)
    outer = Remote(log, inner)
    assert await outer.summary() == "sum 2"
    picante.refresh(outer)
    assert await outer.summary() == "sum 2"
    assert log == ["summary()", "peek_query()", "peek_query()"]
    inner.n.set(5)
    picante.refresh(outer)
    assert await outer.summary() == "sum 10"
    assert log == ["summary()", "peek_query()", "peek_query()", "peek_query()", "summary()"]


# -- cycles --------------------------------------------------------------------------------------


async def test_cycle_makes_the_evaluation_that_hit_it_untracked(log: list[str]) -> None:
    """
    An evaluation that met a `CycleError` (here caught) is valid at its revision only: a
    hit within it, one re-execution at the next; a memo with no cycle is not re-run.
    """

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int:
            raise NotImplementedError

        @picante.query
        async def loop(self) -> int:
            log.append("loop()")
            try:
                return await self.loop()
            except picante.CycleError:
                return -1

        @picante.query
        async def plain(self) -> int:
            log.append("plain()")
            return await self.n()

    db = Db()
    db.n.set(1)
    assert await asyncio.wait_for(db.loop(), TIMEOUT) == -1
    assert await asyncio.wait_for(db.loop(), TIMEOUT) == -1
    assert await db.plain() == 1
    assert log == ["loop()", "plain()"]
    picante.refresh(db)
    assert await asyncio.wait_for(db.loop(), TIMEOUT) == -1
    assert await db.plain() == 1
    assert log == ["loop()", "plain()", "loop()"]
    assert debug.explain(db, db.loop).reason == "untracked"


async def test_cycle_error_memo_reexecutes_at_the_next_revision(log: list[str]) -> None:
    """A memoized CycleError is re-raised within its revision and re-executes at the next."""

    @picante.database
    class Db:
        @picante.query
        async def a(self) -> int:
            log.append("a()")
            return await self.b()

        @picante.query
        async def b(self) -> int:
            log.append("b()")
            return await self.a()

    db = Db()
    with pytest.raises(picante.CycleError) as first:
        await asyncio.wait_for(db.a(), TIMEOUT)
    with pytest.raises(picante.CycleError) as second:
        await asyncio.wait_for(db.a(), TIMEOUT)
    assert second.value is first.value
    assert log == ["a()", "b()"]
    picante.refresh(db)
    with pytest.raises(picante.CycleError):
        await asyncio.wait_for(db.a(), TIMEOUT)
    # b met the cycle: it re-runs (meeting it again); a, which only read b, is cut off.
    assert log == ["a()", "b()", "b()"]


# -- cache files ---------------------------------------------------------------------------------


async def test_volatile_memo_is_not_loaded_as_valid(log: list[str], tmp_path: Path) -> None:
    """
    A saved volatile memo re-runs on its first read after a load; its readers re-check it
    and are not re-executed when it is equal, but are when the world changed.
    """
    path = tmp_path / "clocked.cache"
    db = clocked(log)
    assert await db.shout("a.md") == "ONE TWO@0"
    assert await db.parity("a.md") == 0
    await picante.save(db, path)
    log.clear()

    same = Clocked(log)
    assert await picante.load(same, path) is True
    assert await same.shout("a.md") == "ONE TWO@0"
    assert await same.parity("a.md") == 0
    assert log == ["clock()"]
    log.clear()

    moved = Clocked(log)
    moved.now = 8
    assert await picante.load(moved, path) is True
    assert await moved.shout("a.md") == "ONE TWO@8"
    assert await moved.parity("a.md") == 0
    assert log == ["clock()", "stamped('a.md')", "shout('a.md')"]


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lru"),
    [
        ("fetch", None),
        ("cells", None),
        ("lru", 2),
        ("ingredient", None),
        ("active_get", None),
        ("Failure", None),
        ("words", 2),
    ],
)
async def test_a_query_may_have_any_method_name(name: str, lru: int | None) -> None:
    """
    A query's method name is the user's choice: `fetch` (the natural name of a volatile
    network read), `cells`, `lru` or `ingredient` work like any other name.
    """
    runs: list[str] = []

    async def body(self: object) -> int:
        runs.append(name)
        return 1

    body.__name__ = body.__qualname__ = name
    cls = picante.database(type("Db", (), {name: picante.query(lru=lru, volatile=True)(body)}))
    db = cls()
    async with asyncio.timeout(TIMEOUT):
        assert await getattr(db, name)() == 1
        assert await getattr(db, name)() == 1
    assert runs == [name]


@pytest.mark.parametrize("param", ["fetch", "lru", "cells", "ingredient", "ABSENT", "Failure"])
async def test_a_key_parameter_may_have_any_name(param: str) -> None:
    """A key parameter named like something the generated handle uses shadows nothing."""
    namespace: dict[str, object] = {"picante": picante}
    exec(  # the parameter name is the point of the test
        f"""
@picante.database
class Db:
    @picante.input
    async def text(self, {param}: str) -> str:
        raise NotImplementedError

    @picante.query(lru=2)
    async def size(self, {param}: str) -> int:
        return len(await self.text({param}))
""",
        namespace,
    )
    db: Any = cast("type[Any]", namespace["Db"])()
    db.text.set("a", "abc")
    async with asyncio.timeout(TIMEOUT):
        assert await db.size("a") == 3
        assert await db.size(**{param: "a"}) == 3  # by keyword, too
    with pytest.raises(picante.MissingInputError):
        await db.text("b")
