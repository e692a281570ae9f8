"""
Declarations at class time: `@picante.database`, `@picante.input` and `@picante.query`.

`@picante.input` and `@picante.query` only wrap the function in an ingredient descriptor;
`@picante.database` does the work when the class is created: it collects the
ingredients of the class and its bases into a registry (`cls.__picante__`), validates
every declaration, raising `UsageError("Site.words: ...")` on the first problem, and
hooks `__init_subclass__` so that subclasses, decorated again or not, get a registry of
their own. Annotations are checked for presence only; they are resolved when something
needs the types (persistence), so forward references work.
"""

from __future__ import annotations

import dis
import inspect
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Literal,
    ParamSpec,
    Protocol,
    TypeAlias,
    TypeVar,
    TypeVarTuple,
    overload,
)

from ._accumulate import Accumulator
from ._errors import UsageError, describe
from ._handles import RESERVED_PREFIX
from ._ingredients import (
    EqFn,
    InputIngredient,
    InternedIngredient,
    KeySpec,
    QueryIngredient,
)
from ._store import Durability


if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Coroutine, Mapping

    import cattrs

    from ._accumulate import Accumulations
    from ._codecs import Codec
    from ._ingredients import AnyInput


__all__ = ["DatabaseSpec", "database", "input", "interned", "query"]

C = TypeVar("C", bound=type)
D = TypeVar("D")
D_contra = TypeVar("D_contra", contravariant=True)
T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
Ks = TypeVarTuple("Ks")

_RESERVED = "__picante__"
_Ingredient: TypeAlias = "AnyInput | QueryIngredient[Any, Any, Any] | InternedIngredient[Any]"


class DatabaseSpec:
    """The ingredient registry of one database class, at `cls.__picante__`."""

    __slots__ = (
        "accumulator",
        "cls",
        "codecs",
        "converter",
        "ingredients",
        "max_state_bytes",
        "name",
    )

    def __init__(
        self,
        cls: type,
        ingredients: Mapping[str, _Ingredient],
        max_state_bytes: int | None,
        converter: Any = None,
        name: str | None = None,
        *,
        accumulates: Any = None,
    ) -> None:
        self.cls = cls
        self.ingredients = dict(ingredients)
        self.max_state_bytes = max_state_bytes
        # The user's cattrs converter for cache files (`None`: picante's default one).
        self.converter = converter
        # The identity cache files record (`None`: from the module and qualified name).
        self.name = name
        # Built by `_codecs.codecs_of` on first save or load: per-ingredient codecs.
        self.codecs: dict[str, Codec] | None = None
        # The declared `accumulates=` type and the query collecting values (`_accumulate`).
        self.accumulator = None if accumulates is None else Accumulator(cls, accumulates)

    def accumulations(self) -> Accumulations | None:
        """What a new instance keeps of accumulated values (`None`: it accumulates nothing)."""
        return None if self.accumulator is None else self.accumulator.accumulations()

    @property
    def queries(self) -> dict[str, QueryIngredient[Any, Any, Any]]:
        """The queries, by name, in declaration order."""
        return {n: i for n, i in self.ingredients.items() if isinstance(i, QueryIngredient)}

    @property
    def lru_capacities(self) -> dict[str, int]:
        """The declared `lru=` of the queries that have one, by name."""
        return {n: q.lru for n, q in self.queries.items() if q.lru is not None}

    def __repr__(self) -> str:
        return f"<DatabaseSpec {self.cls.__qualname__}: {', '.join(self.ingredients)}>"


class _InputMethod(Protocol[D_contra, P, R_co, *Ks]):
    """
    An input's declaration, `async def source(self, path: str) -> str`, seen two ways.

    The same method matches both signatures, so a checker infers from it the key
    parameters *P* (names and defaults, for calls) and the key types *Ks* (positional,
    for `set(*key, value)`, whose trailing value no ParamSpec can express).
    """

    @overload
    def __call__(
        self, db: D_contra, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R_co]: ...
    @overload
    def __call__(self, db: D_contra, /, *key: *Ks) -> Coroutine[Any, Any, R_co]: ...


class _InputDecorator(Protocol):
    def __call__(self, fn: _InputMethod[D, P, R, *Ks], /) -> InputIngredient[D, P, R, *Ks]: ...


class _QueryDecorator(Protocol):
    def __call__(
        self, fn: Callable[Concatenate[D, P], Coroutine[Any, Any, R]], /
    ) -> QueryIngredient[D, P, R]: ...


@overload
def input(  # noqa: A001 - the public name is picante.input on purpose
    fn: _InputMethod[D, P, R, *Ks], /
) -> InputIngredient[D, P, R, *Ks]: ...
@overload
def input(  # noqa: A001
    *,
    durability: Durability = Durability.LOW,
    eq: EqFn | Literal[False] | None = None,
    persist: bool = True,
) -> _InputDecorator: ...
def input(  # noqa: A001
    fn: Callable[..., Any] | None = None,
    /,
    *,
    durability: Durability = Durability.LOW,
    eq: EqFn | Literal[False] | None = None,
    persist: bool = True,
) -> Any:
    """
    Declare an input: a value the program sets, keyed by the method's parameters.

    The body is never run: write `raise NotImplementedError`, which every type checker
    accepts for a method with a return type (`...`, `pass` or a docstring alone are
    accepted by picante too, but mypy reports them as `empty-body`). A body that does
    anything else is a `UsageError` at class creation. Use bare (`@picante.input`) or
    with options.

    Args:
        durability: How rarely the input changes (`Durability.LOW` by default). Memos
            that read only inputs of durability ≥ D are revalidated in O(1) while no such
            input changed.
        eq: A function `(old, new) -> bool` deciding whether a `set` is a no-op
            (default `a is b or a == b`); `False`: every `set` is a change.
        persist: Whether this input is written to cache files. With `False` it is left
            out entirely (for values that cannot be saved, or should not be): after a
            load it is absent until the program sets it, and the memos that read it are
            stale (they re-execute on first use, and keep their old value to backdate).

    Returns:
        The `InputIngredient`, a class attribute that reads as a `BoundInput` on an
        instance (`db.source`). Called with options only, a decorator that returns it.

    Examples:
        ```python
        @picante.input
        async def source(self, path: str) -> str:
            raise NotImplementedError

        @picante.input(durability=picante.Durability.HIGH)
        async def config(self) -> Config:
            raise NotImplementedError
        ```
    """

    def decorate(fn: Callable[..., Any]) -> AnyInput:
        _expect_method("input", fn)
        return InputIngredient(fn, durability=durability, eq=eq, persist=persist)

    return decorate if fn is None else decorate(fn)


@overload
def query(
    fn: Callable[Concatenate[D, P], Coroutine[Any, Any, R]], /
) -> QueryIngredient[D, P, R]: ...
@overload
def query(
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
) -> _QueryDecorator: ...
def query(
    fn: Callable[..., Any] | None = None,
    /,
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
) -> Any:
    """
    Declare a derived query: an `async def` method whose result picante memoizes.

    Every input and query the method reads while it runs (also from child tasks) is
    recorded; the memo is reused until one of them changes, and a recompute that yields
    an equal value does not recompute the queries that read this one (early cutoff).

    Args:
        lru: Keep at most this many memoized values of this query (per database
            instance; `picante.set_lru` changes it at run time).
        eq: A function `(old, new) -> bool` used for early cutoff (default
            `a is b or a == b`; an `==` that raises or does not return a `bool` counts
            as "changed"). `False`: every recompute is a change, for values without a
            usable `==` (`ast.Module`).
        persist: Whether the values of this query's memos are written to cache files. With
            `False`, the memos are saved without values (keys, revisions and dependencies
            only, so the key types must still be convertible): after a load they run
            again when read, while the memos that read them stay valid.
        version: A string or int that, when changed, makes the query's memos in a cache
            file re-execute on first use after a load.
        volatile: The query reads the outside world (a file's mtime, a clock, the
            network): its memo is valid only at the revision it was computed at, and it
            re-executes, once, at each later revision it is read at (`picante.refresh`
            opens one without changing an input). Its readers re-check it, and an equal
            value recomputes nothing more. Like calling `picante.report_untracked_read()`
            in every evaluation.
        share: Whether this query's results go to, and come from, the stores attached
            with `picante.share` (default: when it is persisted and not volatile). Say
            `False` for a query cheaper to run than to look up.
        cycle_initial: `(db, *key) -> value`: make this query resolve the cycles it
            heads by fixpoint iteration instead of raising `CycleError`. When its
            evaluation is re-entered (it needs its own value, directly or through other
            queries), the inner read returns this initial value, then each iteration's
            value; the body runs again until its value equals the previous one (`eq`).
            See the cycles guide.
        cycle_fn: `(db, iteration, previous, value, *key) -> value`: what an iteration's
            value becomes before it is compared and read by the next one (to join or
            widen; default: the value). Needs `cycle_initial`.
        max_iterations: Iterations before a fixpoint that does not converge raises
            `CycleError` (default 200).
        cycle_fallback: `(db, *key) -> value`: resolve the cycles this query is on
            with a fallback value: the inner read returns it, and the evaluation, once
            its body has run, takes it as its value. May be `async` (its reads are
            dependencies). Not with `cycle_initial`.

    Returns:
        The `QueryIngredient`, a class attribute that reads as a `BoundQuery` on an
        instance (`db.words`). Called with options only, a decorator that returns it.

    Examples:
        ```python
        @picante.query
        async def words(self, path: str) -> int:
            return len((await self.source(path)).split())
        ```
    """

    def decorate(fn: Callable[..., Any]) -> QueryIngredient[Any, Any, Any]:
        _expect_method("query", fn)
        _check_cycle_options(fn, cycle_initial, cycle_fn, max_iterations, cycle_fallback)
        if (cycle_initial is not None or cycle_fallback is not None) and (share or eq is False):
            option = "share=True" if share else "eq=False"
            why = (
                "its evaluations read provisional values"
                if share
                else "a fixpoint converges when two iterations are equal"
            )
            if share or cycle_initial is not None:
                msg = f"{getattr(fn, '__qualname__', 'query')}: {option} with cycle options ({why})"
                raise UsageError(msg)
        return QueryIngredient(
            fn,
            lru=lru,
            eq=eq,
            persist=persist,
            version=version,
            volatile=volatile,
            share=share,
            cycle_initial=cycle_initial,
            cycle_fn=cycle_fn,
            max_iterations=max_iterations,
            cycle_fallback=cycle_fallback,
        )

    return decorate if fn is None else decorate(fn)


def _check_cycle_options(
    fn: Callable[..., Any],
    initial: object,
    step: object,
    max_iterations: object,
    fallback: object,
) -> None:
    """Refuse cycle options that cannot work together, naming the query."""
    name = getattr(fn, "__qualname__", "query")
    for option, value in (
        ("cycle_initial", initial),
        ("cycle_fn", step),
        ("cycle_fallback", fallback),
    ):
        if value is not None and not callable(value):
            msg = f"{name}: {option} must be a function, got {describe(value)}"
            raise UsageError(msg)
    if step is not None and initial is None:
        msg = f"{name}: cycle_fn needs cycle_initial (the value the first iteration reads)"
        raise UsageError(msg)
    if fallback is not None and initial is not None:
        msg = f"{name}: a query resolves its cycles with cycle_initial or cycle_fallback, not both"
        raise UsageError(msg)
    if type(max_iterations) is not int or max_iterations < 1:
        msg = f"{name}: max_iterations must be an int >= 1, got {max_iterations!r}"
        raise UsageError(msg)


def _expect_method(decorator: str, fn: object) -> None:
    """Refuse what cannot be a method: `@picante.query(10)` (options are keyword-only)."""
    if not callable(fn):
        option = "durability=..." if decorator == "input" else "lru=..."
        msg = (
            f"@picante.{decorator} decorates an async def method, got {describe(fn)} "
            f"(options are keyword-only: @picante.{decorator}({option}))"
        )
        raise UsageError(msg)


def interned(value_type: type[T]) -> InternedIngredient[T]:
    """
    Declare an interned table of *value_type* values: `labels = picante.interned(str)`.

    `db.labels.intern(value)` returns a `picante.InternId` (an `int`); equal values get the
    same id, and `db.labels.lookup(id)` returns the value. The table only grows, never
    moves a revision, and is shared by a database and all its snapshots; a query that
    reads an interned value is never invalidated by it.
    """
    return InternedIngredient(value_type)


@overload
def database(cls: C, /) -> C: ...
@overload
def database(
    *,
    max_state_bytes: int | None = None,
    converter: cattrs.Converter | None = None,
    name: str | None = None,
    accumulates: type[Any] | types.UnionType | None = None,
) -> Callable[[C], C]: ...
def database(
    cls: C | None = None,
    /,
    *,
    max_state_bytes: int | None = None,
    converter: cattrs.Converter | None = None,
    name: str | None = None,
    accumulates: type[Any] | types.UnionType | None = None,
) -> C | Callable[[C], C]:
    """
    Make a class a picante database: collect and validate its ingredients.

    Every `@picante.input` and `@picante.query` attribute of the class and its bases
    becomes an ingredient named after the attribute. Subclasses are databases too; they
    inherit, add and override ingredients. In an overriding query, `super().name(...)`
    runs the base class's implementation inline: it is part of the override's
    evaluation (its reads are the override's dependencies), not a memo of its own. The
    class may define its own `__init__` without calling `super().__init__()`. The only
    name picante reserves is `__picante__`.

    Args:
        max_state_bytes: Bound the state: the keys and values of present inputs plus the
            interned values, each measured when it is set or interned as the deep
            `sys.getsizeof` of everything it reaches. A mutation, batch or intern that would
            go over raises `picante.LimitExceededError` and has no effect at all. Memos
            are not counted: `lru=` bounds those.
        converter: The `cattrs.Converter` that turns keys and values into JSON-ready data
            and back in cache files (`picante.save`, `picante.load`); register hooks on it
            for your own types. By default picante uses one made by
            `cattrs.preconf.orjson.make_converter()`, which handles attrs classes,
            dataclasses, enums, tuples, lists, dicts, `None` and the JSON scalars.
        name: The database's identity in cache files: a file written by a database of
            another name is refused. By default, the class's module and qualified name
            (`notes.Notes`), where a class defined in the script being run counts as in
            the module the script's file is named after (`python notes.py`: `notes`, not
            `__main__`), so the same class run as a script and imported finds its file.
            Give a name to keep a cache file when you move or rename the class. It is not
            inherited: a subclass is another database.
        accumulates: The type of the values its queries add with `picante.accumulate`
            (diagnostics, say), which `picante.accumulated` collects: a class, or a
            union of classes (`Error | Warning`). Cache files save them with the
            memos, through *converter*. Inherited by subclasses unless they declare
            their own.

    Raises:
        UsageError: A declaration is invalid: the message names the class, the method
            and the reason, e.g. `Site.words: must be declared with async def`.
    """

    if max_state_bytes is not None and (type(max_state_bytes) is not int or max_state_bytes < 1):
        msg = f"database(): max_state_bytes must be a positive int or None, got {max_state_bytes!r}"
        raise UsageError(msg)
    if converter is not None and not _is_converter(converter):
        msg = f"database(): converter must be a cattrs converter, got {converter!r}"
        raise UsageError(msg)
    if name is not None and (type(name) is not str or not name.strip()):
        msg = f"database(): name must be a non-empty str or None, got {describe(name)}"
        raise UsageError(msg)
    if accumulates is not None and not _is_accumulator_type(accumulates):
        msg = (
            "database(): accumulates must be a class or a union of classes "
            f"(Error | Warning), got {accumulates!r}"
        )
        raise UsageError(msg)

    def decorate(cls: C) -> C:
        if not _is_class(cls):
            msg = f"@picante.database decorates a class, got {describe(cls)}"
            raise UsageError(msg)
        _register(cls, max_state_bytes, converter, name, accumulates)
        hook = cls.__dict__.get("__init_subclass__")
        inherited = getattr(cls.__init_subclass__, "__func__", None)
        if not getattr(inherited, "picante_hook", False):
            _install_subclass_hook(cls, hook)
        return cls

    return decorate if cls is None else decorate(cls)


def _is_class(obj: object) -> bool:
    # A plain bool, not a TypeGuard: *obj* is a class for checkers, anything at run time.
    return isinstance(obj, type)


def _is_accumulator_type(obj: object) -> bool:
    """Whether *obj* is what `isinstance` takes, other than a tuple (say `A | B`)."""
    if isinstance(obj, tuple):
        return False
    try:
        isinstance(None, obj)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    except TypeError:
        return False
    return True


def _is_converter(obj: object) -> bool:
    # Imported here: most databases never persist.
    import cattrs

    return isinstance(obj, cattrs.BaseConverter)


def _install_subclass_hook(cls: type, own: Any) -> None:
    """Make every subclass of *cls* register its ingredients at creation."""

    def init_subclass(sub: Any, /, **kwargs: Any) -> None:
        if own is not None:
            own.__func__(sub, **kwargs)
        else:
            # mypy cannot see that the captured *cls* is a class.
            super(cls, sub).__init_subclass__(**kwargs)  # type: ignore[arg-type]
        _register(sub)

    init_subclass.picante_hook = True  # type: ignore[attr-defined]
    cls.__init_subclass__ = classmethod(init_subclass)  # type: ignore[assignment]


def _register(
    cls: type,
    max_state_bytes: int | None = None,
    converter: Any = None,
    identity: str | None = None,
    accumulates: Any = None,
) -> None:
    """
    Build, validate and store the registry of *cls* (options not given are inherited,
    except the *identity* its cache files record, its `name=`).
    """
    ingredients: dict[str, _Ingredient] = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            if isinstance(attr, InputIngredient | QueryIngredient | InternedIngredient):
                ingredients[name] = attr
            elif name in ingredients:
                # A plain attribute of a subclass shadows the inherited ingredient.
                del ingredients[name]
    own = cls.__dict__.get(_RESERVED)
    if own is not None and not isinstance(own, DatabaseSpec):
        msg = f"{cls.__name__}.{_RESERVED}: the name {_RESERVED} is reserved by picante"
        raise UsageError(msg)
    if not cls.__dictoffset__:
        msg = (
            f"{cls.__name__}: a database's instances need a __dict__ (picante keeps its "
            "state there, under __picante__): drop __slots__, or add '__dict__' to it"
        )
        raise UsageError(msg)
    for name, ingredient in ingredients.items():
        _validate(ingredient, name)
    inherited = getattr(cls, _RESERVED, None)
    if isinstance(inherited, DatabaseSpec):
        if max_state_bytes is None:
            max_state_bytes = inherited.max_state_bytes
        if converter is None:
            converter = inherited.converter
        if accumulates is None and inherited.accumulator is not None:
            accumulates = inherited.accumulator.kind
    spec = DatabaseSpec(
        cls, ingredients, max_state_bytes, converter, identity, accumulates=accumulates
    )
    cls.__picante__ = spec  # type: ignore[attr-defined]


def _validate(ingredient: _Ingredient, name: str) -> None:
    """Check one declaration; build its key spec. Raise `UsageError` naming it."""
    where = ingredient.qualname

    def fail(reason: str) -> UsageError:
        return UsageError(f"{where}: {reason}")

    if name == _RESERVED:
        msg = f"the name {_RESERVED} is reserved by picante"
        raise fail(msg)
    if isinstance(ingredient, InternedIngredient):
        return
    fn = ingredient.fn
    if not inspect.iscoroutinefunction(fn):
        msg = "must be declared with async def"
        raise fail(msg)
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if not params or params[0].kind not in (
        params[0].POSITIONAL_ONLY,
        params[0].POSITIONAL_OR_KEYWORD,
    ):
        msg = "must take self as its first parameter"
        raise fail(msg)
    for param in params[1:]:
        if param.kind is param.VAR_POSITIONAL:
            msg = f"*{param.name} is not supported; a key is a fixed list of parameters"
            raise fail(msg)
        if param.kind is param.VAR_KEYWORD:
            msg = f"**{param.name} is not supported; a key is a fixed list of parameters"
            raise fail(msg)
        if param.kind is param.KEYWORD_ONLY:
            msg = (
                f"keyword-only parameter {param.name!r} is not supported; "
                "key parameters are positional"
            )
            raise fail(msg)
        if param.name.startswith(RESERVED_PREFIX):
            msg = f"parameter {param.name!r}: names starting with {RESERVED_PREFIX} are reserved"
            raise fail(msg)
        if param.annotation is param.empty:
            msg = f"parameter {param.name!r} needs a type annotation"
            raise fail(msg)
    if signature.return_annotation is signature.empty:
        msg = "the return value needs a type annotation"
        raise fail(msg)
    if isinstance(ingredient, InputIngredient) and not _is_placeholder(fn):
        msg = (
            f"the body of an input is never run (its values are set with db.{name}.set(...)), "
            "so it must be empty: write `raise NotImplementedError` (or `...`), or make it a "
            "@picante.query if it computes its value"
        )
        raise fail(msg)
    _validate_options(ingredient, fail)
    ingredient.spec = KeySpec(where, signature.replace(parameters=params[1:]))


# Instructions that every function has, or that carry no work: skipped when reading a body.
_PLUMBING = frozenset(
    {"RESUME", "RETURN_GENERATOR", "POP_TOP", "NOP", "CACHE", "PRECALL", "PUSH_NULL"}
)


def _is_placeholder(fn: Callable[..., Any]) -> bool:
    """
    Tell whether *fn*'s body does nothing: `...`, `pass`, a docstring, `return None`, or
    `raise NotImplementedError` (called or not, with constant arguments), alone.

    Read from the bytecode, so that it works without the source (a REPL, `exec`). A
    function without code of its own (a wrapper object) is given the benefit of the doubt.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return True
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in _PLUMBING]
    if ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)]):
        return True
    if len(ops) < 2 or ops[-1][0] != "RAISE_VARARGS":
        return False
    name = ops[0][1] if isinstance(ops[0][1], str) else getattr(ops[0][1], "__name__", None)
    if name != "NotImplementedError":
        return False
    # `raise NotImplementedError(...)`: constant arguments, one call.
    middle = ops[1:-1]
    if middle and middle[-1][0] == "CALL":
        middle = middle[:-1]
    return all(op == "LOAD_CONST" for op, _ in middle)


def _validate_options(
    ingredient: AnyInput | QueryIngredient[Any, Any, Any],
    fail: Callable[[str], UsageError],
) -> None:
    eq = ingredient.eq_option
    if eq is not None and eq is not False and not callable(eq):
        msg = f"eq must be callable, False or None, got {eq!r}"
        raise fail(msg)
    if type(ingredient.persist) is not bool:
        msg = f"persist must be a bool, got {ingredient.persist!r}"
        raise fail(msg)
    if isinstance(ingredient, InputIngredient):
        durability = ingredient.durability
        if type(durability) is not Durability:
            msg = f"durability must be a picante.Durability, got {durability!r}"
            raise fail(msg)
        return
    lru = ingredient.lru
    if lru is not None and (type(lru) is not int or lru < 1):
        msg = f"lru must be a positive int or None, got {lru!r}"
        raise fail(msg)
    version = ingredient.version
    if version is not None and type(version) not in (str, int):
        msg = f"version must be a str, an int or None, got {version!r}"
        raise fail(msg)
    if type(ingredient.volatile) is not bool:
        msg = f"volatile must be a bool, got {ingredient.volatile!r}"
        raise fail(msg)
    if ingredient.share_option is not None and type(ingredient.share_option) is not bool:
        msg = f"share must be a bool or None, got {ingredient.share_option!r}"
        raise fail(msg)
    if ingredient.share_option and (not ingredient.persist or ingredient.volatile):
        msg = "share=True needs a persisted, non-volatile query (persist=True, volatile=False)"
        raise fail(msg)
