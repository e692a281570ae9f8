"""
Stores for shared results: where trace entries and value blobs live between runs,
between processes and between machines.

A store keeps two kinds of data for the engine, and understands neither:

* **trace entries**, opaque byte strings filed under a *record key* `K` (bytes the engine
  derives from the query, its key and its code). The store keeps the newest
  `TRACE_LIMIT` (8) distinct entries of each `K`, newest first; writing an entry equal to
  one already there moves it to the front.
* **blobs**, values too large to inline in an entry, filed under their *digest*: the
  SHA-256 of their bytes (`digest(blob)`). A blob whose bytes do not hash to its digest is
  never returned.

Three stores implement the `Store` protocol:

* `MemoryStore`: in this process, bounded (LRU); gives revert reuse.
* `SqliteStore`: one file on this machine, shared by its processes (SQLite in WAL mode).
* `RedisStore`: a Redis or Valkey server shared by machines, with namespaces, HMAC-signed
  entries, TTLs, a timeout and a circuit breaker (needs `picante[redis]`).

A store is an optimization, so **no method raises because of the store**: a server that is
down, slow or refuses, a file that is locked or corrupt, data that fails its checks: each
is a miss or a dropped write, and a counter in `Store.counters`. Only misuse raises, at
construction (`UsageError` for a bad namespace, say).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import re
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast, final

import attrs

from ._errors import UsageError


if TYPE_CHECKING:
    import hmac
    import sqlite3
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
    from concurrent.futures import ThreadPoolExecutor
    from types import ModuleType, TracebackType
    from typing import Self

    from redis.asyncio import Redis


__all__ = [
    "NO_BLOBS",
    "TRACE_LIMIT",
    "MemoryStore",
    "RedisStore",
    "SqliteStore",
    "Store",
    "StoreCounters",
    "digest",
]

T = TypeVar("T")
V = TypeVar("V")

logger: Final = logging.getLogger("picante")

TRACE_LIMIT: Final = 8
"""The number of trace entries a store keeps under one record key, newest first."""

NO_BLOBS: Final[Mapping[bytes, bytes]] = MappingProxyType({})
"""The default of `Store.put`'s *blobs*: no blob (an immutable empty mapping)."""

_BATCH: Final = 256  # uploads written in one round trip, at most
_BATCH_BYTES: Final = 8 << 20  # and their bytes, at most (unless one upload is larger)
_TRANSFER_RATE: Final = 4 << 20  # bytes per second a blob transfer is given, on top of timeout
_HASH_OFF_LOOP: Final = 1 << 20  # blobs hashed in a worker thread above this many bytes
_REFRESHED_LIMIT: Final = 100_000  # keys remembered as refreshed, before forgetting all


def digest(blob: bytes) -> bytes:
    """The digest a blob is filed under: the 32-byte SHA-256 of its bytes."""
    return hashlib.sha256(blob).digest()


# -- the contract ---------------------------------------------------------------------------


@final
@attrs.define
class StoreCounters:
    """
    What a store did since it was created; the attributes only grow.

    `lookups`, `hits` and `misses` count the keys and digests asked for (a key asked for
    twice in one call counts once): `hits + misses == lookups`.
    """

    lookups: int = 0
    """Keys passed to `candidates` plus digests passed to `blobs`."""
    hits: int = 0
    """Of those, the ones answered: a key with at least one entry, a digest with its blob."""
    misses: int = 0
    """Of those, the ones not answered, whatever the reason (absent, rejected, failure)."""
    rejected: int = 0
    """Entries and blobs read but thrown away: a bad or missing HMAC tag, a blob whose bytes
    do not hash to its digest, a `put` whose blob did not match its digest."""
    uploads: int = 0
    """Entries written (each with its blobs)."""
    dropped: int = 0
    """Writes given up: store unavailable or closed, write refused, queue full (the oldest
    queued write is dropped), entry or blob larger than `max_value_bytes`."""
    errors: int = 0
    """Operations that failed: an exception, a timeout, a refused command (one per call or
    per background batch, however many keys it carried)."""
    breaker_openings: int = 0
    """Times the circuit breaker opened after a failure (each logs one warning)."""
    round_trips: int = 0
    """Requests sent to the backend: pipelines to Redis, calls into SQLite's thread."""
    bytes_in: int = 0
    """Bytes of entries and blobs received, rejected ones included."""
    bytes_out: int = 0
    """Bytes of entries and blobs written."""
    seconds_waiting: float = 0.0
    """Time callers spent awaiting `candidates`, `blobs` and `flush`."""


class Store(Protocol):
    """
    What the engine calls: the contract every store implements.

    All methods are coroutines to be awaited on the loop that uses the store, and none of
    them raises because of the store (see the module's docstring); cancelling a call
    cancels only that call. Keys and digests are bytes of any length; results map only
    the keys and digests that were found (a missing one is a miss).

    Use a store with `async with store:` or call `aclose()` when done, so that queued
    writes are written and connections closed.
    """

    @property
    def counters(self) -> StoreCounters:
        """What the store did, for `picante.debug.stats` and tests."""
        ...

    @property
    def inline_bytes(self) -> int:
        """Values up to this many bytes belong inline in their entry; larger in a blob."""
        ...

    @property
    def max_value_bytes(self) -> int:
        """An entry or a blob larger than this is not written (counted `dropped`)."""
        ...

    async def candidates(self, keys: Sequence[bytes]) -> dict[bytes, list[bytes]]:
        """
        The trace entries under each record key, newest first: one round trip for all keys.

        Each list holds at most `TRACE_LIMIT` entries per namespace read (`RedisStore`
        reads several: its own first, then `read_from` in order) and no two equal ones.
        Keys with no entry are absent from the result.
        """
        ...

    async def blobs(self, digests: Sequence[bytes]) -> dict[bytes, bytes]:
        """
        The blobs with these digests: one round trip for all of them.

        Every returned blob hashes to its digest (`digest(blob) == d`): the store checks
        and drops the others (counted `rejected`). Missing digests are absent.
        """
        ...

    async def put(self, key: bytes, entry: bytes, blobs: Mapping[bytes, bytes] = NO_BLOBS) -> None:
        """
        File *entry* under *key*, with the blobs it refers to (digest to bytes).

        May return before the write is done (`flush` waits for it). The blobs are written
        before the entry, so a reader that sees the entry can find its blobs, unless they
        were evicted since.
        """
        ...

    async def flush(self) -> None:
        """Wait until every write queued so far is written or given up."""
        ...

    async def aclose(self) -> None:
        """Flush, then release the store's connections and threads; later calls miss."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# -- in memory ------------------------------------------------------------------------------


@final
class MemoryStore:
    """
    A store in this process: revert reuse without serializing anything to a server.

    Holds the trace lists of at most *max_entries* record keys and blobs together, and at
    most *max_bytes* of entries and blobs; past either bound the least recently used go.
    Writes happen at once (`flush` has nothing to wait for). Blob digests are checked when
    a blob is put, since nothing can change it afterwards.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 << 20,
        inline_bytes: int = 4096,
        max_value_bytes: int = 16 << 20,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            msg = "MemoryStore: max_entries and max_bytes must be at least 1"
            raise UsageError(msg)
        self.counters: Final = StoreCounters()
        self.inline_bytes: Final = inline_bytes
        self.max_value_bytes: Final = max_value_bytes
        self.max_entries: Final = max_entries
        self.max_bytes: Final = max_bytes
        # ("t", K) -> entries, newest first; ("v", digest) -> blob. Least recent first.
        self._items: collections.OrderedDict[tuple[str, bytes], list[bytes] | bytes] = (
            collections.OrderedDict()
        )
        self._bytes = 0

    def __len__(self) -> int:
        """The number of trace lists and blobs held."""
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """The bytes of the entries and blobs held."""
        return self._bytes

    async def candidates(self, keys: Sequence[bytes]) -> dict[bytes, list[bytes]]:
        """See `Store.candidates`."""
        found: dict[bytes, list[bytes]] = {}
        for key in dict.fromkeys(keys):
            item = self._items.get(("t", key))
            if isinstance(item, list):
                self._items.move_to_end(("t", key))
                found[key] = list(item)
                self.counters.bytes_in += sum(map(len, item))
        _count_lookups(self.counters, len(dict.fromkeys(keys)), len(found))
        return found

    async def blobs(self, digests: Sequence[bytes]) -> dict[bytes, bytes]:
        """See `Store.blobs`."""
        found: dict[bytes, bytes] = {}
        for wanted in dict.fromkeys(digests):
            item = self._items.get(("v", wanted))
            if isinstance(item, bytes):
                self._items.move_to_end(("v", wanted))
                found[wanted] = item
                self.counters.bytes_in += len(item)
        _count_lookups(self.counters, len(dict.fromkeys(digests)), len(found))
        return found

    async def put(self, key: bytes, entry: bytes, blobs: Mapping[bytes, bytes] = NO_BLOBS) -> None:
        """See `Store.put`: written at once."""
        if _too_big(entry, blobs, self.max_value_bytes):
            self.counters.dropped += 1
            return
        if any(digest(blob) != wanted for wanted, blob in blobs.items()):
            self.counters.rejected += 1
            self.counters.dropped += 1
            return
        for wanted, blob in blobs.items():
            self._set(("v", wanted), blob)
        old = self._items.get(("t", key))
        entries = [entry, *(e for e in old if e != entry)] if isinstance(old, list) else [entry]
        self._set(("t", key), entries[:TRACE_LIMIT])
        self.counters.uploads += 1
        self.counters.bytes_out += len(entry) + sum(map(len, blobs.values()))
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= _size(evicted)

    def _set(self, slot: tuple[str, bytes], item: list[bytes] | bytes) -> None:
        old = self._items.pop(slot, None)
        if old is not None:
            self._bytes -= _size(old)
        self._items[slot] = item
        self._bytes += _size(item)

    async def flush(self) -> None:
        """See `Store.flush`: nothing is ever queued."""

    async def aclose(self) -> None:
        """See `Store.aclose`: there is nothing to release; the contents stay."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._items)} items, {self._bytes} bytes)"


def _size(item: list[bytes] | bytes) -> int:
    return len(item) if isinstance(item, bytes) else sum(map(len, item))


def _too_big(entry: bytes, blobs: Mapping[bytes, bytes], limit: int) -> bool:
    return len(entry) > limit or any(len(blob) > limit for blob in blobs.values())


def _count_lookups(counters: StoreCounters, asked: int, answered: int) -> None:
    counters.lookups += asked
    counters.hits += answered
    counters.misses += asked - answered


# -- the machinery of stores with a backend: breaker, background writes --------------------


@attrs.frozen
class _Put:
    key: bytes
    entry: bytes
    blobs: dict[bytes, bytes]

    @property
    def nbytes(self) -> int:
        return len(self.entry) + sum(map(len, self.blobs.values()))


class _BackedStore:
    """
    What `SqliteStore` and `RedisStore` share: failures turned into misses, the circuit
    breaker, and writes queued for one background task that writes them in batches.

    A subclass reads in `_read_candidates`/`_read_blobs` (counting what it rejects and the
    bytes it receives) and writes in `_write`; any exception they raise is a failure.
    `_is_outage` says whether a failure opens the breaker (the backend is unreachable or
    unusable) or concerns that operation only (a refused command, a lock held too long).
    """

    def __init__(
        self,
        *,
        timeout: float,
        breaker: float,
        max_pending: int,
        inline_bytes: int,
        max_value_bytes: int,
    ) -> None:
        if timeout <= 0 or breaker < 0 or max_pending < 1:
            msg = f"{type(self).__name__}: timeout must be > 0, breaker >= 0, max_pending >= 1"
            raise UsageError(msg)
        self.counters: Final = StoreCounters()
        self.inline_bytes: Final = inline_bytes
        self.max_value_bytes: Final = max_value_bytes
        self.timeout: Final = timeout
        self.breaker: Final = breaker
        self.max_pending: Final = max_pending
        self._clock: Callable[[], float] = time.monotonic  # tests replace it
        self._open_until = float("-inf")
        self._closed = False
        self._pending: collections.deque[_Put] = collections.deque()
        # Backend-specific maintenance writes that ride along with the uploads: keys whose
        # TTL to refresh, and bad blobs to delete (so that a correct one can be written).
        self._touched: dict[bytes, None] = {}
        self._bad: dict[bytes, bytes] = {}
        # Keys whose TTL this store already refreshed: once per store is enough (TTLs
        # are days long), and halves the commands of repeated lookups.
        self._refreshed: set[bytes] = set()
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        # Reads in flight: `aclose` waits for them before it closes the backend.
        self._reading = 0
        self._quiet = asyncio.Event()

    # What a subclass provides.

    def _deadline(self, nbytes: int) -> float | None:
        """Seconds for one operation transferring up to *nbytes* of blobs; None: no limit."""
        raise NotImplementedError

    async def _read_candidates(self, keys: list[bytes]) -> dict[bytes, list[bytes]]:
        raise NotImplementedError

    async def _read_blobs(self, digests: list[bytes]) -> dict[bytes, bytes]:
        raise NotImplementedError

    async def _write(
        self, puts: list[_Put], touched: list[bytes], bad: dict[bytes, bytes]
    ) -> tuple[set[int], BaseException | None]:
        """Write; return the positions in *puts* of those refused, and the first refusal."""
        raise NotImplementedError

    def _is_outage(self, error: BaseException) -> bool:
        raise NotImplementedError

    async def _close_backend(self) -> None:
        raise NotImplementedError

    # The breaker.

    @property
    def available(self) -> bool:
        """False while the breaker is open, and after `aclose`."""
        return not self._closed and self._clock() >= self._open_until

    def _failed(self, error: BaseException, doing: str) -> None:
        self.counters.errors += 1
        if self._closed or not self._is_outage(error):
            logger.debug("%r: %s failed: %s", self, doing, _summary(error))
            return
        if self._clock() < self._open_until:
            return  # already open: a call that was in flight when it opened
        self._open_until = self._clock() + self.breaker
        self.counters.breaker_openings += 1
        logger.warning(
            "%r is unavailable: %s failed (%s); it counts as empty for the next %g s",
            self,
            doing,
            _summary(error),
            self.breaker,
        )

    # Reads.

    async def candidates(self, keys: Sequence[bytes]) -> dict[bytes, list[bytes]]:
        """See `Store.candidates`."""
        wanted = list(dict.fromkeys(keys))
        found = await self._read(self._read_candidates, wanted, 0, "reading trace entries")
        _count_lookups(self.counters, len(wanted), len(found))
        return found

    async def blobs(self, digests: Sequence[bytes]) -> dict[bytes, bytes]:
        """See `Store.blobs`."""
        wanted = list(dict.fromkeys(digests))
        found = await self._read(self._read_blobs, wanted, self.max_value_bytes, "reading blobs")
        _count_lookups(self.counters, len(wanted), len(found))
        return found

    async def _read(
        self,
        read: Callable[[list[bytes]], Awaitable[dict[bytes, V]]],
        wanted: list[bytes],
        nbytes: int,
        doing: str,
    ) -> dict[bytes, V]:
        """`read(wanted)`, or nothing if the store is unavailable or the read fails."""
        if not wanted or not self.available:
            return {}
        started = time.perf_counter()
        self.counters.round_trips += 1
        self._reading += 1
        try:
            async with asyncio.timeout(self._deadline(nbytes)):
                return await read(wanted)
        except Exception as error:  # noqa: BLE001 - a failing store is a miss
            self._failed(error, doing)
            return {}
        finally:
            self._reading -= 1
            if not self._reading:
                self._quiet.set()
            self.counters.seconds_waiting += time.perf_counter() - started

    # Writes.

    async def put(self, key: bytes, entry: bytes, blobs: Mapping[bytes, bytes] = NO_BLOBS) -> None:
        """See `Store.put`: queued, written by a background task in batches."""
        if not self.available or _too_big(entry, blobs, self.max_value_bytes):
            self.counters.dropped += 1
            return
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.counters.dropped += 1
        self._pending.append(_Put(key, entry, dict(blobs)))
        self._wake()

    def _maintain(
        self, touched: Iterable[bytes] = (), bad: Mapping[bytes, bytes] = NO_BLOBS
    ) -> None:
        """Queue TTL refreshes and deletions of bad blobs, bounded like the uploads."""
        if self._closed:
            return
        room = self.max_pending * TRACE_LIMIT - len(self._touched) - len(self._bad)
        if len(self._refreshed) > _REFRESHED_LIMIT:
            self._refreshed.clear()
        for key in touched:
            if room <= 0:
                break
            if key not in self._refreshed:
                self._refreshed.add(key)
                self._touched[key] = None
                room -= 1
        for key, data in bad.items():
            if room <= 0:
                break
            self._bad[key] = data
            room -= 1
        if self._touched or self._bad:
            self._wake()

    def _wake(self) -> None:
        self._idle.clear()
        if self._writer is None:
            loop = asyncio.get_running_loop()
            self._writer = loop.create_task(self._drain(), name=f"{self!r} writer")

    async def _drain(self) -> None:
        try:
            while self._pending or self._touched or self._bad:
                puts = self._next_batch()
                touched, self._touched = list(self._touched), {}
                bad, self._bad = self._bad, {}
                if not self.available:
                    self.counters.dropped += len(puts)
                    continue
                self.counters.round_trips += 1
                try:
                    async with asyncio.timeout(self._deadline(sum(put.nbytes for put in puts))):
                        refused, error = await self._write(puts, touched, bad)
                except Exception as failure:  # noqa: BLE001 - a failing store drops writes
                    self._failed(failure, "writing")
                    self.counters.dropped += len(puts)
                    continue
                if error is not None:
                    self._failed(error, "writing")
                written = [put for index, put in enumerate(puts) if index not in refused]
                self.counters.dropped += len(puts) - len(written)
                self.counters.uploads += len(written)
                self.counters.bytes_out += sum(put.nbytes for put in written)
        finally:
            self._writer = None
            self._idle.set()

    def _next_batch(self) -> list[_Put]:
        """The oldest queued uploads: up to _BATCH of them and _BATCH_BYTES (at least one)."""
        batch: list[_Put] = []
        nbytes = 0
        while self._pending and len(batch) < _BATCH:
            if batch and nbytes + self._pending[0].nbytes > _BATCH_BYTES:
                break
            batch.append(self._pending.popleft())
            nbytes += batch[-1].nbytes
        return batch

    async def flush(self) -> None:
        """See `Store.flush`."""
        started = time.perf_counter()
        try:
            while self._writer is not None:
                await self._idle.wait()
        finally:
            self.counters.seconds_waiting += time.perf_counter() - started

    async def aclose(self) -> None:
        """See `Store.aclose`: queued writes are written and reads in flight end first."""
        if self._closed:
            return
        await self.flush()
        self._closed = True
        while self._reading:  # each ends within its deadline
            self._quiet.clear()
            await self._quiet.wait()
        try:
            await self._close_backend()
        except Exception as error:  # noqa: BLE001 - closing a failed backend is no failure
            logger.debug("%r: closing failed: %s", self, _summary(error))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _summary(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _checked(found: Iterable[tuple[bytes, bytes]]) -> list[bool]:
    """For each (digest, blob), whether the blob hashes to the digest."""
    return [digest(blob) == wanted for wanted, blob in found]


async def _check(found: list[tuple[bytes, bytes]]) -> list[bool]:
    """`_checked`, in a worker thread when there are many bytes to hash."""
    if sum(len(blob) for _, blob in found) > _HASH_OFF_LOOP:
        return await asyncio.to_thread(_checked, found)
    return _checked(found)


# -- SQLite ---------------------------------------------------------------------------------

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = (
    # Entries of one key, newest first = highest id first. No uniqueness index on the
    # entry bytes (they may be kilobytes): a write deletes an equal entry, then inserts.
    "CREATE TABLE traces (id INTEGER PRIMARY KEY, k BLOB NOT NULL, entry BLOB NOT NULL,"
    " used INTEGER NOT NULL)",
    "CREATE INDEX traces_k ON traces (k, id)",
    "CREATE TABLE blobs (digest BLOB PRIMARY KEY, data BLOB NOT NULL, used INTEGER NOT NULL)"
    " WITHOUT ROWID",
)
_CHUNK: Final = 500  # SQL parameters per statement, below every SQLite's limit


class _NotAStoreError(Exception):
    """The file is an SQLite database, but not a picante store of this schema version."""


def _is_lock(error: BaseException) -> bool:
    """Whether *error* is SQLite's "database is locked" (or busy): another process held on."""
    import sqlite3

    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class _SqliteThread:
    """One worker thread holding one connection, opened on first use, reopened after an error."""

    def __init__(self, path: str, timeout: float, name: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._path = path
        self._timeout = timeout
        self._executor: ThreadPoolExecutor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._connection: sqlite3.Connection | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            self._connection = _open_sqlite(self._path, self._timeout)
        try:
            return work(self._connection)
        except BaseException as error:
            if _is_lock(error):
                if self._connection.in_transaction:
                    self._connection.rollback()
            else:  # reopen on next use: the file may have been repaired or replaced
                self._close()
            raise

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        finally:
            self._executor.shutdown(wait=False)


def _open_sqlite(path: str, timeout: float) -> sqlite3.Connection:
    """
    Open *path*, in WAL mode, with the schema (`_while_busy`: `PRAGMA journal_mode` does
    not wait out the busy timeout while another process opens the same file).
    """
    return _while_busy(timeout, lambda: _open_sqlite_once(path, timeout))


def _while_busy(timeout: float, attempt: Callable[[], T]) -> T:
    """
    Return `attempt()`, tried again while SQLite refuses at once (database locked or
    busy, without waiting out its busy timeout), until *timeout* seconds have passed.
    """
    import sqlite3

    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as error:
            busy = "locked" in str(error) or "busy" in str(error)
            if not busy or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.1)


def _open_sqlite_once(path: str, timeout: float) -> sqlite3.Connection:
    import sqlite3

    connection = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version == 0:
            connection.execute("BEGIN IMMEDIATE")
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            (tables,) = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if version == 0 and tables == 0:
                for statement in _SCHEMA:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                version = _SCHEMA_VERSION
            connection.execute("COMMIT")
        if version != _SCHEMA_VERSION:
            msg = f"{path} is not a picante store of schema version {_SCHEMA_VERSION}"
            raise _NotAStoreError(msg)
    except BaseException:
        connection.close()
        raise
    return connection


def _chunks(items: list[bytes]) -> Iterable[list[bytes]]:
    return (items[start : start + _CHUNK] for start in range(0, len(items), _CHUNK))


def _marks(count: int) -> str:
    return ", ".join("?" * count)


@final
class SqliteStore(_BackedStore):
    """
    A store in one SQLite file, shared by the processes of one machine.

    The file is opened in WAL mode, so readers never wait for writers; writers wait for
    each other up to *timeout* seconds, and a write that waited longer is dropped. Reads
    and writes run in two worker threads of the store's own (one connection each), so
    the event loop never blocks on the disk. Writes are queued and written in batches,
    one transaction each.

    The file is created with the store's schema if it does not exist or is empty. A file
    that is not an SQLite database, is corrupt, or holds another schema (an older or a
    newer picante's, or someone else's tables) is never changed: every lookup misses and
    every write is dropped, and the breaker opens with one warning. Delete the file to
    start afresh. Not for network filesystems, where SQLite's locks are unreliable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 1.0,
        breaker: float = 30.0,
        max_pending: int = 1000,
        inline_bytes: int = 4096,
        max_value_bytes: int = 16 << 20,
    ) -> None:
        super().__init__(
            timeout=timeout,
            breaker=breaker,
            max_pending=max_pending,
            inline_bytes=inline_bytes,
            max_value_bytes=max_value_bytes,
        )
        self.path: Final = os.fspath(path)
        self._reader = _SqliteThread(self.path, timeout, "picante-sqlite-read")
        self._writer_thread = _SqliteThread(self.path, timeout, "picante-sqlite-write")

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def _deadline(self, nbytes: int) -> float | None:
        return None  # SQLite's own busy timeout bounds every call

    def _is_outage(self, error: BaseException) -> bool:
        # A lock held too long by another process concerns that one call; anything else
        # (not a database, corrupt, another schema, a disk error) will not go away soon.
        return not _is_lock(error)

    async def _read_candidates(self, keys: list[bytes]) -> dict[bytes, list[bytes]]:
        def read(connection: sqlite3.Connection) -> dict[bytes, list[bytes]]:
            found: dict[bytes, list[bytes]] = {}
            for chunk in _chunks(keys):
                rows = connection.execute(
                    f"SELECT k, entry FROM traces WHERE k IN ({_marks(len(chunk))})"
                    " ORDER BY k, id DESC",
                    chunk,
                )
                for key, entry in rows:
                    entries = found.setdefault(key, [])
                    if len(entries) < TRACE_LIMIT:
                        entries.append(entry)
            return found

        found = await self._reader.run(read)
        self.counters.bytes_in += sum(len(e) for entries in found.values() for e in entries)
        return found

    async def _read_blobs(self, digests: list[bytes]) -> dict[bytes, bytes]:
        def read(connection: sqlite3.Connection) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
            good: dict[bytes, bytes] = {}
            bad: dict[bytes, bytes] = {}
            for chunk in _chunks(digests):
                rows = connection.execute(
                    f"SELECT digest, data FROM blobs WHERE digest IN ({_marks(len(chunk))})", chunk
                )
                for wanted, data in rows:
                    (good if digest(data) == wanted else bad)[wanted] = data
            return good, bad

        good, bad = await self._reader.run(read)
        self.counters.bytes_in += sum(map(len, good.values())) + sum(map(len, bad.values()))
        self.counters.rejected += len(bad)
        self._maintain(bad=bad)
        return good

    async def _write(
        self, puts: list[_Put], touched: list[bytes], bad: dict[bytes, bytes]
    ) -> tuple[set[int], BaseException | None]:
        del touched  # no TTLs here

        def write(connection: sqlite3.Connection) -> None:
            # SQLite can refuse a write at once (another process opening the file, or
            # recovering its WAL): the batch is tried again, rolled back first.
            def once() -> None:
                try:
                    attempt(connection)
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise

            _while_busy(self.timeout, once)

        def attempt(connection: sqlite3.Connection) -> None:
            now = int(time.time())
            connection.execute("BEGIN IMMEDIATE")
            for wanted, data in bad.items():
                connection.execute(
                    "DELETE FROM blobs WHERE digest = ? AND data = ?", (wanted, data)
                )
            for put in puts:
                connection.executemany(
                    "INSERT OR IGNORE INTO blobs (digest, data, used) VALUES (?, ?, ?)",
                    [(wanted, data, now) for wanted, data in put.blobs.items()],
                )
                connection.execute(
                    "DELETE FROM traces WHERE k = ? AND entry = ?", (put.key, put.entry)
                )
                connection.execute(
                    "INSERT INTO traces (k, entry, used) VALUES (?, ?, ?)",
                    (put.key, put.entry, now),
                )
                connection.execute(
                    "DELETE FROM traces WHERE k = ? AND id NOT IN"
                    " (SELECT id FROM traces WHERE k = ? ORDER BY id DESC LIMIT ?)",
                    (put.key, put.key, TRACE_LIMIT),
                )
            connection.execute("COMMIT")

        await self._writer_thread.run(write)
        return set(), None

    async def _close_backend(self) -> None:
        await asyncio.gather(self._reader.close(), self._writer_thread.close())


# -- Redis and Valkey -----------------------------------------------------------------------

_NAMESPACE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/@+=-]{0,199}")
_SIGNED: Final = b"PCT1"
_UNSIGNED: Final = b"PCT0"
_TAG_BYTES: Final = 32


def _check_namespace(namespace: str, what: str) -> str:
    if not _NAMESPACE.fullmatch(namespace):
        msg = (
            f"RedisStore: {what} {namespace!r} is not a namespace: use 1 to 200 letters,"
            " digits and . _ / @ + = - (no ':' and no glob characters, so that ACL key"
            " patterns such as picante:site/main:* match exactly one namespace)"
        )
        raise UsageError(msg)
    return namespace


def _redacted(url: str) -> str:
    """*url* without its password, for messages."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _import_redis() -> ModuleType:
    try:
        import redis.asyncio
    except ImportError as error:
        msg = (
            "picante.stores.RedisStore needs the redis package (redis-py):"
            " pip install 'picante[redis]'"
        )
        raise ImportError(msg, name="redis") from error
    return redis.asyncio


@final
class RedisStore(_BackedStore):
    """
    A store on a Redis or Valkey server, shared by machines.

    *url* is a redis-py URL (`redis://host:6379/0`, `rediss://` for TLS,
    `unix:///run/redis.sock`), with an ACL user and password if the server has them
    (`redis://user:password@host/0`). The connection is opened on first use, on the
    running loop; use the store on that loop only.

    Every write goes to *namespace*; lookups read *namespace*, then each of *read_from* in
    order, all in one round trip. Keys are `picante:{namespace}:t:{K}` (a list of at most
    8 entries, newest first) and `picante:{namespace}:v:{digest}` (a blob), in hex.
    *salt* is hashed into every key (the hex is then of SHA-256(salt, K)): a new salt
    abandons the whole keyspace, say after poisoned entries were found.

    With a *secret* (bytes or str), each entry carries an HMAC-SHA256 tag binding it to
    its namespace and key, checked on read against the namespace it was read from: an
    entry without a tag, with a wrong tag, or copied to another key or namespace is
    rejected. Without a secret, entries are stored unsigned and signed ones rejected (they
    cannot be checked). Readers and writers of a namespace must share its secret.

    Entries and blobs expire *ttl* seconds after they were last written or hit in the
    store's own namespace (hits in `read_from` namespaces refresh nothing: their owner
    does). Uploads are queued (at most *max_pending*; past that the oldest is dropped) and
    written in the background, one pipeline per batch.

    No operation is retried. Each has *timeout* seconds, plus a second per 4 MiB of blobs
    it may transfer (so a lookup of trace entries has *timeout* seconds). After
    a failure that concerns the server (unreachable, timed out), every operation misses
    at once for *breaker* seconds, and the opening logs one warning on the `picante`
    logger. A refused command (an ACL denial, `OOM` under `maxmemory-policy noeviction`)
    is counted in `errors` and misses or drops that operation only.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        read_from: Sequence[str] = (),
        secret: bytes | str | None = None,
        salt: str = "",
        ttl: int = 7 * 24 * 3600,
        inline_bytes: int = 4096,
        max_value_bytes: int = 16 << 20,
        timeout: float = 0.5,
        breaker: float = 30.0,
        max_pending: int = 1000,
    ) -> None:
        self._redis_module = _import_redis()
        super().__init__(
            timeout=timeout,
            breaker=breaker,
            max_pending=max_pending,
            inline_bytes=inline_bytes,
            max_value_bytes=max_value_bytes,
        )
        if isinstance(read_from, str):
            msg = f"RedisStore: read_from must be a sequence of namespaces, not {read_from!r}"
            raise UsageError(msg)
        if ttl < 1:
            msg = "RedisStore: ttl must be at least 1 second"
            raise UsageError(msg)
        self.url: Final = url
        self.namespace: Final = _check_namespace(namespace, "namespace")
        self.read_from: Final = tuple(
            dict.fromkeys(
                _check_namespace(other, "read_from namespace")
                for other in read_from
                if other != namespace
            )
        )
        self.salt: Final = salt
        self.ttl: Final = ttl
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and not secret:
            msg = "RedisStore: the secret is empty (pass None for unsigned entries)"
            raise UsageError(msg)
        self._secret = secret
        # The start of each namespace's tag: HMAC(secret, b"PCT1" ‖ len ‖ namespace).
        self._macs: dict[str, hmac.HMAC] = {}
        if secret is not None:
            import hmac

            for source in (self.namespace, *self.read_from):
                name = source.encode()
                prefix = _SIGNED + len(name).to_bytes(2, "big") + name
                self._macs[source] = hmac.new(secret, prefix, hashlib.sha256)
        self._salt_prefix = (
            b"picante salt" + len(salt.encode()).to_bytes(4, "big") + salt.encode() if salt else b""
        )
        self._client: Redis | None = None

    def __repr__(self) -> str:
        return f"RedisStore({_redacted(self.url)!r}, namespace={self.namespace!r})"

    # Keys and entries.

    def _salted(self, key: bytes) -> bytes:
        if not self._salt_prefix:
            return key
        return hashlib.sha256(self._salt_prefix + key).digest()

    def _trace_key(self, namespace: str, salted: bytes) -> str:
        return f"picante:{namespace}:t:{salted.hex()}"

    def _blob_key(self, namespace: str, salted: bytes) -> str:
        return f"picante:{namespace}:v:{salted.hex()}"

    def _tag(self, namespace: str, salted: bytes, payload: bytes) -> bytes:
        mac = self._macs[namespace].copy()
        mac.update(len(salted).to_bytes(2, "big"))
        mac.update(salted)
        mac.update(payload)
        return mac.digest()

    def _wrap(self, salted: bytes, payload: bytes) -> bytes:
        if self._secret is None:
            return _UNSIGNED + payload
        return _SIGNED + self._tag(self.namespace, salted, payload) + payload

    def _unwrap(self, namespace: str, salted: bytes, raw: bytes) -> bytes | None:
        """The payload of *raw* read from *namespace* under *salted*, or None if rejected."""
        import hmac

        if self._secret is None:
            return raw[len(_UNSIGNED) :] if raw.startswith(_UNSIGNED) else None
        if not raw.startswith(_SIGNED) or len(raw) < len(_SIGNED) + _TAG_BYTES:
            return None
        tag = raw[len(_SIGNED) : len(_SIGNED) + _TAG_BYTES]
        payload = raw[len(_SIGNED) + _TAG_BYTES :]
        if not hmac.compare_digest(tag, self._tag(namespace, salted, payload)):
            return None
        return payload

    # The backend.

    def _connection(self) -> Redis:
        if self._client is None:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = cast(
                "Redis",
                self._redis_module.Redis.from_url(
                    self.url,
                    retry=Retry(NoBackoff(), 0),
                    # Each operation's own deadline (`_deadline`) is the timeout that
                    # counts; the socket's is long enough for the largest blob, because
                    # redis-py applies it to a whole command's write, however large.
                    socket_timeout=self._deadline(self.max_value_bytes),
                    socket_connect_timeout=self.timeout,
                    decode_responses=False,
                ),
            )
        return self._client

    def _deadline(self, nbytes: int) -> float | None:
        # The timeout that counts, for a server that stops answering as for one that is
        # slow; blobs get time to flow. (The sockets' own timeout is longer: see above.)
        return self.timeout + nbytes / _TRANSFER_RATE

    def _is_outage(self, error: BaseException) -> bool:
        from redis.exceptions import ResponseError

        return not isinstance(error, ResponseError)

    async def _read_candidates(self, keys: list[bytes]) -> dict[bytes, list[bytes]]:
        sources = (self.namespace, *self.read_from)
        salted = [self._salted(key) for key in keys]
        pipe = self._connection().pipeline(transaction=False)
        for source in sources:
            for one in salted:
                pipe.lrange(self._trace_key(source, one), 0, TRACE_LIMIT - 1)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        found: dict[bytes, list[bytes]] = {}
        refused: BaseException | None = None
        touched: list[bytes] = []
        for index, reply in enumerate(replies):
            source, position = sources[index // len(keys)], index % len(keys)
            if isinstance(reply, BaseException):
                refused = refused or reply
                continue
            for raw in cast("list[bytes]", reply):
                self.counters.bytes_in += len(raw)
                payload = self._unwrap(source, salted[position], raw)
                if payload is None:
                    self.counters.rejected += 1
                    continue
                entries = found.setdefault(keys[position], [])
                if payload not in entries:
                    entries.append(payload)
                if source == self.namespace:
                    touched.append(self._trace_key(source, salted[position]).encode())
        if refused is not None:
            self._failed(refused, "reading trace entries")
        self._maintain(touched)
        return found

    async def _read_blobs(self, digests: list[bytes]) -> dict[bytes, bytes]:
        sources = (self.namespace, *self.read_from)
        salted = [self._salted(wanted) for wanted in digests]
        pipe = self._connection().pipeline(transaction=False)
        for source in sources:
            for one in salted:
                pipe.get(self._blob_key(source, one))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        received: list[tuple[bytes, bytes]] = []
        origins: list[tuple[str, int]] = []
        refused: BaseException | None = None
        for index, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                refused = refused or reply
            elif reply is not None:
                position = index % len(digests)
                received.append((digests[position], cast("bytes", reply)))
                origins.append((sources[index // len(digests)], position))
        if refused is not None:
            self._failed(refused, "reading blobs")
        found: dict[bytes, bytes] = {}
        touched: list[bytes] = []
        bad: dict[bytes, bytes] = {}
        for (wanted, data), (source, position), good in zip(
            received, origins, await _check(received), strict=True
        ):
            self.counters.bytes_in += len(data)
            key = self._blob_key(source, salted[position]).encode()
            if not good:
                self.counters.rejected += 1
                if source == self.namespace:
                    bad[key] = data
                continue
            found.setdefault(wanted, data)
            if source == self.namespace:
                touched.append(key)
        self._maintain(touched, bad)
        return found

    async def _write(
        self, puts: list[_Put], touched: list[bytes], bad: dict[bytes, bytes]
    ) -> tuple[set[int], BaseException | None]:
        pipe = self._connection().pipeline(transaction=False)
        spans: list[tuple[int, int]] = []
        count = 0
        for put in puts:
            start = count
            for wanted, data in put.blobs.items():
                blob_key = self._blob_key(self.namespace, self._salted(wanted))
                # An existing blob is not rewritten (NX), but it gets the entry's expiry:
                # an entry must not outlive the blob it names.
                pipe.set(blob_key, data, nx=True, ex=self.ttl)
                pipe.expire(blob_key, self.ttl)
                count += 2
            salted = self._salted(put.key)
            key = self._trace_key(self.namespace, salted)
            entry = self._wrap(salted, put.entry)
            # One pipeline, not a transaction: equal entries collapse (LREM), the newest goes
            # first, the list keeps TRACE_LIMIT; a race between two writers can only leave
            # one entry more or less for a moment, which the next write trims.
            pipe.lrem(key, 0, entry)  # type: ignore[arg-type]  # redis-py says str; bytes work
            pipe.lpush(key, entry)
            pipe.ltrim(key, 0, TRACE_LIMIT - 1)
            pipe.expire(key, self.ttl)
            count += 4
            spans.append((start, count))
        for stale in touched:
            pipe.expire(stale, self.ttl)
        for corrupt in bad:
            pipe.delete(corrupt)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        errors = [reply for reply in replies if isinstance(reply, BaseException)]
        refused = {
            index
            for index, (start, end) in enumerate(spans)
            if any(isinstance(reply, BaseException) for reply in replies[start:end])
        }
        return refused, errors[0] if errors else None

    async def _close_backend(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
