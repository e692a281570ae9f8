"""
Value codecs: how one database class's keys and values become JSON-ready data and back.

`codecs_of(cls)` builds, once per database class, a `Codec` per ingredient: its key and
value converters (cattrs hooks, or a plain type check for the types orjson writes and
reads back exactly) and its two fingerprints:

* the *schema* fingerprint: the annotated key and value types, attrs classes and
  dataclasses described field by field, recursively;
* the *code* fingerprint (queries only, `_fingerprints`): the function's instructions
  with their resolved arguments, nested code included, plus `version=`, plus the
  functions, classes and constants of your own code that it refers to, recursively; line
  numbers and docstrings do not count.

For the shared cache (issue 17), the canonical bytes of a key or value (`canonical_bytes`,
`canonical_key_bytes`: the same converter, with sets sorted and dict keys sorted), their
digest (`value_digest`), a record's key (`record_key`) and the default salt
(`default_salt`); all computed only when asked, never on a query's path.

Invariants: a dumper never returns what its loader would not read back identically (same
value, same types at every level; it raises `Mismatch` instead), a loader never returns a
value of another type than the annotation says (it raises instead), and two programs whose
fingerprints agree encode a section the same way.
Nothing here knows the file format or touches a database.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import reprlib
import sys
import types
import typing
from collections.abc import Callable, MutableSet, Set as AbstractSet
from pathlib import Path
from typing import Any, Final, cast

import attrs
import orjson

from ._errors import CacheError
from ._fingerprints import Fingerprinter, code_fingerprint
from ._runtime import spec_of


__all__ = [
    "Codec",
    "Mismatch",
    "canonical_bytes",
    "canonical_key_bytes",
    "code_fingerprint",
    "codecs_of",
    "database_name",
    "default_salt",
    "describe_type",
    "record_key",
    "value_digest",
]

_NATIVE: Final = frozenset({str, int, float, bool, type(None)})
"""Types orjson writes and reads back exactly: no cattrs hook needed."""
_NOT_PERSISTED: Final = "<values not persisted>"


# -- fingerprints -------------------------------------------------------------------------


def describe_type(tp: Any, seen: frozenset[int] = frozenset()) -> str:
    """
    Describe *tp* for a schema fingerprint: everything that decides how values are stored.

    attrs classes and dataclasses are described with their fields (recursively), so
    adding, removing or retyping a field changes the description; other classes by their
    qualified name; generic aliases by their origin and arguments.
    """
    if id(tp) in seen:
        return f"<recursive {getattr(tp, '__qualname__', tp)!r}>"
    seen |= {id(tp)}
    supertype = getattr(tp, "__supertype__", None)
    if supertype is not None:
        return f"NewType({tp.__name__}, {describe_type(supertype, seen)})"
    origin = typing.get_origin(tp)
    if origin is not None:
        args = ", ".join(
            "..." if arg is Ellipsis else describe_type(arg, seen) for arg in typing.get_args(tp)
        )
        return f"{describe_type(origin, seen)}[{args}]"
    if isinstance(tp, type):
        name = f"{tp.__module__}.{tp.__qualname__}"
        if attrs.has(tp):
            hints = typing.get_type_hints(tp)
            fields = ", ".join(
                f"{field.name}: {describe_type(hints.get(field.name, field.type), seen)}"
                for field in attrs.fields(tp)
            )
            return f"{name}({fields})"
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            fields = ", ".join(
                f"{field.name}: {describe_type(hints.get(field.name, field.type), seen)}"
                for field in dataclasses.fields(tp)
            )
            return f"{name}({fields})"
        return name
    return repr(tp)


def _schema_fingerprint(
    key_types: tuple[Any, ...], value_type: Any, accumulates: Any = None
) -> str:
    text = "(" + ", ".join(describe_type(t) for t in key_types) + ") -> "
    text += describe_type(value_type)
    if accumulates is not None:
        # A query of a database declared with `accumulates=`: its records hold those too.
        text += f" accumulating {describe_type(accumulates)}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# -- codecs ---------------------------------------------------------------------------------


_Dump = Callable[[object], object]
_KeyDump = Callable[[tuple[object, ...]], object]
_Load = Callable[[Any], object]
_Check = Callable[[object], bool]


@attrs.define(slots=True, eq=False)
class Codec:
    """How one ingredient's keys and values go to JSON-ready data and back."""

    ingredient: Any
    name: str
    where: str
    """`Class.name`, for messages."""
    kind: str
    schema: str
    code: str | None
    dump_key: Callable[[tuple[object, ...]], object]
    load_key: Callable[[Any], tuple[object, ...]]
    dump_value: Callable[[object], object]
    load_value: Callable[[Any], object]
    exact_key: type | None = None
    """The type of a one-part key that JSON holds as it is (not `float`): no dumping."""
    exact_value: type | None = None
    """The type of a value that JSON holds as it is (not `float`): no dumping."""
    key_types: tuple[Any, ...] = ()
    value_type: Any = None
    """The annotated value type, or `_NOT_PERSISTED` for a query with `persist=False`."""
    canonical: _Canonical | None = None
    """The class's canonical converter (shared by its codecs), for `canonical_bytes`."""
    canonical_dumps: tuple[_KeyDump | None, _Dump | None] | None = attrs.field(
        default=None, init=False
    )
    """The canonical key and value dumpers, built on first use (`None`: not shareable)."""
    dump_accumulated: _Dump | None = None
    """
    The dumper of a memo's accumulated values (a tuple of the database's `accumulates=`
    type), for a query of a database that declares one; else `None`.
    """
    load_accumulated: _Load | None = None


class Mismatch(TypeError):  # noqa: N818 - internal signal, turned into CacheError
    """A value `load` would not read back identically; the message says which and why."""


def _a(tp: Any) -> str:
    """*tp* as a noun for messages: `an int`, `a tuple[float, ...]`, `None`."""
    if tp is type(None):
        return "None"
    name = tp.__qualname__ if isinstance(tp, type) and not typing.get_args(tp) else repr(tp)
    name = name.replace("typing.", "")
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def _non_finite(raw: object) -> bool:
    """Whether JSON-ready *raw* holds a nan or an infinity (only called to word an error)."""
    if type(raw) is float:
        return not math.isfinite(raw)
    if isinstance(raw, list | tuple):
        return any(_non_finite(item) for item in cast("list[object]", raw))
    if isinstance(raw, dict):
        return any(_non_finite(item) for item in cast("dict[object, object]", raw).values())
    return False


def _mismatch(what: str, value: object, tp: Any, raw: object = None) -> Mismatch:
    why = " (JSON has no nan or infinity)" if _non_finite(raw) else ""
    return Mismatch(f"{what} {reprlib.repr(value)} is not {_a(tp)}{why}")


def _native_check(tp: Any) -> _Check | None:
    """
    An exact check for values of *tp* that orjson writes and cattrs reads back identically.

    Covers `int`, `float`, `str`, `bool`, `None` and tuples, lists, `dict[str, ...]` and
    unions of them; `None` for any other type (verified by a round trip instead). The
    checks are exact types: `True` is no `int` and `1` no `float` (both would load back
    as another type), and a float must be finite (JSON has no nan or infinity).
    """
    if tp is float:
        # inf - inf and nan - nan are nan: one subtraction tells a finite float.
        return lambda value: type(value) is float and value - value == 0.0
    if tp in _NATIVE:
        return lambda value: type(value) is tp
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _native_check(args[0])
        if item is None:
            return None
        return lambda value: type(value) is tuple and all(map(item, value))  # type: ignore[arg-type]
    if origin is tuple and args and Ellipsis not in args and args != ((),):
        items = [_native_check(arg) for arg in args]
        if any(check is None for check in items):
            return None
        checks = cast("list[_Check]", items)
        width = len(checks)

        def check_tuple(value: object) -> bool:
            if type(value) is not tuple:
                return False
            parts = cast("tuple[object, ...]", value)
            return len(parts) == width and all(
                check(part) for check, part in zip(checks, parts, strict=True)
            )

        return check_tuple
    if origin is list and len(args) == 1:
        item = _native_check(args[0])
        if item is None:
            return None
        return lambda value: type(value) is list and all(map(item, cast("list[object]", value)))
    if origin is dict and len(args) == 2 and args[0] is str:
        entry = _native_check(args[1])
        if entry is None:
            return None

        def check_dict(value: object) -> bool:
            if type(value) is not dict:
                return False
            entries = cast("dict[object, object]", value)
            return all(type(key) is str for key in entries) and all(map(entry, entries.values()))

        return check_dict
    if origin is typing.Union or origin is types.UnionType:
        members = [_native_check(arg) for arg in args]
        if any(check is None for check in members):
            return None
        alternatives = cast("list[_Check]", members)
        return lambda value: any(check(value) for check in alternatives)
    return None


def _same(mine: object, theirs: object) -> bool:
    """Whether *theirs* (loaded back) is *mine*: equal, with the same types at every level."""
    kind = type(mine)
    if kind is not type(theirs):
        return False
    if kind is float:
        # -0.0 == 0.0, yet the sign is kept by JSON and can be told apart.
        return mine == theirs and math.copysign(1.0, mine) == math.copysign(1.0, theirs)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        items = cast("list[object]", mine)
        others = cast("list[object]", theirs)
        return len(items) == len(others) and all(map(_same, items, others))
    if kind is dict:
        entries = cast("dict[object, object]", mine)
        others_d = cast("dict[object, object]", theirs)
        return len(entries) == len(others_d) and all(
            _same(key, other_key) and _same(value, other_value)
            for (key, value), (other_key, other_value) in zip(
                entries.items(), others_d.items(), strict=True
            )
        )
    if kind is set or kind is frozenset:
        members = cast("set[object]", mine)
        by_item = {item: item for item in cast("set[object]", theirs)}
        return len(members) == len(by_item) and all(
            item in by_item and _same(item, by_item[item]) for item in members
        )
    if attrs.has(kind):
        return all(
            _same(getattr(mine, field.name), getattr(theirs, field.name))
            for field in attrs.fields(kind)
        )
    if dataclasses.is_dataclass(kind):
        return all(
            _same(getattr(mine, field.name), getattr(theirs, field.name))
            for field in dataclasses.fields(kind)
        )
    if kind.__eq__ is object.__eq__:
        # Equality by identity cannot tell a faithful copy: the converter is trusted.
        return True
    equal: object = mine == theirs
    # A `==` that does not answer a bool (arrays) cannot tell either: trusted too.
    return equal is True or type(equal) is not bool


def _value_codec(converter: Any, tp: Any, what: str = "value") -> tuple[_Dump, _Load]:
    """
    The dumper and loader of values of *tp*.

    The dumper refuses (`Mismatch`) what would not load back identically: an exact type
    check where one decides (`_native_check`, cheap: P9 saves 200,000 records), else a
    round trip through JSON compared level by level (`_same`).
    """
    check = _native_check(tp)
    if tp in _NATIVE:
        assert check is not None  # _native_check covers every native type

        if tp is float:

            def dump_native(value: object) -> object:
                if check(value):
                    return value
                raise _mismatch(what, value, tp, value)

        else:

            def dump_native(value: object) -> object:
                # The check inlined: one call per record, as before there was a check.
                if type(value) is tp:
                    return value
                raise _mismatch(what, value, tp, value)

        def load_native(raw: Any) -> object:
            if type(raw) is not tp and not (tp is float and type(raw) is int):
                msg = f"expected {tp.__name__}, got {type(raw).__name__}"
                raise TypeError(msg)
            return float(raw) if tp is float else raw

        return dump_native, load_native
    unstructure = converter.get_unstructure_hook(tp)
    structure = converter.get_structure_hook(tp)
    if check is not None:

        def dump_checked(value: object) -> object:
            if check(value):
                return unstructure(value)
            raise _mismatch(what, value, tp, value)

        dump: _Dump = dump_checked
    else:

        def dump_round_trip(value: object) -> object:
            raw = unstructure(value)
            # Not a mismatch: a value orjson cannot write at all (the caller says so).
            encoded = orjson.dumps(raw)
            try:
                back = structure(orjson.loads(encoded), tp)
            except Exception as error:
                why = "JSON has no nan or infinity" if _non_finite(raw) else str(error)
                msg = f"{what} {reprlib.repr(value)} would not load back as {_a(tp)} ({why})"
                raise Mismatch(msg) from error
            if not _same(value, back):
                msg = (
                    f"{what} {reprlib.repr(value)} would load back as {reprlib.repr(back)}, "
                    f"not identical (as {_a(tp)})"
                )
                raise Mismatch(msg)
            return raw

        dump = dump_round_trip
    return dump, lambda raw: structure(raw, tp)


def _key_codec(
    converter: Any, key_types: tuple[Any, ...]
) -> tuple[Callable[[tuple[object, ...]], object], Callable[[Any], tuple[object, ...]]]:
    codecs = [_value_codec(converter, tp, "key") for tp in key_types]
    dumps = [dump for dump, _ in codecs]
    loads = [load for _, load in codecs]
    arity = len(key_types)

    def load_key(raw: object) -> tuple[object, ...]:
        if type(raw) is not list:
            msg = f"expected a key of {arity} parts, got {raw!r}"
            raise TypeError(msg)
        parts = cast("list[Any]", raw)  # type: ignore[redundant-cast]  # pyright needs it
        if len(parts) != arity:
            msg = f"expected a key of {arity} parts, got {parts!r}"
            raise TypeError(msg)
        return tuple(load(part) for load, part in zip(loads, parts, strict=True))

    if all(tp in _NATIVE for tp in key_types):
        # orjson writes a tuple as an array: nothing to convert, only types to check.
        return _native_key_dumper(key_types), _native_key_loader(key_types)

    def dump_key(key: tuple[object, ...]) -> object:
        return [dump(part) for dump, part in zip(dumps, key, strict=True)]

    return dump_key, load_key


def _native_key_dumper(key_types: tuple[type, ...]) -> Callable[[tuple[object, ...]], object]:
    """A key dumper for keys of exact JSON types: the key itself, once its types match."""
    checks = [_native_check(tp) for tp in key_types]
    what = "key"

    def dump_key(key: tuple[object, ...]) -> object:
        for check, part, tp in zip(checks, key, key_types, strict=True):
            if check is None or not check(part):
                raise _mismatch(what, part, tp, part)
        return key

    if len(key_types) == 1 and key_types[0] is not float:
        # The common case, one call: `type(key[0]) is only` (a float must also be finite).
        (only,) = key_types

        def dump_single(key: tuple[object, ...]) -> object:
            if type(key[0]) is only:
                return key
            return dump_key(key)

        return dump_single
    return dump_key


def _native_key_loader(key_types: tuple[type, ...]) -> Callable[[object], tuple[object, ...]]:
    """A key loader for keys of exact JSON types: a type check per part, no conversion."""

    def load_key(raw: object) -> tuple[object, ...]:
        if type(raw) is list:
            parts = cast("list[Any]", raw)  # type: ignore[redundant-cast]  # pyright needs it
            # One comparison of the parts' exact types (a shorter or longer key differs).
            if tuple(map(type, parts)) == key_types:
                return tuple(parts)
        msg = f"expected a key of types {key_types}, got {raw!r}"
        raise TypeError(msg)

    if len(key_types) == 1:
        (only,) = key_types

        def load_single(raw: object) -> tuple[object, ...]:
            if type(raw) is list and len(raw) == 1 and type(raw[0]) is only:  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
                return (raw[0],)  # pyright: ignore[reportUnknownVariableType]
            return load_key(raw)  # pyright: ignore[reportUnknownArgumentType]

        return load_single
    return load_key


def codecs_of(cls: type) -> dict[str, Codec]:
    """Build (once per class) the codec of every ingredient of database class *cls*."""
    spec = spec_of(cls)
    if spec.codecs is not None:
        return spec.codecs
    converter = spec.converter
    if converter is None:
        # Imported here: most programs never persist.
        from cattrs.preconf.orjson import make_converter

        converter = make_converter()
    codecs: dict[str, Codec] = {}
    canonical = _Canonical(converter)
    accumulates = None if spec.accumulator is None else spec.accumulator.kind
    dump_accumulated: _Dump | None = None
    load_accumulated: _Load | None = None
    if accumulates is not None:
        try:
            dump_accumulated, load_accumulated = _accumulated_codec(converter, accumulates)
        except Exception as error:
            msg = f"{cls.__qualname__}: cannot persist its accumulated values: {error}"
            raise CacheError(msg) from error
    # One walk of the code for every query: helpers they share are disassembled once.
    fingerprinter = Fingerprinter(cls)
    for name, declared in spec.ingredients.items():
        # Told apart by `kind`: this layer cannot import the classes to test them.
        ingredient: Any = declared
        where = f"{cls.__qualname__}.{name}"
        if ingredient.kind == "input" and not ingredient.persist:
            # Left out of cache files: no section; the memos that read it revalidate.
            continue
        try:
            if ingredient.kind == "interned":
                key_types: tuple[Any, ...] = ()
                value_type = ingredient.value_type
            else:
                key_types = ingredient.key_types()
                value_type = ingredient.value_type()
            dump_key, load_key = _key_codec(converter, key_types)
            if ingredient.kind == "query" and not ingredient.persist:
                # Saved without values (keys and revisions only): its dependents stay valid.
                value_type = _NOT_PERSISTED
                dump_value, load_value = _value_codec(converter, type(None))
            else:
                dump_value, load_value = _value_codec(converter, value_type)
        except Exception as error:
            msg = f"{where}: cannot persist its types: {error}"
            raise CacheError(msg) from error
        code = (
            fingerprinter.fingerprint(ingredient.fn, ingredient.version)
            if ingredient.kind == "query"
            else None
        )
        if code is not None and ingredient.cycle:
            # How its cycles resolve is part of what its memos mean.
            options = (ingredient.cycle_initial, ingredient.cycle_fn, ingredient.cycle_fallback)
            parts = [
                fingerprinter.fingerprint(option, None)
                if hasattr(option, "__code__")
                else repr(option)
                for option in options
            ]
            code = ":".join([code, *parts, str(ingredient.max_iterations)])
        query = ingredient.kind == "query"
        codecs[name] = Codec(
            ingredient,
            name,
            where,
            ingredient.kind,
            _schema_fingerprint(key_types, value_type, accumulates if query else None),
            code,
            dump_key,
            load_key,
            dump_value,
            load_value,
            _exact(key_types[0]) if len(key_types) == 1 else None,
            _exact(value_type),
            key_types,
            value_type,
            canonical,
            dump_accumulated=dump_accumulated if query else None,
            load_accumulated=load_accumulated if query else None,
        )
    spec.codecs = codecs
    return codecs


def _accumulated_codec(converter: Any, kind: Any) -> tuple[_Dump, _Load]:
    """
    The dumper and loader of a memo's accumulated values, a tuple of *kind* (the
    database's `accumulates=`): the loader also refuses a value that is no *kind*.
    """
    dump, load_values = _value_codec(converter, tuple[kind, ...], "accumulated values")

    def load(raw: Any) -> object:
        values = cast("tuple[object, ...]", load_values(raw))
        for value in values:
            if not isinstance(value, kind):
                msg = f"accumulated value {reprlib.repr(value)} is not {_a(kind)}"
                raise TypeError(msg)
        return values

    return dump, load


def _exact(tp: Any) -> type | None:
    """*tp* if a value of exactly that type is saved as it is, else `None` (see `Codec`)."""
    return cast("type", tp) if tp in _NATIVE and tp is not float else None


# -- canonical bytes and digests, for the shared cache ---------------------------------------

VALUE_DIGEST_PREFIX: Final = b"picante value digest 1\x00"
"""What `value_digest` hashes first: no other hash of picante's starts the same way."""
RECORD_KEY_PREFIX: Final = b"picante record key 1\x00"
_SETS: Final = frozenset({set, frozenset, AbstractSet, MutableSet})
_SORTED: Final = orjson.OPT_SORT_KEYS


@attrs.define(slots=True, eq=False)
class _Canonical:
    """A class's converter for canonical bytes: its own one, copied, with sets sorted."""

    base: Any
    converter: Any = None

    def get(self) -> Any:
        if self.converter is None:
            self.converter = _canonical_converter(self.base)
        return self.converter


def _canonical_converter(base: Any) -> Any:
    """
    A copy of converter *base* (its hooks kept) that writes every set as a sorted list.

    cattrs writes a set in iteration order, which for strings depends on `PYTHONHASHSEED`:
    two processes would encode one set two ways. Here the members are sorted by their own
    canonical bytes; a set's order is arbitrary anyway, so nothing observable is lost.
    """
    converter = base.copy()

    def is_set(tp: Any) -> bool:
        return (typing.get_origin(tp) or tp) in _SETS

    def sorted_set(tp: Any) -> Callable[[Any], list[object]]:
        args = typing.get_args(tp)
        member: Callable[[Any], object] = (
            converter.get_unstructure_hook(args[0]) if args else converter.unstructure
        )

        def unstructure(value: Any) -> list[object]:
            members = [member(item) for item in value]
            members.sort(key=lambda raw: orjson.dumps(raw, option=_SORTED))
            return members

        return unstructure

    converter.register_unstructure_hook_factory(is_set, sorted_set)
    return converter


def _canonical_dumps(codec: Codec) -> tuple[_KeyDump | None, _Dump | None]:
    """*codec*'s canonical key and value dumpers, built once; `None` for what is not shared."""
    if codec.canonical_dumps is not None:
        return codec.canonical_dumps
    dump_key: _KeyDump | None = None
    dump_value: _Dump | None = None
    converter: Any = None
    if codec.canonical is not None:
        try:
            converter = codec.canonical.get()
        except Exception:  # noqa: BLE001 - a converter that cannot be copied: nothing shared
            converter = None
    if converter is not None:
        # Interned ids are numbers of this process's tables: never the same elsewhere.
        if not _mentions_intern_id(codec.key_types):
            try:
                dump_key = _key_codec(converter, codec.key_types)[0]
            except Exception:  # noqa: BLE001 - a type the converter cannot handle: not shared
                dump_key = None
        persisted = codec.value_type is not _NOT_PERSISTED
        if persisted and not _mentions_intern_id((codec.value_type,)):
            try:
                dump_value = _value_codec(converter, codec.value_type)[0]
            except Exception:  # noqa: BLE001 - same
                dump_value = None
    codec.canonical_dumps = (dump_key, dump_value)
    return codec.canonical_dumps


def _mentions_intern_id(types_: tuple[Any, ...]) -> bool:
    return any("NewType(InternId, " in describe_type(tp) for tp in types_)


def canonical_bytes(codec: Codec, value: object) -> bytes | None:
    """
    The canonical bytes of *value*, a value of *codec*'s ingredient; `None` if not shareable.

    The same cattrs converter and checks as the cache file (a value that would not load
    back identically is refused), then orjson with every set sorted and every dict's keys
    sorted: equal values give equal bytes in any process, whatever its `PYTHONHASHSEED`
    or the order a dict or set was built in (picante compares values with `==`, which
    ignores both). `None` for a query with `persist=False`, a type that mentions
    `picante.InternId`, and a value the cache file would refuse (a float that is nan or
    infinite, a type the converter cannot handle): such values are never shared.
    """
    dump = _canonical_dumps(codec)[1]
    if dump is None:
        return None
    try:
        return orjson.dumps(dump(value), option=_SORTED)
    except Exception:  # noqa: BLE001 - Mismatch, orjson's or a hook's error: not shareable
        return None


def canonical_key_bytes(codec: Codec, key: tuple[object, ...]) -> bytes | None:
    """The canonical bytes of *key* (a tuple of *codec*'s key types): as `canonical_bytes`."""
    dump = _canonical_dumps(codec)[0]
    if dump is None:
        return None
    try:
        return orjson.dumps(dump(key), option=_SORTED)
    except Exception:  # noqa: BLE001 - same as `canonical_bytes`
        return None


def value_digest(codec: Codec, value: object) -> bytes | None:
    """
    The SHA-256 digest (32 bytes) of `VALUE_DIGEST_PREFIX` and *value*'s canonical bytes.

    `None` where `canonical_bytes` is `None`. Equal values have equal digests in any
    process; values of different ingredients may too (compare digests of one ingredient).
    """
    encoded = canonical_bytes(codec, value)
    if encoded is None:
        return None
    return encoded_digest(encoded)


def encoded_digest(encoded: bytes) -> bytes:
    """`value_digest` of the value whose canonical bytes are *encoded*."""
    return hashlib.sha256(VALUE_DIGEST_PREFIX + encoded).digest()


def record_key(
    *,
    format: int | str,  # noqa: A002 - the field's name in SHARED-CACHE.md
    salt: str | bytes,
    database: str,
    query: str,
    schema: str,
    code: str,
    key: bytes,
) -> bytes:
    """
    The key of a query's record in a shared cache: 16 bytes of BLAKE2b.

    The fields are keyword-only: several are strings, and a swap would go unnoticed.

    It hashes `RECORD_KEY_PREFIX`, then each field as its length (8 bytes, big-endian)
    and its bytes (strings as UTF-8, *format* as its text), so no two tuples of fields
    give the same input. *key* is `canonical_key_bytes` of the record's key; *schema*
    and *code* are the ingredient's fingerprints (`Codec.schema`, `Codec.code`).
    """
    hasher = record_hasher(
        format=format, salt=salt, database=database, query=query, schema=schema, code=code
    )
    return keyed_record(hasher, key)


def record_hasher(
    *,
    format: int | str,  # noqa: A002 - as in `record_key`
    salt: str | bytes,
    database: str,
    query: str,
    schema: str,
    code: str,
) -> Any:
    """`record_key`'s hash of every field but the key: copied for each key of the query."""
    hasher = hashlib.blake2b(RECORD_KEY_PREFIX, digest_size=16)
    for field in (str(format), salt, database, query, schema, code):
        _hash_field(hasher, field)
    return hasher


def keyed_record(hasher: Any, key: bytes) -> bytes:
    """The record key of *key* from a query's `record_hasher` (which it leaves as it was)."""
    copy = hasher.copy()
    _hash_field(copy, key)
    digest: bytes = copy.digest()
    return digest


def _hash_field(hasher: Any, field: str | bytes) -> None:
    data = field.encode() if isinstance(field, str) else field
    hasher.update(len(data).to_bytes(8, "big") + data)


@functools.cache
def default_salt() -> str:
    """
    The default salt of a shared cache: the Python and the libraries values depend on.

    `"cpython 3.11; picante 0.1.0; attrs 25.1.0; cattrs 24.1.2; orjson 3.10.15"`: the
    implementation and minor version of Python (bytecode, and so code fingerprints, and
    the standard library's behaviour), and the versions of picante (its formats) and of
    the three libraries that encode values. A record written under another salt is never
    read. Cache files do not use it: see the persistence guide.
    """
    python = f"{sys.implementation.name} {sys.version_info[0]}.{sys.version_info[1]}"
    libraries = [
        f"{distribution} {_installed_version(distribution)}"
        for distribution in ("picante", "attrs", "cattrs", "orjson")
    ]
    return "; ".join([python, *libraries])


def _installed_version(distribution: str) -> str:
    """
    The installed version of *distribution*: from its `NAME-VERSION.dist-info` folder on
    `sys.path` (installers name it so), else from `importlib.metadata`, whose import alone
    takes tens of milliseconds: a command-line build that shares results pays it once.
    """
    wanted = distribution.lower()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if dot and suffix == "dist-info":
                project, _, found = stem.partition("-")
                if project.replace("-", "_").lower() == wanted and found:
                    return found
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def database_name(cls: type) -> str:
    """
    The name a cache file records for database class *cls*: the name it was given, or
    its module (for the script being run, the script's file name) and qualified name.
    """
    given = spec_of(cls).name
    if given is not None:
        return given
    module = cls.__module__
    if module == "__main__":
        module = _script_module() or module
    return f"{module}.{cls.__qualname__}"


def legacy_names(cls: type) -> frozenset[str]:
    """Other names files written by *cls* may record: `__main__.X`, before 2026-12."""
    if cls.__module__ == "__main__" and spec_of(cls).name is None:
        return frozenset({f"__main__.{cls.__qualname__}"})
    return frozenset()


def _script_module() -> str | None:
    """The module name of what runs as `__main__`: `-m pkg.mod`'s, or the script file's stem."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name).removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    stem = Path(path).stem
    return stem if stem.isidentifier() else None
