"""
Model-based tests of memo consistency (DESIGN.md §4) and of the work picante does.

The heart is `MemoConsistency`, a hypothesis state machine over the `Graph` database. Its
rules set and remove inputs (no-ops included, alone, several in a row, and in batches that
apply or are discarded), await queries (alone, concurrently with `asyncio.gather`, and all
of them in a random order), and take, mutate, query and drop snapshots. After every
operation each answer is compared with `Oracle`, a plain-Python from-scratch evaluation of
the same functions over a dict of the current inputs, errors included (same type, same
args). The machine also tracks every view's expected revision (+1 per effective mutation
or batch, unchanged by no-ops), the database's mutation events (exactly one `InputSet` or
`InputRemoved` per changed key, then `RevisionBumped`; nothing for no-ops), saves and
loads the database into a fresh instance, and reads the recompute log to pin the work done:

* a record never runs twice at one revision (memoized errors and single flight included),
  a second read without a mutation in between runs nothing, and what runs is needed by a
  from-scratch evaluation;
* on the database, the model predicts exactly which records run, as Salsa defines it: the
  new ones, and those one of whose direct reads changed since they were last verified
  (an input was set or removed, or a query's outcome became different: early cutoff);
  memoized errors may also run again at a later revision. In particular a record none of
  whose transitive inputs changed never runs;
* a snapshot runs none of the records whose memos were valid in the database when it was
  taken, until its own first change.

`Graph` is shaped to exercise every mechanism: a chain five queries deep (`chain`),
fan-in through `asyncio.gather` and `asyncio.TaskGroup` (`fan`, `total`), early cutoff
with dependents downstream (`clamp`, `mod3` → `cut` → `fan` → `total`), a dynamic
dependency (`pick`), absent inputs caught (`value`, `high`, `scale`) and propagated
(`strict`), failing queries caught (`safe`) and propagated (`unsafe`, `total`) whose
errors change type, args or neither as inputs change, and LOW, MEDIUM and HIGH durability
inputs (`src`, `mode`, `cfg`). The leaf query `value` yields to the event loop, so
concurrent evaluations, revalidations and mutations interleave at many points.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import pytest
from hypothesis import event, given, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import picante
from picante import MissingInputError
from picante._events import public_event
from picante._runtime import view_of
from tests.strategies import KEYS, Cell, Mutation, Record, mutations, records, values


if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Mapping

T = TypeVar("T")

Read: TypeAlias = tuple[str, tuple[str, tuple[int, ...]]]
"""A dependency: `("input", cell)` or `("query", record)`."""

Result: TypeAlias = tuple[object, Exception | None]
"""What an await produced: `(value, None)` or `(None, error)`."""


def show(record: Record | Cell) -> str:
    """Format a record as the query bodies log it: `chain(3)`, `total()`."""
    name, key = record
    return f"{name}({', '.join(map(str, key))})"


# -- the database under test --------------------------------------------------------


@picante.database
class Graph:
    """The query graph of the state machine; every query body logs its call."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def src(self, k: int) -> int: ...  # type: ignore[empty-body]

    @picante.input(durability=picante.Durability.HIGH)
    async def cfg(self, k: int) -> int: ...  # type: ignore[empty-body]

    @picante.input(durability=picante.Durability.MEDIUM)
    async def mode(self) -> int: ...  # type: ignore[empty-body]

    @picante.query
    async def value(self, k: int) -> int:
        self.log.append(f"value({k})")
        await asyncio.sleep(0)  # yield, so that concurrent evaluations interleave
        try:
            return await self.src(k)
        except MissingInputError:
            return 0

    @picante.query
    async def strict(self, k: int) -> int:
        self.log.append(f"strict({k})")
        return await self.src(k) * 10

    @picante.query
    async def chain(self, k: int) -> int:
        self.log.append(f"chain({k})")
        if k == 0:
            return await self.value(0)
        return await self.chain(k - 1) + await self.value(k)

    @picante.query
    async def clamp(self, k: int) -> int:
        self.log.append(f"clamp({k})")
        return min(await self.value(k), 10)

    @picante.query
    async def mod3(self, k: int) -> int:
        self.log.append(f"mod3({k})")
        return await self.value(k) % 3

    @picante.query
    async def cut(self, k: int) -> int:
        self.log.append(f"cut({k})")
        return await self.mod3(k) + 100 * await self.clamp(k)

    @picante.query
    async def pick(self, k: int) -> int:
        self.log.append(f"pick({k})")
        which = await self.mod3(k)
        if which == 0:
            return self.cfg.get(k, default=7)
        if which == 1:
            try:
                return await self.src((k + 1) % 5)
            except MissingInputError:
                return -1
        return await self.strict((k + 2) % 5)

    @picante.query
    async def checked(self, k: int) -> int:
        self.log.append(f"checked({k})")
        v = await self.value(k)
        if v % 4 == 3:
            raise ValueError(k)
        if v % 4 == 2:
            raise ArithmeticError(k)
        if v % 4 == 1 and v > 4:
            raise OverflowError(k, v % 8)
        return v

    @picante.query
    async def safe(self, k: int) -> int:
        self.log.append(f"safe({k})")
        try:
            return await self.checked(k)
        except ValueError as error:
            return -100 - int(error.args[0])

    @picante.query
    async def unsafe(self, k: int) -> int:
        self.log.append(f"unsafe({k})")
        return await self.checked(k) + 1

    @picante.query
    async def high(self, k: int) -> int:
        self.log.append(f"high({k})")
        try:
            return await self.cfg(k)
        except MissingInputError:
            return 1

    @picante.query
    async def mixed(self, k: int) -> int:
        self.log.append(f"mixed({k})")
        return await self.high(k) * await self.clamp(k)

    @picante.query
    async def scale(self) -> int:
        self.log.append("scale()")
        try:
            return await self.mode()
        except MissingInputError:
            return 1

    @picante.query
    async def fan(self, k: int) -> int:
        self.log.append(f"fan({k})")
        a, b = await asyncio.gather(self.chain(k), self.cut(k))
        outcomes = await asyncio.gather(self.unsafe(k), self.pick(k), return_exceptions=True)
        ok = sum(r for r in outcomes if isinstance(r, int))
        failed = sum(1 for r in outcomes if isinstance(r, Exception))
        return a + b + ok + 1000 * failed + await self.mixed(k) * await self.scale()

    @picante.query
    async def total(self) -> int:
        self.log.append("total()")
        async with asyncio.TaskGroup() as group:
            fans = [group.create_task(self.fan(k)) for k in KEYS]
        result = sum(task.result() for task in fans)
        for k in KEYS:
            result += await self.safe(k)
        return result


INPUTS = {"src": 1, "cfg": 1, "mode": 0}
QUERIES = {
    "value": 1,
    "strict": 1,
    "chain": 1,
    "clamp": 1,
    "mod3": 1,
    "cut": 1,
    "pick": 1,
    "checked": 1,
    "safe": 1,
    "unsafe": 1,
    "high": 1,
    "mixed": 1,
    "scale": 0,
    "fan": 1,
    "total": 0,
}
CELLS: list[Cell] = records(INPUTS)
RECORDS: list[Record] = records(QUERIES)
TIMEOUT = 10
"""Seconds any one operation may take: a deadlock fails the example instead of hanging it."""


# -- the oracle ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The from-scratch outcome of one record and what it read directly, in order."""

    value: object
    error: Exception | None
    reads: tuple[Read, ...]


class Oracle:
    """
    Evaluate `Graph`'s queries from scratch over a plain dict of inputs.

    Each `_name` method is the body of query `name`, written as ordinary Python. Within one
    oracle every record is evaluated once (the functions are pure), and its direct reads
    are recorded, so the oracle also knows what each record transitively reads.
    """

    def __init__(self, inputs: Mapping[Cell, int]) -> None:
        self.inputs = dict(inputs)
        self.outcomes: dict[Record, Outcome] = {}
        self._reading: list[list[Read]] = []
        self._inputs_of: dict[Record, frozenset[Cell]] = {}
        self._reach: dict[Record, frozenset[Record]] = {}

    # What query bodies call.

    def input(self, name: str, *key: int) -> int:
        cell = (name, key)
        self._reading[-1].append(("input", cell))
        if cell not in self.inputs:
            raise MissingInputError(name, key)
        return self.inputs[cell]

    def get(self, name: str, *key: int, default: int) -> int:
        cell = (name, key)
        self._reading[-1].append(("input", cell))
        return self.inputs.get(cell, default)

    def query(self, name: str, *key: int) -> int:
        outcome = self.outcome((name, key))
        self._reading[-1].append(("query", (name, key)))
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[return-value]

    # What the tests ask.

    def outcome(self, record: Record) -> Outcome:
        """Return the outcome of *record*, evaluating it on first use."""
        done = self.outcomes.get(record)
        if done is None:
            name, key = record
            self._reading.append([])
            value: object = None
            error: Exception | None = None
            try:
                value = getattr(self, f"_{name}")(*key)
            except Exception as exc:
                error = exc
            reads = tuple(dict.fromkeys(self._reading.pop()))
            done = self.outcomes[record] = Outcome(value, error, reads)
        return done

    def inputs_of(self, record: Record) -> frozenset[Cell]:
        """The input cells *record* reads, directly or through other queries."""
        found = self._inputs_of.get(record)
        if found is None:
            reads = self.outcome(record).reads
            found = frozenset(dep for kind, dep in reads if kind == "input").union(
                *(self.inputs_of(dep) for kind, dep in reads if kind == "query")
            )
            self._inputs_of[record] = found
        return found

    def reach(self, record: Record) -> frozenset[Record]:
        """*record* and every query record it reads, directly or transitively."""
        found = self._reach.get(record)
        if found is None:
            found = frozenset({record}).union(
                *(self.reach(dep) for kind, dep in self.outcome(record).reads if kind == "query")
            )
            self._reach[record] = found
        return found

    # The query bodies.

    def _value(self, k: int) -> int:
        try:
            return self.input("src", k)
        except MissingInputError:
            return 0

    def _strict(self, k: int) -> int:
        return self.input("src", k) * 10

    def _chain(self, k: int) -> int:
        if k == 0:
            return self.query("value", 0)
        return self.query("chain", k - 1) + self.query("value", k)

    def _clamp(self, k: int) -> int:
        return min(self.query("value", k), 10)

    def _mod3(self, k: int) -> int:
        return self.query("value", k) % 3

    def _cut(self, k: int) -> int:
        return self.query("mod3", k) + 100 * self.query("clamp", k)

    def _pick(self, k: int) -> int:
        which = self.query("mod3", k)
        if which == 0:
            return self.get("cfg", k, default=7)
        if which == 1:
            try:
                return self.input("src", (k + 1) % 5)
            except MissingInputError:
                return -1
        return self.query("strict", (k + 2) % 5)

    def _checked(self, k: int) -> int:
        v = self.query("value", k)
        if v % 4 == 3:
            raise ValueError(k)
        if v % 4 == 2:
            raise ArithmeticError(k)
        if v % 4 == 1 and v > 4:
            raise OverflowError(k, v % 8)
        return v

    def _safe(self, k: int) -> int:
        try:
            return self.query("checked", k)
        except ValueError as error:
            return -100 - int(error.args[0])

    def _unsafe(self, k: int) -> int:
        return self.query("checked", k) + 1

    def _high(self, k: int) -> int:
        try:
            return self.input("cfg", k)
        except MissingInputError:
            return 1

    def _mixed(self, k: int) -> int:
        return self.query("high", k) * self.query("clamp", k)

    def _scale(self) -> int:
        try:
            return self.input("mode")
        except MissingInputError:
            return 1

    def _fan(self, k: int) -> int:
        a, b = self.query("chain", k), self.query("cut", k)
        ok = failed = 0
        for name in ("unsafe", "pick"):
            try:
                ok += self.query(name, k)
            except Exception:
                failed += 1
        return a + b + ok + 1000 * failed + self.query("mixed", k) * self.query("scale")

    def _total(self) -> int:
        result = sum(self.query("fan", k) for k in KEYS)
        for k in KEYS:
            result += self.query("safe", k)
        return result


def assert_matches(record: Record, actual: Result, expected: Outcome) -> None:
    """Assert that an awaited *actual* result is the oracle's: same value, or same error."""
    value, error = actual
    if expected.error is None:
        assert error is None, f"{show(record)} raised {error!r}, expected {expected.value!r}"
        assert (type(value), value) == (type(expected.value), expected.value), show(record)
    else:
        assert error is not None, f"{show(record)} = {value!r}, expected {expected.error!r}"
        assert (type(error), error.args) == (type(expected.error), expected.error.args), show(
            record
        )
        if isinstance(expected.error, MissingInputError):
            assert isinstance(error, MissingInputError)
            assert (error.ingredient, error.key) == (expected.error.ingredient, expected.error.key)


async def deadline(coro: Coroutine[Any, Any, T]) -> T:
    """Await *coro*, failing instead of hanging if it deadlocks."""
    async with asyncio.timeout(TIMEOUT):
        return await coro


async def call(db: object, record: Record) -> Result:
    """Await *record* on *db*, returning its value or the exception it raised."""
    name, key = record
    try:
        return await getattr(db, name)(*key), None
    except Exception as error:
        return None, error


async def call_each(db: object, batch: Iterable[Record]) -> list[Result]:
    """Await each record of *batch* on *db* in turn."""
    return [await call(db, record) for record in batch]


# -- the state machine ----------------------------------------------------------------


def signature(outcome: Outcome) -> tuple[object, ...]:
    """What makes two outcomes equal for early cutoff: the value, or the error type and args."""
    if outcome.error is None:
        return (type(outcome.value), outcome.value)
    return (type(outcome.error), outcome.error.args)


@dataclasses.dataclass(frozen=True)
class Verified:
    """What the model knows of a record's memo as of its last verification."""

    revision: int
    outcome: tuple[object, ...]
    failed: bool
    reads: tuple[Read, ...]
    inputs: frozenset[Cell]


@dataclasses.dataclass(eq=False, repr=False)
class Subject:
    """A database or snapshot under test, its recompute log and the model's copy of it."""

    db: Graph
    log: list[str]
    inputs: dict[Cell, int]
    revision: int
    # changes[r - 1]: the cells that changed at revision r.
    changes: list[frozenset[Cell]]
    # The revision at which each record's body last ran.
    ran_at: dict[str, int] = dataclasses.field(default_factory=dict)
    # A snapshot's records that must not run: memos valid in its parent when it was taken
    # (forgotten at the snapshot's first change).
    reusable: frozenset[str] = frozenset()

    def changed_between(self, start: int, end: int) -> frozenset[Cell]:
        """The cells that changed after revision *start*, up to revision *end*."""
        return frozenset().union(*self.changes[start:end])


class DiscardError(Exception):
    """Raised inside a batch to discard it."""


MAX_SNAPSHOTS = 3


class MemoConsistency(RuleBasedStateMachine):
    """
    Every memoized answer equals a from-scratch evaluation, with no redundant work.

    The model predicts the work on the database exactly, as Salsa defines it: a record
    runs if it is new, or if one of its direct reads changed since it was last verified
    (an input was set or removed; a query's outcome became different, so early cutoff
    stops equal ones). A memoized error may also run again at a later revision, never at
    the same one. Snapshots are held to the same values, to "never twice at one revision,
    never what is not needed", and reuse what was valid in the database when taken.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.main = Subject(Graph([]), [], {}, 0, [])
        self.main.db.log = self.main.log
        self.snapshots: list[Subject] = []
        # What the model knows of every record of the database it saw verified, and when
        # its outcome last became different (the memo's `changed_at`).
        self.verified: dict[Record, Verified] = {}
        self.changed_at: dict[Record, int] = {}
        # Records whose work the model does not predict until they next run: memoized
        # errors loaded from a cache file (saved without their exception, they run again
        # when read) and the records that read them, directly or not.
        self.loose: set[Record] = set()
        self.cache = Path(tempfile.mkdtemp(prefix="picante-machine-")) / "graph.cache"
        # The mutation events of the database (`picante.events`), and those the model expects.
        self.events: list[object] = []
        self.expected_events: list[object] = []
        self.listen(self.main.db)

    def teardown(self) -> None:
        shutil.rmtree(self.cache.parent, ignore_errors=True)
        # Only a failed example leaves tasks behind: end them quietly before closing.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending))
        self.loop.close()

    def listen(self, db: object) -> None:
        """Record *db*'s mutation events, as `picante.events` delivers them."""

        def listener(record: object) -> None:
            event = public_event(record)
            if isinstance(event, picante.InputSet | picante.InputRemoved | picante.RevisionBumped):
                self.events.append(event)

        view_of(db).listeners.append(listener)

    def expect_commit(self, revision: int, changes: Iterable[tuple[Cell, int | None]]) -> None:
        """The events of a commit: each change in order, then the new revision."""
        for (name, key), value in changes:
            kind = picante.InputRemoved if value is None else picante.InputSet
            self.expected_events.append(kind(revision, name, key))
        self.expected_events.append(picante.RevisionBumped(revision))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Drive *coro* on the machine's own event loop; assert no task is left behind."""
        result = self.loop.run_until_complete(deadline(coro))
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        assert pending == [], f"tasks left running: {pending}"
        return result

    def subject(self, which: int) -> Subject:
        """The database (0) or one of the snapshots, by a drawn index."""
        subjects = [self.main, *self.snapshots]
        return subjects[which % len(subjects)]

    # Mutations.

    def mutate(self, subject: Subject, cell: Cell, value: int | None, *, idle: bool = True) -> None:
        """Set (or, for `None`, remove) *cell* and check the revision it reports."""
        name, key = cell
        handle = getattr(subject.db, name)
        effective = subject.inputs.get(cell) != value
        if value is None:
            revision = handle.remove(*key)
            subject.inputs.pop(cell, None)
        else:
            revision = handle.set(*key, value)
            subject.inputs[cell] = value
        if effective:
            subject.revision += 1
            subject.changes.append(frozenset({cell}))
            subject.reusable = frozenset()
            if subject is self.main:
                self.expect_commit(subject.revision, [(cell, value)])
        event("mutation", "effective" if effective else "no-op")
        assert revision == subject.revision, f"{show(cell)} <- {value!r}: effective={effective}"
        assert picante.revision(subject.db) == subject.revision
        assert handle.get(*key, default=None) == value
        if idle:
            assert subject.log == [], "a mutation ran a query"

    @rule(cell=st.sampled_from(CELLS), value=values())
    def set_input(self, cell: Cell, value: int) -> None:
        self.mutate(self.main, cell, value)

    @rule(changes=st.lists(mutations(CELLS), min_size=2, max_size=5))
    def mutate_several(self, changes: list[Mutation]) -> None:
        for cell, value in changes:
            self.mutate(self.main, cell, value)

    @precondition(lambda self: self.main.inputs)
    @rule(data=st.data())
    def set_current_value(self, data: st.DataObject) -> None:
        cell = data.draw(st.sampled_from(sorted(self.main.inputs)), label="cell")
        self.mutate(self.main, cell, self.main.inputs[cell])

    @rule(cell=st.sampled_from(CELLS))
    def remove_input(self, cell: Cell) -> None:
        self.mutate(self.main, cell, None)

    @rule(changes=st.lists(mutations(CELLS), max_size=5), discard=st.booleans())
    def mutate_in_batch(self, changes: list[Mutation], discard: bool) -> None:
        main = self.main
        before = dict(main.inputs)
        with contextlib.suppress(DiscardError), picante.batch(main.db):
            for cell, value in changes:
                name, key = cell
                handle = getattr(main.db, name)
                revision = handle.remove(*key) if value is None else handle.set(*key, value)
                assert revision == main.revision, "a batched change moved the revision"
                assert handle.get(*key, default=None) == before.get(cell), "read inside a batch"
            if discard:
                raise DiscardError
        if not discard:
            for cell, value in changes:
                if value is None:
                    main.inputs.pop(cell, None)
                else:
                    main.inputs[cell] = value
            changed = frozenset(
                cell for cell, _ in changes if before.get(cell) != main.inputs.get(cell)
            )
            if changed:
                main.revision += 1
                main.changes.append(changed)
                # One event per changed key, in the order of its first change in the batch.
                last = dict(changes)
                order = list(dict.fromkeys(cell for cell, _ in changes))
                self.expect_commit(main.revision, [(c, last[c]) for c in order if c in changed])
        assert picante.revision(main.db) == main.revision
        assert main.log == [], "a batch ran a query"

    # Snapshots.

    @precondition(lambda self: len(self.snapshots) < MAX_SNAPSHOTS)
    @rule(of=st.integers(0, MAX_SNAPSHOTS))
    def take_snapshot(self, of: int) -> None:
        source = self.subject(of)
        db = picante.snapshot(source.db)
        snapshot = Subject(db, [], dict(source.inputs), source.revision, list(source.changes))
        if source is self.main:
            # "A snapshot taken at a revision where db already has a valid memo reuses it."
            snapshot.reusable = frozenset(
                show(record)
                for record, seen in self.verified.items()
                if seen.revision == source.revision and record not in self.loose
            )
        # User attributes are copied shallowly: give the snapshot a log of its own.
        db.log = snapshot.log
        assert picante.revision(db) == source.revision
        self.snapshots.append(snapshot)

    @precondition(lambda self: len(self.snapshots) == MAX_SNAPSHOTS)
    @rule(which=st.integers(0, MAX_SNAPSHOTS - 1))
    def drop_snapshot(self, which: int) -> None:
        del self.snapshots[which]
        # A full collection (slow, hence only when all slots are taken) releases the
        # snapshot now rather than at some later step, so that examples replay exactly.
        gc.collect()

    @precondition(lambda self: self.snapshots)
    @rule(which=st.integers(0, MAX_SNAPSHOTS - 1), change=mutations(CELLS))
    def mutate_snapshot(self, which: int, change: Mutation) -> None:
        self.mutate(self.snapshots[which % len(self.snapshots)], *change)

    @precondition(lambda self: self.snapshots)
    @rule(
        which=st.integers(0, MAX_SNAPSHOTS - 1),
        some=st.lists(st.sampled_from(RECORDS), min_size=1, max_size=6),
        everything=st.booleans(),
    )
    def query_snapshot(self, which: int, some: list[Record], everything: bool) -> None:
        snapshot = self.snapshots[which % len(self.snapshots)]
        batch = RECORDS if everything else some
        oracle = Oracle(snapshot.inputs)
        for record, result in zip(batch, self.run(call_each(snapshot.db, batch)), strict=True):
            assert_matches(record, result, oracle.outcome(record))
        ran, _ = self.check_needed_once(snapshot, oracle, batch, snapshot.revision)
        recomputed = sorted(snapshot.reusable.intersection(ran))
        assert recomputed == [], f"{recomputed} were valid in the database, yet ran: {ran}"
        for record, result in zip(batch, self.run(call_each(snapshot.db, batch)), strict=True):
            assert_matches(record, result, oracle.outcome(record))
        assert snapshot.log == [], f"a second read of {batch} without a mutation ran queries"

    # Queries.

    def check_needed_once(
        self, subject: Subject, oracle: Oracle, roots: Iterable[Record], rev: int
    ) -> tuple[list[str], frozenset[Record]]:
        """Check that what ran at revision *rev* is needed, and ran once; clear the log."""
        ran = list(subject.log)
        subject.log.clear()
        twice = sorted(entry for entry, count in Counter(ran).items() if count > 1)
        assert twice == [], f"ran more than once at revision {rev}: {twice} in {ran}"
        reach = frozenset().union(*(oracle.reach(root) for root in roots))
        needed = {show(record) for record in reach}
        strays = [entry for entry in ran if entry not in needed]
        assert strays == [], f"{strays} ran but a from-scratch evaluation does not read them: {ran}"
        again = [entry for entry in ran if subject.ran_at.get(entry, -1) == rev]
        assert again == [], f"{again} ran again at revision {rev}: {ran}"
        for entry in ran:
            subject.ran_at[entry] = rev
        return ran, reach

    def changed_reads(self, seen: Verified, rev: int) -> list[str]:
        """The direct reads of a memo verified as *seen* that changed up to *rev* (Salsa)."""
        changed_inputs = self.main.changed_between(seen.revision, rev)
        return [
            show(dep)
            for kind, dep in seen.reads
            if (dep in changed_inputs if kind == "input" else self.changed_at[dep] > seen.revision)
        ]

    def check_work(self, oracle: Oracle, roots: Iterable[Record], rev: int | None = None) -> None:
        """Check the work of one operation on the database that awaited *roots* (see the class)."""
        rev = self.main.revision if rev is None else rev
        ran, reach = self.check_needed_once(self.main, oracle, roots, rev)
        # Outcomes first: a record's reads must see this operation's changes of its deps.
        for record in reach:
            seen = self.verified.get(record)
            if seen is None or seen.outcome != signature(oracle.outcome(record)):
                self.changed_at[record] = rev
        for record in sorted(reach):
            entry = show(record)
            seen = self.verified.get(record)
            if record in self.loose:
                if entry in ran:
                    self.loose.discard(record)
            elif seen is None:
                assert entry in ran, f"{entry} is new but did not run: {ran}"
            elif seen.revision < rev:
                changed = self.changed_reads(seen, rev)
                if changed:
                    assert entry in ran, f"{entry} did not run although {changed} changed: {ran}"
                elif entry in ran and not seen.failed:
                    inputs = sorted(seen.inputs & self.main.changed_between(seen.revision, rev))
                    assert inputs, (
                        f"{entry} ran although none of its inputs changed since revision "
                        f"{seen.revision}: {ran}"
                    )
                    msg = f"{entry} ran although none of its reads changed (early cutoff): {ran}"
                    raise AssertionError(msg)
            else:
                assert entry not in ran, f"{entry} ran although verified at revision {rev}"
            outcome = oracle.outcome(record)
            self.verified[record] = Verified(
                rev,
                signature(outcome),
                outcome.error is not None,
                outcome.reads,
                oracle.inputs_of(record),
            )
        event("bodies run per operation", f"{min(len(ran), 10)}{'+' if len(ran) >= 10 else ''}")
        for record in reach:
            error = oracle.outcome(record).error
            event("outcome", "value" if error is None else type(error).__name__)

    @rule(record=st.sampled_from(RECORDS))
    def query(self, record: Record) -> None:
        oracle = Oracle(self.main.inputs)
        expected = oracle.outcome(record)
        assert_matches(record, self.run(call(self.main.db, record)), expected)
        self.check_work(oracle, [record])
        assert_matches(record, self.run(call(self.main.db, record)), expected)
        assert self.main.log == [], (
            f"a second read of {show(record)} without a mutation ran queries"
        )

    @rule(
        record=st.sampled_from(RECORDS),
        copies=st.integers(2, 3),
        others=st.lists(st.sampled_from(RECORDS), max_size=4),
        data=st.data(),
    )
    def query_concurrently(
        self, record: Record, copies: int, others: list[Record], data: st.DataObject
    ) -> None:
        batch = data.draw(st.permutations([record] * copies + others), label="batch")

        async def gather() -> list[Result]:
            return await asyncio.gather(*(call(self.main.db, r) for r in batch))

        results = self.run(gather())
        oracle = Oracle(self.main.inputs)
        for r, result in zip(batch, results, strict=True):
            assert_matches(r, result, oracle.outcome(r))
        self.check_work(oracle, batch)

    @rule(
        batch=st.lists(st.sampled_from(RECORDS), min_size=1, max_size=4),
        steps=st.integers(1, 8),
        change=mutations(CELLS),
    )
    def mutate_while_querying(self, batch: list[Record], steps: int, change: Mutation) -> None:
        # `fan` and `total` suspend (they gather child tasks): a mutation made meanwhile
        # must not leak into evaluations that started before it.
        oracle = Oracle(self.main.inputs)
        started_at = self.main.revision

        async def interleave() -> list[Result]:
            tasks = [asyncio.create_task(call(self.main.db, r)) for r in batch]
            for _ in range(steps):
                await asyncio.sleep(0)
            event("mutated while querying", "yes" if not all(t.done() for t in tasks) else "no")
            self.mutate(self.main, *change, idle=False)
            return await asyncio.gather(*tasks)

        for record, result in zip(batch, self.run(interleave()), strict=True):
            assert_matches(record, result, oracle.outcome(record))
        self.check_work(oracle, batch, started_at)

    @rule(order=st.permutations(range(len(RECORDS))))
    def query_everything(self, order: list[int]) -> None:
        oracle = Oracle(self.main.inputs)
        batch = [RECORDS[i] for i in order]
        for record, result in zip(batch, self.run(call_each(self.main.db, batch)), strict=True):
            assert_matches(record, result, oracle.outcome(record))
        self.check_work(oracle, batch)

    # Persistence.

    @rule()
    def save_and_load(self) -> None:
        """Save the database (a full file, or a log entry), load it into a fresh instance."""
        main = self.main
        self.run(picante.save(main.db, self.cache))
        db = Graph(main.log)
        assert self.run(picante.load(db, self.cache))
        assert main.log == [], "saving or loading ran a query"
        main.db = db
        self.listen(db)
        event("cache log entries", str(self.cache.with_name("graph.cache.log").exists()))
        # Errors come back without their exception: they run again when read, and so may
        # whatever read them (at the revision they ran at, too).
        failed = {record for record, seen in self.verified.items() if seen.failed}
        readers: dict[Record, set[Record]] = {}
        for record, seen in self.verified.items():
            for kind, dep in seen.reads:
                if kind == "query":
                    readers.setdefault(dep, set()).add(record)  # type: ignore[arg-type]
        stack = list(failed)
        while stack:
            record = stack.pop()
            if record not in self.loose:
                self.loose.add(record)
                main.ran_at.pop(show(record), None)
                stack.extend(readers.get(record, ()))

    @invariant()
    def mutation_events_are_exact(self) -> None:
        assert self.events == self.expected_events

    @invariant()
    def inputs_and_revisions_are_tracked(self) -> None:
        for subject in [self.main, *self.snapshots]:
            assert picante.revision(subject.db) == subject.revision
            for cell in CELLS:
                name, key = cell
                assert getattr(subject.db, name).get(*key, default=None) == subject.inputs.get(cell)
            assert subject.log == []


# The machine is this file's main test: it gets three times the profile's examples (300 with
# the default profile, about 15 s on two cores), and a timeout long enough to shrink a failure
# (hypothesis shrinks for up to five minutes, and would report a timeout as a flaky failure).
MACHINE_EXAMPLES = 3 * settings().max_examples

TestMemoConsistency = MemoConsistency.TestCase
TestMemoConsistency.__doc__ = "After any operations, every memo equals a from-scratch evaluation."
TestMemoConsistency.settings = settings(
    max_examples=MACHINE_EXAMPLES,
    stateful_step_count=50,
    deadline=None,
    report_multiple_bugs=False,
)
TestMemoConsistency.pytestmark = [pytest.mark.timeout(600 + MACHINE_EXAMPLES // 5)]  # type: ignore[attr-defined]


# -- plain property tests -------------------------------------------------------------


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a fresh event loop (hypothesis examples are synchronous)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(factory())
    finally:
        loop.close()


@given(
    inputs=st.dictionaries(st.sampled_from(CELLS), values()),
    order=st.permutations(RECORDS),
)
@settings(deadline=None)
def test_fresh_database_in_any_order(inputs: dict[Cell, int], order: list[Record]) -> None:
    """A fresh database answers every record as the oracle does, running each body once."""
    log: list[str] = []
    db = Graph(log)
    for (name, key), value in inputs.items():
        getattr(db, name).set(*key, value)
    oracle = Oracle(inputs)

    async def everything() -> list[Result]:
        return [await call(db, record) for record in order]

    for record, result in zip(order, run(everything), strict=True):
        assert_matches(record, result, oracle.outcome(record))
    assert sorted(log) == sorted(map(show, RECORDS))


DEPTH = 10


@picante.database
class Ladder:
    """A chain `DEPTH` queries deep: `step(i)` adds `min(rung(i), 3)` to `step(i - 1)`."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def rung(self, i: int) -> int: ...  # type: ignore[empty-body]

    @picante.query
    async def step(self, i: int) -> int:
        self.log.append(f"step({i})")
        below = 0 if i == 0 else await self.step(i - 1)
        try:
            return below + min(await self.rung(i), 3)
        except MissingInputError:
            return below


def ladder_oracle(rungs: Mapping[int, int]) -> list[int]:
    """The value of every `step(i)`: running sums of `min(rung(i), 3)`, absent rungs as 0."""
    steps: list[int] = []
    below = 0
    for i in range(DEPTH):
        below += min(rungs[i], 3) if i in rungs else 0
        steps.append(below)
    return steps


ladder_mutations = st.lists(
    st.lists(
        mutations([("rung", (i,)) for i in range(DEPTH)]),
        min_size=1,
        max_size=4,
    ),
    max_size=12,
)


@given(rounds=ladder_mutations)
@settings(deadline=None)
def test_deep_chain_recomputes_exactly_what_changed(rounds: list[list[Mutation]]) -> None:
    """A 10-deep chain reruns exactly the steps whose rung or whose step below changed value."""
    log: list[str] = []
    db = Ladder(log)
    rungs: dict[int, int] = {}
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(db.step(DEPTH - 1)) == 0
        assert sorted(log) == sorted(f"step({i})" for i in range(DEPTH))
        before = ladder_oracle(rungs)
        for changes in rounds:
            log.clear()
            touched: set[int] = set()
            for (_, (i,)), value in changes:
                revision = picante.revision(db)
                if value is None:
                    effective = i in rungs
                    rungs.pop(i, None)
                    assert db.rung.remove(i) == revision + effective
                else:
                    effective = rungs.get(i) != value
                    rungs[i] = value
                    assert db.rung.set(i, value) == revision + effective
                if effective:
                    touched.add(i)
            after = ladder_oracle(rungs)
            assert loop.run_until_complete(db.step(DEPTH - 1)) == after[-1]
            expected = [
                f"step({i})"
                for i in range(DEPTH)
                if i in touched or (i > 0 and before[i - 1] != after[i - 1])
            ]
            assert sorted(log) == sorted(expected)
            log.clear()
            values_now = [loop.run_until_complete(db.step(i)) for i in range(DEPTH)]
            assert values_now == after
            assert log == []
            before = after
    finally:
        loop.close()
