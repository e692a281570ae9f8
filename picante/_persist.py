"""
Cache files: `save` and `load`, typed by cattrs, encoded by orjson, safe against crashes.

Layout: persistence is three modules, read in this order:

* `_codecs`: the value codecs (cattrs hooks per ingredient) and the schema and code
  fingerprints;
* `_format`: the on-disk format: headers, the named record types and their wire form,
  atomic write, the log, reading and merging base and log, `read_summary`;
* `_persist` (this module): the orchestration: `save` (capture the view's state as
  records, then write a full file or append a log entry) and `load` (decode, link and
  swap in).

A cache file holds a database's inputs, interned tables and memos (value, revisions,
durability and dependencies), so that a restarted program reuses every memo that is still
valid. Records refer to each other by ids, which a view keeps (`_Persisted`) between saves,
so that the next save appends only what changed (`View.dirty`) to the log.

Saving is atomic: a full save writes a temporary file in the same directory, flushes and
fsyncs it, renames it over the old file and fsyncs the directory, so a crash leaves the
old file or the new one. An incremental save appends one entry and fsyncs; a crash mid-
append leaves a torn last entry, which `load` ignores. When the log grows past half the
base, `save` compacts both into a new base. One lock per view orders its saves and loads;
an OS lock on `<path>.lock` orders the file operations of all writers (`_format`), and a
save that fails or is cancelled undoes them before it raises (`_in_worker`).

Loading never trusts the file: the digest must match before anything is parsed, the
payload is plain JSON (nothing is executed), and a section whose schema or code
fingerprint differs from the running program's is never decoded as if it matched:

* schema changed (key or value types), or the ingredient is gone: the section is dropped;
* code changed (a query's bytecode, constants, names or `version=`, or the helpers of
  your own code it reaches: `_fingerprints`): its memos are kept as *stale*: they
  re-execute on first use, and keep their old value only to backdate (so dependents
  are not recomputed if the new code gives the same value);
* a memo that depends on a dropped record is stale too.

Before anything is installed, the record graph is checked (ids unique and in range,
stamps within the file's revision, no dependency loop but a converged cycle's, which the
runtime checks as one: `_loops`), so a crafted file cannot make a later read spin.
Everything is decoded and built aside, then swapped into the database in one step; on a
database with state, its inputs are then set again on top as one commit (`_swap`,
`load`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import attrs
import orjson

from ._codecs import Codec, Mismatch, codecs_of, database_name, legacy_names
from ._errors import CacheError, LimitExceededError, UsageError, fmt_key
from ._format import (
    FORMAT_VERSION,
    HEADER,
    MAX_ID,
    Aborted,
    Corrupt,
    FileContents,
    InternedRun,
    MemoRecord,
    Section,
    Written,
    abort,
    append,
    base_bytes,
    entry_bytes,
    expect,
    file_stat,
    log_path,
    merge,
    read_files,
    read_summary,
    wire_section,
    write_base,
)
from ._runtime import iter_records, spec_of, view_of
from ._store import (
    ABSENT,
    EVICTED,
    NEVER,
    UNTRACKED,
    Durability,
    InputCell,
    InternTable,
    QueryCell,
    add_dependent,
    dependents_of,
    deps_of,
    sizeof,
)


if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, KeysView

    from ._runtime import Table, View
    from ._store import Revision

    _T = TypeVar("_T")


__all__ = ["FORMAT_VERSION", "load", "load_plan", "read_summary", "save"]

_COMPACT_RATIO: Final = 0.5
"""A save compacts base and log into a new base once the log passes this share of it."""
_DURABILITIES: Final[dict[int, int]] = {UNTRACKED: UNTRACKED} | {int(d): d for d in Durability}
"""A memo record's durability field: `int(Durability)`, or -1 (`UNTRACKED`)."""

OnCorrupt = Literal["error", "ignore", "delete"]

_DISCARDED: Final = {"ignore": "ignored a", "delete": "deleted (with its log) a"}

logger: Final = logging.getLogger("picante")
"""What `save` and `load` leave out or discard is told here (no handlers are configured)."""


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
    # The ids of the records `sweep` dropped since the last save, per section.
    deleted: dict[str, list[int]] = attrs.field(factory=dict[str, list[int]])
    # While a full save writes: the cells dropped meanwhile (they are in the file it
    # writes, under ids of its own: forgotten in its state once it is done).
    dropped: list[InputCell | QueryCell] | None = None

    def forget(self, cells: list[InputCell | QueryCell]) -> None:
        """Forget the records of *cells* (dropped by `sweep`): the next save deletes them."""
        if self.dropped is not None:
            self.dropped += cells
        for cell in cells:
            number = self.ids.pop(cell, None)
            if number is not None:
                self.deleted.setdefault(cell.ingredient.name, []).append(number)


def _persisted(view: View) -> _Persisted:
    state = view.persistence
    if state is None:
        state = view.persistence = _Persisted()
    return state  # type: ignore[no-any-return]


# -- capture: the view's state as records ---------------------------------------------------


class _Capture:
    """Builds the records of a save, assigning ids to the cells the file does not have."""

    def __init__(
        self, codecs: dict[str, Codec], state: _Persisted, entries: dict[QueryCell, Any] | None
    ) -> None:
        self.codecs = codecs
        # The view's accumulated values (`_accumulate.Accumulations.entries`), if it keeps
        # any: read by `accumulated` (with no await since `add`: no query ran meanwhile).
        self.entries = entries
        self.ids = state.ids
        self.next_id = state.next_id
        # Per section: the records, and the cells they came from (to name a bad one).
        # Records in their wire form (`InputRecord.to_wire()`, `MemoRecord.to_wire()`),
        # built directly: P9 saves 200,000, and a named tuple each cost a third of its time.
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
            # Keys and values of an exact JSON type are checked here, without a call to
            # their dumper (which checks the same): P9 saves 200,000 records.
            key: object = cell.key
            exact_key = codec.exact_key
            if exact_key is None or type(cell.key[0]) is not exact_key:
                key = codec.dump_key(cell.key)
            exact_value = codec.exact_value
            if isinstance(cell, InputCell):
                value = cell.value
                present = value is not ABSENT
                record: list[object] = [  # InputRecord
                    self.ids[cell],
                    key,
                    (value if type(value) is exact_value else codec.dump_value(value))
                    if present
                    else None,
                    present,
                    cell.changed_at,
                ]
            else:
                value = cell.value
                has_value = (
                    value is not EVICTED and cell.failure is None and cell.ingredient.persist
                )
                record = [  # MemoRecord
                    self.ids[cell],
                    key,
                    (value if type(value) is exact_value else codec.dump_value(value))
                    if has_value
                    else None,
                    has_value,
                    cell.verified_at,
                    cell.changed_at,
                    int(cell.durability),
                    [self.id_of(dep) for dep in deps_of(cell)],
                ]
        except Exception as error:
            raise _unserializable(codec.where, cell.key, cell.value, error) from error
        self.records.setdefault(name, []).append(record)
        self.cells.setdefault(name, []).append(cell)

    def accumulated(self, name: str) -> list[list[object]] | None:
        """
        The `accumulated` of section *name*: for each memo with an entry, `[id, values,
        positions of its accumulating reads among its dependencies]`.
        """
        codec = self.codecs[name]
        dump = codec.dump_accumulated
        entries = self.entries
        if dump is None or entries is None:
            return None
        found: list[list[object]] = []
        for cell in self.cells.get(name, ()):
            entry = entries.get(cast("QueryCell", cell))
            if entry is not None:
                own, reads = entry
                positions: list[object] = []
                if reads:
                    index = {dep: i for i, dep in enumerate(deps_of(cast("QueryCell", cell)))}
                    positions = [index[dep] for dep in reads]
                try:
                    found.append([self.ids[cell], dump(own), positions])
                except Exception as error:
                    what = f"{fmt_key(codec.where, cell.key)}: its accumulated values"
                    msg = f"cannot save {what} cannot be converted ({error})"
                    if isinstance(error, Mismatch):
                        msg = f"cannot save {fmt_key(codec.where, cell.key)}: {error}"
                    raise CacheError(msg) from error
        return found


def _entries(view: View) -> dict[QueryCell, Any] | None:
    """The accumulated values *view* keeps (`picante.accumulate`), if it keeps any."""
    return None if view.accumulations is None else view.accumulations.entries


def _unserializable(
    where: str, key: tuple[object, ...], value: object, error: object
) -> CacheError:
    """The error of a record that cannot be saved; *where* is `Class.ingredient`."""
    if isinstance(error, Mismatch):
        # Saved, it would load back as something else (or not at all): refused.
        msg = f"cannot save {fmt_key(where, key)}: {error}"
    else:
        msg = (
            f"cannot save {fmt_key(where, key)}: its {type(value).__qualname__} value "
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
                    where = capture.codecs[name].where
                    raise _unserializable(where, cell.key, cell.value, culprit) from error
        msg = f"cannot encode the cache: {error}"
        raise CacheError(msg) from error


def _sections(
    capture: _Capture, interned: dict[str, InternedRun], deleted: dict[str, list[int]] | None = None
) -> list[dict[str, object]]:
    """The wire form of every ingredient's section, in the order of the class."""
    return [
        wire_section(
            name,
            codec.kind,
            codec.schema,
            codec.code,
            records=capture.records.get(name),
            run=interned.get(name),
            deleted=None if deleted is None else deleted.get(name),
            accumulated=capture.accumulated(name) if codec.kind == "query" else None,
        )
        for name, codec in capture.codecs.items()
    ]


def _interned_since(
    view: View, codecs: dict[str, Codec], done: dict[str, int]
) -> dict[str, InternedRun]:
    """New interned values per table since *done* counts, dumped."""
    found: dict[str, InternedRun] = {}
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
                raise _unserializable(codec.where, (), value, error) from error
        found[name] = InternedRun(start, dumped)
    return found


def _cap(capture: _Capture, max_record_bytes: int | None, target: Path) -> None:
    """Drop memo records whose value encodes to more than *max_record_bytes*."""
    if max_record_bytes is None:
        return
    for name, records in capture.records.items():
        if capture.codecs[name].kind != "query":
            continue
        keep = [
            index
            for index, record in enumerate(records)
            if len(orjson.dumps(MemoRecord.from_wire(record, name).value)) <= max_record_bytes
        ]
        if len(keep) < len(records):
            logger.info(
                "%s: left out %d memos of %s, over max_record_bytes=%d",
                target,
                len(records) - len(keep),
                capture.codecs[name].where,
                max_record_bytes,
            )
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
    File I/O runs in a worker thread, not on the event loop, under an OS lock on
    `<path>.lock`, so that saves to one path (from any process) take turns. A save appends
    only onto the file and log this database last wrote or loaded; if another writer saved
    since, this one writes a whole new file: the last writer wins, and the file never mixes
    two writers' records. A save that fails or is cancelled leaves the file and its log
    byte for byte as they were (a cancelled save first waits for its worker to undo what
    it did), and the next save writes everything since the last successful one.
    Memos being computed are not
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
        CacheError: A key or value cannot be converted, or would not load back identically
            (of the same types: `True` is not an `int`, nan is no JSON number; the message
            names the record, the value and the type), or the inputs alone exceed
            *max_bytes*. The previous file and its log are intact.
        UsageError: *db* is a snapshot, or not a database.
        OSError: The file cannot be written; the previous file and log are intact.
        asyncio.CancelledError: The save was cancelled; the previous file and log are
            intact (or, cancelled once complete, the save stands).
    """
    view = view_of(db, "save")
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
            and state.log_size <= _COMPACT_RATIO * state.base_size
            and await _save_entry(view, target, codecs, state)
        ):
            return
        _log_full_save(state, target)
        await _save_full(
            view,
            target,
            codecs,
            state,
            max_bytes=max_bytes,
            max_record_bytes=max_record_bytes,
        )


async def _in_worker(write: Callable[[], _T], done: Callable[[_T], None]) -> None:
    """
    Run the file operations *write* in a worker thread; then *done* with what it returns.

    Cancelled, the task still waits for the thread (holding the view's lock, so no other
    save starts meanwhile), after asking it to undo what it did (`abort`): it undoes it,
    unless it had already completed, and then *done* runs all the same. Either way the
    cancellation is raised after, and the files hold what the bookkeeping says.
    """
    event = threading.Event()
    token = abort.set(event)
    try:
        future = asyncio.ensure_future(asyncio.to_thread(write))
    finally:
        abort.reset(token)
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait((future,))
        except asyncio.CancelledError:
            cancelled = True
            event.set()
    try:
        result = future.result()
    except Aborted:
        raise asyncio.CancelledError from None
    done(result)
    if cancelled:
        raise asyncio.CancelledError


def _log_full_save(state: _Persisted, target: Path) -> None:
    """Tell a compaction: a full save where the log would have been appended to."""
    if state.path == target and state.log_size > _COMPACT_RATIO * state.base_size:
        logger.info(
            "%s: compacting the file and its log (%d bytes, over half the file's %d)",
            target,
            state.log_size,
            state.base_size,
        )


async def _save_full(
    view: View,
    target: Path,
    codecs: dict[str, Codec],
    state: _Persisted,
    *,
    max_bytes: int | None,
    max_record_bytes: int | None,
) -> None:
    fresh = _Persisted(lock=state.lock)
    # From here on, until this save is written, the file does not match the view.
    state.must_rewrite = True
    with view.lock:
        capture = _Capture(codecs, fresh, _entries(view))
        capture.add(iter_records(view))
        interned = _interned_since(view, codecs, {})
        revision = view.revision
        last_changed = view.last_changed[: len(Durability)]
        # Changes from here on go to the next save's log entry.
        view.dirty = set()
        state.dropped = []
    try:
        _cap(capture, max_record_bytes, target)
        payload_obj: dict[str, object] = {
            "database": database_name(type(view.db)),
            "revision": revision,
            "last_changed": last_changed,
            "sections": _sections(capture, interned),
        }
        payload = _encode(payload_obj, capture)
        if max_bytes is not None and HEADER.size + len(payload) > max_bytes:
            payload = _fit(payload_obj, capture, interned, max_bytes, target)
        header, digest = base_bytes(payload)

        def done(base_stat: tuple[int, int, int]) -> None:
            fresh.path = target
            fresh.digest = digest
            fresh.base_stat = base_stat
            fresh.log_stat = None
            fresh.base_size = len(header) + len(payload)
            fresh.ids = capture.ids
            fresh.next_id = capture.next_id
            fresh.interned = {
                name: start + len(values) for name, (start, values) in interned.items()
            }
            fresh.revision = revision
            fresh.must_rewrite = False
            fresh.forget(state.dropped or [])
            view.persistence = fresh

        # Failed, `state` stays as it was, `must_rewrite`: the next save writes everything.
        await _in_worker(lambda: write_base(target, header + payload), done)
    finally:
        state.dropped = None


def _fit(
    payload_obj: dict[str, object],
    capture: _Capture,
    interned: dict[str, InternedRun],
    max_bytes: int,
    target: Path,
) -> bytes:
    """Drop memos, largest value first, until the payload fits in *max_bytes*."""
    sizes: list[tuple[int, str, int]] = []
    for name, records in capture.records.items():
        if capture.codecs[name].kind == "query":
            sizes.extend((len(orjson.dumps(record)), name, i) for i, record in enumerate(records))
    sizes.sort(reverse=True)
    payload = orjson.dumps(payload_obj)
    excess = HEADER.size + len(payload) - max_bytes
    drop: dict[str, set[int]] = {}
    for size, name, index in sizes:
        if excess <= 0:
            break
        drop.setdefault(name, set()).add(index)
        excess -= size + 1
    for name, indexes in drop.items():
        logger.info(
            "%s: left out %d memos of %s to fit max_bytes=%d",
            target,
            len(indexes),
            capture.codecs[name].where,
            max_bytes,
        )
        records = capture.records[name]
        records[:] = [r for i, r in enumerate(records) if i not in indexes]
        cells = capture.cells[name]
        cells[:] = [c for i, c in enumerate(cells) if i not in indexes]
    payload_obj["sections"] = _sections(capture, interned)
    payload = orjson.dumps(payload_obj)
    if HEADER.size + len(payload) > max_bytes:
        msg = (
            f"the inputs and interned values alone take {HEADER.size + len(payload):,} bytes, "
            f"over max_bytes={max_bytes:,}"
        )
        raise CacheError(msg)
    return payload


async def _save_entry(
    view: View, target: Path, codecs: dict[str, Codec], state: _Persisted
) -> bool:
    """Append what changed since the last save to the log; `False`: a full save is due."""
    # Until this entry is written, the file does not match the view: if this save fails,
    # the next one writes everything (the log is as before: this entry is not in it).
    state.must_rewrite = True
    with view.lock:
        dirty = view.dirty or set()
        view.dirty = set()
        capture = _Capture(codecs, state, _entries(view))
        capture.add(dirty)
        # Records `sweep` dropped since the last save: the entry says so.
        deleted = state.deleted
        state.deleted = {}
        interned = _interned_since(view, codecs, state.interned)
        revision = view.revision
        last_changed = view.last_changed[: len(Durability)]
    entry: bytes | None = None  # Nothing changed: only check that the file is ours.
    header = b""
    if (
        capture.records
        or deleted
        or revision != state.revision
        or any(values for _, values in interned.values())
    ):
        payload_obj: dict[str, object] = {
            "revision": revision,
            "last_changed": last_changed,
            "sections": [
                s
                for s in _sections(capture, interned, deleted)
                if s.get("records") or s.get("values") or s.get("deleted")
            ],
        }
        payload = _encode(payload_obj, capture)
        entry, header = entry_bytes(payload, state.digest)
    last = Written(state.digest, state.base_stat, state.log_stat, state.log_size)
    appended = False

    def done(written: Written | None) -> None:
        nonlocal appended
        if written is None:
            return  # Base or log changed by another writer: write a whole file instead.
        appended = True
        state.log_stat = written.log_stat
        state.log_size = written.log_size
        state.next_id = capture.next_id
        state.interned = {name: start + len(values) for name, (start, values) in interned.items()}
        state.revision = revision
        state.must_rewrite = False

    await _in_worker(lambda: append(target, header, entry, last), done)
    return appended


# -- decoding: from parsed JSON to cells, aside from the database ---------------------------


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
    notes: list[Note] = attrs.field(factory=list["Note"])
    """The sections not loaded as they are: (name, "dropped" or "stale", why)."""
    accumulations: dict[QueryCell, Any] | None = None
    """The memos' accumulated values (`_accumulate.Entry`), for a class that has any."""
    cyclic: list[QueryCell] = attrs.field(factory=list["QueryCell"])
    """The memos of converged cycles (on a dependency loop, or reaching one)."""


Note = tuple[str, Literal["dropped", "stale"], str]


def _decode(
    contents: FileContents,
    codecs: dict[str, Codec],
    db_name: str,
    aliases: frozenset[str] = frozenset(),
    *,
    cycles: bool = False,
) -> _Loaded:
    """
    Build the cells a file describes (in a worker thread); nothing touches the database.

    The file must have been written by a database named *db_name* (or one of *aliases*).
    """
    found = contents.payload.get("database")
    if found != db_name and (type(found) is not str or found not in aliases):
        msg = (
            f"written by database {found!r}, not {db_name!r}; if it belongs to this class, "
            f"give the class that name: @picante.database(name={found!r})"
        )
        raise Corrupt(msg)
    merged, revision, last_changed = merge(contents)
    exact = True
    cells: dict[int, InputCell | QueryCell] = {}
    tables: dict[str, dict[tuple[object, ...], InputCell | QueryCell]] = {}
    interned: dict[str, InternTable] = {}
    memos: list[tuple[QueryCell, list[Any], bool]] = []
    # The memos that accumulated (`accumulates=`): values, positions of accumulating reads.
    accumulated: list[tuple[QueryCell, tuple[Any, ...], list[int]]] | None = None
    notes: list[Note] = []
    # Memo id -> dependency ids, of the sections decoded: checked for loops before linking.
    # The ids of the sections dropped, to check for duplicates all the same.
    dropped: list[KeysView[int]] = []
    graph: dict[int, list[int]] = {}
    for name, section in merged.items():
        codec = codecs.get(name)
        if codec is None or codec.kind != section.kind or codec.schema != section.schema:
            # Gone, or its types changed: never decode it as if it matched (its ids are
            # still checked for duplicates below).
            notes.append((name, "dropped", _why_dropped(section, codec)))
            exact = False
            dropped.append(section.records.keys())
            continue
        if section.kind == "interned":
            try:
                table = InternTable()
                for value in section.values:
                    item = codec.load_value(value)
                    table.ids[type(item), item] = len(table.values)
                    table.values.append(item)
            except Exception as error:  # noqa: BLE001 - undecodable: dropped as cold
                notes.append((name, "dropped", f"decode failure: {error}"))
                exact = False
                continue
            # `save` writes each value once: a repeated one would make two ids for it.
            expect(len(table.ids) == len(table.values), f"{name}: a value appears twice")
            interned[name] = table
            continue
        stale = section.kind == "query" and section.code != codec.code
        if stale:
            notes.append((name, "stale", "code changed: its memos re-execute on first use"))
        exact = exact and not stale
        try:
            table_cells, section_cells, section_memos = _decode_records(
                codec, section, revision, graph, stale=stale
            )
            if codec.load_accumulated is not None:
                found = _decode_accumulated(codec, section, section_cells)
                accumulated = found if accumulated is None else accumulated + found
        except Corrupt:
            raise
        except Exception as error:  # noqa: BLE001 - undecodable: dropped as cold
            notes.append((name, "dropped", f"decode failure: {error}"))
            exact = False
            continue
        tables[name] = table_cells
        count = len(cells)
        cells.update(section_cells)
        expect(len(cells) == count + len(section_cells), "a record id appears in two sections")
        memos += section_memos
    _check_ids(cells, dropped)
    if any(s.kind == "interned" and name not in interned for name, s in merged.items()):
        # An interned table was dropped: its ids may appear in any value. Load nothing.
        everything: list[Note] = [
            (other, "dropped", "an interned table was dropped, so nothing is loaded")
            for other in merged
            if all(other != noted for noted, _, _ in notes)
        ]
        notes += everything
        tables.clear()
        cells.clear()
        memos.clear()
        interned.clear()
        accumulated = None
        exact = False
    loops = _loops(graph)
    if loops and not cycles:
        msg = f"malformed payload: memo dependencies loop (record {min(loops)})"
        raise Corrupt(msg)
    linked, outside = _link(memos, cells)
    exact = linked and exact
    if not exact:
        # Stale memos re-execute; no memo may skip the walk to its dependencies by
        # durability alone, so every watermark moves to a revision of its own.
        revision += 1
        last_changed = [revision] * len(Durability)
    elif outside:
        # Memos that read the outside world re-execute, and the memos that read them
        # (durability LOW) re-check them: a refresh, as for any new process.
        revision += 1
        last_changed[Durability.LOW] = revision
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
        notes,
        None if accumulated is None else _linked_entries(accumulated),
        [cell for memo in sorted(loops) if type(cell := cells[memo]) is QueryCell],
    )


def _why_dropped(section: Section, codec: Codec | None) -> str:
    if codec is None:
        return "unknown ingredient: not in the class (or an input with persist=False)"
    if codec.kind != section.kind:
        return f"schema changed: a {section.kind} in the file, a {codec.kind} in the class"
    return "schema changed: its key or value types differ"


def _report(target: Path, db_name: str, loaded: _Loaded, contents: FileContents) -> None:
    """Log what a load left out: dropped and stale sections, an ignored log or tail."""
    for name, verdict, why in loaded.notes:
        if verdict == "dropped":
            logger.warning("%s: dropped section %s.%s (%s)", target, db_name, name, why)
        else:
            logger.info("%s: %s.%s is stale (%s)", target, db_name, name, why)
    if contents.log_ignored is not None:
        logger.warning("%s: ignored its log (%s)", target, contents.log_ignored)
    if contents.log_torn:
        logger.warning("%s: ignored a torn last log entry (a save was interrupted)", target)


_Memos = list[tuple[QueryCell, list[Any], bool]]
_Table = dict[tuple[object, ...], InputCell | QueryCell]


def _decode_records(
    codec: Codec, section: Section, revision: Revision, graph: dict[int, list[int]], *, stale: bool
) -> tuple[_Table, dict[int, InputCell | QueryCell], _Memos]:
    """
    Decode one section's records: (its table, cells by id, memos with their dep ids).

    Records were checked for shape when read (`_format`); each field is checked here, as
    written by `save`, since only sections that match the program are decoded at all:
    stamps within `[0, revision]` (a memo's `changed_at` may be `NEVER`), dependency ids
    integers (-1: not saved), one record per key. Memos add their dependencies to *graph*.
    """
    if codec.kind == "input":
        table, cells = _decode_inputs(codec, section.records, revision)
        return table, cells, []
    return _decode_memos(codec, section.records, revision, graph, stale=stale)


def _decode_inputs(
    codec: Codec, records: dict[int, list[Any]], revision: Revision
) -> tuple[_Table, dict[int, InputCell | QueryCell]]:
    table: _Table = {}
    cells: dict[int, InputCell | QueryCell] = {}
    ingredient = codec.ingredient
    load_key = codec.load_key
    load_value = codec.load_value
    where = f"{codec.name}: a record"
    # Wire lists unpacked in `InputRecord` order: the fields come from the file, and are
    # checked here.
    for number, raw_key, raw_value, present, changed_at in records.values():
        # The checks inlined (no call per field): P9 loads 100,000 records of each kind.
        if not (type(present) is bool and type(changed_at) is int and 0 <= changed_at <= revision):
            expect(False, where)
        key = load_key(raw_key)
        value = load_value(raw_value) if present else ABSENT
        cell = InputCell(ingredient, key, value, changed_at)
        table[key] = cell
        cells[number] = cell
    expect(len(table) == len(records), f"{codec.name}: two records of one key")
    return table, cells


def _decode_memos(
    codec: Codec,
    records: dict[int, list[Any]],
    revision: Revision,
    graph: dict[int, list[int]],
    *,
    stale: bool,
) -> tuple[_Table, dict[int, InputCell | QueryCell], _Memos]:
    table: _Table = {}
    cells: dict[int, InputCell | QueryCell] = {}
    memos: _Memos = []
    ingredient = codec.ingredient
    load_key = codec.load_key
    load_value = codec.load_value
    where = f"{codec.name}: a record"
    # Wire lists unpacked in `MemoRecord` order: the fields come from the file, and are
    # checked here.
    for record in records.values():
        number, raw_key, raw_value, has_value, verified_at, changed_at, durability, deps = record
        if not (
            type(has_value) is bool
            and type(verified_at) is int
            and type(changed_at) is int
            and 0 <= verified_at <= revision
            and NEVER <= changed_at <= revision
            and durability in _DURABILITIES
            and type(deps) is list
        ):
            expect(False, where)
        deps = cast("list[int]", deps)
        for dep in deps:
            if type(dep) is not int or dep < NEVER:
                expect(False, f"{where}: a dependency id")
        key = load_key(raw_key)
        memo = QueryCell(ingredient, key)
        memo.value = load_value(raw_value) if has_value else EVICTED
        memo.verified_at = verified_at
        memo.changed_at = changed_at
        memo.durability = _DURABILITIES[durability]
        table[key] = memo
        cells[number] = memo
        memos.append((memo, deps, stale))
        graph[number] = deps
    expect(len(table) == len(records), f"{codec.name}: two records of one key")
    return table, cells, memos


def _decode_accumulated(
    codec: Codec, section: Section, cells: dict[int, InputCell | QueryCell]
) -> list[tuple[QueryCell, tuple[Any, ...], list[int]]]:
    """
    The memos of a section that accumulated, each with its values (decoded, of the
    declared type) and the positions of its accumulating reads among its dependencies
    (checked once they are linked: `_linked_entries`).
    """
    load = cast("Callable[[object], tuple[Any, ...]]", codec.load_accumulated)
    found: list[tuple[QueryCell, tuple[Any, ...], list[int]]] = []
    for number, (raw, positions) in section.accumulated.items():
        cell = cells.get(number)
        expect(
            isinstance(cell, QueryCell),
            f"{codec.name}: accumulated values of a record it does not have",
        )
        found.append((cast("QueryCell", cell), load(raw), positions))
    return found


def _linked_entries(
    accumulated: list[tuple[QueryCell, tuple[Any, ...], list[int]]],
) -> dict[QueryCell, Any]:
    """
    The entries (`_accumulate.Entry`) of the memos that accumulated, their dependencies
    linked: the accumulating reads are the dependencies at the saved positions (in
    order, each a memo). A stale memo keeps only its values, to compare with when it
    runs again (its reads are not linked: it counts as changed if it has any).
    """
    entries: dict[QueryCell, Any] = {}
    for cell, values, positions in accumulated:
        reads: tuple[QueryCell, ...] = ()
        if cell.verified_at != NEVER:
            deps = deps_of(cell)
            previous = -1
            for position in positions:
                expect(
                    type(position) is int
                    and previous < position < len(deps)
                    and type(deps[position]) is QueryCell,
                    f"{fmt_key(cell.ingredient.name, cell.key)}: an accumulating read",
                )
                previous = position
            reads = tuple(cast("QueryCell", deps[position]) for position in positions)
        if values or reads:
            entries[cell] = (values, reads)
    return entries


def _check_ids(cells: dict[int, InputCell | QueryCell], dropped: list[KeysView[int]]) -> None:
    """Record ids are in `[0, MAX_ID)` and unique across sections, dropped ones included."""
    # On the cells, built anyway: a set of every id would cost P9's load 12 ms.
    expect(not cells or (min(cells) >= 0 and max(cells) < MAX_ID), "a record id out of range")
    seen: set[int] = set()
    for ids in dropped:
        expect(
            cells.keys().isdisjoint(ids) and seen.isdisjoint(ids),
            "a record id appears in two sections",
        )
        seen.update(ids)


def _resolves_cycles(cls: type) -> bool:
    """Whether a query of database class *cls* resolves cycles (its memos may loop)."""
    return any(query.cycle for query in spec_of(cls).queries.values())


def _loops(graph: dict[int, list[int]]) -> set[int]:
    """
    The memos on a dependency loop, or that reach one (O(records + deps)): the memos of
    converged cycles. `save` writes loops only for them; anywhere else the runtime's walks
    would not end, so a file of a database whose queries resolve no cycle must have none.
    """
    # Only memos that read memos can be on a loop, and only through such memos: most memos
    # read inputs alone, and this filter (C-level `isdisjoint`) is all they cost.
    memos = graph.keys()
    inner = {memo: deps for memo, deps in graph.items() if not memos.isdisjoint(deps)}
    # Peel off, repeatedly, the memos none of whose dependencies are left: what remains
    # is on a loop or depends on one.
    pending: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    for memo, deps in inner.items():
        within = {dep for dep in deps if dep in inner}
        pending[memo] = len(within)
        for dep in within:
            readers.setdefault(dep, []).append(memo)
    done = [memo for memo, count in pending.items() if not count]
    while done:
        for reader in readers.get(done.pop(), ()):
            pending[reader] -= 1
            if not pending[reader]:
                done.append(reader)
    return {memo for memo, count in pending.items() if count}


def _link(
    memos: list[tuple[QueryCell, list[Any], bool]], cells: dict[int, Any]
) -> tuple[bool, bool]:
    """
    Resolve dependencies and build reverse edges; make stale what cannot be resolved.
    Returns (every memo resolved, any memo that read the outside world).

    A memo that read the outside world is linked like any other: the load opens a revision
    past the file's for it (see `_decode`), where it is not valid any more.
    """
    exact = True
    outside = False
    for cell, deps, stale in memos:
        resolved = [cells.get(number) for number in deps]
        if not stale and None not in resolved:
            outside = outside or cell.durability == UNTRACKED
            linked = cast("list[InputCell | QueryCell]", resolved)
            # `pack_deps`, without the tuple it would take (P9 loads 100,000 memos).
            cell.deps = linked[0] if len(linked) == 1 else tuple(linked)
            for dep in linked:
                add_dependent(dep, cell)
            continue
        exact = False
        # Stale: re-executes on first use; its old value and changed_at stay to backdate.
        cell.verified_at = NEVER
        if cell.value is EVICTED:
            cell.value = None
            cell.changed_at = NEVER
    return exact, outside


def _mark_clean(memos: list[tuple[QueryCell, list[Any], bool]]) -> None:
    """Set `clean` as the runtime would have: nothing read changed since verified."""
    unclean: list[QueryCell] = []
    for cell, _, _ in memos:
        if cell.verified_at == NEVER:
            continue
        verified_at = cell.verified_at
        # Not clean without a value: a memoized error saved without its exception may come
        # back as an error, and a memo's dependents are clean only while it is. Never clean
        # if it read the outside world.
        clean = cell.value is not EVICTED and cell.durability != UNTRACKED
        for dep in deps_of(cell):
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
    Load the cache file *path* (and its log) into *db*.

    Every input, interned value and memo in the file is restored, so that every memo still
    valid is reused without recomputing. A section of the file whose types no longer match
    the class is dropped; the memos of a query whose code changed (or whose `version=`
    did) re-execute on first use, and so do memos that depended on something dropped. If
    an interned table's type changed, its ids may appear in any value, so nothing is
    loaded (and `True` is returned: the file was read). What is dropped or stale is logged
    (logger `"picante"`, with the reason). Reading, checking and decoding run in a worker
    thread; the database changes in one step at the end, or not at all.

    A database with no state gets the file's state at the file's revision. On a database
    that already has state, the file becomes the base: the memos the database had are
    dropped (they may disagree with the file's inputs), and every input it holds is set
    again on top, as one batch, so nothing the program set is lost and the memos that read
    those inputs revalidate as after any change. The revision only moves forward: it ends
    above the database's and at or above the file's. (An input the program removed is not
    removed again: the file's value, if any, stays.)

    Args:
        db: A database (not a snapshot), with no query running and no live snapshot.
        path: The cache file written by `picante.save`.
        on_corrupt: What to do with a file that is corrupt, truncated, empty, not a cache
            file, written by another database class, or not a regular file (a directory;
            a log that is a symbolic link): `"error"` raises `CacheError` with the
            reason, `"ignore"` returns `False`, `"delete"` deletes the file (and its log)
            and returns `False` (but never deletes a directory: `CacheError`).
        max_bytes: Refuse (with `CacheError`) a cache larger than this, file and log
            together, before reading it.

    Returns:
        `True` if the file was loaded; `False` if there is no file, or it is corrupt and
        *on_corrupt* is `"ignore"` or `"delete"`. The database is unchanged when `False`.

    Raises:
        CacheError: The file is corrupt and *on_corrupt* is `"error"`, or larger than
            *max_bytes*.
        UsageError: *db* is a snapshot, a query of it is running or a snapshot of it is
            alive, or the file's interned ids conflict with ids the database handed out;
            or *on_corrupt* is invalid. Nothing is loaded.
        LimitExceededError: The resulting inputs and interned values exceed the database's
            `max_state_bytes`; nothing is loaded.
    """
    if on_corrupt not in ("error", "ignore", "delete"):
        msg = f"load(): on_corrupt must be 'error', 'ignore' or 'delete', got {on_corrupt!r}"
        raise UsageError(msg)
    view = view_of(db, "load")
    _check_idle(view)
    target = Path(path)
    codecs = codecs_of(type(db))
    state = _persisted(view)
    async with state.lock:
        try:
            contents = await asyncio.to_thread(read_files, target, max_bytes)
            if contents is None:
                return False
            loaded = await asyncio.to_thread(
                functools.partial(
                    _decode,
                    contents,
                    codecs,
                    database_name(type(db)),
                    legacy_names(type(db)),
                    cycles=_resolves_cycles(type(db)),
                )
            )
        except Corrupt as error:
            if on_corrupt == "error":
                msg = f"{target}: {error}"
                raise CacheError(msg) from None
            if on_corrupt == "delete":
                await asyncio.to_thread(_delete, target, error)
            logger.warning("%s: %s corrupt cache file: %s", target, _DISCARDED[on_corrupt], error)
            return False
        fresh = _Persisted(lock=state.lock)
        fresh.path = target
        fresh.digest = contents.digest
        fresh.base_stat = file_stat(target)
        fresh.log_stat = file_stat(log_path(target))
        fresh.base_size = contents.base_size
        fresh.log_size = contents.log_size
        fresh.ids = loaded.ids
        fresh.next_id = loaded.next_id
        fresh.interned = loaded.interned_counts
        # The file's revision: if the view's ends elsewhere, the next save records it.
        fresh.revision = loaded.revision
        # A torn or ignored log tail, or dropped records: the next save rewrites the file.
        fresh.must_rewrite = (
            not loaded.exact
            or contents.log_torn
            or contents.log_ignored is not None
            # An older format: the next save writes the whole file in the current one.
            or contents.version != FORMAT_VERSION
        )
        with view.lock:
            held = _swap(view, loaded)
            view.persistence = fresh
            view.dirty = set()
            if held:
                # The program's inputs on top, as one batch; they go to the next save's log.
                view.commit(held)
        _report(target, type(db).__qualname__, loaded, contents)
    return True


def load_plan(path: str | os.PathLike[str], cls: type) -> dict[str, tuple[str, str]]:
    """
    What a `load` of *path* into a database of class *cls* would do with each section.

    Decodes the whole file as `load` does (nothing is installed anywhere) and returns
    {section name: (verdict, why)}, verdict one of "kept", "stale" (a query whose code
    changed: its memos re-execute on first use) and "dropped" (unknown ingredient, schema
    changed, decode failure). Used by `python -m picante inspect --against`.

    Raises:
        CacheError: The file is missing or corrupt, or written by another class, or
            *cls*'s types cannot be persisted.
    """
    target = Path(path)
    codecs = codecs_of(cls)
    try:
        contents = read_files(target, None)
        if contents is None:
            msg = "no such file"
            raise Corrupt(msg)
        loaded = _decode(
            contents,
            codecs,
            database_name(cls),
            legacy_names(cls),
            cycles=_resolves_cycles(cls),
        )
        merged, _, _ = merge(contents)
    except Corrupt as error:
        msg = f"{target}: {error}"
        raise CacheError(msg) from None
    plan: dict[str, tuple[str, str]] = dict.fromkeys(merged, ("kept", ""))
    plan.update((name, (verdict, why)) for name, verdict, why in loaded.notes)
    return plan


def _delete(target: Path, error: Corrupt) -> None:
    files = (target, log_path(target))
    for file in files:
        # Never remove a user's directory (or what else is not a file) for a cache file.
        if file.is_dir() and not file.is_symlink():
            msg = f"{target}: {error}; on_corrupt='delete' does not delete directory {file}"
            raise CacheError(msg)
    for file in files:
        with contextlib.suppress(FileNotFoundError):
            file.unlink()  # A symlinked log: the link goes, not what it points to.


def _check_idle(view: View) -> None:
    """Raise `UsageError` unless *view* is a database no query reads and no snapshot shares."""
    if view.parent is not None:
        msg = "load() needs a database, not a snapshot"
        raise UsageError(msg)
    with view.lock:
        # Snapshots dropped and evaluations finished since the last commit are let go of now.
        view.sync.prune(view, force=True)
        busy = bool(view.readers.entries) or view.sync.views > 1
    if busy:
        msg = (
            f"load() cannot replace the state of this {type(view.db).__name__} while a "
            "query of it runs or a snapshot of it is alive"
        )
        raise UsageError(msg)


_Set = tuple["Table", Any, tuple[object, ...], object]
"""A mutation for `View.commit`: (table, input ingredient, key, value)."""


def _held_inputs(view: View) -> list[_Set]:
    """The inputs *view* holds, as the mutations that set them (removed ones are not)."""
    return [
        (table, cell.ingredient, cell.key, cell.value)
        for table in view.tables.values()
        for cell in table.values()
        if isinstance(cell, InputCell) and cell.value is not ABSENT
    ]


def _merge_interned(view: View, loaded: _Loaded) -> dict[str, list[object]]:
    """The file's interned values the view lacks, per table; `UsageError` on a conflict."""
    new: dict[str, list[object]] = {}
    for name, table in loaded.interned.items():
        mine = view.family.interned.get(name)
        have = [] if mine is None else mine.values
        for index, (a, b) in enumerate(zip(have, table.values, strict=False)):
            if type(a) is not type(b) or a != b:
                msg = (
                    f"load(): interned table {name} conflicts with the file: this "
                    f"{type(view.db).__name__} handed out id {index} for {a!r}, the file "
                    f"has {b!r}; nothing is loaded"
                )
                raise UsageError(msg)
        new[name] = table.values[len(have) :]
    return new


def _swap(view: View, loaded: _Loaded) -> list[_Set]:
    """
    Install *loaded* into *view* in one step (on the event loop's thread, under the lock).

    Returns the inputs the view held, to be set again on top. Raises before anything
    changes if the view is busy, interned ids conflict, or the result exceeds the limit.
    """
    _check_idle(view)
    held = _held_inputs(view)
    had_state = (
        view.revision != 0
        or any(view.tables.values())
        or any(table.values for table in view.family.interned.values())
    )
    new_interned = _merge_interned(view, loaded)
    input_bytes = 0
    interned_bytes = 0
    if view.limit is not None:
        for table in loaded.tables.values():
            for cell in table.values():
                if isinstance(cell, InputCell) and cell.value is not ABSENT:
                    cell.size = sizeof(cell.key) + sizeof(cell.value)
                    input_bytes += cell.size
        interned_bytes = sum(sizeof(value) for values in new_interned.values() for value in values)
        # What the inputs set again will weigh instead of the file's values they replace.
        total = input_bytes
        for _, ingredient, key, value in held:
            theirs = loaded.tables.get(ingredient.name, {}).get(key)
            if isinstance(theirs, InputCell) and theirs.value is not ABSENT:
                if ingredient.eq(theirs.value, value):
                    continue
                total -= theirs.size
            total += sizeof(key) + sizeof(value)
        state = total + view.family.interned_bytes + interned_bytes
        if state > view.limit:
            msg = (
                f"{type(view.db).__name__}: the cache's state is {state:,} bytes, over "
                f"max_state_bytes={view.limit:,}"
            )
            raise LimitExceededError(msg)
    view.family.cyclic.clear()
    view.family.cyclic.update((cell.ingredient.name, cell.key) for cell in loaded.cyclic)
    for table in view.tables.values():
        # In place: handles hold on to their tables. The view's own memos go.
        table.clear()
    view.histories.clear()
    view.pasts.clear()
    view.marks.clear()
    for lru in view.lrus.values():
        lru.order.clear()
    for name, cells in loaded.tables.items():
        view.table(name).update(cells)
    if view.accumulations is not None:
        entries = view.accumulations.entries
        entries.clear()
        entries.update(loaded.accumulations or {})
    family = view.family
    with family.lock:
        for name, values in new_interned.items():
            mine = family.intern_table(name)
            for value in values:
                mine.ids[type(value), value] = len(mine.values)
                mine.values.append(value)
        family.interned_bytes += interned_bytes
    view.input_bytes = input_bytes
    view.last_changed[: len(Durability)] = loaded.last_changed
    if view.lrus:
        for table in loaded.tables.values():
            for cell in table.values():
                if isinstance(cell, QueryCell) and cell.verified_at != NEVER:
                    view.track_lru(cell)
    # Every stamp in the file is at most its revision, so the file's state holds at any
    # later revision too: on a database with state, it is installed past the database's
    # revision, and what is set again on top commits at one more.
    view.revision = max(loaded.revision, view.revision + 1) if had_state else loaded.revision
    return held
