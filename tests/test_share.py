"""picante.share: results reused across databases, and after a revert, through stores."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import orjson
import pytest

import picante
from picante.stores import MemoryStore, RedisStore, SqliteStore


if TYPE_CHECKING:
    from tests.redis_server import RedisServer


TIMEOUT = 10


@picante.database
class Site:
    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input
    async def draft(self) -> bool:
        raise NotImplementedError

    @picante.query
    async def words(self, path: str) -> int:
        self.log.append(f"words({path!r})")
        return len((await self.source(path)).split())

    @picante.query
    async def total(self) -> int:
        self.log.append("total()")
        return await self.words("a") + await self.words("b")

    @picante.query
    async def shown(self) -> int:
        """A dynamic dependency: which page it reads depends on `draft`."""
        self.log.append("shown()")
        return await self.words("b" if await self.draft() else "a")

    @picante.query
    async def fails(self) -> int:
        self.log.append("fails()")
        raise ValueError(await self.source("a"))

    @picante.query(share=False)
    async def private(self) -> int:
        self.log.append("private()")
        return await self.words("a")

    @picante.query(volatile=True)
    async def clock(self) -> int:
        self.log.append("clock()")
        return await self.words("a")


def site(store: Any, **sources: str) -> Site:
    db = Site()
    for path, text in sources.items():
        db.source.set(path, text)
    db.draft.set(False)
    picante.share(db, store)
    return db


async def settle(db: Site) -> None:
    await asyncio.wait_for(picante.flush_shared(db), TIMEOUT)


async def test_a_second_database_runs_no_body_for_the_same_inputs() -> None:
    store = MemoryStore()
    first = site(store, a="one two", b="three")
    assert await first.total() == 3
    await settle(first)
    assert first.log == ["total()", "words('a')", "words('b')"]
    second = site(store, a="one two", b="three")
    assert await second.total() == 3
    assert second.log == []
    shared = picante.debug.stats(second).shared
    assert shared is not None
    assert (shared.lookups, shared.adopted, shared.published) == (3, 3, 0)
    first_stats = picante.debug.stats(first).shared
    assert first_stats is not None
    assert (first_stats.adopted, first_stats.published) == (0, 3)
    assert picante.debug.stats(Site()).shared is None  # no store attached
    # Adopted memos are memos: an edit re-runs exactly what it affects.
    second.source.set("b", "three four")
    assert await second.total() == 4
    assert second.log == ["words('b')", "total()"]


async def test_a_revert_reuses_the_old_results() -> None:
    store = MemoryStore()
    db = site(store, a="one two", b="three")
    assert await db.total() == 3
    await settle(db)
    db.source.set("a", "one")
    assert await db.total() == 2
    await settle(db)
    db.log.clear()
    db.source.set("a", "one two")  # back to the first text
    assert await db.total() == 3
    assert db.log == []


async def test_dynamic_dependencies_are_checked_in_read_order() -> None:
    store = MemoryStore()
    db = site(store, a="one two", b="three")
    assert await db.shown() == 2  # read draft (False), then words('a')
    await settle(db)
    other = site(store, a="one two", b="three")
    other.draft.set(True)
    # The entry's first read differs (draft is True): the body runs and reads words('b').
    assert await other.shown() == 1
    assert other.log == ["shown()", "words('b')"]
    await settle(other)
    # Both evaluations are in the store now: each database finds its own.
    third = site(store, a="one two", b="three")
    third.draft.set(True)
    assert await third.shown() == 1
    assert third.log == []


async def test_a_differing_read_runs_the_body() -> None:
    store = MemoryStore()
    first = site(store, a="one two", b="three")
    await first.total()
    await settle(first)
    second = site(store, a="one two", b="three four five")
    assert await second.total() == 5
    # words('a') was adopted; words('b') differs, so it and total() ran.
    assert second.log == ["words('b')", "total()"]


async def test_what_is_never_shared() -> None:
    store = MemoryStore()
    first = site(store, a="one two", b="three")
    with pytest.raises(ValueError, match="one two"):
        await first.fails()
    await first.private()
    await first.clock()
    await settle(first)
    second = site(store, a="one two", b="three")
    with pytest.raises(ValueError, match="one two"):
        await second.fails()
    await second.private()
    await second.clock()
    # Errors, share=False and volatile queries ran again; words('a') came from the store.
    assert second.log == ["fails()", "private()", "clock()"]


async def test_a_forged_or_broken_entry_is_not_adopted() -> None:
    store = MemoryStore()
    first = site(store, a="one two", b="three")
    await first.words("a")
    await settle(first)
    shared = vars(first)["__picante__"].shared
    key = shared.key_of("words", ("a",))
    (entry,) = (await store.candidates([key]))[key]
    data = orjson.loads(entry)
    lying = {**data, "v": "7"}  # another result under the same reads: its digest differs
    broken = b"{not json"
    store2 = MemoryStore()
    for bad in (orjson.dumps(lying), broken):
        await store2.put(key, bad)
    second = site(store2, a="one two", b="three")
    assert await second.words("a") == 2
    assert second.log == ["words('a')"]


async def test_lower_tiers_fill_the_upper_ones(tmp_path: Any) -> None:
    async with SqliteStore(tmp_path / "shared.sqlite") as disk:
        first = site(disk, a="one two", b="three")
        await first.total()
        await settle(first)
        memory = MemoryStore()
        second = Site()
        second.source.set("a", "one two")
        second.source.set("b", "three")
        second.draft.set(False)
        picante.share(second, memory, disk)
        assert await second.total() == 3
        assert second.log == []
        await settle(second)
        # The memory tier now answers on its own.
        third = site(memory, a="one two", b="three")
        assert await third.total() == 3
        assert third.log == []


async def test_share_needs_stores_and_detaches() -> None:
    db = site(MemoryStore(), a="x", b="y")
    before = vars(db)["__picante__"].shared
    with pytest.raises(picante.UsageError, match=r"^share\(\): expected picante.stores"):
        picante.share(db, MemoryStore(), object())  # type: ignore[arg-type]
    assert vars(db)["__picante__"].shared is before  # a refused share changes nothing
    picante.share(db)
    assert vars(db)["__picante__"].shared is None
    await picante.flush_shared(db)  # nothing attached: nothing to wait for
    with pytest.raises(picante.UsageError, match="share=True needs a persisted"):

        @picante.database
        class Bad:
            @picante.query(share=True, persist=False)
            async def q(self) -> int:
                return 1


PROCESS = """
import asyncio, json, sys

import picante
from picante.stores import RedisStore


@picante.database(name="shared-site")
class Site:
    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def words(self, path: str) -> int:
        self.log.append(f"words({path!r})")
        return len((await self.source(path)).split())

    @picante.query
    async def total(self) -> int:
        self.log.append("total()")
        return sum([await self.words(p) for p in ("a", "b", "c")])


async def main(url: str, b: str) -> None:
    async with RedisStore(url, namespace="site/main", secret=b"k" * 32) as store:
        db = Site()
        db.source.set("a", "one two")
        db.source.set("b", b)
        db.source.set("c", "six")
        picante.share(db, store)
        total = await db.total()
        await picante.flush_shared(db)
        print(json.dumps({"total": total, "ran": db.log}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def run_process(url: str, b: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROCESS, url, b, stdout=subprocess.PIPE
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode == 0
    result: dict[str, Any] = json.loads(output)
    return result


async def test_two_processes_share_through_redis(redis_server: RedisServer) -> None:
    """The second process runs no body; a third, with one input changed, only what it affects."""
    first = await run_process(redis_server.url, "three four five")
    assert first == {
        "total": 6,
        "ran": ["total()", "words('a')", "words('b')", "words('c')"],
    }
    second = await run_process(redis_server.url, "three four five")
    assert second == {"total": 6, "ran": []}
    third = await run_process(redis_server.url, "three")
    assert third == {"total": 4, "ran": ["words('b')", "total()"]}


async def test_a_server_killed_mid_run_changes_no_result(
    own_redis_server: RedisServer,
) -> None:
    """Lookups and uploads fail: every query runs locally, with the right results."""
    async with RedisStore(own_redis_server.url, namespace="t", timeout=0.5) as store:
        first = site(store, a="one two", b="three")
        assert await first.total() == 3
        await settle(first)
        own_redis_server.kill()
        second = site(store, a="one two", b="three four")
        assert await asyncio.wait_for(second.total(), TIMEOUT) == 4
        await settle(second)
        assert second.log == ["total()", "words('a')", "words('b')"]
        assert store.counters.breaker_openings == 1


@picante.database
class Tree:
    def __init__(self) -> None:
        self.ran = 0

    @picante.input
    async def leaf(self, i: int) -> int:
        raise NotImplementedError

    @picante.query
    async def node(self, level: int, i: int) -> int:
        self.ran += 1
        if level == 0:
            return await self.leaf(i)
        return sum([await self.node(level - 1, 3 * i + j) for j in range(3)])


async def test_a_tree_comes_in_about_as_many_round_trips_as_it_is_deep(
    tmp_path: Any,
) -> None:
    """While an entry is checked, the lists of the queries it read are fetched at once."""
    depth = 4  # 1 + 3 + 9 + 27 + 81 = 121 queries

    def tree() -> Tree:
        db = Tree()
        with picante.batch(db):
            for i in range(3**depth):
                db.leaf.set(i, i)
        return db

    async with SqliteStore(tmp_path / "shared.sqlite") as store:
        first = tree()
        picante.share(first, store)
        assert await first.node(depth, 0) == sum(range(3**depth))
        await settle(first)
        before = store.counters.round_trips
        second = tree()
        picante.share(second, store)
        assert await second.node(depth, 0) == sum(range(3**depth))
        assert second.ran == 0
        # One round trip for the root's list, then one per level below it (and none per
        # query: there are 121).
        assert store.counters.round_trips - before <= depth + 2


async def test_concurrent_roots_share_their_round_trips(tmp_path: Any) -> None:
    """Adoptions that start together (a `gather` of roots) pool their lookups."""
    roots = 50

    def forest() -> Tree:
        db = Tree()
        with picante.batch(db):
            for i in range(3 * roots):
                db.leaf.set(i, i)
        return db

    async def build(db: Tree) -> list[int]:
        reads = [db.node(1, i) for i in range(roots)]
        return list(await asyncio.wait_for(asyncio.gather(*reads), TIMEOUT))

    async with SqliteStore(tmp_path / "shared.sqlite") as store:
        first = forest()
        picante.share(first, store)
        expected = await build(first)
        await settle(first)
        before = store.counters.round_trips
        second = forest()
        picante.share(second, store)
        assert await build(second) == expected
        assert second.ran == 0
        # The 50 roots' lists in one request, then the 150 leaves' in another: not one
        # request per root (50), nor per adoption (200).
        assert store.counters.round_trips - before == 2


async def test_entries_a_reader_does_not_trust_are_not_adopted(
    redis_server: RedisServer,
) -> None:
    """Signed with another secret, or written to a namespace it does not read: run."""
    url = redis_server.url
    async with RedisStore(url, namespace="share/pr-1", secret=b"a" * 32) as writer:
        first = site(writer, a="one two", b="three")
        await first.total()
        await settle(first)
    readers = [
        RedisStore(url, namespace="share/pr-1", secret=b"b" * 32),  # another secret
        RedisStore(url, namespace="share/main", secret=b"a" * 32),  # pr-1 not trusted
    ]
    for reader in readers:
        async with reader:
            db = site(reader, a="one two", b="three")
            assert await db.total() == 3
            assert db.log == ["total()", "words('a')", "words('b')"]
    # Trusted, with the right secret, from a namespace of its own (empty): adopted from
    # the entries of pr-1 signed with that secret.
    trusting = RedisStore(url, namespace="share/other", read_from=["share/pr-1"], secret=b"a" * 32)
    async with trusting:
        db = site(trusting, a="one two", b="three")
        assert await db.total() == 3
        assert db.log == []


async def test_an_adopted_memo_is_no_execution_and_says_where_it_came_from() -> None:
    store = MemoryStore()
    first = site(store, a="one two", b="three")
    await first.total()
    await settle(first)
    second = site(store, a="one two", b="three")
    with picante.testing.record(second) as log:
        assert await second.total() == 3
    assert log.executed == []  # no body ran: no trace of an execution
    assert picante.debug.stats(second).executions == 0
    why = picante.debug.explain(second, second.total)
    assert (why.reason, why.revision) == ("adopted", picante.revision(second))
    assert "taken from a shared store" in str(why)
    second.source.set("a", "one")
    await second.total()
    assert picante.debug.explain(second, second.total).reason == "changed"
