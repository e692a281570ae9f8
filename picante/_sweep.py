"""
Sweeping: drop the memos, and the absent input cells, that recent revisions did not need.

A memo is *used* if it was verified (checked or computed) during the last `unused_for`
revisions. What a used memo read, directly or not, stays too: it revalidates through it.
So does everything a clean memo read: a clean memo is valid without being checked, so a
read of one (a hit) leaves no trace. Keeping hits free is worth more than knowing of
them; instead, a sweep *marks* each clean memo that nothing used reaches (it is no longer
clean, and `View.marks` holds the revision of the mark). Read again, it is checked (in
O(1) by durability, or by a walk) and so becomes used; not read, it is dropped by the
first sweep at least `unused_for` revisions after the mark. So a memo nobody reads goes
`unused_for` revisions after its last use, as seen by the sweeps: at most one sweep
later than if hits left a trace. Sweeping twice in a row drops nothing more.

Kept all the same: a memo being evaluated (a flight on its cell), and what live snapshots
can still read (states valid at a snapshot's revision). An absent input cell goes when no
kept memo read it and it holds no old version a reader needs; a present input is never
dropped. Results never change: a dropped memo that is read again is recomputed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import UsageError
from ._runtime import iter_memos, knows, view_of
from ._store import ABSENT, NEVER, InputCell, QueryCell, deps_of, discard_dependent


if TYPE_CHECKING:
    from ._runtime import View


__all__ = ["sweep"]


def sweep(db: object, *, unused_for: int = 1) -> int:
    """
    Drop every memo of *db* not used during its last *unused_for* revisions; return how
    many records (memos and absent input cells) were dropped.

    A memo is used when it is computed or revalidated; everything a used memo read (it
    may be revalidated through it) is kept with it. A hit on a memo that stayed valid
    leaves no trace, so such a memo, if nothing used reaches it, is only marked for
    re-checking by this sweep, and dropped by the first sweep `unused_for` revisions
    later unless it was read meanwhile (a read of a marked memo checks it: a walk, or
    O(1) by durability).
    Absent input cells go when no kept memo read them. Results never change: a dropped
    memo that is read again is recomputed. The next save leaves the dropped records out
    (an incremental save records their deletion). Live snapshots keep what they can
    still read. Call it between queries, on the thread that runs them (a long-running
    program: after each rebuild, or when idle).

    Raises:
        UsageError: *db* is not a database; *unused_for* is not a positive int; or a
            query of *db* is running.
    """
    view = view_of(db, "sweep")
    if type(unused_for) is not int or unused_for < 1:
        msg = f"sweep(): unused_for must be a positive int, got {unused_for!r}"
        raise UsageError(msg)
    with view.lock:
        view.sync.prune(view, force=True)
        _check_idle(view)
        return _sweep(view, view.revision - unused_for + 1)


def _check_idle(view: View) -> None:
    """Raise `UsageError` if an evaluation flies on a cell of *view* or of its ancestors."""
    # A snapshot's evaluations at its base state fly on its ancestors' cells: any of them
    # may hold this view's cells in its frame, so any flight in the lineage refuses.
    running = bool(view.sync.extra)
    lineage: View | None = view
    while lineage is not None and not running:
        running = any(cell.flight is not None for cell in iter_memos(lineage))
        lineage = lineage.parent
    if running:
        msg = f"sweep() cannot run while a query of this {type(view.db).__name__} runs"
        raise UsageError(msg)


def _sweep(view: View, horizon: int) -> int:
    """Drop what recent revisions did not need (under the view's lock); return the count."""
    pinned = view.readers.pinned
    pasts = view.pasts
    marks = view.marks
    revision = view.revision
    used: list[InputCell | QueryCell] = []
    # Clean memos, and memos marked less than `unused_for` revisions ago: not known to be
    # used, not known to be unused either.
    unknown: list[InputCell | QueryCell] = []
    for memo in iter_memos(view):
        if (
            memo.verified_at >= horizon
            # Kept for a reader: a state saved for it, or valid at a snapshot's revision.
            or memo in pasts
            or (pinned and any(knows(view, memo, at) for at in pinned))
        ):
            used.append(memo)
        elif memo.clean or marks.get(memo, NEVER) >= horizon:
            unknown.append(memo)
    reached: set[InputCell | QueryCell] = set()
    # What the states kept for readers read: a snapshot may still take them.
    _close(
        used + [dep for states in pasts.values() for state in states for dep in state.deps], reached
    )
    kept = set(reached)
    _close(unknown, kept)
    dropped: list[InputCell | QueryCell] = []
    inputs: list[tuple[dict[tuple[object, ...], InputCell], tuple[object, ...], InputCell]] = []
    for table in view.tables.values():
        for key, cell in list(table.items()):
            if type(cell) is not QueryCell:
                inputs.append((table, key, cell))
                continue
            if cell in reached:
                if marks.get(cell, NEVER) <= cell.verified_at:
                    # Checked since its mark. Otherwise the mark stays: it still says the
                    # memo was valid through its revision (a snapshot there reuses it).
                    marks.pop(cell, None)
                continue
            if cell in kept:
                if cell.clean:
                    # Only memos nothing used reaches read it: marked, it is checked on its
                    # next read (and so used), or dropped `unused_for` revisions from now.
                    if pinned:
                        view.keep_past(cell, revision, snapshots=True)
                    cell.clean = False
                    marks.setdefault(cell, revision)
                continue
            marks.pop(cell, None)
            for dep in deps_of(cell):
                discard_dependent(dep, cell)
            lru = view.lrus.get(cell.ingredient.name)
            if lru is not None:
                lru.discard(cell)
            del table[key]
            dropped.append(cell)
    # Inputs after the memos, whose reverse edges are gone by now.
    for table, key, cell in inputs:
        if (
            cell in kept
            or cell.value is not ABSENT
            or cell.dependents is not None
            or cell.history is not None
            # A snapshot's absent cell may hide a value it would otherwise inherit.
            or (
                view.parent is not None
                and view.inherited(cell.ingredient.name, key)[1] is not ABSENT
            )
        ):
            continue
        del table[key]
        dropped.append(cell)
    if view.dirty is not None:
        view.dirty.difference_update(dropped)
    if view.accumulations is not None:
        view.accumulations.forget(dropped)
    if view.persistence is not None:
        # The next save records their deletion (the cells themselves are not kept).
        view.persistence.forget(dropped)
    return len(dropped)


def _close(cells: list[InputCell | QueryCell], into: set[InputCell | QueryCell]) -> None:
    """Add *cells* and everything they read, directly or not, to *into*."""
    stack: list[InputCell | QueryCell] = list(cells)
    while stack:
        cell = stack.pop()
        if cell in into:
            continue
        into.add(cell)
        if type(cell) is QueryCell:
            stack.extend(deps_of(cell))
