"""
Model-based tests of memo consistency (DESIGN.md §4) and of the work picante does.

The heart is `MemoConsistency`, a hypothesis state machine over the `Graph` database. Its
rules set and remove inputs (no-ops included, alone, several in a row, and in batches that
apply or are discarded), await queries (alone, concurrently with `asyncio.gather`, and all
of them in a random order), take, mutate, query and drop snapshots, refresh views (alone,
in batches, from threads), change the outside world a volatile query reads (the oracle
models it as one more input) and sweep views. After every
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
  (an input was set or removed, or a query's outcome became different: early cutoff),
  memoized errors held to the same rule as values, and the volatile `world`, which runs
  at every revision it is read at. In particular a record none of whose transitive
  inputs changed, and that reads no volatile record, never runs;
* a snapshot runs none of the records whose memos were valid in the database when it was
  taken, until its own first change.

`Graph` is shaped to exercise every mechanism: a chain five queries deep (`chain`),
fan-in through `asyncio.gather`, `picante.gather` and `asyncio.TaskGroup` (`fan`,
`total`), early cutoff with dependents downstream (`clamp`, `mod3` → `cut` → `fan` →
`total`), a dynamic dependency (`pick`), absent inputs caught (`value`, `high`, `scale`)
and propagated (`strict`), failing queries caught (`safe`) and propagated (`unsafe`,
`total`) whose errors change type, args or neither as inputs change, and LOW, MEDIUM and
HIGH durability inputs (`src`, `mode`, `cfg`). The leaf query `value` yields to the
event loop, so concurrent evaluations, revalidations and mutations interleave at many
points.

`Graph` accumulates (`picante.accumulate`): `value` when its input is absent, `checked`
always (also before it raises), `clamp` when it clamps, `high` when its input is absent,
`safe` when it catches. A memo whose accumulated values or accumulating reads changed has
changed even if its value did not, and the model says so (`Oracle.signature`). Rules
collect what records accumulated (`picante.accumulated`) on the database and on
snapshots; the oracle collects from scratch, depth first over its own reads. Where reads
run concurrently (`fan`, `total`), their order, hence the collection's, depends on the
schedule: those collections are compared as multisets, and `total` may run again after
a `fan` ran (its accumulating reads came in another order).

`Graph` also has families of queries that resolve cycles, over a graph of the five keys
whose edges are inputs (node k's successors are the bits of `cfg(k)` for even k, a HIGH
input, and of `edge(k)` for odd k), drawn at the start and changed by the rules, so that
cycles appear, grow, nest and disappear: `reach` (`cycle_initial`, reachability), `low`
(a min propagation with a `cycle_fn` join, reading `reach` inside its own iterations),
`hops` (a counter capped by the MEDIUM input `mode`, widened by its `cycle_fn`), `size`
(`cycle_fallback`, whose fallback reads an input), `tip` and `tail` (a cycle through a
query that did not opt in, when k is its own successor) and `digest` (an ordinary query
reading three families through `picante.gather`). Their answers are compared with
`CycleOracle` (breadth-first search, Kleene iteration from the initial value, strongly
connected components), `CycleError` included: read alone, a record raises exactly when the
model says so (`tail` entered first raises; a memoized error lasts its revision); read
concurrently with other cycle records, a record that meets a cycle may raise instead (a
cycle closed between two tasks), and the rest of such a revision stays loose. Their
bodies log apart (`cycle_log`, since cycles run bodies several times per revision): what
runs must be needed, a second read runs nothing, and on the database a record none of
whose transitive inputs changed since the model saw it answer runs no body at all. The
cycle records are read alone and concurrently on every view, with thread commits and
cancellations injected mid-iteration, and go through snapshots, sweeps and cache-file
round trips like the rest (`PICANTE_MACHINE_SKIP=cycles` leaves them out,
`PICANTE_MACHINE_SKIP=cycle_fallback` the fallback family)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import gc
import os
import shutil
import tempfile
import weakref
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import pytest
from hypothesis import event, given, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import picante
from picante import MissingInputError
from picante._events import public_event
from picante._runtime import view_of
from tests.schedule import Schedule, ScheduledLoop, in_thread, new_loop, schedules
from tests.strategies import KEYS, Cell, Mutation, Record, keys, mutations, records, values


if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping

T = TypeVar("T")

Read: TypeAlias = tuple[str, tuple[str, tuple[int, ...]]]
"""A dependency: `("input", cell)` or `("query", record)`."""

Result: TypeAlias = tuple[object, BaseException | None, int]
"""What an await produced, `(value, None, r)` or `(None, error, r)`: r is the revision it saw."""


def show(record: Record | Cell) -> str:
    """Format a record as the query bodies log it: `chain(3)`, `total()`."""
    name, key = record
    return f"{name}({', '.join(map(str, key))})"


# -- the database under test --------------------------------------------------------


SPAWNING: contextvars.ContextVar[bool] = contextvars.ContextVar("SPAWNING", default=False)
SPAWNED: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
"""Tasks a query body created (`asyncio.gather` and `TaskGroup` children, outliving tasks)."""


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Mark the tasks created in the block as the query's own, not picante's."""
    token = SPAWNING.set(True)
    try:
        yield
    finally:
        SPAWNING.reset(token)


def task_factory(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    *,
    context: contextvars.Context | None = None,
) -> asyncio.Task[Any]:
    """Create a task as the loop would, remembering it in `SPAWNED` if a query body made it."""
    task = asyncio.Task(coro, loop=loop, context=context)
    if SPAWNING.get() if context is None else context.run(SPAWNING.get):
        SPAWNED.add(task)
    return task


@dataclasses.dataclass(eq=False)
class Late:
    """A task that `echo` leaves behind: it reads `src(k)` once *release* is resolved."""

    release: asyncio.Future[None]
    task: asyncio.Task[int | None] | None = None
    # What the query body read (`(value,)`), once it did.
    expected: tuple[int | None] | None = None


async def read_late(db: Graph, k: int, late: Late) -> int | None:
    """Read `src(k)` after the query that started this task returned (`None`: absent)."""
    await late.release
    try:
        return await db.src(k)
    except MissingInputError:
        return None


async def release_late(late: list[Late], *, check: bool = True) -> None:
    """Let every outliving task read, and (with *check*) check it saw what its query saw."""
    while late:
        batch = list(late)
        late.clear()
        for entry in batch:
            if not entry.release.done():
                entry.release.set_result(None)
        for entry in batch:
            assert entry.task is not None
            read = await entry.task
            if check and entry.expected is not None:
                assert (read,) == entry.expected, (
                    f"a task outliving its query read {read!r}, the query read {entry.expected}"
                )


# The cycle families (see `CycleOracle`): queries over a graph of the keys whose edges are
# inputs, so that cycles appear and disappear as inputs change.

TOP = 99
"""`low`'s initial value: above every weight."""
MIXED_CAP = 3
"""Where `tip` stops counting when it is on its own cycle."""
RUNAWAY = 20_000
"""More cycle bodies than this in one operation: a cycle that does not stop iterating."""


class RunawayError(Exception):
    """A cycle body ran more than `RUNAWAY` times in one operation."""


def no_nodes(db: object, k: int) -> frozenset[int]:
    """`reach`'s initial value: nothing reached yet."""
    return frozenset()


def top(db: object, k: int) -> int:
    """`low`'s initial value."""
    return TOP


def lower(db: object, iteration: int, previous: int, value: int, k: int) -> int:
    """`low`'s `cycle_fn`: join with the previous iteration's value (the minimum)."""
    return min(previous, value)


async def widen(db: Graph, iteration: int, previous: int, value: int, k: int) -> int:
    """`hops`'s `cycle_fn`: from the third iteration on, jump to the cap (a head is on a cycle)."""
    return await db.cap() if iteration >= 2 else value


async def size_fallback(db: Graph, k: int) -> int:
    """`size`'s `cycle_fallback`: it reads an input, so the fallback is a dependency."""
    return -100 - db.src.get(k, default=0)


@picante.database(accumulates=str)
class Graph:
    """The query graph of the state machine; every query body logs its call."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.cycle_log: list[str] = []
        self.late: list[Late] = []
        # The outside world `world` reads, untracked. The machine replaces the dict (never
        # mutates it) and refreshes, so a snapshot keeps the world it was taken in.
        self.outside: dict[int, int] = {}

    @picante.input
    async def src(self, k: int) -> int:
        raise NotImplementedError

    @picante.input(durability=picante.Durability.HIGH)
    async def cfg(self, k: int) -> int:
        raise NotImplementedError

    @picante.input(durability=picante.Durability.MEDIUM)
    async def mode(self) -> int:
        raise NotImplementedError

    @picante.query
    async def value(self, k: int) -> int:
        self.log.append(f"value({k})")
        await asyncio.sleep(0)  # yield, so that concurrent evaluations interleave
        try:
            return await self.src(k)
        except MissingInputError:
            picante.accumulate(f"value({k}) missing")
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
        v = await self.value(k)
        if v > 10:
            picante.accumulate(f"clamp({k}) clamped")
        return min(v, 10)

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
        picante.accumulate(f"checked({k}) {v % 4}")
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
            picante.accumulate(f"safe({k}) caught")
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
            picante.accumulate(f"high({k}) default")
            return 1

    @picante.query
    async def mixed(self, k: int) -> int:
        self.log.append(f"mixed({k})")
        return await self.high(k) * await self.clamp(k)

    @picante.query
    async def scale(self) -> int:
        self.log.append("scale()")
        try:
            base = await self.mode()
        except MissingInputError:
            base = 1
        return base + await self.world(0) % 2

    @picante.query(volatile=True)
    async def world(self, k: int) -> int:
        self.log.append(f"world({k})")
        await asyncio.sleep(0)
        return self.outside.get(k, 0)

    @picante.query
    async def sees(self, k: int) -> int:
        # A HIGH-durability input and a volatile query: durability must not skip `world`.
        self.log.append(f"sees({k})")
        return await self.world(k) * 10 + await self.high(k)

    @picante.query
    async def echo(self, k: int) -> int:
        self.log.append(f"echo({k})")
        late = Late(asyncio.get_running_loop().create_future())
        self.late.append(late)
        with spawning():
            late.task = asyncio.create_task(read_late(self, k, late))
        try:
            value: int | None = await self.src(k)
        except MissingInputError:
            value = None
        late.expected = (value,)
        return -1 if value is None else value

    @picante.query
    async def fan(self, k: int) -> int:
        self.log.append(f"fan({k})")
        with spawning():
            both = asyncio.gather(self.chain(k), self.cut(k))
        a, b = await both
        with spawning():
            # picante.gather: valid memos answered at once, the rest in tasks.
            outcomes = await picante.gather(self.unsafe(k), self.pick(k), return_exceptions=True)
        ok = sum(r for r in outcomes if isinstance(r, int))
        failed = sum(1 for r in outcomes if isinstance(r, Exception))
        return a + b + ok + 1000 * failed + await self.mixed(k) * await self.scale()

    @picante.query
    async def total(self) -> int:
        self.log.append("total()")
        async with asyncio.TaskGroup() as group:
            with spawning():
                fans = [group.create_task(self.fan(k)) for k in KEYS]
        result = sum(task.result() for task in fans)
        for k in KEYS:
            result += await self.safe(k)
        return result

    # The cycle families: their bodies log to `cycle_log`, apart from the rest, because a
    # cycle runs its bodies several times per revision (see `CycleOracle`).

    @picante.input
    async def edge(self, k: int) -> int:
        raise NotImplementedError

    async def successors(self, k: int) -> list[int]:
        """Node *k*'s successors: the bits of `cfg(k)` (even *k*, HIGH) or `edge(k)` (odd)."""
        if k % 2 == 0:
            mask = self.cfg.get(k, default=0)
        else:
            try:
                mask = await self.edge(k)
            except MissingInputError:
                mask = 0
        return [j for j in KEYS if mask >> j & 1]

    def ran(self, entry: str) -> None:
        """Log a cycle body's run; fail it if a cycle runs away (it would never yield)."""
        self.cycle_log.append(entry)
        if len(self.cycle_log) > RUNAWAY:
            msg = f"{entry}: more than {RUNAWAY} cycle bodies ran in one operation"
            raise RunawayError(msg)

    async def cap(self) -> int:
        """`hops`'s cap: `mode()` clamped to 0..4, 2 when absent."""
        try:
            return max(0, min(await self.mode(), 4))
        except MissingInputError:
            return 2

    @picante.query(cycle_initial=no_nodes)
    async def reach(self, k: int) -> frozenset[int]:
        self.ran(f"reach({k})")
        out = {k}
        for j in await self.successors(k):
            await asyncio.sleep(0)
            out |= await self.reach(j)
        return frozenset(out)

    @picante.query(cycle_initial=top, cycle_fn=lower)
    async def low(self, k: int) -> int:
        # A min propagation; an absent weight reads another family's cycle, in an iteration.
        self.ran(f"low({k})")
        try:
            weight = await self.src(k)
        except MissingInputError:
            weight = 10 + len(await self.reach(k))
        for j in await self.successors(k):
            weight = min(weight, await self.low(j))
        return weight

    @picante.query(cycle_initial=lambda db, k: 0, cycle_fn=widen)
    async def hops(self, k: int) -> int:
        # The longest path from k, capped: a counter that climbs to the cap on a cycle.
        self.ran(f"hops({k})")
        cap = await self.cap()
        successors = await self.successors(k)
        if not successors:
            return 0
        return min(cap, 1 + max([await self.hops(j) for j in successors]))

    @picante.query(cycle_fallback=size_fallback)
    async def size(self, k: int) -> int:
        # The number of paths from k: infinite on a cycle, where the fallback answers.
        self.ran(f"size({k})")
        await asyncio.sleep(0)
        total = 1
        for j in await self.successors(k):
            total += await self.size(j)
        return total

    @picante.query(cycle_initial=lambda db, k: 0)
    async def tip(self, k: int) -> int:
        # On a cycle with `tail` when k is its own successor: entered here, it converges.
        self.ran(f"tip({k})")
        if k not in await self.successors(k):
            return 0
        return min(await self.tail(k) + 1, MIXED_CAP)

    @picante.query
    async def tail(self, k: int) -> int:
        # Did not opt in: entered here first, the cycle it closes raises `CycleError`.
        self.ran(f"tail({k})")
        return await self.tip(k)

    @picante.query
    async def digest(self, k: int) -> tuple[int, int, int, int]:
        # Three families' cycles through picante.gather (no family reads another's there,
        # so no two of these tasks wait on each other), then `low`, which reads `reach`.
        self.ran(f"digest({k})")
        with spawning():
            reached, hops, size = await picante.gather(self.reach(k), self.hops(k), self.size(k))
        return len(reached), hops, size, await self.low(k)


@picante.database
class Tuned(Graph):
    """`Graph` with `safe` overridden: it calls the inherited query, then catches more."""

    @picante.query
    async def safe(self, k: int) -> int:
        # The inherited body logs `safe(k)`: this one does not, so that either way the
        # log shows one entry per evaluation.
        try:
            return await super().safe(k)
        except OverflowError as error:
            return -200 - int(error.args[1])


INPUTS = {"src": 1, "cfg": 1, "mode": 0, "edge": 1}
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
    "world": 1,
    "sees": 1,
    "echo": 1,
    "fan": 1,
    "total": 0,
}
VOLATILE = frozenset({"world"})
"""Queries that read the outside world: they run at every revision they are read at."""
OUTSIDE = "outside"
"""The model's name for the outside world's cells: `(OUTSIDE, (k,))`, only in the model."""
CELLS: list[Cell] = records(INPUTS)
RECORDS: list[Record] = records(QUERIES)
TIMEOUT = float(os.environ.get("PICANTE_MACHINE_TIMEOUT", "10"))
"""Seconds any one operation may take: a deadlock fails the example instead of hanging it."""
STEP_BUDGET = 100_000
"""Callbacks any one operation may run: more is a livelock (see `ScheduledLoop.budget`)."""
STALL = 5.0
"""Seconds any one callback may run: more is a livelock (see `ScheduledLoop.stall`)."""
DISABLED = frozenset(filter(None, os.environ.get("PICANTE_MACHINE_SKIP", "").split(",")))
"""Rules of `MemoConsistency` to leave out (comma-separated names), e.g. while a defect is open."""


def enabled(rule_name: str) -> Callable[[object], bool]:
    """A precondition that holds unless *rule_name* is listed in `PICANTE_MACHINE_SKIP`."""
    return lambda _: rule_name not in DISABLED


# -- the oracle ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """
    The from-scratch outcome of one record, what it read directly, in order, and what it
    accumulated, in order.
    """

    value: object
    error: Exception | None
    reads: tuple[Read, ...]
    accumulated: tuple[str, ...] = ()


ORDER_VARIES = frozenset({"fan", "total"})
"""Queries that read some records concurrently: the order of those reads is the schedule's."""


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
        self._accumulating: list[list[str]] = []
        self._flagged: dict[Record, tuple[Record, ...]] = {}
        self._collected: dict[Record, tuple[tuple[Record, tuple[str, ...]], ...]] = {}
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

    def accumulate(self, value: str) -> None:
        self._accumulating[-1].append(value)

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
            self._accumulating.append([])
            value: object = None
            error: Exception | None = None
            try:
                value = getattr(self, f"_{name}")(*key)
            except Exception as exc:
                error = exc
            reads = tuple(dict.fromkeys(self._reading.pop()))
            accumulated = tuple(self._accumulating.pop())
            done = self.outcomes[record] = Outcome(value, error, reads, accumulated)
        return done

    def flagged(self, record: Record) -> tuple[Record, ...]:
        """The query records *record* read whose subtree accumulated something, in order."""
        found = self._flagged.get(record)
        if found is None:
            found = tuple(
                dep
                for kind, dep in self.outcome(record).reads
                if kind == "query" and (self.outcome(dep).accumulated or self.flagged(dep))
            )
            self._flagged[record] = found
        return found

    def signature(self, record: Record) -> tuple[object, ...]:
        """
        What makes two outcomes of *record* equal for early cutoff: the value (or the error
        type and args), the values it accumulated, and its accumulating reads (as a set
        where their order is the schedule's).
        """
        outcome = self.outcome(record)
        flagged = self.flagged(record)
        reads = frozenset(flagged) if record[0] in ORDER_VARIES else flagged
        return (*signature(outcome), outcome.accumulated, reads)

    def collected(self, record: Record) -> tuple[tuple[Record, tuple[str, ...]], ...]:
        """
        What `accumulated` collects for *record*, from scratch: each record whose subtree
        accumulated, depth first in first-read order, once, with its values.
        """
        found = self._collected.get(record)
        if found is None:
            pairs: dict[Record, tuple[str, ...]] = {}
            own = self.outcome(record).accumulated
            if own:
                pairs[record] = own
            for dep in self.flagged(record):
                for below, values in self.collected(dep):
                    pairs.setdefault(below, values)
            found = self._collected[record] = tuple(pairs.items())
        return found

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
            self.accumulate(f"value({k}) missing")
            return 0

    def _strict(self, k: int) -> int:
        return self.input("src", k) * 10

    def _chain(self, k: int) -> int:
        if k == 0:
            return self.query("value", 0)
        return self.query("chain", k - 1) + self.query("value", k)

    def _clamp(self, k: int) -> int:
        v = self.query("value", k)
        if v > 10:
            self.accumulate(f"clamp({k}) clamped")
        return min(v, 10)

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
        self.accumulate(f"checked({k}) {v % 4}")
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
            self.accumulate(f"safe({k}) caught")
            return -100 - int(error.args[0])

    def _unsafe(self, k: int) -> int:
        return self.query("checked", k) + 1

    def _high(self, k: int) -> int:
        try:
            return self.input("cfg", k)
        except MissingInputError:
            self.accumulate(f"high({k}) default")
            return 1

    def _mixed(self, k: int) -> int:
        return self.query("high", k) * self.query("clamp", k)

    def _scale(self) -> int:
        try:
            base = self.input("mode")
        except MissingInputError:
            base = 1
        return base + self.query("world", 0) % 2

    def _world(self, k: int) -> int:
        # The outside world, modeled as a cell no input ingredient has (see `OUTSIDE`).
        return self.get(OUTSIDE, k, default=0)

    def _sees(self, k: int) -> int:
        return self.query("world", k) * 10 + self.query("high", k)

    def _echo(self, k: int) -> int:
        try:
            return self.input("src", k)
        except MissingInputError:
            return -1

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


class TunedOracle(Oracle):
    """The oracle of `Tuned`."""

    def _safe(self, k: int) -> int:
        try:
            return super()._safe(k)
        except OverflowError as error:
            return -200 - int(error.args[1])


# -- the oracle of the cycle families -------------------------------------------------

CYCLE_QUERIES = {
    "reach": 1,
    "low": 1,
    "hops": 1,
    "size": 1,
    "digest": 1,
    "tip": 1,
    "tail": 1,
}
FALLBACK = frozenset({"size", "digest"})
"""The records that read the fallback family (`PICANTE_MACHINE_SKIP=cycle_fallback`: none)."""
CYCLE_RECORDS: list[Record] = [
    record
    for record in records(CYCLE_QUERIES)
    if "cycle_fallback" not in DISABLED or record[0] not in FALLBACK
]
MIXED = frozenset({"tip", "tail"})
"""The family with a participant that did not opt in: entry points matter (see the machine)."""


def successor_cell(k: int) -> Cell:
    """The input that holds node *k*'s successors (a bit mask): `cfg(k)` or `edge(k)`."""
    return ("cfg", (k,)) if k % 2 == 0 else ("edge", (k,))


class CycleOracle:
    """
    The cycle families' values over a plain dict of inputs, computed as a textbook would.

    `reach` by breadth-first search; `low` and `hops` by iterating every node's equation
    together from the initial value until nothing changes (Kleene iteration: the least
    fixpoint, whatever order picante iterates in, since both are monotone from their
    initial value); `size` from the strongly connected components: a node on a cycle takes
    its fallback, whatever the entry point (Salsa's `FallbackImmediate`), and any other
    node adds up its successors. `tip(k)` and `tail(k)` are `MIXED_CAP` when *k* is its
    own successor (a cycle through both), else 0.
    """

    def __init__(self, inputs: Mapping[Cell, int]) -> None:
        self.inputs = dict(inputs)
        self.succ = {
            k: frozenset(j for j in KEYS if self.inputs.get(successor_cell(k), 0) >> j & 1)
            for k in KEYS
        }
        self.reach = {k: self._search(k) for k in KEYS}
        # On a cycle: reachable from one of its own successors.
        self.cyclic = {k: any(k in self.reach[j] for j in self.succ[k]) for k in KEYS}
        mode = self.inputs.get(("mode", ()))
        self.cap = 2 if mode is None else max(0, min(mode, 4))
        self.low = self._iterate(TOP, self._low)
        self.hops = self._iterate(0, self._hops)
        self.size: dict[int, int] = {}
        for k in KEYS:
            self._size(k)
        # The two ways of computing a minimum over the reachable nodes agree.
        assert all(self.low[k] == min(self._weight(j) for j in self.reach[k]) for k in KEYS), (
            self.low
        )

    def _search(self, start: int) -> frozenset[int]:
        seen = {start}
        queue = [start]
        while queue:
            for j in self.succ[queue.pop(0)]:
                if j not in seen:
                    seen.add(j)
                    queue.append(j)
        return frozenset(seen)

    def _iterate(self, initial: int, step: Callable[[dict[int, int], int], int]) -> dict[int, int]:
        values = dict.fromkeys(KEYS, initial)
        for _ in range(100):
            after = {k: step(values, k) for k in KEYS}
            if after == values:
                return values
            values = after
        msg = f"no fixpoint from {initial}: {values}"
        raise AssertionError(msg)

    def _weight(self, k: int) -> int:
        found = self.inputs.get(("src", (k,)))
        return 10 + len(self.reach[k]) if found is None else found

    def _low(self, values: dict[int, int], k: int) -> int:
        return min([self._weight(k), *(values[j] for j in self.succ[k])])

    def _hops(self, values: dict[int, int], k: int) -> int:
        if not self.succ[k]:
            return 0
        return min(self.cap, 1 + max(values[j] for j in self.succ[k]))

    def _size(self, k: int) -> int:
        found = self.size.get(k)
        if found is None:
            if self.cyclic[k]:
                found = -100 - self.inputs.get(("src", (k,)), 0)
            else:
                # Not on a cycle: no successor leads back here, so this recursion ends.
                found = 1 + sum(self._size(j) for j in self.succ[k])
            self.size[k] = found
        return found

    def value(self, record: Record) -> object:
        """The value of *record* (for `tail`: when it does not raise)."""
        name, (k,) = record
        if name == "digest":
            return (len(self.reach[k]), self.hops[k], self.size[k], self.low[k])
        if name in MIXED:
            return MIXED_CAP if k in self.succ[k] else 0
        return getattr(self, name)[k]

    def may_fail(self, record: Record) -> bool:
        """Whether reading *record* meets a cycle (so that a cycle between tasks may raise)."""
        name, (k,) = record
        if name in MIXED:
            return k in self.succ[k]
        return any(self.cyclic[j] for j in self.reach[k])

    def needed(self, record: Record) -> frozenset[Record]:
        """The records whose bodies reading *record* may run: those it reads, transitively."""
        name, (k,) = record
        nodes = self.reach[k]
        if name == "digest":
            return frozenset({record}).union(
                *(self.needed((family, (k,))) for family in ("reach", "hops", "size", "low"))
            )
        if name == "tip":
            return frozenset({record, ("tail", (k,))} if k in self.succ[k] else {record})
        if name == "tail":
            return frozenset({record, ("tip", (k,))})
        found = {(name, (j,)) for j in nodes}
        if name == "low":
            # An absent weight reads `reach(j)`.
            for j in nodes:
                if ("src", (j,)) not in self.inputs:
                    found.update(("reach", (i,)) for i in self.reach[j])
        return frozenset(found)

    def inputs_of(self, record: Record) -> frozenset[Cell]:
        """The input cells *record* reads, transitively (its memo's, in any iteration)."""
        name, (k,) = record
        if name in MIXED:
            return frozenset({successor_cell(k)})
        nodes = self.reach[k]
        cells = {successor_cell(j) for j in nodes}
        if name in ("low", "size", "digest"):
            cells.update(("src", (j,)) for j in nodes)
        if name in ("hops", "digest"):
            cells.add(("mode", ()))
        return frozenset(cells)


def assert_matches(record: Record, actual: Result, expected: Outcome) -> None:
    """Assert that an awaited *actual* result is the oracle's: same value, or same error."""
    value, error, _ = actual
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
    """
    Await *record* on *db*: its value or the exception it raised, and the revision it saw.

    The revision is read in the step that starts the call, so no commit (an injected one
    included) can come between the two. A `CancelledError` the caller gets although it
    was not cancelled is returned like any other error.
    """
    name, key = record
    handle = getattr(db, name)
    revision = picante.revision(db)
    try:
        return await handle(*key), None, revision
    except Exception as error:
        return None, error, revision
    except asyncio.CancelledError as error:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        return None, error, revision


async def collect(db: object, record: Record) -> tuple[str, ...]:
    """What *record* and what it read accumulated, on *db* (`picante.accumulated`)."""
    name, key = record
    return await picante.accumulated(getattr(db, name), *key)


def assert_collected(record: Record, found: tuple[str, ...], oracle: Oracle) -> None:
    """
    Assert that *found* is what *oracle* collects for *record* from scratch: in its order,
    or, where concurrent reads decide it (`ORDER_VARIES`), as a multiset.
    """
    expected = [value for _, values in oracle.collected(record) for value in values]
    if any(name in ORDER_VARIES for name, _ in oracle.reach(record)):
        assert sorted(found) == sorted(expected), f"accumulated({show(record)})"
    else:
        assert list(found) == expected, f"accumulated({show(record)})"


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
    # states[r]: the inputs at revision r.
    states: list[dict[Cell, int]]
    # The revision at which each record's body last ran (where the model knows it).
    ran_at: dict[str, int] = dataclasses.field(default_factory=dict)
    # A snapshot's records that must not run: memos valid in its parent when it was taken
    # (forgotten at the snapshot's first change).
    reusable: frozenset[str] = frozenset()
    # The log of the cycle families' bodies (`Graph.cycle_log`).
    cycle_log: list[str] = dataclasses.field(default_factory=list)
    # What the model knows of each `tip(k)`/`tail(k)` pair's memos, by k (see
    # `MemoConsistency.mixed_verdict`): `("final", r)`, valid while `successor_cell(k)` is
    # unchanged since revision r; `("error", r)`, `CycleError` memoized for revision r;
    # `("unknown", r)`, after concurrent reads or a sweep, until the cell changes.
    mixed: dict[int, tuple[str, int]] = dataclasses.field(default_factory=dict)
    # The revisions at which cycle records were read concurrently: a cycle that closed
    # between two tasks may have memoized `CycleError` for the rest of such a revision.
    tainted: set[int] = dataclasses.field(default_factory=set)

    def changed_between(self, start: int, end: int) -> frozenset[Cell]:
        """The cells that changed after revision *start*, up to revision *end*."""
        return frozenset().union(*self.changes[start:end])


@dataclasses.dataclass(frozen=True)
class ThreadOp:
    """A commit made from a worker thread on one view (by drawn index)."""

    which: int
    kind: str  # "set" (each change alone), "batch" (all at once) or "snapshot"
    changes: tuple[Mutation, ...]


def thread_ops() -> st.SearchStrategy[ThreadOp]:
    """Draw a set/remove, a batch or a snapshot, made from a worker thread."""
    return st.builds(
        ThreadOp,
        which=st.integers(0, MAX_SNAPSHOTS),
        kind=st.sampled_from(["set", "batch", "snapshot"]),
        changes=st.lists(mutations(CELLS), min_size=1, max_size=3).map(tuple),
    )


def apply(db: object, change: Mutation) -> int:
    """Set or remove one cell on *db*; return the revision it reports."""
    (name, key), value = change
    handle = getattr(db, name)
    revision: int = handle.remove(*key) if value is None else handle.set(*key, value)
    return revision


def apply_batch(db: object, changes: Iterable[Mutation]) -> int:
    """Apply *changes* on *db* in one batch; return the revision after it."""
    with picante.batch(db):
        for change in changes:
            apply(db, change)
    return picante.revision(db)


class DiscardError(Exception):
    """Raised inside a batch to discard it."""


MAX_SNAPSHOTS = 3

Calls: TypeAlias = list[tuple[int, Record]]
"""Records to await, each on a view chosen by drawn index (0: the database)."""

calls_strategy = st.lists(
    st.tuples(st.integers(0, MAX_SNAPSHOTS), st.sampled_from(RECORDS)), min_size=1, max_size=5
)


class MemoConsistency(RuleBasedStateMachine):
    """
    Every memoized answer equals a from-scratch evaluation, with no redundant work.

    The model predicts the work on the database exactly, as Salsa defines it: a record
    runs if it is new, or if one of its direct reads changed since it was last verified
    (an input was set or removed; a query's outcome became different, so early cutoff
    stops equal ones); memoized errors the same; the volatile `world` at every revision it
    is read at. Snapshots are held to the same values, to "never twice at one revision,
    never what is not needed", and reuse what was valid in the database when taken.

    Everything runs on a `ScheduledLoop` (`tests/schedule.py`): the order of ready
    callbacks, `gc.collect()` calls between them and commits made from worker threads
    half-way through operations follow the `Schedule` drawn first. Every answer is checked
    against the oracle at the revision the call saw. Where concurrency makes the work
    unknowable, the model relaxes its predictions, and says so (`check_loose`):

    * after an operation that saw more than one revision (a commit from a thread came
      between its calls or in the middle of one), awaited the database together with
      snapshots (evaluations at one state are shared across views, so a body may run in
      either view), or cancelled something, the records it may have evaluated are *loose*
      (`forget`): they, and what reads them, may run or not until they next run. What ran
      must still be needed at one of the revisions seen, and run at most once per revision
      seen (any number of times when evaluations were cancelled: a cancelled evaluation
      memoizes nothing, so the record may run again at the same revision);
    * a call that follows an evaluation cancelled under it starts a new one, at the
      current revision: it may answer at any revision from the one it saw to the last.
    """

    def __init__(self) -> None:
        super().__init__()
        self.graph: type[Graph] = Graph
        self.oracle_type: type[Oracle] = Oracle
        self.late: list[Late] = []
        self.main = Subject(self.new_db([]), [], {}, 0, [], [{}])
        self.main.db.log = self.main.log
        self.main.db.cycle_log = self.main.cycle_log
        # The cycle records of the database the model saw answer a value, with the revision
        # and the input cells they read, transitively: until one of those changes, reading
        # them runs no body (their memos, a converged cycle's included, are valid).
        self.cycle_valid: dict[Record, tuple[int, frozenset[Cell]]] = {}
        self.cycle_oracles: dict[tuple[tuple[Cell, int], ...], CycleOracle] = {}
        self.snapshots: list[Subject] = []
        # What the model knows of every record of the database it saw verified, and when
        # its outcome last became different (the memo's `changed_at`).
        self.verified: dict[Record, Verified] = {}
        self.changed_at: dict[Record, int] = {}
        # Records whose work the model does not predict until they next run: memoized
        # errors loaded from a cache file (saved without their exception, they run again
        # when read), records an operation may have evaluated unseen (see the class), and
        # the records that read them, directly or not.
        self.loose: set[Record] = set()
        self.cache = Path(tempfile.mkdtemp(prefix="picante-machine-")) / "graph.cache"
        # The mutation events of the database (`picante.events`), and those the model expects.
        self.events: list[object] = []
        self.expected_events: list[object] = []
        self.oracles: dict[tuple[tuple[Cell, int], ...], Oracle] = {}
        self.loop: ScheduledLoop | None = None
        self.frozen = False

    @initialize(
        schedule=schedules(),
        tuned=st.booleans(),
        graph=st.lists(st.none() | st.integers(0, 31), min_size=len(KEYS), max_size=len(KEYS)),
    )
    def start(self, schedule: Schedule, tuned: bool, graph: list[int | None]) -> None:
        """
        Draw the schedule, the database class (`Graph`, or `Tuned`: an override) and the
        cycle families' first graph (each node's successors, as a bit mask).
        """
        if schedule.gc_rate:
            # A full collection walks every object of the process (pytest's and hypothesis's
            # too), about 0.1 s: freeze what exists before the example (until its teardown),
            # so that the collections the schedule injects walk only what it allocated.
            gc.freeze()
            self.frozen = True
        loop = new_loop(schedule)
        assert isinstance(loop, ScheduledLoop)
        loop.set_task_factory(task_factory)  # type: ignore[arg-type]
        # An operation runs a few hundred callbacks, each in milliseconds: far more, or a
        # callback that never returns, is a livelock, which fails the example at once (it
        # could allocate without end, and a loop that never yields escapes any timeout).
        loop.budget = STEP_BUDGET
        loop.stall = STALL
        self.loop = loop
        if tuned and "tuned" not in DISABLED:
            self.graph, self.oracle_type = Tuned, TunedOracle
            self.main.db = self.new_db(self.main.log)
            self.main.db.cycle_log = self.main.cycle_log
        self.listen(self.main.db)
        if "cycles" not in DISABLED:
            edges = [(successor_cell(k), mask) for k, mask in zip(KEYS, graph, strict=True)]
            apply_batch(self.main.db, edges)
            self.record_commit(self.main, edges)

    def new_db(self, log: list[str]) -> Graph:
        """A fresh database of the drawn class, sharing the machine's outliving tasks."""
        db = self.graph(log)
        db.late = self.late
        return db

    def teardown(self) -> None:
        shutil.rmtree(self.cache.parent, ignore_errors=True)
        if self.frozen:
            gc.unfreeze()
        loop = self.loop
        if loop is None:
            return
        loop.budget = None
        # Only a failed example leaves tasks behind: end them quietly before closing.
        for late in self.late:
            if not late.release.done():
                late.release.cancel()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=TIMEOUT))
        loop.close()

    def listen(self, db: object) -> None:
        """Record *db*'s mutation events, as `picante.events` delivers them."""

        def listener(record: object) -> None:
            event = public_event(record)
            if isinstance(event, picante.InputSet | picante.InputRemoved | picante.RevisionBumped):
                self.events.append(event)

        view_of(db).subscribe(listener)

    def expect_commit(self, revision: int, changes: Iterable[tuple[Cell, int | None]]) -> None:
        """The events of a commit: each change in order, then the new revision."""
        for (name, key), value in changes:
            kind = picante.InputRemoved if value is None else picante.InputSet
            self.expected_events.append(kind(revision, name, key))
        self.expected_events.append(picante.RevisionBumped(revision))

    @property
    def scheduled(self) -> ScheduledLoop:
        """The machine's event loop (made by the `start` rule)."""
        assert self.loop is not None
        return self.loop

    def run(self, coro: Coroutine[Any, Any, T], *, drain: bool = False) -> T:
        """
        Drive *coro* on the machine's loop, then let outliving tasks read (and check them).

        With *drain*, then wait for the tasks still running: evaluations picante goes on
        with after their callers were cancelled. Assert that no task is left behind.
        """
        check = "outliving_task" not in DISABLED

        async def operation() -> T:
            # One deadline for all of it: the operation, outliving tasks and draining.
            async with asyncio.timeout(TIMEOUT):
                result = await coro
                await release_late(self.late, check=check)
                me = asyncio.current_task()
                while drain and (others := asyncio.all_tasks() - {me}):
                    await asyncio.wait(others)
                    await release_late(self.late, check=check)
                return result

        loop = self.scheduled
        result = loop.run_until_complete(operation())
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        assert pending == [], f"tasks left running: {pending}"
        return result

    def run_together(
        self,
        targets: list[tuple[Subject, Record]],
        how: str,
        commit: ThreadOp | None,
        within: int,
        *,
        drain: bool = False,
    ) -> list[Result]:
        """
        Read *targets* at once, *how* says: `gather` or `asyncio.gather`,
        `picante.gather`, `tasks` (awaited in order) or a task group; with *commit*, a
        thread commit injected among the next *within* callbacks.
        """
        loop = self.scheduled

        async def together() -> list[Result]:
            coros = [call(subject.db, record) for subject, record in targets]
            if commit is not None:
                loop.inject(lambda: self.thread_commit(commit), within=within)
            if how in ("gather", "asyncio.gather"):
                return await asyncio.gather(*coros)
            if how == "picante.gather":
                return await picante.gather(*coros)
            if how == "tasks":
                tasks = [asyncio.create_task(c) for c in coros]
                return [await task for task in tasks]
            async with asyncio.TaskGroup() as group:
                children = [group.create_task(c) for c in coros]
            return [task.result() for task in children]

        return self.run(together(), drain=drain)

    def run_cancelling(
        self, targets: list[tuple[Subject, Record]], cancels: list[tuple[int, int]]
    ) -> list[Result | BaseException]:
        """
        Read *targets* in tasks of their own, cancelling the tasks *cancels* picks (an
        index, modulo) within their numbers of steps; return each outcome, draining.
        """
        loop = self.scheduled
        armed = [True]

        def cancel(task: asyncio.Task[Result]) -> None:
            if armed[0]:
                task.cancel()

        async def cancelling() -> list[Result | BaseException]:
            tasks = [asyncio.create_task(call(s.db, r)) for s, r in targets]
            for index, within in cancels:
                loop.inject(functools.partial(cancel, tasks[index % len(tasks)]), within=within)
            try:
                return await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                armed[0] = False

        return self.run(cancelling(), drain=True)

    def subject(self, which: int) -> Subject:
        """The database (0) or one of the snapshots, by a drawn index."""
        subjects = [self.main, *self.snapshots]
        return subjects[which % len(subjects)]

    def oracle(self, subject: Subject, revision: int | None = None) -> Oracle:
        """The oracle of *subject*'s inputs at *revision* (default: the current one)."""
        inputs = subject.states[subject.revision if revision is None else revision]
        key = tuple(sorted(inputs.items()))
        found = self.oracles.get(key)
        if found is None:
            found = self.oracles[key] = self.oracle_type(inputs)
        return found

    # Mutations.

    def record_commit(self, subject: Subject, changes: list[Mutation]) -> bool:
        """Apply one commit of *changes* (in order) to the model; tell whether it changed."""
        before = dict(subject.inputs)
        for cell, value in changes:
            if value is None:
                subject.inputs.pop(cell, None)
            else:
                subject.inputs[cell] = value
        changed = frozenset(
            cell for cell, _ in changes if before.get(cell) != subject.inputs.get(cell)
        )
        event("mutation", "effective" if changed else "no-op")
        if not changed:
            return False
        subject.revision += 1
        subject.changes.append(changed)
        subject.states.append(dict(subject.inputs))
        subject.reusable = frozenset()
        if subject is self.main:
            # One event per changed key, in the order of its first change in the commit.
            last = dict(changes)
            order = list(dict.fromkeys(cell for cell, _ in changes))
            self.expect_commit(subject.revision, [(c, last[c]) for c in order if c in changed])
        return True

    def record_refresh(self, subject: Subject, outside: Mapping[int, int] | None = None) -> None:
        """A revision with no input changed (`refresh`), the outside world now *outside*."""
        changed: set[Cell] = set()
        for k, value in (outside or {}).items():
            cell = (OUTSIDE, (k,))
            if subject.inputs.get(cell, 0) != value:
                changed.add(cell)
            subject.inputs[cell] = value
        subject.revision += 1
        subject.changes.append(frozenset(changed))
        subject.states.append(dict(subject.inputs))
        subject.reusable = frozenset()
        if subject is self.main:
            self.expect_commit(subject.revision, [])

    def mutate(self, subject: Subject, cell: Cell, value: int | None, *, idle: bool = True) -> None:
        """Set (or, for `None`, remove) *cell* and check the revision it reports."""
        revision = apply(subject.db, (cell, value))
        effective = self.record_commit(subject, [(cell, value)])
        assert revision == subject.revision, f"{show(cell)} <- {value!r}: effective={effective}"
        assert picante.revision(subject.db) == subject.revision
        name, key = cell
        assert getattr(subject.db, name).get(*key, default=None) == value
        if idle:
            assert subject.log == [], "a mutation ran a query"

    def thread_commit(self, op: ThreadOp) -> None:
        """Make *op* from a worker thread, and bring the model along."""
        subject = self.subject(op.which)
        db = subject.db
        if op.kind == "snapshot":
            if len(self.snapshots) < MAX_SNAPSHOTS + 1:
                self.add_snapshot(subject, in_thread(lambda: picante.snapshot(db)))
        elif op.kind == "batch":
            revision = in_thread(lambda: apply_batch(db, op.changes))
            self.record_commit(subject, list(op.changes))
            assert revision == subject.revision, f"a batch from a thread: {op}"
        else:
            revisions = in_thread(lambda: [apply(db, change) for change in op.changes])
            for change, revision in zip(op.changes, revisions, strict=True):
                self.record_commit(subject, [change])
                assert revision == subject.revision, f"{change} from a thread"
        event("thread commit", op.kind)

    @rule(cell=st.sampled_from(CELLS), value=values())
    def set_input(self, cell: Cell, value: int) -> None:
        """Set one input."""
        self.mutate(self.main, cell, value)

    @rule(changes=st.lists(mutations(CELLS), min_size=2, max_size=5))
    def mutate_several(self, changes: list[Mutation]) -> None:
        """Set and remove several inputs in a row."""
        for cell, value in changes:
            self.mutate(self.main, cell, value)

    @precondition(lambda self: any(name != OUTSIDE for name, _ in self.main.inputs))
    @rule(data=st.data())
    def set_current_value(self, data: st.DataObject) -> None:
        """Set an input to the value it has: a no-op."""
        cells = sorted(cell for cell in self.main.inputs if cell[0] != OUTSIDE)
        cell = data.draw(st.sampled_from(cells), label="cell")
        self.mutate(self.main, cell, self.main.inputs[cell])

    @rule(cell=st.sampled_from(CELLS))
    def remove_input(self, cell: Cell) -> None:
        """Remove an input (a no-op if absent)."""
        self.mutate(self.main, cell, None)

    @rule(changes=st.lists(mutations(CELLS), max_size=5), discard=st.booleans())
    def mutate_in_batch(self, changes: list[Mutation], discard: bool) -> None:
        """A batch applies at one revision, or (if it raises) not at all."""
        main = self.main
        before = dict(main.inputs)
        with contextlib.suppress(DiscardError), picante.batch(main.db):
            for cell, value in changes:
                name, key = cell
                handle = getattr(main.db, name)
                revision = apply(main.db, (cell, value))
                assert revision == main.revision, "a batched change moved the revision"
                assert handle.get(*key, default=None) == before.get(cell), "read inside a batch"
            if discard:
                raise DiscardError
        if not discard:
            self.record_commit(main, changes)
        assert picante.revision(main.db) == main.revision
        assert main.log == [], "a batch ran a query"

    @precondition(enabled("nested_batch"))
    @rule(
        outer=st.lists(mutations(CELLS), max_size=3),
        inner=st.lists(mutations(CELLS), min_size=1, max_size=3),
        after=st.lists(mutations(CELLS), max_size=2),
    )
    def nested_batch(
        self, outer: list[Mutation], inner: list[Mutation], after: list[Mutation]
    ) -> None:
        """An inner batch that raises is discarded; the outer one, which catches, applies."""
        main = self.main
        with picante.batch(main.db):
            for change in outer:
                apply(main.db, change)
            with contextlib.suppress(DiscardError), picante.batch(main.db):
                for change in inner:
                    apply(main.db, change)
                raise DiscardError
            for change in after:
                apply(main.db, change)
        self.record_commit(main, outer + after)
        assert picante.revision(main.db) == main.revision, "the inner batch was applied"
        assert main.log == [], "a batch ran a query"

    @precondition(enabled("thread_commit"))
    @rule(op=thread_ops())
    def commit_from_thread(self, op: ThreadOp) -> None:
        """Set, remove, batch or snapshot from a worker thread, between operations."""
        self.thread_commit(op)
        for subject in [self.main, *self.snapshots]:
            assert subject.log == [], "a commit from a thread ran a query"

    # Snapshots.

    @rule(
        which=st.integers(0, MAX_SNAPSHOTS),
        how=st.sampled_from(["direct", "batch", "thread"]),
    )
    def refresh(self, which: int, how: str) -> None:
        """Open a revision with no input changed: only what reads the outside world runs."""
        subject = self.subject(which)
        db = subject.db
        if how == "thread":
            revision = in_thread(lambda: picante.refresh(db))
        elif how == "batch":
            with picante.batch(db):
                inside = picante.refresh(db)
                assert inside == subject.revision, "refresh() inside a batch opened a revision"
            revision = picante.revision(db)
        else:
            revision = picante.refresh(db)
        self.record_refresh(subject)
        assert revision == subject.revision
        assert subject.log == [], "refresh ran a query"

    @rule(k=keys(), value=st.integers(0, 3), from_thread=st.booleans())
    def change_outside(self, k: int, value: int, *, from_thread: bool) -> None:
        """Change the outside world `world` reads, then refresh the database."""
        db = self.main.db
        # Replaced, not mutated: snapshots keep the world they were taken in.
        db.outside = {**db.outside, k: value}
        revision = in_thread(lambda: picante.refresh(db)) if from_thread else picante.refresh(db)
        self.record_refresh(self.main, {k: value})
        assert revision == self.main.revision

    @rule(changes=st.lists(mutations(CELLS), max_size=3), discard=st.booleans())
    def refresh_in_batch(self, changes: list[Mutation], discard: bool) -> None:
        """A batch with a refresh in it opens one revision, changes or not; discarded, none."""
        db = self.main.db
        with contextlib.suppress(DiscardError), picante.batch(db):
            for change in changes:
                apply(db, change)
            picante.refresh(db)
            if discard:
                raise DiscardError
        if not discard and not self.record_commit(self.main, changes):
            self.record_refresh(self.main)
        assert picante.revision(db) == self.main.revision
        assert self.main.log == []

    @rule(which=st.integers(0, MAX_SNAPSHOTS), unused_for=st.integers(1, 3))
    def sweep(self, which: int, unused_for: int) -> None:
        """Sweep a view: what it drops runs again when read; nothing else changes."""
        subject = self.subject(which)
        view = view_of(subject.db)
        before = {record for record in RECORDS if record[1] in view.tables.get(record[0], {})}
        picante.sweep(subject.db, unused_for=unused_for)
        gone = {record for record in before if record[1] not in view.tables.get(record[0], {})}
        event("swept memos", str(min(len(gone), 5)))
        names = {show(record) for record in gone}
        for name in names:
            subject.ran_at.pop(name, None)
        subject.reusable -= names
        if subject is self.main:
            before_loose = set(self.loose)
            self.forget(gone)
            for record in self.loose - before_loose:
                subject.ran_at.pop(show(record), None)
            self.cycle_valid.clear()
        # A converged pair may have lost one of its memos; a memoized error is of this
        # revision, so the sweep (which keeps what was used in the last one) keeps it.
        for k, (kind, _) in list(subject.mixed.items()):
            if kind == "final":
                subject.mixed[k] = ("unknown", subject.revision)
        assert subject.log == [], "sweep ran a query"
        assert subject.cycle_log == [], "sweep ran a query"

    def add_snapshot(self, source: Subject, db: Graph) -> None:
        """Track *db*, a snapshot just taken of *source*."""
        snapshot = Subject(
            db,
            [],
            dict(source.inputs),
            source.revision,
            list(source.changes),
            list(source.states),
        )
        if source is self.main:
            # "A snapshot taken at a revision where db already has a valid memo reuses it."
            snapshot.reusable = frozenset(
                show(record)
                for record, seen in self.verified.items()
                if seen.revision == source.revision and record not in self.loose
            )
        # User attributes are copied shallowly: give the snapshot a log of its own.
        db.log = snapshot.log
        db.cycle_log = snapshot.cycle_log
        # The snapshot has its parent's memos, memoized cycle errors included.
        snapshot.mixed = dict(source.mixed)
        snapshot.tainted = set(source.tainted)
        assert picante.revision(db) == source.revision
        self.snapshots.append(snapshot)

    @precondition(lambda self: len(self.snapshots) < MAX_SNAPSHOTS)
    @rule(of=st.integers(0, MAX_SNAPSHOTS))
    def take_snapshot(self, of: int) -> None:
        """Snapshot the database or a snapshot."""
        source = self.subject(of)
        self.add_snapshot(source, picante.snapshot(source.db))

    @precondition(lambda self: len(self.snapshots) >= MAX_SNAPSHOTS)
    @rule(which=st.integers(0, MAX_SNAPSHOTS - 1))
    def drop_snapshot(self, which: int) -> None:
        """Drop a snapshot and collect it."""
        del self.snapshots[which]
        # A full collection (slow, hence only when all slots are taken) releases the
        # snapshot now rather than at some later step, so that examples replay exactly.
        gc.collect()

    @precondition(lambda self: self.snapshots and "drop_while_committing" not in DISABLED)
    @rule(which=st.integers(0, MAX_SNAPSHOTS - 1), op=thread_ops())
    def drop_snapshot_while_committing(self, which: int, op: ThreadOp) -> None:
        """Drop a snapshot; it is collected in the middle of a commit from a thread."""
        del self.snapshots[which % len(self.snapshots)]
        op = dataclasses.replace(op, which=0, kind="batch" if op.kind == "snapshot" else op.kind)
        collected: list[bool] = []

        def collect(_: object) -> None:
            # Listeners run inside the commit: a collection here is one the allocator
            # could have started at that point.
            if not collected:
                collected.append(True)
                gc.collect()

        view = view_of(self.main.db)
        subscription = view.subscribe(collect)
        # First in line: the collection happens before any other listener's work.
        view.listeners.remove(subscription)
        view.listeners.insert(0, subscription)
        try:
            self.thread_commit(op)
        finally:
            subscription.cancel()
        gc.collect()
        event("collected during a commit", str(bool(collected)))

    @precondition(lambda self: self.snapshots)
    @rule(which=st.integers(0, MAX_SNAPSHOTS - 1), change=mutations(CELLS))
    def mutate_snapshot(self, which: int, change: Mutation) -> None:
        """Set or remove an input of a snapshot."""
        self.mutate(self.snapshots[which % len(self.snapshots)], *change)

    @precondition(lambda self: self.snapshots)
    @rule(
        which=st.integers(0, MAX_SNAPSHOTS - 1),
        some=st.lists(st.sampled_from(RECORDS), min_size=1, max_size=6),
        everything=st.booleans(),
    )
    def query_snapshot(self, which: int, some: list[Record], everything: bool) -> None:
        """Await records on a snapshot; a second read runs nothing."""
        snapshot = self.snapshots[which % len(self.snapshots)]
        batch = RECORDS if everything else some
        oracle = self.oracle(snapshot)
        for record, result in zip(batch, self.run(call_each(snapshot.db, batch)), strict=True):
            assert_matches(record, result, oracle.outcome(record))
        self.check_snapshot(snapshot, oracle, batch)
        for record, result in zip(batch, self.run(call_each(snapshot.db, batch)), strict=True):
            assert_matches(record, result, oracle.outcome(record))
        assert snapshot.log == [], f"a second read of {batch} without a mutation ran queries"

    def check_snapshot(self, snapshot: Subject, oracle: Oracle, batch: Iterable[Record]) -> None:
        """Check the work of one operation on *snapshot* at its current revision."""
        ran, _ = self.check_needed_once(snapshot, oracle, batch, snapshot.revision)
        recomputed = sorted(snapshot.reusable.intersection(ran))
        assert recomputed == [], f"{recomputed} were valid in the database, yet ran: {ran}"

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
            if seen is None or seen.outcome != oracle.signature(record):
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
                if record[0] in VOLATILE:
                    assert entry in ran, f"{entry} reads the outside world, yet did not run: {ran}"
                elif changed:
                    assert entry in ran, f"{entry} did not run although {changed} changed: {ran}"
                elif entry in ran and self.reordered(record, seen, ran):
                    event("ran after reads came in another order", entry)
                elif entry in ran:
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
                oracle.signature(record),
                outcome.error is not None,
                outcome.reads,
                oracle.inputs_of(record),
            )
        event("bodies run per operation", f"{min(len(ran), 10)}{'+' if len(ran) >= 10 else ''}")
        for record in reach:
            error = oracle.outcome(record).error
            event("outcome", "value" if error is None else type(error).__name__)

    @staticmethod
    def reordered(record: Record, seen: Verified, ran: list[str]) -> bool:
        """
        Whether *record* may have run because a query it read ran again and read its
        accumulating reads in another order (the schedule's: `ORDER_VARIES`), which is a
        change of what it accumulated, although an invisible one to the model.
        """
        return any(
            kind == "query" and dep[0] in ORDER_VARIES and show(dep) in ran
            for kind, dep in seen.reads
        )

    def forget(self, records: Iterable[Record]) -> None:
        """Make *records*, and every record that read them as far as the model knows, loose."""
        readers: dict[Record, set[Record]] = {}
        for record, seen in self.verified.items():
            for kind, dep in seen.reads:
                if kind == "query":
                    readers.setdefault(dep, set()).add(record)
        stack = list(records)
        done: set[Record] = set()
        while stack:
            record = stack.pop()
            if record not in done:
                done.add(record)
                self.loose.add(record)
                stack.extend(readers.get(record, ()))

    def settle(
        self,
        calls: list[tuple[Subject, Record, Result | None]],
        starts: Mapping[Subject, int],
        *,
        cancelled: bool = False,
    ) -> None:
        """
        Check the answers and the work of one operation that made *calls* (see the class).

        *starts* holds each view's revision before the operation; a result of `None` is a
        call that was cancelled. With *cancelled*, something was cancelled under the calls:
        a call may answer at a revision after the one it saw, or raise `CancelledError`.
        """
        for subject, record, result in calls:
            if result is None:
                continue
            seen = result[2]
            assert starts[subject] <= seen <= subject.revision, f"{show(record)} saw {seen}"
            if cancelled and isinstance(result[1], asyncio.CancelledError):
                event("a caller got CancelledError", "yes")
                continue
            if cancelled:
                # A retry after a cancelled evaluation starts at the current revision.
                ok = []
                for rev in range(seen, subject.revision + 1):
                    with contextlib.suppress(AssertionError):
                        assert_matches(record, result, self.oracle(subject, rev).outcome(record))
                        ok.append(rev)
                if ok:
                    event(
                        "a caller after a cancellation answered",
                        "as seen" if seen in ok else "later",
                    )
                    continue
            assert_matches(record, result, self.oracle(subject, seen).outcome(record))
        involved = list(dict.fromkeys(subject for subject, _, _ in calls))
        others = [s for s in [self.main, *self.snapshots] if s.log and s not in involved]
        views = involved + others
        exact = (
            not cancelled
            and len(views) == 1
            and all(result is not None for _, _, result in calls)
            and all(
                result[2] == starts[subject] == subject.revision
                for subject, _, result in calls
                if result is not None
            )
        )
        event("work predicted", "exactly" if exact else "loosely")
        if exact:
            (subject,) = views
            roots = [record for _, record, _ in calls]
            oracle = self.oracle(subject)
            if subject is self.main:
                self.check_work(oracle, roots)
            else:
                self.check_snapshot(subject, oracle, roots)
            return
        ran = set()
        for subject in views:
            roots = [record for s, record, _ in calls if s is subject]
            ran.update(
                self.check_loose(subject, starts.get(subject, 0), roots, cancelled=cancelled)
            )
        for subject in views:
            for entry in ran:
                subject.ran_at.pop(entry, None)

    def check_loose(
        self, subject: Subject, start: int, roots: list[Record], *, cancelled: bool
    ) -> set[str]:
        """
        Check the work of an operation on *subject* where the model cannot predict it.

        What ran must be needed by *roots* at one of the revisions the operation saw, and
        (unless something was cancelled) run at most once per such revision; the records
        it may have evaluated become loose. Return what ran, and clear the log.
        """
        ran = list(subject.log)
        subject.log.clear()
        revisions = range(start, subject.revision + 1)
        reach: frozenset[Record] = frozenset().union(
            *(self.oracle(subject, rev).reach(root) for rev in revisions for root in roots)
        )
        needed = {show(record) for record in reach}
        strays = [entry for entry in ran if entry not in needed]
        assert strays == [], f"{strays} ran but no revision seen needs them: {ran}"
        if not cancelled:
            many = sorted(e for e, n in Counter(ran).items() if n > len(revisions))
            assert many == [], f"{many} ran more often than the {len(revisions)} revisions seen"
        if subject is self.main:
            self.forget(reach)
        return set(ran)

    @rule(record=st.sampled_from(RECORDS))
    def query(self, record: Record) -> None:
        """Await one record on the database, then again: the second read runs nothing."""
        expected = self.oracle(self.main).outcome(record)
        result = self.run(call(self.main.db, record))
        self.settle([(self.main, record, result)], {self.main: self.main.revision})
        assert_matches(record, self.run(call(self.main.db, record)), expected)
        assert self.main.log == [], (
            f"a second read of {show(record)} without a mutation ran queries"
        )

    @rule(records=st.lists(st.sampled_from(RECORDS), min_size=1, max_size=3))
    def collect(self, records: list[Record]) -> None:
        """
        Collect what records accumulated on the database (several at once), then again:
        the second collection runs nothing.
        """
        oracle = self.oracle(self.main)

        async def together() -> list[tuple[str, ...]]:
            return await asyncio.gather(*(collect(self.main.db, r) for r in records))

        for record, found in zip(records, self.run(together()), strict=True):
            assert_collected(record, found, oracle)
            event("values collected", str(min(len(found), 5)))
        self.check_work(oracle, records)
        for record, found in zip(records, self.run(together()), strict=True):
            assert_collected(record, found, oracle)
        assert self.main.log == [], f"a second collection of {records} ran queries"

    @precondition(lambda self: self.snapshots)
    @rule(which=st.integers(0, MAX_SNAPSHOTS - 1), record=st.sampled_from(RECORDS))
    def collect_snapshot(self, which: int, record: Record) -> None:
        """Collect what a record accumulated on a snapshot, at the snapshot's revision."""
        snapshot = self.snapshots[which % len(self.snapshots)]
        oracle = self.oracle(snapshot)
        assert_collected(record, self.run(collect(snapshot.db, record)), oracle)
        self.check_snapshot(snapshot, oracle, [record])

    @rule(
        record=st.sampled_from(RECORDS),
        copies=st.integers(2, 3),
        others=st.lists(st.sampled_from(RECORDS), max_size=4),
        data=st.data(),
    )
    def query_concurrently(
        self, record: Record, copies: int, others: list[Record], data: st.DataObject
    ) -> None:
        """Await several records on the database at once, one of them several times."""
        batch = data.draw(st.permutations([record] * copies + others), label="batch")

        async def gather() -> list[Result]:
            return await asyncio.gather(*(call(self.main.db, r) for r in batch))

        start = self.main.revision
        results = self.run(gather())
        self.settle(
            [(self.main, r, result) for r, result in zip(batch, results, strict=True)],
            {self.main: start},
        )

    @rule(
        batch=st.lists(st.sampled_from(RECORDS), min_size=1, max_size=4),
        steps=st.integers(1, 8),
        change=mutations(CELLS),
    )
    def mutate_while_querying(self, batch: list[Record], steps: int, change: Mutation) -> None:
        """Mutate on the loop while queries are suspended: none of them sees the change."""
        # `fan` and `total` suspend (they gather child tasks): a mutation made meanwhile
        # must not leak into evaluations that started before it.
        start = self.main.revision

        async def interleave() -> list[Result]:
            tasks = [asyncio.create_task(call(self.main.db, r)) for r in batch]
            for _ in range(steps):
                await asyncio.sleep(0)
            event("mutated while querying", "yes" if not all(t.done() for t in tasks) else "no")
            self.mutate(self.main, *change, idle=False)
            return await asyncio.gather(*tasks)

        results = self.run(interleave())
        self.settle(
            [(self.main, r, result) for r, result in zip(batch, results, strict=True)],
            {self.main: start},
        )

    @rule(order=st.permutations(range(len(RECORDS))))
    def query_everything(self, order: list[int]) -> None:
        """Await every record on the database, one after the other, in a drawn order."""
        start = self.main.revision
        batch = [RECORDS[i] for i in order]
        results = self.run(call_each(self.main.db, batch))
        self.settle(
            [(self.main, r, result) for r, result in zip(batch, results, strict=True)],
            {self.main: start},
        )

    # Concurrency across views, threads and cancellation.

    def starts(self) -> dict[Subject, int]:
        """Every view's revision now: where an operation starts."""
        return {subject: subject.revision for subject in [self.main, *self.snapshots]}

    @precondition(enabled("query_views"))
    @rule(
        calls=calls_strategy,
        how=st.sampled_from(["gather", "tasks", "taskgroup"]),
        commit=st.none() | thread_ops(),
        within=st.integers(1, 60),
    )
    def query_views(self, calls: Calls, how: str, commit: ThreadOp | None, within: int) -> None:
        """
        Await records concurrently on the database and snapshots (mutated ones too).

        With *commit*, a commit from a worker thread is injected at a seed-chosen point
        among the next *within* callbacks: between calls, or in the middle of one.
        """
        targets = [(self.subject(which), record) for which, record in calls]
        starts = self.starts()
        results = self.run_together(targets, how, commit, within)
        self.settle(
            [(s, r, result) for (s, r), result in zip(targets, results, strict=True)], starts
        )

    def retry(self, targets: list[tuple[Subject, Record]]) -> None:
        """After a cancellation: await each record again; each answers as it should."""
        starts = self.starts()
        results = self.run(self.call_each_of(targets))
        self.settle(
            [(s, r, result) for (s, r), result in zip(targets, results, strict=True)], starts
        )

    @staticmethod
    async def call_each_of(targets: list[tuple[Subject, Record]]) -> list[Result]:
        """Await each record on its view in turn."""
        return [await call(subject.db, record) for subject, record in targets]

    @precondition(enabled("cancel_callers"))
    @rule(
        calls=calls_strategy,
        cancels=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 60)), min_size=1, max_size=3),
    )
    def cancel_callers(self, calls: Calls, cancels: list[tuple[int, int]]) -> None:
        """
        Cancel some callers after seed-chosen numbers of steps.

        The other callers get their answers, and a later call of every record succeeds
        (nothing was memoized as a failure).
        """
        targets = [(self.subject(which), record) for which, record in calls]
        starts = self.starts()
        outcomes = self.run_cancelling(targets, cancels)
        answers: list[tuple[Subject, Record, Result | None]] = []
        for (subject, record), outcome in zip(targets, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                answers.append((subject, record, None))
            else:
                assert not isinstance(outcome, BaseException), outcome
                answers.append((subject, record, outcome))
        event("callers cancelled", str(sum(a[2] is None for a in answers)))
        self.settle(answers, starts, cancelled=True)
        self.retry(targets)

    @precondition(enabled("cancel_picante_tasks"))
    @rule(calls=calls_strategy, within=st.integers(1, 60))
    def cancel_picante_tasks(self, calls: Calls, within: int) -> None:
        """
        Cancel every task picante created, at a seed-chosen point.

        Those are the tasks that are neither the callers nor what query bodies spawned.
        Each caller gets its answer or `CancelledError`, none hangs, and a later call of
        every record succeeds.
        """
        targets = [(self.subject(which), record) for which, record in calls]
        starts = self.starts()
        loop = self.scheduled
        cancelled: list[int] = []

        async def cancelling() -> list[Result]:
            tasks = [asyncio.create_task(call(s.db, r)) for s, r in targets]
            mine = {*tasks, asyncio.current_task()}

            def cancel_theirs() -> None:
                if not all(task.done() for task in tasks):
                    theirs = [
                        t
                        for t in asyncio.all_tasks(loop)
                        if t not in mine and t not in SPAWNED and not t.done()
                    ]
                    cancelled.append(sum(t.cancel() for t in theirs))

            loop.inject(cancel_theirs, within=within)
            return list(await asyncio.gather(*tasks))

        results = self.run(cancelling(), drain=True)
        event("picante tasks cancelled", str(min(sum(cancelled), 3)))
        self.settle(
            [(s, r, result) for (s, r), result in zip(targets, results, strict=True)],
            starts,
            cancelled=True,
        )
        self.retry(targets)

    @precondition(enabled("outliving_task"))
    @rule(k=keys(), first=values(), then=values())
    def outliving_task(self, k: int, first: int, then: int) -> None:
        """`echo` leaves a task behind; after `src(k)` changes, it still reads the old value."""
        cell: Cell = ("src", (k,))
        self.mutate(self.main, cell, first)
        start = self.main.revision

        async def echo_then_change() -> Result:
            result = await call(self.main.db, ("echo", (k,)))
            self.mutate(self.main, cell, first + 1 if then == first else then, idle=False)
            return result

        result = self.run(echo_then_change())
        self.settle([(self.main, ("echo", (k,)), result)], {self.main: start})

    # Cycles.

    def cycle_oracle(self, subject: Subject, revision: int | None = None) -> CycleOracle:
        """The cycle oracle of *subject*'s inputs at *revision* (default: the current one)."""
        inputs = subject.states[subject.revision if revision is None else revision]
        key = tuple(sorted(inputs.items()))
        found = self.cycle_oracles.get(key)
        if found is None:
            found = self.cycle_oracles[key] = CycleOracle(inputs)
        return found

    def mixed_verdict(self, subject: Subject, record: Record, oracle: CycleOracle) -> str:
        """
        What reading `tip(k)` or `tail(k)` on *subject* now gives: `"value"`, `"error"`
        (`CycleError`) or `"either"` (the model does not know the memos).

        The pair's memos decide, as the model knows them: a converged pair whose input did
        not change answers its value, and a `CycleError` memoized at this revision raises.
        Otherwise the pair runs, entered where it is read: if k is its own successor, the
        first query on the cycle that is re-entered is the entry point, so `tip`, which
        opted in, converges and `tail`, which did not, raises.
        """
        name, (k,) = record
        state = subject.mixed.get(k)
        if state is not None:
            kind, since = state
            if kind == "error" and since == subject.revision:
                return "error"
            if successor_cell(k) not in subject.changed_between(since, subject.revision):
                if kind == "final":
                    return "value"
                if kind == "unknown":
                    return "either"
        return "value" if name == "tip" or k not in oracle.succ[k] else "error"

    def check_cycle(
        self, subject: Subject, record: Record, result: Result, *, concurrent: bool = False
    ) -> None:
        """
        Check one answer of a cycle record, and learn what its memos now are.

        Read alone (*concurrent* false), a record answers its oracle value, or for `tail`
        and `tip` what `mixed_verdict` says. Read concurrently with other cycle records, or
        at a revision where such a read happened, a record that meets a cycle may also
        raise `CycleError` (a cycle closed between two tasks: no evaluation holds all of
        it), but a value it answers is still the oracle's.
        """
        value, error, seen = result
        name, (k,) = record
        oracle = self.cycle_oracle(subject, seen)
        expected = oracle.value(record)
        loose = concurrent or seen in subject.tainted
        if name in MIXED and not loose:
            verdict = self.mixed_verdict(subject, record, oracle)
        else:
            verdict = "either" if loose and oracle.may_fail(record) else "value"
        view = "the database" if subject is self.main else "a snapshot"
        where = f"{show(record)} on {view} at revision {seen}"
        if error is None:
            assert verdict != "error", f"{where} = {value!r}, expected CycleError"
            assert (type(value), value) == (type(expected), expected), (
                f"{where} = {value!r}, expected {expected!r}"
            )
        else:
            assert verdict != "value", f"{where} raised {error!r}, expected {expected!r}"
            assert isinstance(error, picante.CycleError), f"{where} raised {error!r}"
            names = {step[0] for step in error.path}
            assert names <= set(CYCLE_QUERIES), f"{where}: {error!r} leaves the cycle families"
            if verdict == "error":
                assert set(error.path) == {("tail", (k,)), ("tip", (k,))}, f"{where}: {error!r}"
                assert f"cycle_fallback: tail({k})" in str(error), f"{where}: {error}"
        event(
            "cycle read",
            f"{'concurrent' if concurrent else 'tainted' if loose else 'alone'}, "
            f"{'CycleError' if error is not None else 'value'}"
            f"{', a cycle met' if oracle.may_fail(record) else ''}",
        )
        if loose or seen != subject.revision:
            if name in MIXED:
                # A memo of the pair may exist now: what it holds is not known.
                subject.mixed[k] = ("unknown", seen)
            return
        if name in MIXED:
            event("mixed verdict", f"{name}: {verdict}")
            subject.mixed[k] = ("final" if error is None else "error", seen)
            for other in [self.main, *self.snapshots]:
                if other is not subject and k not in other.mixed:
                    # A view at the same state (a snapshot, its parent) may adopt the
                    # pair's memos: what it reads there is no longer decided.
                    other.mixed[k] = ("unknown", other.revision)
        if subject is self.main:
            for dep in oracle.needed(record):
                if error is None:
                    self.cycle_valid[dep] = (seen, oracle.inputs_of(dep))
                else:
                    self.cycle_valid.pop(dep, None)

    def cycle_valid_now(self, record: Record) -> bool:
        """Whether the model knows *record*'s memo in the database to be valid (`cycle_valid`)."""
        found = self.cycle_valid.get(record)
        if found is None:
            return False
        since, cells = found
        return not cells & self.main.changed_between(since, self.main.revision)

    def check_cycle_work(
        self, subject: Subject, roots: Iterable[Record], revisions: Iterable[int]
    ) -> list[str]:
        """Check that every cycle body that ran is needed by *roots* at one of *revisions*."""
        ran = list(subject.cycle_log)
        subject.cycle_log.clear()
        needed = {
            show(dep)
            for rev in revisions
            for root in roots
            for dep in self.cycle_oracle(subject, rev).needed(root)
        }
        strays = sorted({entry for entry in ran if entry not in needed})
        assert strays == [], f"{strays} ran but the records read do not need them: {ran}"
        return ran

    @precondition(enabled("cycles"))
    @rule(
        which=st.integers(0, MAX_SNAPSHOTS),
        batch=st.lists(st.sampled_from(CYCLE_RECORDS), min_size=1, max_size=4),
    )
    def query_cycles(self, which: int, batch: list[Record]) -> None:
        """
        Read cycle records one after the other on a view; each answers its oracle value.

        On the database, records whose transitive inputs did not change since the model
        saw them answer run no body (a converged cycle revalidates as one). A second read
        runs nothing and answers the same.
        """
        subject = self.subject(which)
        valid = subject is self.main and all(self.cycle_valid_now(r) for r in batch)
        results = self.run(call_each(subject.db, batch))
        for record, result in zip(batch, results, strict=True):
            self.check_cycle(subject, record, result)
        ran = self.check_cycle_work(subject, batch, [subject.revision])
        if valid:
            assert ran == [], f"{batch} were valid, yet bodies ran: {ran}"
        event("cycle bodies run", f"{min(len(ran), 10)}{'+' if len(ran) >= 10 else ''}")
        again = self.run(call_each(subject.db, batch))
        for record, first, second in zip(batch, results, again, strict=True):
            assert (first[0], type(first[1])) == (second[0], type(second[1])), show(record)
        assert subject.cycle_log == [], f"a second read of {batch} ran {subject.cycle_log}"

    @precondition(enabled("cycles"))
    @rule(
        which=st.integers(0, MAX_SNAPSHOTS),
        k=keys(),
        mask=st.none() | st.integers(0, 31),
    )
    def set_successors(self, which: int, k: int, mask: int | None) -> None:
        """Give node k of a view's graph other successors (a bit mask; `None`: remove)."""
        self.mutate(self.subject(which), successor_cell(k), mask)

    def taint(
        self, starts: Mapping[Subject, int], targets: Iterable[tuple[Subject, Record]]
    ) -> None:
        """After concurrent reads of *targets*: the revisions they saw may hold cycle errors."""
        for subject in [self.main, *self.snapshots]:
            # A snapshot taken during the operation has its parent's memos.
            start = starts.get(subject)
            if start is None or any(s is subject for s, _ in targets):
                first = subject.revision if start is None else start
                subject.tainted.update(range(first, subject.revision + 1))
        for subject, (name, (k,)) in targets:
            if name in MIXED:
                subject.mixed[k] = ("unknown", subject.revision)

    @precondition(enabled("cycles"))
    @rule(
        calls=st.lists(
            st.tuples(st.integers(0, MAX_SNAPSHOTS), st.sampled_from(CYCLE_RECORDS)),
            min_size=2,
            max_size=5,
        ),
        how=st.sampled_from(["asyncio.gather", "picante.gather", "taskgroup"]),
        commit=st.none() | thread_ops(),
        within=st.integers(1, 60),
    )
    def query_cycles_concurrently(
        self, calls: Calls, how: str, commit: ThreadOp | None, within: int
    ) -> None:
        """
        Read cycle records concurrently on views, a thread commit perhaps injected.

        Values are the oracle's at the revision each call saw; a record that meets a
        cycle may raise `CycleError` instead (two tasks closed the cycle between them).
        """
        targets = [(self.subject(which), record) for which, record in calls]
        starts = self.starts()
        # Drained: a record whose cycle closed between two tasks raises in one child of a
        # `picante.gather` (`digest`), which, as `asyncio.gather` does, leaves the others
        # running.
        results = self.run_together(targets, how, commit, within, drain=True)
        for (subject, record), result in zip(targets, results, strict=True):
            self.check_cycle(subject, record, result, concurrent=True)
        self.taint(starts, targets)
        for subject in [self.main, *self.snapshots]:
            roots = [record for s, record in targets if s is subject]
            start = starts.get(subject, subject.revision)
            self.check_cycle_work(subject, roots, range(start, subject.revision + 1))

    @precondition(enabled("cycles"))
    @rule(
        calls=st.lists(
            st.tuples(st.integers(0, MAX_SNAPSHOTS), st.sampled_from(CYCLE_RECORDS)),
            min_size=1,
            max_size=3,
        ),
        cancels=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 80)), min_size=1, max_size=2),
    )
    def cancel_cycle_reads(self, calls: Calls, cancels: list[tuple[int, int]]) -> None:
        """
        Cancel readers of cycle records after seed-chosen numbers of steps (mid-iteration).

        The others answer as concurrent reads do (alone: exactly), and reading each
        record again afterwards answers right: a cancelled iteration memoized nothing.
        """
        targets = [(self.subject(which), record) for which, record in calls]
        starts = self.starts()
        outcomes = self.run_cancelling(targets, cancels)
        concurrent = len(targets) > 1
        for (subject, record), outcome in zip(targets, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                event("cycle reader cancelled", "yes")
                continue
            assert not isinstance(outcome, BaseException), outcome
            self.check_cycle(subject, record, outcome, concurrent=concurrent)
        if concurrent:
            self.taint(starts, targets)
        for subject, (name, (k,)) in targets:
            if name in MIXED:
                # Whether the cancelled evaluation memoized the pair's error is not known.
                subject.mixed[k] = ("unknown", subject.revision)
        for subject in [self.main, *self.snapshots]:
            self.check_cycle_work(
                subject, [r for s, r in targets if s is subject], [subject.revision]
            )
        for subject, record in targets:
            self.check_cycle(subject, record, self.run(call(subject.db, record)))
            self.check_cycle_work(subject, [record], [subject.revision])

    # Persistence.

    @rule()
    def save_and_load(self) -> None:
        """Save the database (a full file, or a log entry), load it into a fresh instance."""
        main = self.main
        self.run(picante.save(main.db, self.cache))
        db = self.new_db(main.log)
        db.cycle_log = main.cycle_log
        db.outside = main.db.outside
        assert self.run(picante.load(db, self.cache))
        assert main.log == [], "saving or loading ran a query"
        # Memos that read the outside world load stale, and the load opens a revision
        # for them (with no input changed): a refresh.
        loaded = picante.revision(db)
        assert loaded in (main.revision, main.revision + 1)
        if loaded == main.revision + 1:
            main.revision += 1
            main.changes.append(frozenset())
            main.states.append(dict(main.inputs))
            event("load refreshed", "yes")
        main.db = db
        self.listen(db)
        event("cache log entries", str(self.cache.with_name("graph.cache.log").exists()))
        # Errors come back without their exception: they run again when read, and so may
        # whatever read them (at the revision they ran at, too).
        failed = [record for record, seen in self.verified.items() if seen.failed]
        for record in failed:
            main.ran_at.pop(show(record), None)
        before = set(self.loose)
        self.forget(failed)
        for record in self.loose - before:
            main.ran_at.pop(show(record), None)
        # A memoized `CycleError` is saved without its exception, like any error: the
        # cycle runs again when read, as if never entered at this revision.
        main.mixed = {k: state for k, state in main.mixed.items() if state[0] != "error"}
        main.tainted.clear()
        assert main.cycle_log == [], "saving or loading ran a query"

    @invariant()
    def mutation_events_are_exact(self) -> None:
        """The database's mutation events are exactly its effective changes."""
        assert self.events == self.expected_events

    @invariant()
    def inputs_and_revisions_are_tracked(self) -> None:
        """Every view has the model's revision and inputs, and ran nothing unchecked."""
        for subject in [self.main, *self.snapshots]:
            assert picante.revision(subject.db) == subject.revision
            for cell in CELLS:
                name, key = cell
                assert getattr(subject.db, name).get(*key, default=None) == subject.inputs.get(cell)
            assert subject.log == []
            assert subject.cycle_log == []


# The machine is this file's main test: it gets one and a half times the profile's examples
# (37 schedules with the dev profile; 150 with ci, about 30 s on two cores), twice as many
# with the thorough profile (2,000 schedules), and a timeout long enough to shrink a failure
# (hypothesis shrinks for up to five minutes, and would report a timeout as a flaky failure).
_PROFILE_EXAMPLES = settings().max_examples
MACHINE_EXAMPLES = (
    2 * _PROFILE_EXAMPLES if _PROFILE_EXAMPLES >= 1000 else _PROFILE_EXAMPLES * 3 // 2
)

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
        results = [await call(db, record) for record in order]
        await release_late(db.late)
        return results

    for record, result in zip(order, run(everything), strict=True):
        assert_matches(record, result, oracle.outcome(record))
    assert sorted(log) == sorted(map(show, RECORDS))

    async def collections() -> list[tuple[str, ...]]:
        return [await collect(db, record) for record in order]

    for record, found in zip(order, run(collections), strict=True):
        assert_collected(record, found, oracle)
    assert len(log) == len(RECORDS)  # collecting ran no query body


DEPTH = 10


@picante.database
class Ladder:
    """A chain `DEPTH` queries deep: `step(i)` adds `min(rung(i), 3)` to `step(i - 1)`."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def rung(self, i: int) -> int:
        raise NotImplementedError

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
