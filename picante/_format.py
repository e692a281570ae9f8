"""
The on-disk format of cache files (format 1): headers, records, atomic writes, the log.

    base file   "PICANTE\\n" | u16 format | u64 payload length | blake2b-128 of payload | payload
    log file    "PICALOG\\n" | u16 format | blake2b-128 of the base's payload
                then entries: u32 payload length | blake2b-128 of payload | payload

Every payload is JSON (orjson): the base holds the database's qualified name, its revision,
its durability watermarks and one *section* per ingredient (its name, kind, schema
fingerprint, code fingerprint for queries, and records). Records refer to each other by
integer ids: a memo's dependencies are ids. An entry of the log (`<path>.log`) holds the
records that changed since the previous save, under the same ids (new records get new
ids), and the revision then. The log is bound to one base by the base's digest, so a log
left over from an older base is ignored.

On the wire a record is a JSON array, told apart by its section's kind; in memory it is a
named tuple (`InputRecord`, `MemoRecord`) whose fields define the positions, with
`to_wire()` / `from_wire()` to convert (`save` builds the wire lists in that order
itself). An interned section holds a run of values instead
(`InternedRun`: the table's values from index `start` on).

Invariants: nothing is parsed before its digest matches; a reader checks the shape of what
it reads (`Corrupt` says what is wrong) and never executes anything from the file; a base
is replaced only by an atomic rename, and the log only grows (a torn last entry is
ignored). The type of each field is checked where a section is decoded (`_persist`), so a
section that is dropped is never looked into. Nothing here knows a database.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, NamedTuple, cast

import attrs
import orjson

from ._errors import CacheError
from ._store import Durability


if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self


__all__ = [
    "FORMAT_VERSION",
    "HEADER",
    "MAX_ID",
    "Corrupt",
    "FileContents",
    "InputRecord",
    "InternedRun",
    "MemoRecord",
    "Record",
    "Section",
    "append",
    "base_bytes",
    "entry_bytes",
    "expect",
    "file_stat",
    "is_bool",
    "is_int",
    "is_list",
    "log_path",
    "merge",
    "read_files",
    "read_summary",
    "wire_section",
    "write_atomic",
]

FORMAT_VERSION: Final = 1
_MAGIC: Final = b"PICANTE\n"
_LOG_MAGIC: Final = b"PICALOG\n"
HEADER: Final = struct.Struct(">8sHQ16s")
_LOG_HEADER: Final = struct.Struct(">8sH16s")
_ENTRY: Final = struct.Struct(">I16s")
MAX_ID: Final = 2**53
"""Record ids and revisions stay below this (exact in any JSON reader)."""


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def log_path(path: Path) -> Path:
    """The log of the cache file *path*: `<path>.log`."""
    return path.with_name(path.name + ".log")


def file_stat(path: Path) -> tuple[int, int, int] | None:
    """(size, mtime, inode) of *path*, to tell whether someone else changed it; `None`: none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class Corrupt(Exception):  # noqa: N818 - internal signal, turned into CacheError
    """The file cannot be read; the message says why."""


def expect(condition: bool, what: str) -> None:
    """Raise `Corrupt` ("malformed payload: *what*") unless *condition* holds."""
    if not condition:
        msg = f"malformed payload: {what}"
        raise Corrupt(msg)


def is_int(value: object) -> bool:
    """Exactly an `int` (JSON has no other integers; `True` is not one)."""
    return type(value) is int


def is_bool(value: object) -> bool:
    """Exactly a `bool`."""
    return type(value) is bool


def is_list(value: object) -> bool:
    """Exactly a `list` (a JSON array)."""
    return type(value) is list


# -- records ----------------------------------------------------------------------------------
#
# Named tuples, the cheapest named type to build and unpack (P9 loads 200,000 of them).
# Fields hold JSON-ready data: keys and values as the codec dumped them. `save` builds the
# wire lists directly in `to_wire`'s order: a record object per saved cell cost P9's
# full save a third of its time.


class InputRecord(NamedTuple):
    """One input key. Wire: `[id, key, value, present, changed_at]`."""

    id: int
    key: object
    value: object
    """The dumped value; `None` when absent."""
    present: bool
    """Whether the key has a value (`False`: set, then removed)."""
    changed_at: int

    def to_wire(self) -> list[object]:
        return list(self)

    @classmethod
    def from_wire(cls, raw: object, where: str) -> Self:
        """The record *raw* holds, checked for shape only (a list of 5, an integer id)."""
        return cls._make(_fields(raw, 5, where))


class MemoRecord(NamedTuple):
    """
    One memo. Wire: `[id, key, value, has_value, verified_at, changed_at, durability, deps]`.
    """

    id: int
    key: object
    value: object
    """The dumped value; `None` without one (evicted, failed, or `persist=False`)."""
    has_value: bool
    verified_at: int
    changed_at: int
    durability: int
    """`int(Durability)`: 0, 1 or 2."""
    deps: list[int]
    """The ids of its dependencies, in the order they were read (-1: one not saved)."""

    def to_wire(self) -> list[object]:
        return list(self)

    @classmethod
    def from_wire(cls, raw: object, where: str) -> Self:
        """The record *raw* holds, checked for shape only (a list of 8, an integer id)."""
        return cls._make(_fields(raw, 8, where))


Record = InputRecord | MemoRecord


def _fields(raw: object, width: int, where: str) -> list[Any]:
    expect(type(raw) is list, f"{where}: a record")
    fields = cast("list[Any]", raw)
    expect(len(fields) == width and is_int(fields[0]), f"{where}: a record")
    return fields


class InternedRun(NamedTuple):
    """An interned table's values from index `start` on (all of them in a base file)."""

    start: int
    values: list[object]


def wire_section(
    name: str,
    kind: str,
    schema: str,
    code: str | None,
    *,
    records: list[list[object]] | None,
    run: InternedRun | None,
) -> dict[str, object]:
    """The JSON-ready section of an ingredient: its records (wire form), or its run."""
    section: dict[str, object] = {"name": name, "kind": kind, "schema": schema}
    if kind == "interned":
        start, values = run or InternedRun(0, [])
        section["start"] = start
        section["values"] = values
    else:
        if code is not None:
            section["code"] = code
        section["records"] = [] if records is None else records
    return section


# -- writing ----------------------------------------------------------------------------------


def base_bytes(payload: bytes) -> tuple[bytes, bytes]:
    """The header of a base file holding *payload*, and the payload's digest."""
    digest = _digest(payload)
    return HEADER.pack(_MAGIC, FORMAT_VERSION, len(payload), digest), digest


def entry_bytes(payload: bytes, base_digest: bytes) -> tuple[bytes, bytes]:
    """A log entry holding *payload*, and the header of a new log for the base *base_digest*."""
    header = _LOG_HEADER.pack(_LOG_MAGIC, FORMAT_VERSION, base_digest)
    return _ENTRY.pack(len(payload), _digest(payload)) + payload, header


def write_atomic(target: Path, data: bytes) -> None:
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
        os.unlink(log_path(target))
    _fsync_directory(directory)


def append(log: Path, header: bytes, entry: bytes) -> int:
    """Append *entry* to *log* (creating it with *header*); fsync; return the log's size."""
    # O_NOFOLLOW: a symlink planted at the log must not redirect the append elsewhere.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(log, flags, 0o644), "ab") as file:
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


# -- reading ----------------------------------------------------------------------------------


@attrs.define(slots=True)
class FileContents:
    """A base file and its log, checked and parsed, not yet merged or decoded."""

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
        raise Corrupt(msg) from None
    if type(parsed) is not dict:
        msg = f"the {what} is not a JSON object"
        raise Corrupt(msg)
    return cast("dict[str, Any]", parsed)


def _read_base(data: bytes) -> tuple[dict[str, Any], bytes]:
    if not data:
        msg = "the file is empty"
        raise Corrupt(msg)
    if len(data) < HEADER.size:
        if not _MAGIC.startswith(data[: len(_MAGIC)]):
            msg = "not a picante cache file (wrong magic bytes)"
            raise Corrupt(msg)
        msg = f"truncated: {len(data)} bytes, shorter than the {HEADER.size}-byte header"
        raise Corrupt(msg)
    magic, version, length, digest = HEADER.unpack_from(data)
    if magic != _MAGIC:
        msg = "not a picante cache file (wrong magic bytes)"
        raise Corrupt(msg)
    if version != FORMAT_VERSION:
        msg = f"format version {version}; this picante reads version {FORMAT_VERSION}"
        raise Corrupt(msg)
    payload = data[HEADER.size :]
    if len(payload) != length:
        msg = (
            f"truncated or extended: the header says {length:,} payload bytes, "
            f"found {len(payload):,}"
        )
        raise Corrupt(msg)
    if _digest(payload) != digest:
        msg = "checksum mismatch: the payload is corrupt"
        raise Corrupt(msg)
    return _parse_json(payload, "payload"), digest


def _read_log(data: bytes, digest: bytes) -> tuple[list[dict[str, Any]], int, bool, str | None]:
    """Parse a log: (entries, bytes used, torn tail?, why the whole log was ignored)."""
    if len(data) < _LOG_HEADER.size:
        return [], 0, bool(data), None if not data else "torn header"
    magic, version, base = _LOG_HEADER.unpack_from(data)
    if magic != _LOG_MAGIC or version != FORMAT_VERSION:
        msg = "not a picante cache log (wrong magic bytes or version)"
        raise Corrupt(msg)
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
            raise Corrupt(msg)
        entries.append(_parse_json(payload, f"log entry {len(entries) + 1}"))
        offset = start + length
    return entries, offset, False, None


def _open(path: Path, *, follow: bool) -> int | None:
    """Open *path* to read (not following a last symlink unless *follow*); `None`: none."""
    # O_NONBLOCK: a FIFO put at the path must not block the open; a regular file ignores it.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:
            msg = f"{path.name} is a symbolic link: a log is never read or written through one"
            raise Corrupt(msg) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        msg = f"{path.name} is not a regular file (a directory?)"
        raise Corrupt(msg)
    return fd


def _read(file: BinaryIO, limit: int | None) -> bytes:
    """Read *file* to its end, or *limit* + 1 bytes at most (a file may grow meanwhile)."""
    return file.read() if limit is None else file.read(limit + 1)


def _over(target: Path, size: int, max_bytes: int) -> CacheError:
    msg = f"{target}: the cache takes {size:,} bytes or more, over max_bytes={max_bytes:,}"
    return CacheError(msg)


def read_files(target: Path, max_bytes: int | None) -> FileContents | None:
    """
    Read and check base and log (in a worker thread). `None`: no file.

    With *max_bytes*, sizes are checked before anything is read, and each read is bounded,
    so a file too large (or growing meanwhile) is refused without holding it in memory.
    A directory or other non-regular file at either path, or a log that is a symbolic
    link, is `Corrupt`.
    """
    fd = _open(target, follow=True)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as base:
        log_fd = _open(log_path(target), follow=False)
        log_file = None if log_fd is None else os.fdopen(log_fd, "rb")
        with log_file or contextlib.nullcontext():
            size = os.fstat(fd).st_size
            log_size = 0 if log_fd is None else os.fstat(log_fd).st_size
            if max_bytes is not None and size + log_size > max_bytes:
                raise _over(target, size + log_size, max_bytes)
            data = _read(base, max_bytes)
            log_data = (
                b""
                if log_file is None
                else _read(log_file, None if max_bytes is None else max_bytes - len(data))
            )
    if max_bytes is not None and len(data) + len(log_data) > max_bytes:
        raise _over(target, len(data) + len(log_data), max_bytes)
    payload, digest = _read_base(data)
    entries, used, torn, ignored = _read_log(log_data, digest)
    return FileContents(payload, digest, len(data), entries, used, torn, ignored)


@attrs.define(slots=True, eq=False)
class Section:
    """One ingredient's section, base and log merged: records by id, or interned values."""

    kind: str
    """"input", "query" or "interned"."""
    schema: str
    code: str | None
    records: dict[int, Record] = attrs.field(factory=dict[int, Record])
    """Input or memo records by id; a later log entry's record replaces an earlier one."""
    values: list[object] = attrs.field(factory=list[object])
    """An interned table's values, in id order."""

    def add_records(self, name: str, records: list[Any], *, replace: bool) -> None:
        """
        Add *records* (wire form) by id, checked for shape like `from_wire`.

        Only a log entry may *replace* a record of the same id: a base lists each once.
        """
        # `from_wire` inlined, and the message built once: P9 loads 200,000 records.
        record_type = InputRecord if self.kind == "input" else MemoRecord
        width = len(record_type._fields)
        where = f"section {name}: a record"
        # `_make` without its Python frame: the width is checked here.
        new = cast("Callable[[type[Record], list[Any]], Record]", tuple.__new__)  # pyright: ignore[reportUnknownMemberType]
        by_id = self.records
        for raw in records:
            if type(raw) is not list or len(raw) != width or type(raw[0]) is not int:  # pyright: ignore[reportUnknownArgumentType]
                expect(False, where)
            by_id[raw[0]] = new(record_type, raw)  # pyright: ignore[reportUnknownArgumentType]
        if not replace and len(by_id) != len(records):
            msg = f"malformed payload: {where} id appears twice"
            raise Corrupt(msg)


def merge(contents: FileContents) -> tuple[dict[str, Section], int, list[int]]:
    """Merge base and log: {section name: merged section}, revision, watermarks."""
    payload = contents.payload
    revision: Any = payload.get("revision")
    last_changed: Any = payload.get("last_changed")
    sections: Any = payload.get("sections")
    expect(is_int(revision) and 0 <= revision < MAX_ID, "revision")
    expect(type(sections) is list, "sections")
    merged: dict[str, Section] = {}
    for raw in sections:
        expect(type(raw) is dict, "a section is not an object")
        name: Any = raw.get("name")
        kind: Any = raw.get("kind")
        expect(type(name) is str and kind in ("input", "query", "interned"), "section name/kind")
        expect(type(raw.get("schema")) is str, f"section {name}: schema")
        expect(name not in merged, f"section {name} appears twice")
        section = Section(kind, raw["schema"], raw.get("code"))
        if kind == "interned":
            values = raw.get("values")
            expect(type(values) is list and raw.get("start") == 0, f"section {name}: values")
            section.values = list(values)
        else:
            records = raw.get("records")
            expect(type(records) is list, f"section {name}: records")
            section.add_records(name, records, replace=False)
        merged[name] = section
    for number, log_entry in enumerate(contents.entries, 1):
        where = f"log entry {number}"
        previous = revision
        revision = log_entry.get("revision")
        last_changed = log_entry.get("last_changed")
        expect(
            is_int(revision)
            and previous <= revision < MAX_ID
            and type(log_entry.get("sections")) is list,
            where,
        )
        for raw in log_entry["sections"]:
            expect(type(raw) is dict, where)
            name = raw.get("name")
            found = merged.get(name) if type(name) is str else None
            if found is None or found.kind != raw.get("kind"):
                msg = f"malformed payload: {where}: no section {name!r} of that kind"
                raise Corrupt(msg)
            if found.kind == "interned":
                values = raw.get("values")
                expect(
                    type(values) is list and raw.get("start") == len(found.values),
                    f"{where}: interned {name}",
                )
                found.values.extend(values)
            else:
                records = raw.get("records")
                expect(type(records) is list, f"{where}: {name}")
                found.add_records(name, records, replace=True)
    expect(type(last_changed) is list and len(last_changed) == len(Durability), "last_changed")
    watermarks = cast("list[object]", last_changed)
    expect(all(type(r) is int and 0 <= r <= revision for r in watermarks), "last_changed")
    return merged, revision, last_changed


# -- summaries (python -m picante inspect) ----------------------------------------------------


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
        contents = read_files(target, None)
        if contents is None:
            msg = "no such file"
            raise Corrupt(msg)
        merged, revision, _ = merge(contents)
    except Corrupt as error:
        msg = f"{target}: {error}"
        raise CacheError(msg) from None
    sizes: dict[str, int] = {}
    for section in contents.payload["sections"]:
        sizes[section["name"]] = len(orjson.dumps(section))
    sections: list[dict[str, object]] = []
    for name, section in merged.items():
        summary: dict[str, object] = {
            "name": name,
            "kind": section.kind,
            "records": len(section.values if section.kind == "interned" else section.records),
            "bytes": sizes.get(name, 0),
            "schema": section.schema,
        }
        if section.code is not None:
            summary["code"] = section.code
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
