"""
Value codecs: how one database class's keys and values become JSON-ready data and back.

`codecs_of(cls)` builds, once per database class, a `Codec` per ingredient: its key and
value converters (cattrs hooks, or a plain type check for the types orjson writes and
reads back exactly) and its two fingerprints:

* the *schema* fingerprint: the annotated key and value types, attrs classes and
  dataclasses described field by field, recursively;
* the *code* fingerprint (queries only): the function's instructions with their resolved
  arguments, nested code included, plus `version=`; line numbers and docstrings do not
  count.

Invariants: a loader never returns a value of another type than the annotation says (it
raises instead), and two programs whose fingerprints agree encode a section the same way.
Nothing here knows the file format or touches a database.
"""

from __future__ import annotations

import dataclasses
import dis
import hashlib
import math
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from ._errors import CacheError


if TYPE_CHECKING:
    from collections.abc import Iterable


__all__ = ["Codec", "code_fingerprint", "codecs_of", "database_name", "describe_type"]

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


def _code_parts(code: types.CodeType) -> Iterable[object]:
    """
    The parts of *code* that decide behaviour: each instruction with its resolved argument.

    Constants are hashed by value, not by their index in `co_consts`, so a docstring (a
    constant no instruction loads, which shifts the others) and line numbers do not count.
    """
    for instruction in dis.get_instructions(code):
        yield instruction.opname
        argument = instruction.argval
        if isinstance(argument, types.CodeType):
            yield "<code>"
            yield from _code_parts(argument)
        else:
            yield repr(argument)


def code_fingerprint(fn: Any, version: str | int | None) -> str:
    """Fingerprint a query's function: bytecode, constants, names, nested code, `version`."""
    hasher = hashlib.blake2b(digest_size=8)
    hasher.update(repr(version).encode())
    for part in _code_parts(fn.__code__):
        hasher.update(str(part).encode())
        hasher.update(b"\x00")
    return hasher.hexdigest()


def _schema_fingerprint(key_types: tuple[Any, ...], value_type: Any) -> str:
    text = "(" + ", ".join(describe_type(t) for t in key_types) + ") -> "
    text += describe_type(value_type)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# -- codecs ---------------------------------------------------------------------------------


def _identity(value: object) -> object:
    return value


@attrs.define(slots=True, eq=False)
class Codec:
    """How one ingredient's keys and values go to JSON-ready data and back."""

    ingredient: Any
    name: str
    kind: str
    schema: str
    code: str | None
    dump_key: Callable[[tuple[object, ...]], object]
    load_key: Callable[[Any], tuple[object, ...]]
    dump_value: Callable[[object], object]
    load_value: Callable[[Any], object]


_Dump = Callable[[object], object]
_Load = Callable[[Any], object]


def _value_codec(converter: Any, tp: Any) -> tuple[_Dump, _Load]:
    if tp is float:

        def dump_float(value: object) -> object:
            if isinstance(value, float) and not math.isfinite(value):
                msg = f"{value!r} has no JSON form"
                raise ValueError(msg)
            return value

        dump: _Dump = dump_float
    else:
        dump = _identity
    if tp in _NATIVE:

        def load_native(raw: Any) -> object:
            if type(raw) is not tp and not (tp is float and type(raw) is int):
                msg = f"expected {tp.__name__}, got {type(raw).__name__}"
                raise TypeError(msg)
            return float(raw) if tp is float else raw

        return dump, load_native
    dump = converter.get_unstructure_hook(tp)
    structure = converter.get_structure_hook(tp)
    return dump, lambda raw: structure(raw, tp)


def _key_codec(
    converter: Any, key_types: tuple[Any, ...]
) -> tuple[Callable[[tuple[object, ...]], object], Callable[[Any], tuple[object, ...]]]:
    codecs = [_value_codec(converter, tp) for tp in key_types]
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

    if all(tp in _NATIVE and tp is not float for tp in key_types):
        # orjson writes a tuple as an array: nothing to convert, only types to check.
        return _identity, _native_key_loader(key_types)

    def dump_key(key: tuple[object, ...]) -> object:
        return [dump(part) for dump, part in zip(dumps, key, strict=True)]

    return dump_key, load_key


def _native_key_loader(key_types: tuple[type, ...]) -> Callable[[object], tuple[object, ...]]:
    """A key loader for keys of exact JSON types: a type check per part, no conversion."""

    def load_key(raw: object) -> tuple[object, ...]:
        if type(raw) is list:
            parts = cast("list[Any]", raw)  # type: ignore[redundant-cast]  # pyright needs it
            if len(parts) == len(key_types) and all(
                type(part) is tp for part, tp in zip(parts, key_types, strict=True)
            ):
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
    # Every database class has a registry of its own (`_declare._register`).
    spec: Any = cls.__dict__["__picante__"]
    if spec.codecs is not None:
        return spec.codecs  # type: ignore[no-any-return]
    converter = spec.converter
    if converter is None:
        # Imported here: most programs never persist.
        from cattrs.preconf.orjson import make_converter

        converter = make_converter()
    codecs: dict[str, Codec] = {}
    for name, ingredient in spec.ingredients.items():
        where = f"{cls.__qualname__}.{name}"
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
            code_fingerprint(ingredient.fn, ingredient.version)
            if ingredient.kind == "query"
            else None
        )
        codecs[name] = Codec(
            ingredient,
            name,
            ingredient.kind,
            _schema_fingerprint(key_types, value_type),
            code,
            dump_key,
            load_key,
            dump_value,
            load_value,
        )
    spec.codecs = codecs
    return codecs


def database_name(cls: type) -> str:
    """The name a cache file records for database class *cls*: module and qualified name."""
    return f"{cls.__module__}.{cls.__qualname__}"
