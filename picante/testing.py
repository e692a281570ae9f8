"""
Helpers for testing code built on picante: which query bodies ran, and memo consistency.

* `record(db)`: a context manager (`with` or `async with`) that records the query bodies
  *db* runs inside the block, as `words('a.md')`, in the order they finished, and the
  memos it revalidated without running their bodies;
* `assert_nothing_runs(db)`: the same, failing at the end of the block with the list of
  what ran, if anything did;
* `check_consistency(make_db, inputs=..., queries=...)`: a hypothesis state machine that
  sets and removes inputs at random, in batches and on snapshots, reads queries, and
  checks every answer against a fresh database given the same inputs;
  `consistency_machine(...)` returns the machine class itself (`.TestCase` for pytest).

A recorder listens to the trace hook of one view (the one it is given: a database or a
snapshot), like `picante.debug.trace`; recorders never interfere with each other, nor
with `picante.events` subscribers. hypothesis is not a dependency of picante: only the
consistency helpers import it, when called.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final, TypeAlias, final

from ._accumulate import accumulated
from ._errors import UsageError, fmt_key
from ._runtime import batch, iter_memos, snapshot, spec_of, view_of
from ._store import NEVER, QueryCell, TraceExecuted


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from types import TracebackType
    from typing import Self

    import hypothesis
    from hypothesis.stateful import RuleBasedStateMachine
    from hypothesis.strategies import SearchStrategy

    from ._declare import DatabaseSpec
    from ._runtime import Subscription, View
    from ._store import Revision, TraceRecord
    from .debug import Executed

    Keys: TypeAlias = SearchStrategy[tuple[Any, ...]] | tuple[Any, ...]
    """The keys a machine reads or sets: a strategy of key tuples, or one fixed key."""


__all__ = [
    "Recording",
    "assert_nothing_runs",
    "check_consistency",
    "consistency_machine",
    "record",
]


# -- recording what ran ---------------------------------------------------------------------


@final
class Recording:
    """
    What ran in one view while a `record` (or `assert_nothing_runs`) block was open.

    Readable inside the block (what happened so far) and after it (frozen at its end).
    Entries are formatted as picante formats records everywhere: the query and its key,
    defaults applied, `page('a.md', 'en')`.
    """

    def __init__(self, db: object, *, forbid: bool = False) -> None:
        self._view: View = view_of(
            db, "testing.assert_nothing_runs" if forbid else "testing.record"
        )
        self._forbid = forbid
        self._runs: list[Executed] = []
        self._before: dict[QueryCell, Revision] = {}
        self._verified: frozenset[str] | None = None
        self._subscription: Subscription | None = None
        self._used = False

    @property
    def executed(self) -> list[str]:
        """
        The query bodies that ran and finished in the block, in the order they finished.

        A dependency that is brought up to date finishes before the query that reads it:
        `["words('a.md')", "total()"]`. A body that raised counts; a body cancelled
        before it finished does not (it memoized nothing). A record that ran twice (at two
        revisions) appears twice.
        """
        return [fmt_key(run.ingredient, run.key) for run in self._runs]

    @property
    def runs(self) -> list[Executed]:
        """
        The same runs as `executed`, as `picante.debug.Executed` records: the revision,
        ingredient, key, and whether it was the first run, changed the outcome (`False`
        for a recomputation cut off early), or failed.
        """
        return list(self._runs)

    @property
    def verified(self) -> frozenset[str]:
        """
        The memos found still valid without running their bodies, during the block.

        That is every memo picante had to check (after a change, a dependency walk or
        the durability shortcut) and kept, and every memo a snapshot reused from its
        database: the queries an early cutoff spared. A memo that needed no check (it
        was verified at the current revision already, or was known valid since: the
        common hit) is in neither list, and a record that also ran in the block is only
        in `executed`. A set: the order of these checks is not kept.
        """
        if self._verified is not None:
            return self._verified
        return self._find_verified() if self._used else frozenset()

    def _find_verified(self) -> frozenset[str]:
        ran = {(run.ingredient, run.key) for run in self._runs}
        before = self._before
        found: set[str] = set()
        for cell in _query_cells(self._view):
            name = cell.ingredient.name
            if (
                cell.verified_at != NEVER
                and cell.verified_at > before.get(cell, NEVER)
                and (name, cell.key) not in ran
            ):
                found.add(fmt_key(name, cell.key))
        return frozenset(found)

    def _listen(self, record: TraceRecord) -> None:
        if type(record) is TraceExecuted:
            self._runs.append(record)

    def __enter__(self) -> Self:
        if self._used:
            msg = "a picante.testing recording can be entered only once; record again"
            raise UsageError(msg)
        self._used = True
        self._before = {cell: cell.verified_at for cell in _query_cells(self._view)}
        self._subscription = self._view.subscribe(self._listen)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        self._verified = self._find_verified()
        self._before = {}
        if self._forbid and exc_type is None and self._runs:
            ran = self.executed
            bodies = "body" if len(ran) == 1 else "bodies"
            msg = f"expected no query body to run, but {len(ran)} {bodies} ran: " + ", ".join(ran)
            raise AssertionError(msg)

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    def __repr__(self) -> str:
        return f"<Recording executed={self.executed!r} verified={sorted(self.verified)!r}>"


def _query_cells(view: View) -> list[QueryCell]:
    """Every query cell of *view*, read under its lock (commits may run on other threads)."""
    with view.lock:
        return list(iter_memos(view))


def record(db: object) -> Recording:
    """
    Record the query bodies *db* runs inside the block: `with record(db) as log:`.

    `log.executed` lists them in the order they finished, formatted like
    `"words('a.md')"`; `log.verified` is the set of memos revalidated without running;
    `log.runs` has the details. Use `async with` if you prefer; both work.

    Only *db*'s own view is recorded: bodies that a snapshot of *db* runs are in the
    snapshot's recording (`record(snap)`), not in *db*'s. When two views share one
    evaluation (concurrent reads of the same record at the same state), the body runs
    in one of them; the other's recording lists the record as verified. Recordings of
    the same view may nest or overlap: each sees everything that ran while it was open.

    Args:
        db: A database instance or a snapshot.

    Raises:
        UsageError: *db* is not a database.

    Examples:
        ```python
        db.source.set("a.md", "hello big world")
        with picante.testing.record(db) as log:
            assert await db.total() == 6
        assert log.executed == ["words('a.md')", "total()"]
        ```
    """
    return Recording(db)


def assert_nothing_runs(db: object) -> Recording:
    """
    Fail the block if *db* runs any query body in it: `with assert_nothing_runs(db):`.

    At the end of the block (unless it raised), an `AssertionError` lists what ran:
    `expected no query body to run, but 1 body ran: words('a.md')`. Revalidating memos
    without running them is fine. The `Recording` is available as the `as` target. Works
    with `async with` too, and records only *db*'s own view, as `record` does.

    Raises:
        UsageError: *db* is not a database.
    """
    return Recording(db, forbid=True)


# -- memo consistency against from-scratch evaluation ---------------------------------------


@final
class _Removed:
    """The value of a change that removes the input."""

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Final = _Removed()


@final
class _Subject:
    """One view under test: the database or a snapshot, and the inputs it should hold."""

    def __init__(
        self, label: str, db: object, inputs: dict[tuple[str, tuple[Any, ...]], Any]
    ) -> None:
        self.label = label
        self.db = db
        self.inputs = inputs


def consistency_machine(
    make_db: Callable[[], object],
    *,
    inputs: Mapping[str, tuple[Keys, SearchStrategy[Any]]],
    queries: Mapping[str, Keys],
    snapshots: bool = True,
    timeout: float = 10.0,
) -> type[RuleBasedStateMachine]:
    """
    Return a hypothesis state machine checking *make_db*'s databases for memo consistency.

    The machine holds one database (from *make_db*) and the snapshots it takes of it
    (and of them). Its rules set and remove inputs (one at a time, or several in a
    `picante.batch`), on the database or on a snapshot, take snapshots, and read queries
    (one, or several concurrently). Every answer, value or error, must equal what a new
    database from *make_db*, given the same changes, computes for the same call: values
    by the query's `eq=` if it declares a function, else by `==`; errors by type and
    `args`. A database that accumulates (`accumulates=`) is also asked what each call
    accumulated (`picante.accumulated`), which must equal (by `==`) what the new database
    collects. A difference fails the example with an `AssertionError` naming the call,
    the view (`database_0`, `snapshot_0`, ...), both answers and the inputs; hypothesis
    shrinks the program and prints it (a removal shows as `REMOVE`).

    Inputs that *make_db* sets itself are where both databases start. State shared by
    all databases (a module global, a class attribute) is shared by the fresh one too,
    so the check cannot see a query reading it; add a rule that changes it to a subclass
    of the machine, and it can (see the testing guide).

    Use it as `TestSite = consistency_machine(...).TestCase` for pytest to collect, or
    through `check_consistency`. The machine runs its own event loop: a plain (not
    `async`) test must run it.

    Args:
        make_db: Returns a new, independent database each time it is called (the class
            itself, if its `__init__` takes no argument).
        inputs: For each input to change, by name: a strategy of keys (tuples of
            arguments) or one fixed key (`()` for a singleton), and a strategy of values.
        queries: For each query to read, by name: a strategy of keys or one fixed key.
        snapshots: Whether to take snapshots and change and read them too.
        timeout: Seconds any one read may take: a deadlock fails instead of hanging.

    Raises:
        ImportError: hypothesis is not installed.
        UsageError: A name is not an input (or a query) of the database, or nothing is
            given to change or to read.
    """
    try:
        from hypothesis import strategies as st
        from hypothesis.stateful import (
            Bundle,
            RuleBasedStateMachine,
            initialize,
            precondition,
            rule,
        )
    except ImportError as error:
        msg = (
            "picante.testing.consistency_machine() needs hypothesis, which picante does not "
            "install: pip install hypothesis"
        )
        raise ImportError(msg) from error

    probe = make_db()
    view_of(probe, "testing.consistency_machine")  # a database, or a UsageError saying so
    spec = spec_of(type(probe))
    _check_names(type(probe).__name__, "input", inputs, spec)
    _check_names(type(probe).__name__, "query", queries, spec)
    equalities: dict[str, Callable[[Any, Any], object] | None] = {}
    for name in queries:
        option = spec.queries[name].eq_option
        equalities[name] = option if callable(option) else None
    collects = spec.accumulator is not None

    def keys_of(keys: Keys) -> SearchStrategy[tuple[Any, ...]]:
        return st.just(keys) if isinstance(keys, tuple) else keys

    changes = st.one_of(
        [
            st.tuples(st.just(name), keys_of(keys), st.just(REMOVE) | values)
            for name, (keys, values) in inputs.items()
        ]
    )
    calls = st.one_of([st.tuples(st.just(name), keys_of(keys)) for name, keys in queries.items()])

    class MemoConsistency(RuleBasedStateMachine):
        """Random changes and reads; every read equals a from-scratch evaluation."""

        # Views are named as hypothesis prints the program: database_0, snapshot_0, ...
        databases: Bundle[_Subject] = Bundle("database")
        snapshot_views: Bundle[_Subject] = Bundle("snapshot")
        views = databases | snapshot_views

        def __init_subclass__(cls, **kwargs: Any) -> None:
            # A subclass (with rules of its own) leaves out the explain phase too.
            super().__init_subclass__(**kwargs)
            cls.TestCase.settings = _without_explain(cls.TestCase.settings)

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.taken = 0

        def teardown(self) -> None:
            _close(self.loop)

        @initialize(target=databases)
        def new_database(self) -> _Subject:
            """The database under test (later steps name it `database_0`)."""
            return _Subject("database_0", make_db(), {})

        @rule(view=views, change=changes)
        def change(self, view: _Subject, change: tuple[str, tuple[Any, ...], Any]) -> None:
            """Set or remove one input."""
            _apply(view, [change])

        @rule(view=views, changes=st.lists(changes, min_size=1, max_size=4))
        def batch(self, view: _Subject, changes: list[tuple[str, tuple[Any, ...], Any]]) -> None:
            """Set and remove several inputs in one `picante.batch`."""
            with batch(view.db):
                _apply(view, changes)

        @precondition(lambda _: snapshots)
        @rule(target=snapshot_views, view=views)
        def snapshot(self, view: _Subject) -> _Subject:
            """Take a snapshot of the database or of a snapshot."""
            label = f"snapshot_{self.taken}"
            self.taken += 1
            return _Subject(label, snapshot(view.db), dict(view.inputs))

        @rule(view=views, call=calls)
        def read(self, view: _Subject, call: tuple[str, tuple[Any, ...]]) -> None:
            """Read one query; compare with a fresh database."""
            self.check(view, [call])

        @rule(view=views, calls=st.lists(calls, min_size=2, max_size=4))
        def read_concurrently(
            self, view: _Subject, calls: list[tuple[str, tuple[Any, ...]]]
        ) -> None:
            """Read several queries concurrently (`asyncio.gather`); compare each."""
            self.check(view, calls)

        def check(self, subject: _Subject, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
            async def together() -> list[_Answer]:
                return list(
                    await asyncio.gather(*(_outcome(subject.db, c, collects) for c in calls))
                )

            answers = self.run(together(), f"reading {_calls(calls)} on {subject.label}")
            for call, (answer, collected) in zip(calls, answers, strict=True):
                fresh, fresh_collected = self.run(
                    _fresh(make_db, subject.inputs, call, collects),
                    f"reading {_calls([call])} on a fresh database",
                )
                what = _calls([call])
                got, expected = answer, fresh
                if _same(equalities[call[0]], answer, fresh):
                    if _same(None, collected, fresh_collected):
                        continue
                    got, expected = collected, fresh_collected
                    what = f"accumulated({what})"
                msg = (
                    f"{what} on {subject.label} "
                    f"(revision {view_of(subject.db).revision}) {_show(got)}, but a "
                    f"fresh database with the same inputs {_show(expected)}\n"
                    f"inputs: {_inputs(subject.inputs)}"
                )
                raise AssertionError(msg)

        def run(self, coro: Awaitable[Any], what: str) -> Any:
            try:
                return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))
            except TimeoutError:
                msg = f"{what} did not finish within {timeout} s (a deadlock?)"
                raise AssertionError(msg) from None

    MemoConsistency.__name__ = MemoConsistency.__qualname__ = (
        f"MemoConsistency_{type(probe).__name__}"
    )
    # What hypothesis gives a machine's `TestCase` (no deadline), minus the explain phase.
    MemoConsistency.TestCase.settings = _without_explain(MemoConsistency.TestCase.settings)
    return MemoConsistency


def check_consistency(
    make_db: Callable[[], object],
    *,
    inputs: Mapping[str, tuple[Keys, SearchStrategy[Any]]],
    queries: Mapping[str, Keys],
    snapshots: bool = True,
    timeout: float = 10.0,
    settings: hypothesis.settings | None = None,
) -> None:
    """
    Run the `consistency_machine` of *make_db*'s databases; raise on the first mismatch.

    Call it from a plain (not `async`) test function. *settings* are the hypothesis
    settings to run with (by default, those of the machine's `TestCase`: the current
    profile's, without a deadline), minus the "explain" phase, which is slow on a state
    machine; `settings(max_examples=...)` trades thoroughness for time.

    Raises:
        AssertionError: A read differed from a from-scratch evaluation (the message names
            the call, both answers and the inputs; hypothesis prints the shrunk program).
        ImportError: hypothesis is not installed.
        UsageError: Called while an event loop is running in this thread, or as
            `consistency_machine` raises it.

    Examples:
        ```python
        def test_site_is_consistent() -> None:
            paths = st.sampled_from(["a.md", "b.md"])
            picante.testing.check_consistency(
                Site,
                inputs={"source": (st.tuples(paths), st.text("ab ", max_size=5))},
                queries={"words": st.tuples(paths), "total": ()},
            )
        ```
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        msg = (
            "check_consistency() runs its own event loop: call it from a plain test "
            "function, not from a coroutine"
        )
        raise UsageError(msg)
    machine = consistency_machine(
        make_db, inputs=inputs, queries=queries, snapshots=snapshots, timeout=timeout
    )
    from hypothesis.stateful import run_state_machine_as_test

    chosen = machine.TestCase.settings if settings is None else _without_explain(settings)
    run_state_machine_as_test(machine, settings=chosen)


def _without_explain(settings: hypothesis.settings) -> hypothesis.settings:
    """
    *settings* without the "explain" phase: it traces every line run while replaying a
    failure, which costs far more than it tells about a state machine.
    """
    import hypothesis

    phases = [phase for phase in settings.phases if phase is not hypothesis.Phase.explain]
    return hypothesis.settings(settings, phases=phases)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still running on *loop* (after a timeout), let it end, close it."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _check_names(owner: str, kind: str, names: Mapping[str, object], spec: DatabaseSpec) -> None:
    if not names:
        msg = f"consistency_machine(): give at least one {kind} of {owner}"
        raise UsageError(msg)
    for name in names:
        ingredient = spec.ingredients.get(name)
        if ingredient is None or ingredient.kind != kind:
            msg = f"consistency_machine(): {name!r} is not {_article(kind)} {kind} of {owner}"
            raise UsageError(msg)


def _article(kind: str) -> str:
    return "an" if kind == "input" else "a"


def _apply(subject: _Subject, changes: list[tuple[str, tuple[Any, ...], Any]]) -> None:
    """Make *changes* on *subject*'s database and in the inputs it should hold."""
    for name, key, value in changes:
        handle: Any = getattr(subject.db, name)
        if value is REMOVE:
            handle.remove(*key)
        else:
            handle.set(*key, value)
        subject.inputs[name, key] = value


_Answer: TypeAlias = tuple[tuple[bool, Any], tuple[bool, Any]]
"""What a call gave (`_outcome`), and what `accumulated` gave for it (`(True, ())` if the
database does not accumulate)."""


async def _outcome(db: object, call: tuple[str, tuple[Any, ...]], collects: bool) -> _Answer:
    """
    What awaiting *call* on *db* gives, `(True, value)` or `(False, error)`; then, if
    *collects*, what `accumulated` gives for it, the same way.
    """
    name, key = call
    handle = getattr(db, name)
    try:
        outcome: tuple[bool, Any] = (True, await handle(*key))
    except Exception as error:  # noqa: BLE001 - compared with the fresh outcome
        outcome = (False, error)
    if not collects:
        return outcome, (True, ())
    try:
        return outcome, (True, await accumulated(handle, *key))
    except Exception as error:  # noqa: BLE001 - compared with the fresh outcome
        return outcome, (False, error)


async def _fresh(
    make_db: Callable[[], object],
    inputs: Mapping[tuple[str, tuple[Any, ...]], Any],
    call: tuple[str, tuple[Any, ...]],
    collects: bool,
) -> _Answer:
    """The outcome of *call* on a new database given *inputs*: from-scratch evaluation."""
    db = make_db()
    with batch(db):
        for (name, key), value in inputs.items():
            handle: Any = getattr(db, name)
            if value is REMOVE:
                handle.remove(*key)  # what *make_db* may have set
            else:
                handle.set(*key, value)
    return await _outcome(db, call, collects)


def _same(
    eq: Callable[[Any, Any], object] | None, answer: tuple[bool, Any], fresh: tuple[bool, Any]
) -> bool:
    """Values by the query's *eq* (or `==`); errors by type and args."""
    (ok, got), (fresh_ok, expected) = answer, fresh
    if ok != fresh_ok:
        return False
    try:
        if not ok:
            return type(got) is type(expected) and bool(got.args == expected.args)
        return got is expected or bool((eq or _equal)(got, expected))
    except Exception:  # noqa: BLE001 - an equality that raises: not the same
        return False


def _equal(a: object, b: object) -> object:
    return a == b


def _show(outcome: tuple[bool, Any]) -> str:
    ok, what = outcome
    return f"returned {what!r}" if ok else f"raised {what!r}"


def _calls(calls: list[tuple[str, tuple[Any, ...]]]) -> str:
    return ", ".join(fmt_key(name, key) for name, key in calls)


def _inputs(inputs: Mapping[tuple[str, tuple[Any, ...]], Any]) -> str:
    if not inputs:
        return "as make_db() left them"
    return ", ".join(
        f"{fmt_key(name, key)} removed" if value is REMOVE else f"{fmt_key(name, key)} = {value!r}"
        for (name, key), value in inputs.items()
    )
