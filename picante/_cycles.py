"""
Cycles that resolve: fixpoint iteration (`cycle_initial`, `cycle_fn`) and fallbacks
(`cycle_fallback`).

A cycle is found where it always was: when a query's evaluation would wait on a frame
that cannot finish before it does (`find_cycle`). The awaited frame is the cycle's
*head*. If the head's query opted in and the head is an ancestor of the waiter (the
cycle runs through this evaluation's own reads, directly, through other queries, or
through child tasks of one of them), the read does not fail: it returns the head's
*provisional* value (`answer`): `cycle_initial(db, *key)` in the first iteration, the
previous iteration's value after that, or the fallback. The waiter, and every frame
between it and the head as the value travels back up, is then *provisional for the
head* (`Frame.heads`): its outcome is handed to its parent but never memoized
(`provisional`), and followers waiting on it are told to fetch again (`settle`), so no
caller outside the cycle ever sees a provisional value.

When the head's body returns, `iterate` decides:

* a fallback head takes `cycle_fallback(db, *key)` as its value: final;
* a fixpoint head computes `cycle_fn(db, iteration, previous, value, *key)` (default: the
  value) and compares it with the provisional value its readers got, with the query's
  `eq`; equal, and no inner head's value moved: converged, final. Otherwise the value
  becomes the next provisional one and the body runs again (its reads accumulate in the
  same frame: the memo depends on what every iteration read). Past `max_iterations`, a
  `CycleError` says how far it got;
* a head that is itself provisional for an outer head (a nested cycle: it read the outer
  head's provisional value) does not iterate on its own: its value is recorded as its
  provisional value for the outer head's next iteration, and the outer head converges
  only when it and every inner head are stable. One driver per strongly connected
  component, as Salsa's PR #999 found necessary.

A participant that declares `cycle_fallback` and finishes provisional takes its fallback
as its value. The participants' last outcomes are memoized together with the head's
once it resolves (`_fetch._install_component`), each with what it read in every
iteration; a head that fails memoizes its failure alone. The family records those memos
as cyclic, and `deep_verify` checks them as one component (`_verify_component`).

A cycle that closes through independent tasks waiting on each other (the head is not
among the waiter's ancestors: another task runs it, and waits on this one) is handed to
the head's task (`ACROSS_TASKS`), or, if the waiter's chain holds a query that opted in,
to the waiter's (`HERE`). A cycle headed by a query that did not opt in raises
`CycleError`: its message then names the queries on the cycle that did not.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final, cast

from ._errors import CycleError
from ._frames import ACTIVE, Frame
from ._store import Failure


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._store import QueryLike


__all__ = [
    "ACROSS_TASKS",
    "HERE",
    "Cycle",
    "answer",
    "iterate",
    "opted_out",
    "provisional",
    "resolve_participant",
]

_NOTHING: Final = object()


class _AcrossTasks:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ACROSS_TASKS: Final = _AcrossTasks("ACROSS_TASKS")
"""
What `answer` returns for a cycle that closes through independent tasks waiting on each
other, whose head opted in: the head's task must evaluate the whole cycle itself. The
waiter's frames that the head's task waits on stop being flights (they go on, for their
own callers), those waits end with `RETRY`, so the head's task runs them inline, as
participants; then the waiter waits for the head's final value like any caller.
"""

HERE: Final = _AcrossTasks("HERE")
"""
What `answer` returns for a cycle through independent tasks whose target did not opt in
but an evaluation of the waiter's chain did: the target stops being its record's flight
(it goes on, for its own callers), and the waiter evaluates the record itself, so that
the cycle closes within its own chain, where a query that opted in can head it.
"""


class Cycle:
    """The iteration state of a cycle head that was re-entered (`Frame.cycle`)."""

    __slots__ = ("changed", "iteration", "members", "reads", "reentered", "seen", "values")

    def __init__(self) -> None:
        # The provisional outcomes of this iteration's other participants, by cell, with
        # their frames: once the head converges, they are its final component, memoized
        # with it (`members_of`).
        self.members: dict[Any, tuple[Frame, object]] = {}
        # The cells of every participant of every iteration, and what each read in all
        # of them, in first-read order: a member's memo depends on every iteration's
        # reads (Salsa #834: a read made only in the first iteration must not be lost).
        self.seen: set[Any] = set()
        self.reads: dict[Any, dict[Any, None]] = {}
        # The provisional value of this head, and of the inner heads that joined its
        # component, by cell: what their re-entrant reads return in this iteration.
        self.values: dict[Any, object] = {}
        # This head was re-entered in the current iteration.
        self.reentered = False
        # An inner head's value differed from its provisional one in this iteration.
        self.changed = False
        self.iteration = 0


def opted_in(frame: Frame) -> bool:
    ingredient = frame.cell.ingredient
    return ingredient.cycle_initial is not None or ingredient.cycle_fallback is not None


def opted_out(waiter: Frame, target: Frame, cycle: CycleError) -> CycleError:
    """*cycle*, naming the queries on it that resolve no cycle if any other does."""
    frames = _between(waiter, target)
    if frames is None or not any(opted_in(frame) for frame in frames):
        return cycle
    out = [frame.record() for frame in frames if not opted_in(frame)]
    return CycleError(cycle.path, opted_out=list(dict.fromkeys(out)))


def _between(waiter: Frame, target: Frame) -> list[Frame] | None:
    """The frames from *target* down to *waiter*, if *target* is one of its ancestors."""
    chain: list[Frame] = []
    for frame in waiter.ancestry():
        chain.append(frame)
        if frame is target:
            chain.reverse()
            return chain
    return None


async def answer(waiter: Frame, target: Frame, cycle: CycleError) -> object:
    """
    The provisional value of *target*, the head of the *cycle* that *waiter* closes; or
    raise the `CycleError` if the cycle cannot resolve there.
    """
    if target.view is waiter.view and _between(waiter, target) is None:
        # Through independent tasks waiting on each other.
        if opted_in(target):
            # The target heads it: its task evaluates the cycle (`ACROSS_TASKS`).
            return ACROSS_TASKS
        if any(opted_in(frame) for frame in waiter.ancestry()):
            # This evaluation may head it: it runs the target's record itself (`HERE`).
            return HERE
    if not opted_in(target) or target.view is not waiter.view:
        waiter.untracked = True
        raise opted_out(waiter, target, cycle)
    state: Cycle | None = target.cycle
    if state is None:
        state = target.cycle = Cycle()
    # Provisional before anything else: if the initial value's function raises, the
    # waiter's outcome (that error) must not be memoized without the head.
    state.reentered = True
    if waiter.heads is None:
        waiter.heads = {target}
    else:
        waiter.heads.add(target)
    cell = target.cell
    if cell not in state.values:
        value = _outer_value(target)
        if value is _NOTHING:
            ingredient = cell.ingredient
            start = cast(  # the target `opted_in`: one of the two is set
                "Callable[..., Any]", ingredient.cycle_initial or ingredient.cycle_fallback
            )
            value = await call_in(target, start, target.view.db, *cell.key)
        state.values[cell] = value
    return state.values[cell]


def _outer_value(head: Frame) -> object:
    """The provisional value an outer head's component holds for inner *head*'s record."""
    for frame in head.ancestry():
        if frame is not head and frame.cycle is not None:
            value = frame.cycle.values.get(head.cell, _NOTHING)
            if value is not _NOTHING:
                return value
    return _NOTHING


async def call_in(frame: Frame, fn: Callable[..., Any], *args: object) -> Any:
    """Call *fn* with *frame* active (its reads are *frame*'s); await what it returns."""
    token = ACTIVE.set(frame)
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result
    finally:
        ACTIVE.reset(token)


Members = dict[Any, tuple[Frame, object]]
"""Participants' provisional outcomes, by cell, with their frames."""


async def iterate(
    frame: Frame, result: object, run: Callable[[], Any]
) -> tuple[object, Members, set[Any] | None]:
    """
    *frame*'s outcome, its body having returned *result*, if it headed a cycle: iterate
    to a fixpoint (running the body again with *run*), take the fallback, or, nested in
    an outer cycle, leave the outer head to iterate. (A failure ends the cycle as is.)

    Also what to memoize with it: the other participants' last outcomes (once it
    converged, or took its fallback: they read its final value), and the cells of every
    participant of every iteration, whose reads of each other count as consistent
    (`None` for a nested head, whose outcome is provisional).
    """
    cell = frame.cell
    ingredient = cell.ingredient
    db = frame.view.db
    while True:
        state: Cycle = frame.cycle
        outer = _outer_heads(frame)
        if outer:
            # A nested head: the outermost head iterates the whole component.
            driver = min(outer, key=_depth)
            if type(result) is not Failure and ingredient.cycle_fallback is not None:
                # A participant of the outer cycle that finished provisional, as any other.
                result = await call_in(frame, ingredient.cycle_fallback, db, *cell.key)
            if type(result) is not Failure:
                values = driver.cycle.values
                before = values.get(cell, state.values.get(cell, _NOTHING))
                if before is _NOTHING or not _equal(ingredient, before, result):
                    driver.cycle.changed = True
                values[cell] = result
            # Its own component's members are the outer one's too, and so are the values
            # its inner heads reported (the next iteration reads them) and whether they moved.
            for inner, value in state.values.items():
                if inner is not cell:
                    driver.cycle.values[inner] = value
            if state.changed:
                driver.cycle.changed = True
            driver.cycle.members.update(state.members)
            driver.cycle.seen |= state.seen
            frame.cycle = None
            frame.heads = outer
            return result, {}, None
        frame.heads = None
        cells = {cell, *state.seen}
        if type(result) is Failure:
            frame.cycle = None
            return result, {}, cells
        if ingredient.cycle_fallback is not None:
            frame.cycle = None
            value = await call_in(frame, ingredient.cycle_fallback, db, *cell.key)
            return value, dict(state.members), cells
        previous = state.values[cell]
        if ingredient.cycle_fn is not None:
            result = await call_in(
                frame, ingredient.cycle_fn, db, state.iteration, previous, result, *cell.key
            )
        if _equal(ingredient, previous, result) and not state.changed:
            frame.cycle = None
            return result, dict(state.members), cells
        state.iteration += 1
        if state.iteration >= ingredient.max_iterations:
            frame.cycle = None
            error = CycleError(
                [frame.record()],
                iterations=state.iteration,
                last=[_repr(previous), _repr(result)],
            )
            return Failure(error, None), {}, cells
        state.values[cell] = result
        state.reentered = False
        state.changed = False
        state.members.clear()
        result = await run()
        if not state.reentered:
            # This iteration did not read its own value (what closed the cycle was read
            # only conditionally): its outcome stands, provisional only for outer heads.
            frame.cycle = None
            outer = _outer_heads(frame)
            frame.heads = outer or None
            return result, {}, None if outer else {cell, *state.seen}


def _outer_heads(frame: Frame) -> set[Frame]:
    heads = frame.heads
    if not heads:
        return set()
    return {head for head in heads if head is not frame}


def _depth(frame: Frame) -> int:
    return sum(1 for _ in frame.ancestry())


def _equal(ingredient: QueryLike, a: object, b: object) -> bool:
    """The query's `eq` (an `eq` that raises: not equal)."""
    try:
        return bool(ingredient.eq(a, b))
    except Exception:  # noqa: BLE001 - as `default_eq` does
        return False


def _repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


async def resolve_participant(frame: Frame, result: object) -> tuple[object, bool]:
    """
    A participant's outcome: its fallback if it declares one and finished provisional
    (a value that no longer depends on the cycle), else *result*. And whether the outcome
    is left to be memoized with the head's component (it read the head, whose memo does
    not exist yet).
    """
    fallback = frame.cell.ingredient.cycle_fallback
    if fallback is None or not frame.heads or type(result) is Failure:
        return result, False
    value = await call_in(frame, fallback, frame.view.db, *frame.cell.key)
    # Final, but memoized with the head's component, as are the queries that read it:
    # they stay provisional until then (their memos would read one not yet stored).
    provisional(frame, value)
    return value, True


def provisional(frame: Frame, outcome: object) -> bool:
    """
    Whether *frame*'s *outcome* is provisional (it must not be memoized yet); if so, its
    parent becomes provisional for the same heads, and the outcome is kept as a member of
    the outermost head's component, memoized if that head converges with it.
    """
    heads = frame.heads
    if not heads:
        return False
    parent = frame.parent
    if parent is not None:
        if parent.heads is None:
            parent.heads = set(heads)
        else:
            parent.heads |= heads
    _join(min(heads, key=_depth), frame, outcome)
    return True


def _join(driver: Frame, frame: Frame, outcome: object) -> None:
    """Keep *frame*'s *outcome* as a member of *driver*'s component."""
    state: Cycle | None = driver.cycle
    if state is None:
        return
    cell = frame.cell
    state.members[cell] = (frame, outcome)
    state.seen.add(cell)
    reads = state.reads.get(cell)
    if reads is None:
        state.reads[cell] = dict(frame.deps)
    else:
        reads.update(frame.deps)
        frame.deps = dict(reads)
