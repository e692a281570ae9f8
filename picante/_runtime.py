"""
Views and the commit of mutations: revisions, snapshots, batches, limits, threads.

A *view* is the state of one database instance: a revision clock, one table per
ingredient (key → cell), per-durability watermarks, the frames in flight and the work
counters. A database and the snapshots taken of it (and of them) form a *family*, which
shares the interned tables, the registry of flights (so views at one state share
evaluations) and the record of waits (so cycles across views are found).

Snapshots are O(1): a snapshot is a new, empty view whose `parent` is the view it was
taken of and whose `base` is the parent's revision then. Its revisions up to `base` are
the parent's; what it has not touched yet it reads from its ancestors as of `base`
(`materialize_input`, `adopt`). The parent keeps what a live snapshot may still need:
old input versions (`InputCell.history`) and old memo states (`View.pasts`) for the
revisions its snapshots are *pinned* at.

Mutations are the only code that moves a clock. A commit is one critical section under
the view's lock:

1. compare each new value with the current one (equal set, absent remove: no-op);
2. check `max_state_bytes`; nothing has changed yet, so a refusal changes nothing;
3. keep old versions that running frames or pinned snapshots may still read;
4. write values, bump the revision, raise the durability watermarks;
5. push: mark every memo that transitively read a changed cell as not clean;
6. publish the new revision.

Reads take no lock. The event loop's thread never interleaves with its own commits, and
a commit from another thread writes a cell's value before its `changed_at` and publishes
the revision last, so a reader sees each cell, and the revision, before or after.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from types import MethodType
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from ._errors import LimitExceededError, UsageError, fmt_key
from ._frames import ACTIVE
from ._store import (
    ABSENT,
    EVICTED,
    NEVER,
    Durability,
    InputCell,
    InternTable,
    Lru,
    MemoState,
    QueryCell,
    Revision,
    TraceInput,
    TraceInvalidated,
    TraceRevision,
    add_dependent,
    dependents_of,
    discard_dependent,
    sizeof,
)


if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from ._frames import Frame


__all__ = [
    "BoundHandle",
    "Counters",
    "Family",
    "View",
    "batch",
    "revision",
    "snapshot",
    "view_of",
]

D = TypeVar("D")

Table = dict[tuple[object, ...], Any]


class BoundHandle:
    """Base of the per-instance handles (`db.words`); snapshots do not copy them."""

    __slots__ = ()


class Counters:
    """Work counters of a view: cheap integers, read by tests and debugging tools."""

    __slots__ = ("dependency_checks", "executions", "hits", "invalidations")

    def __init__(self) -> None:
        # Reads answered from a memo without running its body (counted under `debug.trace`).
        self.hits = 0
        # Dependencies examined by deep verification.
        self.dependency_checks = 0
        # Query bodies run.
        self.executions = 0
        # Memos marked not clean by mutations.
        self.invalidations = 0


class Family:
    """What a database shares with its snapshots."""

    __slots__ = ("flights", "interned", "interned_bytes", "lock", "views", "waits")

    def __init__(self) -> None:
        self.interned: dict[str, InternTable] = {}
        self.interned_bytes = 0
        # Flights by state, used once the family has more than one view:
        # {(ingredient name, key, canonical view, revision): frame}.
        self.flights: dict[tuple[str, tuple[object, ...], View, Revision], Frame] = {}
        # Waits in progress, keyed by the waiter's future: (waiting frame, awaited frame).
        self.waits: dict[object, tuple[Frame, Frame]] = {}
        self.views = 1
        self.lock = threading.Lock()

    def intern_table(self, name: str) -> InternTable:
        """Return the interned table *name*, creating it on first use."""
        table = self.interned.get(name)
        if table is None:
            table = self.interned.setdefault(name, InternTable())
        return table


# One pending batch per view, per context: a batch covers the code inside its block
# (and tasks it starts), not other tasks or threads that mutate meanwhile.
_BATCHES: Final[contextvars.ContextVar[dict[View, list[_Op]] | None]] = contextvars.ContextVar(
    "picante_batches", default=None
)

_Op = tuple[Table, Any, tuple[object, ...], object]
"""A deferred mutation: (table, input ingredient, key, value or ABSENT)."""


class View:
    """Everything picante keeps for one database instance; lives at `db.__picante__`."""

    __slots__ = (
        "__weakref__",
        "active",
        "base",
        "counters",
        "db",
        "dirty",
        "family",
        "histories",
        "input_bytes",
        "last_changed",
        "limit",
        "listeners",
        "lock",
        "lrus",
        "parent",
        "pasts",
        "persistence",
        "pins",
        "revision",
        "side_flights",
        "tables",
    )

    def __init__(self, db: object, parent: View | None = None, limit: int | None = None) -> None:
        self.db = db
        self.parent = parent
        self.tables: dict[str, Table] = {}
        self.lrus: dict[str, Lru] = {}
        # Frames in progress per revision: an input keeps old versions while any runs.
        self.active: dict[Revision, int] = {}
        self.histories: list[InputCell] = []
        # Earlier memo states kept for pinned snapshots whose revision they are valid at.
        self.pasts: dict[QueryCell, list[MemoState]] = {}
        # Flights for a revision other than the one in `cell.flight`: {(cell, rev): frame}.
        self.side_flights: dict[tuple[QueryCell, Revision], Frame] = {}
        # Revisions that live snapshots of this view were taken at: {revision: count}.
        self.pins: dict[Revision, int] = {}
        self.counters = Counters()
        self.lock = threading.RLock()
        # Cells changed since the last save (`None` until a first save or load): what an
        # incremental save appends to the log.
        self.dirty: set[InputCell | QueryCell] | None = None
        # What `_persist` knows of the cache file this view was saved to or loaded from.
        self.persistence: Any = None
        # The trace hook: callables given every trace record (`Trace*` in `_store`) of this
        # view. Empty, nothing is built: the runtime checks the list before any record.
        self.listeners: list[Callable[[object], None]] = []
        if parent is None:
            self.family = Family()
            self.revision: Revision = 0
            self.base: Revision = NEVER
            # last_changed[d]: the last revision at which an input of durability ≥ d changed.
            self.last_changed: list[Revision] = [0] * len(Durability)
            self.limit = limit
            self.input_bytes = 0
        else:
            self.family = parent.family
            self.revision = self.base = parent.revision
            self.last_changed = list(parent.last_changed)
            self.limit = parent.limit
            self.input_bytes = parent.input_bytes

    def table(self, name: str) -> Table:
        """Return the table of ingredient *name*, creating it on first use."""
        table = self.tables.get(name)
        if table is None:
            table = self.tables.setdefault(name, {})
        return table

    def lru(self, name: str, capacity: int) -> Lru:
        """Return the LRU order of query *name*, creating it on first use."""
        lru = self.lrus.get(name)
        if lru is None:
            lru = self.lrus.setdefault(name, Lru(capacity))
        return lru

    # -- what a snapshot inherits -------------------------------------------------------

    def inherited(self, name: str, key: tuple[object, ...]) -> tuple[Revision, object]:
        """Return `(changed_at, value)` of an input this view has no cell for."""
        view, at = self.parent, self.base
        while view is not None:
            cell: InputCell | None = view.tables.get(name, {}).get(key)
            if cell is not None:
                return cell.version_at(at)
            at = view.base
            view = view.parent
        return 0, ABSENT

    def materialize_input(
        self, table: Table, ingredient: Any, key: tuple[object, ...]
    ) -> InputCell:
        """Return this view's cell for an input key, creating it as inherited."""
        cell: InputCell | None = table.get(key)
        if cell is None:
            changed_at, value = (
                (0, ABSENT) if self.parent is None else self.inherited(ingredient.name, key)
            )
            fresh = InputCell(ingredient, key, value, changed_at)
            if value is not ABSENT and self.limit is not None:
                fresh.size = sizeof(key) + sizeof(value)
            # setdefault: a commit on another thread may be creating the same cell.
            cell = cast("InputCell", table.setdefault(key, fresh))
        return cell

    def cell_like(self, cell: InputCell | QueryCell) -> InputCell | QueryCell:
        """Return this view's cell for the record *cell* (of another view)."""
        name = cell.ingredient.name
        table = self.table(name)
        if isinstance(cell, InputCell):
            return self.materialize_input(table, cell.ingredient, cell.key)
        mine = table.get(cell.key)
        if mine is None:
            mine = table.setdefault(cell.key, QueryCell(cell.ingredient, cell.key))
        return cast("QueryCell", mine)

    def adopt(self, cell: QueryCell) -> bool:
        """Give *cell* (without a memo) an ancestor's memo valid at the inherited state."""
        view, at = self.parent, self.base
        while view is not None:
            theirs: QueryCell | None = view.tables.get(cell.ingredient.name, {}).get(cell.key)
            if theirs is not None:
                return self.adopt_from(view, theirs, cell, at)
            at = view.base
            view = view.parent
        return False

    def adopt_from(self, view: View, theirs: QueryCell, mine: QueryCell, at: Revision) -> bool:
        """Copy *theirs* (of *view*) into *mine* if it is valid at revision *at*."""
        state = _memo_at(view, theirs, at)
        if state is None:
            return False
        with self.lock:
            if mine.verified_at >= at:
                return True
            deps = tuple(self.cell_like(dep) for dep in state.deps)
            relink(mine, mine.deps, deps)
            mine.value = state.value
            mine.failure = state.failure
            mine.changed_at = state.changed_at
            mine.durability = state.durability
            mine.deps = deps
            mine.verified_at = at
            mine.clean = False
            if mine.ingredient.lru is not None:
                self.track_lru(mine)
        return True

    def track_lru(self, cell: QueryCell) -> None:
        """Count *cell*'s value in its query's LRU order, evicting the least recent one."""
        if cell.failure is not None or cell.value is EVICTED:
            return
        victim = self.lru(cell.ingredient.name, cell.ingredient.lru).add(cell)
        if victim is not None:
            # Only the value goes: revalidation still has the bookkeeping.
            victim.value = EVICTED

    # -- frames in progress ---------------------------------------------------------------

    def _prune(self) -> None:
        """Drop old versions no running frame and no pinned snapshot can read any more."""
        with self.lock:
            oldest = min([*self.active, *self.pins], default=self.revision)
            if oldest < self.revision:
                return
            for cell in self.histories:
                cell.history = None
            self.histories.clear()
            self.pasts.clear()

    def flight(self, cell: QueryCell, revision: Revision) -> Frame | None:
        """Return the frame in progress for *cell* at *revision*, in any view of the state."""
        frame: Frame | None = cell.flight
        if frame is not None and frame.revision == revision:
            return frame
        if self.side_flights:
            frame = self.side_flights.get((cell, revision))
            if frame is not None:
                return frame
        if self.family.views > 1:
            return self.family.flights.get(
                (cell.ingredient.name, cell.key, self.canonical(revision), revision)
            )
        return None

    def canonical(self, revision: Revision) -> View:
        """The view that first reached the state *revision* of this view stands for."""
        view = self
        while view.parent is not None and revision <= view.base:
            view = view.parent
        return view

    def start_flight(self, frame: Frame) -> None:
        """Register *frame* as the flight of its cell at its revision (and as running)."""
        cell = frame.cell
        revision = frame.revision
        if cell.flight is None:
            cell.flight = frame
        else:
            self.side_flights[cell, revision] = frame
        if self.family.views > 1:
            key = (cell.ingredient.name, cell.key, self.canonical(revision), revision)
            self.family.flights.setdefault(key, frame)
        # Count the frame as running at its revision: commits keep what it may read. A
        # nested frame whose parent is still running (its registered flight) runs at the
        # parent's revision, which the parent's count already covers.
        parent = frame.parent
        frame.counted = parent is None or parent.cell.flight is not parent
        if frame.counted:
            active = self.active
            active[revision] = active.get(revision, 0) + 1

    def end_flight(self, frame: Frame) -> None:
        """Unregister *frame*."""
        cell = frame.cell
        revision = frame.revision
        if cell.flight is frame:
            cell.flight = None
        else:
            del self.side_flights[cell, revision]
        flights = self.family.flights
        if flights:
            key = (cell.ingredient.name, cell.key, self.canonical(revision), revision)
            if flights.get(key) is frame:
                del flights[key]
        if frame.counted:
            # The frame stops running; drop old versions once nobody can read them.
            active = self.active
            left = active[revision] - 1
            if left:
                active[revision] = left
            else:
                del active[revision]
                if self.histories or self.pasts:
                    self._prune()

    # -- mutations ------------------------------------------------------------------------

    def mutate(
        self, table: Table, ingredient: Any, key: tuple[object, ...], value: object
    ) -> Revision:
        """Set (or, with `ABSENT`, remove) an input; defer it inside a batch of this view."""
        _forbid_inside_query(ingredient, "remove" if value is ABSENT else "set")
        batches = _BATCHES.get()
        if batches is not None:
            pending = batches.get(self)
            if pending is not None:
                pending.append((table, ingredient, key, value))
                return self.revision
        return self.commit([(table, ingredient, key, value)])

    def commit(self, ops: list[_Op]) -> Revision:
        """Apply *ops* in order at one new revision (or none, if nothing changes)."""
        with self.lock:
            if len(ops) > 1:
                # Later changes to a key win.
                final: dict[tuple[int, tuple[object, ...]], _Op] = {}
                for op in ops:
                    final[id(op[0]), op[2]] = op
                ops = list(final.values())
            changes: list[tuple[InputCell, object]] = []
            for table, ingredient, key, value in ops:
                if value is ABSENT and self.parent is None and key not in table:
                    continue
                cell = self.materialize_input(table, ingredient, key)
                current = cell.value
                if value is ABSENT:
                    if current is not ABSENT:
                        changes.append((cell, value))
                elif current is ABSENT or not ingredient.eq(current, value):
                    changes.append((cell, value))
            if not changes:
                return self.revision
            sizes = self._check_limit(changes) if self.limit is not None else None
            revision = self.revision + 1
            # Every running frame and every pinned snapshot is at a revision before the new
            # one, so any of them may still read the versions this commit replaces.
            keep = bool(self.active or self.pins)
            last_changed = self.last_changed
            for index, (cell, value) in enumerate(changes):
                if keep:
                    if cell.history is None:
                        cell.history = []
                        self.histories.append(cell)
                    cell.history.append((cell.changed_at, cell.value))
                if sizes is not None:
                    cell.size = sizes[index]
                # The stamp before the value: see `InputCell.__init__`.
                cell.changed_at = revision
                cell.value = value
                for level in range(cell.ingredient.durability + 1):
                    last_changed[level] = revision
            for cell, _ in changes:
                self.invalidate(cell)
            if self.dirty is not None:
                self.dirty.update(cell for cell, _ in changes)
            # Published last: another thread sees the new revision only after the new
            # values and the invalidation are in place.
            self.revision = revision
            if self.listeners:
                self._announce(changes, revision)
            return revision

    def _announce(self, changes: list[tuple[InputCell, object]], revision: Revision) -> None:
        """Give the listeners the trace records of a commit: changes, invalidations, revision."""
        records: list[object] = []
        seen: set[QueryCell] = set()
        for cell, value in changes:
            cause = (cell.ingredient.name, cell.key)
            records.append(TraceInput(revision, cause[0], cause[1], removed=value is ABSENT))
            # Every memo that transitively read the cell, clean or not (the push stops early).
            stack = list(dependents_of(cell))
            while stack:
                memo = stack.pop()
                if memo in seen:
                    continue
                seen.add(memo)
                records.append(TraceInvalidated(revision, memo.ingredient.name, memo.key, cause))
                if memo.dependents is not None:
                    stack.extend(dependents_of(memo))
        records.append(TraceRevision(revision))
        self.notify(records)

    def notify(self, records: list[object]) -> None:
        """Hand *records* to every listener (a listener's failure does not stop the others)."""
        for listener in list(self.listeners):
            for record in records:
                try:
                    listener(record)
                except Exception:  # noqa: BLE001 - a broken listener must not break commits
                    break

    def _check_limit(self, changes: list[tuple[InputCell, object]]) -> list[int]:
        """Return the new sizes of the changed cells; raise if the total would exceed."""
        limit = cast("int", self.limit)
        sizes = [
            0 if value is ABSENT else sizeof(cell.key) + sizeof(value) for cell, value in changes
        ]
        total = self.input_bytes + sum(sizes) - sum(cell.size for cell, _ in changes)
        if total + self.family.interned_bytes > limit:
            what = (
                f"setting {fmt_key(changes[0][0].ingredient.name, changes[0][0].key)}"
                if len(changes) == 1
                else f"this batch of {len(changes)} changes"
            )
            msg = (
                f"{type(self.db).__name__}: {what} would make the state "
                f"{total + self.family.interned_bytes:,} bytes, over max_state_bytes={limit:,}"
            )
            raise LimitExceededError(msg)
        self.input_bytes = total
        return sizes

    def invalidate(self, cell: InputCell | QueryCell) -> None:
        """Mark every clean memo that transitively read *cell* as not clean."""
        if cell.dependents is None:
            return
        stack = list(dependents_of(cell))
        invalidated = 0
        pinned = self.pins
        while stack:
            memo = stack.pop()
            if not memo.clean:
                # Not clean already: by the invariant, its dependents are not clean either.
                continue
            if pinned:
                self.keep_past(memo, self.revision)
            memo.clean = False
            invalidated += 1
            if memo.dependents is not None:
                stack.extend(dependents_of(memo))
        self.counters.invalidations += invalidated

    def keep_past(self, memo: QueryCell, valid_through: Revision) -> None:
        """Save *memo*'s state if a pinned snapshot's revision lies in its validity."""
        low = memo.verified_at
        if low == NEVER or not any(low <= pin <= valid_through for pin in self.pins):
            return
        self.pasts.setdefault(memo, []).append(memo.state(valid_through))

    def account_interned(self, name: str, value: object) -> None:
        """Count a new interned *value* against `max_state_bytes` (raise if it does not fit)."""
        if self.limit is None:
            return
        size = sizeof(value)
        family = self.family
        with family.lock:
            total = self.input_bytes + family.interned_bytes + size
            if total > self.limit:
                msg = (
                    f"{type(self.db).__name__}: interning a value in {name} would make the "
                    f"state {total:,} bytes, over max_state_bytes={self.limit:,}"
                )
                raise LimitExceededError(msg)
            family.interned_bytes += size

    # -- snapshots ------------------------------------------------------------------------

    def pin(self, revision: Revision) -> None:
        with self.lock:
            self.pins[revision] = self.pins.get(revision, 0) + 1

    def unpin(self, revision: Revision) -> None:
        with self.lock:
            left = self.pins[revision] - 1
            if left:
                self.pins[revision] = left
            else:
                del self.pins[revision]
        if self.histories or self.pasts:
            self._prune()

    def __repr__(self) -> str:
        memos = sum(
            1
            for table in self.tables.values()
            for cell in table.values()
            if isinstance(cell, QueryCell) and cell.verified_at >= 0
        )
        kind = " snapshot" if self.parent is not None else ""
        return f"<{type(self.db).__name__}{kind} rev={self.revision} memos={memos}>"


def _memo_at(view: View, cell: QueryCell, at: Revision) -> MemoState | None:
    """Return *cell*'s memo (of *view*) as it was valid at revision *at*, if known."""
    verified_at = cell.verified_at
    if verified_at == at or (
        NEVER < verified_at <= at <= view.revision
        and cell.failure is None
        # Clean, or nothing as durable as what it read changed since it was verified.
        and (cell.clean or view.last_changed[cell.durability] <= verified_at)
    ):
        return cell.state(at)
    for state in view.pasts.get(cell, ()):
        if state.verified_at <= at <= state.valid_through:
            return state
    return None


def relink(
    cell: QueryCell,
    old: tuple[InputCell | QueryCell, ...],
    new: tuple[InputCell | QueryCell, ...],
) -> None:
    """Move *cell*'s reverse edges from its *old* dependencies to its *new* ones."""
    keep = set(new)
    for dep in old:
        if dep not in keep:
            discard_dependent(dep, cell)
    for dep in new:
        add_dependent(dep, cell)


def _forbid_inside_query(ingredient: Any, operation: str) -> None:
    frame = ACTIVE.get()
    if frame is not None:
        name, key = frame.record()
        msg = (
            f"{ingredient.name}.{operation}() was called inside the running query "
            f"{fmt_key(name, key)}; queries must not mutate inputs"
        )
        raise UsageError(msg)


def view_of(db: object) -> View:
    """Return the view of database instance *db*, creating it on first use."""
    try:
        state = vars(db)
    except TypeError:
        msg = f"{type(db).__name__} instances need a __dict__ to be picante databases"
        raise UsageError(msg) from None
    view = state.get("__picante__")
    if view is None:
        spec = getattr(type(db), "__picante__", None)
        if spec is None:
            msg = f"{type(db).__name__} is not a database: decorate it with @picante.database"
            raise UsageError(msg)
        # setdefault: two threads touching a new database first keep one view.
        view = state.setdefault("__picante__", View(db, limit=spec.max_state_bytes))
    return cast("View", view)


def revision(db: object) -> Revision:
    """
    Return the current revision of *db*.

    A new database is at revision 0; every effective mutation (or batch) adds one, and
    no-ops (setting an equal value, removing an absent key) leave it where it is. A
    snapshot starts at the revision it was taken at and counts on from there on its own.

    Raises:
        UsageError: *db* is not an instance of a `@picante.database` class.
    """
    return view_of(db).revision


def snapshot(db: D) -> D:
    """
    Return an isolated view of *db*, frozen at its current revision, in O(1).

    The snapshot is an instance of the same class. Later changes to *db* are invisible
    in it, and changes made on it are invisible in *db*: from here on it has a revision
    timeline of its own. Every memo valid at the snapshot's revision is reused without
    recomputing, evaluations of the same record at the same state are shared between a
    database and its snapshots, and interned tables are shared by all of them. The
    user's instance attributes are copied shallowly. Safe to call from any thread.

    While a snapshot lives, its database keeps the old input versions and memo states the
    snapshot may still read; they are released when the snapshot is garbage-collected
    (a snapshot and its view refer to each other, so that is at the next collection).

    Raises:
        UsageError: *db* is not an instance of a `@picante.database` class.
    """
    view = view_of(db)
    cls = type(db)
    copy = cls.__new__(cls)
    attributes = vars(copy)
    for name, value in vars(db).items():
        if name != "__picante__" and not _is_handle(value):
            attributes[name] = value
    with view.lock:
        child = View(copy, parent=view)
        view.pin(child.base)
        with view.family.lock:
            view.family.views += 1
    weakref.finalize(child, _release, view, child.base)
    attributes["__picante__"] = child
    return copy


def _is_handle(value: object) -> bool:
    """Tell whether *value* is a handle bound to a view (not copied into snapshots)."""
    return isinstance(value, BoundHandle) or (
        isinstance(value, MethodType) and isinstance(value.__self__, View)
    )


def _release(parent: View, base: Revision) -> None:
    with parent.family.lock:
        parent.family.views -= 1
    parent.unpin(base)


@contextlib.contextmanager
def batch(db: object) -> Generator[None]:
    """
    Defer every `set` and `remove` on *db* inside the block; apply them at exit, at once.

    At exit the changes are applied in order at one new revision (none if nothing
    changed). If the block raises, all of them are discarded. Reads inside the block see
    the state before the batch, and `set`/`remove` return the current revision. A batch
    opened inside a batch of the same database joins the outer one. The batch covers the
    code in the block and tasks started from it; other tasks and threads mutate directly.

    Raises:
        LimitExceededError: The changes would exceed `max_state_bytes`; none is applied.
    """
    view = view_of(db)
    batches = _BATCHES.get()
    if batches is not None and view in batches:
        yield
        return
    ops: list[_Op] = []
    token = _BATCHES.set({**(batches or {}), view: ops})
    try:
        yield
    finally:
        _BATCHES.reset(token)
    # Not reached if the block raised: the pending changes are dropped with `ops`.
    if ops:
        view.commit(ops)
