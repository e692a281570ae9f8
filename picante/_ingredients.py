"""
Ingredients at instance time: the descriptors `@picante.input`, `@picante.query` and
`picante.interned` produce, the handles they give on an instance (`db.source`,
`db.words`, `db.labels`), and key normalization (`KeySpec`).

The hot path is not here but in `_handles`: `db.words` is a method generated from the
declared signature, whose cached hit never comes back to this module. A descriptor makes
the handle on first access (`make_handle`: the generated code is compiled once per
ingredient and kind, then bound to the instance's view) and stores it in the instance's
`__dict__` under its own name, so later accesses are plain attribute reads. What runs
here is the slower rest: the synchronous input operations (`get`, `set`, `remove`),
interning, and `KeySpec.normalize` for the calls the generated signature does not take
(`debug.explain`, `picante.accumulated`, an input's `get` and `set`).
"""

from __future__ import annotations

import functools
import typing
from types import MethodType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Literal,
    NamedTuple,
    ParamSpec,
    Protocol,
    Self,
    TypeAlias,
    TypeVar,
    TypeVarTuple,
    cast,
    overload,
    runtime_checkable,
)

from ._errors import UsageError, describe
from ._frames import ACTIVE
from ._handles import compile_factory, instantiate
from ._runtime import BoundHandle, View, spec_of, view_of
from ._store import (
    ABSENT,
    EVICTED,
    NEVER,
    Durability,
    EqFn,
    InputCell,
    InternId,
    Lru,
    QueryCell,
    default_eq,
)


if TYPE_CHECKING:
    import inspect
    from collections.abc import Callable, Coroutine

    from ._frames import Frame
    from ._handles import Factory
    from ._store import InputLike, QueryLike, Revision


__all__ = [
    "AnyInput",
    "BoundInput",
    "BoundInterned",
    "BoundQuery",
    "CacheInfo",
    "EqFn",
    "InputIngredient",
    "InternedIngredient",
    "KeySpec",
    "QueryIngredient",
    "never_equal",
    "set_lru",
]

D = TypeVar("D")
P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")
# The key types of an input, one per key parameter: what `set` and `get` take positionally.
Ks = TypeVarTuple("Ks")


def never_equal(a: object, b: object) -> bool:
    """The equality of `eq=False`: every new value counts as a change."""
    return False


class KeySpec:
    """How the arguments of a call become a record's key: the bound arguments, in order."""

    __slots__ = ("defaults", "names", "qualname", "required", "signature", "size")

    def __init__(self, qualname: str, signature: inspect.Signature) -> None:
        self.qualname = qualname
        # The signature without `self`, used to bind keywords and word errors like Python.
        self.signature = signature
        params = list(signature.parameters.values())
        self.names = tuple(p.name for p in params)
        self.size = len(params)
        self.defaults = tuple(p.default for p in params if p.default is not p.empty)
        self.required = self.size - len(self.defaults)

    def normalize(self, args: tuple[object, ...], kwargs: dict[str, object]) -> tuple[object, ...]:
        """Return the key for a call with *args* and *kwargs*: defaults applied, keywords bound."""
        if not kwargs:
            count = len(args)
            if count == self.size:
                return args
            if self.required <= count < self.size:
                return args + self.defaults[count - self.required :]
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            msg = f"{self.qualname}(): {error}"
            raise TypeError(msg) from None
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def unhashable(self, key: tuple[object, ...]) -> TypeError:
        """Build the error for a key that cannot be hashed, naming the parameter."""
        for name, value in zip(self.names, key, strict=True):
            try:
                hash(value)
            except TypeError:
                msg = (
                    f"{self.qualname}(): argument {name!r} must be hashable to be part of "
                    f"a key, got {type(value).__qualname__}"
                )
                return TypeError(msg)
        return TypeError(f"{self.qualname}(): the key {key!r} is not hashable")


class _Named:
    """A class attribute that knows its name and owner, for messages: `Site.words`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: type | None = None

    @property
    def qualname(self) -> str:
        """`Owner.name`, as used in messages."""
        owner = self.owner.__name__ if self.owner is not None else "<unbound>"
        return f"{owner}.{self.name}"

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner = owner
        self.name = name


class _Ingredient(_Named):
    """What inputs and queries share: a name, an owner, a function and its key spec."""

    kind = "ingredient"

    def __init__(self, fn: Callable[..., Any], eq: EqFn | Literal[False] | None) -> None:
        self.fn = fn
        self.eq_option: EqFn | Literal[False] | None = eq
        self.eq: EqFn = default_eq if eq is None else never_equal if eq is False else eq
        super().__init__(getattr(fn, "__name__", "<ingredient>"))
        self.spec: KeySpec | None = None
        # The compiled handle factories, by kind ("query", "lru" with LRU touches, "input").
        self._factories: dict[str, Factory] = {}
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def type_hints(self) -> dict[str, Any]:
        """Resolve the annotations now (they are not needed, hence not resolved, earlier)."""
        return typing.get_type_hints(self.fn)

    def key_types(self) -> tuple[Any, ...]:
        """The resolved types of the key parameters, in order."""
        hints = self.type_hints()
        return tuple(hints[name] for name in self.key_spec().names)

    def value_type(self) -> Any:
        """The resolved type of the value."""
        return self.type_hints()["return"]

    def make_handle(self, view: View, lru: Lru | None) -> MethodType:
        """Make this ingredient's handle for *view* from its compiled factory."""
        spec = self.key_spec()
        kind = self.kind if lru is None else "lru"
        factory = self._factories.get(kind)
        if factory is None:
            factory = compile_factory(kind, self.name, spec.signature, spec.unhashable)
            self._factories[kind] = factory
        handle = instantiate(
            factory, view, self, lru=lru, defaults=spec.defaults, qualname=self.qualname
        )
        if kind != "input":
            # Read through the bound method: `db.words.cache_info()`.
            handle.__func__.cache_info = functools.partial(  # type: ignore[attr-defined]
                _cache_info, view, self.name
            )
        return handle

    def _registered_on(self, instance: object) -> bool:
        """Tell whether this is the ingredient *instance*'s class registered under its name."""
        try:
            spec = spec_of(type(instance))
        except AttributeError:
            return True  # not a database class: `key_spec` says so when the handle is made
        return spec.ingredients.get(self.name) is self

    def key_spec(self) -> KeySpec:
        """The key spec, built when the owning class became a database."""
        if self.spec is None:
            msg = (
                f"{self.qualname}: the class is not a database; decorate it with @picante.database"
            )
            raise UsageError(msg)
        return self.spec

    def __repr__(self) -> str:
        return f"<{self.kind} {self.qualname}>"


class InputIngredient(_Ingredient, Generic[D, P, R, *Ks]):
    """
    A declared input: `@picante.input async def source(self, path: str) -> str`.

    Accessed on a database instance it gives a `BoundInput`. For type checkers it is
    generic in the database class *D*, the key parameters *P* (names, defaults and all),
    the value type *R* and the key types *Ks* (positional, one per parameter).
    """

    kind = "input"

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        durability: Durability = Durability.LOW,
        eq: EqFn | Literal[False] | None = None,
        persist: bool = True,
    ) -> None:
        super().__init__(fn, eq)
        self.durability = durability
        self.persist = persist

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: D, owner: type[Any] | None = None) -> BoundInput[P, R, *Ks]: ...
    def __get__(
        self, instance: D | None, owner: type[Any] | None = None
    ) -> Self | BoundInput[P, R, *Ks]:
        if instance is None:
            return self
        view = view_of(instance)
        handle = self.make_handle(view, None)
        ops = _InputOps(self, view)
        function: Any = handle.__func__
        function.get, function.set, function.remove = ops.get, ops.set, ops.remove
        if self._registered_on(instance):
            # Not for `super().source`: the instance keeps its own class's handle.
            vars(instance)[self.name] = handle
        return cast("BoundInput[P, R, *Ks]", handle)


AnyInput: TypeAlias = "InputIngredient[Any, Any, Any, *tuple[Any, ...]]"
"""An input of any declaration (a bare `InputIngredient[Any, Any, Any]` has no key types)."""


class QueryIngredient(_Ingredient, Generic[D, P, R]):
    """
    A declared query: `@picante.query async def words(self, path: str) -> int: ...`.

    Accessed on a database instance it gives a `BoundQuery`.
    """

    kind = "query"

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        lru: int | None = None,
        eq: EqFn | Literal[False] | None = None,
        persist: bool = True,
        version: str | int | None = None,
        volatile: bool = False,
        share: bool | None = None,
        cycle_initial: Callable[..., Any] | None = None,
        cycle_fn: Callable[..., Any] | None = None,
        max_iterations: int = 200,
        cycle_fallback: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(fn, eq)
        self.lru = lru
        self.persist = persist
        self.version = version
        self.volatile = volatile
        self.share_option = share
        self.cycle_initial = cycle_initial
        self.cycle_fn = cycle_fn
        self.max_iterations = max_iterations
        self.cycle_fallback = cycle_fallback
        # Whether it resolves the cycles it heads (`_cycles`): then its evaluations always
        # go through `execute`, which iterates them.
        self.cycle = cycle_initial is not None or cycle_fallback is not None
        # Whether its results are shared (`picante.share`): never a volatile query's, nor
        # one whose values are not persisted (they have no portable bytes), nor one that
        # resolves cycles (its evaluations read provisional values).
        self.share = not self.cycle and (
            (persist and not volatile) if share is None else (share and persist and not volatile)
        )

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: D, owner: type[Any] | None = None) -> BoundQuery[P, R]: ...
    def __get__(
        self, instance: D | None, owner: type[Any] | None = None
    ) -> Self | BoundQuery[P, R]:
        if instance is None:
            return self
        if not self._registered_on(instance):
            # `super().words` in an override (or `Base.words.__get__(db)`): the class
            # registered another ingredient under this name. Give the base implementation
            # itself, run inline: its reads belong to the query that calls it.
            return cast("BoundQuery[P, R]", MethodType(self.fn, instance))
        view = view_of(instance)
        handle = self.make_handle(view, view.lrus.get(self.name))
        vars(instance)[self.name] = handle
        return cast("BoundQuery[P, R]", handle)


class CacheInfo(NamedTuple):
    """
    How a query of one database instance was answered: `db.words.cache_info()`.

    The first four fields are `functools.lru_cache`'s: `hits`, reads answered at once
    from a valid memo; `misses`, the other reads (the memo was revalidated, recomputed,
    or waited for); `maxsize`, the LRU capacity (`None`: unbounded); `currsize`, the memos
    holding a value or an error. Then `evicted`: values the LRU dropped. Reads from a
    snapshot count in the snapshot's own handle.
    """

    hits: int
    misses: int
    maxsize: int | None
    currsize: int
    evicted: int


def _cache_info(view: View, name: str) -> CacheInfo:
    tally = view.tally(name)
    lru = view.lrus.get(name)
    memos = sum(
        1
        for cell in list(view.table(name).values())
        if cell.verified_at != NEVER and cell.value is not EVICTED
    )
    return CacheInfo(
        tally.hits, tally.misses, None if lru is None else lru.capacity, memos, tally.evicted
    )


@runtime_checkable
class BoundQuery(Protocol[P, R_co]):
    """
    A query of one database instance: `db.words`.

    `await db.words("a.md")` returns the value at the current revision, memoized. At run
    time this is a method (generated from the declaration) bound to the database's view.
    """

    # Typed as the base class: checkers would apply the descriptor's __get__ to a
    # `QueryIngredient` attribute of a protocol.
    ingredient: _Ingredient
    """The declaration this handle is bound from."""

    # `object, None` rather than `Any, Any`: with an explicit `Any` in the arguments, mypy
    # cannot pick `gather`'s tuple overloads (`await picante.gather(db.a(), db.b())`).
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[object, None, R_co]: ...

    def cache_info(self) -> CacheInfo:
        """How this query's reads were answered, as `functools.lru_cache` reports it."""
        ...


@runtime_checkable
class BoundInput(Protocol[P, R, *Ks]):
    """
    An input of one database instance: `db.source`.

    `await db.source(k)` reads (raising `MissingInputError` when absent),
    `db.source.get(k)` reads synchronously, `db.source.set(k, v)` and
    `db.source.remove(k)` mutate. Reads inside a running query, absent ones included, are
    recorded as dependencies of that query.

    For type checkers, `BoundInput[P, R, *Ks]` is typed from the declaration: *P* are the
    key parameters (calls and `remove` take them as the method does, keywords and
    defaults included), *R* the value type, and *Ks* the key types, which `get` and `set`
    take positionally, every one of them: `db.source` of
    `async def source(self, path: str) -> str` is a `BoundInput[[str], str, str]`.
    """

    ingredient: _Ingredient
    """The declaration this handle is bound from."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[object, None, R]: ...

    @overload
    def get(self, *key: *Ks) -> R | None: ...
    @overload
    def get(self, *key: *Ks, default: T) -> R | T: ...
    def get(self, *key: *Ks, default: object = None) -> object:
        """Return the value of *key*, or *default* if it is absent (synchronous)."""
        ...

    def set(self, *key_and_value: *tuple[*Ks, R]) -> Revision:
        """
        Set the value of a key: `db.source.set("a.md", "text")` (the value comes last).

        Setting a value equal to the current one (by the input's `eq`) is a no-op. Inside
        `picante.batch()` the change is deferred to the end of the block.

        Returns:
            The view's revision after the call.

        Raises:
            UsageError: Called from inside a running query.
            LimitExceededError: The change would exceed `max_state_bytes`.
        """
        ...

    def remove(self, *args: P.args, **kwargs: P.kwargs) -> Revision:
        """
        Remove the value of a key; a no-op if it is absent.

        Returns:
            The view's revision after the call.

        Raises:
            UsageError: Called from inside a running query.
        """
        ...


class _InputOps:
    """The synchronous operations of an input handle: `get`, `set`, `remove`."""

    __slots__ = ("_cells", "_ingredient", "_size", "_spec", "_view")

    def __init__(self, ingredient: AnyInput, view: View) -> None:
        self._ingredient = ingredient
        self._spec = ingredient.key_spec()
        self._size = self._spec.size
        self._view = view
        self._cells: dict[tuple[object, ...], InputCell] = view.table(ingredient.name)

    def _key(self, args: tuple[object, ...], kwargs: dict[str, object]) -> tuple[object, ...]:
        key = args if not kwargs and len(args) == self._size else self._spec.normalize(args, kwargs)
        try:
            hash(key)
        except TypeError:
            raise self._spec.unhashable(key) from None
        return key

    def get(self, *key: object, default: object = None) -> object:
        cell_key = self._key(key, {})
        view = self._view
        cell = self._cells.get(cell_key)
        frame: Frame | None = ACTIVE.get()
        if frame is None or frame.view is not view:
            if frame is not None:
                # An input of another database (or view): an untracked read.
                frame.untracked = True
            if cell is not None:
                value = cell.value
            elif view.parent is None:
                value = ABSENT
            else:
                value = view.inherited(self._ingredient.name, cell_key)[1]
        else:
            if cell is None:
                cell = view.materialize_input(self._cells, self._ingredient, cell_key)
            frame.deps[cell] = None
            value = cell.value
            if cell.changed_at > frame.revision:
                value = cell.version_at(frame.revision)[1]
        return default if value is ABSENT else value

    def set(self, *key_and_value: object, **key: object) -> Revision:
        if not key_and_value:
            msg = f"{self._ingredient.qualname}.set() needs the value as its last argument"
            raise TypeError(msg)
        cell_key = self._key(key_and_value[:-1], key)
        return self._view.mutate(self._cells, self._ingredient, cell_key, key_and_value[-1])

    def remove(self, *key: object, **kwargs: object) -> Revision:
        return self._view.mutate(self._cells, self._ingredient, self._key(key, kwargs), ABSENT)


class InternedIngredient(_Named, Generic[T]):
    """
    A declared interned table: `labels = picante.interned(str)`.

    Accessed on a database instance it gives a `BoundInterned`.
    """

    kind = "interned"

    def __init__(self, value_type: type[T] | Any) -> None:
        super().__init__("<interned>")
        self.value_type = value_type

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> BoundInterned[T]: ...
    def __get__(
        self, instance: object | None, owner: type[Any] | None = None
    ) -> Self | BoundInterned[T]:
        if instance is None:
            return self
        bound: BoundInterned[T] = BoundInterned(self, view_of(instance))
        vars(instance)[self.name] = bound
        return bound

    def __repr__(self) -> str:
        return f"<interned {self.qualname}>"


class BoundInterned(BoundHandle, Generic[T]):
    """
    An interned table as seen from one database instance: `db.labels`.

    The table is shared by the database and all its snapshots, and only grows: equal
    values get the same `InternId`, ids never change, and interning never moves a
    revision. Reading an interned value is not a dependency, because it cannot change.
    """

    __slots__ = ("_table", "_view", "ingredient")

    def __init__(self, ingredient: InternedIngredient[T], view: View) -> None:
        self.ingredient: Final = ingredient
        self._view = view
        self._table = view.family.intern_table(ingredient.name)

    def intern(self, value: T) -> InternId:
        """
        Return the id of *value*, adding it to the table if no equal value is there.

        Values are equal when they have the same type and compare equal, so `1`, `1.0`
        and `True` get three ids.

        Raises:
            TypeError: *value* is not hashable.
            LimitExceededError: Adding it would exceed the database's `max_state_bytes`.
        """
        table = self._table
        key = (type(value), value)
        try:
            found = table.ids.get(key)
        except TypeError:
            msg = f"{self.ingredient.qualname}.intern(): {type(value).__qualname__} is not hashable"
            raise TypeError(msg) from None
        if found is not None:
            return cast("InternId", found)
        with table.lock:
            found = table.ids.get(key)
            if found is None:
                self._view.account_interned(self.ingredient.name, value)
                found = len(table.values)
                table.values.append(value)
                table.ids[key] = found
        return cast("InternId", found)

    def lookup(self, id: InternId) -> T:  # noqa: A002 - the natural name
        """
        Return the value behind *id*.

        Raises:
            LookupError: No value of this table has this id.
        """
        values = self._table.values
        if type(id) is not int or not 0 <= id < len(values):
            msg = f"{self.ingredient.qualname}.lookup(): no interned value has the id {id!r}"
            raise LookupError(msg)
        return cast("T", values[id])

    def __len__(self) -> int:
        return len(self._table.values)

    def __repr__(self) -> str:
        return f"<interned {self.ingredient.qualname}: {len(self)} values>"


def set_lru(query: BoundQuery[..., Any], capacity: int | None) -> None:
    """
    Cap the memoized values of *query* (`db.words`) at *capacity* from now on.

    Takes effect at once: the least recently used values beyond *capacity* are evicted
    (their bookkeeping stays, as with `lru=`: an evicted memo re-executes when read, and
    the memos that read it stay valid). `None` lifts the cap. The capacity belongs to the
    database instance (a snapshot taken later starts with it); other instances keep the
    declared `lru=`. Handles fetched before a first cap (`h = db.words`) still work, but
    their hits do not count as uses: fetch `db.words` again. Members of a resolved cycle
    are never evicted (see the Cycles guide).

    Raises:
        UsageError: *query* is not a query of a database instance, or *capacity* is not
            a positive int or `None`.
    """
    ingredient = getattr(query, "ingredient", None)
    view = getattr(query, "__self__", None)
    if not isinstance(ingredient, QueryIngredient) or not isinstance(view, View):
        msg = (
            f"set_lru(): expected a query of a database instance (db.words), got {describe(query)}"
        )
        raise UsageError(msg)
    if capacity is not None and (type(capacity) is not int or capacity < 1):
        msg = (
            f"set_lru({ingredient.qualname}): capacity must be a positive int or None, "
            f"got {capacity!r}"
        )
        raise UsageError(msg)
    name = ingredient.name
    with view.lock:
        lru = view.lrus.get(name)
        if lru is None:
            if capacity is None:
                return
            # Uncapped while the values memoized so far join it, in table order (no use
            # has been counted yet); the cap below then evicts the oldest.
            lru = view.lrus[name] = Lru(None)
            for cell in view.table(name).values():
                if type(cell) is QueryCell and cell.verified_at >= 0:
                    view.track_lru(cell)
            if name in vars(view.db):
                # The instance's handle, with the LRU touch on hits from now on.
                vars(view.db)[name] = ingredient.make_handle(view, lru)
        lru.capacity = capacity
        view.evict(name, lru.over())


if TYPE_CHECKING:

    def engine_view(
        source: AnyInput, words: QueryIngredient[Any, Any, Any]
    ) -> tuple[InputLike, QueryLike]:
        """Checked, never run: the declarations are what the engine reads of them."""
        return source, words
