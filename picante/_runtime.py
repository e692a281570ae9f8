"""
The state of one database instance (a *view*) and the commit of mutations to it.

A view owns a revision clock, one table per ingredient (key → cell), the per-durability
watermarks, the frames in flight, and the counters the debugging tools read. Mutations
(`commit_set`, `commit_remove`) are the only code that moves the clock. A commit is a
single critical section under the view's lock:

1. compare the new value with the current one (equal set, absent remove: no-op);
2. keep the old version if an evaluation bound to an older revision may still read it;
3. bump the revision, stamp the cell, raise the durability watermarks;
4. push: mark every memo that transitively read the cell as not clean.

Reads never take the lock: on one event loop they cannot interleave with a commit made
on the loop, and a commit from another thread publishes the new value before it moves the
revision, so a reader sees the state before or after it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast

from ._errors import UsageError
from ._frames import ACTIVE
from ._store import ABSENT, Durability, InputCell, QueryCell, Revision


if TYPE_CHECKING:
    from ._frames import Frame


__all__ = ["Counters", "View", "revision", "view_of"]


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


class View:
    """Everything picante keeps for one database instance; lives at `db.__picante__`."""

    __slots__ = (
        "active",
        "counters",
        "db",
        "histories",
        "last_changed",
        "lock",
        "revision",
        "side_flights",
        "tables",
        "waits",
    )

    def __init__(self, db: object) -> None:
        self.db = db
        self.revision: Revision = 0
        # tables[ingredient name] = {key: cell}
        self.tables: dict[str, dict[tuple[object, ...], Any]] = {}
        # last_changed[d]: the last revision at which an input of durability ≥ d changed.
        self.last_changed: list[Revision] = [0] * len(Durability)
        # Frames in progress per revision: an input keeps old versions while any runs.
        self.active: dict[Revision, int] = {}
        self.histories: list[InputCell] = []
        # Flights for a revision other than the one in `cell.flight`: {(cell, rev): frame}.
        self.side_flights: dict[tuple[QueryCell, Revision], Frame] = {}
        # Waits in progress, keyed by the waiter's future: (waiting frame, awaited frame).
        self.waits: dict[object, tuple[Frame, Frame]] = {}
        self.counters = Counters()
        self.lock = threading.RLock()

    def table(self, name: str) -> dict[tuple[object, ...], Any]:
        """Return the table of ingredient *name*, creating it on first use."""
        table = self.tables.get(name)
        if table is None:
            table = self.tables.setdefault(name, {})
        return table

    # -- frames in progress ------------------------------------------------------------

    def enter(self, revision: Revision) -> None:
        """Note that a frame bound to *revision* started."""
        self.active[revision] = self.active.get(revision, 0) + 1

    def leave(self, revision: Revision) -> None:
        """Note that a frame bound to *revision* ended; drop versions nobody needs."""
        left = self.active[revision] - 1
        if left:
            self.active[revision] = left
            return
        del self.active[revision]
        if self.histories and (not self.active or min(self.active) >= self.revision):
            for cell in self.histories:
                cell.history = None
            self.histories.clear()

    def flight(self, cell: QueryCell, revision: Revision) -> Frame | None:
        """Return the frame in progress for *cell* at *revision*, if any."""
        frame: Frame | None = cell.flight
        if frame is not None and frame.revision == revision:
            return frame
        if self.side_flights:
            return self.side_flights.get((cell, revision))
        return None

    def start_flight(self, frame: Frame) -> None:
        """Register *frame* as the flight of its cell at its revision."""
        cell = frame.cell
        if cell.flight is None:
            cell.flight = frame
        else:
            self.side_flights[cell, frame.revision] = frame
        self.enter(frame.revision)

    def end_flight(self, frame: Frame) -> None:
        """Unregister *frame*."""
        cell = frame.cell
        if cell.flight is frame:
            cell.flight = None
        else:
            del self.side_flights[cell, frame.revision]
        self.leave(frame.revision)

    # -- mutations ---------------------------------------------------------------------

    def commit_set(
        self,
        cell_table: dict[tuple[object, ...], Any],
        ingredient: Any,
        key: tuple[object, ...],
        value: object,
    ) -> Revision:
        """Set an input cell to *value*; return the view's revision afterwards."""
        _forbid_inside_query(ingredient, "set")
        with self.lock:
            cell: InputCell | None = cell_table.get(key)
            if cell is None:
                cell = InputCell(ingredient, key, ABSENT, 0)
                cell_table[key] = cell
            elif cell.value is not ABSENT and ingredient.eq(cell.value, value):
                return self.revision
            return self._commit(cell, value)

    def commit_remove(
        self, cell_table: dict[tuple[object, ...], Any], ingredient: Any, key: tuple[object, ...]
    ) -> Revision:
        """Remove an input cell's value; return the view's revision afterwards."""
        _forbid_inside_query(ingredient, "remove")
        with self.lock:
            cell: InputCell | None = cell_table.get(key)
            if cell is None or cell.value is ABSENT:
                return self.revision
            return self._commit(cell, ABSENT)

    def _commit(self, cell: InputCell, value: object) -> Revision:
        revision = self.revision + 1
        if self.active and min(self.active) < revision:
            if cell.history is None:
                cell.history = []
                self.histories.append(cell)
            cell.history.append((cell.changed_at, cell.value))
        cell.value = value
        cell.changed_at = revision
        durability: int = cell.ingredient.durability
        last_changed = self.last_changed
        for level in range(durability + 1):
            last_changed[level] = revision
        self._invalidate(cell)
        # Published last: a reader on another thread sees the new revision only after the
        # new value and the invalidation are in place.
        self.revision = revision
        return revision

    def _invalidate(self, cell: InputCell) -> None:
        """Mark every clean memo that transitively read *cell* as not clean."""
        if not cell.dependents:
            return
        stack = list(cell.dependents)
        invalidated = 0
        while stack:
            memo = stack.pop()
            if not memo.clean:
                # Not clean already: by the invariant, its dependents are not clean either.
                continue
            memo.clean = False
            invalidated += 1
            if memo.dependents:
                stack.extend(memo.dependents)
        self.counters.invalidations += invalidated

    def __repr__(self) -> str:
        memos = sum(
            1
            for table in self.tables.values()
            for cell in table.values()
            if isinstance(cell, QueryCell) and cell.verified_at >= 0
        )
        return f"<{type(self.db).__qualname__} rev={self.revision} memos={memos}>"


def _forbid_inside_query(ingredient: Any, operation: str) -> None:
    frame = ACTIVE.get()
    if frame is not None:
        name, key = frame.record()
        from ._errors import fmt_key

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
        if getattr(type(db), "__picante__", None) is None:
            msg = f"{type(db).__name__} is not a database: decorate it with @picante.database"
            raise UsageError(msg)
        # setdefault: two threads touching a new database first keep one view.
        view = state.setdefault("__picante__", View(db))
    return cast("View", view)


def revision(db: object) -> Revision:
    """
    Return the current revision of *db*.

    A new database is at revision 0; every effective mutation adds one, and no-ops
    (setting an equal value, removing an absent key) leave it where it is.

    Raises:
        UsageError: *db* is not an instance of a `@picante.database` class.
    """
    return view_of(db).revision
