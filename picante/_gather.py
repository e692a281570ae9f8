"""
`picante.gather`: `asyncio.gather` that answers memo hits without a task.

`asyncio.gather` wraps every coroutine in a task, even one that returns at its first
step because its memo is valid: a fan-out of a thousand hits pays for a thousand tasks.
`gather` takes the first step of each query or input handle's coroutine itself, in a
copy of the caller's context (what a task would run it in) with `PROBING` set. A hit
returns at that step, having recorded its read in the caller's frame like any read; a
handle that is no hit pauses before doing anything (`Pause`), and the rest of it runs in
a task with that same context. Every other awaitable goes to a task, as with
`asyncio.gather`; so no code but the handle's own hit check ever runs in the caller's
task.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from ._frames import PAUSED, PROBING
from ._handles import HANDLE_CODES


if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine, Generator


__all__ = ["gather"]

T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T = TypeVar("T")


@overload
async def gather(
    a1: Awaitable[T1], /, *, return_exceptions: Literal[False] = False
) -> tuple[T1]: ...
@overload
async def gather(
    a1: Awaitable[T1], a2: Awaitable[T2], /, *, return_exceptions: Literal[False] = False
) -> tuple[T1, T2]: ...
@overload
async def gather(
    a1: Awaitable[T1],
    a2: Awaitable[T2],
    a3: Awaitable[T3],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3]: ...
@overload
async def gather(
    a1: Awaitable[T1],
    a2: Awaitable[T2],
    a3: Awaitable[T3],
    a4: Awaitable[T4],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3, T4]: ...
@overload
async def gather(
    a1: Awaitable[T1],
    a2: Awaitable[T2],
    a3: Awaitable[T3],
    a4: Awaitable[T4],
    a5: Awaitable[T5],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3, T4, T5]: ...
@overload
async def gather(*aws: Awaitable[T], return_exceptions: Literal[False] = False) -> list[T]: ...
@overload
async def gather(
    *aws: Awaitable[T], return_exceptions: Literal[True]
) -> list[T | BaseException]: ...
async def gather(*aws: Awaitable[Any], return_exceptions: bool = False) -> Any:
    """
    Run *aws* concurrently and return their results in order, like `asyncio.gather`;
    but a query or input of a database whose memo is valid (or an input) is answered at
    once, with no task.

    Inside a query, the reads are recorded exactly as with `asyncio.gather` (each child
    runs in a copy of the caller's context). Only the children that are no hit run in
    tasks of their own; a fan-out that is mostly hits costs about as much as a loop of
    awaits, and one that is mostly misses about as much as `asyncio.gather`.

    The contract is `asyncio.gather`'s: the same awaitable given twice runs once; with
    *return_exceptions*, exceptions are results; without, the first exception propagates
    and the other children go on running; cancelling `gather` cancels the children still
    running. A child that fails at once (a missing input, an unhashable key) fails before
    any other child's, whatever their order.

    Returns:
        The results, in the order of *aws*. Type checkers see the type of each one, as
        with `asyncio.gather`: `a, b = await picante.gather(db.words(p), db.total())`.
    """
    results: list[Any] = [None] * len(aws)
    pending: list[tuple[int, asyncio.Future[Any]]] = []
    first: dict[int, int] = {}  # id of an awaitable -> its first index
    again: list[tuple[int, int]] = []
    error: BaseException | None = None
    loop = asyncio.get_running_loop()
    # One context for every first step: a copy of the caller's (what a task would run
    # the child in), probing. A hit changes nothing in it; a pause turns probing off in
    # it, and the child's task gets a copy of it as it is then.
    probe = contextvars.copy_context()
    probe.run(PROBING.set, True)
    child: Any  # an awaitable: `__class__` below, not `type()`, keeps it `Any` (no narrowing)
    for index, child in enumerate(aws):
        seen = first.setdefault(id(child), index)
        if seen != index:
            again.append((index, seen))
            continue
        if child.__class__ is not types.CoroutineType or id(child.cr_code) not in HANDLE_CODES:
            pending.append((index, asyncio.ensure_future(child)))
            continue
        try:
            step = probe.run(child.send, None)
        except StopIteration as stop:
            results[index] = stop.value
            continue
        except Exception as exc:  # noqa: BLE001 - a child's error, as gather reports it
            if return_exceptions:
                results[index] = exc
            elif error is None:
                error = exc
            continue
        # A handle's first step either returns or pauses: nothing else yields before it.
        assert step is PAUSED, step
        resumed = cast("Coroutine[Any, Any, Any]", _resume(child))
        pending.append((index, loop.create_task(resumed, context=probe.copy())))
        probe.run(PROBING.set, True)
    if error is not None:
        if pending:
            # Left running, as `asyncio.gather` leaves its other children; their outcomes
            # are collected (and their errors marked as retrieved) by this gather.
            asyncio.gather(*(future for _, future in pending), return_exceptions=True)
        raise error
    if pending:
        outcomes = await asyncio.gather(
            *(future for _, future in pending), return_exceptions=return_exceptions
        )
        for (index, _), outcome in zip(pending, outcomes, strict=True):
            results[index] = outcome
    for index, seen in again:
        results[index] = results[seen]
    return results


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, T]) -> Generator[Any, None, T]:
    """Go on with a handle's coroutine paused at `PAUSED`, in the task this drives."""
    return (yield from coroutine)  # type: ignore[no-any-return]
