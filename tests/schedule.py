"""
A schedule-exploring event loop for tests: the Python counterpart of Salsa's shuttle.

`ScheduledLoop` is an ordinary selector event loop whose ready queue is perturbed by a
seeded random number generator, so that one test program runs under many interleavings
of its tasks, each reproducible from its seed:

* **Callback order.** Every callback scheduled from the loop thread (`call_soon`, which
  is also how the C-accelerated `asyncio.Task` schedules its steps and `asyncio.Future`
  its done callbacks) is inserted at a seed-chosen position of the ready queue instead of
  at its end. The callbacks one callback schedules keep their relative order (a transport's
  `connection_made` still precedes its first `data_received`, a future's done callbacks run
  in the order they were added), and a task has at most one step pending at a time, so each
  task's steps stay in causal order. Callbacks scheduled from other threads
  (`call_soon_threadsafe`), timers (`call_later`, `asyncio.timeout`) and I/O callbacks are
  appended as usual. Every queued callback runs within a bounded number of loop
  iterations, so nothing starves.
* **Garbage collection.** Before each callback, with probability `Schedule.gc_rate`, the
  loop runs `gc.collect()`: finalizers (`weakref.finalize`, `__del__`) run at seed-chosen
  points between callbacks instead of whenever the allocator decides.
* **Injected actions.** `ScheduledLoop.inject(action, within=n)` runs *action* on the loop
  thread between two callbacks, before one of the next *n* callbacks (the seed chooses
  which), or when the loop runs out of callbacks first, or at the latest when
  `run_until_complete` returns. Tests use it for "thread commits at chosen points": the
  action calls `in_thread` to set, remove, batch or snapshot from a worker thread while
  queries are suspended half-way.

Everything the loop chooses comes from one `random.Random(seed)`, and nothing depends on
`id()`, hashes or the clock, so the same seed and the same program give the same schedule.

Replaying a failure: a state machine draws its `Schedule` in an `@initialize` rule, so the
failing program hypothesis prints starts with a line such as

    state.start(schedule=Schedule(seed=4711, gc_rate=0.05))

followed by the failing steps. Rerunning pytest replays it first from hypothesis's example
database (`.hypothesis/`); to replay it elsewhere, paste the printed program into a test
(the `Schedule(...)` it prints is a valid expression: `from tests.schedule import
Schedule`), or fix the seed with `@example` / `run_state_machine_as_test`.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import gc
import heapq
import random
import threading
import time
from asyncio import events
from typing import TYPE_CHECKING, Any, TypeVar

from hypothesis import strategies as st


if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from contextvars import Context


__all__ = [
    "LivelockError",
    "OnLoop",
    "Schedule",
    "ScheduledLoop",
    "in_thread",
    "new_loop",
    "schedules",
]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How the checker perturbs one example."""

    seed: int
    """Drives every choice: the same seed and the same program give the same schedule."""
    gc_rate: float = 0.0
    """The probability of a `gc.collect()` before a callback."""

    def __str__(self) -> str:
        """Show the schedule as an expression that rebuilds it: `Schedule(seed=1, gc_rate=0.0)`."""
        return f"Schedule(seed={self.seed}, gc_rate={self.gc_rate})"

    __repr__ = __str__


def schedules() -> st.SearchStrategy[Schedule]:
    """Draw a schedule; seeds shrink toward 0 and collections toward none."""
    return st.builds(
        Schedule,
        seed=st.integers(0, 2**32 - 1),
        gc_rate=st.sampled_from([0.0, 0.002, 0.02]),
    )


class _Step(events.Handle):
    """A callback of a `ScheduledLoop`: counts itself and runs what is due before it."""

    __slots__ = ()

    def _run(self) -> None:
        loop: ScheduledLoop = self._loop  # type: ignore[attr-defined]
        loop.steps += 1
        if loop.steps == loop._stop_at:
            loop.stop()
        loop._floor = 0
        if loop._due and loop._due[0][0] <= loop.steps:
            loop._run_due(loop.steps)
        if loop._gc_rate and loop._rng.random() < loop._gc_rate:
            gc.collect()
        loop._since = time.monotonic()
        try:
            super()._run()  # type: ignore[misc]
        finally:
            loop._since = 0.0


class ScheduledLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose callback order, collections and injections follow a seed."""

    def __init__(self, schedule: Schedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.steps = 0
        """Callbacks run so far."""
        self._rng = random.Random(schedule.seed)
        self._gc_rate = schedule.gc_rate
        # The lowest ready-queue position the current callback may insert at next: what it
        # schedules keeps its own order.
        self._floor = 0
        # Injected actions: a heap of (step due, sequence number, action).
        self._due: list[tuple[int, int, Callable[[], None]]] = []
        self._injected = 0
        self.budget: int | None = None
        """
        At most this many callbacks per `run_until_complete` (`None`: no limit). Past it
        the loop stops and `run_until_complete` raises `AssertionError`: a livelock fails
        at once instead of spinning (and perhaps allocating) until a timeout.
        """
        self._stop_at = -1
        self.stall: float | None = None
        """
        At most this many seconds in one callback (`None`: no limit). Past it, a watchdog
        thread raises `LivelockError` inside the callback, and `run_until_complete` raises
        `AssertionError`: a loop that never yields (which no `asyncio.timeout` can end)
        fails the example instead of spinning, and allocating, for ever.
        """
        self._since = 0.0
        self._fired = False
        # The watchdog's thread (one per loop, started by the first run with a `stall`),
        # and the thread running the loop, which it interrupts (0: none).
        self._shut = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._runner = 0

    def _watch(self) -> None:
        """Raise `LivelockError` in the loop's thread when one callback runs over `stall` s."""
        while not self._shut.wait(0.25):
            since, stall, runner = self._since, self.stall, self._runner
            if since and runner and stall is not None and time.monotonic() - since > stall:
                self._fired = True
                self._since = 0.0
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(runner), ctypes.py_object(LivelockError)
                )

    def close(self) -> None:
        self._shut.set()
        super().close()

    def _call_soon(
        self, callback: Callable[..., object], args: tuple[Any, ...], context: Context | None
    ) -> events.Handle:
        handle = _Step(callback, args, self, context)
        if handle._source_traceback:  # type: ignore[attr-defined]
            del handle._source_traceback[-1]  # type: ignore[attr-defined]
        ready: Any = self._ready  # type: ignore[attr-defined]
        if threading.get_ident() != self._thread_id or self._floor > len(ready):  # type: ignore[attr-defined]
            ready.append(handle)
            return handle
        position = self._rng.randint(self._floor, len(ready))
        ready.insert(position, handle)
        self._floor = position + 1
        return handle

    def inject(self, action: Callable[[], None], *, within: int = 20) -> None:
        """
        Run *action* on the loop thread between two callbacks.

        It runs before one of the next *within* callbacks (the seed chooses which), or
        earlier if the loop runs out of callbacks, or at the latest when
        `run_until_complete` returns.
        """
        self._injected += 1
        due = self.steps + self._rng.randint(1, max(within, 1))
        heapq.heappush(self._due, (due, self._injected, action))

    def _run_due(self, step: int | None) -> None:
        """Run the injected actions due at *step* (all of them for `None`), in order."""
        due = self._due
        while due and (step is None or due[0][0] <= step):
            _, _, action = heapq.heappop(due)
            action()

    def _run_once(self) -> None:
        if self._due and not self._ready:  # type: ignore[attr-defined]
            # Out of callbacks before the actions fell due: run them rather than idle.
            self._run_due(None)
        super()._run_once()  # type: ignore[misc]

    def run_until_complete(self, future: Any) -> Any:
        """
        Run as usual (within `budget` and `stall`); then run the injected actions that did
        not fall due.
        """
        budget = self.budget
        self._stop_at = -1 if budget is None else self.steps + budget
        if self.stall is not None and self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="livelock watchdog", daemon=True
            )
            self._watchdog.start()
        self._runner = threading.get_ident()
        stalled = f"a callback ran for more than {self.stall} s without yielding: a livelock"
        self._fired = False
        try:
            result = super().run_until_complete(future)
        except LivelockError:
            raise AssertionError(stalled) from None
        except RuntimeError as error:
            if self._fired:
                raise AssertionError(stalled) from error
            if budget is None or self.steps < self._stop_at:
                raise
            msg = f"the operation ran more than {budget} callbacks: a livelock?"
            raise AssertionError(msg) from None
        except BaseException as error:
            # What the interrupted callback's task failed, e.g. a caller's timeout.
            if self._fired:
                raise AssertionError(stalled) from error
            raise
        else:
            if self._fired:
                raise AssertionError(stalled)
            return result
        finally:
            self._runner = 0
            self._stop_at = -1
            self._run_due(None)


class LivelockError(BaseException):
    """
    Raised by `ScheduledLoop`'s watchdog inside a callback that ran too long. A
    `BaseException`, so that code under test does not catch it as an ordinary error.
    """


def new_loop(schedule: Schedule | None) -> asyncio.AbstractEventLoop:
    """Return a `ScheduledLoop` for *schedule*, or a plain `asyncio.new_event_loop()` for `None`."""
    if schedule is None:
        return asyncio.new_event_loop()
    return ScheduledLoop(schedule)


class OnLoop:
    """
    What a state machine that runs on its own event loop (`self.loop`, usually a
    `ScheduledLoop` from `new_loop`) needs to run steps on it, each within `timeout`.
    """

    loop: asyncio.AbstractEventLoop | None
    timeout: float = 5

    @property
    def scheduled(self) -> ScheduledLoop:
        """The machine's loop, as the `ScheduledLoop` it always is."""
        assert isinstance(self.loop, ScheduledLoop)
        return self.loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run *coro* on the machine's loop; fail the example if it takes over `timeout`."""
        timeout = self.timeout

        async def bounded() -> T:
            async with asyncio.timeout(timeout):
                return await coro

        assert self.loop is not None
        return self.loop.run_until_complete(bounded())


def in_thread(fn: Callable[[], T], *, timeout: float = 10) -> T:
    """
    Run *fn* on a fresh worker thread, join it, and return its result or re-raise its error.

    Used for thread commits: a set, remove, batch or snapshot made from another thread.

    Raises:
        AssertionError: The thread did not finish within *timeout* seconds.
    """
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as error:
            outcome.append((False, error))

    thread = threading.Thread(target=target, name="in_thread", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        msg = f"in_thread: {fn!r} did not finish within {timeout} s"
        raise AssertionError(msg)
    ok, result = outcome[0]
    if ok:
        return result  # type: ignore[no-any-return]
    raise result
