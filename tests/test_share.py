"""picante.share: results reused across databases, and after a revert, through stores."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import TYPE_CHECKING, Any, cast

import orjson
import pytest
import redis

import picante
from picante.stores import MemoryStore, RedisStore, SqliteStore
from tests.redis_server import documented_acl_users


if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

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


async def settle(db: object) -> None:
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


# -- ACLs: the sharing guide's CI set-up, end to end ------------------------------------------
#
# docs/guides/sharing.md ("ACLs for CI") tells operators which Redis users to create; the
# tests below create them with the guide's own commands, on a server of their own, and
# build through `picante.share` as those users. (A reader with another secret adopts
# nothing: `test_entries_a_reader_does_not_trust_are_not_adopted`.)

MAIN, PR = "site/main", "site/pr-123"


class CiServer:
    """A server with the guide's users, and an admin connection to look at it."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.users = documented_acl_users()
        # Any: redis-py leaves parts of its client untyped (execute_command, the keyword
        # arguments of keys and acl_log); what it returns is typed where it is used.
        client = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=TIMEOUT)
        self.admin: Any = cast("Any", client)
        try:
            for user in self.users.values():
                assert self.admin.execute_command(*user.command) == b"OK"
        except BaseException:
            client.close()
            raise

    def store(self, user: str, namespace: str, read_from: Sequence[str] = ()) -> RedisStore:
        """
        A store connecting as *user*, with one secret for all. `inline_bytes=0` files every
        result in a blob, so that blobs go through the ACLs as well as trace entries.
        """
        url = self.server.url_as(self.users[user])
        return RedisStore(
            url, namespace=namespace, read_from=read_from, secret=b"k" * 32, inline_bytes=0
        )

    def contents(self, namespace: str) -> dict[bytes, tuple[bytes, int]]:
        """Each key of *namespace*: its value's bytes (DUMP) and its expiry time in ms."""
        keys: list[bytes] = self.admin.keys(f"picante:{namespace}:*")
        return {key: (self.admin.dump(key), self.admin.pexpiretime(key)) for key in keys}

    def refusals(self) -> list[tuple[str, str, str]]:
        """
        The server's ACL log: (user, reason, key or command) of each refusal, but for the
        `CLIENT SETINFO` that redis-py sends on connecting, and ignores the refusal of
        (Redis 7.2 and later; the guide's users may not run it).
        """
        log: list[dict[str, Any]] = self.admin.acl_log()
        return [
            (entry["username"], entry["reason"], entry["object"])
            for entry in log
            if entry["object"] != "client|setinfo"
        ]


@pytest.fixture
def ci(own_redis_server: RedisServer) -> Iterator[CiServer]:
    """A server of the test's own (the guide's users and namespaces, unchanged)."""
    made = CiServer(own_redis_server)
    yield made
    made.admin.close()


def kinds(keys: dict[bytes, Any]) -> list[str]:
    """The kinds of *keys*, sorted: `t` for a trace list, `v` for a blob."""
    return sorted(key.decode().split(":")[2] for key in keys)


async def build_main(ci: CiServer) -> dict[bytes, tuple[bytes, int]]:
    """A build of main, as main's user; what it left in main's namespace."""
    async with ci.store("main-builds", MAIN) as on_main:
        main = site(on_main, a="one two", b="three")
        assert await main.total() == 3
        await settle(main)
    assert main.log == ["total()", "words('a')", "words('b')"]
    assert (on_main.counters.uploads, on_main.counters.errors) == (3, 0)
    written = ci.contents(MAIN)
    assert kinds(written) == ["t", "t", "t", "v", "v", "v"]
    return written


async def test_acl_a_pull_request_adopts_mains_results_and_writes_its_own_namespace(
    ci: CiServer,
) -> None:
    """
    As the guide's users: a pull request's build with main's inputs runs no body, from
    main's entries and blobs; after an edit it runs exactly what the edit affects, and
    uploads to its own namespace only. Main's keys stay byte for byte as they were, expiry
    times included, and the server refused no command of either user.
    """
    async with asyncio.timeout(TIMEOUT):
        main_before = await build_main(ci)
        async with ci.store("pr-123", PR, read_from=[MAIN]) as on_pr:
            pr = site(on_pr, a="one two", b="three")
            assert await pr.total() == 3
            assert pr.log == []
            shared = picante.debug.stats(pr).shared
            assert shared is not None
            assert (shared.adopted, shared.published) == (3, 0)
            await settle(pr)
            assert ci.contents(PR) == {}  # what was adopted is not uploaded again
            pr.source.set("b", "three four five")
            assert await pr.total() == 5
            assert pr.log == ["words('b')", "total()"]
            await settle(pr)
        counters = on_pr.counters
        assert (counters.uploads, counters.dropped, counters.errors) == (2, 0, 0)
        assert kinds(ci.contents(PR)) == ["t", "t", "v", "v"]
        assert ci.contents(MAIN) == main_before
        assert ci.refusals() == []


async def test_acl_a_pull_request_store_writing_to_main_is_refused(
    ci: CiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """
    The pull request's user with a store misconfigured to write `site/main` (a poisoning
    attempt, or a slip): the server refuses its uploads and its TTL refreshes of main's
    keys. Nothing reaches the build, whose results are right; the store counts the refused
    uploads in `dropped` and the refusals in `errors`, opens no breaker and logs no
    warning; main's namespace stays byte for byte as it was, expiry times included.
    """
    async with asyncio.timeout(TIMEOUT):
        main_before = await build_main(ci)
        with caplog.at_level(logging.DEBUG, logger="picante"):
            async with ci.store("pr-123", MAIN) as posing_as_main:
                pr = site(posing_as_main, a="one two", b="three four five")
                assert await pr.total() == 5
                assert await pr.words("a") == 2
                # words('a') was adopted from main's namespace, which this user may read.
                assert pr.log == ["words('b')", "total()"]
                await settle(pr)
        counters = posing_as_main.counters
        assert (counters.uploads, counters.dropped) == (0, 2)
        assert counters.errors >= 1
        assert counters.breaker_openings == 0
        assert ci.contents(MAIN) == main_before
        refusals = ci.refusals()
        assert {(user, reason) for user, reason, _ in refusals} == {("pr-123", "key")}
        refused = {key for _, _, key in refusals}
        assert all(key.startswith(f"picante:{MAIN}:") for key in refused)
        # words('a') uploaded nothing: its list was only to have its TTL refreshed.
        record = vars(pr)["__picante__"].shared.key_of("words", ("a",))
        assert f"picante:{MAIN}:t:{record.hex()}" in refused
    # The refusals are logged at the debug level only: each concerns one operation.
    ours = [record for record in caplog.records if record.name == "picante"]
    assert ours
    assert {record.levelno for record in ours} == {logging.DEBUG}
    assert all("writing failed: NoPermissionError" in record.getMessage() for record in ours)
