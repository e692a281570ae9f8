"""
Memo consistency in every view, under explored schedules: a state machine over a database,
a subclass database and their snapshots.

`ViewConsistency` keeps two databases (`Views`, and `Overridden`, a subclass whose `square`
overrides the inherited query and calls `super().square(k)`) and the snapshots taken of
them and of each other, each with a plain-dict model of its inputs at every revision it
went through. The machine runs on a `tests.schedule.ScheduledLoop` drawn at the start, so
ready callbacks run in a seed-chosen order with `gc.collect()` at seed-chosen points, and a
failing example prints its `Schedule(seed=..., gc_rate=...)` first (see `tests/schedule.py`
for replaying it).

Its rules set and remove inputs on any view, from the loop thread and from worker threads,
also injected while queries are suspended half-way; run batches (some raise and change
nothing; nested ones whose inner batch raises and is caught); take snapshots (also from a
thread, also while queries run) and drop them, also while a commit runs with a garbage
collection falling inside it; intern values; await queries on any view alone,
concurrently, with callers cancelled after a seed-chosen number of steps and with the
evaluation tasks picante created cancelled; run a query that leaves behind a task that
reads an input after the query returned; refresh any view (directly, in a batch, from a
thread), change the outside world a volatile query reads (modeled as one more input of
that view), sweep any view, change `square`'s LRU capacity at run time, and share any
view's results through one `MemoryStore` (`picante.share`) or stop. The graph
has an LRU-limited query (`square`, `lru=2`) under a chain, so eviction happens all the
time, an interned table shared by all views, a failing query, fan-out through
`asyncio.gather`, `picante.gather` and `asyncio.TaskGroup`, absent inputs and a
HIGH-durability input, a volatile query (`world`) read past that input (`seen`), an
`eq=False` query (`boxed`), and two queries that resolve cycles over a graph of the keys
whose edges are inputs (`reach`, and `low`, which reads `reach` inside its iterations).

Every answer is compared with a from-scratch evaluation over the model of the view at
the revision the call started at, errors included (a cycle record may also raise
`CycleError` where cycle records were read concurrently at that revision: a cycle that
closes between two tasks raises, and its error lasts the revision): the machine reads
`picante.revision(view.db)` right before awaiting the call, with no yield in between, and
commits only ever happen between callbacks.

`PICANTE_VIEWS_SKIP=override,cancel_picante,...` (comma-separated rule groups, see `GROUPS`)
switches groups of rules off, to look at one failure at a time;
`HYPOTHESIS_PROFILE=thorough` runs 2,000 schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import Phase, event, note, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import picante
from picante import MissingInputError
from picante.stores import MemoryStore
from tests.schedule import OnLoop, Schedule, in_thread, new_loop, schedules


if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


T = TypeVar("T")

KEYS = range(4)
TIMEOUT = 5
"""Seconds any one operation may take before the example fails as a deadlock."""

GROUPS = (
    "override",  # the Overridden database, whose square calls super().square(k)
    "threads",  # set/remove/batch/snapshot from a worker thread, between operations
    "inject",  # thread commits injected while queries run
    "drop_commit",  # a snapshot garbage-collected inside a commit
    "cancel_callers",  # callers cancelled after a chosen number of steps
    "cancel_picante",  # picante's own evaluation tasks cancelled
    "outlive",  # a task spawned by a query reads an input after the query returned
    "nested_batch",  # an inner batch raises, the outer one catches it
)
SKIP = frozenset(filter(None, os.environ.get("PICANTE_VIEWS_SKIP", "").split(",")))
assert set(GROUPS) >= SKIP, f"PICANTE_VIEWS_SKIP: unknown groups {sorted(SKIP - set(GROUPS))}"


def enabled(group: str) -> Callable[[object], bool]:
    """A precondition: the rule group *group* is not switched off by `PICANTE_VIEWS_SKIP`."""
    on = group not in SKIP
    return lambda _: on


def lower(db: object, iteration: int, previous: int, value: int, k: int) -> int:
    """`low`'s `cycle_fn`: the minimum of the previous iteration's value and this one's."""
    return min(previous, value)


@picante.database
class Views:
    """The query graph of the machine."""

    def __init__(self) -> None:
        # Tasks left behind by `spawn`, with the gate that lets each read: shared with
        # snapshots (attributes are copied shallowly).
        self.spawned: list[tuple[asyncio.Event, asyncio.Task[int]]] = []
        # The outside world `world` reads, untracked: replaced (never mutated) and then
        # refreshed by the machine, so a snapshot keeps the world it was taken in.
        self.outside: dict[int, int] = {}

    tags = picante.interned(str)

    @picante.input
    async def src(self, k: int) -> int:
        raise NotImplementedError

    @picante.input(durability=picante.Durability.HIGH)
    async def cfg(self) -> int:
        raise NotImplementedError

    @picante.query
    async def value(self, k: int) -> int:
        try:
            return await self.src(k)
        except MissingInputError:
            return 0

    @picante.query(lru=2)
    async def square(self, k: int) -> int:
        return (await self.value(k)) ** 2 + self.cfg.get(default=0)

    @picante.query
    async def chain(self, k: int) -> int:
        if k == 0:
            return await self.square(0)
        return await self.chain(k - 1) + await self.square(k)

    @picante.query
    async def label(self, k: int) -> str:
        tag = self.tags.intern(f"parity-{await self.chain(k) % 2}")
        return self.tags.lookup(tag)

    @picante.query
    async def fails(self, k: int) -> int:
        v = await self.value(k)
        if v % 3 == 2:
            raise ValueError(k, v)
        return v

    @picante.query
    async def pair(self, k: int) -> int:
        async with asyncio.TaskGroup() as group:
            square = group.create_task(self.square(k))
            label = group.create_task(self.label(k))
        return square.result() + len(label.result())

    @picante.query
    async def total(self) -> int:
        chains = await asyncio.gather(*(self.chain(k) for k in KEYS))
        # picante.gather: valid memos answered at once (a snapshot's too), the rest in tasks.
        outcomes = await picante.gather(*(self.fails(k) for k in KEYS), return_exceptions=True)
        good = sum(o for o in outcomes if isinstance(o, int))
        return sum(chains) + good + 1000 * sum(isinstance(o, Exception) for o in outcomes)

    @picante.query(volatile=True)
    async def world(self, k: int) -> int:
        await asyncio.sleep(0)
        return self.outside.get(k, 0)

    @picante.query
    async def seen(self, k: int) -> int:
        return await self.world(k) * 10 + await self.value(k) + self.cfg.get(default=0)

    @picante.query(eq=False)
    async def boxed(self, k: int) -> list[int]:
        return [await self.value(k), await self.world(k)]

    @picante.query
    async def unboxed(self, k: int) -> int:
        return sum(await self.boxed(k))

    @picante.query
    async def spawn(self, k: int) -> int:
        """Return `value(k)`, leaving behind a task that reads `src(k)` once its gate opens."""
        gate = asyncio.Event()
        self.spawned.append((gate, asyncio.get_running_loop().create_task(self.late(k, gate))))
        return await self.value(k)

    async def late(self, k: int, gate: asyncio.Event) -> int:
        """Read `src(k)` (-1 when absent) after *gate* opens: after `spawn(k)` returned."""
        await gate.wait()
        try:
            return await self.src(k)
        except MissingInputError:
            return -1

    # Fixpoint cycles over a graph of the keys whose edges are inputs (see `successors`).

    @picante.input
    async def edge(self, k: int) -> int:
        raise NotImplementedError

    def successors(self, k: int) -> list[int]:
        """Node *k*'s successors: bit b of `edge(k)` is the node `k + b + 1` (mod 4)."""
        mask = self.edge.get(k, default=0)
        return [(k + bit + 1) % len(KEYS) for bit in range(3) if mask >> bit & 1]

    @picante.query(cycle_initial=lambda db, k: frozenset())
    async def reach(self, k: int) -> frozenset[int]:
        out = {k}
        for j in self.successors(k):
            await asyncio.sleep(0)
            out |= await self.reach(j)
        return frozenset(out)

    @picante.query(cycle_initial=lambda db, k: 99, cycle_fn=lower)
    async def low(self, k: int) -> int:
        # The smallest weight reachable; an absent weight reads the other family's cycle.
        try:
            weight = await self.src(k)
        except MissingInputError:
            weight = 10 + len(await self.reach(k))
        for j in self.successors(k):
            weight = min(weight, await self.low(j))
        return weight


@picante.database
class Overridden(Views):
    """A subclass that overrides an inherited query and calls the inherited body."""

    @picante.query(lru=2)
    async def square(self, k: int) -> int:
        return await super().square(k) + 1


Cell = tuple[str, tuple[int, ...]]
Record = tuple[str, tuple[int, ...]]
Inputs = dict[Cell, int]
Change = tuple[Cell, int | None]
Result = tuple[object, Exception | None]


def successors_of(inputs: Inputs, k: int) -> list[int]:
    """Node *k*'s successors in the graph of *inputs*: bit b of `edge(k)` is `k + b + 1`."""
    mask = inputs.get(("edge", (k,)), 0)
    return [(k + bit + 1) % len(KEYS) for bit in range(3) if mask >> bit & 1]


def oracle(inputs: Inputs, name: str, key: tuple[int, ...], *, overridden: bool = False) -> Result:
    """Evaluate *name(key)* from scratch over *inputs*: `(value, None)` or `(None, error)`."""

    def value(k: int) -> int:
        return inputs.get(("src", (k,)), 0)

    def square(k: int) -> int:
        return value(k) ** 2 + inputs.get(("cfg", ()), 0) + overridden

    def chain(k: int) -> int:
        return sum(square(i) for i in range(k + 1))

    def label(k: int) -> str:
        return f"parity-{chain(k) % 2}"

    def world(k: int) -> int:
        return inputs.get((OUTSIDE, (k,)), 0)

    def seen(k: int) -> int:
        return world(k) * 10 + value(k) + inputs.get(("cfg", ()), 0)

    def low(k: int) -> int:
        return min(
            inputs.get(("src", (j,)), 10 + len(reached(inputs, j))) for j in reached(inputs, k)
        )

    def fails(k: int) -> int:
        v = value(k)
        if v % 3 == 2:
            raise ValueError(k, v)
        return v

    def total() -> int:
        good = failed = 0
        for k in KEYS:
            try:
                good += fails(k)
            except ValueError:
                failed += 1
        return sum(chain(k) for k in KEYS) + good + 1000 * failed

    functions: dict[str, Any] = {
        "value": value,
        "square": square,
        "chain": chain,
        "label": label,
        "fails": fails,
        "pair": lambda k: square(k) + len(label(k)),
        "total": total,
        "spawn": value,
        "world": world,
        "seen": seen,
        "unboxed": lambda k: value(k) + world(k),
        "reach": lambda k: reached(inputs, k),
        "low": low,
    }
    try:
        return functions[name](*key), None
    except Exception as error:
        return None, error


RECORDS: list[Record] = [
    *(
        (name, (k,))
        for name in (
            "value",
            "square",
            "chain",
            "label",
            "fails",
            "pair",
            "world",
            "seen",
            "unboxed",
            "reach",
            "low",
        )
        for k in KEYS
    ),
    ("total", ()),
]
CELLS: list[Cell] = [*(("src", (k,)) for k in KEYS), ("cfg", ()), *(("edge", (k,)) for k in KEYS)]
CYCLES = frozenset({"reach", "low"})
"""The queries that resolve cycles: read concurrently, they may raise `CycleError` (see
`ViewConsistency.check`)."""
OUTSIDE = "outside"
"""The model's cells of the outside world (`(OUTSIDE, (k,))`): no input has them."""
VALUES = st.none() | st.integers(0, 6)
CHANGES = st.lists(st.tuples(st.sampled_from(CELLS), VALUES), min_size=1, max_size=4)
WHICH = st.integers(0, 7)
"""A view, as an index into the machine's views (modulo their number): 0 is `Views()`."""

ThreadOp = tuple[str, int, list[Change]]
"""A thread commit: `("commit", view, changes)` (one change: a set or remove) or
`("batch", view, changes)`, or `("snapshot", view, [])`."""
THREAD_OPS: st.SearchStrategy[ThreadOp] = st.one_of(
    st.tuples(
        st.just("commit"),
        WHICH,
        st.lists(st.tuples(st.sampled_from(CELLS), VALUES), min_size=1, max_size=1),
    ),
    st.tuples(st.just("batch"), WHICH, CHANGES),
    st.tuples(st.just("snapshot"), WHICH, st.just([])),
)


class BoomError(Exception):
    """Raised inside a batch to discard it."""


class View:
    """A database or snapshot, with the model of its inputs at each of its revisions."""

    def __init__(self, db: Views, inputs: Inputs, revision: int) -> None:
        self.db = db
        self.inputs = inputs
        self.revision = revision
        self.history: dict[int, Inputs] = {revision: dict(inputs)}
        self.overridden = isinstance(db, Overridden)
        self.name = self.family = type(db).__name__
        # `square`'s LRU capacity in this view (`set_lru`; a snapshot starts with its
        # parent's).
        self.lru: int | None = 2

    def __repr__(self) -> str:
        return f"<{self.name} rev={self.revision}>"


def reached(inputs: Inputs, k: int) -> frozenset[int]:
    """The nodes reachable from node *k* in the graph of *inputs*, *k* included."""
    seen, todo = {k}, [k]
    while todo:
        for j in successors_of(inputs, todo.pop()):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return frozenset(seen)


def meets_cycle(inputs: Inputs, k: int) -> bool:
    """Whether a node on a cycle of the graph of *inputs* is reachable from node *k*."""
    return any(
        any(j in reached(inputs, i) for i in successors_of(inputs, j)) for j in reached(inputs, k)
    )


def apply_changes(db: Views, changes: list[Change]) -> int:
    """Set or remove each of *changes* on *db* in order; return the last revision returned."""
    revision = picante.revision(db)
    for (name, key), value in changes:
        handle = getattr(db, name)
        revision = handle.remove(*key) if value is None else handle.set(*key, value)
    return revision


EVALUATIONS = frozenset(
    function.__code__ for function in (picante._fetch.execute, picante._fetch._revalidate)
)
"""The code of the coroutines picante runs an evaluation in, in a task of its own."""


def picantes(task: asyncio.Task[Any]) -> bool:
    """Tell whether *task* is one picante created to run an evaluation (not the query's own)."""
    return getattr(task.get_coro(), "cr_code", None) in EVALUATIONS


def task_number(task: asyncio.Task[Any]) -> int:
    """The creation number in a task's default name `Task-N`: a deterministic order."""
    match = re.fullmatch(r"Task-(\d+)", task.get_name())
    return int(match.group(1)) if match else -1


@contextlib.contextmanager
def collection_after(allocations: int) -> Iterator[None]:
    """Make the next young-generation collection happen after about *allocations* allocations."""
    thresholds = gc.get_threshold()
    gc.set_threshold(gc.get_count()[0] + allocations, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


class ViewConsistency(OnLoop, RuleBasedStateMachine):
    """In every view, every answer equals a from-scratch evaluation of that view's inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.all: list[View] = []
        self.interned: dict[tuple[str, str], int] = {}
        # One store that every view may share results through (`picante.share`).
        self.store = MemoryStore()
        # Whether the operation running reads records concurrently; and the revisions of
        # views at which such an operation ran: there a cycle that closed between two
        # tasks may have memoized `CycleError` for the rest of the revision (`check`).
        self.together = False
        self.tainted: set[tuple[View, int]] = set()

    def teardown(self) -> None:
        if self.loop is None:
            return
        self.scheduled.budget = None
        for view in self.all:
            for gate, _ in view.db.spawned:
                gate.set()
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            with contextlib.suppress(BaseException):
                self.loop.run_until_complete(asyncio.wait(pending, timeout=TIMEOUT))
        self.loop.close()

    def view(self, which: int) -> View:
        """The view at index *which* modulo the number of views."""
        return self.all[which % len(self.all)]

    @initialize(schedule=schedules())
    def start(self, schedule: Schedule) -> None:
        """Run the machine on a loop for *schedule*, with a `Views` and an `Overridden`."""
        note(f"schedule: {schedule}")  # printed with every failure, whatever the steps shown
        self.loop = new_loop(schedule)
        # A livelock fails the example at once: far more callbacks than an operation runs,
        # or one callback that never returns (it could allocate without end, and a loop
        # that never yields escapes any timeout).
        self.scheduled.budget = 100_000
        self.scheduled.stall = 5.0
        self.all.append(View(Views(), {}, 0))
        if "override" not in SKIP:
            self.all.append(View(Overridden(), {}, 0))

    # -- the model ------------------------------------------------------------------------

    def record(self, view: View, changes: list[Change], revision: int) -> None:
        """Record *changes*, committed as one revision (if any changed) returning *revision*."""
        before = dict(view.inputs)
        for cell, value in changes:
            if value is None:
                view.inputs.pop(cell, None)
            else:
                view.inputs[cell] = value
        if view.inputs != before:
            view.revision += 1
            view.history[view.revision] = dict(view.inputs)
        assert revision == view.revision == picante.revision(view.db), (view, changes)

    def adopt(self, parent: View, db: Views) -> View:
        """Add *db*, a snapshot just taken of *parent*, to the views."""
        view = View(db, dict(parent.inputs), parent.revision)
        view.name = f"snapshot of {parent.name} at {parent.revision}"
        view.family = parent.family
        view.lru = parent.lru
        assert picante.revision(db) == parent.revision
        if (parent, parent.revision) in self.tainted or self.together:
            self.tainted.add((view, view.revision))
        self.all.append(view)
        return view

    def taint(self) -> None:
        """Mark every view's current revision as read concurrently (see `check`)."""
        self.tainted.update((view, view.revision) for view in self.all)

    @contextlib.contextmanager
    def concurrently(self, calls: int) -> Iterator[None]:
        """Mark an operation that makes *calls* calls, more than one of them at once."""
        if calls < 2:
            yield
            return
        self.together = True
        self.taint()
        try:
            yield
        finally:
            self.taint()
            self.together = False

    def thread_op(self, op: ThreadOp) -> None:
        """Perform *op* on a worker thread, then record it in the model."""
        kind, which, changes = op
        view = self.view(which)
        if kind == "snapshot":
            self.adopt(view, in_thread(lambda: picante.snapshot(view.db)))
            return

        def commit() -> int:
            if kind == "commit":
                return apply_changes(view.db, changes)
            with picante.batch(view.db):
                apply_changes(view.db, changes)
            return picante.revision(view.db)

        self.record(view, changes, in_thread(commit))
        if self.together:
            self.taint()

    # -- mutations --------------------------------------------------------------------------

    @rule(which=WHICH, cell=st.sampled_from(CELLS), value=VALUES)
    def mutate(self, which: int, cell: Cell, value: int | None) -> None:
        view = self.view(which)
        self.record(view, [(cell, value)], apply_changes(view.db, [(cell, value)]))

    @precondition(enabled("threads"))
    @rule(op=THREAD_OPS)
    def in_a_thread(self, op: ThreadOp) -> None:
        """Set, remove, batch or snapshot from a worker thread."""
        self.thread_op(op)

    @rule(which=WHICH, changes=CHANGES, fail=st.booleans())
    def batch(self, which: int, changes: list[Change], fail: bool) -> None:
        view = self.view(which)
        try:
            with picante.batch(view.db):
                apply_changes(view.db, changes)
                assert picante.revision(view.db) == view.revision, "a batch applied early"
                if fail:
                    raise BoomError
        except BoomError:
            event("batch", "raised")
            assert picante.revision(view.db) == view.revision
        else:
            self.record(view, changes, picante.revision(view.db))

    @precondition(enabled("nested_batch"))
    @rule(which=WHICH, outer=CHANGES, inner=CHANGES, after=CHANGES)
    def nested_batch(
        self, which: int, outer: list[Change], inner: list[Change], after: list[Change]
    ) -> None:
        """An inner batch raises and the outer one catches it: only the outer changes apply."""
        view = self.view(which)
        with picante.batch(view.db):
            apply_changes(view.db, outer)
            with contextlib.suppress(BoomError), picante.batch(view.db):
                apply_changes(view.db, inner)
                raise BoomError
            apply_changes(view.db, after)
        self.record(view, [*outer, *after], picante.revision(view.db))

    def refreshed(self, view: View, revision: int) -> None:
        """Record a revision with no input changed, *revision* as returned."""
        view.revision += 1
        view.history[view.revision] = dict(view.inputs)
        assert revision == view.revision == picante.revision(view.db), view

    @rule(which=WHICH, how=st.sampled_from(["direct", "batch", "thread"]))
    def refresh(self, which: int, how: str) -> None:
        """Open a revision with no input changed, directly, inside a batch or from a thread."""
        view = self.view(which)
        db = view.db
        if how == "thread":
            revision = in_thread(lambda: picante.refresh(db))
        elif how == "batch":
            with picante.batch(db):
                picante.refresh(db)
            revision = picante.revision(db)
        else:
            revision = picante.refresh(db)
        self.refreshed(view, revision)

    @rule(which=WHICH, k=st.sampled_from(KEYS), value=st.integers(0, 3))
    def change_outside(self, which: int, k: int, value: int) -> None:
        """Change the outside world one view's `world` reads, then refresh that view."""
        view = self.view(which)
        view.db.outside = {**view.db.outside, k: value}
        view.inputs[OUTSIDE, (k,)] = value
        self.refreshed(view, picante.refresh(view.db))

    @rule(which=WHICH, unused_for=st.integers(1, 3))
    def sweep(self, which: int, unused_for: int) -> None:
        """Drop what a view's recent revisions did not need: answers stay the same."""
        event(
            "sweep dropped", str(min(picante.sweep(self.view(which).db, unused_for=unused_for), 5))
        )

    @rule(which=WHICH, capacity=st.none() | st.integers(1, 3))
    def set_lru(self, which: int, capacity: int | None) -> None:
        """Change `square`'s LRU capacity in one view, at run time."""
        view = self.view(which)
        picante.set_lru(view.db.square, capacity)
        view.lru = capacity

    @rule(which=WHICH, attach=st.booleans())
    def share(self, which: int, attach: bool) -> None:
        """Share one view's results through the machine's store, or stop sharing them."""
        db = self.view(which).db
        if attach:
            picante.share(db, self.store)
        else:
            picante.share(db)

    @rule(which=WHICH)
    def take_snapshot(self, which: int) -> None:
        self.adopt(self.view(which), picante.snapshot(self.view(which).db))

    @precondition(lambda self: len(self.all) > 3)
    @rule(which=WHICH)
    def forget_a_view(self, which: int) -> None:
        """Drop every reference to a snapshot: the next collection frees it."""
        index = which % len(self.all)
        if index >= 1 + ("override" not in SKIP):
            del self.all[index]

    @precondition(enabled("drop_commit"))
    @rule(which=WHICH, changes=CHANGES, allocations=st.integers(1, 120), threaded=st.booleans())
    def drop_during_commit(
        self, which: int, changes: list[Change], allocations: int, threaded: bool
    ) -> None:
        """Drop a fresh snapshot of a view, then commit to it with a collection falling inside."""
        view = self.view(which)
        gc.collect(0)
        picante.snapshot(view.db)  # dropped at once; its cycle is collectable garbage

        def commit() -> int:
            with collection_after(allocations), picante.batch(view.db):
                apply_changes(view.db, changes)
            return picante.revision(view.db)

        self.record(view, changes, in_thread(commit) if threaded else commit())

    @rule(which=WHICH, text=st.sampled_from(["a", "b", "parity-0", "parity-1", "c"]))
    def intern(self, which: int, text: str) -> None:
        view = self.view(which)
        tag = view.db.tags.intern(text)
        # Interned tables are shared by a database and its snapshots, not across databases.
        assert self.interned.setdefault((view.family, text), tag) == tag
        for other in self.all:
            if other.family == view.family:
                assert other.db.tags.lookup(tag) == text

    # -- queries ----------------------------------------------------------------------------

    def check(self, view: View, revision: int, record: Record, actual: Result) -> None:
        """Compare *actual* with the oracle over *view*'s inputs at *revision*."""
        value, error = actual
        inputs = view.history[revision]
        expected_value, expected_error = oracle(inputs, *record, overridden=view.overridden)
        where = f"{record} on {view} at revision {revision}"
        if record[0] in CYCLES and isinstance(error, picante.CycleError):
            # Two tasks (of one view, or of views at one state) that each evaluate part of
            # a cycle and wait on each other: no evaluation holds the cycle to iterate it,
            # so it raises, and the error is memoized for the revision.
            assert self.together or (view, revision) in self.tainted, f"{where}: {error!r}"
            assert meets_cycle(inputs, record[1][0]), f"{where} meets no cycle: {error!r}"
            assert {name for name, _ in error.path} <= CYCLES, f"{where}: {error!r}"
            event("cycle read", "CycleError")
            return
        if expected_error is None:
            assert error is None, f"{where} raised {error!r}"
            assert value == expected_value, f"{where} = {value!r}, expected {expected_value!r}"
        else:
            assert error is not None, f"{where} = {value!r}, expected {expected_error!r}"
            assert (type(error), error.args) == (type(expected_error), expected_error.args), where

    async def call(self, view: View, record: Record) -> Result:
        """Await *record* on *view* and check it against the revision it started at."""
        name, key = record
        revision = picante.revision(view.db)
        try:
            result: Result = (await getattr(view.db, name)(*key), None)
        except Exception as error:
            result = (None, error)
        self.check(view, revision, record, result)
        return result

    @rule(which=WHICH, record=st.sampled_from(RECORDS))
    def query(self, which: int, record: Record) -> None:
        self.run(self.call(self.view(which), record))

    @rule(calls=st.lists(st.tuples(WHICH, st.sampled_from(RECORDS)), min_size=2, max_size=8))
    def query_concurrently(self, calls: list[tuple[int, Record]]) -> None:
        async def gather() -> None:
            await asyncio.gather(*(self.call(self.view(which), record) for which, record in calls))

        with self.concurrently(len(calls)):
            self.run(gather())

    @precondition(enabled("inject"))
    @rule(
        calls=st.lists(st.tuples(WHICH, st.sampled_from(RECORDS)), min_size=1, max_size=6),
        ops=st.lists(THREAD_OPS, min_size=1, max_size=3),
        within=st.sampled_from([5, 30, 200]),
    )
    def query_during_thread_commits(
        self, calls: list[tuple[int, Record]], ops: list[ThreadOp], within: int
    ) -> None:
        """Queries run while worker threads commit and snapshot between their steps."""
        loop = self.scheduled

        async def gather() -> None:
            for op in ops:
                loop.inject(lambda op=op: self.thread_op(op), within=within)
            await asyncio.gather(*(self.call(self.view(which), record) for which, record in calls))

        with self.concurrently(len(calls)):
            self.run(gather())

    @precondition(enabled("cancel_callers"))
    @rule(
        calls=st.lists(
            st.tuples(WHICH, st.sampled_from(RECORDS), st.booleans()), min_size=1, max_size=6
        ),
        within=st.sampled_from([1, 5, 30, 200]),
    )
    def cancel_callers(self, calls: list[tuple[int, Record, bool]], within: int) -> None:
        """Cancel some callers after a chosen number of steps: the others get right answers."""
        loop = self.scheduled

        async def scenario() -> None:
            tasks = [
                (asyncio.create_task(self.call(self.view(which), record)), cancel)
                for which, record, cancel in calls
            ]
            loop.inject(lambda: [task.cancel() for task, cancel in tasks if cancel], within=within)
            await asyncio.wait([task for task, _ in tasks])
            for task, cancel in tasks:
                if not cancel:
                    assert not task.cancelled()
                    task.result()  # a wrong answer raised its AssertionError
                elif not task.cancelled():
                    event("cancel_callers", "finished before cancelled")
                    task.result()
            # A later call succeeds (and is right).
            await asyncio.gather(*(self.call(self.view(w), r) for w, r, c in calls if c))

        with self.concurrently(len(calls)):
            self.run(scenario())

    @precondition(enabled("cancel_picante"))
    @rule(
        calls=st.lists(st.tuples(WHICH, st.sampled_from(RECORDS)), min_size=1, max_size=4),
        within=st.sampled_from([1, 5, 30]),
    )
    def cancel_picante_tasks(self, calls: list[tuple[int, Record]], within: int) -> None:
        """
        Cancel every task picante created to run an evaluation (as a shutdown would): callers
        get the right value or CancelledError, never hang, and a later call succeeds. The
        tasks a query starts itself are not cancelled here: a query that sees a child task
        cancelled from outside has `CancelledError` as its outcome, memoized like any error.
        """
        loop = self.scheduled

        async def scenario() -> None:
            ours = {asyncio.current_task()}
            tasks = [asyncio.create_task(self.call(self.view(w), r)) for w, r in calls]
            ours.update(tasks)

            armed = [True]

            def cancel_theirs() -> None:
                if not armed[0]:
                    # Fell due after the callers finished: the later calls are not a target.
                    event("cancel_picante", "too late: nothing cancelled")
                    return
                theirs = sorted(
                    (task for task in asyncio.all_tasks(loop) - ours if picantes(task)),
                    key=task_number,
                )
                event("cancel_picante", f"cancelled {min(len(theirs), 3)}+ tasks")
                for task in theirs:
                    task.cancel()

            loop.inject(cancel_theirs, within=within)
            await asyncio.wait(tasks)  # a caller that hangs fails the example at the timeout
            armed[0] = False
            for task in tasks:
                if task.cancelled():
                    event("cancel_picante", "a caller saw CancelledError")
                else:
                    task.result()  # a wrong answer raised its AssertionError
            # A later call succeeds (and is right).
            await asyncio.gather(*(self.call(self.view(w), r) for w, r in calls))

        with self.concurrently(len(calls)):
            self.run(scenario())

    @precondition(enabled("outlive"))
    @rule(which=WHICH, k=st.sampled_from(KEYS), value=VALUES)
    def outliving_task(self, which: int, k: int, value: int | None) -> None:
        """A task a query left behind reads its input at the query's revision, after a change."""
        view = self.view(which)
        spawned = view.db.spawned
        before = len(spawned)
        revision = picante.revision(view.db)
        self.run(self.call(view, ("spawn", (k,))))
        if len(spawned) == before:
            event("outliving_task", "memoized: no task")
            return
        assert len(spawned) == before + 1
        gate, task = spawned.pop()
        self.record(
            view, [(("src", (k,)), value)], apply_changes(view.db, [(("src", (k,)), value)])
        )
        gate.set()
        expected = view.history[revision].get(("src", (k,)), -1)
        assert self.run(task) == expected, f"the task left by spawn({k}) read a later revision"

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def every_view_is_consistent(self) -> None:
        for view in self.all:
            assert picante.revision(view.db) == view.revision
            for name, key in CELLS:
                assert getattr(view.db, name).get(*key) == view.inputs.get((name, key))

    @invariant()
    def lru_keeps_at_most_its_capacity(self) -> None:
        for view in self.all:
            if view.lru is None:
                continue
            table = view.db.__picante__.tables.get("square", {})
            kept = [c for c in table.values() if c.verified_at >= 0 and c.value is not EVICTED]
            assert len(kept) <= view.lru, (view, view.lru)


EVICTED = picante._store.EVICTED

TestViewConsistency = ViewConsistency.TestCase
TestViewConsistency.__doc__ = "In every view, every memo equals a from-scratch evaluation."
# Twice the profile's examples: 50 with dev, 200 with ci, 2,000 with thorough.
VIEW_EXAMPLES = 2 * settings().max_examples

TestViewConsistency.settings = settings(
    max_examples=VIEW_EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    # No explain phase: it prints elided arguments as broken `(\n )` and replays a lot.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
# A failure is shrunk by replaying many programs, and a deadlock costs `TIMEOUT` each time;
# the thorough profile's 2,000 examples take about half an hour on a busy two-core machine.
TestViewConsistency.pytestmark = [pytest.mark.timeout(900 + VIEW_EXAMPLES)]  # type: ignore[attr-defined]
