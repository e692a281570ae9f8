"""picante.gather: asyncio.gather's contract, with memo hits answered without a task."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

import picante
from picante._store import deps_of
from tests.helpers import until


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


TIMEOUT = 5


@picante.database
class Fan:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.tasks: dict[str, asyncio.Task[Any] | None] = {}
        self.gate: asyncio.Event | None = None

    @picante.input
    async def leaf(self, k: int) -> int:
        raise NotImplementedError

    @picante.query
    async def double(self, k: int) -> int:
        self.log.append(f"double({k})")
        self.tasks[f"double({k})"] = asyncio.current_task()
        if self.gate is not None:
            await self.gate.wait()
        return 2 * await self.leaf(k)

    @picante.query
    async def total(self, n: int) -> int:
        self.log.append(f"total({n})")
        self.tasks[f"total({n})"] = asyncio.current_task()
        return sum(await picante.gather(*(self.double(k) for k in range(n))))

    @picante.query
    async def safe_total(self, n: int) -> list[int | str]:
        results = await picante.gather(*(self.double(k) for k in range(n)), return_exceptions=True)
        return [r if isinstance(r, int) else type(r).__name__ for r in results]

    @picante.query
    async def loop(self) -> int:
        return sum(await picante.gather(self.loop(), self.double(0)))


@pytest.fixture
async def created_tasks() -> AsyncIterator[list[object]]:
    """The coroutines of every task created on the running loop while the test runs."""
    loop = asyncio.get_running_loop()
    made: list[object] = []
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    yield made
    loop.set_task_factory(previous)


def fan(n: int) -> Fan:
    db = Fan()
    for k in range(n):
        db.leaf.set(k, k)
    return db


async def test_results_in_order_and_each_body_once() -> None:
    db = fan(4)
    await db.double(1)
    db.log.clear()
    assert await db.total(4) == 2 * (0 + 1 + 2 + 3)
    assert db.log == ["total(4)", "double(0)", "double(2)", "double(3)"]


async def test_hits_take_no_task_and_misses_each_take_one(created_tasks: list[object]) -> None:
    db = fan(10)
    for k in range(7):
        await db.double(k)
    created_tasks.clear()

    async def outside() -> list[int]:
        return await picante.gather(*(db.double(k) for k in range(10)))

    assert await outside() == [2 * k for k in range(10)]
    # Three misses: three tasks, each resuming a handle; and, read from outside any query,
    # each evaluation has a task of its own, as without gather.
    names = sorted(getattr(coro, "__name__", "?") for coro in created_tasks)
    assert names == ["_lead"] * 3 + ["_resume"] * 3
    created_tasks.clear()
    assert await outside() == [2 * k for k in range(10)]
    assert created_tasks == []


async def test_a_miss_runs_in_a_task_of_its_own() -> None:
    """No body starts in the caller's task: `asyncio.timeout`, TaskGroups work as usual."""
    db = fan(2)
    await db.total(2)
    assert db.tasks["double(0)"] is not db.tasks["total(2)"]
    assert db.tasks["double(1)"] is not db.tasks["double(0)"]


async def test_reads_are_dependencies_hits_and_misses_alike() -> None:
    db = fan(3)
    await db.double(0)  # a hit in total(3)'s gather; the two others are misses
    assert await db.total(3) == 6
    memo = vars(db)["__picante__"].tables["total"][3,]
    assert [(dep.ingredient.name, dep.key) for dep in deps_of(memo)] == [
        ("double", (0,)),
        ("double", (1,)),
        ("double", (2,)),
    ]
    db.log.clear()
    db.leaf.set(0, 10)
    assert await db.total(3) == 26
    assert db.log == ["double(0)", "total(3)"]
    db.log.clear()
    db.leaf.set(2, 5)
    assert await db.total(3) == 32
    assert db.log == ["double(2)", "total(3)"]


async def test_errors_like_asyncio_gather() -> None:
    db = fan(2)  # leaf(2) is missing: double(2) raises MissingInputError
    assert await db.safe_total(3) == [0, 2, "MissingInputError"]
    with pytest.raises(picante.MissingInputError):
        await db.total(3)
    # Now double(2)'s error is memoized: answered by the slow path, in a task, again.
    assert await db.safe_total(3) == [0, 2, "MissingInputError"]


async def test_an_input_read_fails_at_once() -> None:
    db = fan(1)

    async def read() -> tuple[int, int]:
        return await picante.gather(db.double(0), db.leaf(5))

    with pytest.raises(picante.MissingInputError, match="leaf"):
        await read()
    results = await picante.gather(db.leaf(0), db.leaf(5), return_exceptions=True)
    assert results[0] == 0
    assert isinstance(results[1], picante.MissingInputError)


async def test_the_same_awaitable_twice_runs_once() -> None:
    db = fan(1)
    child = db.double(0)
    other = asyncio.sleep(0, result="slept")
    assert await picante.gather(child, other, child, other) == [0, "slept", 0, "slept"]
    assert db.log == ["double(0)"]


async def test_other_awaitables_go_to_tasks() -> None:
    db = fan(2)

    async def helper() -> int:
        return await db.double(1) + 1

    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    future.set_result(7)
    # Typed like `asyncio.gather`: a tuple of each awaitable's type (a list at run time).
    assert list(await picante.gather(helper(), future, db.double(0))) == [3, 7, 0]


async def test_cancelling_gather_cancels_the_children_still_running() -> None:
    """Inside a query a miss runs inline in its child's task: cancelling gather cancels it."""
    children: list[asyncio.Task[Any] | None] = []

    @picante.database
    class Impatient(Fan):
        @picante.query
        async def impatient(self) -> int:
            waiter = asyncio.create_task(picante.gather(self.double(0), self.double(1)))
            await until(lambda: "double(1)" in self.log)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            children.append(self.tasks["double(1)"])
            return -1

    db = Impatient()
    db.leaf.set(0, 0)
    db.leaf.set(1, 1)
    db.gate = asyncio.Event()
    assert await asyncio.wait_for(db.impatient(), TIMEOUT) == -1
    (child,) = children
    assert child is not None
    await asyncio.wait_for(asyncio.wait([child]), TIMEOUT)
    assert child.cancelled()
    # Nothing was memoized for the cancelled children: they run again, to completion.
    db.gate.set()
    assert await asyncio.wait_for(db.double(1), TIMEOUT) == 2
    assert db.log == ["double(0)", "double(1)", "double(1)"]


async def test_from_outside_a_query_cancelling_spares_the_shared_evaluation() -> None:
    """As with any read from outside a query, the evaluation has a task of its own."""
    db = fan(2)
    db.gate = asyncio.Event()
    waiter = asyncio.create_task(picante.gather(db.double(0)))
    await until(lambda: "double(0)" in db.log)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, TIMEOUT)
    db.gate.set()
    assert await asyncio.wait_for(db.double(0), TIMEOUT) == 0
    assert db.log == ["double(0)"]


async def test_a_cycle_through_gather_is_a_cycle_error() -> None:
    db = fan(1)
    with pytest.raises(picante.CycleError):
        await asyncio.wait_for(db.loop(), TIMEOUT)


async def test_nothing_to_gather() -> None:
    assert await picante.gather() == []
