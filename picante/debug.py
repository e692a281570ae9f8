"""
Debugging tools: what depends on what, what ran and why, and whether queries are pure.

* `dependency_graph(db)`: the records and the reads between them, with `to_dot()`;
* `trace(db)`: a context manager recording events with timestamps, cache hits included,
  and summarizing recomputations, hits, early cutoffs and time per query;
* `stats(db)`: memo counts per query, dependency edges, work counters, memory;
* `explain(db, query, *key)`: why a memo last recomputed;
* `verify(db)`: re-runs every memo valid now and reports those whose fresh value differs.

Everything here reads the runtime's state or listens to its trace hook; nothing costs
anything until it is called.
"""

from __future__ import annotations

import contextlib
import operator
import time
from types import MethodType, SimpleNamespace
from typing import TYPE_CHECKING, Any, ParamSpec, final, overload

import attrs

from ._accumulate import SINK
from ._errors import UsageError, fmt_key
from ._events import public_event
from ._frames import ACTIVE
from ._runtime import iter_memos, iter_records, spec_of, view_of
from ._store import (
    ABSENT,
    EVICTED,
    NEVER,
    UNTRACKED,
    Failure,
    InputCell,
    QueryCell,
    TraceExecuted,
    deps_of,
    sizeof,
    unpack_deps,
)


if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable

    from ._events import Event, QueryHandle
    from ._ingredients import QueryIngredient
    from ._runtime import View
    from ._store import Revision, TraceRecord
    from .stores import StoreCounters

P = ParamSpec("P")


__all__ = [
    "DependencyGraph",
    "Executed",
    "Explanation",
    "Mismatch",
    "Node",
    "NotComparable",
    "QueryStats",
    "QueryTrace",
    "SharedStats",
    "Stats",
    "Trace",
    "Verification",
    "dependency_graph",
    "explain",
    "stats",
    "trace",
    "verify",
]


# -- dependency graph -----------------------------------------------------------------------


@final
@attrs.frozen
class Node:
    """A record: an input or query ingredient and a key."""

    kind: str
    ingredient: str
    key: tuple[object, ...]

    @property
    def label(self) -> str:
        """The record as picante shows it everywhere: `words('a.md')`."""
        return fmt_key(self.ingredient, self.key)

    def __str__(self) -> str:
        return self.label


@final
@attrs.frozen
class DependencyGraph:
    """
    The records of a database with a memo or a reader, and who read what.

    `edges` go from a query to what it read (its dependencies), in read order. `roots`
    are the records nothing reads (usually the top-level queries); `leaves` read nothing
    (inputs, and queries with no dependencies).
    """

    nodes: tuple[Node, ...]
    edges: tuple[tuple[Node, Node], ...]
    roots: tuple[Node, ...]
    leaves: tuple[Node, ...]

    def to_dot(self) -> str:
        """Render the graph in Graphviz DOT: inputs as boxes, queries as ellipses."""
        ids = {node: f"n{index}" for index, node in enumerate(self.nodes)}
        lines = ["digraph picante {", "    rankdir=LR;", '    node [fontname="monospace"];']
        for node, name in ids.items():
            shape = "box" if node.kind == "input" else "ellipse"
            lines.append(f"    {name} [label={_dot_string(node.label)}, shape={shape}];")
        lines.extend(f"    {ids[source]} -> {ids[target]};" for source, target in self.edges)
        lines.append("}")
        return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node(cell: InputCell | QueryCell) -> Node:
    kind = "input" if isinstance(cell, InputCell) else "query"
    return Node(kind, cell.ingredient.name, cell.key)


def dependency_graph(db: object) -> DependencyGraph:
    """
    Return the dependency graph of *db*'s memos as last recorded.

    A memo's edges are the reads of its last execution (or of the memo it adopted).
    """
    view = view_of(db, "debug.dependency_graph")
    nodes: dict[Node, None] = {}
    edges: list[tuple[Node, Node]] = []
    with view.lock:
        for cell in iter_memos(view):
            if cell.verified_at == NEVER:
                continue
            source = _node(cell)
            nodes.setdefault(source)
            for dep in deps_of(cell):
                target = _node(dep)
                nodes.setdefault(target)
                edges.append((source, target))
    read = {target for _, target in edges}
    reading = {source for source, _ in edges}
    return DependencyGraph(
        tuple(nodes),
        tuple(edges),
        tuple(node for node in nodes if node not in read),
        tuple(node for node in nodes if node not in reading),
    )


# -- trace ----------------------------------------------------------------------------------


@final
@attrs.frozen
class QueryTrace:
    """What one query did during a trace."""

    name: str
    calls: int
    hits: int
    executions: int
    first_computations: int
    recomputations: int
    early_cutoffs: int
    errors: int
    seconds: float


@final
class Trace:
    """
    What `trace(db)` recorded: `records` (timestamp, record) and a `summary()`.

    Records are the public events (`picante.RevisionBumped`, `InputSet`, `InputRemoved`,
    `QueryInvalidated`) plus one `Executed` named tuple per query body run (revision,
    ingredient, key, first, changed, failed, seconds), in order, each with a
    `time.perf_counter()` timestamp; `calls` counts the reads of each query made through
    its handle, and `hits` those answered from a memo without running its body.
    """

    def __init__(self) -> None:
        self.records: list[tuple[float, object]] = []
        self.calls: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.executed: dict[tuple[str, tuple[object, ...]], int] = {}

    def listen(self, record: TraceRecord) -> None:
        """The trace hook's listener: keep *record* with its time."""
        self.records.append((time.perf_counter(), _event_of(record)))
        if isinstance(record, TraceExecuted):
            key = (record.ingredient, record.key)
            self.executed[key] = self.executed.get(key, 0) + 1

    def summary(self) -> dict[str, QueryTrace]:
        """Per query: calls, hits, executions (first, recomputed, cut off), errors, time."""
        totals: dict[str, list[float]] = {}
        for _, record in self.records:
            if isinstance(record, TraceExecuted):
                row = totals.setdefault(record.ingredient, [0, 0, 0, 0, 0, 0.0])
                row[0] += 1
                row[1] += record.first
                row[2] += not record.first
                row[3] += not record.first and not record.changed and not record.failed
                row[4] += record.failed
                row[5] += record.seconds
        names = sorted({*totals, *self.calls})
        summary: dict[str, QueryTrace] = {}
        for name in names:
            runs, first, again, cutoffs, errors, seconds = totals.get(name, [0] * 6)
            summary[name] = QueryTrace(
                name,
                self.calls.get(name, 0),
                self.hits.get(name, 0),
                int(runs),
                int(first),
                int(again),
                int(cutoffs),
                int(errors),
                float(seconds),
            )
        return summary

    def __str__(self) -> str:
        rows = self.summary().values()
        lines = [
            f"{'query':<20} {'calls':>7} {'hits':>7} {'runs':>6} {'first':>6} "
            f"{'again':>6} {'cutoff':>6} {'errors':>6} {'time':>10}"
        ]
        lines.extend(
            f"{row.name:<20} {row.calls:>7} {row.hits:>7} {row.executions:>6} "
            f"{row.first_computations:>6} {row.recomputations:>6} {row.early_cutoffs:>6} "
            f"{row.errors:>6} {row.seconds * 1e3:>8.3f}ms"
            for row in rows
        )
        return "\n".join(lines)


def _event_of(record: TraceRecord) -> TraceExecuted | Event | None:
    """Trace records as the public events; executions stay as they are."""
    if isinstance(record, TraceExecuted):
        return record
    return public_event(record)


Executed = TraceExecuted
"""The record of one query body run: revision, ingredient, key, first, changed, failed, seconds."""
# The trace hook's own record, under its public name: reprs, pickles and docs say
# `picante.debug.Executed` (as `picante/__init__.py` does for the top-level names).
Executed.__module__ = __name__
Executed.__name__ = Executed.__qualname__ = "Executed"


@contextlib.contextmanager
def trace(db: object) -> Generator[Trace]:
    """
    Record what *db* does inside the block; yield the `Trace`.

    While the block runs, each query handle of *db* counts its calls and cache hits (the
    hit path costs nothing outside a trace), and every commit and query execution is
    recorded with a timestamp. Reads made through snapshots of *db* are not counted.

    Examples:
        ```python
        with picante.debug.trace(db) as trace:
            await db.total()
        print(trace)  # a table: calls, hits and runs per query
        ```
    """
    view = view_of(db, "debug.trace")
    recording = Trace()
    originals: dict[str, object] = {}
    attributes = vars(db)
    for name, ingredient in spec_of(type(db)).queries.items():
        handle = getattr(db, name)
        originals[name] = attributes.get(name, handle)
        attributes[name] = _counting(view, recording, name, ingredient, handle)
    try:
        with view.subscribe(recording.listen):
            yield recording
    finally:
        for name, handle in originals.items():
            attributes[name] = handle


def _counting(
    view: View,
    recording: Trace,
    name: str,
    ingredient: QueryIngredient[Any, Any, Any],
    handle: Any,
) -> MethodType:
    """Wrap *handle* to count calls and hits (reads that ran no body of that record)."""
    normalize = ingredient.key_spec().normalize
    executed = recording.executed
    calls, hits = recording.calls, recording.hits

    async def counted(_view: object, *args: object, **kwargs: object) -> object:
        key = (name, normalize(args, kwargs))
        before = executed.get(key, 0)
        calls[name] = calls.get(name, 0) + 1
        value = await handle(*args, **kwargs)
        if executed.get(key, 0) == before:
            hits[name] = hits.get(name, 0) + 1
        return value

    counted.ingredient = ingredient  # type: ignore[attr-defined]
    counted.__qualname__ = handle.__qualname__
    counted.__doc__ = handle.__doc__
    return MethodType(counted, view)


# -- stats ----------------------------------------------------------------------------------


@final
@attrs.frozen
class QueryStats:
    """The memos of one query: how many, how many hold a value, how many hold an error."""

    name: str
    memos: int
    values: int
    errors: int


@final
@attrs.frozen
class SharedStats:
    """
    What sharing did for a database, and each store's counters (`picante.share`).

    `lookups` evaluations asked the stores, `adopted` results came from them without
    running the body, `checked` entries were checked, `published` evaluations were
    recorded after their body ran, `unshareable` were not (an error, an untracked read,
    a value with no portable bytes). `stores` has each store's `StoreCounters`, in lookup
    order: round trips, misses, rejected entries, dropped writes, errors.
    """

    lookups: int
    adopted: int
    checked: int
    published: int
    unshareable: int
    stores: tuple[StoreCounters, ...]


@final
@attrs.frozen
class Stats:
    """
    A database's cache at one moment.

    `executions` counts query bodies run, `hits` calls of query handles answered at once
    from a valid memo (always counted; a read that revalidated a memo first is not one),
    `dependency_checks` dependencies examined by deep verification and
    `invalidations` memos marked not clean by mutations, all since the database (or the
    snapshot) was created.
    `approximate_bytes` is the deep `sys.getsizeof` of input keys and values, interned
    values and memo keys and values, measured only when asked (`stats(db, sizes=True)`):
    `None` otherwise. `shared` says what sharing did (`picante.share`), `None` with no
    store attached.
    """

    revision: Revision
    queries: tuple[QueryStats, ...]
    inputs: int
    interned: int
    dependency_edges: int
    executions: int
    hits: int
    dependency_checks: int
    invalidations: int
    approximate_bytes: int | None
    shared: SharedStats | None = None

    @property
    def memos(self) -> int:
        """Memos of all queries."""
        return sum(query.memos for query in self.queries)


def stats(db: object, *, sizes: bool = False) -> Stats:
    """
    Return statistics of *db*'s memos, inputs and work counters; with *sizes*, also the
    approximate memory of its keys and values (`approximate_bytes`, otherwise `None`).

    Without *sizes* it takes time proportional to the number of records; with, to the
    size of every key and value, which for values such as syntax trees can be seconds.
    """
    view = view_of(db, "debug.stats")
    per_query: dict[str, list[int]] = {}
    inputs = edges = 0
    size = 0
    with view.lock:
        for cell in iter_records(view):
            if isinstance(cell, InputCell):
                if cell.value is not ABSENT:
                    inputs += 1
                    if sizes:
                        size += sizeof(cell.key) + sizeof(cell.value)
                continue
            if cell.verified_at == NEVER:
                continue
            row = per_query.setdefault(cell.ingredient.name, [0, 0, 0])
            row[0] += 1
            if cell.failure is not None:
                row[2] += 1
            elif cell.value is not EVICTED:
                row[1] += 1
                if sizes:
                    size += sizeof(cell.value)
            if sizes:
                size += sizeof(cell.key)
            edges += len(deps_of(cell))
    interned = sum(len(table.values) for table in view.family.interned.values())
    if sizes:
        size += view.family.interned_bytes or sum(
            sizeof(value) for table in view.family.interned.values() for value in table.values
        )
    counters = view.counters
    return Stats(
        view.revision,
        tuple(QueryStats(name, *row) for name, row in sorted(per_query.items())),
        inputs,
        interned,
        edges,
        counters.executions,
        sum(tally.hits for tally in view.tallies.values()),
        counters.dependency_checks,
        counters.invalidations,
        size if sizes else None,
        _shared_stats(view),
    )


def _shared_stats(view: View) -> SharedStats | None:
    shared: Any = view.shared
    if shared is None:
        return None
    counters = shared.counters
    return SharedStats(
        counters.lookups,
        counters.adopted,
        counters.checked,
        counters.published,
        counters.unshareable,
        tuple(attrs.evolve(store.counters) for store in shared.stores),
    )


# -- explain --------------------------------------------------------------------------------


@final
@attrs.frozen
class Explanation:
    """
    Why a memo holds what it holds: `reason` is one of `"never computed"`, `"first"`,
    `"changed"`, `"evicted"`, `"untracked"` (it had read the outside world: a volatile
    query, `report_untracked_read`, a query of another database, a cycle), `"adopted"`
    (taken from a shared store, `picante.share`: its body did not run) or `"code"`;
    `revision` is the revision of the last execution (for `"first"`, of the first one)
    and `verified_at` the revision the memo had last been verified at before it; when
    the reason is `"changed"`, `changed` lists the dependencies that changed after the
    memo was last verified, as (record label, revision of their latest change).
    `str()` says it in a sentence.
    """

    record: str
    reason: str
    revision: Revision | None
    verified_at: Revision | None
    changed: tuple[tuple[str, Revision], ...] = ()

    def __str__(self) -> str:
        if self.reason == "never computed":
            return f"{self.record} has never been computed"
        if self.reason == "first":
            return (
                f"{self.record} was computed for the first time at revision {self.revision} "
                f"and has not recomputed since (verified at revision {self.verified_at})"
            )
        if self.reason == "changed":
            what = ", ".join(f"{label} changed at revision {rev}" for label, rev in self.changed)
            if not what:
                what = "a dependency was recomputed"
            return (
                f"{self.record} recomputed at revision {self.revision} because {what}, "
                f"after it was last verified at revision {self.verified_at}"
            )
        if self.reason == "evicted":
            return (
                f"{self.record} recomputed at revision {self.revision} because its value "
                "had been evicted (lru=)"
            )
        if self.reason == "adopted":
            return (
                f"{self.record} was taken from a shared store at revision {self.revision}: "
                "an evaluation elsewhere had read the same values (picante.share)"
            )
        if self.reason == "untracked":
            return (
                f"{self.record} recomputed at revision {self.revision} because it had read "
                f"something picante cannot track at revision {self.verified_at}"
            )
        return (
            f"{self.record} recomputed at revision {self.revision} because its code (or "
            "version=) changed since the cache file it was loaded from was saved"
        )


@overload
def explain(
    db: object, query: QueryHandle[P, Any], /, *args: P.args, **kwargs: P.kwargs
) -> Explanation: ...
@overload
def explain(db: object, query: str, /, *args: object, **kwargs: object) -> Explanation: ...
def explain(
    db: object, query: Callable[..., Any] | str, /, *args: object, **kwargs: object
) -> Explanation:
    """
    Explain why the memo of *query* at a key last recomputed (or that it never did).

    Args:
        db: The database.
        query: The query, as a bound handle (`db.words`, a `picante.BoundQuery`; typed
            as `QueryHandle`, the protocol through which a checker takes the key
            arguments from the query) or its name (`"words"`).
        args: The query's arguments, as the query takes them (keywords too).
        kwargs: The same.

    Raises:
        UsageError: *query* is not a query of *db*.
    """
    view = view_of(db, "debug.explain")
    name = query if isinstance(query, str) else getattr(query, "__name__", "")
    ingredient = spec_of(type(db)).queries.get(name)
    if ingredient is None:
        msg = f"explain(): {query!r} is not a query of {type(db).__name__}"
        raise UsageError(msg)
    full_key = ingredient.key_spec().normalize(args, kwargs)
    label = fmt_key(name, full_key)
    cell = view.tables.get(name, {}).get(full_key)
    why: Any = getattr(cell, "why", None)
    if not isinstance(cell, QueryCell) or (cell.verified_at == NEVER and why is None):
        return Explanation(label, "never computed", None, None)
    if why is None:
        return Explanation(label, "first", cell.changed_at, cell.verified_at)
    if len(why) == 2:  # `(revision, "adopted")`: taken from a shared store
        return Explanation(label, "adopted", why[0], None)
    revision, verified_at, deps, untracked, evicted = why
    if verified_at == NEVER:
        return Explanation(label, "code", revision, None)
    if untracked:
        return Explanation(label, "untracked", revision, verified_at)
    changed = tuple(
        (fmt_key(dep.ingredient.name, dep.key), dep.changed_at)
        for dep in unpack_deps(deps)
        if dep.changed_at > verified_at
    )
    if not changed and evicted:
        return Explanation(label, "evicted", revision, verified_at)
    return Explanation(label, "changed", revision, verified_at, changed)


# -- verify ---------------------------------------------------------------------------------

_BY_EQUALITY = SimpleNamespace(eq_option=None)
"""What `_compare` needs of an ingredient, to compare by `==` (accumulated values)."""


@final
@attrs.frozen
class Mismatch:
    """A memo whose fresh recomputation differs: an impure or non-deterministic query."""

    record: str
    memoized: object
    fresh: object

    def __str__(self) -> str:
        return f"{self.record}: memoized {self.memoized!r}, recomputed {self.fresh!r}"


@final
@attrs.frozen
class NotComparable:
    """A memo whose fresh recomputation cannot be compared with it, and why."""

    record: str
    why: str

    def __str__(self) -> str:
        return f"{self.record}: not comparable ({self.why})"


@final
class Verification(list[Mismatch]):
    """
    What `verify` found: the mismatches (this list itself, so `== []` says "pure"), and
    in `not_comparable` the memos it could not judge.
    """

    def __init__(
        self, mismatches: Iterable[Mismatch] = (), not_comparable: Iterable[NotComparable] = ()
    ) -> None:
        super().__init__(mismatches)
        self.not_comparable: list[NotComparable] = list(not_comparable)

    def __repr__(self) -> str:
        return f"Verification({list(self)!r}, not_comparable={self.not_comparable!r})"


async def verify(db: object) -> Verification:
    """
    Re-run every memo of *db* valid at its current revision; report those that differ.

    Each query body runs again with the same dependencies (read from their memos) and its
    fresh outcome is compared with the memo by the query's `eq` (errors by type and args).
    No memo changes. Memos that are not known valid without recomputing something (stale
    ones, evicted values) are skipped, and so are memos that read the outside world (they
    may differ by design). Use it in tests to catch queries that read something picante
    does not track (a global, the clock, a file). What a body accumulates
    (`picante.accumulate`) is compared with the memo's values too (by `==`): a difference
    is a mismatch of record `"check('a.py') accumulated"`.

    A value that cannot be compared is not a mismatch: it goes to `not_comparable`, with
    the reason (`eq=False`; an `==` or `eq` that raises, or does not return a `bool`).
    """
    view = view_of(db, "debug.verify")
    report = Verification()
    revision = view.revision
    cells = [
        cell
        for cell in iter_memos(view)
        if cell.value is not EVICTED
        and cell.durability != UNTRACKED
        and (cell.verified_at == revision or (cell.verified_at != NEVER and cell.clean))
    ]
    accumulations = view.accumulations
    for cell in cells:
        ingredient = cell.ingredient
        token = ACTIVE.set(None)
        # What the body accumulates (`picante.accumulate`), compared with the memo's too.
        accumulated: list[object] = []
        sink = SINK.set(accumulated)
        try:
            fresh: object = await ingredient.fn(db, *cell.key)
        except Exception as error:  # noqa: BLE001 - compared with the memo, like any outcome
            fresh = Failure(error, error.__traceback__)
        finally:
            SINK.reset(sink)
            ACTIVE.reset(token)
        memo = cell.failure or cell.value
        record = fmt_key(ingredient.name, cell.key)
        if accumulations is not None:
            entry = accumulations.entries.get(cell)
            own = () if entry is None else entry[0]
            # By `==`, whatever the query's `eq` (which is for its values).
            if _compare(_BY_EQUALITY, own, tuple(accumulated)) is False:
                report.append(Mismatch(f"{record} accumulated", own, tuple(accumulated)))
        if isinstance(memo, Failure) and isinstance(fresh, Failure):
            # Errors: the same type, and args compared like values (by `==`).
            same: bool | str = type(memo.error) is type(fresh.error) and _compare(
                ingredient, memo.error.args, fresh.error.args, by_eq=False
            )
        elif isinstance(memo, Failure) or isinstance(fresh, Failure):
            same = False
        else:
            same = _compare(ingredient, memo, fresh)
        if isinstance(same, str):
            report.not_comparable.append(NotComparable(record, same))
        elif not same:
            report.append(
                Mismatch(
                    record,
                    memo.error if isinstance(memo, Failure) else memo,
                    fresh.error if isinstance(fresh, Failure) else fresh,
                )
            )
    return report


def _compare(ingredient: Any, memo: object, fresh: object, *, by_eq: bool = True) -> bool | str:
    """
    Compare by the query's equality (or, not *by_eq*, by `==`): `True`, `False`, or why
    they cannot be compared.
    """
    if ingredient.eq_option is False:
        return "eq=False"
    if memo is fresh:
        return True
    option: Callable[[object, object], object] | None = ingredient.eq_option
    eq = option if by_eq and option is not None else operator.eq
    what = "==" if eq is operator.eq else "eq"
    try:
        result = eq(memo, fresh)
    except Exception as error:  # noqa: BLE001 - the user's equality failed: reported
        return f"{what} raised {type(error).__name__}: {error}"
    if type(result) is not bool:
        return f"{what} returned a {type(result).__qualname__}, not a bool"
    return result
