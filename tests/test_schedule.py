"""Tests of the schedule-exploring event loop of `tests/schedule.py`."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import given, settings

from tests.schedule import Schedule, ScheduledLoop, in_thread, new_loop, schedules


if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

T = TypeVar("T")

TIMEOUT = 5


def run(schedule: Schedule | None, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` to completion on a fresh loop for *schedule*, with a deadlock timeout."""
    loop = new_loop(schedule)

    async def bounded() -> T:
        async with asyncio.timeout(TIMEOUT):
            return await main()

    try:
        return loop.run_until_complete(bounded())
    finally:
        loop.close()


def interleaving(schedule: Schedule | None, tasks: int = 6, steps: int = 4) -> list[int]:
    """Run *tasks* tasks that each append their number *steps* times, yielding in between."""
    order: list[int] = []

    async def worker(n: int) -> None:
        for _ in range(steps):
            order.append(n)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(worker(n) for n in range(tasks)))

    run(schedule, main)
    return order


def test_new_loop_without_schedule_is_plain() -> None:
    """Without a schedule, `new_loop` returns a plain loop that runs tasks round-robin."""
    loop = new_loop(None)
    try:
        assert not isinstance(loop, ScheduledLoop)
    finally:
        loop.close()
    assert interleaving(None, tasks=3, steps=2) == [0, 1, 2, 0, 1, 2]


def test_seeds_change_the_interleaving() -> None:
    """Different seeds run the same program in many different interleavings."""
    orders = {tuple(interleaving(Schedule(seed))) for seed in range(20)}
    assert len(orders) >= 15
    assert tuple(interleaving(None)) not in orders or len(orders) > 1


def test_same_seed_same_interleaving() -> None:
    """The same seed reproduces the interleaving exactly, also after other loops ran."""
    first = interleaving(Schedule(1234, gc_rate=0.1))
    interleaving(Schedule(99))
    assert interleaving(Schedule(1234, gc_rate=0.1)) == first


def test_each_task_keeps_its_own_order() -> None:
    """A task's steps run in program order whatever the schedule: only tasks interleave."""
    for seed in range(10):
        order: list[tuple[int, int]] = []

        async def worker(n: int, order: list[tuple[int, int]] = order) -> None:
            for step in range(5):
                order.append((n, step))
                await asyncio.sleep(0)

        async def main(worker: Callable[[int], Any] = worker) -> None:
            await asyncio.gather(*(worker(n) for n in range(4)))

        run(Schedule(seed), main)
        for n in range(4):
            assert [step for m, step in order if m == n] == list(range(5))


def test_callbacks_of_one_callback_keep_their_order() -> None:
    """Callbacks scheduled by one callback run in the order it scheduled them."""
    for seed in range(10):
        seen: list[int] = []

        async def main(seen: list[int] = seen) -> None:
            loop = asyncio.get_running_loop()
            done = asyncio.Event()
            for n in range(5):
                loop.call_soon(seen.append, n)
            loop.call_soon(done.set)
            await done.wait()

        run(Schedule(seed), main)
        assert seen == list(range(5))


@settings(max_examples=30)
@given(schedule=schedules())
def test_asyncio_primitives_work(schedule: Schedule) -> None:
    """gather, TaskGroup, Event, Queue and Lock give their usual results under any schedule."""

    async def main() -> list[object]:
        results: list[object] = []
        results.append(await asyncio.gather(*(asyncio.sleep(0, n) for n in range(5))))

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(asyncio.sleep(0, n * n)) for n in range(4)]
        results.append([task.result() for task in tasks])

        event = asyncio.Event()
        waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
        event.set()
        results.append(await asyncio.gather(*waiters))

        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)

        async def produce() -> None:
            for n in range(6):
                await queue.put(n)

        producer = asyncio.create_task(produce())
        results.append([await queue.get() for _ in range(6)])
        await producer

        lock = asyncio.Lock()
        inside: list[int] = []

        async def critical(n: int) -> None:
            async with lock:
                inside.append(n)
                await asyncio.sleep(0)
                assert inside[-1] == n

        await asyncio.gather(*(critical(n) for n in range(4)))
        results.append(sorted(inside))
        return results

    assert run(schedule, main) == [
        [0, 1, 2, 3, 4],
        [0, 1, 4, 9],
        [True, True, True],
        [0, 1, 2, 3, 4, 5],
        [0, 1, 2, 3],
    ]


@settings(max_examples=20)
@given(schedule=schedules())
def test_timeout_and_cancellation_work(schedule: Schedule) -> None:
    """Timeouts fire, cancelled tasks raise CancelledError and TaskGroup cancels siblings."""

    async def main() -> None:
        never = asyncio.Event()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await never.wait()

        task = asyncio.create_task(never.wait())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async def boom() -> None:
            await asyncio.sleep(0)
            raise ValueError

        with pytest.raises(ExceptionGroup):
            async with asyncio.TaskGroup() as group:
                sibling = group.create_task(never.wait())
                group.create_task(boom())
        assert sibling.cancelled()

    run(schedule, main)


@settings(max_examples=20)
@given(schedule=schedules())
def test_call_soon_threadsafe_from_a_thread(schedule: Schedule) -> None:
    """A worker thread can wake the loop with call_soon_threadsafe."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        thread = threading.Thread(target=loop.call_soon_threadsafe, args=(future.set_result, 7))
        thread.start()
        try:
            return await future
        finally:
            thread.join(TIMEOUT)

    assert run(schedule, main) == 7


@settings(max_examples=30)
@given(schedule=schedules())
def test_injected_actions_run_once_between_callbacks(schedule: Schedule) -> None:
    """Each injected action runs exactly once, on the loop thread, outside any callback."""
    runs: list[tuple[int, int]] = []
    start: list[int] = []
    inside: list[bool] = [False]

    async def worker() -> None:
        for _ in range(10):
            inside[0] = True
            await asyncio.sleep(0)
            inside[0] = False

    def action(n: int) -> Callable[[], None]:
        def act() -> None:
            assert threading.current_thread() is threading.main_thread()
            assert asyncio.current_task(loop) is None, "ran inside a task step"
            runs.append((n, loop.steps))

        return act

    loop = new_loop(schedule)
    assert isinstance(loop, ScheduledLoop)
    try:

        async def main() -> None:
            start.append(loop.steps)
            for n in range(8):
                loop.inject(action(n), within=1 + n * 5)
            await asyncio.gather(*(worker() for _ in range(3)))

        loop.run_until_complete(main())
        loop.inject(action(99))  # the loop stops before it falls due: run at the end
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert sorted(n for n, _ in runs) == [*range(8), 99]
    for n, step in runs:
        if n < 8:
            assert start[0] < step <= start[0] + 1 + n * 5


def test_injection_points_depend_on_the_seed() -> None:
    """The step before which an action runs is chosen by the seed, reproducibly."""

    def point(seed: int) -> int:
        loop = ScheduledLoop(Schedule(seed))
        seen: list[int] = []

        async def main() -> None:
            loop.inject(lambda: seen.append(loop.steps), within=30)
            for _ in range(40):
                await asyncio.sleep(0)

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
        return seen[0]

    points = [point(seed) for seed in range(10)]
    assert len(set(points)) > 3
    assert points == [point(seed) for seed in range(10)]


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """Count the garbage collections that start while the test runs."""
    starts: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            starts.append(1)

    gc.callbacks.append(callback)
    try:
        yield starts
    finally:
        gc.callbacks.remove(callback)


def test_gc_rate_collects(collections: list[int]) -> None:
    """With gc_rate > 0 the loop runs full collections between callbacks; with 0 it does not."""
    # Frozen, what the test session holds is not walked: each collection takes microseconds
    # instead of a tenth of a second (which, 50 times over, hit the deadlock timeout).
    gc.freeze()
    try:
        interleaving(Schedule(5, gc_rate=0.0), tasks=4, steps=25)
        assert len(collections) == 0
        interleaving(Schedule(5, gc_rate=0.5), tasks=4, steps=25)
    finally:
        gc.unfreeze()
    assert 20 < len(collections) < 90


def test_in_thread_returns_and_reraises() -> None:
    """`in_thread` runs on another thread, returns its result and re-raises its error."""
    assert in_thread(threading.get_ident) != threading.get_ident()

    def fail() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        in_thread(fail)


def test_in_thread_times_out() -> None:
    """`in_thread` fails instead of hanging when the thread does not finish."""
    release = threading.Event()
    try:
        with pytest.raises(AssertionError, match="did not finish"):
            in_thread(release.wait, timeout=0.05)
    finally:
        release.set()


def test_schedule_shows_a_replayable_expression() -> None:
    """A schedule prints as the expression that rebuilds it."""
    schedule = Schedule(seed=123, gc_rate=0.05)
    assert str(schedule) == repr(schedule) == "Schedule(seed=123, gc_rate=0.05)"
    assert eval(repr(schedule), {"Schedule": Schedule}) == schedule
