"""
Ingredients at instance time: the descriptors `@picante.input` and `@picante.query`
produce, the bound handles `db.source` and `db.words`, and key normalization.

The bound handles hold the hot path. A cached hit of `await db.words(k)` costs: one
`ContextVar.get`, one dict lookup, two attribute checks, and, inside a running query,
one dict store to record the read. No task, future or context change is made; the only
allocation is the coroutine object of the call itself. A descriptor stores the bound
handle in the instance's `__dict__` under its own name on first access, so later
accesses are plain attribute reads.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec, Self, TypeVar, cast, overload

from ._errors import MissingInputError, UsageError
from ._fetch import fetch
from ._frames import ACTIVE
from ._runtime import BoundHandle, view_of
from ._store import ABSENT, EVICTED, Durability, InputCell, InternId, QueryCell, default_eq


if TYPE_CHECKING:
    import inspect
    from collections.abc import Callable

    from ._frames import Frame
    from ._runtime import View
    from ._store import Revision


__all__ = [
    "BoundInput",
    "BoundInterned",
    "BoundQuery",
    "EqFn",
    "InputIngredient",
    "InternedIngredient",
    "KeySpec",
    "QueryIngredient",
]

D = TypeVar("D")
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

EqFn = typing.Callable[[Any, Any], bool]


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


class _Ingredient:
    """What inputs and queries share: a name, an owner, a function and its key spec."""

    kind = "ingredient"

    def __init__(self, fn: Callable[..., Any], eq: EqFn | None) -> None:
        self.fn = fn
        self.eq_option = eq
        self.eq: EqFn = default_eq if eq is None else eq
        self.name: str = getattr(fn, "__name__", "<ingredient>")
        self.owner: type | None = None
        self.spec: KeySpec | None = None
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    @property
    def qualname(self) -> str:
        """`Owner.name`, as used in messages."""
        owner = self.owner.__name__ if self.owner is not None else "<unbound>"
        return f"{owner}.{self.name}"

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner = owner
        self.name = name

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


class InputIngredient(_Ingredient, Generic[D, P, R]):
    """
    A declared input: `@picante.input async def source(self, path: str) -> str: ...`.

    Accessed on a database instance it gives a `BoundInput`.
    """

    kind = "input"

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        durability: Durability = Durability.LOW,
        eq: EqFn | None = None,
    ) -> None:
        super().__init__(fn, eq)
        self.durability = durability

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: D, owner: type[Any] | None = None) -> BoundInput[P, R]: ...
    def __get__(
        self, instance: D | None, owner: type[Any] | None = None
    ) -> Self | BoundInput[P, R]:
        if instance is None:
            return self
        bound: BoundInput[P, R] = BoundInput(self, view_of(instance))
        vars(instance)[self.name] = bound
        return bound


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
        eq: EqFn | None = None,
        persist: bool = True,
        version: str | int | None = None,
    ) -> None:
        super().__init__(fn, eq)
        self.lru = lru
        self.persist = persist
        self.version = version

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: D, owner: type[Any] | None = None) -> BoundQuery[P, R]: ...
    def __get__(
        self, instance: D | None, owner: type[Any] | None = None
    ) -> Self | BoundQuery[P, R]:
        if instance is None:
            return self
        bound: BoundQuery[P, R] = BoundQuery(self, view_of(instance))
        vars(instance)[self.name] = bound
        return bound


class BoundQuery(BoundHandle, Generic[P, R]):
    """
    A query of one database instance: `db.words`.

    `await db.words("a.md")` returns the value at the current revision, memoized.
    """

    __slots__ = ("_cells", "_lru", "_size", "_spec", "_view", "ingredient")

    def __init__(self, ingredient: QueryIngredient[Any, P, R], view: View) -> None:
        # A plain attribute, not a property: mypy would apply the descriptor's __get__ to a
        # property's value (python/mypy#13608).
        self.ingredient: Final = ingredient
        self._spec = ingredient.key_spec()
        self._size = self._spec.size
        self._view = view
        self._cells: dict[tuple[object, ...], QueryCell] = view.table(ingredient.name)
        self._lru = None if ingredient.lru is None else view.lru(ingredient.name, ingredient.lru)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = args if not kwargs and len(args) == self._size else self._spec.normalize(args, kwargs)
        try:
            cell = self._cells.get(key)
        except TypeError:
            raise self._spec.unhashable(key) from None
        view = self._view
        frame = ACTIVE.get()
        if cell is None:
            cell = self._cells.setdefault(key, QueryCell(self.ingredient, key))
        elif (cell.clean or cell.verified_at == view.revision) and (
            frame is None or (frame.view is view and frame.revision == view.revision)
        ):
            # The hot path: a memo valid now. Failures and evicted values go the slow way.
            value = cell.value
            if cell.failure is None and value is not EVICTED:
                if frame is not None:
                    frame.deps[cell] = None
                if self._lru is not None:
                    self._lru.touch(cell)
                return value  # type: ignore[no-any-return]
        if frame is not None and frame.view is not view:
            # A query of another database: an untracked read, fetched as from outside.
            frame = None
        return await fetch(view, cell, frame)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<bound query {self.ingredient.qualname} of {self._view!r}>"


class BoundInput(BoundHandle, Generic[P, R]):
    """
    An input of one database instance: `db.source`.

    `await db.source(k)` reads (raising `MissingInputError` when absent),
    `db.source.get(k)` reads synchronously, `db.source.set(k, v)` and
    `db.source.remove(k)` mutate. Reads inside a running query, absent ones included, are
    recorded as dependencies of that query.
    """

    __slots__ = ("_cells", "_size", "_spec", "_view", "ingredient")

    def __init__(self, ingredient: InputIngredient[Any, P, R], view: View) -> None:
        self.ingredient: Final = ingredient
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

    def _read(self, key: tuple[object, ...]) -> object:
        """Return the value (or `ABSENT`) of *key*, recording the read in a running query."""
        cell = self._cells.get(key)
        view = self._view
        frame: Frame | None = ACTIVE.get()
        if frame is None or frame.view is not view:
            if cell is not None:
                return cell.value
            return ABSENT if view.parent is None else view.inherited(self.ingredient.name, key)[1]
        if cell is None:
            # Absence is a dependency too: the cell is where a later `set` finds the reader.
            cell = view.materialize_input(self._cells, self.ingredient, key)
        frame.deps[cell] = None
        # The value before the stamp: see `InputCell.__init__`.
        value = cell.value
        if cell.changed_at <= frame.revision:
            return value
        return cell.version_at(frame.revision)[1]

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self._key(args, kwargs)
        value = self._read(key)
        if value is ABSENT:
            raise MissingInputError(self.ingredient.name, key)
        return value  # type: ignore[return-value]

    @overload
    def get(self, *key: object) -> R | None: ...
    @overload
    def get(self, *key: object, default: T) -> R | T: ...
    def get(self, *key: object, default: object = None) -> object:
        """Return the value of *key*, or *default* if it is absent (synchronous)."""
        value = self._read(self._key(key, {}))
        return default if value is ABSENT else value

    def set(self, *key_and_value: object, **key: object) -> Revision:
        """
        Set the value of a key: `db.source.set("a.md", "text")` (the value comes last).

        Setting a value equal to the current one (by the input's `eq`) is a no-op.

        Returns:
            The view's revision after the call.

        Raises:
            UsageError: Called from inside a running query.
        """
        if not key_and_value:
            msg = f"{self.ingredient.qualname}.set() needs the value as its last argument"
            raise TypeError(msg)
        cell_key = self._key(key_and_value[:-1], key)
        return self._view.mutate(self._cells, self.ingredient, cell_key, key_and_value[-1])

    def remove(self, *key: object, **kwargs: object) -> Revision:
        """
        Remove the value of a key; a no-op if it is absent.

        Returns:
            The view's revision after the call.

        Raises:
            UsageError: Called from inside a running query.
        """
        return self._view.mutate(self._cells, self.ingredient, self._key(key, kwargs), ABSENT)

    def __repr__(self) -> str:
        return f"<bound input {self.ingredient.qualname} of {self._view!r}>"


class InternedIngredient(Generic[T]):
    """
    A declared interned table: `labels = picante.interned(str)`.

    Accessed on a database instance it gives a `BoundInterned`.
    """

    kind = "interned"

    def __init__(self, value_type: type[T] | Any) -> None:
        self.value_type = value_type
        self.name = "<interned>"
        self.owner: type | None = None

    @property
    def qualname(self) -> str:
        """`Owner.name`, as used in messages."""
        owner = self.owner.__name__ if self.owner is not None else "<unbound>"
        return f"{owner}.{self.name}"

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner = owner
        self.name = name

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
