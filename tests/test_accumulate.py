"""Accumulators: `picante.accumulate`, `picante.accumulated`, collected incrementally."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import pytest
from hypothesis import Phase, settings, strategies as st

import picante
from picante import CacheError, CycleError, UsageError
from picante._format import HEADER
from picante.stores import MemoryStore
from tests.helpers import until


if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TIMEOUT = 10


@attrs.frozen
class Diagnostic:
    path: str
    message: str


@picante.database(accumulates=Diagnostic)
class Project:
    """Files checked one by one: each `bad` word is a diagnostic, `fail` an error."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input
    async def files(self) -> tuple[str, ...]:
        raise NotImplementedError

    @picante.query
    async def check(self, path: str) -> int:
        self.log.append(f"check({path!r})")
        words = (await self.source(path)).split()
        for index, word in enumerate(words):
            if word == "bad":
                picante.accumulate(Diagnostic(path, f"bad word {index}"))
        if "fail" in words:
            raise ValueError(path)
        return len(words)

    @picante.query
    async def lint(self) -> int:
        self.log.append("lint()")
        total = 0
        for path in await self.files():
            try:
                total += await self.check(path)
            except ValueError:
                total -= 1
        return total

    @picante.query
    async def report(self) -> str:
        """Reads the collected diagnostics: a tracked read of the collection."""
        self.log.append("report()")
        found = await picante.accumulated(self.lint)
        return f"{len(found)} problems"


def project(**sources: str) -> Project:
    db = Project()
    for path, text in sources.items():
        db.source.set(path, text)
    db.files.set(tuple(sources))
    return db


def bad(path: str, index: int) -> Diagnostic:
    return Diagnostic(path, f"bad word {index}")


def collector(name: str, *key: object) -> str:
    """How `picante.testing.record` shows a collection: `picante.accumulated('lint', ())`."""
    return f"picante.accumulated({name!r}, {key!r})"


async def collect(query: Any, *key: object) -> tuple[Any, ...]:
    """`picante.accumulated`, failing instead of hanging."""
    return await asyncio.wait_for(picante.accumulated(query, *key), TIMEOUT)


# -- collecting ----------------------------------------------------------------------------


async def test_collects_a_query_and_what_it_read() -> None:
    """The values of the query and of every query it read, in first-read order."""
    db = project(a="ok bad", b="fine", c="bad ok bad")
    assert await collect(db.lint) == (bad("a", 1), bad("c", 0), bad("c", 2))
    assert await collect(db.check, "c") == (bad("c", 0), bad("c", 2))
    assert await collect(db.check, "b") == ()
    assert await db.lint() == 6  # the value, untouched by any of this


async def test_keys_are_bound_as_the_query_binds_them() -> None:
    """Keywords and defaults address the same record as a call does."""
    db = project(a="bad")
    assert await collect(db.check, "a") == await picante.accumulated(db.check, path="a")


async def test_second_collection_runs_nothing() -> None:
    """With nothing changed, a second collection is a memo hit: no body, no collector."""
    db = project(a="ok bad", b="fine", c="bad ok bad")
    first = await collect(db.lint)
    counters = db.__picante__.counters
    before = (counters.executions, counters.dependency_checks)
    with picante.testing.record(db) as log:
        assert await collect(db.lint) == first
    assert log.executed == []
    assert log.verified == frozenset()
    assert (counters.executions, counters.dependency_checks) == before


async def test_an_edit_recollects_only_the_changed_path() -> None:
    """After one edit, its query, the queries above it and their collectors run again."""
    db = project(a="ok bad", b="fine", c="bad ok bad", d="bad")
    await collect(db.lint)
    db.source.set("c", "bad ok ok")  # c's value is the same, one diagnostic less
    with picante.testing.record(db) as log:
        assert await collect(db.lint) == (bad("a", 1), bad("c", 0), bad("d", 0))
    assert log.executed == [
        "check('c')",
        "lint()",
        collector("check", "c"),
        collector("lint"),
    ]


async def test_every_way_a_body_runs_keeps_its_values() -> None:
    """
    A body run from outside any query, one run inline by its cold reader, and one run
    inline by a revalidation walk all keep what they accumulated.
    """
    db = project(a="bad", b="ok bad")
    assert await db.check("a") == 1  # from outside: `execute`
    assert await db.lint() == 3  # check('b') cold, inline in lint()'s body
    assert db.log == ["check('a')", "lint()", "check('b')"]
    db.source.set("b", "bad ok")
    db.log.clear()
    assert await db.lint() == 3  # check('b') re-run inline by lint()'s revalidation
    assert db.log == ["check('b')", "lint()"]
    assert await collect(db.lint) == (bad("a", 0), bad("b", 0))


async def test_subtrees_that_accumulated_nothing_are_not_walked() -> None:
    """Only queries whose subtree accumulated something get a collector."""
    db = project(a="ok bad", b="fine", c="also fine")
    with picante.testing.record(db) as log:
        assert await collect(db.lint) == (bad("a", 1),)
    assert log.executed == [
        "check('a')",
        "check('b')",
        "check('c')",
        "lint()",
        collector("check", "a"),  # (finished before the collector that read it)
        collector("lint"),
    ]
    # A subtree that starts accumulating is walked from then on.
    db.source.set("b", "bad")
    with picante.testing.record(db) as log:
        assert await collect(db.lint) == (bad("a", 1), bad("b", 0))
    assert collector("check", "b") in log.executed


async def test_nothing_accumulated_collects_nothing() -> None:
    """A query whose subtree accumulated nothing collects an empty tuple."""
    db = project(a="fine")
    assert await collect(db.lint) == ()


async def test_collection_fetches_the_query_first() -> None:
    """`accumulated` computes the query if it has no memo, and revalidates it if it has."""
    db = project(a="bad")
    assert await collect(db.lint) == (bad("a", 0),)
    assert db.log == ["lint()", "check('a')"]
    db.source.set("a", "ok")
    db.log.clear()
    assert await collect(db.lint) == ()
    assert db.log == ["check('a')", "lint()"]


# -- backdating ----------------------------------------------------------------------------


async def test_equal_value_other_values_is_a_change() -> None:
    """A re-execution with an equal value but other accumulated values is a change."""
    db = project(a="bad", b="fine")
    assert await db.lint() == 2
    assert await collect(db.lint) == (bad("a", 0),)
    db.source.set("a", "oops")  # one word as before: check('a') == 1, no diagnostic
    with picante.testing.record(db) as log:
        assert await db.lint() == 2
    # Not cut off: lint() reads check('a'), whose accumulated values changed.
    assert log.executed == ["check('a')", "lint()"]
    assert await collect(db.lint) == ()
    db.source.set("a", "bad")  # and back: the diagnostic appears again
    assert await collect(db.lint) == (bad("a", 0),)


async def test_equal_value_and_values_is_cut_off() -> None:
    """An equal value with equal accumulated values is cut off as usual."""
    db = project(a="bad", b="fine")
    await collect(db.lint)
    db.source.set("a", "bad ")  # another text, the same words
    with picante.testing.record(db) as log:
        assert await collect(db.lint) == (bad("a", 0),)
    assert log.executed == ["check('a')"]
    assert log.verified == {"lint()", collector("check", "a"), collector("lint")}


@picante.database(accumulates=Diagnostic)
class Choices:
    """Queries whose accumulating reads change while their value stays the same."""

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input
    async def flip(self) -> bool:
        raise NotImplementedError

    @picante.query
    async def check(self, path: str) -> int:
        text = await self.source(path)
        picante.accumulate(Diagnostic(path, text))
        return 1

    @picante.query
    async def both(self) -> int:
        """Reads a then b, or b then a: the same value either way."""
        order = ("b", "a") if await self.flip() else ("a", "b")
        return sum([await self.check(path) for path in order])

    @picante.query
    async def pick(self) -> int:
        """Reads a or b: the same value either way."""
        return await self.check("b" if await self.flip() else "a")


def choices() -> Choices:
    db = Choices()
    db.source.set("a", "A")
    db.source.set("b", "B")
    db.flip.set(False)
    return db


async def test_reads_in_another_order_change_the_collection_order() -> None:
    """Collection follows the order of the last execution's reads, even for an equal value."""
    db = choices()
    assert await collect(db.both) == (Diagnostic("a", "A"), Diagnostic("b", "B"))
    db.flip.set(True)
    assert await collect(db.both) == (Diagnostic("b", "B"), Diagnostic("a", "A"))


async def test_reading_another_query_changes_the_collection() -> None:
    """A query that reads another accumulating query with an equal value has changed."""
    db = choices()
    assert await collect(db.pick) == (Diagnostic("a", "A"),)
    db.flip.set(True)
    assert await collect(db.pick) == (Diagnostic("b", "B"),)


# -- errors --------------------------------------------------------------------------------


async def test_a_memoized_error_keeps_what_it_accumulated() -> None:
    """Values accumulated before an exception are memoized with it, and collected."""
    db = project(a="bad fail bad", b="bad")
    with pytest.raises(ValueError, match=r"^a$"):
        await db.check("a")
    assert await collect(db.check, "a") == (bad("a", 0), bad("a", 2))
    assert await collect(db.lint) == (bad("a", 0), bad("a", 2), bad("b", 0))
    db.log.clear()
    with pytest.raises(ValueError, match=r"^a$"):
        await db.check("a")
    assert db.log == []  # the error is memoized, values and all
    db.source.set("a", "fail")  # a re-execution replaces them
    assert await collect(db.check, "a") == ()
    assert await collect(db.lint) == (bad("b", 0),)


# -- reading collected values inside a query ------------------------------------------------


async def test_collecting_inside_a_query_is_a_tracked_read() -> None:
    """A query that collects runs again only when the collected values change."""
    db = project(a="ok bad", b="fine")
    assert await db.report() == "1 problems"
    db.source.set("b", "fine fine")  # lint() changes, the diagnostics do not
    with picante.testing.record(db) as log:
        assert await db.report() == "1 problems"
    assert "lint()" in log.executed
    assert "report()" not in log.executed
    db.source.set("b", "bad")
    with picante.testing.record(db) as log:
        assert await db.report() == "2 problems"
    assert "report()" in log.executed
    with picante.testing.assert_nothing_runs(db):
        assert await db.report() == "2 problems"


async def test_a_query_that_collects_does_not_accumulate_what_it_collected() -> None:
    """Reading collected values is a read of the collection, not of what accumulated them."""
    db = project(a="bad")
    assert await db.report() == "1 problems"
    assert await collect(db.report) == ()


# -- Salsa's accumulator tests, ported -------------------------------------------------------


@picante.database(accumulates=str)
class Logs:
    """The shapes of Salsa's `accumulate-*.rs` tests; every query accumulates log lines."""

    @picante.input
    async def field(self, name: str) -> int:
        raise NotImplementedError

    # accumulate-execution-order.rs
    @picante.query
    async def push_logs(self) -> None:
        await self.push_a_logs()

    @picante.query
    async def push_a_logs(self) -> None:
        picante.accumulate("log a")
        await self.push_b_logs()
        await self.push_c_logs()
        await self.push_d_logs()

    @picante.query
    async def push_b_logs(self) -> None:
        picante.accumulate("log b")
        await self.push_d_logs()

    @picante.query
    async def push_c_logs(self) -> None:
        picante.accumulate("log c")

    @picante.query
    async def push_d_logs(self) -> None:
        picante.accumulate("log d")

    # accumulate-dag.rs
    @picante.query
    async def dag(self) -> None:
        await self.dag_a()
        await self.dag_b()

    @picante.query
    async def dag_a(self) -> None:
        count = await self.field("a")
        for i in range(count):
            picante.accumulate(f"log_a({i} of {count})")

    @picante.query
    async def dag_b(self) -> None:
        await self.dag_a()  # b reads a too
        count = await self.field("b")
        for i in range(count):
            picante.accumulate(f"log_b({i} of {count})")

    # accumulate-chain.rs
    @picante.query
    async def chain(self, depth: int) -> None:
        if depth == 0:
            picante.accumulate("log d")
            return
        await self.chain(depth - 1)

    # accumulate-no-duplicates.rs: a diamond whose shared memo accumulates
    @picante.query
    async def diamond(self) -> None:
        picante.accumulate("top")
        await self.left()
        await self.right()

    @picante.query
    async def left(self) -> None:
        await self.shared()
        picante.accumulate("left")

    @picante.query
    async def right(self) -> None:
        picante.accumulate("right")
        await self.shared()

    @picante.query
    async def shared(self) -> None:
        picante.accumulate("shared")


async def test_execution_order() -> None:
    """Depth first in first-read order, each memo where it is first met (execution-order)."""
    db = Logs()
    assert await collect(db.push_logs) == ("log a", "log b", "log d", "log c")


async def test_dag() -> None:
    """A memo read by two queries contributes once (accumulate-dag)."""
    db = Logs()
    db.field.set("a", 2)
    db.field.set("b", 3)
    assert await collect(db.dag) == (
        "log_a(0 of 2)",
        "log_a(1 of 2)",
        "log_b(0 of 3)",
        "log_b(1 of 3)",
        "log_b(2 of 3)",
    )
    db.field.set("a", 1)
    assert await collect(db.dag) == (
        "log_a(0 of 1)",
        "log_b(0 of 3)",
        "log_b(1 of 3)",
        "log_b(2 of 3)",
    )


async def test_chain() -> None:
    """Values deep in a chain of queries that accumulate nothing are found (accumulate-chain)."""
    db = Logs()
    assert await collect(db.chain, 3) == ("log d",)
    # Built a link at a time, a chain deeper than the interpreter's recursion limit.
    for depth in range(0, 3_000, 100):
        await db.chain(depth)
    assert await collect(db.chain, 3_000) == ("log d",)


async def test_no_duplicates() -> None:
    """A memo reached by two paths is collected once (accumulate-no-duplicates)."""
    db = Logs()
    assert await collect(db.diamond) == ("top", "left", "shared", "right")
    assert await collect(db.right) == ("right", "shared")


@picante.database(accumulates=int)
class Numbers:
    """Salsa's accumulate-reuse-workaround.rs, with no workaround needed."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.input
    async def value(self, k: int) -> int:
        raise NotImplementedError

    @picante.query
    async def compute(self, k: int) -> int:
        self.log.append(f"compute({k})")
        value = await self.value(k)
        picante.accumulate(value // 10)  # coarser than the value
        return value

    @picante.query
    async def tens(self, k: int) -> int:
        self.log.append(f"tens({k})")
        return sum(await picante.accumulated(self.compute, k))


async def test_reuse_without_a_workaround() -> None:
    """The reader of collected values is reused while they stay the same (reuse-workaround)."""
    db = Numbers()
    db.value.set(1, 11)
    assert await db.tens(1) == 1
    assert db.log == ["tens(1)", "compute(1)"]
    db.log.clear()
    assert await db.tens(1) == 1
    assert db.log == []
    db.value.set(1, 12)  # compute(1) changes, what it accumulates does not
    assert await db.tens(1) == 1
    assert db.log == ["compute(1)"]
    db.log.clear()
    db.value.set(1, 21)
    assert await db.tens(1) == 2
    assert db.log == ["compute(1)", "tens(1)"]


# -- concurrency ---------------------------------------------------------------------------


@picante.database(accumulates=str)
class Tasks:
    @picante.input
    async def n(self) -> int:
        raise NotImplementedError

    @picante.query
    async def spawn(self) -> int:
        """Child tasks accumulate into this evaluation, in the order they did it."""
        second_done = asyncio.Event()

        async def first() -> None:
            await second_done.wait()
            picante.accumulate("first")

        async def second() -> None:
            picante.accumulate("second")
            second_done.set()

        picante.accumulate("before")
        await asyncio.gather(first(), second())
        async with asyncio.TaskGroup() as group:
            group.create_task(self.leaf(1))
            group.create_task(self.leaf(2))
        picante.accumulate("after")
        return await self.n()

    @picante.query
    async def leaf(self, k: int) -> int:
        picante.accumulate(f"leaf {k}")
        return k

    @picante.query
    async def outlived(self) -> int:
        """Starts a task that accumulates after the query returned."""
        self.late = asyncio.get_running_loop().create_future()  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(self._late())
        return 0

    async def _late(self) -> None:
        late: asyncio.Future[None] = self.late  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        try:
            picante.accumulate("too late")
        except UsageError as error:
            late.set_exception(error)
        else:
            late.set_result(None)


async def test_child_tasks_accumulate_into_the_query_in_the_order_they_did() -> None:
    """`asyncio.gather` and `TaskGroup` children share the evaluation's values."""
    db = Tasks()
    db.n.set(0)
    collected = await collect(db.spawn)
    assert collected[:3] == ("before", "second", "first")
    assert collected[3] == "after"
    # The leaves are memos of their own, collected in the order spawn() read them.
    assert sorted(collected[4:]) == ["leaf 1", "leaf 2"]


async def test_a_task_that_outlives_its_query_cannot_accumulate() -> None:
    """After the query returned, `accumulate` from a task it started is a `UsageError`."""
    db = Tasks()
    assert await db.outlived() == 0
    with pytest.raises(
        UsageError, match=r"^Tasks\.outlived\(\): picante\.accumulate\(\) was called after"
    ):
        await asyncio.wait_for(db.late, TIMEOUT)  # type: ignore[attr-defined]


async def test_concurrent_collections_share_one_evaluation() -> None:
    """Collections of one record started together run each body and collector once."""
    db = project(a="bad", b="bad")
    with picante.testing.record(db) as log:
        results = await asyncio.wait_for(
            asyncio.gather(*(picante.accumulated(db.lint) for _ in range(5))), TIMEOUT
        )
    assert results == [(bad("a", 0), bad("b", 0))] * 5
    assert sorted(log.executed) == sorted(
        [
            "check('a')",
            "check('b')",
            "lint()",
            collector("check", "a"),
            collector("check", "b"),
            collector("lint"),
        ]
    )


async def test_a_collection_that_closes_a_cycle() -> None:
    """A query collecting what reads it closes a cycle: `CycleError`, no deadlock."""

    @picante.database(accumulates=str)
    class Loop:
        @picante.query
        async def a(self) -> int:
            picante.accumulate("a")
            return len(await picante.accumulated(self.b))

        @picante.query
        async def b(self) -> int:
            picante.accumulate("b")
            return await self.a()

    db = Loop()
    # b's evaluation met the cycle and failed with it: its error is collected from as
    # any error is, and a's value is what it collected.
    assert await asyncio.wait_for(db.a(), TIMEOUT) == 1
    with pytest.raises(CycleError, match=r"a\(\) → picante\.accumulated\('b', \(\)\) → b\(\)"):
        await asyncio.wait_for(db.b(), TIMEOUT)
    assert await collect(db.b) == ("b",)


# -- snapshots ------------------------------------------------------------------------------


async def test_a_snapshot_collects_at_its_revision() -> None:
    """A snapshot sees the values of its revision, reusing the database's memos."""
    db = project(a="bad", b="fine")
    assert await collect(db.lint) == (bad("a", 0),)
    snapshot = picante.snapshot(db)
    db.source.set("b", "bad bad")
    assert await collect(db.lint) == (bad("a", 0), bad("b", 0), bad("b", 1))
    with picante.testing.record(snapshot) as log:
        assert await collect(snapshot.lint) == (bad("a", 0),)
    assert log.executed == []  # taken from the database, as of the snapshot's revision
    snapshot.source.set("a", "fine")
    assert await collect(snapshot.lint) == ()
    assert await collect(db.lint) == (bad("a", 0), bad("b", 0), bad("b", 1))


async def test_an_evaluation_that_finished_after_a_change_keeps_its_values() -> None:
    """
    An evaluation bound to a revision that has passed keeps its outcome, values and all,
    for that revision: a snapshot of it takes them without running the body.
    """

    @picante.database(accumulates=str)
    class Slow:
        def __init__(self) -> None:
            self.gates: list[asyncio.Event] = []
            self.log: list[str] = []

        @picante.input
        async def text(self) -> str:
            raise NotImplementedError

        @picante.query
        async def read(self) -> str:
            text = await self.text()
            self.log.append(f"read {text}")
            picante.accumulate(f"read {text}")
            if self.gates:
                await self.gates.pop().wait()
            return text

    db = Slow()
    db.text.set("a")
    snapshot = picante.snapshot(db)
    gate = asyncio.Event()
    db.gates.append(gate)
    first = asyncio.create_task(db.read())
    await until(lambda: db.log == ["read a"])
    db.text.set("b")  # while the first evaluation waits
    assert await collect(db.read) == ("read b",)
    gate.set()
    assert await asyncio.wait_for(first, TIMEOUT) == "a"
    with picante.testing.record(snapshot) as log:
        assert await collect(snapshot.read) == ("read a",)
    assert db.log == ["read a", "read b"]  # the snapshot ran no body
    assert log.executed == [collector("read")]


async def test_a_snapshot_taken_before_collecting() -> None:
    """Memos computed in the database after the snapshot was taken are not its own."""
    db = project(a="bad")
    snapshot = picante.snapshot(db)
    db.source.set("a", "fine")
    assert await collect(db.lint) == ()
    assert await collect(snapshot.lint) == (bad("a", 0),)
    assert await collect(db.lint) == ()


# -- declaring and misuse --------------------------------------------------------------------


async def test_accumulate_outside_a_query() -> None:
    """Outside a running query there is nothing to accumulate to."""
    with pytest.raises(
        UsageError, match=r"^picante\.accumulate\(\) must be called inside a running query$"
    ):
        picante.accumulate(Diagnostic("a", "b"))


async def test_accumulate_in_a_database_that_declares_no_type() -> None:
    """The query fails with a `UsageError` naming the database and the query."""

    @picante.database
    class Plain:
        @picante.query
        async def q(self, k: int) -> int:
            picante.accumulate("x")
            return k

    with pytest.raises(
        UsageError,
        match=(
            r"^Plain\.q\(1\): picante\.accumulate\(\) needs Plain to declare what it "
            r"accumulates: @picante\.database\(accumulates=\.\.\.\)$"
        ),
    ):
        await Plain().q(1)
    with pytest.raises(UsageError, match=r"^accumulated\(Plain\.q\): Plain does not accumulate"):
        await picante.accumulated(Plain().q, 1)


async def test_accumulate_a_value_of_another_type() -> None:
    """A value that is not of the declared type is a `TypeError` naming both types."""

    @picante.database(accumulates=Diagnostic)
    class Typed:
        @picante.query
        async def q(self) -> int:
            picante.accumulate("not a diagnostic")
            return 0

    with pytest.raises(
        TypeError,
        match=(
            r"^Typed\.q\(\): picante\.accumulate\(\) expected a Diagnostic, "
            r"got a str: 'not a diagnostic'$"
        ),
    ):
        await Typed().q()


async def test_a_union_of_types() -> None:
    """`accumulates=A | B` takes values of either class."""

    @attrs.frozen
    class Caution:
        text: str

    @picante.database(accumulates=Diagnostic | Caution)
    class Mixed:
        @picante.query
        async def q(self) -> int:
            picante.accumulate(Diagnostic("a", "error"))
            picante.accumulate(Caution("careful"))
            return 0

    assert await collect(Mixed().q) == (Diagnostic("a", "error"), Caution("careful"))


@pytest.mark.parametrize("bad_type", [(int, str), "int", list[int], 3])
def test_accumulates_must_be_a_class_or_a_union(bad_type: Any) -> None:
    """Anything `isinstance` does not take, and tuples, are refused at declaration."""
    with pytest.raises(UsageError, match=r"^database\(\): accumulates must be a class or a union"):
        picante.database(accumulates=bad_type)


async def test_accumulated_needs_a_query_of_a_database() -> None:
    """A function, an input or a class attribute is no query of a database instance."""
    db = project(a="bad")
    with pytest.raises(UsageError, match=r"^accumulated\(\): expected a query of a database"):
        await picante.accumulated(db.source, "a")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^accumulated\(\): expected a query of a database"):
        await picante.accumulated(Project.check, "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Project\.check\(\): missing a required argument"):
        await picante.accumulated(db.check)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"argument 'path' must be hashable"):
        await picante.accumulated(db.check, ["a"])  # type: ignore[arg-type]


async def test_subclasses_inherit_the_type_or_declare_their_own() -> None:
    """A subclass accumulates as its base declared, unless it declares another type."""

    @picante.database
    class Sub(Project):
        pass

    @picante.database(accumulates=str)
    class Other(Project):
        @picante.query
        async def check(self, path: str) -> int:
            picante.accumulate(f"checked {path}")
            return 0

    sub = Sub()
    sub.source.set("a", "bad")
    assert await collect(sub.check, "a") == (bad("a", 0),)
    other = Other()
    assert await collect(other.check, "a") == ("checked a",)


# -- cache files ----------------------------------------------------------------------------


async def test_saved_and_loaded_with_the_memos(tmp_path: Path) -> None:
    """A loaded database collects the saved values without running a query body."""
    path = tmp_path / "project.cache"
    db = project(a="ok bad", b="fine", c="bad bad")
    expected = await collect(db.lint)
    await picante.save(db, path)
    loaded = Project()
    assert await picante.load(loaded, path)
    with picante.testing.record(loaded) as log:
        assert await collect(loaded.lint) == expected
    # Collectors are not saved: they run again, reading the memos' saved values.
    assert loaded.log == []
    assert sorted(log.executed) == sorted(
        [collector("check", "a"), collector("check", "c"), collector("lint")]
    )
    # An incremental save (a log entry) carries the values that changed.
    loaded.source.set("a", "ok ok")
    loaded.source.set("b", "bad")
    assert await collect(loaded.lint) == (bad("b", 0), bad("c", 0), bad("c", 1))
    await picante.save(loaded, path)
    assert path.with_name(path.name + ".log").exists()
    again = Project()
    assert await picante.load(again, path)
    assert await collect(again.lint) == (bad("b", 0), bad("c", 0), bad("c", 1))
    assert again.log == []


async def test_an_error_is_saved_with_its_values(tmp_path: Path) -> None:
    """A memoized error is saved without its exception, but with what it accumulated."""
    path = tmp_path / "project.cache"
    db = project(a="bad fail", b="bad")
    assert await collect(db.lint) == (bad("a", 0), bad("b", 0))
    await picante.save(db, path)
    loaded = Project()
    assert await picante.load(loaded, path)
    assert await collect(loaded.lint) == (bad("a", 0), bad("b", 0))
    # The error runs again when read (as any error loaded from a file), nothing else.
    assert loaded.log == ["check('a')"]


def rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply *change* to the base payload of *path*, rewritten with a valid digest."""
    payload = orjson.loads(path.read_bytes()[HEADER.size :])
    change(payload)
    data = orjson.dumps(payload)
    header = picante._format.base_bytes(data)[0]
    path.write_bytes(header + data)


def section(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in payload["sections"] if s["name"] == name)


async def test_values_of_another_type_in_a_file_drop_its_section(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crafted value that is no declared type is never loaded: its section is dropped."""
    path = tmp_path / "project.cache"
    db = project(a="bad")
    await collect(db.lint)
    await picante.save(db, path)

    def craft(payload: dict[str, Any]) -> None:
        values = section(payload, "check")["accumulated"]
        assert values == [[values[0][0], [{"path": "a", "message": "bad word 0"}], []]]
        values[0][1] = ["not a diagnostic"]

    rewrite(path, craft)
    loaded = Project()
    with caplog.at_level(logging.WARNING, logger="picante"):
        assert await picante.load(loaded, path)
    assert re.search(r"dropped section .*Project\.check \(decode failure", caplog.text)
    assert await collect(loaded.lint) == (bad("a", 0),)
    assert loaded.log == ["lint()", "check('a')"]  # lint() read a dropped memo


async def test_values_of_a_record_the_file_lacks_are_corrupt(tmp_path: Path) -> None:
    """Values filed under an id that is no memo of the section make the file corrupt."""
    path = tmp_path / "project.cache"
    db = project(a="bad")
    await collect(db.lint)
    await picante.save(db, path)
    rewrite(path, lambda payload: section(payload, "check")["accumulated"].append([999, [], []]))
    with pytest.raises(CacheError, match="accumulated values of a record it does not have"):
        await picante.load(Project(), path)
    # An accumulating read that is no dependency of the memo, or not a memo.
    await picante.save(db, path)
    rewrite(path, lambda payload: section(payload, "lint")["accumulated"][0][2].append(5))
    with pytest.raises(CacheError, match=r"lint\(\): an accumulating read"):
        await picante.load(Project(), path)


async def test_a_file_of_the_class_before_it_accumulated_loads_cold(tmp_path: Path) -> None:
    """Declaring `accumulates=` changes the queries' schema: their memos are not misread."""

    @picante.database(name="tests.Project")
    class Before:
        @picante.input
        async def source(self, path: str) -> str:
            raise NotImplementedError

        @picante.input
        async def files(self) -> tuple[str, ...]:
            raise NotImplementedError

        @picante.query
        async def check(self, path: str) -> int:
            return len((await self.source(path)).split())

        @picante.query
        async def lint(self) -> int:
            return sum([await self.check(path) for path in await self.files()])

    @picante.database(name="tests.Project")
    class After(Project):
        pass

    path = tmp_path / "project.cache"
    old = Before()
    old.source.set("a", "bad")
    old.files.set(("a",))
    assert await old.lint() == 1
    await picante.save(old, path)
    new = After()
    assert await picante.load(new, path)
    assert new.source.get("a") == "bad"  # the inputs are kept
    assert await collect(new.lint) == (bad("a", 0),)
    assert new.log == ["lint()", "check('a')"]  # the memos are not
    # A file of an accumulating database where nothing accumulated has no values at all.
    quiet = project(a="fine")
    await collect(quiet.lint)
    await picante.save(quiet, path)
    assert "accumulated" not in section(orjson.loads(path.read_bytes()[HEADER.size :]), "check")
    assert await picante.load(Project(), path)


async def test_a_value_that_cannot_be_saved(tmp_path: Path) -> None:
    """`save` refuses a value that would not load back, naming the record."""
    db = project(a="bad")
    await collect(db.lint)

    @picante.database(accumulates=Diagnostic)
    class Sloppy:
        @picante.query
        async def q(self) -> int:
            picante.accumulate(Diagnostic(1, "a number for a path"))  # type: ignore[arg-type]
            return 0

    sloppy = Sloppy()
    await sloppy.q()
    message = r"^cannot save .*Sloppy\.q\(\): accumulated values \(Diagnostic"
    with pytest.raises(CacheError, match=message):
        await picante.save(sloppy, tmp_path / "sloppy.cache")


# -- sharing, sweeping, verifying, evicting ---------------------------------------------------


def shared_project(store: MemoryStore, **sources: str) -> Project:
    db = project(**sources)
    picante.share(db, store)
    return db


async def test_evaluations_that_accumulated_are_not_shared() -> None:
    """Shared results never skip a body that accumulates; their readers are shared."""
    store = MemoryStore()
    first = shared_project(store, a="ok bad", b="fine")
    assert await collect(first.lint) == (bad("a", 1),)
    await asyncio.wait_for(picante.flush_shared(first), TIMEOUT)
    stats = picante.debug.stats(first).shared
    assert stats is not None
    assert (stats.published, stats.unshareable) == (2, 1)  # check('a') is not published
    second = shared_project(store, a="ok bad", b="fine")
    assert await collect(second.lint) == (bad("a", 1),)
    # lint() and check('b') were adopted; check('a') ran, to accumulate.
    assert second.log == ["check('a')"]


async def test_sweep_drops_the_values_of_dropped_memos() -> None:
    """Swept memos take their values along; collecting again is still right."""
    db = project(a="bad", b="bad")
    assert await collect(db.lint) == (bad("a", 0), bad("b", 0))
    db.files.set(("a",))
    assert await collect(db.lint) == (bad("a", 0),)
    entries = db.__picante__.accumulations.entries
    assert any(cell.key == ("b",) for cell in entries)
    picante.sweep(db)  # check('b') is clean: marked, and dropped by a later sweep
    picante.refresh(db)
    picante.sweep(db)
    assert not any(cell.key == ("b",) for cell in entries)
    db.files.set(("a", "b"))
    assert await collect(db.lint) == (bad("a", 0), bad("b", 0))


async def test_verify_compares_what_bodies_accumulate() -> None:
    """`debug.verify` reports a query that accumulates something else when run again."""
    counter = iter(range(100))

    @picante.database(accumulates=int)
    class Impure:
        @picante.query
        async def q(self) -> int:
            picante.accumulate(next(counter))
            return 0

        @picante.query
        async def pure(self) -> int:
            picante.accumulate(7)
            return await self.q()

    db = Impure()
    assert await collect(db.pure) == (7, 0)
    report = await picante.debug.verify(db)
    assert [(m.record, m.memoized, m.fresh) for m in report] == [("q() accumulated", (0,), (1,))]
    assert report.not_comparable == []


async def test_an_evicted_memo_is_collected_again() -> None:
    """An LRU eviction drops a value, never the collection's correctness."""

    @picante.database(accumulates=str)
    class Small:
        @picante.input
        async def text(self, k: int) -> str:
            raise NotImplementedError

        @picante.query(lru=1)
        async def word(self, k: int) -> str:
            text = await self.text(k)
            picante.accumulate(f"word {k}: {text}")
            return text

        @picante.query
        async def both(self) -> str:
            return await self.word(1) + await self.word(2)

    db = Small()
    db.text.set(1, "a")
    db.text.set(2, "b")
    assert await collect(db.both) == ("word 1: a", "word 2: b")
    assert await collect(db.word, 1) == ("word 1: a",)  # evicts word(2)'s value
    db.text.set(1, "c")
    assert await collect(db.both) == ("word 1: c", "word 2: b")


async def test_debug_tools_see_collectors() -> None:
    """Collectors are memos of a hidden query: stats and the graph show them."""
    db = project(a="bad")
    await collect(db.lint)
    stats = picante.debug.stats(db)
    assert "picante.accumulated" in {row.name for row in stats.queries}
    graph = picante.debug.dependency_graph(db)
    assert any(node.ingredient == "picante.accumulated" for node in graph.nodes)


# -- memo consistency, with collections --------------------------------------------------------


@picante.database(accumulates=str)
class Pages:
    """Reads in orders and from queries that depend on the inputs; errors that accumulate."""

    @picante.input
    async def text(self, k: int) -> str:
        raise NotImplementedError

    @picante.query
    async def line(self, k: int) -> int:
        try:
            text = await self.text(k)
        except picante.MissingInputError:
            picante.accumulate(f"line {k}: missing")
            return 0
        for index, char in enumerate(text):
            if char == "x":
                picante.accumulate(f"line {k}: x at {index}")
        if text == "boom":
            raise ValueError(k)
        return len(text)

    @picante.query
    async def page(self, k: int) -> int:
        first = await self.line(k)
        # Which line it reads next, and in which order, depends on the first one.
        others = [k + 1, k + 2] if first % 2 else [k + 2]
        total = first
        for other in others:
            try:
                total += await self.line(other % 4)
            except ValueError:
                total += 100
        return min(total, 3)  # a coarse value: equal ones with other diagnostics

    @picante.query
    async def book(self) -> int:
        return sum([await self.page(k) for k in (2, 0, 1)])

    @picante.query
    async def summary(self) -> int:
        return len(await picante.accumulated(self.book))


TEXTS = st.sampled_from(["", "a", "x", "ax", "xx", "boom"])
PAGES_INPUTS = {"text": (st.tuples(st.integers(0, 3)), TEXTS)}
PAGES_QUERIES: dict[str, Any] = {
    "line": st.tuples(st.integers(0, 3)),
    "page": st.tuples(st.integers(0, 3)),
    "book": (),
    "summary": (),
}


def test_collections_equal_a_fresh_databases() -> None:
    """After any changes, on databases and snapshots, collections equal a fresh database's."""
    picante.testing.check_consistency(
        Pages,
        inputs=PAGES_INPUTS,
        queries=PAGES_QUERIES,
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None, database=None),
    )


@picante.database(accumulates=str)
class Forgetful:
    """`line` reports an `x` only the first time it runs for a key: picante cannot see it."""

    def __init__(self) -> None:
        self.reported: set[int] = set()

    @picante.input
    async def text(self, k: int) -> str:
        raise NotImplementedError

    @picante.query
    async def line(self, k: int) -> int:
        text = await self.text(k)
        if "x" in text and k not in self.reported:
            self.reported.add(k)
            picante.accumulate(f"line {k}")
        return len(text)


def test_a_collection_that_differs_is_reported() -> None:
    """The consistency check compares what calls accumulated, and names the collection."""
    with pytest.raises(AssertionError) as info:
        picante.testing.check_consistency(
            Forgetful,
            inputs={"text": (st.tuples(st.integers(0, 1)), st.sampled_from(["x", "xx", "a"]))},
            queries={"line": st.tuples(st.integers(0, 1))},
            settings=settings(
                max_examples=500,
                stateful_step_count=20,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                print_blob=False,
            ),
        )
    message = str(info.value)
    assert re.match(
        r"accumulated\(line\(\d\)\) on (database_0|snapshot_\d+) \(revision \d+\) returned \(\), "
        r"but a fresh database with the same inputs returned \('line \d',\)",
        message,
    ), message
