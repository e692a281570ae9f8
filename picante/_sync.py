"""
Who is evaluating which record at which state, and which old states someone can still read.

One `SyncTable` per family (a database and its snapshots) makes every decision about
concurrent evaluation and retention; no other code answers these questions itself:

* **State.** A view at revision *r* shows the same state as its parent at *r* while
  *r* is the snapshot's `base` (it has not changed anything yet); the view whose own
  timeline produced *r* is the state's *origin*. Two views at one state see the same
  inputs, so they may share an evaluation.
* **Flights** (`owner`, `claim`, `release`). A flight is the frame evaluating one record
  at one state. It is registered on the record's cell *in the origin view*, so every
  view at that state finds it there: `cell.flight` holds one flight, and the rare second
  flight of the same cell (at another revision) goes to `extra`. A cell whose `flight`
  is `None` has no flight at all, which is the one check the cold path makes. A flight
  that stops being one while it goes on running (a cycle through independent tasks
  handed over, `_cycles.ACROSS_TASKS` and `HERE`) is *detached* (`detach`) until it ends:
  while any is, a read must look for its record among the reader's ancestors before it
  starts a frame, or a re-entrant read would evaluate the record anew, and again, for
  ever; the cold paths check `detached` too.
* **Readers** (`add_reader`, `prune`, `keeps_version`, `keeps_state`). Whatever may
  still read a view at an old revision is a reader: a running evaluation (its frame,
  also after it returned, while a task it started holds it) and a live snapshot (its
  view, at the revision it was taken at). A reader is held by a weak reference, so
  nothing runs when it goes away: no garbage-collector callback touches runtime state.
  `prune` notices the dead ones at the next commit (or load), under the view's lock, and
  drops the old versions nobody can read any more. Past `_SMALL` readers, prunes are
  amortized: one each time the number of readers has doubled.

Retention rule: an input version valid over revisions `[low, high]` (and a memo state
valid over the same range) is kept while some reader's revision lies in that range.
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final, cast

from ._store import InputCell, QueryCell


if TYPE_CHECKING:
    from ._frames import Frame
    from ._store import Revision


__all__ = ["Readers", "SyncTable"]

NOBODY: Final = sys.maxsize
"""`Readers.oldest` when there is no reader: no revision is newer."""

_SMALL = 64
"""Up to this many readers, every commit prunes them; beyond, prunes are amortized."""


class Readers:
    """The readers of one view: `(revision, weak reference, is a snapshot)` triples."""

    __slots__ = ("entries", "oldest", "pinned", "revisions", "size_at_prune")

    def __init__(self) -> None:
        self.entries: list[tuple[Revision, weakref.ref[Any], bool]] = []
        # Derived at each prune: the revisions of live readers, and of live snapshots alone,
        # and the oldest of them (`NOBODY` if none): one comparison tells the fetch path
        # that no reader is older than the revision it installs at.
        self.revisions: tuple[Revision, ...] = ()
        self.pinned: tuple[Revision, ...] = ()
        self.oldest: Revision = NOBODY
        self.size_at_prune = 0


class SyncTable:
    """The flights and readers of one family (see the module docstring)."""

    __slots__ = ("detached", "extra", "lock", "snapshots", "views")

    def __init__(self) -> None:
        # Flights of a cell beyond the one in `cell.flight`: {(cell, revision): frame}.
        self.extra: dict[tuple[QueryCell, Revision], Frame] = {}
        # Frames that were flights and still run (see the module docstring).
        self.detached: set[Frame] = set()
        # The family's snapshots, and how many views are alive as of the last `prune`
        # (1: no other view can share a flight). Views of one family have locks of their
        # own: these have this one.
        self.snapshots: list[weakref.ref[Any]] = []
        self.views = 1
        self.lock = threading.Lock()

    def add_view(self, view: object) -> None:
        """Count a new snapshot *view*."""
        with self.lock:
            self.snapshots.append(weakref.ref(view))
            self.views += 1

    # -- flights ------------------------------------------------------------------------

    @staticmethod
    def origin(view: Any, cell: QueryCell, revision: Revision) -> QueryCell:
        """The cell of *cell*'s record in the view that produced *view*'s state at *revision*."""
        if view.parent is None or revision > view.base:
            return cell
        origin = view.parent
        while origin.parent is not None and revision <= origin.base:
            origin = origin.parent
        table = origin.table(cell.ingredient.name)
        found: QueryCell | None = table.get(cell.key)
        if found is None:
            found = table.setdefault(cell.key, QueryCell(cell.ingredient, cell.key))
        return cast("QueryCell", found)

    def owner(self, view: Any, cell: QueryCell, revision: Revision) -> Frame | None:
        """The frame evaluating *cell*'s record at *view*'s state *revision*, if any."""
        if view.parent is not None and self.views > 1:
            cell = self.origin(view, cell, revision)
        frame: Frame | None = cell.flight
        if frame is None or frame.revision == revision:
            return frame
        return self.extra.get((cell, revision)) if self.extra else None

    def claim(self, frame: Frame) -> None:
        """Register *frame* as the flight of its record at its state (none may exist)."""
        cell = frame.cell
        view = frame.view
        if view.parent is not None:
            cell = self.origin(view, cell, frame.revision)
        frame.home = cell
        if cell.flight is None:
            cell.flight = frame
        else:
            self.extra[cell, frame.revision] = frame

    def holds(self, frame: Frame) -> bool:
        """Tell whether *frame* is still registered as a flight."""
        home = getattr(frame, "home", None)
        if home is None:
            return False
        return home.flight is frame or self.extra.get((home, frame.revision)) is frame

    def release(self, frame: Frame) -> None:
        """Unregister *frame*; a flight of the same cell at another revision takes its place."""
        if self.detached:
            self.detached.discard(frame)
        cell = frame.home
        if cell.flight is frame:
            cell.flight = None
            if self.extra:
                for key in self.extra:
                    if key[0] is cell:
                        cell.flight = self.extra.pop(key)
                        break
        elif self.extra.get((cell, frame.revision)) is frame:
            del self.extra[cell, frame.revision]

    def detach(self, frame: Frame) -> None:
        """Unregister *frame*, a flight that goes on running, until it is released."""
        self.release(frame)
        self.detached.add(frame)

    # -- readers ------------------------------------------------------------------------

    def add_reader(
        self, view: Any, revision: Revision, holder: object, *, snapshot: bool
    ) -> weakref.ref[Any]:
        """Record that *holder* may read *view* at *revision* while it lives (under the lock)."""
        readers: Readers = view.readers
        reference = weakref.ref(holder)
        readers.entries.append((revision, reference, snapshot))
        if revision not in readers.revisions:
            readers.revisions = (*readers.revisions, revision)
            readers.oldest = min(readers.oldest, revision)
        if snapshot and revision not in readers.pinned:
            readers.pinned = (*readers.pinned, revision)
        if len(readers.entries) > 2 * readers.size_at_prune + _SMALL:
            # Many evaluations or snapshots and no commit: forget the dead ones now and then.
            self.prune(view)
        return reference

    def prune(self, view: Any, *, force: bool = False) -> None:
        """
        Forget dead readers of *view*; drop what no reader can read any more (under the lock).

        With many readers, a prune runs only once their number has doubled since the last
        one (unless *force*): amortized O(1) per reader, at the price of keeping what dead
        readers could read a little longer.
        """
        readers: Readers = view.readers
        entries = readers.entries
        if not entries or (
            not force and len(entries) > _SMALL and len(entries) <= 2 * readers.size_at_prune
        ):
            return
        live: list[tuple[Revision, weakref.ref[Any], bool]] = []
        snapshot_gone = False
        for entry in entries:
            if entry[1]() is None:
                snapshot_gone = snapshot_gone or entry[2]
            else:
                live.append(entry)
        readers.size_at_prune = len(live)
        if len(live) == len(entries):
            return
        readers.entries = live
        if snapshot_gone:
            with self.lock:
                # Counted over the whole family: a snapshot of a snapshot may outlive the
                # view it was pinned in.
                self.snapshots = [each for each in self.snapshots if each() is not None]
                self.views = 1 + len(self.snapshots)
        readers.revisions = tuple(sorted({entry[0] for entry in live}))
        readers.oldest = readers.revisions[0] if readers.revisions else NOBODY
        readers.pinned = tuple(sorted({entry[0] for entry in live if entry[2]}))
        revisions = readers.revisions
        kept: list[InputCell] = []
        for cell in view.histories:
            history = _needed(cell.history or [], cell.changed_at, revisions)
            cell.history = history or None
            if history:
                kept.append(cell)
        view.histories = kept
        pasts = view.pasts
        for memo in list(pasts):
            # Kept for snapshots (saved while one was pinned) or as answers of evaluations
            # bound to an old revision: either way, while a reader is in range.
            states = [s for s in pasts[memo] if _any_in(revisions, s.verified_at, s.valid_through)]
            if states:
                pasts[memo] = states
            else:
                del pasts[memo]

    @staticmethod
    def keeps_version(view: Any, low: Revision) -> bool:
        """Tell whether an input version valid from *low* up to now must be kept."""
        revisions: tuple[Revision, ...] = view.readers.revisions
        return any(revision >= low for revision in revisions)

    @staticmethod
    def keeps_state(view: Any, low: Revision, high: Revision, *, snapshots: bool) -> bool:
        """
        Tell whether a memo state valid over `[low, high]` must be kept: a reader's revision
        lies in that range (with *snapshots*, only a snapshot's counts).
        """
        readers: Readers = view.readers
        return _any_in(readers.pinned if snapshots else readers.revisions, low, high)


def _any_in(revisions: tuple[Revision, ...], low: Revision, high: Revision) -> bool:
    return any(low <= revision <= high for revision in revisions)


def _needed(
    history: list[tuple[Revision, object]], current: Revision, revisions: tuple[Revision, ...]
) -> list[tuple[Revision, object]]:
    """The versions of *history* (oldest first) valid at one of *revisions*."""
    kept: list[tuple[Revision, object]] = []
    for index, version in enumerate(history):
        until = (history[index + 1][0] if index + 1 < len(history) else current) - 1
        if _any_in(revisions, version[0], until):
            kept.append(version)
    return kept
