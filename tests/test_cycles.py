"""Cycles: within a task, through child tasks, between tasks. Never a deadlock."""

from __future__ import annotations

import asyncio
import pickle

import pytest

import picante


TIMEOUT = 5


async def test_self_cycle() -> None:
    """A query that awaits itself raises `CycleError` with a one-step path."""

    @picante.database
    class Db:
        @picante.query
        async def loop(self) -> int:
            return await self.loop()

    with pytest.raises(picante.CycleError) as info:
        await asyncio.wait_for(Db().loop(), TIMEOUT)
    assert info.value.path == (("loop", ()), ("loop", ()))
    assert str(info.value) == "cycle: loop() → loop()"


async def test_two_step_cycle_message() -> None:
    """The message shows the chain as calls, starting and ending with the same record."""

    @picante.database
    class Site:
        @picante.query
        async def words(self, path: str) -> int:
            return len(await self.page(path, "en"))

        @picante.query
        async def page(self, path: str, lang: str) -> str:
            return str(await self.words(path))

    with pytest.raises(picante.CycleError) as info:
        await asyncio.wait_for(Site().words("a"), TIMEOUT)
    assert str(info.value) == "cycle: words('a') → page('a', 'en') → words('a')"
    assert info.value.path == (("words", ("a",)), ("page", ("a", "en")), ("words", ("a",)))


async def test_cycle_error_pickles() -> None:
    """A `CycleError` survives a pickle round trip with its path and message."""
    error = picante.CycleError([("a", (1,)), ("a", (1,))])
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, str(copy)) == (error.path, str(error))


@pytest.mark.parametrize("spawn", ["gather", "taskgroup"])
async def test_cycle_through_child_tasks(spawn: str) -> None:
    """A cycle that runs through child tasks of a query is detected, not deadlocked."""

    @picante.database
    class Db:
        @picante.query
        async def a(self) -> int:
            if spawn == "gather":
                (value,) = await asyncio.gather(self.b())
                return value
            async with asyncio.TaskGroup() as group:
                task = group.create_task(self.b())
            return task.result()

        @picante.query
        async def b(self) -> int:
            return await self.a()

    with pytest.raises((picante.CycleError, ExceptionGroup)) as info:
        await asyncio.wait_for(Db().a(), TIMEOUT)
    error = info.value
    if isinstance(error, ExceptionGroup):
        (error,) = error.exceptions
    assert isinstance(error, picante.CycleError)
    assert [name for name, _ in error.path] == ["a", "b", "a"]


async def test_cycle_between_independent_tasks() -> None:
    """Two tasks whose evaluations wait on each other get `CycleError`, not a deadlock."""
    a_started, b_started = asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        @picante.query
        async def a(self) -> int:
            a_started.set()
            await b_started.wait()
            return await self.b() + 1

        @picante.query
        async def b(self) -> int:
            b_started.set()
            await a_started.wait()
            return await self.a() + 1

    db = Db()
    results = await asyncio.wait_for(
        asyncio.gather(db.a(), db.b(), return_exceptions=True), TIMEOUT
    )
    assert all(isinstance(result, picante.CycleError) for result in results)
    paths = {tuple(name for name, _ in result.path) for result in results}  # type: ignore[union-attr]
    assert paths <= {("a", "b", "a"), ("b", "a", "b")}


async def test_siblings_waiting_on_each_other() -> None:
    """Two children of one query that need each other form a cycle, reported as such."""
    left_started, right_started = asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        @picante.query
        async def parent(self) -> list[int]:
            return list(await asyncio.gather(self.left(), self.right()))

        @picante.query
        async def left(self) -> int:
            left_started.set()
            await right_started.wait()
            return await self.right()

        @picante.query
        async def right(self) -> int:
            right_started.set()
            await left_started.wait()
            return await self.left()

    with pytest.raises(picante.CycleError):
        await asyncio.wait_for(Db().parent(), TIMEOUT)


async def test_siblings_sharing_a_dependency_is_not_a_cycle() -> None:
    """Children of one query waiting on the same record are followers, not a cycle."""
    gate, started = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    @picante.database
    class Db:
        @picante.query
        async def parent(self) -> list[int]:
            return list(await asyncio.gather(self.left(), self.right(), self.shared()))

        @picante.query
        async def left(self) -> int:
            return await self.shared() + 1

        @picante.query
        async def right(self) -> int:
            value = await self.shared()
            return value + 2

        @picante.query
        async def shared(self) -> int:
            runs.append("shared")
            started.set()
            await gate.wait()
            return 10

    db = Db()
    task = asyncio.create_task(db.parent())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    gate.set()
    assert await asyncio.wait_for(task, TIMEOUT) == [11, 12, 10]
    assert runs == ["shared"]


async def test_cycle_memoized_then_broken(log: list[str]) -> None:
    """A cycle error is memoized for its revision; an input change can break the cycle."""

    @picante.database
    class Db:
        @picante.input
        async def recurse(self) -> bool: ...

        @picante.query
        async def a(self) -> int:
            log.append("a()")
            if await self.recurse():
                return await self.b()
            return 1

        @picante.query
        async def b(self) -> int:
            log.append("b()")
            return await self.a() + 1

    db = Db()
    db.recurse.set(True)
    with pytest.raises(picante.CycleError):
        await asyncio.wait_for(db.b(), TIMEOUT)
    with pytest.raises(picante.CycleError):
        await asyncio.wait_for(db.b(), TIMEOUT)
    assert log == ["b()", "a()"]
    db.recurse.set(False)
    assert await asyncio.wait_for(db.b(), TIMEOUT) == 2
