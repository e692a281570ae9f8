"""`db.q.cache_info()`: functools' counters, per query and per database instance."""

from __future__ import annotations

import functools

import picante


@picante.database
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

    @picante.query(lru=2)
    async def shout(self, path: str) -> str:
        return (await self.source(path)).upper()

    @picante.query
    async def total(self) -> int:
        return await self.words("a") + await self.words("b")


def site() -> Site:
    db = Site()
    db.source.set("a", "x y")
    db.source.set("b", "z")
    db.source.set("c", "w")
    return db


async def test_the_fields_of_functools_lru_cache_first() -> None:
    assert picante.CacheInfo._fields[:4] == functools._CacheInfo._fields
    db = site()
    assert db.words.cache_info() == (0, 0, None, 0, 0)
    await db.words("a")
    for _ in range(5):
        await db.words("a")
    assert db.words.cache_info() == picante.CacheInfo(
        hits=5, misses=1, maxsize=None, currsize=1, evicted=0
    )


async def test_reads_inside_queries_count_and_revalidation_is_a_miss() -> None:
    db = site()
    await db.total()  # words('a') and words('b'): two misses (run inline)
    await db.total()  # total: a hit; nothing read inside
    assert (db.total.cache_info().hits, db.total.cache_info().misses) == (1, 1)
    assert db.words.cache_info()[:2] == (0, 2)
    db.source.set("c", "v")  # read by nothing: total is still clean, a hit
    await db.total()
    assert (db.total.cache_info().hits, db.total.cache_info().misses) == (2, 1)
    db.source.set("b", "q")  # words('b') re-runs to an equal count: total is revalidated
    await db.total()
    assert (db.total.cache_info().hits, db.total.cache_info().misses) == (2, 2)
    assert db.log == ["words('a')", "words('b')", "words('b')"]
    assert db.words.cache_info()[:2] == (0, 2)  # the walk re-ran words('b'): no read


async def test_lru_capacity_and_evictions() -> None:
    db = site()
    for path in ("a", "b", "c", "a"):
        await db.shout(path)
    # Capacity 2: reading c evicted a; reading a again recomputed it, evicting b.
    info = db.shout.cache_info()
    assert (info.maxsize, info.currsize, info.evicted, info.misses) == (2, 2, 2, 4)
    picante.set_lru(db.shout, 1)
    info = db.shout.cache_info()
    assert (info.maxsize, info.currsize, info.evicted) == (1, 1, 3)
    picante.set_lru(db.shout, None)
    assert db.shout.cache_info().maxsize is None


async def test_each_instance_and_snapshot_counts_its_own_reads() -> None:
    db, other = site(), site()
    await db.words("a")
    await db.words("a")
    snapshot = picante.snapshot(db)
    await snapshot.words("a")  # adopted from the database: a miss here
    await snapshot.words("a")
    assert db.words.cache_info()[:2] == (1, 1)
    assert snapshot.words.cache_info()[:2] == (1, 1)
    assert other.words.cache_info()[:2] == (0, 0)
    # And the sum over queries is stats(db).hits.
    assert picante.debug.stats(db).hits == 1
