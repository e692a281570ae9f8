"""
Runtime events: `picante.events(db)`, `picante.revisions(db)` and `picante.watch(db.q, *key)`.

Each subscription is a listener on the view's trace hook (`View.subscribe`) that turns trace
records into frozen event records and puts them in a bounded buffer of its own. Commits
may run on any thread: a listener only appends under a lock and wakes the waiting
iterator on its event loop with `call_soon_threadsafe`. A subscriber that falls behind
loses the oldest events and is told how many with `Lagged(missed)`. Subscriptions hold
their view weakly the other way round: an iterator nobody refers to any more unsubscribes
when it is collected, and a database with no subscriber builds no event at all.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeAlias, TypeVar, final

import attrs

from ._errors import UsageError, describe
from ._runtime import view_of
from ._store import TraceInput, TraceInvalidated, TraceRevision


if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from types import TracebackType
    from typing import Self

    from ._runtime import View
    from ._store import Revision, TraceRecord


__all__ = [
    "Event",
    "EventStream",
    "InputRemoved",
    "InputSet",
    "Lagged",
    "QueryChanged",
    "QueryHandle",
    "QueryInvalidated",
    "RevisionBumped",
    "RevisionStream",
    "Watch",
    "events",
    "public_event",
    "revisions",
    "watch",
]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

DEFAULT_BUFFER = 1024


@final
@attrs.frozen
class RevisionBumped:
    """A mutation (or batch) of the database produced *revision*."""

    revision: Revision


@final
@attrs.frozen
class InputSet:
    """Input *ingredient* at *key* was set to a new value at *revision*."""

    revision: Revision
    ingredient: str
    key: tuple[object, ...]


@final
@attrs.frozen
class InputRemoved:
    """Input *ingredient* at *key* was removed at *revision*."""

    revision: Revision
    ingredient: str
    key: tuple[object, ...]


@final
@attrs.frozen
class QueryInvalidated:
    """
    The memo of *ingredient* at *key* read *cause*, an input changed at *revision*.

    Emitted for every memo that read the input, directly or through other queries; the memo
    is revalidated when next read (and may turn out unchanged).
    """

    revision: Revision
    ingredient: str
    key: tuple[object, ...]
    cause: tuple[str, tuple[object, ...]]


@final
@attrs.frozen
class QueryChanged:
    """A recomputation of *ingredient* at *key* produced a different outcome at *revision*."""

    revision: Revision
    ingredient: str
    key: tuple[object, ...]


@final
@attrs.frozen
class Lagged:
    """The subscriber fell behind: *missed* events were dropped (the oldest ones)."""

    missed: int


Event: TypeAlias = (
    RevisionBumped | InputSet | InputRemoved | QueryInvalidated | QueryChanged | Lagged
)
"""Every record `picante.events` yields."""


def public_event(record: TraceRecord) -> Event | None:
    """The public event of a trace record, if it has one."""
    if isinstance(record, TraceRevision):
        return RevisionBumped(record.revision)
    if isinstance(record, TraceInput):
        kind = InputRemoved if record.removed else InputSet
        return kind(record.revision, record.ingredient, record.key)
    if isinstance(record, TraceInvalidated):
        return QueryInvalidated(record.revision, record.ingredient, record.key, record.cause)
    if record.changed and not record.first:
        return QueryChanged(record.revision, record.ingredient, record.key)
    return None


class _Channel(Generic[T]):
    """A buffer filled from any thread and drained by one iterator on an event loop."""

    def __init__(self, capacity: int) -> None:
        self.items: collections.deque[T] = collections.deque()
        self.capacity = capacity
        self.missed = 0
        self.lock = threading.Lock()
        self.waiter: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def put(self, item: T) -> None:
        with self.lock:
            if len(self.items) >= self.capacity:
                self.items.popleft()
                self.missed += 1
            self.items.append(item)
            self._wake()

    def _wake(self) -> None:
        waiter, loop = self.waiter, self.loop
        if waiter is None or loop is None:
            return
        self.waiter = None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            if not waiter.done():
                waiter.set_result(None)
        else:
            # Another thread (or loop): resolve the future on its own loop.
            loop.call_soon_threadsafe(_resolve, waiter)

    async def wait(self) -> None:
        """Wait until an item arrives or the channel closes."""
        loop = asyncio.get_running_loop()
        with self.lock:
            if self.items or self.missed or self.closed:
                return
            self.loop = loop
            self.waiter = waiter = loop.create_future()
        await waiter

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._wake()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _ClosedAtExit:
    """`async with stream:` gives the stream and closes it (`aclose()`) when the block ends."""

    __slots__ = ()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


@final
class EventStream(_ClosedAtExit):
    """
    The async iterator `picante.events(db)` returns: one subscriber's events, in order.

    Subscribed from creation on: events of mutations made after `events(db)` returned
    are delivered even if iteration starts later. End it with `aclose()`, or use it as an
    async context manager (`async with picante.events(db) as stream:`), which closes it
    at exit (or let it be collected); a closed stream ends its iteration.
    """

    def __init__(self, view: View, buffer: int) -> None:
        channel: _Channel[Event] = _Channel(buffer)
        self._channel = channel

        def listener(record: TraceRecord) -> None:
            event = public_event(record)
            if event is not None:
                channel.put(event)

        # Collected without `aclose()`: it stops delivering.
        self._subscription = view.subscribe(listener, owner=self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        channel = self._channel
        while True:
            with channel.lock:
                if channel.missed:
                    missed, channel.missed = channel.missed, 0
                    return Lagged(missed)
                if channel.items:
                    return channel.items.popleft()
                if channel.closed:
                    raise StopAsyncIteration
            await channel.wait()

    async def aclose(self) -> None:
        """Unsubscribe; the iteration ends (events already buffered are dropped)."""
        self._subscription.cancel()
        with self._channel.lock:
            self._channel.items.clear()
            self._channel.missed = 0
        self._channel.close()


def events(db: object, *, buffer: int = DEFAULT_BUFFER) -> EventStream:
    """
    Subscribe to *db*'s runtime events; return an async iterator over them.

    Yields `RevisionBumped`, `InputSet` and `InputRemoved` for every effective mutation
    (no-ops yield nothing), `QueryInvalidated` for every memo that read a changed input,
    directly or through other queries (once per commit, with the first changed input it
    read as `cause`), and `QueryChanged`
    when a recomputation produced a different outcome (never on early cutoff, never for a
    first computation). Within a commit, the order is: each changed input followed by the
    memos it invalidated, then `RevisionBumped`. Mutations from other threads are
    delivered on the iterating task's loop.

    Args:
        db: A database or snapshot.
        buffer: How many undelivered events to keep (1,024 by default). When the
            subscriber falls further behind, the oldest are dropped and the next item
            is `Lagged(missed)`.

    Raises:
        UsageError: *buffer* is not a positive int.
    """
    if type(buffer) is not int or buffer < 1:
        msg = f"events(): buffer must be a positive int, got {buffer!r}"
        raise UsageError(msg)
    return EventStream(view_of(db, "events"), buffer)


@final
class RevisionStream(_ClosedAtExit):
    """
    The async iterator `picante.revisions(db)` returns: the latest revision, on change.

    End it with `aclose()`, or use it as an async context manager, which closes it at exit.
    """

    def __init__(self, view: View) -> None:
        self._view = view
        channel: _Channel[Revision] = _Channel(1)
        self._channel = channel
        # Yielded so far (or the revision at subscription): only newer ones are yielded.
        self._last = view.revision

        def listener(record: TraceRecord) -> None:
            if isinstance(record, TraceRevision):
                channel.put(record.revision)

        # Collected without `aclose()`: it stops delivering.
        self._subscription = view.subscribe(listener, owner=self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Revision:
        channel = self._channel
        while True:
            with channel.lock:
                channel.items.clear()
                channel.missed = 0
                if channel.closed:
                    raise StopAsyncIteration
            revision = self._view.revision
            if revision > self._last:
                self._last = revision
                return revision
            await channel.wait()

    async def aclose(self) -> None:
        """Unsubscribe; the iteration ends."""
        self._subscription.cancel()
        self._channel.close()


def revisions(db: object) -> RevisionStream:
    """
    Return an async iterator yielding *db*'s latest revision each time it changes.

    Revisions that come and go while the iterator is not being awaited are skipped: each
    step yields the newest revision, newer than the one yielded before (or than the
    revision when `revisions(db)` was called).
    """
    return RevisionStream(view_of(db, "revisions"))


@final
class Watch(_ClosedAtExit, Generic[R]):
    """
    The async iterator `picante.watch(db.q, *key)` returns.

    The first step yields the query's current value; each later step waits for a mutation
    after which the value differs (by the query's `eq`) and yields it. When the query
    raises at a revision, that step raises the exception and the iterator stays usable:
    the next step waits for the next change. So a live-reload loop keeps watching through
    errors:

        async with picante.watch(db.page, "index.md") as watcher:
            while True:
                try:
                    html = await anext(watcher)
                except StopAsyncIteration:  # after aclose()
                    break
                except Exception as error:
                    show_error(error)
                    continue
                reload(html)

    As an async context manager it stops watching at exit; `aclose()` does the same.
    """

    def __init__(self, handle: Any, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        self._handle = handle
        self._args = args
        self._kwargs = kwargs
        view: View = handle.__self__
        self._revisions = RevisionStream(view)
        self._eq: Callable[[object, object], bool] = handle.__func__.ingredient.eq
        self._started = False
        self._last: object = _NOTHING

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> R:
        if self._started:
            while True:
                await anext(self._revisions)
                try:
                    value = await self._handle(*self._args, **self._kwargs)
                except Exception:
                    self._last = _NOTHING
                    raise
                if self._last is _NOTHING or not self._eq(self._last, value):
                    break
        else:
            self._started = True
            value = await self._handle(*self._args, **self._kwargs)
        self._last = value
        return value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Stop watching; the iteration ends."""
        await self._revisions.aclose()


_NOTHING: Any = object()


class QueryHandle(Protocol[P, R_co]):
    """
    What a bound query looks like to a type checker: `db.page`, a `picante.BoundQuery`.

    Functions that take a query and its key (`watch`, `debug.explain`) type the key
    arguments from it, as the query's own call does.
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[object, None, R_co]: ...


def watch(query: QueryHandle[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Watch[R]:
    """
    Watch query *query* at a key: yield its value now, then each time it changes.

    A change is a mutation after which the value differs by the query's `eq`; mutations
    that leave it equal (early cutoff included) yield nothing. See `Watch` for errors.

    Args:
        query: A bound query handle, `db.page` (a `picante.BoundQuery`; typed as
            `QueryHandle`, the protocol through which a checker takes the key
            arguments from the query).
        args: The query's arguments, as the query takes them (keywords too).
        kwargs: The same.

    Raises:
        UsageError: *query* is not a bound query of a database.
    """
    ingredient = getattr(getattr(query, "__func__", None), "ingredient", None)
    if getattr(ingredient, "kind", None) != "query":
        msg = f"watch(): expected a query of a database instance (db.words), got {describe(query)}"
        raise UsageError(msg)
    return Watch(query, args, kwargs)
