"""
Dependency frames and cycle detection.

A `Frame` is one fetch of one query record at one revision that could not be answered
from the memo: it revalidates the memo and, if needed, runs the query. While it runs the
query, the frame is the value of the `ACTIVE` context variable, so every read the query
makes, also from child tasks (`asyncio.gather` and `TaskGroup` copy the context), is
recorded in `frame.deps`. The frame is also the single flight of its record: callers
that arrive while it is in progress become followers and receive its outcome.

Cycles. `frame.parent` is the frame on whose behalf this one runs (the query that
asked, also when it belongs to another view or another database), so a frame's
ancestors are the records its task, or its parent's task, is waiting for. Every wait in
progress on an event loop is recorded as a pair of frames (`waits_on`), whatever
database they belong to. Before a frame waits on another, `find_cycle` asks whether the
awaited frame can, through its descendants and their waits, reach the waiting frame; if
so, waiting would deadlock, and a `CycleError` is raised instead with the chain of
records that closes the loop, unless the cycle resolves (`_cycles`).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, Final

from ._errors import CycleError, UsageError


if TYPE_CHECKING:
    import asyncio
    from collections.abc import Generator, Iterable, Iterator

    from ._store import InputCell, QueryCell, Revision


__all__ = [
    "ACTIVE",
    "NOT_SHARED",
    "PAUSED",
    "PROBING",
    "RETRY",
    "Frame",
    "Pause",
    "add_wait",
    "find_cycle",
    "remove_wait",
    "report_untracked_read",
    "waits_on",
]


class Frame:
    """One revalidation or evaluation of *cell* at *revision* on behalf of *parent*."""

    __slots__ = (
        "__weakref__",
        "accumulated",
        "cell",
        "cycle",
        "deps",
        "followers",
        "heads",
        "home",
        "parent",
        "revision",
        "task",
        "untracked",
        "view",
    )

    def __init__(
        self, view: Any, cell: QueryCell, revision: Revision, parent: Frame | None
    ) -> None:
        # The `View` (typed loosely: frames sit below the runtime in the layering).
        self.view = view
        self.cell = cell
        self.revision = revision
        self.parent = parent
        # Reads of the running query, in first-read order (a dict is an ordered set).
        self.deps: dict[InputCell | QueryCell, None] = {}
        # One future per waiting caller, so that cancelling one waiter cancels only its own.
        self.followers: list[asyncio.Future[Any]] | None = None
        # The query read something picante cannot track (`report_untracked_read`, a
        # query of another database, a cycle): its memo is valid at this revision only.
        # Set by `execute` before the query runs (only it reads it, after).
        self.untracked: bool
        # `task` (set only when started from outside any query) holds the task driving the
        # frame, because the event loop keeps only weak references to tasks.
        self.task: asyncio.Task[None]
        # The cell the flight is registered on: the record's cell in the origin view of the
        # frame's state (`SyncTable.claim`).
        self.home: QueryCell
        # Fixpoint cycles (`_cycles`). `heads`: the frames of the cycle heads whose
        # provisional values this evaluation's outcome depends on (then it is provisional:
        # never memoized, never handed to a follower). `cycle`: while this frame is a
        # cycle head that was re-entered, its iteration state (a `_cycles.Cycle`).
        self.heads: set[Frame] | None = None
        self.cycle: Any = None
        # What `picante.accumulate` added, in order (unset until it does; `_accumulate`).
        # Cycles: a fixpoint iteration that runs the body again must `del` it first, so
        # that only the final iteration's values are kept.
        self.accumulated: list[Any] | None

    def ancestry(self) -> Iterator[Frame]:
        """Yield this frame and every frame it runs on behalf of, innermost first."""
        frame: Frame | None = self
        while frame is not None:
            yield frame
            frame = frame.parent

    def record(self) -> tuple[str, tuple[object, ...]]:
        return (self.cell.ingredient.name, self.cell.key)

    def __repr__(self) -> str:
        name, key = self.record()
        return f"<Frame {name}{key!r} at {self.revision}>"


ACTIVE: Final[contextvars.ContextVar[Frame | None]] = contextvars.ContextVar(
    "picante_active_frame", default=None
)
"""The frame of the query running in the current context, if any."""


PROBING: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar(
    "picante_probing", default=False
)
"""
True while `picante.gather` takes the first step of a query handle's coroutine in a
context of the child's own: a handle that cannot answer from a valid memo then awaits
`Pause()` before doing anything else, and goes on in a task of its own.
"""


class _Paused:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PAUSED"


PAUSED: Final = _Paused()
"""What a probed handle's first step yields: it is no hit, and has done nothing yet."""


class Pause:
    """Awaited by a probed handle that is no hit: stop probing, yield `PAUSED`."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        # In the child's context: its later reads, in its own task, are not probed.
        PROBING.set(False)
        yield PAUSED


def report_untracked_read() -> None:
    """
    Tell picante that the running query read something it cannot track.

    A file's mtime, the clock, a network answer: the memo this evaluation produces is
    valid only at the current revision, and re-executes (once) at each later revision it
    is read at; `picante.refresh(db)` opens one without changing an input. Its readers
    re-check it, and if it comes out equal, nothing more is recomputed. Also from a child
    task of the query (`asyncio.gather`, `TaskGroup`). Declare a query that always does
    this `@picante.query(volatile=True)`.

    Raises:
        UsageError: No query is running in this context.
    """
    frame = ACTIVE.get()
    if frame is None:
        msg = "report_untracked_read() must be called inside a running query"
        raise UsageError(msg)
    frame.untracked = True


class Retry:
    """Outcome sent to followers when the frame they waited on was cancelled."""

    __slots__ = ()


RETRY: Final = Retry()


class _NotShared:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_SHARED"


NOT_SHARED: Final = _NotShared()
"""What `Shared.adopt` returns when no shared result applies: the body runs."""

Waits = dict[object, tuple[Frame, Frame]]

_WAITS: Final[dict[asyncio.AbstractEventLoop, Waits]] = {}
"""The waits in progress, per event loop: an entry exists only while a wait does."""


def add_wait(loop: asyncio.AbstractEventLoop, future: object, pair: tuple[Frame, Frame]) -> Waits:
    """
    Record that *pair*'s waiting frame waits on its awaited frame until *future* is done;
    return every wait in progress on *loop*.

    Waits are kept per event loop, not per database: a cycle may run through several
    databases, and all of a loop's frames wait on each other only on that loop's thread.
    """
    waits = _WAITS.get(loop)
    if waits is None:
        waits = _WAITS[loop] = {}
    waits[future] = pair
    return waits


def remove_wait(loop: asyncio.AbstractEventLoop, future: object) -> None:
    """Forget the wait of *future*, if still recorded (and *loop*'s entry with its last)."""
    waits = _WAITS.get(loop)
    if waits is None:
        return
    waits.pop(future, None)
    if not waits:
        del _WAITS[loop]


def waits_on(loop: asyncio.AbstractEventLoop) -> Waits:
    """The waits in progress on *loop* (a copy)."""
    return dict(_WAITS.get(loop, {}))


def _chain(descendant: Frame, ancestor: Frame) -> list[Frame]:
    """Frames from *ancestor* down to *descendant* (both included)."""
    chain: list[Frame] = []
    for frame in descendant.ancestry():
        chain.append(frame)
        if frame is ancestor:
            break
    chain.reverse()
    return chain


def find_cycle(
    waiter: Frame, target: Frame, waits: Iterable[tuple[Frame, Frame]]
) -> CycleError | None:
    """
    The `CycleError` that *waiter* waiting on *target* would close, or `None`.

    *waits* holds a `(waiting frame, awaited frame)` pair for every wait in progress (a
    frame can wait on several at once from child tasks). A frame is blocked until its
    descendants finish (they run on its behalf) and until the frames they wait on finish.
    Waiting closes a cycle when *target* is, or is blocked by, *waiter* or one of
    *waiter*'s ancestors. (A cycle found exists in the evaluation's read order, which its
    recorded reads do not capture: whoever raises it marks *waiter* untracked.)
    """
    try:
        _check_wait(waiter, target, waits)
    except CycleError as cycle:
        # Without its traceback: that holds this call's frames, hence the evaluation
        # frames in their locals, in a reference cycle only the collector can free,
        # and a frame kept alive is a reader (`picante.sweep` would keep what it reads).
        return cycle.with_traceback(None)
    return None


def _check_wait(waiter: Frame, target: Frame, waits: Iterable[tuple[Frame, Frame]]) -> None:
    targets = {id(frame) for frame in waiter.ancestry()}
    # back[id(Y)] = (B, A): B, a descendant of the reached frame A, waits on Y.
    back: dict[int, tuple[Frame, Frame] | None] = {id(target): None}
    frontier = [target]
    while frontier:
        for frame in frontier:
            if id(frame) in targets:
                path = [*_back_path(frame, back), *_chain(waiter, frame)[1:], target]
                raise CycleError([f.record() for f in path])
        next_frontier: list[Frame] = []
        for blocked, awaited in waits:
            if id(awaited) in back:
                continue
            for ancestor in blocked.ancestry():
                if id(ancestor) in back:
                    back[id(awaited)] = (blocked, ancestor)
                    next_frontier.append(awaited)
                    break
        frontier = next_frontier


def _back_path(last: Frame, back: dict[int, tuple[Frame, Frame] | None]) -> list[Frame]:
    """The chain of frames from the search's start down to *last*, following waits."""
    segments: list[list[Frame]] = [[last]]
    frame = last
    while (step := back[id(frame)]) is not None:
        blocked, ancestor = step
        segments.append(_chain(blocked, ancestor))
        frame = ancestor
    return [frame for segment in reversed(segments) for frame in segment]
