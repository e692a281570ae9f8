"""
Memo consistency when databases share results through one store (`picante.share`).

`ShareConsistency` keeps two databases of one class (`Shared`), `db_0` and `db_1`, that
share through ONE store drawn at the start: a `MemoryStore` (results inline), one that
keeps every result in a blob (`inline_bytes=0`), one so small that it evicts trace lists
and blobs all the time (`max_entries=6`), or a `SqliteStore` in a temporary directory.
Both start with the same drawn inputs, and input values come from tiny sets, so that
databases often hold equal inputs and reverts happen: that is when a result is adopted
(taken from the store without running its body). Snapshots of any view, and later
databases that join the store, are views too.

The rules set and remove inputs on any view, snapshots included (alone, in batches, or
copying another view's inputs wholesale, the surest way to equal inputs), read a query on
any view alone (with the checks below), on every view in turn, concurrently, and while
commits (and a change of sharing) are injected between the reads' steps (so an
evaluation publishes what it read at its own revision while its database moves on), take
snapshots (they share as their database does), wait for the uploads (`flush_shared`),
detach a database, re-attach it (alone or behind a private `MemoryStore` tier, which
lower-tier hits fill), and add a fresh database that joins the store with another view's
inputs and reads at once. Every database is of one class, under one `name=`: sharing
only ever matches records of the same database name, and each database has its own
inputs, so one class is the whole subject.

`Shared` has a chain (`chain` → `double` → `value` → `src`), a dynamic dependency
(`pick` reads `flag`, then `double(k)`, `value(k + 1)` or nothing), a fan-in through
`picante.gather` and `asyncio.gather` (`total`), an absent input caught (`value`: its
absence is recorded in the entry) and propagated (`strict`: `MissingInputError`), a
query that raises `ValueError` for some inputs (`strict`; `safe` catches it, and its
evaluation is then unshareable), a `share=False` query with a shared reader (`private`,
`above_private`), a `persist=False` query whose reader is never shared (`local`,
`from_local`), and a value with no canonical bytes for some inputs (`ratio` is infinite
when the value is 0, and `ratio_text` reads it).

What is checked, against `oracle` (a plain-Python evaluation of the same functions over
the inputs the view had when the call started):

* every answer, errors included (same type, same args);
* after every step, every memo valid at its view's revision, read straight from the
  view's tables (so memos adopted by the check of another entry, which no call returned,
  are compared too);
* on a read alone: the bodies that ran are logged once each by that view, their number is
  the view's `executions` count, and the records adopted (their `debug.explain` turned to
  "adopted") are exactly as many as `stats(db).shared.adopted` grew by, and ran no body.

The number of adoptions, and of adopted results compared with the oracle, go to
`hypothesis.event` and to `TOTALS`; `test_generated_programs_adopt` and
`test_a_fixed_program_adopts_correct_results` fail if the machine adopts nothing, so it
cannot silently test nothing. The machine runs on a `tests.schedule.ScheduledLoop` drawn
in `start` (at most one collection in 500 callbacks: see `SCHEDULES`), and every await
runs under `TIMEOUT`. With the in-memory stores a failing example replays exactly; the
`SqliteStore` answers from its own threads, so its examples replay only up to their
timing (hypothesis may then call a failure flaky: look at the error it reports).

The machine found that an evaluation at an older revision could publish the digest of
a query it read from that query's newer, backdated memo instead of the value it read:
`test_an_evaluation_behind_a_commit_publishes_what_it_read` pins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest
from hypothesis import (
    Phase,
    currently_in_test_context,
    event,
    note,
    settings,
    strategies as st,
)
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import picante
from picante import MissingInputError
from picante._runtime import view_of
from picante._share import ADOPTED
from picante._store import QueryCell
from picante.stores import MemoryStore, SqliteStore
from tests.schedule import OnLoop, Schedule, new_loop


if TYPE_CHECKING:
    from collections.abc import Callable

    from picante.debug import Explanation
    from picante.stores import Store


T = TypeVar("T")

KEYS = range(3)
TIMEOUT = 5
"""Seconds any one operation may take before the example fails as a deadlock."""

Ran = tuple[int, str, tuple[int, ...]]
"""A body that ran: `(id of the view it ran in, query, key)`."""


@picante.database(name="tests.share_machine.Shared")
class Shared:
    """The query graph of the machine; every body logs itself first."""

    def __init__(self) -> None:
        # Shared with snapshots (attributes are copied shallowly): entries say which view.
        self.log: list[Ran] = []

    def ran(self, name: str, *key: int) -> None:
        self.log.append((id(self), name, key))

    @picante.input
    async def src(self, k: int) -> int:
        raise NotImplementedError

    @picante.input
    async def flag(self) -> bool:
        raise NotImplementedError

    @picante.query
    async def value(self, k: int) -> int:
        """`src(k)`, or -1 when it is absent (the entry records the absence)."""
        self.ran("value", k)
        try:
            return await self.src(k)
        except MissingInputError:
            return -1

    @picante.query
    async def double(self, k: int) -> int:
        self.ran("double", k)
        return 2 * await self.value(k)

    @picante.query
    async def chain(self, k: int) -> int:
        self.ran("chain", k)
        if k == 0:
            return await self.double(0)
        return await self.chain(k - 1) + await self.double(k)

    @picante.query
    async def pick(self, k: int) -> int:
        """A dynamic dependency: what it reads after `flag` depends on `flag`'s value."""
        self.ran("pick", k)
        flag = self.flag.get()
        if flag is None:
            return -5
        if flag:
            return await self.double(k)
        return await self.value((k + 1) % len(KEYS)) + 10

    @picante.query
    async def strict(self, k: int) -> int:
        """`src(k)`: `MissingInputError` when absent, `ValueError` when it is 2 mod 3."""
        self.ran("strict", k)
        v = await self.src(k)
        if v % 3 == 2:
            raise ValueError(k, v)
        return v

    @picante.query
    async def safe(self, k: int) -> int:
        """`strict(k)`, or -2 for its error: an evaluation that read an error is not shared."""
        self.ran("safe", k)
        try:
            return await self.strict(k)
        except (ValueError, MissingInputError):
            return -2

    @picante.query
    async def total(self) -> int:
        """A fan-in: `picante.gather` over `value`, `asyncio.gather` over `safe`."""
        self.ran("total")
        values = await picante.gather(*(self.value(k) for k in KEYS))
        safes = await asyncio.gather(*(self.safe(k) for k in KEYS))
        return sum(values) + 100 * sum(safes) + 10_000 * await self.pick(0)

    @picante.query(share=False)
    async def private(self, k: int) -> int:
        """Never looked up nor published; its readers are (they record its value)."""
        self.ran("private", k)
        return await self.value(k) + 100

    @picante.query
    async def above_private(self, k: int) -> int:
        self.ran("above_private", k)
        return 2 * await self.private(k)

    @picante.query(persist=False)
    async def local(self, k: int) -> list[int]:
        """No canonical bytes at all: neither it nor what reads it is ever shared."""
        self.ran("local", k)
        return [await self.value(k), k]

    @picante.query
    async def from_local(self, k: int) -> int:
        self.ran("from_local", k)
        return sum(await self.local(k))

    @picante.query
    async def ratio(self, k: int) -> float:
        """Infinite (no canonical bytes: not shared) when `value(k)` is 0."""
        self.ran("ratio", k)
        v = await self.value(k)
        return float("inf") if v == 0 else 12 / v

    @picante.query
    async def ratio_text(self, k: int) -> str:
        """Not shared when it read an infinite `ratio(k)`."""
        self.ran("ratio_text", k)
        return f"{await self.ratio(k):.3f}"


Cell = tuple[str, tuple[int, ...]]
Record = tuple[str, tuple[int, ...]]
Inputs = dict[Cell, int]
Change = tuple[Cell, int | None]
Result = tuple[object, Exception | None]

FLAG: Cell = ("flag", ())
CELLS: list[Cell] = [*(("src", (k,)) for k in KEYS), FLAG]
KEYED = (
    "value",
    "double",
    "chain",
    "pick",
    "strict",
    "safe",
    "private",
    "above_private",
    "local",
    "from_local",
    "ratio",
    "ratio_text",
)
RECORDS: list[Record] = [*((name, (k,)) for name in KEYED for k in KEYS), ("total", ())]


def oracle(inputs: Inputs, name: str, key: tuple[int, ...]) -> Result:
    """Evaluate *name(key)* from scratch over *inputs*: `(value, None)` or `(None, error)`."""

    def src(k: int) -> int:
        if ("src", (k,)) not in inputs:
            raise MissingInputError("src", (k,))
        return inputs["src", (k,)]

    def value(k: int) -> int:
        return inputs.get(("src", (k,)), -1)

    def double(k: int) -> int:
        return 2 * value(k)

    def pick(k: int) -> int:
        flag = inputs.get(FLAG)
        if flag is None:
            return -5
        return double(k) if flag else value((k + 1) % len(KEYS)) + 10

    def strict(k: int) -> int:
        v = src(k)
        if v % 3 == 2:
            raise ValueError(k, v)
        return v

    def safe(k: int) -> int:
        try:
            return strict(k)
        except (ValueError, MissingInputError):
            return -2

    def ratio(k: int) -> float:
        v = value(k)
        return float("inf") if v == 0 else 12 / v

    def chain(k: int) -> int:
        return sum(double(i) for i in range(k + 1))

    def total() -> int:
        return sum(map(value, KEYS)) + 100 * sum(map(safe, KEYS)) + 10_000 * pick(0)

    def private(k: int) -> int:
        return value(k) + 100

    def above_private(k: int) -> int:
        return 2 * private(k)

    def local(k: int) -> list[int]:
        return [value(k), k]

    def from_local(k: int) -> int:
        return sum(local(k))

    def ratio_text(k: int) -> str:
        return f"{ratio(k):.3f}"

    functions: dict[str, Callable[..., object]] = {
        function.__name__: function
        for function in (
            value,
            double,
            chain,
            pick,
            strict,
            safe,
            total,
            private,
            above_private,
            local,
            from_local,
            ratio,
            ratio_text,
        )
    }
    try:
        return functions[name](*key), None
    except Exception as error:
        return None, error


CHANGE: st.SearchStrategy[Change] = st.one_of(
    st.tuples(st.sampled_from(CELLS[:-1]), st.none() | st.integers(0, 3)),
    st.tuples(st.just(FLAG), st.none() | st.booleans()),
)
CHANGES = st.lists(CHANGE, min_size=1, max_size=4)
WHICH = st.integers(0, 7)
"""A view, as an index into the machine's views (modulo their number): 0 is `db_0`."""
CALLS = st.lists(st.tuples(WHICH, st.sampled_from(RECORDS)), min_size=2, max_size=6)
SCHEDULES = st.builds(
    Schedule, seed=st.integers(0, 2**32 - 1), gc_rate=st.sampled_from([0.0, 0.002])
)
"""`tests.schedule.schedules()` without its highest collection rate: this machine drops
no view, so collections find little to finalize, and under pytest each takes ~50 ms."""
HOW = st.sampled_from(["detach", "attach", "tiered"])
"""How `ShareConsistency.share` changes a database's sharing."""
STORES = ("memory", "blobs", "evicting", "sqlite")
"""The store the databases share: see `ShareConsistency.open_store`."""

TOTALS: Counter[str] = Counter()
"""What every run of the machine in this process saw (see `ShareConsistency.teardown`)."""


def record_event(text: str, value: object) -> None:
    """`hypothesis.event`, also callable outside a hypothesis test (a fixed program)."""
    if currently_in_test_context():
        event(text, str(value))


class View:
    """A database or snapshot, with the model of its inputs at each of its revisions."""

    def __init__(self, db: Shared, inputs: Inputs, name: str) -> None:
        self.db = db
        self.inputs = inputs
        self.name = name
        self.history: dict[int, Inputs] = {picante.revision(db): dict(inputs)}

    def __repr__(self) -> str:
        return f"<{self.name} rev={picante.revision(self.db)}>"


def sharing_of(db: Shared) -> Any:
    """The engine's sharing state of *db* (`picante._share.Shared`), or `None`."""
    return view_of(db, "test").shared


def bucket(n: int) -> str:
    """*n* as a coarse bucket for `hypothesis.event`."""
    return str(n) if n < 3 else "3-9" if n < 10 else "10+"


class ShareConsistency(OnLoop, RuleBasedStateMachine):
    """Databases sharing one store answer as if each computed everything itself."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.views: list[View] = []
        self.databases: list[View] = []
        self.store: Store = MemoryStore()
        self.directory: Path | None = None
        # Every sharing state ever attached, by id (kept alive, so ids stay unique): their
        # `adopted` counters, summed, are the run's adoptions.
        self.sharings: dict[int, Any] = {}
        self.adopted_reads = 0
        """Reads alone whose own record was adopted (and equaled the oracle)."""
        self.adopted_memos: set[tuple[int, Record, int]] = set()
        """Adopted memos compared with the oracle: (view id, record, revision)."""

    # -- set-up and tear-down ---------------------------------------------------------------

    def open_store(self, kind: str) -> Store:
        """The store of *kind* (see `STORES`)."""
        if kind == "blobs":
            return MemoryStore(inline_bytes=0)  # every result in a blob, fetched apart
        if kind == "evicting":
            return MemoryStore(max_entries=6)  # trace lists and blobs come and go
        if kind == "sqlite":
            self.directory = Path(tempfile.mkdtemp(prefix="picante-share-machine-"))
            return SqliteStore(self.directory / "shared.sqlite")
        return MemoryStore()

    @initialize(schedule=SCHEDULES, store=st.sampled_from(STORES), inputs=st.lists(CHANGE))
    def start(self, schedule: Schedule, store: str, inputs: list[Change]) -> None:
        """Run on a loop for *schedule*; `db_0` and `db_1` share *store*, with equal *inputs*."""
        if currently_in_test_context():
            note(f"schedule: {schedule}")  # printed with every failure, whatever the steps shown
        record_event("store", store)
        self.loop = new_loop(schedule)
        self.store = self.open_store(store)
        for _ in range(2):
            self.add_database(dict(self.apply_to_model({}, inputs)))

    def teardown(self) -> None:
        if self.loop is None:
            return
        try:
            with contextlib.suppress(Exception):  # after a failure: report that one
                for sharing in self.sharings.values():
                    self.run(sharing.flush())
                self.run(self.store.aclose())
            adopted = sum(sharing.counters.adopted for sharing in self.sharings.values())
            TOTALS.update(
                examples=1,
                adopted=adopted,
                adopted_reads=self.adopted_reads,
                adopted_memos=len(self.adopted_memos),
            )
            record_event("adopted", bucket(adopted))
            record_event("reads answered by adoption", bucket(self.adopted_reads))
            record_event("adopted memos checked", bucket(len(self.adopted_memos)))
        finally:
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                with contextlib.suppress(BaseException):
                    self.loop.run_until_complete(asyncio.wait(pending, timeout=TIMEOUT))
            self.loop.close()
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    def view(self, which: int) -> View:
        """The view at index *which* modulo the number of views."""
        return self.views[which % len(self.views)]

    def attach(self, db: Shared, *stores: Store) -> None:
        """Share *db*'s results through *stores* (none: stop), and keep its sharing state."""
        picante.share(db, *stores)
        sharing = sharing_of(db)
        if sharing is not None:
            self.sharings[id(sharing)] = sharing

    def add_database(self, inputs: Inputs) -> View:
        """A fresh database with *inputs*, sharing the machine's store."""
        db = Shared()
        with picante.batch(db):
            apply_changes(db, list(inputs.items()))
        self.attach(db, self.store)
        view = View(db, inputs, f"db_{len(self.databases)}")
        self.views.append(view)
        self.databases.append(view)
        return view

    # -- the model --------------------------------------------------------------------------

    @staticmethod
    def apply_to_model(inputs: Inputs, changes: list[Change]) -> Inputs:
        """*inputs* after *changes* (set, or remove for `None`), in place."""
        for cell, value in changes:
            if value is None:
                inputs.pop(cell, None)
            else:
                inputs[cell] = value
        return inputs

    def commit(self, view: View, changes: list[Change], *, batched: bool) -> None:
        """Apply *changes* to *view* (in one batch, or one by one) and to its model."""
        if batched:
            with picante.batch(view.db):
                apply_changes(view.db, changes)
        else:
            apply_changes(view.db, changes)
        self.apply_to_model(view.inputs, changes)
        view.history[picante.revision(view.db)] = dict(view.inputs)

    def check(self, view: View, revision: int, record: Record, actual: Result) -> None:
        """Compare *actual* with the oracle over *view*'s inputs at *revision*."""
        value, error = actual
        expected_value, expected_error = oracle(view.history[revision], *record)
        where = f"{record} on {view.name} at revision {revision}"
        if expected_error is None:
            assert error is None, f"{where} raised {error!r}, expected {expected_value!r}"
            assert value == expected_value, f"{where} = {value!r}, expected {expected_value!r}"
        else:
            assert error is not None, f"{where} = {value!r}, expected {expected_error!r}"
            assert (type(error), error.args) == (type(expected_error), expected_error.args), (
                f"{where} raised {error!r}, expected {expected_error!r}"
            )

    async def call(self, view: View, record: Record) -> Result:
        """Await *record* on *view* and check it against the revision it started at."""
        name, key = record
        # No yield between reading the revision and starting the call: commits only ever
        # happen between callbacks.
        revision = picante.revision(view.db)
        try:
            result: Result = (await getattr(view.db, name)(*key), None)
        except Exception as error:
            result = (None, error)
        self.check(view, revision, record, result)
        return result

    # -- mutations --------------------------------------------------------------------------

    @rule(which=WHICH, change=CHANGE)
    def mutate(self, which: int, change: Change) -> None:
        self.commit(self.view(which), [change], batched=False)

    @rule(which=WHICH, changes=CHANGES)
    def batch(self, which: int, changes: list[Change]) -> None:
        self.commit(self.view(which), changes, batched=True)

    @rule(source=WHICH, to=WHICH)
    def mirror(self, source: int, to: int) -> None:
        """Give view *to* the inputs of *source* in one batch: equal inputs, shared results."""
        inputs = self.view(source).inputs
        self.commit(self.view(to), [(cell, inputs.get(cell)) for cell in CELLS], batched=True)

    # -- sharing ----------------------------------------------------------------------------

    @rule(which=WHICH)
    def take_snapshot(self, which: int) -> None:
        """A snapshot of any view: it shares as that view does."""
        parent = self.view(which)
        view = View(picante.snapshot(parent.db), dict(parent.inputs), f"snapshot of {parent}")
        self.views.append(view)

    @rule(which=WHICH)
    def flush(self, which: int) -> None:
        """Wait for one view's uploads: what it published is in the store now."""
        self.run(picante.flush_shared(self.view(which).db))

    @rule(which=WHICH, how=HOW)
    def share(self, which: int, how: str) -> None:
        """Stop sharing a database's results, or share them again (behind a private tier)."""
        db = self.databases[which % len(self.databases)].db
        if how == "detach":
            self.attach(db)
        elif how == "attach":
            self.attach(db, self.store)
        else:
            self.attach(db, MemoryStore(), self.store)

    @rule(source=WHICH, record=st.sampled_from(RECORDS))
    def join(self, source: int, record: Record) -> None:
        """A fresh database joins the store with another view's inputs, and reads."""
        view = self.add_database(dict(self.view(source).inputs))
        self.read_alone(view, record)

    # -- reads ------------------------------------------------------------------------------

    def explanations(self, view: View) -> dict[Record, Explanation]:
        """What `debug.explain` says of each record on *view*."""
        return {(name, key): picante.debug.explain(view.db, name, *key) for name, key in RECORDS}

    def read_alone(self, view: View, record: Record) -> None:
        """
        Read *record* on *view* and check the answer; also that each body that ran ran in
        this view, once, as counted, and that each record adopted (as counted) ran none.
        """
        db = view.db
        before = picante.debug.stats(db)
        explained = self.explanations(view)
        logged = len(db.log)
        self.run(self.call(view, record))
        after = picante.debug.stats(db)
        ran = db.log[logged:]
        assert {who for who, _, _ in ran} <= {id(db)}, f"reading {record} on {view} ran {ran}"
        bodies = [(name, key) for _, name, key in ran]
        assert len(set(bodies)) == len(bodies), f"a body ran twice: {bodies}"
        assert after.executions - before.executions == len(bodies), bodies
        now = self.explanations(view)
        adopted = {r for r in RECORDS if now[r] != explained[r] and now[r].reason == "adopted"}
        assert not adopted & set(bodies), f"adopted, yet their body ran: {adopted & set(bodies)}"
        if before.shared is None:
            assert after.shared is None
            assert not adopted, f"adopted with no store attached: {adopted}"
        else:
            assert after.shared is not None
            assert after.shared.adopted - before.shared.adopted == len(adopted), adopted
        if record in adopted:
            self.adopted_reads += 1
        record_event("read alone", f"{len(adopted)} adopted" if adopted else "none adopted")

    @rule(which=WHICH, record=st.sampled_from(RECORDS))
    def read(self, which: int, record: Record) -> None:
        self.read_alone(self.view(which), record)

    @rule(record=st.sampled_from(RECORDS), flush=st.booleans())
    def read_everywhere(self, record: Record, flush: bool) -> None:
        """Read one record on every view in turn (with each one's uploads waited for)."""
        for view in list(self.views):
            self.read_alone(view, record)
            if flush:
                self.run(picante.flush_shared(view.db))

    @rule(calls=CALLS)
    def read_concurrently(self, calls: list[tuple[int, Record]]) -> None:
        async def gather() -> None:
            await asyncio.gather(*(self.call(self.view(which), record) for which, record in calls))

        self.run(gather())

    @rule(
        calls=CALLS,
        commits=st.lists(st.tuples(WHICH, CHANGES, st.booleans()), min_size=1, max_size=3),
        reshare=st.none() | st.tuples(WHICH, HOW),
        within=st.sampled_from([3, 20, 100]),
    )
    def read_during_commits(
        self,
        calls: list[tuple[int, Record]],
        commits: list[tuple[int, list[Change], bool]],
        reshare: tuple[int, str] | None,
        within: int,
    ) -> None:
        """
        Commits (and maybe a change of sharing) fall between the reads' steps: an
        evaluation started before one reads, and publishes, the inputs of its own revision
        while its database has moved on.
        """
        loop = self.scheduled

        async def gather() -> None:
            for which, changes, batched in commits:
                view = self.view(which)
                loop.inject(
                    functools.partial(self.commit, view, changes, batched=batched), within=within
                )
            if reshare is not None:
                loop.inject(functools.partial(self.share, *reshare), within=within)
            await asyncio.gather(*(self.call(self.view(which), record) for which, record in calls))

        self.run(gather())

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def inputs_match_the_model(self) -> None:
        for view in self.views:
            for name, key in CELLS:
                assert getattr(view.db, name).get(*key) == view.inputs.get((name, key)), view

    @invariant()
    def memos_agree_with_the_oracle(self) -> None:
        """Every memo valid now equals the oracle, adopted ones included."""
        for view in self.views:
            state = view_of(view.db, "test")
            revision = state.revision
            for name, table in state.tables.items():
                for cell in list(table.values()):
                    if type(cell) is not QueryCell or cell.verified_at != revision:
                        continue
                    record: Record = (name, cast("tuple[int, ...]", cell.key))
                    failure = cell.failure
                    actual: Result = (
                        (None, cast("Exception", failure.error))
                        if failure is not None
                        else (cell.value, None)
                    )
                    self.check(view, revision, record, actual)
                    why = getattr(cell, "why", None)
                    if why is not None and why[1:] == (ADOPTED,):
                        self.adopted_memos.add((id(view.db), record, why[0]))


def apply_changes(db: Shared, changes: list[Change]) -> None:
    """Set or remove each of *changes* on *db* in order."""
    for (name, key), value in changes:
        handle = getattr(db, name)
        if value is None:
            handle.remove(*key)
        else:
            handle.set(*key, value)


TestShareConsistency = ShareConsistency.TestCase
TestShareConsistency.__doc__ = "Databases sharing one store: every memo equals the oracle."
# Twice the profile's examples: 50 with dev, 200 with ci, 2,000 with thorough.
SHARE_EXAMPLES = 2 * settings().max_examples
TestShareConsistency.settings = settings(
    max_examples=SHARE_EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    # No explain phase: it prints elided arguments as broken `(\n )` and replays a lot.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
# Room to shrink a failure (hypothesis shrinks for up to five minutes).
TestShareConsistency.pytestmark = [pytest.mark.timeout(600 + SHARE_EXAMPLES)]  # type: ignore[attr-defined]


def test_generated_programs_adopt() -> None:
    """Generated programs adopt results, and compare adopted answers with the oracle."""
    before = TOTALS.copy()
    run_state_machine_as_test(
        ShareConsistency,
        settings=settings(
            max_examples=10,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
        ),
    )
    seen = TOTALS - before
    assert seen["examples"] == 10
    assert seen["adopted"] > 0, seen
    assert seen["adopted_reads"] > 0, seen
    assert seen["adopted_memos"] > 0, seen


def test_a_fixed_program_adopts_correct_results() -> None:
    """
    One program, step by step, with the bodies each read runs: `db_1` adopts what `db_0`
    computed; a revert adopts the earlier evaluation; errors, `share=False`, `persist=False`
    and values with no canonical bytes run again; a dynamic dependency is checked as it
    ran; a snapshot publishes for its database; a database that joins adopts everything.
    """
    machine = ShareConsistency()

    def read(which: int, record: Record) -> set[Record]:
        """Read *record* on view *which* (checked); the records whose body ran there."""
        view = machine.view(which)
        logged = len(view.db.log)
        machine.read(which, record)
        machine.inputs_match_the_model()
        machine.memos_agree_with_the_oracle()
        return {(name, key) for _, name, key in view.db.log[logged:]}

    total: Record = ("total", ())
    try:
        inputs: list[Change] = [(("src", (0,)), 1), (("src", (1,)), 3), (("src", (2,)), 0)]
        machine.start(Schedule(seed=0), "memory", [*inputs, (FLAG, True)])
        db_1 = machine.views[1].db
        # total and what it reads: 3 values, 3 safes, 3 stricts, pick(0) and double(0).
        assert len(read(0, total)) == 12
        machine.flush(0)
        assert read(1, total) == set()
        shared = picante.debug.stats(db_1).shared
        assert shared is not None
        assert shared.adopted == 12, shared
        # A change (strict(0) raises) and a revert: db_0 adopts its first evaluation.
        machine.mutate(0, (("src", (0,)), 2))
        assert ("strict", (0,)) in read(0, total)
        machine.flush(0)
        machine.mutate(0, (("src", (0,)), 1))
        assert read(0, total) == set()
        # db_1 makes the same change: the error is not shared, and neither is safe(0),
        # which read it; total, whose entry read safe(0) = -2, is.
        machine.mutate(1, (("src", (0,)), 2))
        assert read(1, total) == {("strict", (0,)), ("safe", (0,))}
        # An infinite ratio has no canonical bytes, a share=False query runs where it is
        # read (and its reader is adopted), a persist=False query and its reader run.
        for record in [("ratio_text", (2,)), ("above_private", (1,)), ("from_local", (1,))]:
            read(0, record)
        machine.flush(0)
        assert read(1, ("ratio_text", (2,))) == {("ratio", (2,)), ("ratio_text", (2,))}
        assert read(1, ("above_private", (1,))) == {("private", (1,))}
        assert read(1, ("from_local", (1,))) == {("local", (1,)), ("from_local", (1,))}
        # A dynamic dependency: pick(1) reads value(2) when flag is False, double(1) when
        # True. A snapshot of db_0 (flag True) computes and publishes the second.
        machine.take_snapshot(0)
        machine.mutate(0, (FLAG, False))
        assert read(0, ("pick", (1,))) == {("pick", (1,))}
        machine.flush(0)
        machine.mutate(1, (FLAG, False))
        assert read(1, ("pick", (1,))) == set()
        assert read(2, ("pick", (1,))) == {("pick", (1,)), ("double", (1,))}
        machine.flush(2)
        machine.mutate(1, (FLAG, True))
        assert read(1, ("pick", (1,))) == set()
        # A database joins with db_0's inputs (flag False) and adopts total and all below.
        read(0, total)
        machine.flush(0)
        machine.join(0, total)
        assert machine.databases[2].db.log == []
        # Detached, db_1 runs what it needs again.
        machine.share(1, "detach")
        machine.mutate(1, (("src", (0,)), 1))
        assert read(1, total) >= {("value", (0,)), ("total", ())}
        assert picante.debug.stats(db_1).shared is None
        # Reads answered by adoption: total 4 times, above_private, pick(1) twice.
        assert machine.adopted_reads == 7
        assert len(machine.adopted_memos) > 7
    finally:
        machine.teardown()


# -- what the machine found -------------------------------------------------------------------


@picante.database(name="tests.share_machine.Gated")
class Gated:
    """`value` and `double` of `Shared`, with a gate that holds `double` before its read."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    @picante.input
    async def src(self) -> int:
        raise NotImplementedError

    @picante.query
    async def value(self) -> int:
        try:
            return await self.src()
        except MissingInputError:
            return -1

    @picante.query
    async def double(self) -> int:
        self.started.set()
        await self.gate.wait()
        return 2 * await self.value()


async def test_an_evaluation_behind_a_commit_publishes_what_it_read() -> None:
    """
    `double()` runs at revision 1 (src = 0), and reads `value()` = 0 there after a commit
    (src removed) and a read at revision 2 that recomputed `value()` to -1, equal to its
    memo of revision 0, so backdated: its memo's `changed_at` (0) is not after revision 1,
    though its value at 1 differed. The entry published for `double()` must record the 0
    it read, not the -1 of the memo; else a database where `value()` is -1 adopts 0.

    The machine's program (`ShareConsistency`, shrunk by hand):

        state.start(schedule=Schedule(seed=0, gc_rate=0.0), store='memory', inputs=[])
        state.read(which=0, record=('value', (0,)))
        state.mutate(which=0, change=(('src', (0,)), 0))
        state.read_during_commits(
            calls=[(0, ('double', (0,))), (0, ('value', (0,)))],
            commits=[(0, [(('src', (0,)), None)], False)], reshare=None, within=3)
        state.flush(which=0)
        state.read(which=1, record=('double', (0,)))  # 0, expected -2
    """
    store = MemoryStore()
    first = Gated()
    picante.share(first, store)
    async with asyncio.timeout(TIMEOUT):
        assert await first.value() == -1  # revision 0: src absent
        first.src.set(0)  # revision 1
        task = asyncio.create_task(first.double())
        await first.started.wait()  # double() is bound to revision 1
        first.src.remove()  # revision 2
        assert await first.value() == -1
        first.gate.set()
        assert await task == 0  # value() was 0 at revision 1
        await picante.flush_shared(first)
        second = Gated()  # src absent: double() is -2
        second.gate.set()
        picante.share(second, store)
        assert await second.double() == -2
