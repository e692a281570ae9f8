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
ids), the ids of records deleted since (a section's `deleted`: `picante.sweep`), and the
revision then. The log is bound to one base by the base's digest, so a log
left over from an older base is ignored. A query section of a database that accumulates
(`picante.accumulate`) also lists, under `accumulated`, what each memo accumulated, by
record id: its values, and which of its dependencies accumulated (an optional key: its
absence reads as none, and the schema fingerprints of such sections differ, so a picante
that does not know the key never decodes them).

On the wire a record is a JSON array, told apart by its section's kind. Its positions are
the fields of a named tuple (`InputRecord`, `MemoRecord`), with `to_wire()` / `from_wire()`
to convert. The bulk paths keep the wire form and unpack it in field order: `save` builds
the lists itself, and a merged `Section` holds them as read (a tuple per record would cost
P9's load 6 %). An interned section holds a run of values instead (`InternedRun`: the
table's values from index `start` on).

Invariants: nothing is parsed before its digest matches; a reader checks the shape of what
it reads (`Corrupt` says what is wrong) and never executes anything from the file; a base is
replaced only by an atomic rename, and the log only grows (a torn last entry is ignored),
under the lock `<path>.lock`, by a save that undoes all it did if it fails. The type of each
field is checked where a section is decoded (`_persist`), so a section that is dropped is
never looked into. Nothing here knows a database.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import os
import secrets
import stat
import struct
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, NamedTuple, cast

import attrs
import orjson

from ._errors import CacheError
from ._store import Durability


if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Self


__all__ = [
    "FORMAT_VERSION",
    "HEADER",
    "MAX_ID",
    "Aborted",
    "Corrupt",
    "FileContents",
    "FileOps",
    "InputRecord",
    "InternedRun",
    "MemoRecord",
    "Record",
    "Section",
    "Stat",
    "Written",
    "abort",
    "append",
    "base_bytes",
    "entry_bytes",
    "expect",
    "file_stat",
    "is_bool",
    "is_int",
    "is_list",
    "lock_path",
    "locked",
    "log_path",
    "merge",
    "ops",
    "read_files",
    "read_summary",
    "wire_section",
    "write_base",
]

FORMAT_VERSION: Final = 2
"""
The format `save` writes. Format 2 adds to format 1 a memo durability of -1 (it read the
outside world) and log sections' `deleted` ids (`picante.sweep`).
"""
READABLE: Final = (1, 2)
"""The formats `load` reads. A file of an older one is rewritten whole by the next save."""
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
    """
    `int(Durability)`: 0, 1 or 2; or -1: it read the outside world (a volatile query,
    `report_untracked_read`), so a load opens a revision past the file's, where it is not
    valid: it re-executes on first read.
    """
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
    deleted: list[int] | None = None,
    accumulated: list[list[object]] | None = None,
) -> dict[str, object]:
    """
    The JSON-ready section of an ingredient: its records (wire form), or its run; in a
    log entry, also the ids of records deleted since (dropped by `picante.sweep`); for a
    query, what its memos accumulated (`picante.accumulate`): `[id, [value, ...],
    [position, ...]]` for each memo of *records* with values or accumulating reads (the
    positions of those among its dependencies).
    """
    section: dict[str, object] = {"name": name, "kind": kind, "schema": schema}
    if kind == "interned":
        start, values = run or InternedRun(0, [])
        section["start"] = start
        section["values"] = values
    else:
        if code is not None:
            section["code"] = code
        section["records"] = [] if records is None else records
        if deleted:
            section["deleted"] = deleted
        if accumulated:
            section["accumulated"] = accumulated
    return section


# -- writing ----------------------------------------------------------------------------------
#
# A save changes the files only under the sidecar lock `<path>.lock` (an OS lock, so two
# processes, or two databases in one process, take turns), and either completes or leaves
# the base and the log byte-identical to what they were: every step is undone on failure,
# and on cancellation (`abort`, set by the awaiting task) noticed before the save returns.


class FileOps:
    """
    The file operations a save performs, in one place so that a test can make any fail.

    Reading is not here: a failed read changes nothing.
    """

    def __init__(self) -> None:
        self.open: Callable[..., int] = os.open
        self.write: Callable[[int, bytes | memoryview], int] = os.write
        self.fsync: Callable[[int], None] = os.fsync
        self.ftruncate: Callable[[int, int], None] = os.ftruncate
        self.fchmod: Callable[[int, int], None] = os.fchmod
        self.link: Callable[[Path, Path], None] = os.link
        self.replace: Callable[[Path, Path], None] = os.replace
        self.unlink: Callable[[Path], None] = os.unlink
        self.flock: Callable[[int, int], None] = _flock


def _flock(fd: int, operation: int) -> None:
    if sys.platform != "win32":
        fcntl.flock(fd, operation)


ops: Final = FileOps()
"""The file operations of every save (tests replace its attributes)."""

abort: Final = contextvars.ContextVar[threading.Event | None]("abort", default=None)
"""Set (by the task awaiting a save) when the save must leave no trace: it is cancelled."""


class Aborted(Exception):  # noqa: N818 - a signal, turned back into CancelledError
    """The save was cancelled before it completed; everything it did is undone."""


def _check_abort() -> None:
    event = abort.get()
    if event is not None and event.is_set():
        raise Aborted


Stat = tuple[int, int, int]
"""(size, mtime in ns, inode) of a file: whether someone changed it since."""


def _stat_of(st: os.stat_result) -> Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def file_stat(path: Path) -> Stat | None:
    """The `Stat` of *path*; `None`: no such file."""
    try:
        return _stat_of(os.stat(path))
    except FileNotFoundError:
        return None


def lock_path(path: Path) -> Path:
    """The lock of the cache file *path*: `<path>.lock`, never removed."""
    return path.with_name(path.name + ".lock")


_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_NO_LINKS: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})
_LOCK_EX: Final = 2  # fcntl.LOCK_EX, the same on every POSIX system


@contextlib.contextmanager
def locked(target: Path) -> Generator[None]:
    """Hold the lock of *target* (blocking: call it in a worker thread)."""
    fd = ops.open(lock_path(target), os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        ops.flock(fd, _LOCK_EX)
        yield  # Closing the descriptor releases the lock.
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # A short write is legal: write the rest.
        view = view[ops.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Some platforms cannot open directories.
        return
    try:
        ops.fsync(fd)
    finally:
        os.close(fd)


def base_bytes(payload: bytes) -> tuple[bytes, bytes]:
    """The header of a base file holding *payload*, and the payload's digest."""
    digest = _digest(payload)
    return HEADER.pack(_MAGIC, FORMAT_VERSION, len(payload), digest), digest


def entry_bytes(payload: bytes, base_digest: bytes) -> tuple[bytes, bytes]:
    """A log entry holding *payload*, and the header of a new log for the base *base_digest*."""
    header = _LOG_HEADER.pack(_LOG_MAGIC, FORMAT_VERSION, base_digest)
    return _ENTRY.pack(len(payload), _digest(payload)) + payload, header


def _temp_name(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.{kind}")


def write_base(target: Path, data: bytes) -> Stat:
    """
    Replace *target* by *data* and remove its log, under its lock, all or nothing.

    A temporary file is written and fsynced, the old base is kept as a hard link and the old
    log renamed aside, the new base renamed in, the directory fsynced: then the aside files
    go. A failure or cancellation before that puts both back. (A crash in between leaves the
    new base with the old log, which `read_files` ignores: it names the old base's digest.)
    Returns the new base's `Stat`.
    """
    directory = target.parent
    log = log_path(target)
    with locked(target):
        _check_abort()
        temp = _temp_name(target, "tmp")
        # The cache gets the mode of the file it replaces, else the usual 0644.
        mode = 0o644
        with contextlib.suppress(FileNotFoundError):
            mode = os.stat(target).st_mode & 0o777
        fd = ops.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        old_base: Path | None = None
        old_log: Path | None = None
        had_base = replaced = False
        try:
            try:
                ops.fchmod(fd, mode)
                _write_all(fd, data)
                ops.fsync(fd)
            finally:
                os.close(fd)
            aside = _temp_name(target, "old")
            try:
                ops.link(target, aside)
                old_base = aside
            except FileNotFoundError:
                pass
            except OSError as error:
                if error.errno not in _NO_LINKS:
                    raise
                # A file system without hard links: the old base cannot be kept to put
                # back, and a failure after the rename leaves the new one (with no log).
                had_base = True
            ops.replace(temp, target)
            replaced = True
            aside = _temp_name(log, "old")
            try:
                ops.replace(log, aside)
                old_log = aside
            except FileNotFoundError:
                pass
            _fsync_directory(directory)
            _check_abort()
            stat = _stat_of(os.stat(target))
        except BaseException:
            # Undo in reverse, each step on its own; an undo that fails too cannot be
            # helped (and leaves consistent files: the log names the base it belongs to).
            undo: list[tuple[Callable[..., None], tuple[Path, ...]]] = []
            if old_log is not None:
                undo.append((ops.replace, (old_log, log)))
            if replaced and old_base is not None:
                undo.append((ops.replace, (old_base, target)))
            elif replaced and not had_base:
                undo.append((ops.unlink, (target,)))
            elif old_base is not None:
                undo.append((ops.unlink, (old_base,)))
            if not replaced:
                undo.append((ops.unlink, (temp,)))
            undo.append((_fsync_directory, (directory,)))
            for step, paths in undo:
                with contextlib.suppress(OSError):
                    step(*paths)
            raise
        # Done: what is left aside is garbage, and failing to remove it fails nothing.
        for leftover in (old_base, old_log):
            if leftover is not None:
                with contextlib.suppress(OSError):
                    ops.unlink(leftover)
        return stat


@attrs.frozen
class Written:
    """What a save left on disk, for the next save to check that nobody changed it."""

    digest: bytes
    """The digest of the base's payload."""
    base_stat: Stat | None
    log_stat: Stat | None
    log_size: int
    """The size of the log (0: none), as far as its entries were read or written."""


def _unchanged(target: Path, log: Path, last: Written) -> bool:
    """Whether base and log are exactly what *last* says (checked under the lock)."""
    if file_stat(target) != last.base_stat or file_stat(log) != last.log_stat:
        return False
    if (last.log_stat[0] if last.log_stat else 0) != last.log_size:
        return False
    try:
        with open(target, "rb") as file:
            header = file.read(HEADER.size)
    except OSError:
        return False
    return len(header) == HEADER.size and HEADER.unpack(header)[3] == last.digest


def append(target: Path, header: bytes, entry: bytes | None, last: Written) -> Written | None:
    """
    Append *entry* to the log of *target* under its lock, all or nothing; fsync.

    Only if base and log are exactly as *last* says (this writer wrote or read them last):
    else nothing is written and `None` is returned, and the caller writes a whole file.
    No *entry*: only that check.
    A new log starts with *header*. On failure or cancellation, the log is truncated back
    to its old size (or removed, if this created it). Returns what is on disk now.
    """
    log = log_path(target)
    with locked(target):
        _check_abort()
        if not _unchanged(target, log, last):
            return None
        if entry is None:
            return last
        created = last.log_stat is None
        # A log that holds nothing yet (empty: a crash right after creating it) gets the
        # header too.
        fresh = created or last.log_size == 0
        flags = os.O_WRONLY | os.O_APPEND | _NOFOLLOW | _CLOEXEC
        fd = ops.open(log, flags | (os.O_CREAT | os.O_EXCL if created else 0), 0o644)
        try:
            try:
                _write_all(fd, header + entry if fresh else entry)
                ops.fsync(fd)
                if created:
                    _fsync_directory(log.parent)
                _check_abort()
                log_stat = _stat_of(os.fstat(fd))
                return attrs.evolve(last, log_stat=log_stat, log_size=log_stat[0])
            except BaseException:
                with contextlib.suppress(OSError):
                    if created:
                        ops.unlink(log)
                        _fsync_directory(log.parent)
                    else:
                        ops.ftruncate(fd, last.log_size)
                        ops.fsync(fd)
                raise
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
    version: int = FORMAT_VERSION
    """The base file's format (`READABLE`)."""


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


def _read_base(data: bytes) -> tuple[dict[str, Any], bytes, int]:
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
    if version not in READABLE:
        msg = f"format version {version}; this picante reads versions 1 to {FORMAT_VERSION}"
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
    return _parse_json(payload, "payload"), digest, version


def _read_log(data: bytes, digest: bytes) -> tuple[list[dict[str, Any]], int, bool, str | None]:
    """Parse a log: (entries, bytes used, torn tail?, why the whole log was ignored)."""
    if len(data) < _LOG_HEADER.size:
        return [], 0, bool(data), None if not data else "torn header"
    magic, version, base = _LOG_HEADER.unpack_from(data)
    if magic != _LOG_MAGIC or version not in READABLE:
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
    payload, digest, version = _read_base(data)
    entries, used, torn, ignored = _read_log(log_data, digest)
    return FileContents(payload, digest, len(data), entries, used, torn, ignored, version)


@attrs.define(slots=True, eq=False)
class Section:
    """One ingredient's section, base and log merged: records by id, or interned values."""

    kind: str
    """"input", "query" or "interned"."""
    schema: str
    code: str | None
    records: dict[int, list[Any]] = attrs.field(factory=dict[int, list[Any]])
    """
    Input or memo records by id, in wire form (fields in `InputRecord` or `MemoRecord`
    order, shape checked); a later log entry's record replaces an earlier one.
    """
    values: list[object] = attrs.field(factory=list[object])
    """An interned table's values, in id order."""
    accumulated: dict[int, tuple[list[object], list[int]]] = attrs.field(
        factory=dict[int, tuple[list[object], list[int]]]
    )
    """
    What a query's memos accumulated, by record id, for those that did: the values
    (dumped) and the positions of the accumulating reads among the record's dependencies.
    A record a later log entry replaces keeps only what that entry gives it.
    """

    def add_records(self, name: str, records: list[Any], *, replace: bool) -> None:
        """
        Add *records* (wire form) by id, checked for shape like `from_wire`.

        Only a log entry may *replace* a record of the same id: a base lists each once.
        """
        # `from_wire` inlined, and the message built once: P9 loads 200,000 records.
        record_type = InputRecord if self.kind == "input" else MemoRecord
        width = len(record_type._fields)
        where = f"section {name}: a record"
        by_id = self.records
        for raw in records:
            if type(raw) is not list or len(raw) != width or type(raw[0]) is not int:  # pyright: ignore[reportUnknownArgumentType]
                expect(False, where)
            by_id[raw[0]] = raw  # pyright: ignore[reportUnknownArgumentType]
        if not replace and len(by_id) != len(records):
            msg = f"malformed payload: {where} id appears twice"
            raise Corrupt(msg)
        if replace and self.accumulated:
            # Saved again: the values the record had go (the entry gives its new ones).
            for raw in records:
                self.accumulated.pop(raw[0], None)

    def add_accumulated(self, name: str, raw: object) -> None:
        """
        Add a section's `accumulated` (`[[id, [value, ...], [position, ...]], ...]`),
        checked for shape.
        """
        where = f"section {name}: accumulated values"
        expect(type(raw) is list, where)
        for item in cast("list[object]", raw):
            expect(type(item) is list and len(cast("list[object]", item)) == 3, where)
            number, values, positions = cast("list[object]", item)
            expect(is_int(number) and type(values) is list and type(positions) is list, where)
            self.accumulated[cast("int", number)] = (
                cast("list[object]", values),
                cast("list[int]", positions),
            )


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
            if "accumulated" in raw:
                section.add_accumulated(name, raw["accumulated"])
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
                if "accumulated" in raw:
                    found.add_accumulated(name, raw["accumulated"])
                deleted = raw.get("deleted", [])
                expect(type(deleted) is list, f"{where}: {name}: deleted")
                for record_id in deleted:
                    expect(
                        type(record_id) is int and found.records.pop(record_id, None) is not None,
                        f"{where}: {name}: deleted a record it does not have",
                    )
                    found.accumulated.pop(record_id, None)
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
        "format": contents.version,
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
