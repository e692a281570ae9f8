"""Events, revisions and watch: what is emitted, in which order, lag, threads, errors."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import TYPE_CHECKING

import pytest

import picante
from picante import (
    InputRemoved,
    InputSet,
    Lagged,
    QueryChanged,
    QueryInvalidated,
    RevisionBumped,
)
from picante._runtime import view_of
from picante._store import TraceExecuted, TraceInput, TraceRevision


if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from picante._store import TraceRecord


TIMEOUT = 5


@picante.database
class Site:
    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def words(self, path: str) -> int:
        return len((await self.source(path)).split())

    @picante.query
    async def total(self) -> int:
        return await self.words("a") + await self.words("b")


async def drain(stream: AsyncIterator[object], count: int) -> list[object]:
    return [await asyncio.wait_for(anext(stream), TIMEOUT) for _ in range(count)]


async def test_mutation_events_in_order() -> None:
    """A set yields InputSet, the transitive QueryInvalidated (cause named), RevisionBumped."""
    db = Site()
    db.source.set("a", "x y")
    db.source.set("b", "z")
    await db.total()
    stream = picante.events(db)
    db.source.set("a", "x y z")
    db.source.remove("b")
    assert await drain(stream, 8) == [
        InputSet(3, "source", ("a",)),
        QueryInvalidated(3, "words", ("a",), ("source", ("a",))),
        QueryInvalidated(3, "total", (), ("source", ("a",))),
        RevisionBumped(3),
        InputRemoved(4, "source", ("b",)),
        QueryInvalidated(4, "words", ("b",), ("source", ("b",))),
        QueryInvalidated(4, "total", (), ("source", ("b",))),
        RevisionBumped(4),
    ]
    await stream.aclose()


async def test_query_changed_only_when_the_value_differs() -> None:
    """QueryChanged follows a recompute with a new value; none on early cutoff or no-ops."""
    db = Site()
    db.source.set("a", "x y")
    db.source.set("b", "z")
    await db.total()
    stream = picante.events(db)
    db.source.set("a", "x y")  # no-op: nothing at all
    db.source.set("a", "p q")  # same word count: words('a') cut off
    await db.total()
    db.source.set("a", "p q r")
    await db.total()
    events = await drain(stream, 10)
    assert [e for e in events if isinstance(e, QueryChanged)] == [
        QueryChanged(4, "words", ("a",)),
        QueryChanged(4, "total", ()),
    ]
    assert [e for e in events if isinstance(e, RevisionBumped)] == [
        RevisionBumped(3),
        RevisionBumped(4),
    ]


async def test_lagging_subscriber_gets_lagged_and_continues() -> None:
    """A full buffer drops the oldest events and reports how many with Lagged."""
    db = Site()
    stream = picante.events(db, buffer=2)
    for n in range(5):
        db.source.set("a", str(n))
    assert await drain(stream, 3) == [
        Lagged(8),
        InputSet(5, "source", ("a",)),
        RevisionBumped(5),
    ]


async def test_events_from_another_thread_are_delivered() -> None:
    """A mutation on another thread wakes a subscriber waiting on the loop."""
    db = Site()
    stream = picante.events(db)
    waiting = asyncio.ensure_future(drain(stream, 2))
    await asyncio.sleep(0)
    thread = threading.Thread(target=db.source.set, args=("a", "far away"))
    thread.start()
    thread.join(TIMEOUT)
    assert await asyncio.wait_for(waiting, TIMEOUT) == [
        InputSet(1, "source", ("a",)),
        RevisionBumped(1),
    ]


async def test_aclose_ends_the_iteration_and_unsubscribes() -> None:
    """After aclose the stream ends, and the database has no listener left."""
    db = Site()
    stream = picante.events(db)
    await stream.aclose()
    db.source.set("a", "x")
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert vars(db)["__picante__"].listeners == []


async def test_streams_are_async_context_managers() -> None:
    """`async with` yields the stream itself and closes it at exit, as `aclose()` does."""
    db = Site()
    db.source.set("a", "x y")
    async with picante.events(db) as stream, picante.revisions(db) as revisions:
        db.source.set("a", "x")
        assert await drain(stream, 1) == [InputSet(2, "source", ("a",))]
        assert await asyncio.wait_for(anext(revisions), TIMEOUT) == 2
    async with picante.watch(db.words, "a") as values:
        assert await asyncio.wait_for(anext(values), TIMEOUT) == 1
    db.source.set("a", "x y z")
    for closed in (stream, revisions, values):
        with pytest.raises(StopAsyncIteration):
            await anext(closed)
    assert vars(db)["__picante__"].listeners == []


async def test_an_error_in_the_block_closes_the_stream() -> None:
    """Leaving the block by an exception closes the stream too, and lets the error through."""
    db = Site()
    with pytest.raises(KeyError):
        async with picante.events(db) as stream:
            raise KeyError
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert vars(db)["__picante__"].listeners == []


async def test_bad_buffer_is_refused() -> None:
    """buffer must be a positive int."""
    with pytest.raises(picante.UsageError, match="buffer"):
        picante.events(Site(), buffer=0)


async def test_revisions_yields_the_latest() -> None:
    """revisions() skips revisions made while nobody awaited, yielding the newest."""
    db = Site()
    revisions = picante.revisions(db)
    db.source.set("a", "1")
    db.source.set("a", "2")
    assert await asyncio.wait_for(anext(revisions), TIMEOUT) == 2
    db.source.set("a", "3")
    assert await asyncio.wait_for(anext(revisions), TIMEOUT) == 3


async def test_watch_yields_changes_and_survives_errors() -> None:
    """watch yields now, then each different value; an error raises once, then it goes on."""
    db = Site()
    db.source.set("a", "x y")
    db.source.set("b", "z")
    watcher = picante.watch(db.total)
    assert await asyncio.wait_for(anext(watcher), TIMEOUT) == 3
    step = asyncio.ensure_future(anext(watcher))
    await asyncio.sleep(0)
    db.source.set("a", "p q")  # equal total: nothing yielded
    await asyncio.sleep(0)
    assert not step.done()
    db.source.remove("b")
    with pytest.raises(picante.MissingInputError):
        await asyncio.wait_for(step, TIMEOUT)
    db.source.set("b", "one two")
    assert await asyncio.wait_for(anext(watcher), TIMEOUT) == 4
    await watcher.aclose()


async def test_watch_takes_the_key_as_the_query_does() -> None:
    """watch() passes its arguments on as given: keywords bind as in a call of the query."""
    db = Site()
    db.source.set("a", "x y")
    watcher = picante.watch(db.words, path="a")
    assert await asyncio.wait_for(anext(watcher), TIMEOUT) == 2
    db.source.set("a", "x y z")
    assert await asyncio.wait_for(anext(watcher), TIMEOUT) == 3
    await watcher.aclose()


async def test_watch_needs_a_bound_query() -> None:
    """watch() refuses anything but a bound query handle."""
    with pytest.raises(picante.UsageError, match=r"^watch\(\): expected a query of a database"):
        picante.watch(print)


def test_a_stream_left_waiting_when_the_loop_ends_costs_nothing_after() -> None:
    """After the loop shuts down mid-wait, later mutations raise nothing and reach no one."""
    db = Site()

    async def main() -> None:
        stream = picante.events(db)
        waiter = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        assert not waiter.done()

    asyncio.run(main())
    gc.collect()
    db.source.set("a", "after the loop")
    assert vars(db)["__picante__"].listeners == []


async def test_an_abandoned_stream_unsubscribes() -> None:
    """A stream nobody refers to any more is collected, stops listening, and goes at a commit."""
    db = Site()
    picante.events(db)
    picante.revisions(db)
    gc.collect()
    # The collector's callback only marks the subscriptions; the next commit removes them.
    listeners = vars(db)["__picante__"].listeners
    assert [subscription.active for subscription in listeners] == [False, False]
    db.source.set("a", "x")
    assert listeners == []


async def test_the_trace_hook_subscription_ends_with_its_block() -> None:
    """`View.subscribe` (what events, debug and testing listen with) ends with a `with` block."""
    db = Site()
    db.source.set("a", "x")
    view = view_of(db)
    records: list[TraceRecord] = []
    with view.subscribe(records.append) as subscription:
        assert view.listeners == [subscription]
        db.source.set("a", "x y")
        await db.words("a")
    db.source.set("a", "x y z")
    assert view.listeners == []
    assert [type(record) for record in records] == [TraceInput, TraceRevision, TraceExecuted]


def test_a_subscription_ends_with_its_owner() -> None:
    """Given an *owner*, a subscription is abandoned when the owner is collected."""
    db = Site()
    view = view_of(db)

    class Owner:
        pass

    owner = Owner()
    subscription = view.subscribe(lambda record: None, owner=owner)
    assert subscription.active
    del owner
    gc.collect()
    assert not subscription.active
    db.source.set("a", "x")
    assert view.listeners == []
