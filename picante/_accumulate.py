"""
Accumulators: values a query evaluation adds to a side channel, collected incrementally.

`picante.accumulate(value)` appends *value* to the running evaluation's list (its `Frame`,
which the child tasks it starts share). When the evaluation is memoized (`_fetch.install`),
`Accumulations.note` makes the list the memo's *entry*: its own values, and its
*accumulating reads*, the queries it read whose memo has an entry (something in their
subtree accumulated). Entries live in a side table of the view, keyed by cell, and only
in databases declared with `accumulates=`: a memo without one costs nothing, and a
`QueryCell` is as small as before.

Collection is a query. `picante.accumulated(db.q, *key)` reads the hidden query
`picante.accumulated(name, key)` of the database (the *collector*). Its body reads
`q(*key)` through the query's handle (a dependency like any read, which brings the memo
up to date first), then the collector of each accumulating read, in the order they were
read, and merges what they return, each record once, at its first appearance: the
depth-first walk in first-read order of Salsa's `accumulated_by`, entering no subtree
that accumulated nothing. Memoized like any query, a second collection with nothing
changed is a memo hit, an edit runs again only the collectors on changed paths, and a
query that calls `accumulated` has made a tracked read (it runs again only when the
collected values change).

Backdating. A memo re-executed to an equal value still counts as changed if its entry
differs: other own values, or other accumulating reads (or the same in another order).
The collectors above read it, and must run again to see the difference (Salsa's
`accumulated_backdate`); its readers run again too, as for a new value.

Invariants: a memo has an entry iff it accumulated a value or one of the queries it read
has one; a collector never has one (reading collected values is a read of the collection,
not of the queries that accumulated them); an entry goes wherever its memo's state goes
(`View.state_of`, `take`, cache files, the `pasts` kept for readers).

Cycles: a fixpoint iteration that runs a body again on the same frame must first drop
what the previous iteration accumulated (`del frame.accumulated`): only the final
iteration's values are kept (Salsa's issue 1061 is this bug). `seal` then makes the
last iteration's values the memo's, with the reads of all iterations.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from typing import TYPE_CHECKING, Any, Final, NamedTuple, ParamSpec, TypeAlias, cast

from ._errors import UsageError, describe, fmt_key
from ._frames import ACTIVE
from ._ingredients import BoundQuery, KeySpec, QueryIngredient
from ._runtime import View, memo_at, view_of
from ._store import QueryCell


if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable

    from ._frames import Frame
    from ._store import Failure, InputCell, MemoState, Revision


__all__ = [
    "COLLECTOR",
    "EMPTY",
    "SINK",
    "Accumulations",
    "Accumulator",
    "Collected",
    "Entry",
    "accumulate",
    "accumulated",
    "accumulator_type_error",
]

P = ParamSpec("P")

COLLECTOR: Final = "picante.accumulated"
"""The name of the collector query: not an identifier, so no ingredient can take it."""

Record: TypeAlias = tuple[str, tuple[object, ...]]
"""A record: its query's name and its key."""

Entry: TypeAlias = tuple[tuple[Any, ...], tuple[QueryCell, ...]]
"""A memo's own values, in the order they were accumulated, and its accumulating reads."""


class Collected(NamedTuple):
    """
    A collector's value: the records that accumulated, in collection order, how many
    values each has, and all their values, in that order.
    """

    records: tuple[Record, ...]
    counts: tuple[int, ...]
    values: tuple[Any, ...]


EMPTY: Final = Collected((), (), ())

SINK: Final[contextvars.ContextVar[list[Any] | None]] = contextvars.ContextVar(
    "picante_accumulate_sink", default=None
)
"""
Where `accumulate` puts values outside any query, if set: `debug.verify` runs bodies
with no frame, and compares what they accumulate with the memos'.
"""


def accumulate(value: object) -> None:
    """
    Add *value* to the side channel of the running query evaluation.

    A diagnostic found deep inside parsing or checking, without threading it through
    every return value: `picante.accumulated(db.q, *key)` collects what `q(*key)` and
    everything it read, directly or not, accumulated. The values belong to the
    evaluation, also those added from child tasks it starts (`asyncio.gather`,
    `TaskGroup`), in the order they were added, and are memoized with its outcome:
    an error too keeps what was accumulated before it was raised. A re-execution
    replaces them; one that yields an equal value but accumulates something else counts
    as a change.

    Args:
        value: An instance of the type the database declares with
            `@picante.database(accumulates=...)`.

    Raises:
        UsageError: No query is running in this context; the database declares no
            `accumulates=`; or the query has returned (the caller is a task it started
            that outlived it).
        TypeError: *value* is not of the declared type.
    """
    frame = ACTIVE.get()
    if frame is None:
        sink = SINK.get()
        if sink is None:
            msg = "picante.accumulate() must be called inside a running query"
            raise UsageError(msg)
        sink.append(value)
        return
    accumulations: Accumulations | None = frame.view.accumulations
    if accumulations is None:
        msg = (
            f"{_where(frame)}: picante.accumulate() needs {type(frame.view.db).__name__} to "
            "declare what it accumulates: @picante.database(accumulates=...)"
        )
        raise UsageError(msg)
    kind = accumulations.accumulator.kind
    if not isinstance(value, kind):
        raise accumulator_type_error(_where(frame), kind, value)
    values = getattr(frame, "accumulated", _FIRST)
    if values is _FIRST:
        frame.accumulated = [value]
        return
    if values is None:
        msg = (
            f"{_where(frame)}: picante.accumulate() was called after the query returned "
            "(by a task it started, which outlived it): the value would be lost"
        )
        raise UsageError(msg)
    cast("list[Any]", values).append(value)


_FIRST: Final = object()
"""`accumulate`'s default for a frame without values yet."""


def _where(frame: Frame) -> str:
    """The running query of *frame*, for messages: `Site.check('a.py')`."""
    name, key = frame.record()
    return f"{type(frame.view.db).__name__}.{fmt_key(name, key)}"


def accumulator_type_error(where: str, kind: Any, value: object) -> TypeError:
    """The error for a *value* accumulated at *where* that is not of the declared *kind*."""
    expected = kind.__qualname__ if isinstance(kind, type) else repr(kind)
    msg = f"{where}: picante.accumulate() expected a {expected}, got {describe(value)}"
    return TypeError(msg)


# -- per view: the entries of the memos --------------------------------------------------


class Accumulations:
    """What one view keeps of accumulated values: the `Entry` of each memo that has one."""

    __slots__ = ("accumulator", "entries")

    def __init__(self, accumulator: Accumulator) -> None:
        self.accumulator = accumulator
        self.entries: dict[QueryCell, Entry] = {}

    def fork(self) -> Accumulations:
        """The accumulations of a new snapshot of this view (it adopts memos as it goes)."""
        return Accumulations(self.accumulator)

    def seal(self, frame: Frame, *, exact: bool = True) -> Entry | None:
        """
        The entry of *frame*'s evaluation, which has ended: `accumulate` refuses values
        from now on. Not *exact* (an outcome kept only for the frame's older revision,
        whose reads may have changed since), every query read counts as accumulating:
        more to walk, never a value missed.
        """
        # Unset if it accumulated nothing (`getattr` costs less than raising then).
        values = getattr(frame, "accumulated", None)
        frame.accumulated = None
        collector = self.accumulator.collector
        if frame.cell.ingredient is collector:
            return None  # a collector accumulates nothing (see the module's invariants)
        own = () if values is None else tuple(values)
        if exact:
            # Inputs are never in `entries`: no type check needed.
            reads = tuple(filter(self.entries.__contains__, frame.deps))
        else:
            reads = tuple(
                dep
                for dep in frame.deps
                if type(dep) is QueryCell and dep.ingredient is not collector
            )
        return (own, cast("tuple[QueryCell, ...]", reads)) if own or reads else None

    def note(self, frame: Frame, cell: QueryCell, revision: Revision) -> None:
        """
        Make *frame*'s evaluation *cell*'s entry (`_fetch.install`, before the memo is
        stored); if it differs from the entry the memo had, the memo changed at *revision*.
        """
        entry = self.seal(frame)
        entries = self.entries
        old = entries.get(cell)
        if entry is None:
            if old is None:
                return
            del entries[cell]
        else:
            entries[cell] = entry
            if old is not None and _same(old, entry):
                return
        cell.changed_at = revision

    def link_component(self, frames: Iterable[Frame], revision: Revision) -> None:
        """
        Complete the entries of a converged cycle's memos, just stored together
        (`_fetch._install_component`): each was noted before the others had entries, so
        its accumulating reads among them were missed. Repeated until nothing moves (a
        cycle's members read each other); an entry that moves changed at *revision*.
        """
        entries = self.entries
        pairs = [(frame, frame.cell) for frame in frames if frame.cell.verified_at == revision]
        moved = True
        while moved:
            moved = False
            for frame, cell in pairs:
                old = entries.get(cell)
                own = () if old is None else old[0]
                reads = tuple(filter(entries.__contains__, frame.deps))
                if (own or reads) and (old is None or old[1] != reads):
                    entries[cell] = (own, cast("tuple[QueryCell, ...]", reads))
                    cell.changed_at = revision
                    moved = True

    def forget(self, cells: Iterable[InputCell | QueryCell]) -> None:
        """Drop the entries of *cells* (dropped from the view by `picante.sweep`)."""
        entries = self.entries
        for cell in cells:
            if type(cell) is QueryCell:
                entries.pop(cell, None)

    def state(self, cell: QueryCell, state: MemoState) -> MemoState:
        """*state*, a state of *cell*, with *cell*'s entry (`View.state_of`)."""
        entry = self.entries.get(cell)
        return state if entry is None else state._replace(accumulated=entry)

    def take(self, view: View, mine: QueryCell, state: MemoState) -> None:
        """Give *mine* the entry of *state*, a memo of another view installed as its own."""
        entry: Entry | None = state.accumulated
        if entry is None:
            self.entries.pop(mine, None)
            return
        own, reads = entry
        self.entries[mine] = (
            own,
            tuple(cast("QueryCell", view.cell_like(dep)) for dep in reads),
        )

    def at(
        self, view: View, cell: QueryCell, revision: Revision
    ) -> tuple[Failure | None, Entry | None]:
        """*cell*'s failure and entry as of *revision* (at which it was just read)."""
        if cell.verified_at != revision:
            state = memo_at(view, cell, revision)
            if state is not None:
                return state.failure, state.accumulated
        return cell.failure, self.entries.get(cell)


def _same(old: Entry, new: Entry) -> bool:
    """Whether two entries are equal: the same reads, and own values equal by `==`."""
    if old[1] != new[1]:
        return False
    try:
        return old[0] == new[0]
    except Exception:  # noqa: BLE001 - as in `default_eq`: a failing `==` means "changed"
        return False


# -- per database class: the declared type and the collector --------------------------------


class Accumulator:
    """What a database class declared with `accumulates=` has: the type, the collector."""

    __slots__ = ("collector", "kind")

    def __init__(self, cls: type, kind: Any) -> None:
        self.kind = kind
        collector: QueryIngredient[Any, Any, Collected] = QueryIngredient(
            # A converged cycle's memos read each other, and so do their collectors: a
            # fixpoint from nothing collected gives each record once.
            _collect,
            persist=False,
            share=False,
            cycle_initial=_nothing_collected,
        )
        collector.name = COLLECTOR
        collector.owner = cls
        collector.spec = KeySpec(collector.qualname, _SIGNATURE)
        self.collector = collector

    def accumulations(self) -> Accumulations:
        """The accumulations of a new database instance of the class."""
        return Accumulations(self)

    def __repr__(self) -> str:
        return f"<Accumulator {self.kind!r}>"


def _nothing_collected(db: object, name: str, key: tuple[object, ...]) -> Collected:
    """A collector's value before a cycle of collectors iterates: nothing yet."""
    return EMPTY


async def _collect(db: object, name: str, key: tuple[object, ...]) -> Collected:
    """
    The collector's body: the values `name(*key)` and what it read accumulated, as
    `Collected`, each record once, depth first in first-read order.

    An error memoized by the query is no error here: its values are collected.
    """
    view = view_of(db)
    accumulations: Accumulations = view.accumulations
    frame = ACTIVE.get()
    # No frame of the view: `debug.verify` runs bodies from outside any query.
    revision = view.revision if frame is None or frame.view is not view else frame.revision
    handle: Any = getattr(db, name)
    cell: QueryCell | None = None
    try:
        await handle(*key)
    except Exception as error:
        cell = view.table(name).get(key)
        failure = None if cell is None else accumulations.at(view, cell, revision)[0]
        if failure is None or failure.error is not error:
            raise  # not the memo's own outcome (a cycle, say): the collection fails
    cell = cast("QueryCell", view.table(name)[key])
    entry = accumulations.at(view, cell, revision)[1]
    if entry is None:
        return EMPTY
    own, reads = entry
    if not reads:
        return Collected(((name, key),), (len(own),), own)
    records: list[Record] = []
    counts: list[int] = []
    values: list[Any] = []
    seen: set[Record] = set()
    if own:
        records.append((name, key))
        counts.append(len(own))
        values.extend(own)
        seen.add((name, key))
    collector = collector_of(view)
    depth = _DEPTH.get()
    token = _DEPTH.set(depth + 1)
    try:
        for dep in reads:
            call = collector(dep.ingredient.name, dep.key)
            if depth >= _HOP:
                # Collectors run inline in their reader's coroutine, nested as deep as the
                # memos are (a chain built one link at a time can be longer than Python's
                # recursion limit): go on in a task of its own (its reads still belong to
                # this collector: the task has its context, with this frame).
                call = asyncio.get_running_loop().create_task(_afresh(call))
            below: Collected = await call
            if len(reads) == 1 and not own:
                # All it collects is what its one accumulating read does: the same value.
                return below
            if seen.isdisjoint(below.records):
                # The common case (a tree): nothing met before, everything goes, C-level.
                seen.update(below.records)
                records += below.records
                counts += below.counts
                values += below.values
                continue
            offset = 0
            for found, count in zip(below.records, below.counts, strict=True):
                if found not in seen:
                    seen.add(found)
                    records.append(found)
                    counts.append(count)
                    values += below.values[offset : offset + count]
                offset += count
    finally:
        _DEPTH.reset(token)
    return Collected(tuple(records), tuple(counts), tuple(values))


_DEPTH: Final[contextvars.ContextVar[int]] = contextvars.ContextVar(
    "picante_collect_depth", default=0
)
"""How many collectors run nested in this coroutine stack (see `_HOP`)."""

_HOP: Final = 100
"""Past this many nested collectors, the next one runs in a task (a fresh stack)."""


async def _afresh(call: Awaitable[Collected]) -> Collected:
    """Await *call* in a new task, counting nested collectors from zero."""
    _DEPTH.set(0)
    return await call


_SIGNATURE: Final = inspect.signature(_collect).replace(
    parameters=list(inspect.signature(_collect).parameters.values())[1:]
)


def collector_of(view: View) -> Any:
    """The handle of *view*'s collector (made on first use, kept as handles are)."""
    db = view.db
    attributes = vars(db)
    handle = attributes.get(COLLECTOR)
    if handle is None:
        collector = view.accumulations.accumulator.collector
        handle = attributes[COLLECTOR] = collector.make_handle(view, None)
    return handle


async def accumulated(
    query: BoundQuery[P, Any], /, *args: P.args, **kwargs: P.kwargs
) -> tuple[Any, ...]:
    """
    Return every value `query(*args, **kwargs)` accumulated, and, transitively, every
    query it read.

    The query is fetched first (computed if needed; an error it raises is no error
    here: the values it accumulated before raising are collected). Each memo counts
    once, however many paths lead to it, and the order is deterministic: a memo's own
    values in the order they were accumulated, then what the queries it read
    accumulated, depth first, in the order it first read them (a memo comes where it is
    first met). Subtrees that accumulated nothing are not walked.

    Collection is memoized and tracked: a second call with nothing changed costs a memo
    hit; after an edit only the memos on changed paths are collected again; called
    inside a query, it is a read of the collection like any read (the query runs
    again only when the collected values change). Works on snapshots too.

    Args:
        query: A query of a database instance or snapshot (`db.check`), whose class
            declares `@picante.database(accumulates=...)`.
        *args: The key, as the query takes it.
        **kwargs: The key, as the query takes it.

    Returns:
        The values, a tuple of the database's accumulator type.

    Raises:
        UsageError: *query* is not a query of a database instance, or its database
            declares no `accumulates=`.
        CycleError: The collection closes a cycle (a query collects what it reads).

    Examples:
        ```python
        diagnostics = await picante.accumulated(db.check, "a.py")
        ```
    """
    ingredient = getattr(query, "ingredient", None)
    view = getattr(query, "__self__", None)
    if not isinstance(ingredient, QueryIngredient) or not isinstance(view, View):
        msg = (
            "accumulated(): expected a query of a database instance (db.check), "
            f"got {describe(query)}"
        )
        raise UsageError(msg)
    if view.accumulations is None:
        msg = (
            f"accumulated({ingredient.qualname}): {type(view.db).__name__} does not accumulate: "
            "declare it with @picante.database(accumulates=...)"
        )
        raise UsageError(msg)
    spec = ingredient.key_spec()
    key = spec.normalize(args, kwargs)
    try:
        hash(key)
    except TypeError:
        raise spec.unhashable(key) from None
    collected: Collected = await collector_of(view)(ingredient.name, key)
    return collected.values
