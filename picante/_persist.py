"""
Cache files: `save` and `load`, typed by cattrs, encoded by orjson, safe against crashes.

A cache file holds a database's inputs, interned tables and memos (value, revisions,
durability and dependencies), so that a restarted program reuses every memo that is still
valid. Its layout (format 1):

    base file   "PICANTE\\n" | u16 format | u64 payload length | blake2b-128 of payload | payload
    log file    "PICALOG\\n" | u16 format | blake2b-128 of the base's payload
                then entries: u32 payload length | blake2b-128 of payload | payload

Every payload is JSON (orjson): the base holds the database's qualified name, its revision,
its durability watermarks and one *section* per ingredient (its name, kind, schema
fingerprint, code fingerprint for queries, and records). Records refer to each other
by integer ids: a memo's dependencies are ids. An entry of the log (`<path>.log`) holds the
records that changed since the previous save, under the same ids (new records get new
ids), and the revision then. The log is bound to one base by the base's digest, so a
log left over from an older base is ignored.

Saving is atomic: a full save writes a temporary file in the same directory, flushes and
fsyncs it, renames it over the old file and fsyncs the directory, so a crash leaves the
old file or the new one. An incremental save appends one entry and fsyncs; a crash mid-
append leaves a torn last entry, which `load` ignores. When the log grows past half the
base, `save` compacts both into a new base.

Loading never trusts the file: the digest must match before anything is parsed, the
payload is plain JSON (nothing is executed), and a section whose schema or code
fingerprint differs from the running program's is never decoded as if it matched:

* schema changed (key or value types), or the ingredient is gone: the section is dropped;
* code changed (a query's bytecode, constants, names or `version=`): its memos are kept
  as *stale*: they re-execute on first use, and keep their old value only to backdate
  (so dependents are not recomputed if the new code gives the same value);
* a memo that depends on a dropped record is stale too.

Everything is decoded and built aside, then swapped into the database in one step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import dis
import hashlib
import math
import os
import struct
import tempfile
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import attrs
import orjson

from ._errors import CacheError, LimitExceededError, UsageError, fmt_key
from ._runtime import view_of
from ._store import (
    ABSENT,
    EVICTED,
    NEVER,
    Durability,
    InputCell,
    InternTable,
    QueryCell,
    add_dependent,
    dependents_of,
    sizeof,
)


if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._runtime import View
    from ._store import Revision


__all__ = ["FORMAT_VERSION", "load", "read_summary", "save"]

FORMAT_VERSION: Final = 1
_MAGIC: Final = b"PICANTE\n"
_LOG_MAGIC: Final = b"PICALOG\n"
_HEADER: Final = struct.Struct(">8sHQ16s")
_LOG_HEADER: Final = struct.Struct(">8sH16s")
_ENTRY: Final = struct.Struct(">I16s")
_COMPACT_RATIO: Final = 0.5
"""A save compacts base and log into a new base once the log passes this share of it."""

_NATIVE: Final = frozenset({str, int, float, bool, type(None)})
"""Types orjson writes and reads back exactly: no cattrs hook needed."""
_NOT_PERSISTED: Final = "<values not persisted>"
_DURABILITIES: Final = tuple(Durability)

OnCorrupt = Literal["error", "ignore", "delete"]


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _log_path(path: Path) -> Path:
    return path.with_name(path.name + ".log")


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
class _Codec:
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


def codecs_of(cls: type) -> dict[str, _Codec]:
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
    codecs: dict[str, _Codec] = {}
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
        codecs[name] = _Codec(
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


def _database_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the persistence state of a view ---------------------------------------------------------


@attrs.define(slots=True, eq=False)
class _Persisted:
    """What a view knows about the cache file it was last saved to or loaded from."""

    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    path: Path | None = None
    # The base's digest, and the (size, mtime, inode) of base and log as last written or
    # read: if either changed on disk, the next save writes a full file.
    digest: bytes = b""
    base_stat: tuple[int, int, int] | None = None
    log_stat: tuple[int, int, int] | None = None
    base_size: int = 0
    log_size: int = 0
    # Record ids in the file: cell -> id, and the next free id.
    ids: dict[InputCell | QueryCell, int] = attrs.field(factory=dict[InputCell | QueryCell, int])
    next_id: int = 0
    # Interned values already in the file, per table; the revision last written.
    interned: dict[str, int] = attrs.field(factory=dict[str, int])
    revision: Revision = NEVER
    # The file does not describe this view exactly (something was dropped on load).
    must_rewrite: bool = True


def _persisted(view: View) -> _Persisted:
    state = view.persistence
    if state is None:
        state = view.persistence = _Persisted()
    return state  # type: ignore[no-any-return]


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


# -- capture: the view's state as JSON-ready records -----------------------------------------


class _Capture:
    """Builds the records of a save, assigning ids to the cells the file does not have."""

    def __init__(self, codecs: dict[str, _Codec], state: _Persisted) -> None:
        self.codecs = codecs
        self.ids = state.ids
        self.next_id = state.next_id
        # Per section: the records, and the cells they came from (to name a bad one).
        self.records: dict[str, list[list[object]]] = {}
        self.cells: dict[str, list[InputCell | QueryCell]] = {}
        self.pending: list[InputCell | QueryCell] = []

    def persistable(self, cell: InputCell | QueryCell) -> bool:
        if cell.ingredient.name not in self.codecs:
            return False
        # A memo that failed is saved without a value, like an evicted one: its
        # dependents stay valid, and it re-executes when it is read.
        return isinstance(cell, InputCell) or cell.verified_at != NEVER

    def id_of(self, cell: InputCell | QueryCell) -> int:
        """The id of *cell*; one the file lacks gets an id and is queued (-1: not saved)."""
        found = self.ids.get(cell)
        if found is not None:
            return found
        if not self.persistable(cell):
            return -1
        self.ids[cell] = found = self.next_id
        self.next_id += 1
        self.pending.append(cell)
        return found

    def add(self, cells: Iterable[InputCell | QueryCell]) -> None:
        """Record *cells*, and every dependency the file does not have yet."""
        recorded: set[InputCell | QueryCell] = set()
        for cell in cells:
            if self.persistable(cell) and cell not in recorded:
                if cell not in self.ids:
                    self.ids[cell] = self.next_id
                    self.next_id += 1
                recorded.add(cell)
                self._record(cell)
        while self.pending:
            cell = self.pending.pop()
            if cell not in recorded:
                recorded.add(cell)
                self._record(cell)

    def _record(self, cell: InputCell | QueryCell) -> None:
        name = cell.ingredient.name
        codec = self.codecs[name]
        try:
            key = codec.dump_key(cell.key)
            if isinstance(cell, InputCell):
                value = cell.value
                present = value is not ABSENT
                record: list[object] = [
                    self.ids[cell],
                    key,
                    codec.dump_value(value) if present else None,
                    present,
                    cell.changed_at,
                ]
            else:
                value = cell.value
                has_value = (
                    value is not EVICTED and cell.failure is None and cell.ingredient.persist
                )
                record = [
                    self.ids[cell],
                    key,
                    codec.dump_value(value) if has_value else None,
                    has_value,
                    cell.verified_at,
                    cell.changed_at,
                    int(cell.durability),
                    [self.id_of(dep) for dep in cell.deps],
                ]
        except Exception as error:
            raise _unserializable(name, cell.key, cell.value, error) from error
        self.records.setdefault(name, []).append(record)
        self.cells.setdefault(name, []).append(cell)


def _unserializable(name: str, key: tuple[object, ...], value: object, error: object) -> CacheError:
    msg = (
        f"cannot save {fmt_key(name, key)}: its {type(value).__qualname__} value "
        f"cannot be converted ({error})"
    )
    return CacheError(msg)


def _encode(payload: dict[str, object], capture: _Capture) -> bytes:
    """orjson-encode *payload*; on failure, name the record that cannot be encoded."""
    try:
        return orjson.dumps(payload)
    except TypeError as error:
        for name, records in capture.records.items():
            for record, cell in zip(records, capture.cells[name], strict=True):
                try:
                    orjson.dumps(record)
                except TypeError as culprit:
                    raise _unserializable(name, cell.key, cell.value, culprit) from error
        msg = f"cannot encode the cache: {error}"
        raise CacheError(msg) from error


def _sections(
    capture: _Capture, interned: dict[str, tuple[int, list[object]]]
) -> list[dict[str, object]]:
    sections: list[dict[str, object]] = []
    for name, codec in capture.codecs.items():
        section: dict[str, object] = {"name": name, "kind": codec.kind, "schema": codec.schema}
        if codec.kind == "interned":
            start, values = interned.get(name, (0, []))
            section["start"] = start
            section["values"] = values
        else:
            if codec.code is not None:
                section["code"] = codec.code
            section["records"] = capture.records.get(name, [])
        sections.append(section)
    return sections


def _interned_since(
    view: View, codecs: dict[str, _Codec], done: dict[str, int]
) -> dict[str, tuple[int, list[object]]]:
    """New interned values per table since *done* counts: {name: (start, values)}."""
    found: dict[str, tuple[int, list[object]]] = {}
    for name, codec in codecs.items():
        if codec.kind != "interned":
            continue
        table = view.family.interned.get(name)
        values = [] if table is None else list(table.values)
        start = done.get(name, 0)
        dumped: list[object] = []
        for value in values[start:]:
            try:
                dumped.append(codec.dump_value(value))
            except Exception as error:
                raise _unserializable(name, (), value, error) from error
        found[name] = (start, dumped)
    return found


def _cap(capture: _Capture, max_record_bytes: int | None) -> None:
    """Drop memo records whose value encodes to more than *max_record_bytes*."""
    if max_record_bytes is None:
        return
    for name, records in capture.records.items():
        keep = [
            index
            for index, record in enumerate(records)
            if len(record) == 5 or len(orjson.dumps(record[2])) <= max_record_bytes
        ]
        if len(keep) < len(records):
            cells = capture.cells[name]
            capture.records[name] = [records[i] for i in keep]
            capture.cells[name] = [cells[i] for i in keep]


# -- save -----------------------------------------------------------------------------------


async def save(
    db: object,
    path: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    max_record_bytes: int | None = None,
) -> None:
    """
    Save *db*'s inputs, interned tables and memos to the cache file *path*, atomically.

    The first save to a path writes a full file (temporary file in the same directory,
    fsync, rename, fsync of the directory): a crash leaves the old file or the new one,
    never a mix. Later saves of the same database to the same path append only what changed
    since (inputs, interned values, memos) to `<path>.log`, one checksummed entry per save;
    when the log passes half the size of the file, the save writes a new full file instead.
    File I/O runs in a worker thread, not on the event loop. Memos being computed are not
    saved. Memos of queries declared with `persist=False` are saved without their values,
    and a memoized error without its exception (nothing is pickled): they re-execute when
    read, while the memos that depend on them stay valid.

    Args:
        db: The database (not a snapshot).
        path: The cache file.
        max_bytes: Best-effort cap on the file's size: memos are dropped, largest value
            first, until it fits; inputs and interned values are never dropped. A dropped
            memo is not in the file at all, so after a load it runs again, and so do the
            memos that read it (unlike a value-less memo, whose readers stay valid).
        max_record_bytes: Memos whose encoded value is larger are not saved (as above).

    Raises:
        CacheError: A key or value cannot be converted (the message names the record and
            the type), or the inputs alone exceed *max_bytes*. The previous file is intact.
        UsageError: *db* is a snapshot, or not a database.
        OSError: The file cannot be written; the previous file is intact.
    """
    view = view_of(db)
    if view.parent is not None:
        msg = "save() needs a database, not a snapshot: save the database it was taken of"
        raise UsageError(msg)
    target = Path(path)
    codecs = codecs_of(type(db))
    state = _persisted(view)
    async with state.lock:
        capped = max_bytes is not None or max_record_bytes is not None
        if (
            not capped
            and not state.must_rewrite
            and state.path == target
            and _stat(target) == state.base_stat
            and _stat(_log_path(target)) == state.log_stat
            and state.log_size <= _COMPACT_RATIO * state.base_size
        ):
            await _save_entry(view, target, codecs, state)
        else:
            await _save_full(
                view,
                target,
                codecs,
                state,
                max_bytes=max_bytes,
                max_record_bytes=max_record_bytes,
            )


async def _save_full(
    view: View,
    target: Path,
    codecs: dict[str, _Codec],
    state: _Persisted,
    *,
    max_bytes: int | None,
    max_record_bytes: int | None,
) -> None:
    fresh = _Persisted(lock=state.lock)
    # From here on, until this save is written, the file does not match the view.
    state.must_rewrite = True
    with view.lock:
        capture = _Capture(codecs, fresh)
        capture.add(cell for table in view.tables.values() for cell in table.values())
        interned = _interned_since(view, codecs, {})
        revision = view.revision
        last_changed = list(view.last_changed)
        # Changes from here on go to the next save's log entry.
        view.dirty = set()
    _cap(capture, max_record_bytes)
    payload_obj: dict[str, object] = {
        "database": _database_name(type(view.db)),
        "revision": revision,
        "last_changed": last_changed,
        "sections": _sections(capture, interned),
    }
    payload = _encode(payload_obj, capture)
    if max_bytes is not None and _HEADER.size + len(payload) > max_bytes:
        payload = _fit(payload_obj, capture, max_bytes)
    digest = _digest(payload)
    header = _HEADER.pack(_MAGIC, FORMAT_VERSION, len(payload), digest)
    await asyncio.to_thread(_write_atomic, target, header + payload)
    fresh.path = target
    fresh.digest = digest
    fresh.base_stat = _stat(target)
    fresh.log_stat = None
    fresh.base_size = len(header) + len(payload)
    fresh.ids = capture.ids
    fresh.next_id = capture.next_id
    fresh.interned = {name: start + len(values) for name, (start, values) in interned.items()}
    fresh.revision = revision
    fresh.must_rewrite = False
    view.persistence = fresh


def _fit(payload_obj: dict[str, object], capture: _Capture, max_bytes: int) -> bytes:
    """Drop memos, largest value first, until the payload fits in *max_bytes*."""
    sizes: list[tuple[int, str, int]] = []
    for name, records in capture.records.items():
        for index, record in enumerate(records):
            if len(record) > 5:
                sizes.append((len(orjson.dumps(record)), name, index))
    sizes.sort(reverse=True)
    payload = orjson.dumps(payload_obj)
    excess = _HEADER.size + len(payload) - max_bytes
    drop: dict[str, set[int]] = {}
    for size, name, index in sizes:
        if excess <= 0:
            break
        drop.setdefault(name, set()).add(index)
        excess -= size + 1
    for name, indexes in drop.items():
        records = capture.records[name]
        records[:] = [r for i, r in enumerate(records) if i not in indexes]
        cells = capture.cells[name]
        cells[:] = [c for i, c in enumerate(cells) if i not in indexes]
    payload = orjson.dumps(payload_obj)
    if _HEADER.size + len(payload) > max_bytes:
        msg = (
            f"the inputs and interned values alone take {_HEADER.size + len(payload):,} bytes, "
            f"over max_bytes={max_bytes:,}"
        )
        raise CacheError(msg)
    return payload


async def _save_entry(
    view: View, target: Path, codecs: dict[str, _Codec], state: _Persisted
) -> None:
    # Until this entry is written, the file does not match the view.
    state.must_rewrite = True
    with view.lock:
        dirty = view.dirty or set()
        view.dirty = set()
        capture = _Capture(codecs, state)
        capture.add(dirty)
        interned = _interned_since(view, codecs, state.interned)
        revision = view.revision
        last_changed = list(view.last_changed)
    if (
        not capture.records
        and revision == state.revision
        and not any(values for _, values in interned.values())
    ):
        state.must_rewrite = False
        return
    payload_obj: dict[str, object] = {
        "revision": revision,
        "last_changed": last_changed,
        "sections": [
            s for s in _sections(capture, interned) if s.get("records") or s.get("values")
        ],
    }
    payload = _encode(payload_obj, capture)
    entry = _ENTRY.pack(len(payload), _digest(payload)) + payload
    log = _log_path(target)
    header = _LOG_HEADER.pack(_LOG_MAGIC, FORMAT_VERSION, state.digest)
    written = await asyncio.to_thread(_append, log, header, entry)
    state.log_stat = _stat(log)
    state.log_size = written
    state.next_id = capture.next_id
    state.interned = {name: start + len(values) for name, (start, values) in interned.items()}
    state.revision = revision
    state.must_rewrite = False


def _write_atomic(target: Path, data: bytes) -> None:
    """Replace *target* by *data*: temp file, fsync, rename, fsync of the directory."""
    directory = target.parent
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file 0600; the cache gets the mode of the file it replaces,
        # else the usual 0644 (as the log, opened normally, gets).
        try:
            mode = target.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # The old log belongs to the old base (its digest says so); remove it now.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_log_path(target))
    _fsync_directory(directory)


def _append(log: Path, header: bytes, entry: bytes) -> int:
    """Append *entry* to *log* (creating it with *header*); fsync; return the log's size."""
    with open(log, "ab") as file:
        created = file.tell() == 0
        if created:
            file.write(header)
        file.write(entry)
        file.flush()
        os.fsync(file.fileno())
        size = file.tell()
    if created:
        _fsync_directory(log.parent)
    return size


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # Some platforms cannot open directories.
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- reading files --------------------------------------------------------------------------


class _Corrupt(Exception):  # noqa: N818 - internal signal, turned into CacheError
    """The file cannot be read; the message says why."""


@attrs.define(slots=True)
class _FileContents:
    """A base file and its log, checked and parsed, not yet decoded."""

    payload: dict[str, Any]
    digest: bytes
    base_size: int
    entries: list[dict[str, Any]]
    log_size: int
    log_torn: bool
    log_ignored: str | None


def _parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        msg = f"the {what} is not valid JSON ({error})"
        raise _Corrupt(msg) from None
    if type(parsed) is not dict:
        msg = f"the {what} is not a JSON object"
        raise _Corrupt(msg)
    return cast("dict[str, Any]", parsed)


def _read_base(data: bytes) -> tuple[dict[str, Any], bytes]:
    if not data:
        msg = "the file is empty"
        raise _Corrupt(msg)
    if len(data) < _HEADER.size:
        if not _MAGIC.startswith(data[: len(_MAGIC)]):
            msg = "not a picante cache file (wrong magic bytes)"
            raise _Corrupt(msg)
        msg = f"truncated: {len(data)} bytes, shorter than the {_HEADER.size}-byte header"
        raise _Corrupt(msg)
    magic, version, length, digest = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        msg = "not a picante cache file (wrong magic bytes)"
        raise _Corrupt(msg)
    if version != FORMAT_VERSION:
        msg = f"format version {version}; this picante reads version {FORMAT_VERSION}"
        raise _Corrupt(msg)
    payload = data[_HEADER.size :]
    if len(payload) != length:
        msg = (
            f"truncated or extended: the header says {length:,} payload bytes, "
            f"found {len(payload):,}"
        )
        raise _Corrupt(msg)
    if _digest(payload) != digest:
        msg = "checksum mismatch: the payload is corrupt"
        raise _Corrupt(msg)
    return _parse_json(payload, "payload"), digest


def _read_log(data: bytes, digest: bytes) -> tuple[list[dict[str, Any]], int, bool, str | None]:
    """Parse a log: (entries, bytes used, torn tail?, why the whole log was ignored)."""
    if len(data) < _LOG_HEADER.size:
        return [], 0, bool(data), None if not data else "torn header"
    magic, version, base = _LOG_HEADER.unpack_from(data)
    if magic != _LOG_MAGIC or version != FORMAT_VERSION:
        msg = "not a picante cache log (wrong magic bytes or version)"
        raise _Corrupt(msg)
    if base != digest:
        return [], 0, False, "written for another base file"
    entries: list[dict[str, Any]] = []
    offset = _LOG_HEADER.size
    while offset < len(data):
        if offset + _ENTRY.size > len(data):
            return entries, offset, True, None
        length, entry_digest = _ENTRY.unpack_from(data, offset)
        start = offset + _ENTRY.size
        payload = data[start : start + length]
        if len(payload) < length:
            return entries, offset, True, None
        if _digest(payload) != entry_digest:
            if start + length == len(data):
                # The last entry: torn by a crash mid-append.
                return entries, offset, True, None
            msg = f"log entry {len(entries) + 1} is corrupt (checksum mismatch)"
            raise _Corrupt(msg)
        entries.append(_parse_json(payload, f"log entry {len(entries) + 1}"))
        offset = start + length
    return entries, offset, False, None


def _read_files(target: Path, max_bytes: int | None) -> _FileContents | None:
    """Read and check base and log (in a worker thread). `None`: no file."""
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return None
    log = _log_path(target)
    try:
        log_data = log.read_bytes()
    except FileNotFoundError:
        log_data = b""
    if max_bytes is not None and len(data) + len(log_data) > max_bytes:
        msg = (
            f"{target}: the cache takes {len(data) + len(log_data):,} bytes, "
            f"over max_bytes={max_bytes:,}"
        )
        raise CacheError(msg)
    payload, digest = _read_base(data)
    entries, used, torn, ignored = _read_log(log_data, digest)
    return _FileContents(payload, digest, len(data), entries, used, torn, ignored)


# -- decoding: from parsed JSON to cells, aside from the database ---------------------------


def _expect(condition: bool, what: str) -> None:
    if not condition:
        msg = f"malformed payload: {what}"
        raise _Corrupt(msg)


def _is_int(value: object) -> bool:
    return type(value) is int


@attrs.define(slots=True)
class _Loaded:
    """A database state built from a file, ready to be swapped in."""

    tables: dict[str, dict[tuple[object, ...], InputCell | QueryCell]]
    interned: dict[str, InternTable]
    revision: Revision
    last_changed: list[Revision]
    ids: dict[InputCell | QueryCell, int]
    next_id: int
    interned_counts: dict[str, int]
    exact: bool


def _merge(contents: _FileContents) -> tuple[dict[str, dict[str, Any]], int, list[int]]:
    """Merge base and log: {section name: section with records by id}, revision, watermarks."""
    payload = contents.payload
    revision: Any = payload.get("revision")
    last_changed: Any = payload.get("last_changed")
    sections: Any = payload.get("sections")
    _expect(_is_int(revision) and revision >= 0, "revision")
    _expect(type(sections) is list, "sections")
    merged: dict[str, dict[str, Any]] = {}
    for section in sections:
        _expect(type(section) is dict, "a section is not an object")
        name: Any = section.get("name")
        kind: Any = section.get("kind")
        _expect(type(name) is str and kind in ("input", "query", "interned"), "section name/kind")
        _expect(type(section.get("schema")) is str, f"section {name}: schema")
        entry: dict[str, Any] = {
            "kind": kind,
            "schema": section["schema"],
            "code": section.get("code"),
        }
        if kind == "interned":
            values = section.get("values")
            _expect(type(values) is list and section.get("start") == 0, f"section {name}: values")
            entry["values"] = list(values)
        else:
            records = section.get("records")
            _expect(type(records) is list, f"section {name}: records")
            entry["records"] = {}
            _add_records(entry, name, records)
        merged[name] = entry
    for number, log_entry in enumerate(contents.entries, 1):
        where = f"log entry {number}"
        revision = log_entry.get("revision")
        last_changed = log_entry.get("last_changed")
        _expect(_is_int(revision) and type(log_entry.get("sections")) is list, where)
        for section in log_entry["sections"]:
            _expect(type(section) is dict, where)
            name = section.get("name")
            found = merged.get(name) if type(name) is str else None
            if found is None or found["kind"] != section.get("kind"):
                msg = f"malformed payload: {where}: no section {name!r} of that kind"
                raise _Corrupt(msg)
            entry = found
            if entry["kind"] == "interned":
                values = section.get("values")
                _expect(
                    type(values) is list and section.get("start") == len(entry["values"]),
                    f"{where}: interned {name}",
                )
                entry["values"].extend(values)
            else:
                records = section.get("records")
                _expect(type(records) is list, f"{where}: {name}")
                _add_records(entry, name, records)
    _expect(
        type(last_changed) is list
        and len(last_changed) == len(Durability)
        and all(_is_int(r) for r in last_changed),
        "last_changed",
    )
    return merged, revision, last_changed


def _add_records(entry: dict[str, Any], name: str, records: list[Any]) -> None:
    width = 5 if entry["kind"] == "input" else 8
    by_id: dict[int, list[Any]] = entry["records"]
    for record in records:
        _expect(type(record) is list, f"section {name}: a record")
        fields = cast("list[Any]", record)
        _expect(len(fields) == width and _is_int(fields[0]), f"section {name}: a record")
        by_id[fields[0]] = fields


def _decode(contents: _FileContents, codecs: dict[str, _Codec], db_name: str) -> _Loaded:
    """Build the cells a file describes (in a worker thread); nothing touches the database."""
    found = contents.payload.get("database")
    if found != db_name:
        msg = f"written by database {found!r}, not {db_name!r}"
        raise _Corrupt(msg)
    merged, revision, last_changed = _merge(contents)
    exact = True
    cells: dict[int, InputCell | QueryCell] = {}
    tables: dict[str, dict[tuple[object, ...], InputCell | QueryCell]] = {}
    interned: dict[str, InternTable] = {}
    memos: list[tuple[QueryCell, list[Any], bool]] = []
    for name, entry in merged.items():
        codec = codecs.get(name)
        if codec is None or codec.kind != entry["kind"] or codec.schema != entry["schema"]:
            # Gone, or its types changed: never decode it as if it matched.
            exact = False
            continue
        if entry["kind"] == "interned":
            try:
                table = InternTable()
                for value in entry["values"]:
                    item = codec.load_value(value)
                    table.ids[type(item), item] = len(table.values)
                    table.values.append(item)
            except Exception:  # noqa: BLE001 - undecodable: dropped as cold
                exact = False
                continue
            interned[name] = table
            continue
        stale = entry["kind"] == "query" and entry["code"] != codec.code
        exact = exact and not stale
        try:
            table_cells, section_cells, section_memos = _decode_records(
                codec, entry["records"], stale=stale
            )
        except _Corrupt:
            raise
        except Exception:  # noqa: BLE001 - undecodable: dropped as cold
            exact = False
            continue
        tables[name] = table_cells
        cells.update(section_cells)
        memos += section_memos
    if any(e["kind"] == "interned" and name not in interned for name, e in merged.items()):
        # An interned table was dropped: its ids may appear in any value. Load nothing.
        tables.clear()
        cells.clear()
        memos.clear()
        interned.clear()
        exact = False
    exact = _link(memos, cells) and exact
    if not exact:
        # Stale memos re-execute; no memo may skip the walk to its dependencies by
        # durability alone, so every watermark moves to a revision of its own.
        revision += 1
        last_changed = [revision] * len(Durability)
    _mark_clean(memos)
    ids = {cell: number for number, cell in cells.items()}
    return _Loaded(
        tables,
        interned,
        revision,
        last_changed,
        ids,
        max(cells, default=-1) + 1,
        {name: len(table.values) for name, table in interned.items()},
        exact,
    )


_Memos = list[tuple[QueryCell, list[Any], bool]]
_Table = dict[tuple[object, ...], InputCell | QueryCell]


def _decode_records(
    codec: _Codec, records: dict[int, list[Any]], *, stale: bool
) -> tuple[_Table, dict[int, InputCell | QueryCell], _Memos]:
    """Decode one section's records: (its table, cells by id, memos with their dep ids)."""
    table: dict[tuple[object, ...], InputCell | QueryCell] = {}
    cells: dict[int, InputCell | QueryCell] = {}
    memos: _Memos = []
    ingredient = codec.ingredient
    load_key = codec.load_key
    load_value = codec.load_value
    if codec.kind == "input":
        for number, raw_key, raw_value, present, changed_at in records.values():
            _expect(type(present) is bool and _is_int(changed_at), f"{codec.name}: a record")
            key = load_key(raw_key)
            value = load_value(raw_value) if present else ABSENT
            cell = InputCell(ingredient, key, value, changed_at)
            table[key] = cell
            cells[number] = cell
        return table, cells, memos
    for record in records.values():
        number, raw_key, raw_value, has_value, verified_at, changed_at, durability, deps = record
        _expect(
            type(has_value) is bool
            and _is_int(verified_at)
            and _is_int(changed_at)
            and durability in (0, 1, 2)
            and type(deps) is list
            and all(_is_int(d) for d in deps),
            f"{codec.name}: a record",
        )
        key = load_key(raw_key)
        memo = QueryCell(ingredient, key)
        memo.value = load_value(raw_value) if has_value else EVICTED
        memo.verified_at = verified_at
        memo.changed_at = changed_at
        memo.durability = _DURABILITIES[durability]
        table[key] = memo
        cells[number] = memo
        memos.append((memo, deps, stale))
    return table, cells, memos


def _link(memos: list[tuple[QueryCell, list[Any], bool]], cells: dict[int, Any]) -> bool:
    """Resolve dependencies and build reverse edges; make stale what cannot be resolved."""
    exact = True
    for cell, deps, stale in memos:
        resolved = [cells.get(number) for number in deps]
        if stale or None in resolved:
            exact = False
            # Stale: re-executes on first use; its old value and changed_at stay to backdate.
            cell.verified_at = NEVER
            if cell.value is EVICTED:
                cell.value = None
                cell.changed_at = NEVER
            continue
        cell.deps = tuple(cast("list[InputCell | QueryCell]", resolved))
        for dep in cell.deps:
            add_dependent(dep, cell)
    return exact


def _mark_clean(memos: list[tuple[QueryCell, list[Any], bool]]) -> None:
    """Set `clean` as the runtime would have: nothing read changed since verified."""
    unclean: list[QueryCell] = []
    for cell, _, _ in memos:
        if cell.verified_at == NEVER:
            continue
        verified_at = cell.verified_at
        # Not clean without a value: a memoized error saved without its exception may come
        # back as an error, and a memo's dependents are clean only while it is.
        clean = cell.value is not EVICTED
        for dep in cell.deps:
            if dep.changed_at > verified_at or (
                isinstance(dep, QueryCell) and dep.verified_at == NEVER
            ):
                clean = False
                break
        cell.clean = clean
        if not clean:
            unclean.append(cell)
    # Push: what depends on something not clean is not clean either.
    while unclean:
        cell = unclean.pop()
        for dependent in dependents_of(cell):
            if dependent.clean:
                dependent.clean = False
                unclean.append(dependent)


# -- load -----------------------------------------------------------------------------------


async def load(
    db: object,
    path: str | os.PathLike[str],
    *,
    on_corrupt: OnCorrupt = "error",
    max_bytes: int | None = None,
) -> bool:
    """
    Load the cache file *path* (and its log) into *db*, a database with no state yet.

    Every input, interned value and memo in the file is restored, at the revision it was
    saved at, so that every memo still valid is reused without recomputing. A section of
    the file whose types no longer match the class is dropped; the memos of a query whose
    code changed (or whose `version=` did) re-execute on first use, and so do memos that
    depended on something dropped. If an interned table's type changed, its ids may
    appear in any value, so nothing is loaded (and `True` is returned: the file was
    read). Reading and decoding run in a worker thread; the
    database changes in one step at the end, or not at all.

    Args:
        db: A database that has no inputs, memos or interned values yet, and no snapshots.
        path: The cache file written by `picante.save`.
        on_corrupt: What to do with a file that is corrupt, truncated, empty, not a cache
            file, or written by another database class: `"error"` raises `CacheError`
            with the reason, `"ignore"` returns `False`, `"delete"` deletes the file (and
            its log) and returns `False`.
        max_bytes: Refuse (with `CacheError`) a cache larger than this, file and log
            together.

    Returns:
        `True` if the file was loaded; `False` if there is no file, or it is corrupt and
        *on_corrupt* is `"ignore"` or `"delete"`. The database is unchanged when `False`.

    Raises:
        CacheError: The file is corrupt and *on_corrupt* is `"error"`, or larger than
            *max_bytes*.
        UsageError: *db* already has state, or is a snapshot; or *on_corrupt* is invalid.
        LimitExceededError: The inputs and interned values exceed the database's
            `max_state_bytes`; nothing is loaded.
    """
    if on_corrupt not in ("error", "ignore", "delete"):
        msg = f"load(): on_corrupt must be 'error', 'ignore' or 'delete', got {on_corrupt!r}"
        raise UsageError(msg)
    view = view_of(db)
    _check_fresh(view)
    target = Path(path)
    codecs = codecs_of(type(db))
    state = _persisted(view)
    async with state.lock:
        try:
            contents = await asyncio.to_thread(_read_files, target, max_bytes)
            if contents is None:
                return False
            loaded = await asyncio.to_thread(_decode, contents, codecs, _database_name(type(db)))
        except _Corrupt as error:
            if on_corrupt == "error":
                msg = f"{target}: {error}"
                raise CacheError(msg) from None
            if on_corrupt == "delete":
                await asyncio.to_thread(_delete, target)
            return False
        _swap(view, loaded)
        fresh = _Persisted(lock=state.lock)
        fresh.path = target
        fresh.digest = contents.digest
        fresh.base_stat = _stat(target)
        fresh.log_stat = _stat(_log_path(target))
        fresh.base_size = contents.base_size
        fresh.log_size = contents.log_size
        fresh.ids = loaded.ids
        fresh.next_id = loaded.next_id
        fresh.interned = loaded.interned_counts
        fresh.revision = loaded.revision
        # A torn or ignored log tail, or dropped records: the next save rewrites the file.
        fresh.must_rewrite = (
            not loaded.exact or contents.log_torn or contents.log_ignored is not None
        )
        view.persistence = fresh
        view.dirty = set()
    return True


def _delete(target: Path) -> None:
    for file in (target, _log_path(target)):
        with contextlib.suppress(FileNotFoundError):
            file.unlink()


def _check_fresh(view: View) -> None:
    if view.parent is not None:
        msg = "load() needs a database, not a snapshot"
        raise UsageError(msg)
    with view.lock:
        # Snapshots dropped since the last commit are let go of now.
        view.sync.sweep(view, force=True)
    if (
        view.revision != 0
        or any(view.tables.values())
        or any(table.values for table in view.family.interned.values())
        or view.readers.entries
    ):
        msg = (
            f"load() needs a new {type(view.db).__name__} with no state: this one has "
            f"inputs, memos, interned values or snapshots already (revision {view.revision})"
        )
        raise UsageError(msg)


def _swap(view: View, loaded: _Loaded) -> None:
    """Install *loaded* into *view* in one step (on the event loop's thread)."""
    with view.lock:
        _check_fresh(view)
        input_bytes = 0
        interned_bytes = 0
        if view.limit is not None:
            for table in loaded.tables.values():
                for cell in table.values():
                    if isinstance(cell, InputCell) and cell.value is not ABSENT:
                        cell.size = sizeof(cell.key) + sizeof(cell.value)
                        input_bytes += cell.size
            interned_bytes = sum(
                sizeof(value) for table in loaded.interned.values() for value in table.values
            )
            if input_bytes + interned_bytes > view.limit:
                msg = (
                    f"{type(view.db).__name__}: the cache's state is "
                    f"{input_bytes + interned_bytes:,} bytes, over "
                    f"max_state_bytes={view.limit:,}"
                )
                raise LimitExceededError(msg)
        for name, cells in loaded.tables.items():
            # In place: handles hold on to their tables.
            view.table(name).update(cells)
        family = view.family
        with family.lock:
            for name, values in loaded.interned.items():
                mine = family.intern_table(name)
                mine.ids.update(values.ids)
                mine.values.extend(values.values)
            family.interned_bytes += interned_bytes
        view.input_bytes = input_bytes
        view.last_changed[:] = loaded.last_changed
        for table in loaded.tables.values():
            for cell in table.values():
                if (
                    isinstance(cell, QueryCell)
                    and cell.ingredient.lru is not None
                    and cell.verified_at != NEVER
                ):
                    view.track_lru(cell)
        view.revision = loaded.revision


# -- summaries (python -m picante inspect) ---------------------------------------------------


def read_summary(path: str | os.PathLike[str]) -> dict[str, object]:
    """
    Summarize the cache file *path* and its log without a database class.

    Returns a JSON-ready dict: database, format, revision, the sections (kind, records,
    encoded bytes, fingerprints), and the log (entries, bytes, torn tail).

    Raises:
        CacheError: The file is missing or corrupt; the message says why.
    """
    target = Path(path)
    try:
        contents = _read_files(target, None)
        if contents is None:
            msg = "no such file"
            raise _Corrupt(msg)
        merged, revision, _ = _merge(contents)
    except _Corrupt as error:
        msg = f"{target}: {error}"
        raise CacheError(msg) from None
    sizes: dict[str, int] = {}
    for section in contents.payload["sections"]:
        sizes[section["name"]] = len(orjson.dumps(section))
    sections: list[dict[str, object]] = []
    for name, entry in merged.items():
        summary: dict[str, object] = {
            "name": name,
            "kind": entry["kind"],
            "records": len(entry["values"] if entry["kind"] == "interned" else entry["records"]),
            "bytes": sizes.get(name, 0),
            "schema": entry["schema"],
        }
        if entry["code"] is not None:
            summary["code"] = entry["code"]
        sections.append(summary)
    return {
        "path": str(target),
        "database": contents.payload.get("database"),
        "format": FORMAT_VERSION,
        "revision": revision,
        "bytes": contents.base_size,
        "sections": sections,
        "log": {
            "entries": len(contents.entries),
            "bytes": contents.log_size,
            "torn_tail": contents.log_torn,
            "ignored": contents.log_ignored,
        },
    }
