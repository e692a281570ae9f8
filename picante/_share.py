"""
Sharing results through stores (`picante.share`): constructive traces.

When a query must run and stores are attached, `execute` first asks them for the
*trace entries* recorded under the query's record key (`_codecs.record_key`: the
database, the query, its schema and code fingerprints, the key). An entry lists what an
evaluation of the query read, in first-read order, each with the digest of the value it
read, and the digest of the result. `Shared.adopt` checks an entry by reading those
records again in this evaluation's frame, in that order, exactly as the body would have
read them (so the reads are recorded, single flight and cycle detection apply, and a
query read is itself looked up or run): the first read whose digest differs ends the
check. When every read matches, the result is taken from the entry (or its blob) and
memoized like a result of the body, with those reads as its dependencies. A body that
reads the same values computes the same result, so this is what running it would give;
that is also why a check that stops part-way, and then runs the body, loses nothing:
the body reads the same records first.

After a body runs, `Shared.publish` records its entry in every store, in the background
(`flush_shared` waits for it). Nothing is shared that is not portable: errors,
evaluations that read the outside world, values and keys with no canonical bytes
(`persist=False`, interned ids, what the cache file refuses), evaluations that
accumulated values (`picante.accumulate`: an entry holds no side channel; an evaluation
that only read queries that accumulated is shared, and its adoption reads them again).
A store's trouble is a miss, never an error: the stores see to that.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from ._codecs import (
    canonical_bytes,
    canonical_key_bytes,
    codecs_of,
    database_name,
    default_salt,
    encoded_digest,
    keyed_record,
    record_hasher,
    value_digest,
)
from ._errors import MissingInputError, UsageError, describe
from ._frames import NOT_SHARED
from ._runtime import memo_at, view_of
from ._store import ABSENT, EVICTED, Failure, InputCell
from .stores import MemoryStore, digest as blob_digest


if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

    from ._codecs import Codec
    from ._frames import Frame
    from .stores import Store


__all__ = ["ADOPTED", "Shared", "SharingCounters", "flush_shared", "share"]

FORMAT: Final = 1
"""The version of trace entries (a new one makes every old entry unreadable)."""

ADOPTED: Final = "adopted"
"""The mark `why` holds for a memo taken from a store: `(revision, ADOPTED)`."""

ABSENT_DIGEST: Final = "-"
"""The digest an entry records for an input that was absent when it was read."""

logger = logging.getLogger("picante")


Read = tuple[str, tuple[object, ...], str, "bytes | None"]
"""A read of an entry: ingredient, key, value digest (hex, or `-`), record key if a query."""


@attrs.define
class SharingCounters:
    """What sharing did for one database (`picante.debug.stats(db).shared`)."""

    lookups: int = 0
    """Evaluations that asked the stores for a result."""
    adopted: int = 0
    """Results taken from a store: the body did not run."""
    checked: int = 0
    """Entries checked (several may be, for one lookup)."""
    published: int = 0
    """Evaluations recorded in the stores after their body ran."""
    unshareable: int = 0
    """
    Evaluations not recorded: an error, an untracked read, a value with no bytes,
    accumulated values.
    """


Parsed = tuple[tuple[Read, ...], bytes, "str | None", "bytes | None"]
"""A trace entry, decoded: its reads in order, its result's digest, inline value or blob.

Plain tuples of strings, bytes and keys: the collector stops tracking them at its first
look, so the entries an adoption keeps decoded do not make it collect the whole heap.
"""


class Shared:
    """The stores a database shares results through, in lookup order (`picante.share`)."""

    __slots__ = (
        "adopting",
        "batches",
        "codecs",
        "counters",
        "database",
        "digests",
        "expanded",
        "hashers",
        "inflight",
        "parsed",
        "pending",
        "prefetched",
        "records",
        "requests",
        "salt",
        "stores",
    )

    def __init__(self, cls: type, stores: Sequence[Store]) -> None:
        self.stores = tuple(stores)
        self.codecs: dict[str, Codec] = codecs_of(cls)
        self.database = database_name(cls)
        self.salt = default_salt()
        self.counters = SharingCounters()
        self.hashers: dict[str, Any] = {}
        # Uploads in progress: `flush_shared` waits for them.
        self.pending: set[asyncio.Task[None]] = set()
        # Candidate lists fetched ahead, by (tier, record key): while an entry is checked,
        # the lists of the queries it read are fetched in one round trip, so that a graph
        # comes from a store in about as many round trips as it is deep. Kept while an
        # adoption is in progress (`adopting` counts them), then dropped.
        self.prefetched: dict[tuple[int, bytes], tuple[bytes, ...]] = {}
        # Lists asked for in this turn of the event loop, by tier: every adoption that
        # asks before the turn ends joins one request (`_lists`). And the lists being
        # fetched, by (tier, record key): the request's future, which a second asker
        # awaits instead of asking again. The requests' tasks are in `requests`.
        self.batches: dict[int, tuple[list[bytes], asyncio.Future[None]]] = {}
        self.inflight: dict[tuple[int, bytes], asyncio.Future[None]] = {}
        self.requests: set[asyncio.Task[None]] = set()
        # Entries decoded, and the record keys of the queries they read, meanwhile.
        self.parsed: dict[bytes, Parsed | None] = {}
        self.records: dict[tuple[str, tuple[object, ...]], bytes] = {}
        # The entries whose reads are fetched ahead already, by (tier, id of the entry).
        self.expanded: set[tuple[int, int]] = set()
        # The digests of the results adopted, by (query, key): a later check that reads
        # one of them compares the value by identity instead of encoding it again.
        self.digests: dict[tuple[str, tuple[object, ...]], tuple[object, bytes]] = {}
        self.adopting = 0

    def key_of(self, name: str, key: tuple[object, ...]) -> bytes | None:
        """The record key of query *name* at *key*, or `None` if it cannot be shared."""
        codec = self.codecs.get(name)
        if codec is None or codec.code is None:
            return None
        encoded = canonical_key_bytes(codec, key)
        if encoded is None:
            return None
        return keyed_record(self._hasher(name, codec), encoded)

    def _hasher(self, name: str, codec: Codec) -> Any:
        """Query *name*'s `record_hasher`: every field but the key, hashed once."""
        hasher = self.hashers.get(name)
        if hasher is None:
            assert codec.code is not None  # only queries have record keys
            hasher = self.hashers[name] = record_hasher(
                format=FORMAT,
                salt=self.salt,
                database=self.database,
                query=name,
                schema=codec.schema,
                code=codec.code,
            )
        return hasher

    # -- adopting a result --------------------------------------------------------------

    async def adopt(self, frame: Frame) -> object:
        """The result of *frame*'s query from a matching entry, or `NOT_SHARED`."""
        cell = frame.cell
        name = cell.ingredient.name
        key = self.records.get((name, cell.key)) or self.key_of(name, cell.key)
        if key is None:
            return NOT_SHARED
        self.counters.lookups += 1
        self.adopting += 1
        try:
            for tier, store in enumerate(self.stores):
                if (tier, key) not in self.prefetched:
                    await self._lists(tier, store, [key])
                for entry in self.prefetched.get((tier, key), ()):
                    self.counters.checked += 1
                    adopted = await self._check(frame, tier, store, entry)
                    if adopted is None:
                        continue
                    self.counters.adopted += 1
                    # What `debug.explain` says of this memo until it next runs its body.
                    cell.why = (frame.revision, ADOPTED)
                    value, blobs = adopted
                    # Found in a lower tier: the tiers above get it too.
                    for upper in self.stores[:tier]:
                        self._background(upper.put(key, entry, blobs))
                    return value
            return NOT_SHARED
        finally:
            self.adopting -= 1
            if not self.adopting:
                self.prefetched.clear()
                self.parsed.clear()
                self.records.clear()
                self.expanded.clear()
                self.digests.clear()

    def _parse(self, entry: bytes) -> Parsed | None:
        """*entry* decoded (once per adoption), or `None` if it is malformed."""
        if entry in self.parsed:
            return self.parsed[entry]
        parsed: Parsed | None = None
        try:
            data = orjson.loads(entry)
            inline: str | None = data.get("v")
            reads: list[Read] = []
            for name, key_text, expected in data["d"]:
                codec = self.codecs[name]
                key = codec.load_key(orjson.loads(key_text))
                record = None
                if codec.code is not None:  # a query: its own record key, to fetch ahead
                    # From the key's bytes as written: the writer's canonical bytes, under
                    # the same salt (so the same libraries). Bytes that are not would only
                    # point the lookup to another record, which a writer could fill anyway.
                    record = keyed_record(self._hasher(name, codec), key_text.encode())
                    self.records[name, key] = record
                reads.append((name, key, expected, record))
            parsed = (
                tuple(reads),
                bytes.fromhex(data["r"]),
                inline if type(inline) is str else None,
                None if type(inline) is str else bytes.fromhex(data["b"]),
            )
        except Exception:  # noqa: BLE001 - a malformed entry, or names this class lacks
            parsed = None
        self.parsed[entry] = parsed
        return parsed

    async def _prefetch(self, tier: int, store: Store, parsed: Parsed) -> None:
        """
        Fetch ahead the candidate lists of the queries *parsed* read, then those of the
        queries their entries read, and so on: one round trip per level of the graph.
        """
        expanded = self.expanded
        expanded.add((tier, id(parsed)))
        level = self._unfetched(tier, parsed)
        while level:
            await self._lists(tier, store, level)
            below: list[bytes] = []
            for record in level:
                for entry in self.prefetched.get((tier, record), ()):
                    each = self._parse(entry)
                    # (`parsed` keeps it, and so its id, until the adoption ends.)
                    if each is not None and (tier, id(each)) not in expanded:
                        expanded.add((tier, id(each)))
                        below.extend(self._unfetched(tier, each))
            level = list(dict.fromkeys(below))

    async def _lists(self, tier: int, store: Store, keys: Sequence[bytes]) -> None:
        """
        Fetch the candidate lists of *keys* from *store* into `prefetched`. The keys asked
        for in one turn of the event loop, by any adoption, go in one request, and a key
        already on its way is not asked for again: concurrent adoptions (a `gather` of
        many roots) come from a store in as many round trips as one would.
        """
        if type(store) is MemoryStore:
            # In process: no round trip to pool, and no turn of the loop to wait for.
            wanted = [key for key in keys if (tier, key) not in self.prefetched]
            found = await MemoryStore.candidates(store, wanted)
            for key in wanted:
                self.prefetched[tier, key] = tuple(found.get(key, ()))
            return
        waits: list[asyncio.Future[None]] = []
        for key in keys:
            slot = (tier, key)
            if slot in self.prefetched:
                continue
            wait = self.inflight.get(slot)
            if wait is None:
                batch = self.batches.get(tier)
                if batch is None:
                    batch = self.batches[tier] = ([], asyncio.get_running_loop().create_future())
                    asyncio.get_running_loop().call_soon(self._send, tier, store)
                batch[0].append(key)
                wait = self.inflight[slot] = batch[1]
            if wait not in waits:
                waits.append(wait)
        for wait in waits:
            # Shielded: an adoption cancelled here must not cancel the others' request.
            await asyncio.shield(wait)

    def _send(self, tier: int, store: Store) -> None:
        keys, done = self.batches.pop(tier)
        request = asyncio.ensure_future(self._request(tier, store, keys, done))
        self.requests.add(request)
        request.add_done_callback(self.requests.discard)

    async def _request(
        self, tier: int, store: Store, keys: list[bytes], done: asyncio.Future[None]
    ) -> None:
        found: dict[bytes, list[bytes]] = {}
        try:
            found = await store.candidates(keys)
        except Exception as error:  # noqa: BLE001 - stores return misses; a bug is a miss too
            logger.warning("picante: a lookup in a shared store failed: %r", error)
        finally:
            # Even when cancelled (the loop closing): the askers get misses, not a hang.
            for key in keys:
                self.prefetched[tier, key] = tuple(found.get(key, ()))
                self.inflight.pop((tier, key), None)
            if not done.done():
                done.set_result(None)

    def _unfetched(self, tier: int, parsed: Parsed) -> list[bytes]:
        """The record keys of the queries *parsed* read, not fetched (nor asked for) yet."""
        return [
            record
            for _, _, _, record in parsed[0]
            if record is not None
            and (tier, record) not in self.prefetched
            and (tier, record) not in self.inflight
        ]

    async def _check(
        self, frame: Frame, tier: int, store: Store, entry: bytes
    ) -> tuple[object, dict[bytes, bytes]] | None:
        """Read *entry*'s records in *frame* in order; its result if every digest matches."""
        parsed = self._parse(entry)
        if parsed is None:
            return None
        if (tier, id(parsed)) not in self.expanded:
            await self._prefetch(tier, store, parsed)
        db = frame.view.db
        digests = self.digests
        reads, result, inline, blob = parsed
        for name, key, expected, record in reads:
            try:
                value = await getattr(db, name)(*key)
            except MissingInputError:
                value = ABSENT
            except Exception:  # noqa: BLE001 - an error is never shared: no match
                return None
            if value is ABSENT:
                if expected != ABSENT_DIGEST:
                    return None
                continue
            known = digests.get((name, key)) if record is not None else None
            if known is not None and known[0] is value:
                found: bytes | None = known[1]
            else:
                found = value_digest(self.codecs[name], value)
            if found is None or found.hex() != expected:
                return None
        blobs: dict[bytes, bytes] = {}
        if inline is not None:
            encoded = inline.encode()
        else:
            assert blob is not None  # set above when there is no inline value
            fetched = (await store.blobs([blob])).get(blob)
            if fetched is None:
                return None
            encoded = blobs[blob] = fetched
        # The bytes must be those the entry names: the canonical bytes of its result,
        # which load back to that very value (`canonical_bytes` refuses values that would
        # not), so their digest is the value's.
        if encoded_digest(encoded) != result:
            return None
        cell = frame.cell
        try:
            value = self.codecs[cell.ingredient.name].load_value(orjson.loads(encoded))
        except Exception:  # noqa: BLE001 - bytes this class cannot load
            return None
        self.digests[cell.ingredient.name, cell.key] = (value, result)
        return value, blobs

    # -- publishing a result ------------------------------------------------------------

    def publish(self, frame: Frame, outcome: object) -> None:
        """Record *frame*'s evaluation, which ran its body to *outcome*, in every store."""
        cell = frame.cell
        key = self.key_of(cell.ingredient.name, cell.key)
        codec = self.codecs.get(cell.ingredient.name)
        if (
            type(outcome) is Failure
            or frame.untracked
            or key is None
            or codec is None
            # It accumulated values (`picante.accumulate`), which an entry does not hold.
            or getattr(frame, "accumulated", None)
        ):
            self.counters.unshareable += 1
            return
        reads = self._reads(frame)
        encoded = canonical_bytes(codec, outcome)
        if reads is None or encoded is None:
            self.counters.unshareable += 1
            return
        self.counters.published += 1
        result = value_digest(codec, outcome)
        assert result is not None  # canonical bytes exist, so the digest does
        for store in self.stores:
            entry: dict[str, Any] = {"d": reads, "r": result.hex()}
            blobs: dict[bytes, bytes] = {}
            if len(encoded) <= store.inline_bytes:
                entry["v"] = encoded.decode()
            else:
                blob = blob_digest(encoded)
                entry["b"] = blob.hex()
                blobs[blob] = encoded
            self._background(store.put(key, orjson.dumps(entry), blobs))

    def _reads(self, frame: Frame) -> list[list[str]] | None:
        """*frame*'s reads as an entry lists them, or `None` if one cannot be shared."""
        revision = frame.revision
        reads: list[list[str]] = []
        for dep in frame.deps:
            name = dep.ingredient.name
            codec = self.codecs.get(name)
            key = None if codec is None else canonical_key_bytes(codec, dep.key)
            if codec is None or key is None:
                return None
            if type(dep) is InputCell:
                value = dep.value if dep.changed_at <= revision else dep.version_at(revision)[1]
                if value is ABSENT:
                    reads.append([name, key.decode(), ABSENT_DIGEST])
                    continue
            else:
                # The memo as it was at this frame's revision: the current one may be newer,
                # and backdated across a value this frame read (see `knows`).
                state = memo_at(frame.view, dep, revision)
                if state is None or state.failure is not None or state.value is EVICTED:
                    # Not known at that revision, an error read (and caught), or evicted.
                    return None
                value = state.value
            found = value_digest(codec, value)
            if found is None:
                return None
            reads.append([name, key.decode(), found.hex()])
        return reads

    # -- uploads ---------------------------------------------------------------------------

    def _background(self, upload: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(upload)
        self.pending.add(task)
        task.add_done_callback(self._uploaded)

    def _uploaded(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Stores turn their own trouble into misses; this is a bug worth a line.
            logger.warning("picante: an upload to a shared store failed: %r", error)

    async def flush(self) -> None:
        """Wait for the uploads in progress, then for each store's queued writes."""
        while self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)
        for store in self.stores:
            await store.flush()


def share(db: object, *stores: Store) -> None:
    """
    Share *db*'s query results through *stores*, looked up in that order; with no store,
    stop sharing.

    A query that must run (no memo, or one its dependencies invalidated) first asks the
    stores for an evaluation of the same query and key whose reads come out equal here;
    if one does, its result is memoized without running the body. A body that runs has
    its evaluation recorded in every store, in the background (`flush_shared` waits for
    it). Only persisted, non-volatile queries are shared (`@picante.query(share=False)`
    opts out), and never an error, an evaluation that read the outside world, or a value
    or key that has no portable bytes. A store found in a lower tier is written back to
    the tiers above. Snapshots taken later share as *db* does. Call it on the loop's
    thread.

    Raises:
        UsageError: *db* is not a database or a snapshot, or a store is not a
            `picante.stores.Store`.
        CacheError: The database's types cannot be encoded (see `picante.save`).
    """
    view = view_of(db, "share")
    for store in stores:
        if not callable(getattr(store, "candidates", None)) or not callable(
            getattr(store, "put", None)
        ):
            msg = f"share(): expected picante.stores stores, got {describe(store)}"
            raise UsageError(msg)
    view.shared = Shared(type(db), stores) if stores else None


async def flush_shared(db: object) -> None:
    """Wait until every result *db* has recorded in its stores is written (or dropped)."""
    view = view_of(db, "flush_shared")
    shared: Shared | None = view.shared
    if shared is not None:
        await shared.flush()
