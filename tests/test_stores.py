"""
`picante.stores`: the three stores against their real backends (a Redis server on a unix
socket, SQLite files, several processes), and every failure the engine must survive as a
miss or a dropped write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio.connection

from picante import UsageError
from picante.stores import (
    NO_BLOBS,
    TRACE_LIMIT,
    MemoryStore,
    RedisStore,
    SqliteStore,
    Store,
    StoreCounters,
    digest,
)
from tests.helpers import until
from tests.redis_server import documented_acl_users


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from tests.redis_server import RedisServer


ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses: the session's server needs no FLUSHALL."""
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain synchronous client for the test to look at, or tamper with, the server."""
    client = redis.Redis(unix_socket_path=str(redis_server.socket))
    yield client
    client.close()


def redis_store(server: RedisServer, namespace: str, **options: object) -> RedisStore:
    return RedisStore(server.url, namespace=namespace, **options)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> AsyncIterator[Store]:
    """Each of the three stores, fresh and empty, closed after the test."""
    made: Store
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SqliteStore(tmp_path / "cache.sqlite")
    else:
        made = redis_store(request.getfixturevalue("redis_server"), namespace)
    async with made:
        yield made


def blob(text: str, size: int = 5000) -> tuple[bytes, bytes]:
    """A blob larger than `inline_bytes`, and its digest."""
    data = (text * (size // len(text) + 1)).encode()[:size]
    return digest(data), data


# -- what every store does --------------------------------------------------------------------


async def test_candidates_newest_first_and_trimmed(store: Store) -> None:
    """Entries come back newest first; only the newest TRACE_LIMIT (8) are kept."""
    for number in range(10):
        await store.put(b"K", b"entry %d" % number)
    await store.flush()
    found = await store.candidates([b"K"])
    assert found == {b"K": [b"entry %d" % number for number in range(9, 1, -1)]}
    assert TRACE_LIMIT == 8


async def test_equal_entries_collapse(store: Store) -> None:
    """Writing an entry already there moves it to the front instead of adding a copy."""
    for entry in (b"a", b"b", b"a", b"c", b"a"):
        await store.put(b"K", entry)
    await store.flush()
    assert await store.candidates([b"K"]) == {b"K": [b"a", b"c", b"b"]}


async def test_blobs_by_digest(store: Store) -> None:
    """Blobs are found by digest; unknown digests are absent; counters add up."""
    first, second = blob("first"), blob("second")
    await store.put(b"K", b"entry", dict([first, second]))
    await store.flush()
    missing = digest(b"never written")
    assert await store.blobs([first[0], second[0], missing]) == dict([first, second])
    assert await store.candidates([b"K", b"other"]) == {b"K": [b"entry"]}
    counters = store.counters
    assert (counters.lookups, counters.hits, counters.misses) == (5, 3, 2)
    assert (counters.uploads, counters.dropped, counters.errors) == (1, 0, 0)
    assert counters.bytes_out == len(b"entry") + 2 * 5000


async def test_many_keys_one_round_trip(store: Store) -> None:
    """1,000 keys, half of them present, are looked up in one round trip."""
    for number in range(0, 1000, 2):
        await store.put(b"K%d" % number, b"entry %d" % number)
    await store.flush()
    before = store.counters.round_trips
    found = await store.candidates([b"K%d" % number for number in range(1000)])
    assert found == {b"K%d" % number: [b"entry %d" % number] for number in range(0, 1000, 2)}
    expected = 0 if isinstance(store, MemoryStore) else 1
    assert store.counters.round_trips - before == expected


async def test_oversized_writes_are_dropped(tmp_path: Path) -> None:
    """An entry or a blob over max_value_bytes is not written, and counted as dropped."""
    big = blob("big", 2000)
    for made in (
        MemoryStore(max_value_bytes=1000),
        SqliteStore(tmp_path / "cache.sqlite", max_value_bytes=1000),
    ):
        async with made:
            await made.put(b"K", b"x" * 1001)
            await made.put(b"L", b"small", dict([big]))
            await made.flush()
            assert await made.candidates([b"K", b"L"]) == {}
            assert (made.counters.dropped, made.counters.uploads) == (2, 0)


async def test_duplicate_keys_count_once(store: Store) -> None:
    """A key asked for twice in one call is one lookup."""
    await store.put(b"K", b"entry")
    await store.flush()
    assert await store.candidates([b"K", b"K"]) == {b"K": [b"entry"]}
    assert (store.counters.lookups, store.counters.hits) == (1, 1)


async def test_empty_lookups_make_no_round_trip(store: Store) -> None:
    """Looking up nothing answers nothing, without asking the backend."""
    assert await store.candidates([]) == {}
    assert await store.blobs([]) == {}
    assert store.counters == StoreCounters(seconds_waiting=store.counters.seconds_waiting)


def test_no_blobs_is_immutable() -> None:
    """The default of `put`'s blobs cannot be changed by accident."""
    with pytest.raises(TypeError):
        NO_BLOBS[b"d"] = b"x"  # type: ignore[index]


# -- MemoryStore ------------------------------------------------------------------------------


async def test_memory_store_bound_by_entries_lru() -> None:
    """Past max_entries the least recently used trace list or blob goes."""
    store = MemoryStore(max_entries=3)
    for key in (b"A", b"B", b"C"):
        await store.put(key, key.lower())
    await store.candidates([b"A"])  # A is now the most recently used
    await store.put(b"D", b"d")
    assert len(store) == 3
    assert await store.candidates([b"A", b"B", b"C", b"D"]) == {
        b"A": [b"a"],
        b"C": [b"c"],
        b"D": [b"d"],
    }


async def test_memory_store_bound_by_bytes() -> None:
    """Past max_bytes the least recently used go; blobs count with their size."""
    store = MemoryStore(max_bytes=12_000)
    first, second, third = blob("1"), blob("2"), blob("3")
    await store.put(b"A", b"a", dict([first]))
    await store.put(b"B", b"b", dict([second]))
    await store.put(b"C", b"c", dict([third]))
    assert store.nbytes <= 12_000
    assert await store.blobs([first[0], second[0], third[0]]) == dict([second, third])


async def test_memory_store_rejects_blob_not_matching_digest() -> None:
    """A put whose blob does not hash to its digest is refused as a whole."""
    store = MemoryStore()
    await store.put(b"K", b"entry", {digest(b"one thing"): b"another"})
    assert await store.candidates([b"K"]) == {}
    assert await store.blobs([digest(b"one thing")]) == {}
    assert (store.counters.rejected, store.counters.dropped, store.counters.uploads) == (1, 1, 0)


def test_memory_store_bounds_must_be_positive() -> None:
    with pytest.raises(UsageError, match="at least 1"):
        MemoryStore(max_entries=0)


# -- background writes: flush, the queue, aclose ----------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def backed(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> Callable[..., Store]:
    """A factory for the stores that write in the background, with options."""
    if request.param == "sqlite":
        return lambda **options: SqliteStore(tmp_path / "cache.sqlite", **options)
    server = request.getfixturevalue("redis_server")
    return lambda **options: redis_store(server, namespace, **options)


async def test_flush_waits_for_background_uploads(backed: Callable[..., Store]) -> None:
    """`put` only queues; `flush` returns once everything queued is written."""
    async with backed() as store:
        for number in range(300):  # more than one batch
            await store.put(b"K%d" % number, b"entry")
        assert store.counters.uploads == 0
        await store.flush()
        assert store.counters.uploads == 300
        found = await store.candidates([b"K%d" % number for number in range(300)])
        assert len(found) == 300


async def test_full_queue_drops_oldest(backed: Callable[..., Store]) -> None:
    """Past max_pending queued uploads, the oldest is dropped and counted."""
    async with backed(max_pending=2) as store:
        for key in (b"A", b"B", b"C", b"D"):
            await store.put(key, b"entry")
        await store.flush()
        assert await store.candidates([b"A", b"B", b"C", b"D"]) == {
            b"C": [b"entry"],
            b"D": [b"entry"],
        }
        assert (store.counters.dropped, store.counters.uploads) == (2, 2)


async def test_aclose_writes_queue_and_cancels_nothing(backed: Callable[..., Store]) -> None:
    """`aclose` writes what is queued, lets a caller's lookup finish, cancels no task."""
    store = backed()
    await store.put(b"K", b"entry")
    await store.flush()
    await store.put(b"L", b"queued")
    release = asyncio.Event()
    bystander = asyncio.create_task(release.wait())  # a task the caller owns
    lookup = asyncio.create_task(store.candidates([b"K"]))
    await store.aclose()
    release.set()
    async with asyncio.timeout(5):
        await bystander
        assert await lookup in ({b"K": [b"entry"]}, {})  # done before or after the close
    assert not bystander.cancelled()
    assert store.counters.uploads == 2
    # Closed: a miss and a dropped write, no exception; closing again is harmless.
    assert await store.candidates([b"K"]) == {}
    await store.put(b"M", b"late")
    assert store.counters.dropped == 1
    await store.aclose()
    async with backed() as again:
        assert await again.candidates([b"K", b"L"]) == {b"K": [b"entry"], b"L": [b"queued"]}


async def test_cancelled_flush_leaves_writes_going(backed: Callable[..., Store]) -> None:
    """Cancelling a caller's `flush` cancels its wait only, not the background writer."""
    async with backed() as store:
        await store.put(b"K", b"entry")
        waiting = asyncio.create_task(store.flush())
        await until(lambda: bool(store._idle._waiters))  # flush is waiting for the writer
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await store.flush()
        assert await store.candidates([b"K"]) == {b"K": [b"entry"]}


# -- SQLite -------------------------------------------------------------------------------------


async def test_sqlite_file_is_wal_and_versioned(tmp_path: Path) -> None:
    """The file is in WAL mode and carries its schema version."""
    path = tmp_path / "cache.sqlite"
    async with SqliteStore(path) as store:
        await store.put(b"K", b"entry")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA user_version").fetchone() == (1,)
    connection.close()


WORKER = """
import asyncio, json, sys

import attrs

from picante.stores import SqliteStore, digest

path, me, other = sys.argv[1:]
sys.stdin.readline()  # the start line: both processes begin at once


async def main() -> None:
    async with SqliteStore(path, timeout=10.0) as store:
        for number in range(200):
            data = f"{me} blob {number} ".encode() * 400
            await store.put(b"shared", f"{me} {number}".encode(), {digest(data): data})
            await store.put(f"{me} {number}".encode(), b"entry")
            if number % 10 == 0:  # interleave reads of both processes' keys with the writes
                await store.flush()
                await store.candidates([b"shared", f"{other} {number}".encode()])
        await store.flush()
        own = await store.candidates([f"{me} {number}".encode() for number in range(200)])
        print(json.dumps({"own": len(own), "counters": attrs.asdict(store.counters)}))


asyncio.run(main())
"""


async def test_sqlite_two_processes_at_once(tmp_path: Path) -> None:
    """Two processes write and read one file at the same time: nothing lost, no error."""
    path = tmp_path / "cache.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        await asyncio.create_subprocess_exec(
            *[sys.executable, "-c", WORKER, str(path), me, other],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    async with asyncio.timeout(30):
        outputs = [(await process.communicate())[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    for output in outputs:
        report = json.loads(output)
        assert report["own"] == 200, json.dumps(report)
        counters = report["counters"]
        assert (counters["uploads"], counters["dropped"], counters["errors"]) == (400, 0, 0)
    async with SqliteStore(path) as store:
        keys = [f"{me} {number}".encode() for me in "ab" for number in range(200)]
        assert len(await store.candidates(keys)) == 400
        shared = (await store.candidates([b"shared"]))[b"shared"]
        assert len(shared) == TRACE_LIMIT
        for me in (b"a", b"b"):  # each writer's own entries are newest first
            numbers = [int(entry.split()[1]) for entry in shared if entry.startswith(me)]
            assert numbers == sorted(numbers, reverse=True)
        assert f"{shared[0].decode()[0]} 199".encode() == shared[0]
        last = {me: f"{me} blob 199 ".encode() * 400 for me in "ab"}
        assert await store.blobs([digest(data) for data in last.values()]) == {
            digest(data): data for data in last.values()
        }


async def test_sqlite_corrupt_file_is_a_miss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not a database: misses, dropped writes, one warning, file untouched."""
    path = tmp_path / "cache.sqlite"
    garbage = b"this is not an SQLite database\n" * 200
    path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="picante"):
        async with SqliteStore(path) as store:
            assert await store.candidates([b"K"]) == {}
            assert await store.blobs([digest(b"x")]) == {}
            await store.put(b"K", b"entry")
            await store.flush()
    assert path.read_bytes() == garbage
    counters = store.counters
    assert (counters.errors, counters.breaker_openings, counters.dropped) == (1, 1, 1)
    assert (counters.misses, counters.hits) == (2, 0)
    warnings = [record for record in caplog.records if record.name == "picante"]
    assert len(warnings) == 1
    assert "cache.sqlite" in warnings[0].getMessage()
    assert "DatabaseError" in warnings[0].getMessage()


async def test_sqlite_foreign_database_untouched(tmp_path: Path) -> None:
    """Someone else's database (or another schema version) is never written to."""
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
    connection.close()
    async with SqliteStore(path) as store:
        await store.put(b"K", b"entry")
        await store.flush()
        assert await store.candidates([b"K"]) == {}
    assert store.counters.breaker_openings == 1
    with sqlite3.connect(path) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master").fetchall()
    connection.close()
    assert tables == [("users",)]


async def test_sqlite_locked_database_drops_the_write(tmp_path: Path) -> None:
    """
    Another process holding the write lock past `timeout`: the write is dropped and
    counted, reads go on (WAL), the breaker stays closed, and writes work once released.
    """
    path = tmp_path / "cache.sqlite"
    async with SqliteStore(path, timeout=0.1) as store:
        await store.put(b"K", b"entry")
        await store.flush()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("DELETE FROM traces WHERE k = x'00'")
        try:
            started = time.perf_counter()
            await store.put(b"L", b"entry")
            await store.flush()
            assert time.perf_counter() - started < 2.0
            assert await store.candidates([b"K", b"L"]) == {b"K": [b"entry"]}
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        counters = store.counters
        assert (counters.errors, counters.dropped, counters.breaker_openings) == (1, 1, 0)
        await store.put(b"L", b"entry")
        await store.flush()
        assert await store.candidates([b"L"]) == {b"L": [b"entry"]}


async def test_sqlite_tampered_blob_rejected_then_replaced(tmp_path: Path) -> None:
    """A blob whose bytes changed on disk is a miss (rejected), removed, and written anew."""
    path = tmp_path / "cache.sqlite"
    wanted, data = blob("value")
    async with SqliteStore(path) as store:
        await store.put(b"K", b"entry", {wanted: data})
        await store.flush()
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE blobs SET data = ? WHERE digest = ?", (b"forged", wanted))
        connection.close()
        assert await store.blobs([wanted]) == {}
        assert store.counters.rejected == 1
        await store.flush()  # the forged row is deleted in the background
        await store.put(b"K", b"entry", {wanted: data})
        await store.flush()
        assert await store.blobs([wanted]) == {wanted: data}


# -- Redis: layout, blobs, signatures, namespaces, salt ---------------------------------------


async def test_redis_layout(redis_server: RedisServer, admin: redis.Redis, namespace: str) -> None:
    """Keys are picante:{ns}:t:{K hex} (a list) and picante:{ns}:v:{digest hex}, with TTLs."""
    wanted, data = blob("value")
    async with redis_store(redis_server, namespace, ttl=1000) as store:
        await store.put(b"\x01\x02", b"entry", {wanted: data})
        await store.flush()
    trace, value = f"picante:{namespace}:t:0102", f"picante:{namespace}:v:{wanted.hex()}"
    assert sorted(admin.scan_iter(match=f"picante:{namespace}:*")) == sorted(
        [trace.encode(), value.encode()]
    )
    assert admin.type(trace) == b"list"
    assert admin.lrange(trace, 0, -1) == [b"PCT0entry"]
    assert admin.get(value) == data
    assert 0 < admin.ttl(trace) <= 1000
    assert 0 < admin.ttl(value) <= 1000


async def test_redis_an_entry_does_not_outlive_the_blob_it_names(
    redis_server: RedisServer, admin: redis.Redis, namespace: str
) -> None:
    """Writing an entry that names a blob already stored renews the blob's TTL."""
    wanted, data = blob("value")
    value = f"picante:{namespace}:v:{wanted.hex()}"
    async with redis_store(redis_server, namespace, ttl=1000) as store:
        await store.put(b"K", b"first", {wanted: data})
        await store.flush()
        admin.expire(value, 10)
        await store.put(b"K2", b"second", {wanted: data})
        await store.flush()
    assert admin.ttl(value) > 10
    assert admin.get(value) == data


async def test_redis_hit_refreshes_ttl(
    redis_server: RedisServer, admin: redis.Redis, namespace: str
) -> None:
    """A hit in the store's own namespace resets the entry's and the blob's TTL."""
    wanted, data = blob("value")
    async with redis_store(redis_server, namespace, ttl=1000) as store:
        await store.put(b"K", b"entry", {wanted: data})
        await store.flush()
        trace, value = f"picante:{namespace}:t:4b", f"picante:{namespace}:v:{wanted.hex()}"
        admin.expire(trace, 10)
        admin.expire(value, 10)
        await store.candidates([b"K"])
        await store.blobs([wanted])
        await store.flush()
        assert admin.ttl(trace) > 10
        assert admin.ttl(value) > 10
        # Once per store is enough: a second hit sends no EXPIRE.
        admin.expire(trace, 10)
        await store.candidates([b"K"])
        await store.flush()
        assert admin.ttl(trace) <= 10


async def test_redis_batched_lookup_is_one_send(
    redis_server: RedisServer,
    admin: redis.Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 keys in two namespaces: one packet to the server carrying 2,000 LRANGEs."""
    sends: list[int] = []
    original = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counting(self: object, command: object, check_health: bool = True) -> None:
        sends.append(1)
        await original(self, command, check_health)  # type: ignore[arg-type]

    monkeypatch.setattr(
        redis.asyncio.connection.AbstractConnection, "send_packed_command", counting
    )
    async with redis_store(redis_server, namespace, read_from=[namespace + "-main"]) as store:
        await store.candidates([b"warm up the connection"])
        before = admin.info("commandstats")["cmdstat_lrange"]["calls"]
        sends.clear()
        found = await store.candidates([b"K%d" % number for number in range(1000)])
        assert (found, len(sends)) == ({}, 1)
        after = admin.info("commandstats")["cmdstat_lrange"]["calls"]
        assert after - before == 2000


async def test_redis_tampered_blob_rejected_then_replaced(
    redis_server: RedisServer, admin: redis.Redis, namespace: str
) -> None:
    """Garbage written over a blob is a miss and `rejected`; it is deleted, then rewritten."""
    wanted, data = blob("value")
    async with redis_store(redis_server, namespace) as store:
        await store.put(b"K", b"entry", {wanted: data})
        await store.flush()
        admin.set(f"picante:{namespace}:v:{wanted.hex()}", b"garbage")
        assert await store.blobs([wanted]) == {}
        assert (store.counters.rejected, store.counters.errors) == (1, 0)
        await store.flush()
        assert not admin.exists(f"picante:{namespace}:v:{wanted.hex()}")
        await store.put(b"K", b"entry", {wanted: data})
        await store.flush()
        assert await store.blobs([wanted]) == {wanted: data}


async def test_redis_signed_entries_round_trip(
    redis_server: RedisServer, admin: redis.Redis, namespace: str
) -> None:
    """With a secret, entries are b"PCT1" + a 32-byte tag + the payload, and read back."""
    async with redis_store(redis_server, namespace, secret=b"key") as store:
        await store.put(b"K", b"payload")
        await store.flush()
        assert await store.candidates([b"K"]) == {b"K": [b"payload"]}
    (raw,) = admin.lrange(f"picante:{namespace}:t:4b", 0, -1)
    assert raw.startswith(b"PCT1")
    assert raw.endswith(b"payload")
    assert len(raw) == 4 + 32 + len(b"payload")


async def test_redis_forged_entries_rejected(
    redis_server: RedisServer, admin: redis.Redis, namespace: str
) -> None:
    """No tag, a wrong tag, another key's entry, another namespace's: each rejected."""
    async with (
        redis_store(redis_server, namespace, secret=b"key") as store,
        redis_store(redis_server, namespace, secret=b"other key") as forger,
        redis_store(redis_server, namespace + "-b", secret=b"key") as neighbour,
    ):
        await store.put(b"genuine", b"payload")
        await forger.put(b"wrong tag", b"payload")
        await neighbour.put(b"elsewhere", b"payload")
        await store.flush()
        await forger.flush()
        await neighbour.flush()

        def key(name: bytes, space: str = namespace) -> str:
            return f"picante:{space}:t:{name.hex()}"

        (genuine,) = admin.lrange(key(b"genuine"), 0, -1)
        (foreign,) = admin.lrange(key(b"elsewhere", namespace + "-b"), 0, -1)
        admin.rpush(key(b"no tag"), b"payload")
        admin.rpush(key(b"unsigned"), b"PCT0payload")
        admin.rpush(key(b"truncated"), genuine[:20])
        admin.rpush(key(b"replayed"), genuine)  # a genuine entry under another key
        admin.rpush(key(b"elsewhere"), foreign)  # copied from another namespace, same key
        forged = [b"no tag", b"unsigned", b"truncated", b"wrong tag", b"replayed", b"elsewhere"]
        assert await store.candidates([b"genuine", *forged]) == {b"genuine": [b"payload"]}
        assert store.counters.rejected == len(forged)
        assert (store.counters.hits, store.counters.misses) == (1, len(forged))


async def test_redis_unsigned_reader_rejects_signed_entries(
    redis_server: RedisServer, namespace: str
) -> None:
    """A store without the secret cannot check a signed entry, so it rejects it."""
    async with (
        redis_store(redis_server, namespace, secret=b"key") as signer,
        redis_store(redis_server, namespace) as unsigned,
    ):
        await signer.put(b"K", b"payload")
        await signer.flush()
        assert await unsigned.candidates([b"K"]) == {}
        assert unsigned.counters.rejected == 1


async def test_redis_namespaces(redis_server: RedisServer, admin: redis.Redis) -> None:
    """Writes go to the own namespace only; reads: own first, then read_from in order."""
    space = f"site{uuid.uuid4().hex[:8]}"
    main, pr, other = f"{space}/main", f"{space}/pr-1", f"{space}/pr-2"
    async with (
        redis_store(redis_server, main, secret="s") as on_main,
        redis_store(redis_server, pr, read_from=[main], secret="s") as on_pr,
        redis_store(redis_server, other, secret="s") as untrusted,
        redis_store(redis_server, f"{space}/laptop", read_from=[main, pr], secret="s") as laptop,
    ):
        await on_main.put(b"K", b"from main")
        await on_main.put(b"K", b"shared")
        await on_pr.put(b"K", b"from pr")
        await on_pr.put(b"K", b"shared")
        await untrusted.put(b"K", b"poison")
        for made in (on_main, on_pr, untrusted):
            await made.flush()
        assert {key.decode().split(":")[1] for key in admin.scan_iter(f"picante:{space}/*")} == {
            main,
            pr,
            other,
        }
        assert await on_pr.candidates([b"K"]) == {b"K": [b"shared", b"from pr", b"from main"]}
        assert await laptop.candidates([b"K"]) == {b"K": [b"shared", b"from main", b"from pr"]}
        assert await on_main.candidates([b"K"]) == {b"K": [b"shared", b"from main"]}
        # Entries of an untrusted namespace are not even read.
        payloads = b"shared" + b"from pr" + b"shared" + b"from main"
        assert (on_pr.counters.rejected, on_pr.counters.bytes_in) == (0, 4 * 36 + len(payloads))


async def test_redis_blobs_read_from_trusted_namespaces(
    redis_server: RedisServer, namespace: str
) -> None:
    """A blob written by the main namespace is found by a store reading from it."""
    wanted, data = blob("value")
    async with (
        redis_store(redis_server, namespace + "-main") as on_main,
        redis_store(redis_server, namespace, read_from=[namespace + "-main"]) as on_pr,
        redis_store(redis_server, namespace + "-x") as stranger,
    ):
        await on_main.put(b"K", b"entry", {wanted: data})
        await on_main.flush()
        assert await on_pr.blobs([wanted]) == {wanted: data}
        assert await stranger.blobs([wanted]) == {}


async def test_redis_salt_abandons_keyspace(
    redis_server: RedisServer, admin: redis.Redis, namespace: str
) -> None:
    """A store with another salt sees nothing of the old keyspace; the K is not in the key."""
    wanted, data = blob("value")
    async with redis_store(redis_server, namespace, salt="2026-01") as old:
        await old.put(b"K", b"entry", {wanted: data})
        await old.flush()
    async with redis_store(redis_server, namespace, salt="2026-02") as new:
        assert await new.candidates([b"K"]) == {}
        assert await new.blobs([wanted]) == {}
    async with redis_store(redis_server, namespace, salt="2026-01") as same:
        assert await same.candidates([b"K"]) == {b"K": [b"entry"]}
        assert await same.blobs([wanted]) == {wanted: data}
    keys = [key.decode() for key in admin.scan_iter(match=f"picante:{namespace}:*")]
    assert len(keys) == 2
    assert not any(key.endswith((":4b", wanted.hex())) for key in keys)


@pytest.mark.parametrize(
    "bad", ["", "a:b", "site/*", "a b", "x" * 201, "-leading", "ab[c]", "a\\b", "ns?"]
)
def test_redis_namespace_checked(redis_server: RedisServer, bad: str) -> None:
    """A namespace that an ACL key pattern could not match exactly is refused at once."""
    with pytest.raises(UsageError, match="is not a namespace"):
        RedisStore(redis_server.url, namespace=bad)
    with pytest.raises(UsageError, match="is not a namespace"):
        RedisStore(redis_server.url, namespace="fine", read_from=[bad])


def test_redis_options_checked(redis_server: RedisServer) -> None:
    with pytest.raises(UsageError, match="secret is empty"):
        RedisStore(redis_server.url, namespace="ns", secret=b"")
    with pytest.raises(UsageError, match="sequence of namespaces"):
        RedisStore(redis_server.url, namespace="ns", read_from="main")
    with pytest.raises(UsageError, match="ttl"):
        RedisStore(redis_server.url, namespace="ns", ttl=0)
    with pytest.raises(UsageError, match="timeout"):
        RedisStore(redis_server.url, namespace="ns", timeout=0)


def test_redis_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, constructing a RedisStore says which extra to install."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'picante\[redis\]'"):
        RedisStore("redis://localhost", namespace="ns")


def test_redis_repr_hides_password() -> None:
    store = RedisStore("redis://ci:hunter2@cache.internal:6379/0", namespace="site/main")
    assert "hunter2" not in repr(store)
    assert repr(store) == (
        "RedisStore('redis://ci:***@cache.internal:6379/0', namespace='site/main')"
    )


# -- Redis: ACLs ------------------------------------------------------------------------------


async def test_redis_acl_pr_reads_main_writes_its_own(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """
    With the ACL users of docs/guides/sharing.md, created by its commands as written: the
    pull request's user reads main's entries and blobs and writes its own namespace; its
    writes to main are refused, counted and never raised, and its reads keep working.
    (`test_share.py` runs the same set-up end to end, through `picante.share`.)
    """
    server, users = own_redis_server, documented_acl_users()
    main, pr = "site/main", "site/pr-123"
    as_main, as_pr = server.url_as(users["main-builds"]), server.url_as(users["pr-123"])
    wanted, data = blob("main's value")
    admin = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=10)
    try:
        for user in users.values():
            assert admin.execute_command(*user.command) == b"OK"
        async with RedisStore(as_main, namespace=main, secret="s") as on_main:
            await on_main.put(b"K", b"main's entry", {wanted: data})
            await on_main.flush()
            assert (on_main.counters.uploads, on_main.counters.errors) == (1, 0)
        with caplog.at_level(logging.WARNING, logger="picante"):
            async with (
                RedisStore(as_pr, namespace=pr, read_from=[main], secret="s") as pr_store,
                RedisStore(as_pr, namespace=main, secret="s") as pr_posing_as_main,
            ):
                assert await pr_store.candidates([b"K"]) == {b"K": [b"main's entry"]}
                assert await pr_store.blobs([wanted]) == {wanted: data}
                await pr_posing_as_main.put(b"K", b"poison")
                await pr_posing_as_main.flush()
                await pr_store.put(b"K", b"pr's entry")
                await pr_store.flush()
                assert await pr_store.candidates([b"K"]) == {b"K": [b"pr's entry", b"main's entry"]}
                # The refusal was counted, broke nothing: the same store still reads main.
                refused = pr_posing_as_main.counters
                assert (refused.errors, refused.dropped, refused.uploads) == (1, 1, 0)
                assert refused.breaker_openings == 0
                assert await pr_posing_as_main.candidates([b"K"]) == {b"K": [b"main's entry"]}
                assert pr_store.counters.errors == 0
        assert [record for record in caplog.records if record.name == "picante"] == []
        assert admin.lrange(f"picante:{main}:t:4b", 0, -1)[0].endswith(b"main's entry")
    finally:
        admin.close()


# -- Redis: the server fails ------------------------------------------------------------------


class FakeClock:
    """The store's clock for the breaker, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_redis_server_killed_mid_run(
    own_redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    SIGKILL with lookups and uploads in flight: all miss or drop at once, the breaker opens
    once with one warning, nothing raises; after the breaker period, with the server back
    on the same socket, the store works again.
    """
    sends: list[int] = []
    original = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counting(self: object, command: object, check_health: bool = True) -> None:
        sends.append(1)
        await original(self, command, check_health)  # type: ignore[arg-type]

    monkeypatch.setattr(
        redis.asyncio.connection.AbstractConnection, "send_packed_command", counting
    )
    server, clock = own_redis_server, FakeClock()
    store = RedisStore(server.url, namespace="site/main", timeout=0.5, breaker=30.0)
    store._clock = clock
    with caplog.at_level(logging.WARNING, logger="picante"):
        async with store:
            await store.put(b"K", b"entry")
            await store.flush()
            assert await store.candidates([b"K"]) == {b"K": [b"entry"]}
            # Freeze the server so that requests are sent but not answered, then kill it.
            server.signal(signal.SIGSTOP)
            sends.clear()
            lookups = [asyncio.create_task(store.candidates([b"K", b"L%d" % n])) for n in range(5)]
            for number in range(20):
                await store.put(b"K", b"entry %d" % number)
            await until(lambda: len(sends) >= 6)  # 5 lookups and the upload batch are out
            started = time.perf_counter()
            server.kill()
            results = await asyncio.gather(*lookups, store.flush())
            assert results[:5] == [{}] * 5
            assert time.perf_counter() - started < 0.5  # the reset is seen at once
            # Open: every operation answers at once, without trying the server.
            sends.clear()
            assert await store.candidates([b"K"]) == {}
            assert await store.blobs([digest(b"x")]) == {}
            await store.put(b"K", b"while open")
            assert sends == []
            counters = store.counters
            assert counters.breaker_openings == 1
            assert counters.errors >= 1
            assert counters.dropped == 21
            # The server comes back (empty: it saved nothing); the breaker is still open.
            server.start()
            assert await store.candidates([b"K"]) == {}
            assert sends == []
            clock.now += 30.0
            await store.put(b"K", b"after")
            await store.flush()
            assert await store.candidates([b"K"]) == {b"K": [b"after"]}
    warnings = [record.getMessage() for record in caplog.records if record.name == "picante"]
    assert len(warnings) == 1
    assert warnings[0].startswith("RedisStore('unix://")
    assert "counts as empty for the next 30 s" in warnings[0]


async def test_redis_server_hangs_lookup_times_out(own_redis_server: RedisServer) -> None:
    """A server that accepts but never answers: a miss after `timeout`, breaker open."""
    server = own_redis_server
    async with RedisStore(server.url, namespace="ns", timeout=0.2) as store:
        await store.candidates([b"K"])  # connected
        server.signal(signal.SIGSTOP)
        try:
            started = time.perf_counter()
            assert await store.candidates([b"K"]) == {}
            elapsed = time.perf_counter() - started
        finally:
            server.signal(signal.SIGCONT)
        assert 0.15 < elapsed < 1.0
        assert (store.counters.errors, store.counters.breaker_openings) == (1, 1)


async def test_redis_unreachable_from_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No server at all: misses and dropped writes, one warning, no exception."""
    url = f"unix://{tmp_path}/nobody.sock"
    with caplog.at_level(logging.WARNING, logger="picante"):
        async with RedisStore(url, namespace="ns") as store:
            started = time.perf_counter()
            assert await store.candidates([b"K"]) == {}
            await store.put(b"K", b"entry")
            await store.flush()
            assert await store.blobs([digest(b"x")]) == {}
            assert time.perf_counter() - started < 0.5
    assert (store.counters.breaker_openings, store.counters.dropped) == (1, 1)
    warnings = [record.getMessage() for record in caplog.records if record.name == "picante"]
    assert len(warnings) == 1
    assert "ConnectionError" in warnings[0]


async def test_redis_large_blobs_get_time(redis_server: RedisServer, namespace: str) -> None:
    """A 12 MiB blob is written and read with a tiny timeout: transfers get time per MiB."""
    wanted, data = blob("large", 12 << 20)
    async with redis_store(redis_server, namespace, timeout=0.05) as store:
        await store.put(b"K", b"entry", {wanted: data})
        await store.flush()
        assert await store.blobs([wanted]) == {wanted: data}
        assert (store.counters.errors, store.counters.uploads) == (0, 1)


async def test_uploads_batched_by_bytes(backed: Callable[..., Store]) -> None:
    """Uploads go in batches of at most 8 MiB (a larger one alone): 5 x 3 MiB in 3 batches."""
    async with backed() as store:
        for number in range(5):
            await store.put(b"K%d" % number, b"entry", dict([blob(str(number), 3 << 20)]))
        before = store.counters.round_trips
        await store.flush()
        assert store.counters.round_trips - before == 3
        assert store.counters.uploads == 5
