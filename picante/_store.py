"""
Runtime data: revisions, durability, input cells and query cells. Pure data: no asyncio,
no I/O, no algorithm beyond what a single cell knows about itself.

How a record is laid out (one object per record, plain `__slots__` for a small, fast cell):

* `InputCell` — the value of one input key (or `ABSENT`), the revision it last changed
  at, the memos that read it (`dependents`), and, only while evaluations bound to an older
  revision are running, the versions they may still need (`history`).
* `QueryCell` — one memo: the value or the failure, `verified_at` (the last revision at
  which the value is known to be right), `changed_at` (the revision at which the value
  last became different), the minimum durability of what it read, the dependencies in
  the order they were first read, the memos that read it, and `clean`.

What a memo costs (CPython 3.11, 64-bit; P8 in the benchmark suite measures it for a
memo with one dependency edge, key and value excluded):

| piece | bytes |
|---|---:|
| `QueryCell`: 12 slots + object header (GC-tracked) | 128 + 16 |
| its `deps`, when it read one record: that record itself | 0 |
| its `deps` tuple, when it read several (GC-tracked) | 40 + 8 per edge |
| its entry in the query's table (a dict) | ~30 |
| its reverse edge in the dependency's `dependents`, while it is the only reader | 0 |

(From a record's second reader on, `dependents` is a set: 216 bytes, shared by all.) So
a memo that read one record is one object for the garbage collector to track, not two:
most memos read one, and the collector's passes over a large graph cost in proportion.

Nothing else is kept per memo: a running evaluation's `Frame`, LRU order and snapshot
history exist only while needed.

`clean` is what makes revalidation after an unrelated change O(1). Invariant: a clean
memo is valid at its view's current revision, and every query it depends on is clean.
A mutation marks every memo that transitively depends on the changed input as not clean
(push), and a read of a clean memo needs no walk at all (pull). A memoized error is a
memo like any other: clean, revalidated and backdated the same way.

The outside world. A memo whose evaluation read something picante cannot track
(`report_untracked_read`, a volatile query, a query of another database) has durability
`UNTRACKED`, below `LOW`, and is never clean. `View.last_changed[UNTRACKED]` is the
watermark list's last slot, which holds `NOW`: such a memo is valid at the revision it
was verified at, and never by durability after it, so it re-executes at the next
revision. A memo that read such a memo gets durability `LOW` (not `UNTRACKED`: it walks
to the untracked memo and re-executes only if that one's value changed), and every new
revision, a `refresh` too, moves `last_changed[LOW]`, so it never skips that walk.
"""

from __future__ import annotations

import enum
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Literal,
    NamedTuple,
    NewType,
    Protocol,
    TypeAlias,
    final,
)


if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType


__all__ = [
    "ABSENT",
    "EVICTED",
    "HIGHEST",
    "LOWEST",
    "NEVER",
    "NOW",
    "UNTRACKED",
    "Deps",
    "Durability",
    "EqFn",
    "Failure",
    "Ingredient",
    "InputCell",
    "InputLike",
    "InternId",
    "InternTable",
    "Lru",
    "MemoState",
    "QueryCell",
    "QueryLike",
    "Revision",
    "Tally",
    "TraceExecuted",
    "TraceInput",
    "TraceInvalidated",
    "TraceRecord",
    "TraceRevision",
    "add_dependent",
    "default_eq",
    "dependents_of",
    "deps_of",
    "discard_dependent",
    "errors_equal",
    "pack_deps",
    "sizeof",
    "unpack_deps",
    "watermarks",
]

InternId = NewType("InternId", int)
"""The id of a value in an interned table: an `int`, stable for the table's lifetime."""

Revision: TypeAlias = int
"""A point in a view's timeline. A new database is at revision 0; each change adds 1."""

NEVER: Final = -1
"""The `verified_at` of a cell that has no memo yet."""


class Durability(enum.IntEnum):
    """
    How rarely an input changes; a hint that never changes results, only work.

    A memo whose dependencies all have durability ≥ D is revalidated in O(1) while no
    input of durability ≥ D has changed since it was last verified.
    """

    LOW = 0
    MEDIUM = 1
    HIGH = 2


HIGHEST: Final = Durability.HIGH
"""`Durability.HIGH`, read once: an enum attribute lookup costs tens of nanoseconds."""

LOWEST: Final = Durability.LOW
"""`Durability.LOW`, read once (see `HIGHEST`)."""

UNTRACKED: Final = -1
"""The durability of a memo that read the outside world (see the module docstring)."""

NOW: Final = sys.maxsize
"""`last_changed[UNTRACKED]`: later than any revision, so never `<= verified_at`."""


def watermarks() -> list[Revision]:
    """A new view's `last_changed`: one per durability, then `NOW` (its `UNTRACKED` slot)."""
    return [0] * len(Durability) + [NOW]


class _Absent:
    """The value of an input cell that has no value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


def default_eq(a: object, b: object) -> bool:
    """
    Decide whether *a* and *b* are equal for early cutoff: `a is b or a == b`.

    A raising `==`, or one that does not return a `bool` (numpy arrays), counts as "changed":
    the worst that can do is recompute more.
    """
    if a is b:
        return True
    try:
        result = a == b
    except Exception:  # noqa: BLE001 - any failure of a user's __eq__ means "changed"
        return False
    return result is True


def errors_equal(a: BaseException, b: BaseException) -> bool:
    """Decide whether two memoized errors are the same outcome: same type, equal args."""
    return type(a) is type(b) and default_eq(a.args, b.args)


class Failure:
    """A memoized exception and the traceback it was first raised with."""

    __slots__ = ("error", "traceback")

    def __init__(self, error: BaseException, traceback: TracebackType | None) -> None:
        self.error = error
        self.traceback = traceback

    def reraise(self) -> Any:
        """Raise the error again with its original traceback (so it does not grow)."""
        raise self.error.with_traceback(self.traceback)


class _Evicted:
    """The value of a memo whose value an LRU dropped; its bookkeeping stays."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EVICTED"


EVICTED: Final = _Evicted()


class MemoState(NamedTuple):
    """A memo as it was, valid from `verified_at` through `valid_through`."""

    verified_at: Revision
    valid_through: Revision
    value: Any
    failure: Failure | None
    changed_at: Revision
    durability: int
    deps: tuple[InputCell | QueryCell, ...]
    accumulated: Any = None
    """Its accumulated values and accumulating reads, if it has any (`_accumulate.Entry`)."""


Deps: TypeAlias = "tuple[InputCell | QueryCell, ...] | InputCell | QueryCell"
"""A memo's dependencies: a tuple, or the one record it read (`deps_of`, `pack_deps`)."""


def deps_of(cell: QueryCell) -> tuple[InputCell | QueryCell, ...]:
    """The records *cell* read, in first-read order."""
    return unpack_deps(cell.deps)


def unpack_deps(deps: Deps) -> tuple[InputCell | QueryCell, ...]:
    """Stored *deps* as a tuple (see `pack_deps`)."""
    return deps if type(deps) is tuple else (deps,)  # type: ignore[return-value]


def pack_deps(deps: tuple[InputCell | QueryCell, ...]) -> Deps:
    """*deps* as a memo stores them: a single record without its tuple."""
    return deps[0] if len(deps) == 1 else deps


Dependents: TypeAlias = "QueryCell | set[QueryCell] | None"
"""The memos that read a record: none, one (the common case, no set needed), or a set."""


def add_dependent(record: InputCell | QueryCell, memo: QueryCell) -> None:
    """Record that *memo* read *record*."""
    current = record.dependents
    if current is None or current is memo:
        record.dependents = memo
    elif type(current) is set:
        current.add(memo)
    else:
        record.dependents = {current, memo}  # type: ignore[arg-type]


def discard_dependent(record: InputCell | QueryCell, memo: QueryCell) -> None:
    """Forget that *memo* read *record*."""
    current = record.dependents
    if current is memo:
        record.dependents = None
    elif type(current) is set:
        current.discard(memo)


def dependents_of(record: InputCell | QueryCell) -> Iterable[QueryCell]:
    """The memos that read *record*."""
    current = record.dependents
    if current is None:
        return ()
    if type(current) is set:
        return current
    return (current,)  # type: ignore[return-value]


# -- ingredients: what the engine reads of a declaration, through its records ----------------

EqFn: TypeAlias = Callable[[Any, Any], bool]
"""An ingredient's equality: whether a new value is the same as the old (`eq=`)."""


class Ingredient(Protocol):
    """
    What the engine reads of any declaration: the `ingredient` of a record (a cell).

    The declarations (`_ingredients.InputIngredient`, `QueryIngredient`), a layer above,
    satisfy these protocols structurally; everything below them sees only the protocols.
    Read-only: the engine never writes to a declaration.
    """

    @property
    def name(self) -> str:
        """Its attribute name: the name of its table in a view (`words`)."""
        ...

    @property
    def qualname(self) -> str:
        """`Owner.name`, for messages (`Site.words`)."""
        ...

    @property
    def kind(self) -> str:
        """`"input"`, `"query"` or `"interned"`."""
        ...


class InputLike(Ingredient, Protocol):
    """What the engine reads of an input's declaration: `InputCell.ingredient`."""

    @property
    def eq(self) -> EqFn:
        """Whether a value set is equal to the current one (then the set is a no-op)."""
        ...

    @property
    def durability(self) -> Durability:
        """The declared durability, which its readers' memos inherit."""
        ...

    @property
    def persist(self) -> bool:
        """Whether cache files keep its values."""
        ...


class QueryLike(Ingredient, Protocol):
    """What the engine reads of a query's declaration: `QueryCell.ingredient`."""

    @property
    def fn(self) -> Callable[..., Any]:
        """The body: `async def words(self, path)`, called as `fn(db, *key)`."""
        ...

    @property
    def eq(self) -> EqFn:
        """Whether a new value equals the memo's (early cutoff)."""
        ...

    @property
    def eq_option(self) -> EqFn | Literal[False] | None:
        """The declared `eq=`: `False` means every new value is a change."""
        ...

    @property
    def persist(self) -> bool:
        """Whether cache files keep its memos."""
        ...

    @property
    def volatile(self) -> bool:
        """Whether it reads the outside world: re-executed at every new revision."""
        ...

    @property
    def share(self) -> bool:
        """Whether its results go through the shared stores (`picante.share`)."""
        ...

    @property
    def cycle(self) -> bool:
        """Whether it resolves the cycles it heads (`cycle_initial=` or `cycle_fallback=`)."""
        ...

    @property
    def cycle_initial(self) -> Callable[..., Any] | None:
        """The fixpoint's first provisional value: `cycle_initial(db, *key)`."""
        ...

    @property
    def cycle_fn(self) -> Callable[..., Any] | None:
        """Called after each iteration: `cycle_fn(db, iteration, previous, result, *key)`."""
        ...

    @property
    def cycle_fallback(self) -> Callable[..., Any] | None:
        """The value a re-entered head answers instead of iterating."""
        ...

    @property
    def max_iterations(self) -> int:
        """How many iterations a fixpoint may take before `CycleError`."""
        ...


@final
class InputCell:
    """One input record: its current value (or `ABSENT`) and who read it."""

    __slots__ = ("changed_at", "dependents", "history", "ingredient", "key", "size", "value")

    def __init__(
        self, ingredient: InputLike, key: tuple[object, ...], value: object, changed_at: Revision
    ) -> None:
        self.ingredient: Final = ingredient
        self.key = key
        # Commits write `changed_at` before `value`; readers read `value` before
        # `changed_at`. So a reader on another thread never pairs a new value with an old
        # stamp: if it saw the new value, it sees the new stamp and looks in `history`.
        self.value = value
        self.changed_at = changed_at
        # Accounted bytes of key and value (only tracked under `max_state_bytes`).
        self.size = 0
        self.dependents: Dependents = None
        # Older (changed_at, value) versions, newest last; kept only while an evaluation
        # bound to an older revision is running (see `View.keep_history`).
        self.history: list[tuple[Revision, object]] | None = None

    def version_at(self, revision: Revision) -> tuple[Revision, object]:
        """Return `(changed_at, value)` as it was at *revision*."""
        value = self.value
        changed_at = self.changed_at
        if changed_at <= revision:
            return changed_at, value
        for changed_at, value in reversed(self.history or ()):
            if changed_at <= revision:
                return changed_at, value
        # Older than any version kept: the cell did not exist, i.e. it was absent.
        return 0, ABSENT

    def __repr__(self) -> str:
        from ._errors import fmt_key

        return f"<InputCell {fmt_key(self.ingredient.name, self.key)} changed={self.changed_at}>"


@final
class QueryCell:
    """One query record: the memo and the bookkeeping that revalidates it."""

    __slots__ = (
        "changed_at",
        "clean",
        "dependents",
        "deps",
        "durability",
        "failure",
        "flight",
        "ingredient",
        "key",
        "value",
        "verified_at",
        "why",
    )

    def __init__(self, ingredient: QueryLike, key: tuple[object, ...]) -> None:
        self.ingredient: Final = ingredient
        self.key = key
        self.value: Any = None
        self.failure: Failure | None = None
        self.verified_at: Revision = NEVER
        self.changed_at: Revision = NEVER
        # A `Durability`, or `UNTRACKED`.
        self.durability: int = HIGHEST
        # What it read, in first-read order: one record stored as itself (no container for
        # the collector to walk: most memos read one), else a tuple. See `deps_of`.
        self.deps: Deps = ()
        self.dependents: Dependents = None
        self.clean = False
        # The evaluation in progress for the current revision, if any (a `Frame`).
        self.flight: Any = None
        # `why`: the state the memo last re-executed from, `(revision, verified_at, deps,
        # untracked, evicted)`, or `(revision, "adopted")` for a result taken from a
        # shared store (see `debug.explain`). Unset until it re-executes, so a first
        # execution does not pay for it: read it with `getattr(cell, "why", None)`.
        self.why: tuple[Any, ...]

    def state(self, valid_through: Revision) -> MemoState:
        """Capture the memo as a `MemoState` known valid up to *valid_through*."""
        return MemoState(
            self.verified_at,
            valid_through,
            self.value,
            self.failure,
            self.changed_at,
            self.durability,
            deps_of(self),
        )

    def __repr__(self) -> str:
        from ._errors import fmt_key

        return (
            f"<Memo {fmt_key(self.ingredient.name, self.key)}"
            f" verified={self.verified_at} changed={self.changed_at}>"
        )


@final
class Tally:
    """
    How one query's handle of one view was answered: `hits` from a valid memo, `misses`
    otherwise (revalidated, executed or followed); and how many of its values its LRU
    evicted. Counted always: three integers.
    """

    __slots__ = ("evicted", "hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.evicted = 0


class Lru:
    """
    The least-recently-used order of one query's memoized values, capped at *capacity*
    (`None`: no cap, but the order is kept, so that a cap set later starts from it).

    An `OrderedDict` used as an ordered set: a hit moves a cell to the end in O(1) without
    allocating, and the least recently used cell is at the front.
    """

    __slots__ = ("capacity", "order")

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.order: OrderedDict[QueryCell, None] = OrderedDict()

    def touch(self, cell: QueryCell) -> None:
        """
        Make *cell* (a memo with a value, so in the order unless it is a member of a
        resolved cycle, which is never evicted: `View.evict`) the most recently used.
        """
        try:  # noqa: SIM105 - an LRU hit: `suppress` costs a call and a with block
            self.order.move_to_end(cell)
        except KeyError:
            pass

    def add(self, cell: QueryCell) -> list[QueryCell] | tuple[()]:
        """Make *cell* the most recently used (adding it); return the cells to evict."""
        order = self.order
        order[cell] = None
        order.move_to_end(cell)
        if self.capacity is None or len(order) <= self.capacity:
            return ()
        return self.over()

    def over(self) -> list[QueryCell]:
        """Remove the least recently used cells beyond the capacity, and return them."""
        order = self.order
        excess = 0 if self.capacity is None else len(order) - self.capacity
        return [order.popitem(last=False)[0] for _ in range(excess)]

    def discard(self, cell: QueryCell) -> None:
        """Forget *cell* (its memo is gone)."""
        self.order.pop(cell, None)


class InternTable:
    """An append-only, value-deduplicating table: equal values share one id."""

    __slots__ = ("ids", "lock", "values")

    def __init__(self) -> None:
        # Keyed by (type, value) so that 1, 1.0 and True are three values, not one.
        self.ids: dict[tuple[type, object], int] = {}
        self.values: list[object] = []
        self.lock = threading.Lock()


_ATOMS = (str, bytes, int, float, complex, bool, type(None))


def sizeof(obj: object) -> int:
    """
    Estimate the bytes *obj* holds: `sys.getsizeof` of it and everything it reaches.

    Walks builtin containers, attrs and dataclass instances, `__dict__` and `__slots__`;
    an object reached twice counts once. Used for `max_state_bytes`.
    """
    total = 0
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, _ATOMS):
            continue
        if isinstance(item, dict):
            stack.extend(item.keys())  # pyright: ignore[reportUnknownArgumentType]
            stack.extend(item.values())  # pyright: ignore[reportUnknownArgumentType]
        elif isinstance(item, tuple | list | set | frozenset):
            stack.extend(item)  # pyright: ignore[reportUnknownArgumentType]
        elif not isinstance(item, type):
            attributes = getattr(item, "__dict__", None)
            if isinstance(attributes, dict):
                stack.append(attributes)  # pyright: ignore[reportUnknownArgumentType]
            for klass in type(item).__mro__:
                for slot in getattr(klass, "__slots__", ()):
                    if isinstance(slot, str) and slot not in ("__dict__", "__weakref__"):
                        value = getattr(item, slot, None)
                        if value is not None:
                            stack.append(value)
    return total


# -- trace records: what the runtime tells its listeners (`View.listeners`) -------------------


class TraceRevision(NamedTuple):
    """A commit published *revision*."""

    revision: Revision


class TraceInput(NamedTuple):
    """A commit set (or removed) an input."""

    revision: Revision
    ingredient: str
    key: tuple[object, ...]
    removed: bool


class TraceInvalidated(NamedTuple):
    """A commit changed *cause*, which the memo read, directly or not."""

    revision: Revision
    ingredient: str
    key: tuple[object, ...]
    cause: tuple[str, tuple[object, ...]]


class TraceExecuted(NamedTuple):
    """
    A query body ran at *revision* and its outcome was memoized (`picante.debug.Executed`).

    *first*: its first run; *changed*: its outcome differs from the memo's (always for a
    first run); *failed*: it raised; *seconds*: how long the body took.
    """

    revision: Revision
    ingredient: str
    key: tuple[object, ...]
    first: bool
    changed: bool
    failed: bool
    seconds: float


TraceRecord: TypeAlias = TraceRevision | TraceInput | TraceInvalidated | TraceExecuted
"""Every record the trace hook delivers (`View.subscribe`)."""
