"""
The algorithm: fetch a query record at a revision, revalidating or recomputing its memo.

The hot path (a clean memo, or one verified at this revision) lives in the bound query
handle; everything else comes here, in five steps, each a function of that name:

1. **Shallow verify** (`shallow_verify`): verified at this revision, clean (nothing it
   read changed since), or no input of its durability or higher changed since it was
   verified. A memoized error is a memo like a value here and in every step below.
2. **Single flight** (`single_flight`): if a frame evaluates this record at this state
   (in this view, or in another view at the same state: `SyncTable.owner`), wait for it
   as a follower, after checking that waiting cannot close a cycle; otherwise become that
   frame. An outcome that another view computed is kept only if `take` can install its
   memo here; if not, this view computes it itself.
3. **Deep verify** (`deep_verify`): walk the recorded dependencies, deepest first, with an
   explicit stack (no recursion, so chains of any depth work); a dependency that must be
   recomputed is recomputed; if none of them changed after the memo was verified, the
   memo is valid again. A memo that read the outside world (`UNTRACKED`) is never
   valid again: it re-executes.
4. **Execute** (`execute`): run the query with its frame active, so every read is recorded.
5. **Backdate** (`backdate`): if the new outcome equals the old one (the query's `eq`, or
   same error type and args), keep the old `changed_at`, so dependents are not recomputed.

Every frame is bound to the revision at which it started: it reads inputs and memos as
they were at that revision, even if a mutation happens while it is suspended. A frame
started from outside any query runs in its own task, so cancelling its caller cancels
only that caller's wait; a frame started inside a query runs inline in the querying task.
A query of another database (or of another view) read from inside a query is not a
dependency, but its frames still count the reader as their parent, so a cycle through
them is found.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from typing import TYPE_CHECKING, Any, cast

from ._cycles import ACROSS_TASKS, HERE, answer, iterate, provisional, resolve_participant
from ._frames import (
    ACTIVE,
    NOT_SHARED,
    RETRY,
    Frame,
    add_wait,
    find_cycle,
    remove_wait,
    waits_on,
)
from ._runtime import memo_at, relink, take
from ._store import (
    EVICTED,
    HIGHEST,
    LOWEST,
    NEVER,
    UNTRACKED,
    Deps,
    Durability,
    Failure,
    InputCell,
    MemoState,
    QueryCell,
    TraceExecuted,
    default_eq,
    deps_of,
    discard_dependent,
    errors_equal,
    unpack_deps,
)


if TYPE_CHECKING:
    import contextvars
    import weakref
    from collections.abc import Awaitable, Coroutine

    from ._runtime import View
    from ._store import Revision


__all__ = [
    "backdate",
    "caught",
    "deep_verify",
    "execute",
    "fetch",
    "follow",
    "install",
    "settle",
    "shallow_verify",
    "single_flight",
]


# -- 1. shallow verify -------------------------------------------------------------------


def shallow_verify(view: View, cell: QueryCell, revision: Revision) -> bool:
    """Tell whether *cell*'s memo is valid at *revision* without looking at its deps."""
    verified_at = cell.verified_at
    if verified_at == revision:
        return True
    if verified_at == NEVER or verified_at > revision:
        # A memo newer than the revision asked for says nothing about that revision.
        return False
    # Clean: valid from verified_at up to the view's current revision. Durability: nothing
    # this memo can depend on changed since it was verified (never, for `UNTRACKED`).
    return cell.clean or view.last_changed[cell.durability] <= verified_at


def _valid(view: View, cell: QueryCell, revision: Revision) -> bool:
    """`shallow_verify`, recording a memo valid by durability alone as verified now."""
    if not shallow_verify(view, cell, revision):
        return False
    if cell.verified_at < revision == view.revision and not cell.clean:
        # Said explicitly, a snapshot taken now can adopt the memo later.
        _mark_verified(view, cell, revision)
    return True


def _answer(cell: QueryCell) -> Any:
    """The memo's outcome: its failure, or its value."""
    return cell.failure or cell.value


# -- entry ---------------------------------------------------------------------------------


def fetch(view: View, cell: QueryCell, caller: Frame | None) -> Awaitable[Any]:
    """
    Return an awaitable of *cell*'s outcome (a value or a `Failure`) at the caller's state.

    *caller* is the frame of the running query that asks, or `None` from outside any
    query. A caller of another view reads *view* as from outside, at its current revision,
    but stays the parent of what it starts (for cycle detection). The caller records the
    read and re-raises failures. The common cold case inside a query (no memo, no flight)
    returns the frame's coroutine itself: one coroutine layer less. (A handle called from
    outside any query that finds the flight of its state running does not come here: it
    awaits `follow`.)
    """
    own = caller is not None and caller.view is view
    revision = caller.revision if own else view.revision  # type: ignore[union-attr]
    sync = view.sync
    if view.parent is not None:
        if cell.verified_at < view.base:
            # A snapshot's memo older than the snapshot: its parent may know better.
            view.adopt(cell)
    elif (
        own
        and cell.verified_at == NEVER
        and cell.flight is None
        and sync.views == 1
        and revision == view.revision
        and not sync.detached
    ):
        # The cold path: no memo to verify, nobody evaluating it.
        return execute(Frame(view, cell, revision, caller))
    if (
        own
        and revision == view.revision
        and not (shallow_verify(view, cell, revision) and cell.value is not EVICTED)
        and sync.owner(view, cell, revision) is None
        and not sync.detached
    ):
        return _fly(Frame(view, cell, revision, caller), verify=True)
    return single_flight(view, cell, revision, caller, verify=True)


def follow(flight: Frame) -> asyncio.Future[Any]:
    """
    Follow *flight*, of the caller's view and state, from outside any query: a future of
    its outcome, awaited with no coroutine in between (no cycle to check: the caller is
    no frame). If the flight is cancelled the outcome is `RETRY`: fetch again.
    """
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if flight.followers is None:
        flight.followers = [future]
    else:
        flight.followers.append(future)
    return future


# -- 2. single flight --------------------------------------------------------------------


async def single_flight(
    view: View, cell: QueryCell, revision: Revision, caller: Frame | None, *, verify: bool
) -> Any:
    """
    Answer *cell* at *revision*: from the memo, by following the frame evaluating it at
    this state, or by becoming that frame (revalidating first if *verify*).
    """
    own = caller is not None and caller.view is view
    sync = view.sync
    while True:
        if _valid(view, cell, revision) and cell.value is not EVICTED:
            return _answer(cell)
        if revision < view.revision:
            # An evaluation bound to an older revision: another one at that revision may
            # have left its answer there (see `install`).
            past = memo_at(view, cell, revision)
            if past is not None and past.value is not EVICTED:
                return past.failure or past.value
        flight = (
            _reentered(caller, cell, revision)
            if sync.detached and own and caller is not None
            else None
        )
        if flight is None:
            flight = sync.owner(view, cell, revision)
        if flight is None:
            frame = Frame(view, cell, revision, caller)
            if own:
                # Bound to the caller's revision, read through the caller (a reader too).
                return await _fly(frame, verify=verify)
            with view.lock:
                # Under the lock no commit (from another thread) is half done: the frame
                # becomes a reader at a revision that is still current, so every later
                # commit keeps the versions it reads.
                if view.revision != revision:
                    revision = view.revision
                    continue
                sync.claim(frame)
                reader = sync.add_reader(view, revision, frame, snapshot=False)
            if caller is not None:
                # Started by a query of another view: inline, in the querying task.
                return await _fly(frame, verify=verify, claimed=True)
            # Outside any query: drive the frame in a task of its own, so that cancelling
            # this caller cancels only its wait, never the evaluation others share.
            task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(_lead(frame))
            # Weakly: the callback runs a loop step later, and must not keep the frame
            # (a reader) alive until then.
            task.add_done_callback(functools.partial(_abandon, reader))
            frame.task = task
            flight = frame
        outcome = await _follow(flight, caller)
        if outcome is RETRY:
            continue
        if (
            flight.view is view
            or take(view, cell, flight.view, flight.cell, revision)
            # Outside any query: the outcome is the record's at this state all the same
            # (computed at it by another view), only not memoized here. Computing it
            # again could only be done at a newer revision than the call's.
            or caller is None
        ):
            return outcome
        # Computed by another view, but its memo cannot be installed here (a dependency
        # here holds another version, or the memo here is newer): compute it in this
        # view, where the caller's memo can record it.


def _reentered(caller: Frame, cell: QueryCell, revision: Revision) -> Frame | None:
    """The frame of *cell*'s record at *revision* among *caller*'s ancestors, if any."""
    for frame in caller.ancestry():
        if frame.cell is cell and frame.revision == revision:
            return frame
    return None


async def _lead(frame: Frame) -> Any:
    """
    Drive *frame*, a claimed flight, in a task of its own (started from outside any query).

    By the task's first step the memo may have become valid at the frame's revision
    (another view's memo taken, a walk that verified it): then that is the outcome.
    """
    cell = frame.cell
    if shallow_verify(frame.view, cell, frame.revision) and cell.value is not EVICTED:
        frame.view.sync.release(frame)
        outcome = _answer(cell)
        settle(frame, outcome)
        return outcome
    return await _fly(frame, verify=True, claimed=True)


def _abandon(reader: weakref.ref[Frame], task: asyncio.Task[Any]) -> None:
    """If a frame's task ended without running it (cancelled first), release its followers."""
    frame = reader()
    if frame is None:
        return
    sync = frame.view.sync
    if sync.holds(frame):
        sync.release(frame)
        settle(frame, RETRY)


async def _follow(flight: Frame, caller: Frame | None) -> Any:
    """Wait for *flight*'s outcome (or `RETRY` if it was cancelled)."""
    loop = asyncio.get_running_loop()
    if caller is not None:
        cycle = find_cycle(caller, flight, waits_on(loop).values())
        if cycle is not None:
            # The head's provisional value, if the cycle resolves; else the CycleError.
            resolved = await answer(caller, flight, cycle)
            if resolved is HERE:
                # Evaluate the record in this chain instead (the flight goes on for its own).
                flight.view.sync.detach(flight)
                return RETRY
            if resolved is not ACROSS_TASKS:
                return resolved
            _hand_over(caller, loop)
            if find_cycle(caller, flight, waits_on(loop).values()) is not None:
                caller.untracked = True
                raise cycle
    future = follow(flight)
    if caller is not None:
        add_wait(loop, future, (caller, flight))
    try:
        return await future
    finally:
        if caller is not None:
            remove_wait(loop, future)


def _hand_over(waiter: Frame, loop: asyncio.AbstractEventLoop) -> None:
    """
    Let the tasks that wait on *waiter*'s evaluations run them themselves: each frame of
    *waiter*'s chain that another chain waits on stops being its record's flight (it goes
    on, for its own callers), and those waits end with `RETRY`. (`_cycles.ACROSS_TASKS`.)
    """
    chain = {id(frame) for frame in waiter.ancestry()}
    for future, (blocked, awaited) in waits_on(loop).items():
        if id(awaited) in chain and id(blocked) not in chain:
            awaited.view.sync.detach(awaited)
            remove_wait(loop, future)
            waiting = cast("asyncio.Future[Any]", future)  # what `_follow` records
            if not waiting.done():
                waiting.set_result(RETRY)


def settle(frame: Frame, outcome: Any) -> None:
    """
    Hand *outcome* to every follower of *frame* still waiting (`RETRY` if the outcome is
    provisional: a cycle's value before it converged is not theirs to see).
    """
    if frame.followers:
        if frame.heads:
            outcome = RETRY
        for future in frame.followers:
            if not future.done():
                future.set_result(outcome)


def _run(view: View, cell: QueryCell, revision: Revision, caller: Frame) -> Awaitable[Any]:
    """Execute *cell* at *revision* (or join the flight doing it); await the outcome."""
    sync = view.sync
    if cell.flight is None and sync.views == 1 and revision == view.revision and not sync.detached:
        # Nobody can be evaluating it: the common case, decided without a lookup.
        return execute(Frame(view, cell, revision, caller))
    return single_flight(view, cell, revision, caller, verify=False)


def _fly(frame: Frame, *, verify: bool, claimed: bool = False) -> Coroutine[Any, Any, Any]:
    """Be the flight of *frame*'s record: revalidate it first (if *verify*), or execute it."""
    cell = frame.cell
    if verify and cell.durability != UNTRACKED and NEVER < cell.verified_at < frame.revision:
        return _revalidate(frame, claimed=claimed)
    return execute(frame, claimed=claimed)


async def _revalidate(frame: Frame, *, claimed: bool) -> Any:
    """
    Be the flight of *frame*'s record: deep-verify its memo, executing it if that fails.

    The outcome goes to the followers; on cancellation (or any `BaseException`) they get
    `RETRY`, one of them starts a new flight, and nothing is memoized.
    """
    view = frame.view
    cell = frame.cell
    sync = view.sync
    if not claimed:
        sync.claim(frame)
    outcome: Any = RETRY
    delegated = False
    try:
        if (
            cell.value is not EVICTED
            and (
                await deep_verify(view, cell, frame)
                # Or another frame's walk verified it while this one awaited.
                or cell.verified_at == frame.revision
            )
            # The walk may have executed memos of the same query whose values pushed this
            # one's out of its LRU: then it runs again, as an evicted memo does.
            and cell.value is not EVICTED
        ):
            outcome = _answer(cell)
        else:
            # The flight goes on in `execute`, which settles it.
            delegated = True
            return await execute(frame, claimed=True)
    finally:
        if not delegated:
            sync.release(frame)
            settle(frame, outcome)
    return outcome


# -- 3. deep verify ----------------------------------------------------------------------


async def deep_verify(view: View, root: QueryCell, frame: Frame) -> bool:
    """
    Tell whether *root*'s memo is still valid at *frame*'s revision.

    Walks the dependencies deepest first with an explicit stack. A memo none of whose
    dependencies changed after it was verified is marked verified; one that must be
    recomputed is, unless it is *root*, which the caller executes (then `False`).

    In the common case (no snapshot, nobody else evaluating it, no trace listener, no
    shared store) a memo is recomputed right here, as `execute` would: its body is
    awaited from the walk, with no coroutine of its own, and the context's frame is set
    once per body and restored once, when the walk ends.
    """
    revision = frame.revision
    last_changed = view.last_changed
    sync = view.sync
    counters = view.counters
    cyclic = view.family.cyclic
    if cyclic and (root.ingredient.name, root.key) in cyclic:
        return await _verify_component(view, root, frame)
    checks = 0
    token: contextvars.Token[Frame | None] | None = None
    # Entries are [memo, index of the next dependency to check]; index -1 means one of
    # its dependencies could not be brought to this revision, so it must be executed.
    stack: list[list[Any]] = [[root, 0]]
    try:
        while stack:
            entry = stack[-1]
            memo: QueryCell = entry[0]
            index: int = entry[1]
            needs_execution = (
                index < 0
                or memo.durability == UNTRACKED
                or not (NEVER < memo.verified_at <= revision)
            )
            if not needs_execution:
                # No validity check of `memo` itself here: it was pushed because it was not
                # valid, and the root was checked by the caller.
                verified_at = memo.verified_at
                # One record is stored without its tuple (see `QueryCell.deps`).
                deps: Any = memo.deps
                single = deps.__class__ is not tuple  # not `type()`: no narrowing to `tuple`
                count: int = 1 if single else len(deps)
                descended = False
                while index < count:
                    dep: InputCell | QueryCell = deps if single else deps[index]
                    if type(dep) is InputCell:
                        changed_at = (
                            dep.changed_at
                            if dep.changed_at <= revision
                            else dep.version_at(revision)[0]
                        )
                    elif (
                        cyclic
                        and (dep.ingredient.name, dep.key) in cyclic
                        and not _valid(view, dep, revision)
                    ):
                        # A memo of a converged cycle: its component is checked as one.
                        valid = await _verify_component(view, dep, frame)
                        changed_at = dep.changed_at if valid else revision
                    elif (
                        # The common way down a walk, decided inline: a memo neither clean
                        # nor valid by durability, in a database with no snapshot (nothing
                        # to adopt, no other view) and no flight for it.
                        not dep.clean
                        and NEVER < dep.verified_at < revision
                        and last_changed[dep.durability] > dep.verified_at
                        and dep.flight is None
                        and sync.views == 1
                        and view.parent is None
                    ):
                        entry[1] = index
                        stack.append([dep, 0])
                        descended = True
                        break
                    elif _valid(view, dep, revision) or (
                        # A snapshot's memo older than the snapshot: take its parent's.
                        dep.verified_at < view.base
                        and view.parent is not None
                        and view.adopt(dep)
                        and shallow_verify(view, dep, revision)
                    ):
                        changed_at = dep.changed_at
                    elif (
                        NEVER < dep.verified_at < revision
                        and sync.owner(view, dep, revision) is None
                    ):
                        entry[1] = index
                        stack.append([dep, 0])
                        descended = True
                        break
                    else:
                        try:
                            await _run(view, dep, revision, frame)
                        except Exception:  # noqa: BLE001 - e.g. a cycle: the execution reports it
                            return False
                        changed_at = dep.changed_at if dep.verified_at == revision else revision
                    checks += 1
                    if changed_at > verified_at:
                        needs_execution = True
                        break
                    index += 1
                if descended:
                    continue
                if not needs_execution:
                    _mark_verified(view, memo, revision)
                    stack.pop()
                    continue
            # `memo` must be executed; then maybe its parent, and so on up the stack.
            while True:
                if memo is root:
                    return False
                # While this walk awaited, another frame may have brought the memo to this
                # revision: then there is nothing to execute.
                if memo.verified_at != revision:
                    if (
                        memo.flight is None
                        and sync.views == 1
                        and revision == view.revision
                        and not sync.detached
                        and not view.listeners
                        and view.shared is None
                        and not memo.ingredient.cycle
                    ):
                        # What `_run` then `execute` do, inline (see the docstring).
                        child = Frame(view, memo, revision, frame)
                        child.home = memo
                        memo.flight = child
                        # What `_prepare` does, inline.
                        counters.executions += 1
                        memo.why = (
                            revision,
                            memo.verified_at,
                            memo.deps,
                            memo.durability == UNTRACKED,
                            memo.value is EVICTED,
                        )
                        child.untracked = memo.ingredient.volatile
                        current = ACTIVE.set(child)
                        if token is None:
                            token = current
                        outcome: Any = RETRY
                        try:
                            try:
                                result: Any = await memo.ingredient.fn(view.db, *memo.key)
                            except BaseException as error:  # noqa: BLE001 - sorted by `caught`
                                result = caught(error)
                            install(view, child, result)
                            outcome = result
                        finally:
                            if memo.flight is child and not sync.extra:
                                memo.flight = None
                            else:
                                sync.release(child)
                            if child.followers:
                                settle(child, outcome)
                    else:
                        try:
                            await _run(view, memo, revision, frame)
                        except Exception:  # noqa: BLE001 - e.g. a cycle: the execution reports it
                            return False
                stack.pop()
                # Settle the parent's check of this dependency now, rather than on resuming it.
                parent = stack[-1]
                checks += 1
                if memo.verified_at == revision and memo.changed_at <= parent[0].verified_at:
                    parent[1] += 1
                    break
                # The parent must be executed: straight away, without resuming its checks.
                memo = parent[0]
        return True
    finally:
        counters.dependency_checks += checks
        if token is not None:
            ACTIVE.reset(token)


async def _verify_component(view: View, start: QueryCell, frame: Frame) -> bool:
    """
    Tell whether the memos of the converged cycles *start* belongs to are valid at
    *frame*'s revision, and if so mark them verified.

    They read each other, so the walk of `deep_verify` would go round. Checked as one
    instead: if nothing any of them read from outside the component changed since it was
    verified, a new evaluation of the cycle would read the same values and converge to
    the same fixpoint, so all are valid. Otherwise none is known to be: the caller
    executes, and the cycle iterates again.
    """
    cyclic = view.family.cyclic
    revision = frame.revision
    members: list[QueryCell] = []
    seen: set[QueryCell] = {start}
    todo = [start]
    snapshot = view.parent is not None
    while todo:
        member = todo.pop()
        if snapshot and member.verified_at < view.base:
            # The component as the snapshot inherited it, all of it: a member found
            # invalid would run alone, reading the others' memos instead of re-entering.
            view.adopt(member)
        members.append(member)
        for dep in deps_of(member):
            if (
                type(dep) is QueryCell
                and dep not in seen
                and (dep.ingredient.name, dep.key) in cyclic
            ):
                seen.add(dep)
                todo.append(dep)
    for member in members:
        verified_at = member.verified_at
        if not (NEVER < verified_at <= revision) or member.value is EVICTED:
            return await _rerun_component(view, start, members, frame)
        if verified_at == revision:
            continue
        if member.durability == UNTRACKED:
            return await _rerun_component(view, start, members, frame)
        for dep in deps_of(member):
            if dep in seen:
                # A member memoized again at this revision (no longer on the cycle, say)
                # may have a new value: then the memos that read it are not valid.
                if dep.changed_at > verified_at:
                    return await _rerun_component(view, start, members, frame)
                continue
            if type(dep) is InputCell:
                changed_at = (
                    dep.changed_at if dep.changed_at <= revision else dep.version_at(revision)[0]
                )
            elif _valid(view, dep, revision):
                # Valid: clean, or by durability (`verified_at` may be older than now).
                changed_at = dep.changed_at
            else:
                try:
                    await fetch(view, dep, frame)
                except Exception:  # noqa: BLE001 - e.g. a cycle: the execution reports it
                    return False
                changed_at = dep.changed_at if dep.verified_at == revision else revision
            if changed_at > verified_at:
                return await _rerun_component(view, start, members, frame)
    for member in members:
        if member.verified_at != revision:
            _mark_verified(view, member, revision)
    return True


async def _rerun_component(
    view: View, start: QueryCell, members: list[QueryCell], frame: Frame
) -> bool:
    """
    Re-evaluate an invalid component from a member that resolves cycles (one always
    does: it headed the cycle), so that *start* gets its new memo, backdated if its value
    came out the same; `False` if that cannot be done here (then the caller executes).
    """
    if start is frame.cell:
        return False
    head = next((member for member in members if member.ingredient.cycle), None)
    if head is None:
        return False
    try:
        await fetch(view, head, frame)
    except Exception:  # noqa: BLE001 - the reader's own execution reports it
        return False
    return start.verified_at == frame.revision


def _mark_verified(view: View, cell: QueryCell, revision: Revision) -> None:
    """Record that *cell*'s memo is valid at *revision* (without the lock, as `install`)."""
    commits = view.commits
    if commits & 1 or (view.readers.oldest < revision and cell.verified_at < revision):
        with view.lock:
            if view.readers.oldest < revision and cell.verified_at < revision:
                # A reader (a snapshot, an evaluation bound to it) at the old `verified_at`
                # (or up to a sweep's mark) may still need this state. Only there: the walk
                # proved the memo valid at both revisions, not in between (a dependency
                # may have been backdated across a value it never saw).
                view.keep_past(cell, view.known_through(cell), snapshots=False)
            _verified(view, cell, revision)
        return
    _verified(view, cell, revision)
    if view.commits != commits:
        with view.lock:
            _repair(view, cell, revision)


def _verified(view: View, cell: QueryCell, revision: Revision) -> None:
    cell.verified_at = max(cell.verified_at, revision)
    cell.clean = revision == view.revision and all(
        dep.clean for dep in deps_of(cell) if type(dep) is QueryCell
    )
    if view.dirty is not None:
        view.dirty.add(cell)


# -- 4. execute --------------------------------------------------------------------------


async def execute(frame: Frame, *, claimed: bool = False) -> Any:
    """
    Be the flight of *frame*'s record: run its query with the frame active, memoize the
    outcome and hand it to the followers.

    On cancellation (or any `BaseException`) the followers get `RETRY`, one of them starts
    a new flight, and nothing is memoized.
    """
    view = frame.view
    cell = frame.cell
    sync = view.sync
    if not claimed:
        sync.claim(frame)
    outcome: Any = RETRY
    try:
        listeners = view.listeners
        started_at = time.perf_counter() if listeners else 0.0
        _prepare(view, frame)
        shared = view.shared if cell.ingredient.share else None
        token = ACTIVE.set(frame)
        adopted = False
        try:
            # A shared result is adopted when the reads its entry records come out equal
            # here, read in this frame, as the body would have (`_share`).
            result: Any = NOT_SHARED if shared is None else await shared.adopt(frame)
            if result is NOT_SHARED:
                result = await cell.ingredient.fn(view.db, *cell.key)
                if shared is not None and not frame.heads:
                    shared.publish(frame, result)
            else:
                adopted = True
        except BaseException as error:  # noqa: BLE001 - sorted by `caught`
            result = caught(error)
        finally:
            ACTIVE.reset(token)
        cells: set[QueryCell] | None = None
        members: dict[QueryCell, tuple[Frame, Any]] = {}
        joined = False
        try:
            if frame.cycle is not None:
                # This evaluation headed a cycle (its value was read while it ran): iterate.
                result, members, cells = await iterate(
                    frame, result, functools.partial(_iteration, frame)
                )
            elif frame.heads and cell.ingredient.cycle:
                result, joined = await resolve_participant(frame, result)
        except BaseException as error:  # noqa: BLE001 - sorted by `caught`
            # `cycle_fn` or a fallback raised: the outcome, as if the body had.
            result = caught(error)
            frame.cycle = None
            if frame.heads:
                frame.heads.discard(frame)
            cells = None if frame.heads else {cell}
        if cells is not None:
            _install_component(view, frame, result, members, cells)
        elif (
            cell.ingredient.cycle
            and not frame.heads
            and cell.verified_at >= frame.revision
            and (known := memo_at(view, cell, frame.revision)) is not None
            and known.value is not EVICTED
        ):
            # Memoized for this revision while this evaluation ran: by the evaluation of
            # a cycle it was handed over to (`HERE`), or that it waited for and that
            # ended provisional (then a newer revision may have replaced the memo, and
            # kept this state for readers here). This one may have read the other
            # members' memos as plain values, not re-entering the cycle: that memo is
            # the answer.
            result = known.failure or known.value
        elif not joined:
            install(view, frame, result)
        outcome = result
        if adopted:
            # No body ran: not an execution, for `stats` and the trace hook alike.
            view.counters.executions -= 1
        elif listeners:
            record = TraceExecuted(
                frame.revision,
                cell.ingredient.name,
                cell.key,
                getattr(cell, "why", None) is None,
                cell.changed_at == frame.revision,
                type(result) is Failure,
                time.perf_counter() - started_at,
            )
            view.notify([record])
    finally:
        sync.release(frame)
        if frame.followers:
            settle(frame, outcome)
    return outcome


def _install_component(
    view: View,
    head: Frame,
    outcome: Any,
    members: dict[QueryCell, tuple[Frame, Any]],
    cells: set[QueryCell],
) -> None:
    """
    Memoize a cycle *head* resolved: its *outcome* and its other participants' last
    outcomes (*members*). Each read the others, so none is valid before all are: their
    reads of any participant (*cells*) count as consistent (`install`'s *component*),
    and the family records them as cyclic so that `deep_verify` checks them as one
    (`_verify_component`).
    """
    # First: installing tracks LRU orders, and a member of a component is never evicted.
    cyclic = view.family.cyclic
    cyclic.add((head.cell.ingredient.name, head.cell.key))
    cyclic.update((cell.ingredient.name, cell.key) for cell in members)
    install(view, head, outcome, cells)
    for frame, member in members.values():
        frame.heads = None
        install(view, frame, member, cells)
    if view.accumulations is not None:
        frames = [head, *(frame for frame, _ in members.values())]
        view.accumulations.link_component(frames, head.revision)
    installed = [cell for cell in (head.cell, *members) if cell.verified_at == head.revision]
    # Each memo's durability was computed before the others existed: the component's is
    # the lowest of all (a member that read the outside world makes the others LOWEST,
    # as a reader of such a memo).
    floor = min((cell.durability for cell in installed), default=HIGHEST)
    if floor == UNTRACKED:
        floor = LOWEST
    for cell in installed:
        cell.clean = False
        if cell.durability != UNTRACKED and cell.durability > floor:
            cell.durability = floor


async def _iteration(frame: Frame) -> Any:
    """Run *frame*'s body once more, for the next iteration of the cycle it heads."""
    view = frame.view
    cell = frame.cell
    view.counters.executions += 1
    # Only the last iteration's accumulated values are the evaluation's (`_accumulate`).
    with contextlib.suppress(AttributeError):
        del frame.accumulated
    listeners = view.listeners
    started_at = time.perf_counter() if listeners else 0.0
    token = ACTIVE.set(frame)
    try:
        result = await cell.ingredient.fn(view.db, *cell.key)
    except BaseException as error:  # noqa: BLE001 - sorted by `caught`
        result = caught(error)
    finally:
        ACTIVE.reset(token)
    if listeners:
        # Each iteration is an execution, for the trace hook as for `stats`.
        record = TraceExecuted(
            frame.revision,
            cell.ingredient.name,
            cell.key,
            False,
            True,
            type(result) is Failure,
            time.perf_counter() - started_at,
        )
        view.notify([record])
    return result


def _prepare(view: View, frame: Frame) -> None:
    """Count *frame*'s execution and note what explains it, before its body runs."""
    view.counters.executions += 1
    cell = frame.cell
    if cell.changed_at != NEVER:
        # A recomputation (or a stale memo from a cache file): keep what explains it,
        # cheaply (`deps` as stored); `debug.explain` works out the reason when asked.
        cell.why = (
            frame.revision,
            cell.verified_at,
            cell.deps,
            cell.durability == UNTRACKED,
            cell.value is EVICTED,
        )
    # Only the body's reads count (not a cycle met while revalidating first).
    frame.untracked = cell.ingredient.volatile


def caught(error: BaseException) -> Failure:
    """
    The outcome of a body that raised *error* (called in the `except` block that caught
    it): a `Failure` to memoize, or the error re-raised if it cancels the evaluation.
    """
    if not isinstance(error, Exception):
        task = asyncio.current_task()
        if not isinstance(error, asyncio.CancelledError) or task is None or task.cancelling():
            raise error
        # The query raised CancelledError without being cancelled (it awaited something
        # that was): that is its outcome, not a cancellation.
    return _failure(error)


def _failure(error: BaseException) -> Failure:
    """
    Memoize *error* with its traceback from the query body down.

    Without this function's own frame, and with the locals of picante's finished frames
    in it cleared: a memoized error must not keep frames alive (a live frame is a reader
    whose revision its view keeps old versions for).
    """
    traceback = error.__traceback__
    traceback = None if traceback is None else traceback.tb_next
    node = traceback
    while node is not None:
        filename = node.tb_frame.f_code.co_filename
        if filename == __file__ or filename.startswith("<picante"):
            with contextlib.suppress(RuntimeError):  # a frame still running keeps its locals
                node.tb_frame.clear()
        node = node.tb_next
    return Failure(error.with_traceback(traceback), traceback)


def install(
    view: View, frame: Frame, outcome: Any, component: set[QueryCell] | None = None
) -> None:
    """
    Store *outcome* as *frame*'s cell's memo, backdating it if nothing changed; if it
    cannot be (the memo here is newer, or a dependency's memo here is not the version the
    frame read), keep it as an answer at its revision. A provisional outcome (a cycle's,
    before it converged) is not stored; the memos of a converged cycle are stored
    together (`_install_component`), each read of another member of *component*
    counting as consistent.

    The common case takes no lock: the memo of the current revision, replacing one no
    reader can need and that was not clean. Another thread's commit can then run between
    the loads and the stores below; `View.commits` says whether one did, and `_repair`
    makes the memo what it would be had the commit come after.
    """
    if frame.heads is not None and provisional(frame, outcome):
        # A cycle's value before it converged: for its parent only, never memoized.
        return
    commits = view.commits
    cell = frame.cell
    revision = frame.revision
    previous = cell.verified_at
    lock = (
        view.lock
        if commits & 1
        or revision != view.revision
        or cell.clean
        or (view.readers.oldest < revision and previous != NEVER)
        else None
    )
    if lock is not None:
        lock.acquire()
    try:
        failure = outcome if type(outcome) is Failure else None
        read = frame.deps
        if previous > revision:
            # A newer memo exists: this outcome answers for its revision only.
            _kept(view, frame, outcome, lock)
            return
        first = previous == NEVER
        durability: int = HIGHEST
        clean = revision == view.revision
        last_changed = view.last_changed
        consistent = True
        dep: InputCell | QueryCell | None = None
        for dep in read:
            if first:
                # What `add_dependent` does, inline: this runs for every dependency.
                current = dep.dependents
                if current is None:
                    dep.dependents = cell
                elif type(current) is set:
                    current.add(cell)
                elif current is not cell:
                    dep.dependents = {current, cell}  # type: ignore[arg-type]
            if type(dep) is InputCell:
                level: int = dep.ingredient.durability
            else:
                level = dep.durability
                if (
                    dep.verified_at != revision
                    and not (
                        # Valid at this revision all the same: by being clean, or by
                        # durability.
                        NEVER < dep.verified_at < revision
                        and (dep.clean or last_changed[level] <= dep.verified_at)
                    )
                    and (component is None or dep not in component)
                ):
                    consistent = False
                if not dep.clean:
                    clean = False
            if level < durability:  # noqa: PLR1730 - cheaper than calling min()
                durability = level
        if durability == UNTRACKED:
            # It read a memo that read the outside world: it re-checks that one at each new
            # revision (LOW's watermark moves at each), but is not re-executed for it.
            durability = LOWEST
        if frame.untracked:
            durability = UNTRACKED
            clean = False
        if not consistent:
            # A dependency's memo here is not the version this frame read (it moved on, or
            # was replaced): memoized, this outcome could later be revalidated against the
            # wrong version. It answers for its revision only.
            if first:
                for dep in read:
                    discard_dependent(dep, cell)
            _kept(view, frame, outcome, lock)
            return
        # Stored as `deps_of` reads it back: one record without its tuple (the loop's last).
        packed: Deps = dep if len(read) == 1 else tuple(read)  # type: ignore[assignment]
        reshaped = False
        if not first:
            if view.readers.oldest < revision:
                # The state being replaced, for readers at the revisions it was valid at
                # (before this one).
                valid_through = view.known_through(cell)
                view.keep_past(cell, min(valid_through, revision - 1), snapshots=False)
            if packed != cell.deps:
                relink(cell, deps_of(cell), unpack_deps(packed))
                cyclic = view.family.cyclic
                # A record that was on a cycle, now with other reads, perhaps off it:
                # the members that read it may owe their values to the cycle's shape
                # (a fallback), not only to its value. Not backdated, so that they are
                # checked again.
                reshaped = bool(cyclic) and (cell.ingredient.name, cell.key) in cyclic
        if cell.changed_at == NEVER or durability < cell.durability or reshaped:
            cell.changed_at = revision
        elif failure is None and cell.failure is None:
            # `backdate` for two values, inline, and `default_eq` too: this runs for every
            # recomputed memo.
            eq = cell.ingredient.eq
            old = cell.value
            if eq is not default_eq:
                if not eq(old, outcome):
                    cell.changed_at = revision
            elif old is not outcome:
                try:
                    same = old == outcome
                except Exception:  # noqa: BLE001 - as in `default_eq`: "changed"
                    same = False
                if same is not True:
                    cell.changed_at = revision
        elif not backdate(cell, outcome, failure, durability):
            cell.changed_at = revision
        if view.accumulations is not None:
            # `picante.accumulate`: what it accumulated counts as its outcome (`_accumulate`).
            view.accumulations.note(frame, cell, revision)
        # The fresh outcome is kept even when it counts as equal: the memo answers what a
        # from-scratch evaluation would; dependents cut off keep what they computed.
        cell.value = None if failure is not None else outcome
        cell.failure = failure
        cell.verified_at = revision
        cell.durability = durability
        cell.deps = packed
        if not clean and not first and cell.clean:
            # A clean memo re-executed (its value was evicted, or it came from a cache file
            # without one) to a different kind of outcome: its dependents are not clean.
            cell.clean = False
            view.invalidate(cell)
        cell.clean = clean
        if view.lrus:
            view.track_lru(cell)
        if view.dirty is not None:
            view.dirty.add(cell)
    finally:
        if lock is not None:
            lock.release()
    if lock is None and view.commits != commits:
        with view.lock:
            _repair(view, cell, revision)


def _kept(view: View, frame: Frame, outcome: Any, lock: Any) -> None:
    """`_keep_answer`, under the view's lock (*lock*, if `install` holds it already)."""
    if lock is None:
        with view.lock:
            _keep_answer(view, frame, outcome)
    else:
        _keep_answer(view, frame, outcome)


def _repair(view: View, cell: QueryCell, revision: Revision) -> None:
    """
    Make *cell*, stored without the lock at *revision* while a commit ran, not clean.

    The commit may have passed the memo's dependencies before the memo was among their
    dependents, or before it was marked clean. Not clean is always sound: the memo is
    re-checked when next read.
    """
    if cell.clean and view.revision != revision:
        if view.readers.pinned:
            view.keep_past(cell, revision, snapshots=True)
        cell.clean = False
        view.invalidate(cell)


def _keep_answer(view: View, frame: Frame, outcome: Any) -> None:
    """
    Keep an outcome that cannot be memoized as an answer at *frame*'s (older) revision
    (under the lock).

    Other evaluations bound to that revision take it from `View.pasts` instead of running
    the query again; it goes when no reader of that revision is left (`SyncTable.prune`).
    Its `changed_at` is its revision (nothing is known of what came before), and its
    durability the lowest, so that nothing takes it for valid beyond that revision.
    """
    revision = frame.revision
    failure = outcome if type(outcome) is Failure else None
    state = MemoState(
        revision,
        revision,
        None if failure is not None else outcome,
        failure,
        revision,
        Durability.LOW,
        tuple(frame.deps),
        None if view.accumulations is None else view.accumulations.seal(frame, exact=False),
    )
    view.pasts.setdefault(frame.cell, []).append(state)


# -- 5. backdate -------------------------------------------------------------------------


def backdate(cell: QueryCell, outcome: Any, failure: Failure | None, durability: int) -> bool:
    """
    Tell whether *outcome* leaves *cell*'s memo unchanged, so its `changed_at` stays.

    Unchanged: the memo has an outcome to compare with, what it read is as durable as
    before, and the outcome is equal (the query's `eq`; for errors, same type and args).
    """
    return (
        # `changed_at` rather than `verified_at`: a memo loaded from a cache file as stale
        # (its query's code changed) has no revision but keeps its value, to backdate.
        cell.changed_at != NEVER
        and durability >= cell.durability
        and (
            cell.failure is None and failure is None and cell.ingredient.eq(cell.value, outcome)
            if cell.failure is None or failure is None
            # `eq=False`: every outcome is a change, errors too.
            else cell.ingredient.eq_option is not False
            and errors_equal(cell.failure.error, failure.error)
        )
    )
