"""Derived queries: memoization, recomputation, early cutoff, errors, revision binding."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import picante


def make_site(log: list[str]) -> Any:
    @picante.database
    class Site:
        @picante.input
        async def source(self, path: str) -> str: ...

        @picante.query
        async def words(self, path: str) -> int:
            log.append(f"words({path!r})")
            return len((await self.source(path)).split())

        @picante.query
        async def parity(self, path: str) -> int:
            log.append(f"parity({path!r})")
            return await self.words(path) % 2

        @picante.query
        async def label(self, path: str) -> str:
            log.append(f"label({path!r})")
            return "odd" if await self.parity(path) else "even"

    return Site()


async def test_memoized(log: list[str]) -> None:
    """A second read at the same revision runs nothing."""
    db = make_site(log)
    db.source.set("a.md", "hello world")
    assert await db.words("a.md") == 2
    assert await db.words("a.md") == 2
    assert log == ["words('a.md')"]


async def test_recomputes_only_what_is_affected(log: list[str]) -> None:
    """Changing one input reruns only the queries that read it."""
    db = make_site(log)
    db.source.set("a.md", "one")
    db.source.set("b.md", "one two")
    assert [await db.label("a.md"), await db.label("b.md")] == ["odd", "even"]
    log.clear()
    db.source.set("b.md", "one two three")
    assert [await db.label("a.md"), await db.label("b.md")] == ["odd", "odd"]
    assert log == ["words('b.md')", "parity('b.md')", "label('b.md')"]


async def test_early_cutoff() -> None:
    """A recompute that yields an equal value does not rerun its dependents."""
    db = make_site([])
    db.source.set("a.md", "one two")
    assert await db.label("a.md") == "even"
    db.source.set("a.md", "three four five six")  # words 2 → 4: parity stays 0
    with picante.testing.record(db) as log:
        assert await db.label("a.md") == "even"
    assert log.executed == ["words('a.md')", "parity('a.md')"]
    assert log.verified == {"label('a.md')"}  # label was cut off
    db.source.set("a.md", "seven eight")  # words 4 → 2: parity stays 0
    with picante.testing.record(db) as log:
        assert await db.label("a.md") == "even"
    assert log.executed == ["words('a.md')", "parity('a.md')"]
    assert log.verified == {"label('a.md')"}
    db.source.set("a.md", "nine ten")  # words 2 → 2: parity not even rerun
    with picante.testing.record(db) as log:
        assert await db.label("a.md") == "even"
    assert log.executed == ["words('a.md')"]
    assert log.verified == {"parity('a.md')", "label('a.md')"}


async def test_custom_eq(log: list[str]) -> None:
    """`eq=` decides early cutoff: here case-insensitive equality."""

    @picante.database
    class Db:
        @picante.input
        async def text(self) -> str: ...

        @picante.query(eq=lambda a, b: a.lower() == b.lower())
        async def title(self) -> str:
            log.append("title()")
            return await self.text()

        @picante.query
        async def shout(self) -> str:
            log.append("shout()")
            return (await self.title()).upper()

    db = Db()
    db.text.set("hello")
    assert await db.shout() == "HELLO"
    db.text.set("HELLO")
    # title recomputed, but counts as equal: shout is cut off and keeps its value.
    assert await db.shout() == "HELLO"
    assert await db.title() == "HELLO"
    assert log == ["shout()", "title()", "title()"]


@pytest.mark.parametrize(
    "weird",
    [
        pytest.param("raising", id="eq-raises"),
        pytest.param("non-bool", id="eq-not-bool"),
    ],
)
async def test_unusual_eq_counts_as_changed(log: list[str], weird: str) -> None:
    """A value whose `==` raises or returns a non-bool never cuts off."""

    class Value:
        def __init__(self, n: int) -> None:
            self.n = n

        def __eq__(self, other: object) -> Any:
            if weird == "raising":
                raise RuntimeError("no ==")
            return [True]  # truthy, but not a bool

        __hash__ = object.__hash__

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def wrapped(self) -> Value:
            log.append("wrapped()")
            return Value((await self.n()) * 0)

        @picante.query
        async def reader(self) -> int:
            log.append("reader()")
            return (await self.wrapped()).n

    db = Db()
    db.n.set(1)
    assert await db.reader() == 0
    db.n.set(2)
    assert await db.reader() == 0
    assert log == ["reader()", "wrapped()", "wrapped()", "reader()"]


class TestErrors:
    async def test_memoized_for_the_revision(self, log: list[str]) -> None:
        """An error is re-raised (the same exception) at the same revision without rerunning."""

        @picante.database
        class Db:
            @picante.input
            async def n(self) -> int: ...

            @picante.query
            async def inverse(self) -> float:
                log.append("inverse()")
                return 1 / await self.n()

        db = Db()
        db.n.set(0)
        with pytest.raises(ZeroDivisionError) as first:
            await db.inverse()
        with pytest.raises(ZeroDivisionError) as second:
            await db.inverse()
        assert first.value is second.value
        assert log == ["inverse()"]
        db.n.set(4)
        assert await db.inverse() == 0.25
        assert log == ["inverse()", "inverse()"]

    async def test_traceback_does_not_grow(self) -> None:
        """Re-raising a memoized error restores its traceback instead of extending it."""

        @picante.database
        class Db:
            @picante.query
            async def boom(self) -> int:
                raise ValueError("boom")

        db = Db()
        depths = []
        for _ in range(3):
            with pytest.raises(ValueError, match="boom") as info:
                await db.boom()
            tb, depth = info.value.__traceback__, 0
            while tb is not None:
                tb, depth = tb.tb_next, depth + 1
            depths.append(depth)
        assert depths[1] == depths[2]

    async def test_error_revalidates_like_a_value(self, log: list[str]) -> None:
        """A memoized error is reused while nothing it read changed, re-run when it did."""

        @picante.database
        class Db:
            @picante.input
            async def n(self) -> int: ...

            @picante.input
            async def other(self) -> int: ...

            @picante.query
            async def flaky(self) -> int:
                log.append("flaky()")
                raise RuntimeError(await self.n())

        db = Db()
        db.n.set(1)
        with pytest.raises(RuntimeError) as first:
            await db.flaky()
        for value in range(100):
            db.other.set(value)
            with pytest.raises(RuntimeError) as again:
                await db.flaky()
            assert again.value is first.value
        assert log == ["flaky()"]
        db.n.set(2)
        with pytest.raises(RuntimeError, match="2"):
            await db.flaky()
        assert log == ["flaky()", "flaky()"]

    async def test_dependents_see_error_unless_they_catch(self, log: list[str]) -> None:
        """A dependent awaiting a failing query sees the exception; a catching one recovers."""

        @picante.database
        class Db:
            @picante.input
            async def n(self) -> int: ...

            @picante.query
            async def checked(self) -> int:
                n = await self.n()
                if n < 0:
                    raise ValueError(n)
                return n

            @picante.query
            async def plain(self) -> int:
                return await self.checked() + 1

            @picante.query
            async def safe(self) -> int:
                log.append("safe()")
                try:
                    return await self.checked()
                except ValueError:
                    return 0

        db = Db()
        db.n.set(-1)
        with pytest.raises(ValueError, match=r"^-1$"):
            await db.plain()
        assert await db.safe() == 0
        db.n.set(-2)  # a different error: safe reruns but still returns 0
        assert await db.safe() == 0
        db.n.set(3)
        assert (await db.plain(), await db.safe()) == (4, 3)
        assert log == ["safe()", "safe()", "safe()"]

    async def test_equal_error_cuts_off(self, log: list[str]) -> None:
        """A recompute raising an error of the same type and args counts as unchanged."""

        @picante.database
        class Db:
            @picante.input
            async def n(self) -> int: ...

            @picante.query
            async def sign(self) -> int:
                n = await self.n()
                if n < 0:
                    raise ValueError("negative")
                return 1

            @picante.query
            async def safe(self) -> str:
                log.append("safe()")
                try:
                    await self.sign()
                except ValueError as error:
                    return str(error)
                return "ok"

        db = Db()
        db.n.set(-1)
        assert await db.safe() == "negative"
        db.n.set(-5)
        assert await db.safe() == "negative"
        assert log == ["safe()"]

    async def test_user_errors_are_not_wrapped(self) -> None:
        """Exceptions from queries propagate unchanged, of their own type."""

        class MyError(Exception):
            pass

        @picante.database
        class Db:
            @picante.query
            async def q(self) -> int:
                raise MyError(1, 2)

        with pytest.raises(MyError) as info:
            await Db().q()
        assert info.value.args == (1, 2)


async def test_evaluation_bound_to_start_revision(log: list[str]) -> None:
    """An input set while a query is suspended does not leak into that evaluation."""
    gate = asyncio.Event()
    started = asyncio.Event()

    @picante.database
    class Db:
        @picante.input
        async def a(self) -> int: ...

        @picante.input
        async def b(self) -> int: ...

        @picante.query
        async def total(self) -> int:
            log.append("total()")
            first = await self.a()
            started.set()
            await gate.wait()
            return first + await self.b() + await self.half_b()

        @picante.query
        async def half_b(self) -> int:
            return await self.b() // 2

    db = Db()
    db.a.set(1)
    db.b.set(10)
    task = asyncio.create_task(db.total())
    await asyncio.wait_for(started.wait(), 5)
    db.b.set(100)
    db.a.set(2)
    gate.set()
    # Everything the evaluation read is as of revision 2: a=1, b=10, half_b=5.
    assert await asyncio.wait_for(task, 5) == 16
    # The next read is at the current revision and recomputes.
    assert await db.total() == 152
    assert log == ["total()", "total()"]


async def test_deep_chain_verifies_without_recursion(log: list[str]) -> None:
    """A chain of 10,000 queries revalidates and recomputes iteratively."""
    depth = 10_000

    @picante.database
    class Db:
        @picante.input
        async def base(self) -> int: ...

        @picante.input
        async def unrelated(self) -> int: ...

        @picante.query
        async def step(self, n: int) -> int:
            if n == 0:
                return await self.base()
            return await self.step(n - 1) + 1

    db = Db()
    db.base.set(0)
    for n in range(depth):  # built bottom-up so no single evaluation nests deeply
        await db.step(n)
    view = db.__picante__
    db.base.set(1)
    assert await db.step(depth - 1) == depth
    assert view.counters.executions == 2 * depth
    db.base.set(1)  # no-op
    db.unrelated.set(7)  # unrelated: no walk at all
    checks = view.counters.dependency_checks
    assert await db.step(depth - 1) == depth
    assert view.counters.dependency_checks == checks


async def test_shared_subgraph_walked_once() -> None:
    """Deep verification does not re-walk a sub-graph shared by many dependents."""

    @picante.database
    class Db:
        @picante.input
        async def leaf(self) -> int: ...

        @picante.input
        async def bump(self) -> int: ...

        @picante.query
        async def shared(self, n: int) -> int:
            if n == 0:
                return await self.leaf() * 0
            return await self.shared(n - 1)

        @picante.query
        async def fan(self, i: int) -> int:
            return await self.shared(50) + i

        @picante.query
        async def top(self) -> int:
            total = 0
            for i in range(100):
                total += await self.fan(i)
            return total + (await self.bump()) * 0

    db = Db()
    db.leaf.set(1)
    db.bump.set(0)
    for n in range(51):
        await db.shared(n)
    assert await db.top() == sum(range(100))
    view = db.__picante__
    db.leaf.set(2)  # shared(0) recomputes to an equal value: everything above is cut off
    before_checks, before_runs = view.counters.dependency_checks, view.counters.executions
    assert await db.top() == sum(range(100))
    # Each memo's dependencies are checked once: 51 shared + 100 fan (1 dep) + top (101).
    assert view.counters.dependency_checks - before_checks <= 51 + 100 + 101
    assert view.counters.executions - before_runs == 1


async def test_query_reading_other_database_is_untracked() -> None:
    """A query may read another database; that read is not a dependency of it."""

    @picante.database
    class Db:
        def __init__(self, other: Db | None = None) -> None:
            self.other = other

        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def peek(self) -> int:
            assert self.other is not None
            return await self.other.double()

        @picante.query
        async def double(self) -> int:
            return 2 * await self.n()

    inner = Db()
    inner.n.set(1)
    outer = Db(inner)
    assert await outer.peek() == 2
    assert await inner.double() == 2
