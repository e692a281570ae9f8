"""
Views and the commit of mutations: revisions, snapshots, batches, limits, threads.

A *view* is the state of one database instance: a revision clock, one table per
ingredient (key → cell), per-durability watermarks, the frames in flight and the work
counters. A database and the snapshots taken of it (and of them) form a *family*, which
shares the interned tables and one `SyncTable` (`_sync`: flights, so that views at one
state share evaluations, and the count of live views). Waits, for cycle detection, are
kept per event loop (`_frames`), so cycles across views and databases are found.

Snapshots are O(1): a snapshot is a new, empty view whose `parent` is the view it was
taken of and whose `base` is the parent's revision then. Its revisions up to `base` are
the parent's; what it has not touched yet it reads from its ancestors as of `base`
(`materialize_input`, `adopt`). The family's `SyncTable` (`_sync`) decides what a view
keeps for its readers (live snapshots and running evaluations): old input versions
(`InputCell.history`) and old memo states (`View.pasts`).

A memo is copied from one view into another only by `take`, and only when every
dependency it records refers, in the receiving view, to the version it read: an input
at the same version, a query whose memo there is valid at that revision (taken along
first if need be). Otherwise the receiving view computes the memo itself.

Mutations are the only code that moves a clock. A commit is one critical section under
the view's lock:

1. compare each new value with the current one (equal set, absent remove: no-op);
2. check `max_state_bytes`; nothing has changed yet, so a refusal changes nothing;
3. keep old versions that a reader (a running frame, a live snapshot) may still read;
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

from ._errors import LimitExceededError, UsageError, fmt_key, not_a_database
from ._frames import ACTIVE
from ._store import (
    ABSENT,
    EVICTED,
    LOWEST,
    NEVER,
    InputCell,
    InternTable,
    Lru,
    QueryCell,
    Revision,
    Tally,
    TraceInput,
    TraceInvalidated,
    TraceRevision,
    add_dependent,
    dependents_of,
    deps_of,
    discard_dependent,
    pack_deps,
    sizeof,
    watermarks,
)
from ._sync import Readers, SyncTable


if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator
    from typing import Self

    from ._declare import DatabaseSpec
    from ._store import Ingredient, InputLike, MemoState, TraceRecord


__all__ = [
    "BoundHandle",
    "Counters",
    "Family",
    "Subscription",
    "View",
    "batch",
    "iter_memos",
    "iter_records",
    "refresh",
    "revision",
    "snapshot",
    "spec_of",
    "take",
    "view_of",
]

D = TypeVar("D")

Table = dict[tuple[object, ...], Any]


class BoundHandle:
    """
    Base of the handles that are objects of their own (`db.labels`, a `BoundInterned`),
    bound to one view: `snapshot` does not copy them into the snapshot's instance, which
    makes its own on first access. (Query and input handles, `db.words`, are methods
    bound to the view, which `snapshot` leaves behind too: `_is_handle`.)
    """

    __slots__ = ()


class Counters:
    """Work counters of a view: cheap integers, read by tests and debugging tools."""

    __slots__ = ("dependency_checks", "executions", "invalidations")

    def __init__(self) -> None:
        # Dependencies examined by deep verification.
        self.dependency_checks = 0
        # Query bodies run.
        self.executions = 0
        # Memos marked not clean by mutations.
        self.invalidations = 0


class Subscription:
    """
    One listener on a view's trace hook (`View.subscribe`), and how it ends.

    `cancel()` removes it at once, under the view's lock; so does the end of a `with`
    block on it. `abandon()` only clears a flag, so a garbage-collector callback may call
    it: the listener gets nothing more, and the view forgets it at its next commit.
    """

    __slots__ = ("active", "listener", "view")

    def __init__(self, view: View, listener: Callable[[TraceRecord], None]) -> None:
        self.view = view
        self.listener = listener
        self.active = True

    def __call__(self, record: TraceRecord) -> None:
        if self.active:
            self.listener(record)

    def abandon(self) -> None:
        """Stop delivering (safe from a garbage-collector callback: only a flag changes)."""
        self.active = False

    def cancel(self) -> None:
        """Stop delivering and remove the listener now."""
        self.active = False
        view = self.view
        with view.lock:
            if self in view.listeners:
                view.listeners.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


class Family:
    """What a database shares with its snapshots."""

    __slots__ = ("cyclic", "interned", "interned_bytes", "lock", "sync")

    def __init__(self) -> None:
        # The records of memos that converged in a cycle, `(query, key)`: their
        # dependencies form cycles, which `deep_verify` checks one component at a time.
        self.cyclic: set[tuple[str, tuple[object, ...]]] = set()
        self.interned: dict[str, InternTable] = {}
        self.interned_bytes = 0
        # Flights, readers and the number of live views: see `_sync`.
        self.sync = SyncTable()
        self.lock = threading.Lock()

    def intern_table(self, name: str) -> InternTable:
        """Return the interned table *name*, creating it on first use."""
        table = self.interned.get(name)
        if table is None:
            table = self.interned.setdefault(name, InternTable())
        return table


class _Batch:
    """The deferred changes of one `picante.batch` block, for one view."""

    __slots__ = ("open", "ops", "outer", "refresh")

    def __init__(self, outer: _Batch | None) -> None:
        self.ops: list[_Op] = []
        # A `refresh` inside the block: the batch opens a revision even if nothing changed.
        self.refresh = False
        # The enclosing batch of the same view: this one's changes join it on success.
        self.outer = outer
        self.open = True

    def receiver(self) -> _Batch | None:
        """The innermost batch still open, from this one outwards (`None`: commit now)."""
        batch: _Batch | None = self
        while batch is not None and not batch.open:
            batch = batch.outer
        return batch


# One pending batch per view, per context: a batch covers the code inside its block
# (and tasks it starts, while it is open), not other tasks or threads that mutate meanwhile.
_BATCHES: Final[contextvars.ContextVar[dict[View, _Batch] | None]] = contextvars.ContextVar(
    "picante_batches", default=None
)

_Op = tuple[Table, "InputLike", tuple[object, ...], object]
"""A deferred mutation: (table, input ingredient, key, value or ABSENT)."""


class View:
    """Everything picante keeps for one database instance; lives at `db.__picante__`."""

    __slots__ = (
        "__weakref__",
        "accumulations",
        "base",
        "commits",
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
        "marks",
        "parent",
        "pasts",
        "persistence",
        "readers",
        "revision",
        "shared",
        "sync",
        "tables",
        "tallies",
    )

    def __init__(
        self,
        db: object,
        parent: View | None = None,
        limit: int | None = None,
        lrus: dict[str, int] | None = None,
        accumulations: Any = None,
    ) -> None:
        self.db = db
        self.parent = parent
        self.tables: dict[str, Table] = {}
        # The LRU order of each query that has a capacity in this view (declared `lru=`,
        # or `set_lru`): empty, `install` skips LRU bookkeeping with one check.
        self.lrus: dict[str, Lru] = {}
        if parent is not None and parent.lrus:
            self.lrus = {name: Lru(lru.capacity) for name, lru in parent.lrus.items()}
        elif lrus:
            self.lrus = {name: Lru(capacity) for name, capacity in lrus.items()}
        # Who may still read this view at an old revision (`_sync`), and what is kept for
        # them: the input cells holding old versions, and old memo states for snapshots.
        self.readers = Readers()
        self.histories: list[InputCell] = []
        self.pasts: dict[QueryCell, list[MemoState]] = {}
        # Memos `sweep` marked for re-checking (clean ones only hit, whose use it cannot
        # see), with the revision of the mark.
        self.marks: dict[QueryCell, Revision] = {}
        self.counters = Counters()
        # Per query, how its handle was answered (`Tally`): made with the handle.
        self.tallies: dict[str, Tally] = {}
        self.lock = threading.RLock()
        # Commits started plus commits finished (odd while one is in progress): the loop's
        # thread stores a memo without the lock, and takes it only if this moved meanwhile
        # (`_fetch.install`).
        self.commits = 0
        # Cells changed since the last save (`None` until a first save or load): what an
        # incremental save appends to the log.
        self.dirty: set[InputCell | QueryCell] | None = None
        # What `_persist` knows of the cache file this view was saved to or loaded from;
        # `sweep` tells it what it dropped (`persistence.forget(cells)`).
        self.persistence: Any = None
        # The trace hook: subscriptions given every trace record (`Trace*` in `_store`) of
        # this view. Empty, nothing is built: the runtime checks the list before any record.
        self.listeners: list[Subscription] = []
        if parent is None:
            self.family = Family()
            self.revision: Revision = 0
            self.base: Revision = NEVER
            # last_changed[d]: the last revision at which an input of durability ≥ d changed
            # (for LOW, any new revision); then `NOW`, for memos that read the outside world.
            self.last_changed: list[Revision] = watermarks()
            self.limit = limit
            self.input_bytes = 0
        else:
            self.family = parent.family
            self.revision = self.base = parent.revision
            self.last_changed = list(parent.last_changed)
            self.limit = parent.limit
            self.input_bytes = parent.input_bytes
        # The family's flights and readers, one attribute load away from the fetch path.
        self.sync = self.family.sync
        # The stores results are shared through (`picante.share`; `_share.Shared`), or
        # `None`: then no digest is ever computed. A snapshot shares as its parent did.
        self.shared: Any = None if parent is None else parent.shared
        # What `picante.accumulate` added to this view's memos (`_accumulate.Accumulations`),
        # or `None` when the database declares no `accumulates=`: then nothing is kept.
        self.accumulations: Any = (
            accumulations
            if parent is None or parent.accumulations is None
            else parent.accumulations.fork()
        )

    def subscribe(
        self, listener: Callable[[TraceRecord], None], *, owner: object = None
    ) -> Subscription:
        """
        Give *listener* every trace record of this view from now on: the trace hook.

        The subscription ends with its `cancel()`, at the end of a `with` block on it, or,
        given an *owner*, when *owner* is garbage-collected (`abandon()`). The listener
        runs inside commits and query executions, on their thread: it must be quick and
        must not raise (an error stops that listener's delivery of the current batch).
        While no view has a subscription, the runtime builds no record at all: the hot
        path checks `listeners` (a plain list) before anything else.
        """
        subscription = Subscription(self, listener)
        with self.lock:
            self.listeners.append(subscription)
        if owner is not None:
            weakref.finalize(owner, subscription.abandon)
        return subscription

    def tally(self, name: str) -> Tally:
        """Return the tally of query *name*'s handle, creating it on first use."""
        tally = self.tallies.get(name)
        if tally is None:
            tally = self.tallies.setdefault(name, Tally())
        return tally

    def table(self, name: str) -> Table:
        """Return the table of ingredient *name*, creating it on first use."""
        table = self.tables.get(name)
        if table is None:
            table = self.tables.setdefault(name, {})
        return table

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
        self, table: Table, ingredient: InputLike, key: tuple[object, ...]
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
        if type(cell) is InputCell:
            return self.materialize_input(table, cell.ingredient, cell.key)
        mine = table.get(cell.key)
        if mine is None:
            mine = table.setdefault(cell.key, QueryCell(cell.ingredient, cell.key))
        return cast("QueryCell", mine)

    def adopt(self, cell: QueryCell) -> bool:
        """
        Give *cell* an ancestor's memo valid at the state this snapshot inherited; or, for
        a member of a resolved cycle, its memo as of the revision it was verified at, for
        this view to check as the ancestor would (`False`: neither could be taken).
        """
        view, at = self.parent, self.base
        while view is not None:
            theirs: QueryCell | None = view.tables.get(cell.ingredient.name, {}).get(cell.key)
            if theirs is not None and (view.parent is None or theirs.verified_at >= view.base):
                if take(self, cell, view, theirs, at):
                    return True
                verified_at = theirs.verified_at
                # A component's memos are not clean, so often not known valid here. Run
                # anew rather than checked, a cycle entered at a query that did not opt in
                # would raise where the ancestor answers its memo.
                return (
                    NEVER < verified_at < at
                    and theirs.value is not EVICTED
                    and _on_cycle(self, cell)
                    and take(self, cell, view, theirs, verified_at)
                )
            # No memo of the ancestor's own (none, or older than its base, as a cell `take`
            # made for a dependency it left lazy): as `fetch` there would, look further up.
            at = view.base
            view = view.parent
        return False

    def track_lru(self, cell: QueryCell) -> None:
        """Count *cell*'s value in its query's LRU order (if any), evicting the least recent."""
        lru = self.lrus.get(cell.ingredient.name)
        if lru is None or cell.failure is not None or cell.value is EVICTED:
            return
        victims = lru.add(cell)
        if victims:
            self.evict(cell.ingredient.name, victims)

    def evict(self, name: str, victims: list[QueryCell]) -> None:
        """
        Drop the values of *victims*, memos of query *name* out of its LRU order; only the
        value goes: revalidation still has the bookkeeping.

        Not a member of a resolved cycle: its value is computed with its whole component
        only (run alone, it would read the others' memos, not re-enter the cycle). It
        leaves the LRU order, and keeps its value.
        """
        cyclic = self.family.cyclic
        evicted = 0
        for victim in victims:
            if not cyclic or (name, victim.key) not in cyclic:
                victim.value = EVICTED
                evicted += 1
        self.tally(name).evicted += evicted

    # -- mutations ------------------------------------------------------------------------

    def mutate(
        self, table: Table, ingredient: InputLike, key: tuple[object, ...], value: object
    ) -> Revision:
        """Set (or, with `ABSENT`, remove) an input; defer it inside a batch of this view."""
        _forbid_inside_query(ingredient, "remove" if value is ABSENT else "set")
        batches = _BATCHES.get()
        # (No call at all outside any batch: a set costs P4 ~1.8 µs, a call ~60 ns.)
        if batches is not None and (receiver := self._open_batch(batches)) is not None:
            receiver.ops.append((table, ingredient, key, value))
            return self.revision
        return self.commit([(table, ingredient, key, value)])

    def refresh(self) -> Revision:
        """Open a new revision with no input changed; defer it inside a batch of this view."""
        frame = ACTIVE.get()
        if frame is not None:
            msg = (
                f"refresh() was called inside the running query {fmt_key(*frame.record())}; "
                "queries must not open revisions"
            )
            raise UsageError(msg)
        batches = _BATCHES.get()
        if batches is not None and (receiver := self._open_batch(batches)) is not None:
            receiver.refresh = True
            return self.revision
        return self.commit([], refresh=True)

    def _open_batch(self, batches: dict[View, _Batch]) -> _Batch | None:
        """The batch of this view a change made now joins (`None`: it commits at once)."""
        batch = batches.get(self)
        return None if batch is None else batch.receiver()

    def commit(self, ops: list[_Op], *, refresh: bool = False) -> Revision:
        """
        Apply *ops* in order at one new revision (or none, if nothing changes and not
        *refresh*: then a new revision opens all the same, with no input changed).
        """
        with self.lock:
            sync = self.family.sync
            sync.prune(self)
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
            if not changes and not refresh:
                return self.revision
            sizes = self._check_limit(changes) if self.limit is not None else None
            self.commits += 1
            revision = self.revision + 1
            last_changed = self.last_changed
            if not changes:
                # A refresh. Every new revision moves LOW's watermark (a change does, below),
                # so that a memo which read a memo of the outside world never skips
                # re-checking it (see `_store`).
                last_changed[LOWEST] = revision
            readers = bool(self.readers.revisions)
            for index, (cell, value) in enumerate(changes):
                # The replaced version was valid from its `changed_at` up to now: keep it
                # if a reader's revision lies in that range.
                if readers and sync.keeps_version(self, cell.changed_at):
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
            self.commits += 1
            if self.listeners:
                # Forget the subscriptions abandoned since the last commit.
                self.listeners[:] = [each for each in self.listeners if each.active]
                self._announce(changes, revision)
            return revision

    def _announce(self, changes: list[tuple[InputCell, object]], revision: Revision) -> None:
        """Give the listeners the trace records of a commit: changes, invalidations, revision."""
        records: list[TraceRecord] = []
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

    def notify(self, records: list[TraceRecord]) -> None:
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
        pinned = self.readers.pinned
        while stack:
            memo = stack.pop()
            if not memo.clean:
                # Not clean already: by the invariant, its dependents are not clean either.
                continue
            if pinned:
                # Invalidated, not replaced: an evaluation at an old revision can still
                # revalidate it; a snapshot adopts, and needs to know how long it was valid.
                self.keep_past(memo, self.revision, snapshots=True)
            memo.clean = False
            invalidated += 1
            # `dependents_of`, inline: this runs for every memo of a long chain.
            dependents = memo.dependents
            if dependents is not None:
                if type(dependents) is set:
                    stack.extend(dependents)
                else:
                    stack.append(dependents)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        self.counters.invalidations += invalidated

    def known_through(self, memo: QueryCell) -> Revision:
        """
        The last revision *memo*'s memo is known valid at: now if it is clean; else its
        `verified_at`, or the revision of a sweep's mark if later (it was clean then).
        """
        if memo.clean:
            return self.revision
        verified_at = memo.verified_at
        mark = self.marks.get(memo, NEVER) if self.marks else NEVER
        return max(mark, verified_at)

    def keep_past(self, memo: QueryCell, valid_through: Revision, *, snapshots: bool) -> None:
        """
        Save *memo*'s state, valid from its `verified_at` through *valid_through*, if a
        reader's revision (with *snapshots*, a live snapshot's) lies in that range: the
        memo is about to be replaced or to lose what says how long it was valid.
        """
        low = memo.verified_at
        if low == NEVER or not self.sync.keeps_state(self, low, valid_through, snapshots=snapshots):
            return
        self.pasts.setdefault(memo, []).append(self.state_of(memo, valid_through))

    def state_of(self, memo: QueryCell, valid_through: Revision) -> MemoState:
        """*memo*'s `state`, with its accumulated values if this view keeps any."""
        state = memo.state(valid_through)
        return state if self.accumulations is None else self.accumulations.state(memo, state)

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

    def __repr__(self) -> str:
        memos = sum(1 for cell in iter_memos(self) if cell.verified_at >= 0)
        kind = " snapshot" if self.parent is not None else ""
        return f"<{type(self.db).__name__}{kind} rev={self.revision} memos={memos}>"


def memo_at(view: View, cell: QueryCell, at: Revision) -> MemoState | None:
    """Return *cell*'s memo (of *view*) as it was valid at revision *at*, if known."""
    verified_at = cell.verified_at
    if verified_at == at or (
        NEVER < verified_at <= at <= view.revision
        # Clean, or nothing as durable as what it read changed since it was verified.
        and (cell.clean or view.last_changed[cell.durability] <= verified_at)
    ):
        return view.state_of(cell, at)
    if NEVER < verified_at <= at <= view.known_through(cell):
        # Marked by a sweep, for which it was clean: valid from `verified_at` through the
        # mark's revision (the sweep took `clean` away, not what it said).
        return view.state_of(cell, at)
    # Newest first: a later state of the same revision knows more (a value computed where
    # the earlier one, loaded from a cache file without its value, had none).
    states: list[MemoState] = view.pasts.get(cell, [])
    for state in states[::-1]:
        if state.verified_at <= at <= state.valid_through:
            return state
    return None


def knows(view: View, cell: QueryCell, at: Revision) -> bool:
    """
    Tell whether *cell*'s memo in *view* is valid at revision *at*.

    Only then can a memo verified at *at* record it as a dependency: its `changed_at`
    says when its value last differed from the one read at *at*. (A memo verified later
    says nothing about *at*: backdating may have compared across a value it never saw.)
    """
    return memo_at(view, cell, at) is not None


def take(view: View, mine: QueryCell, source: View, theirs: QueryCell, at: Revision) -> bool:
    """
    Install *theirs* (of *source*) as *mine* (of *view*), both at the same state *at*.

    Only when every dependency refers, in *view*, to the version *theirs* read: inputs at
    the same version, queries whose memo here is valid at *at* (taken from *source* first
    when not). Returns whether *mine* is now valid at *at*; `False`: compute it instead.
    Dependencies not yet evaluated in a snapshot are fine as they are while *at* is its
    base: it evaluates them at or after *at*, or takes them from its parent then.
    """
    if knows(view, mine, at):
        return True
    lazy = view.parent is not None and at <= view.base
    # Depth first, explicit stack (chains of any depth): [mine, theirs, state, index].
    stack: list[list[Any]] = []
    if not _push_take(source, stack, mine, theirs, at):
        return False
    # All or nothing: the cells being taken are installed once every one can be (the
    # members of a resolved cycle read each other: one taken alone would be read as a
    # memo by the other's evaluation here, which would not re-enter the cycle).
    taking = {mine}
    taken: list[tuple[QueryCell, MemoState]] = []
    while stack:
        entry = stack[-1]
        target: QueryCell = entry[0]
        state: MemoState = entry[2]
        deps = state.deps
        index: int = entry[3]
        while index < len(deps):
            dep = deps[index]
            ours = view.cell_like(dep)
            if type(ours) is InputCell:
                if ours.version_at(at)[0] != cast("InputCell", dep).version_at(at)[0]:
                    return False
            elif not (
                knows(view, ours, at)
                or (lazy and ours.verified_at == NEVER and not _on_cycle(view, ours))
                or ours in taking
            ):
                entry[3] = index
                if not _push_take(source, stack, ours, cast("QueryCell", dep), at):
                    return False
                taking.add(ours)
                break
            index += 1
        else:
            stack.pop()
            taken.append((target, state))
    for target, state in taken:
        _install_state(view, target, state, at)
    return True


def _on_cycle(view: View, cell: QueryCell) -> bool:
    """
    Tell whether *cell*'s record was a member of a resolved cycle: taken without it, the
    member taken would be read as a plain memo by its evaluation here, which would not
    re-enter the cycle.
    """
    cyclic = view.family.cyclic
    return bool(cyclic) and (cell.ingredient.name, cell.key) in cyclic


def _push_take(
    source: View, stack: list[list[Any]], mine: QueryCell, theirs: QueryCell, at: Revision
) -> bool:
    """Push the taking of *theirs* into *mine*; `False` if *source* has no memo valid at *at*."""
    if mine.verified_at >= at:
        # Newer than *at* yet not valid at *at*: a state of *at* may not replace it.
        return False
    state = memo_at(source, theirs, at)
    if state is None:
        return False
    stack.append([mine, theirs, state, 0])
    return True


def _install_state(view: View, mine: QueryCell, state: MemoState, at: Revision) -> None:
    """Make *state* (of another view, valid at *at*) *mine*'s memo."""
    with view.lock:
        if mine.verified_at >= at:
            return
        deps = tuple(view.cell_like(dep) for dep in state.deps)
        relink(mine, deps_of(mine), deps)
        mine.value = state.value
        mine.failure = state.failure
        mine.changed_at = state.changed_at
        mine.durability = state.durability
        mine.deps = pack_deps(deps)
        if view.accumulations is not None:
            view.accumulations.take(view, mine, state)
        mine.verified_at = at
        mine.clean = False
        if view.lrus:
            view.track_lru(mine)
        if view.dirty is not None:
            view.dirty.add(mine)


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


def _forbid_inside_query(ingredient: Ingredient, operation: str) -> None:
    frame = ACTIVE.get()
    if frame is not None:
        name, key = frame.record()
        msg = (
            f"{ingredient.name}.{operation}() was called inside the running query "
            f"{fmt_key(name, key)}; queries must not mutate inputs"
        )
        raise UsageError(msg)


def iter_records(view: View) -> Iterator[InputCell | QueryCell]:
    """
    Every record of *view*: its input cells and its query cells, computed or not.

    The tables are copied as they are reached, so records added meanwhile (an evaluation
    on the loop's thread stores memos without the lock) change nothing; take
    `view.lock` around the walk for a state no commit changes.
    """
    for table in list(view.tables.values()):
        yield from list(table.values())


def iter_memos(view: View) -> Iterator[QueryCell]:
    """Every query cell of *view*, computed or not (`iter_records`'s memos)."""
    for table in list(view.tables.values()):
        for cell in list(table.values()):
            if type(cell) is QueryCell:
                yield cell


def spec_of(cls: type) -> DatabaseSpec:
    """
    Return the ingredient registry of database class *cls*: the `_declare.DatabaseSpec`
    that `@picante.database` stored as `cls.__picante__` (every subclass has its own).

    Raises:
        AttributeError: *cls* is not a database class.
    """
    spec: DatabaseSpec = getattr(cls, "__picante__")  # noqa: B009 - typed through the annotation
    return spec


def view_of(db: object, function: str = "") -> View:
    """
    Return the view of database instance *db*, creating it on first use; *function*
    names the public function that was given *db*, for the error if it is no database.
    """
    try:
        state = vars(db)
    except TypeError:
        raise not_a_database(function or "view_of", db) from None
    view = state.get("__picante__")
    if view is None:
        try:
            spec = spec_of(type(db))
        except AttributeError:
            if function:
                raise not_a_database(function, db) from None
            msg = f"{type(db).__name__} is not a database: decorate it with @picante.database"
            raise UsageError(msg) from None
        # setdefault: two threads touching a new database first keep one view.
        view = state.setdefault(
            "__picante__",
            View(
                db,
                limit=spec.max_state_bytes,
                lrus=spec.lru_capacities,
                accumulations=spec.accumulations(),
            ),
        )
    elif type(view) is not View:
        # The class itself: its `__dict__` holds the `DatabaseSpec` under that name.
        raise not_a_database(function or "view_of", db)
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
    return view_of(db, "revision").revision


def refresh(db: object) -> Revision:
    """
    Open a new revision of *db* without changing any input; return it.

    Salsa's "synthetic write": memos that read the outside world (a volatile query, or one
    that called `report_untracked_read`) re-execute on their next read, and the memos that
    read them re-check them (an equal value recomputes nothing more); every clean memo
    (the usual state of one whose reads did not change, which is never one that reads
    the outside world) stays valid without a walk. Emits only `RevisionBumped`. Safe to
    call from any thread. Inside `picante.batch(db)` it joins the batch, which then opens
    one revision at exit even if nothing else changed, and returns the current revision.

    Raises:
        UsageError: *db* is not a database, or a query is running in this context.
    """
    return view_of(db, "refresh").refresh()


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
    snapshot may still read, and only those. Once the snapshot is garbage-collected (a
    snapshot and its view refer to each other, so that is at the next collection), they
    are released at the database's next commit (with more than 64 live snapshots and
    evaluations, at a later one: such sweeps are amortized).

    Raises:
        UsageError: *db* is not an instance of a `@picante.database` class.
    """
    view = view_of(db, "snapshot")
    cls = type(db)
    copy = cls.__new__(cls)
    attributes = vars(copy)
    # A copy first: another thread may be adding a handle to the instance meanwhile.
    for name, value in vars(db).copy().items():
        if name != "__picante__" and not _is_handle(value):
            attributes[name] = value
    with view.lock:
        sync = view.family.sync
        child = View(copy, parent=view)
        sync.add_reader(view, child.base, child, snapshot=True)
        sync.add_view(child)
    attributes["__picante__"] = child
    return copy


def _is_handle(value: object) -> bool:
    """Tell whether *value* is a handle bound to a view (not copied into snapshots)."""
    return isinstance(value, BoundHandle) or (
        isinstance(value, MethodType) and isinstance(value.__self__, View)
    )


@contextlib.contextmanager
def batch(db: object) -> Generator[None]:
    """
    Defer every `set` and `remove` on *db* inside the block; apply them at exit, at once.

    At exit the changes are applied in order at one new revision (none if nothing
    changed). If the block raises, all of them are discarded. Reads inside the block see
    the state before the batch, and `set`/`remove` return the current revision.

    A batch opened inside a batch of the same database joins the outer one when it
    exits normally; if it raises, its own changes are discarded, whether or not the
    outer block catches the error. The batch covers the code in the block and tasks
    started from it while the block runs; a change such a task makes after the block
    has exited is not deferred (it applies at once, or joins a batch still open around
    it). Other tasks and threads mutate directly.

    Raises:
        LimitExceededError: The changes would exceed `max_state_bytes`; none is applied.

    Examples:
        ```python
        with picante.batch(db):  # one revision for both, or none if the block raises
            db.source.remove("old.md")
            db.source.set("new.md", text)
        ```
    """
    view = view_of(db, "batch")
    batches = _BATCHES.get()
    outer = None if batches is None else batches.get(view)
    pending = _Batch(outer if outer is not None and outer.open else None)
    token = _BATCHES.set({**(batches or {}), view: pending})
    try:
        yield
    except BaseException:
        pending.open = False
        pending.ops.clear()
        raise
    finally:
        pending.open = False
        _BATCHES.reset(token)
    receiver = None if pending.outer is None else pending.outer.receiver()
    if receiver is not None:
        receiver.ops.extend(pending.ops)
        receiver.refresh = receiver.refresh or pending.refresh
    elif pending.ops or pending.refresh:
        view.commit(pending.ops, refresh=pending.refresh)
