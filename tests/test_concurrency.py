"""Concurrency: single flight, cancellation, child tasks. Ordered by events, never sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import picante
from tests.helpers import until


TIMEOUT = 5


def gated_db(log: list[str], gate: asyncio.Event, started: asyncio.Event) -> Any:
    @picante.database
    class Db:
        @picante.input
        async def n(self, k: int) -> int: ...

        @picante.query
        async def slow(self, k: int) -> int:
            log.append(f"slow({k})")
            started.set()
            await gate.wait()
            return await self.n(k) * 10

        @picante.query
        async def outer(self, k: int) -> int:
            return await self.slow(k) + 1

    return Db()


async def test_single_flight_many_tasks(log: list[str]) -> None:
    """Many tasks awaiting one cold key share one evaluation."""
    gate, started = asyncio.Event(), asyncio.Event()
    db = gated_db(log, gate, started)
    db.n.set(1, 4)
    tasks = [asyncio.create_task(db.slow(1)) for _ in range(50)]
    await asyncio.wait_for(started.wait(), TIMEOUT)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT) == [40] * 50
    assert log == ["slow(1)"]


async def test_single_flight_from_inside_queries(log: list[str]) -> None:
    """Queries that need the same record concurrently share one evaluation of it."""
    gate, started = asyncio.Event(), asyncio.Event()
    db = gated_db(log, gate, started)
    db.n.set(1, 4)

    @picante.database
    class Fan(type(db)):  # type: ignore[misc]
        @picante.query
        async def both(self) -> list[int]:
            return list(await asyncio.gather(self.outer(1), self.slow(1), self.outer(1)))

    fan = Fan()
    fan.n.set(1, 4)
    task = asyncio.create_task(fan.both())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    gate.set()
    assert await asyncio.wait_for(task, TIMEOUT) == [41, 40, 41]
    assert log == ["slow(1)"]


async def test_different_keys_run_concurrently(log: list[str]) -> None:
    """Evaluations of different keys interleave: each may wait for the other's progress."""
    first, second = asyncio.Event(), asyncio.Event()

    @picante.database
    class Db:
        @picante.query
        async def ping(self, k: int) -> int:
            log.append(f"ping({k})")
            if k == 1:
                first.set()
                await second.wait()
            else:
                await first.wait()
                second.set()
            return k

    db = Db()
    assert await asyncio.wait_for(asyncio.gather(db.ping(1), db.ping(2)), TIMEOUT) == [1, 2]
    assert sorted(log) == ["ping(1)", "ping(2)"]


async def test_cancelled_waiter_spares_the_evaluation(log: list[str]) -> None:
    """Cancelling one waiter cancels neither the evaluation nor the other waiters."""
    gate, started = asyncio.Event(), asyncio.Event()
    db = gated_db(log, gate, started)
    db.n.set(1, 4)
    doomed = asyncio.create_task(db.slow(1))
    survivor = asyncio.create_task(db.slow(1))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    gate.set()
    assert await asyncio.wait_for(survivor, TIMEOUT) == 40
    assert log == ["slow(1)"]


async def test_cancelled_only_waiter_memoizes_nothing_as_failure(log: list[str]) -> None:
    """When the only waiter is cancelled, the evaluation finishes and a later call reuses it."""
    gate, started = asyncio.Event(), asyncio.Event()
    db = gated_db(log, gate, started)
    db.n.set(1, 4)
    doomed = asyncio.create_task(db.slow(1))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    gate.set()
    assert await asyncio.wait_for(db.slow(1), TIMEOUT) == 40
    assert log == ["slow(1)"]


async def test_cancelled_inline_evaluation_is_retried(log: list[str]) -> None:
    """
    An evaluation cancelled with the task that ran it inline is restarted for its other
    waiters, and no failure is memoized.
    """
    gate = asyncio.Event()
    started = asyncio.Event()
    follower_waiting = asyncio.Event()

    @picante.database
    class Db:
        @picante.query
        async def slow(self) -> int:
            log.append("slow()")
            started.set()
            await gate.wait()
            return 7

        @picante.query
        async def impatient(self) -> int:
            child = asyncio.create_task(self.slow())  # runs slow() inline in the child
            await started.wait()
            await follower_waiting.wait()
            child.cancel()
            with pytest.raises(asyncio.CancelledError):
                await child
            return -1

    db = Db()
    outer = asyncio.create_task(db.impatient())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    follower = asyncio.create_task(db.slow())
    cell = db.__picante__.tables["slow"][()]
    await until(lambda: bool(cell.flight and cell.flight.followers))
    follower_waiting.set()
    assert await asyncio.wait_for(outer, TIMEOUT) == -1
    gate.set()
    assert await asyncio.wait_for(follower, TIMEOUT) == 7
    assert log == ["slow()", "slow()"]


async def test_child_task_reads_belong_to_parent(log: list[str]) -> None:
    """Reads made in `gather` and `TaskGroup` children are dependencies of the query."""

    @picante.database
    class Db:
        @picante.input
        async def n(self, k: int) -> int: ...

        @picante.query
        async def gathered(self) -> int:
            log.append("gathered()")
            return sum(await asyncio.gather(self.n(1), self.n(2)))

        @picante.query
        async def grouped(self) -> int:
            log.append("grouped()")
            async with asyncio.TaskGroup() as group:
                first = group.create_task(self.n(3))
                second = group.create_task(self.n(4))
            return first.result() + second.result()

    db = Db()
    for k in (1, 2, 3, 4):
        db.n.set(k, k)
    assert (await db.gathered(), await db.grouped()) == (3, 7)
    db.n.set(2, 20)
    db.n.set(4, 40)
    assert (await db.gathered(), await db.grouped()) == (21, 43)
    assert log == ["gathered()", "grouped()", "gathered()", "grouped()"]


async def test_create_task_of_cached_call() -> None:
    """A call is a real coroutine, so it can be handed to `create_task` even when cached."""

    @picante.database
    class Db:
        @picante.query
        async def one(self) -> int:
            return 1

    db = Db()
    assert await db.one() == 1
    async with asyncio.TaskGroup() as group:
        task = group.create_task(db.one())
    assert task.result() == 1


async def test_query_raising_cancelled_error_is_memoized(log: list[str]) -> None:
    """A query that raises `CancelledError` without being cancelled fails like any error."""

    @picante.database
    class Db:
        @picante.query
        async def victim(self) -> int:
            log.append("victim()")
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            future.cancel()
            return await future

    db = Db()
    for _ in range(2):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(db.victim(), TIMEOUT)
    assert log == ["victim()"]


async def test_walks_waiting_on_one_flight_execute_a_shared_memo_once(log: list[str]) -> None:
    """Two revalidations that both wait on a dependency's evaluation run their common memo once."""
    gate, started = asyncio.Event(), asyncio.Event()
    gated = [False]

    @picante.database
    class Db:
        @picante.input
        async def src(self) -> int: ...

        @picante.query
        async def value(self) -> int:
            log.append("value()")
            if gated[0]:
                started.set()
                await gate.wait()
            return await self.src()

        @picante.query
        async def shared(self) -> int:
            log.append("shared()")
            return await self.value() + 1

        @picante.query
        async def left(self) -> int:
            return await self.shared() * 2

        @picante.query
        async def right(self) -> int:
            return await self.shared() * 3

    db = Db()
    db.src.set(1)
    assert (await db.left(), await db.right()) == (4, 6)
    log.clear()
    db.src.set(2)
    gated[0] = True
    first = asyncio.create_task(db.value())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    # Both walks reach `shared`, find `value` in flight and wait for it.
    walks = [asyncio.create_task(db.left()), asyncio.create_task(db.right())]
    flight = db.__picante__.tables["value"][()].flight
    await until(lambda: len(flight.followers or ()) == 3)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, *walks), TIMEOUT) == [2, 6, 9]
    assert log == ["value()", "shared()"]


async def test_task_outliving_its_query_reads_at_the_query_revision(log: list[str]) -> None:
    """A task a query leaves running still reads the inputs as they were for that query."""
    gate = asyncio.Event()
    spawned: list[asyncio.Task[int]] = []

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def late(self) -> int:
            log.append("late()")
            await gate.wait()
            return await self.n()

        @picante.query
        async def spawner(self) -> int:
            spawned.append(asyncio.get_running_loop().create_task(self.late()))
            return await self.n()

    db = Db()
    db.n.set(1)
    assert await db.spawner() == 1
    await until(lambda: log == ["late()"])
    # The spawner has finished; the orphan task's frame alone keeps revision 1 readable.
    db.n.set(2)
    db.n.set(3)
    gate.set()
    assert await asyncio.wait_for(spawned[0], TIMEOUT) == 1
    assert await db.spawner() == 3
