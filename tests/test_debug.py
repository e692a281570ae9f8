"""picante.debug: dependency graph, trace, stats, explain and verify."""

from __future__ import annotations

import pickle

import attrs

import picante
from picante import debug


@picante.database
class Site:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.salt = 0

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.query(lru=1)
    async def shout(self, path: str) -> str:
        return (await self.source(path)).upper()

    @picante.query
    async def words(self, path: str) -> int:
        self.log.append(f"words({path!r})")
        return len((await self.source(path)).split())

    @picante.query
    async def total(self) -> int:
        return await self.words("a") + await self.words("b")

    @picante.query
    async def impure(self) -> int:
        # Reads state picante does not track: exactly what verify() is for.
        return await self.words("a") + self.salt


async def site() -> Site:
    db = Site([])
    db.source.set("a", "x y")
    db.source.set("b", "z")
    await db.total()
    return db


async def test_dependency_graph_and_dot() -> None:
    """Nodes, edges (reader → read), roots, leaves, and DOT with readable labels."""
    graph = debug.dependency_graph(await site())
    assert [n.label for n in graph.roots] == ["total()"]
    assert sorted(n.label for n in graph.leaves) == ["source('a')", "source('b')"]
    assert sorted((a.label, b.label) for a, b in graph.edges) == [
        ("total()", "words('a')"),
        ("total()", "words('b')"),
        ("words('a')", "source('a')"),
        ("words('b')", "source('b')"),
    ]
    dot = graph.to_dot()
    assert dot.startswith("digraph picante {")
    assert "[label=\"words('a')\", shape=ellipse]" in dot
    assert "[label=\"source('b')\", shape=box]" in dot


async def test_trace_counts_runs_hits_and_cutoffs() -> None:
    """A trace sees recomputations, early cutoffs, hits, and the commit's events."""
    db = await site()
    handle = vars(db)["words"]
    with debug.trace(db) as recorded:
        db.source.set("a", "p q")  # same word count: total cut off
        assert await db.total() == 3
        assert await db.words("b") == 1
    summary = recorded.summary()
    assert summary["words"].recomputations == 1
    assert summary["words"].early_cutoffs == 1
    assert summary["total"].executions == 0
    assert summary["words"].calls == 1
    assert summary["words"].hits == 1
    assert picante.RevisionBumped(3) in [record for _, record in recorded.records]
    assert "words" in str(recorded)
    # Outside the trace the handles are the plain ones again.
    assert vars(db)["words"] is handle


async def test_executed_records_say_picante_debug_executed() -> None:
    """A trace's executions are `picante.debug.Executed`: by name, in reprs and pickles."""
    db = await site()
    db.source.set("a", "p q r")
    with debug.trace(db) as recorded:
        await db.words("a")
    [executed] = [record for _, record in recorded.records if isinstance(record, debug.Executed)]
    assert (debug.Executed.__module__, debug.Executed.__qualname__) == ("picante.debug", "Executed")
    assert repr(debug.Executed) == "<class 'picante.debug.Executed'>"
    assert repr(executed).startswith("Executed(revision=3, ingredient='words', key=('a',), ")
    assert pickle.loads(pickle.dumps(executed)) == executed


def without_sizes(stats: debug.Stats) -> debug.Stats:
    """*stats* without its size, to compare with a `stats(db)` made without sizes."""
    return attrs.evolve(stats, approximate_bytes=None)


async def test_stats() -> None:
    """Memo counts per query, inputs, edges and work counters."""
    db = await site()
    stats = debug.stats(db)
    assert (stats.revision, stats.inputs, stats.memos, stats.dependency_edges) == (2, 2, 3, 4)
    assert [(q.name, q.memos, q.values) for q in stats.queries] == [
        ("total", 1, 1),
        ("words", 2, 2),
    ]
    assert stats.executions == 3
    assert stats.approximate_bytes is None  # not measured unless asked: it can be slow
    sized = debug.stats(db, sizes=True)
    assert sized.approximate_bytes is not None
    assert sized.approximate_bytes > 0
    assert sized.approximate_bytes >= sum(len(s) for s in ("a", "x y", "b", "z"))
    assert without_sizes(sized) == stats


async def test_stats_counts_every_hit_without_a_trace() -> None:
    """`hits` counts reads answered at once from a valid memo, outside `trace` too."""
    db = await site()  # total() read words('a') and words('b'): two misses, no hit
    assert debug.stats(db).hits == 0
    for _ in range(1000):
        await db.words("a")
    assert debug.stats(db).hits == 1000
    await db.total()  # a hit from outside; nothing read inside
    assert debug.stats(db).hits == 1001
    db.source.set("b", "z z")
    # total() is a miss: its walk re-executes words('b') (no handle call), then total()
    # itself, whose two reads find valid memos: two hits.
    await db.total()
    assert (debug.stats(db).hits, debug.stats(db).executions) == (1003, 5)
    snapshot = picante.snapshot(db)
    await snapshot.words("a")  # a miss: the snapshot adopts the database's memo
    await snapshot.words("a")
    assert (debug.stats(snapshot).hits, debug.stats(db).hits) == (1, 1003)


async def test_explain_each_reason() -> None:
    """explain names the changed dependency and its revision, first runs, evictions."""
    db = await site()
    assert str(debug.explain(db, db.words, "a")).startswith("words('a') was computed for the first")
    assert debug.explain(db, "words", "zzz").reason == "never computed"
    db.source.set("a", "x y z")
    await db.total()
    why = debug.explain(db, db.total)
    assert (why.reason, why.revision, why.verified_at) == ("changed", 3, 2)
    assert why.changed == (("words('a')", 3),)
    assert "because words('a') changed at revision 3" in str(why)
    await db.shout("a")
    await db.shout("b")  # evicts shout('a')'s value
    await db.shout("a")
    assert debug.explain(db, db.shout, "a").reason == "evicted"


async def test_explain_binds_keywords_and_defaults() -> None:
    """explain addresses the record a call with the same arguments would, keywords too."""
    db = await site()
    assert debug.explain(db, db.words, path="a") == debug.explain(db, db.words, "a")
    assert debug.explain(db, "words", path="a").reason == "first"


async def test_verify_finds_an_impure_query() -> None:
    """verify re-runs valid memos, reports the one whose fresh value differs, changes none."""
    db = await site()
    assert await db.impure() == 2
    assert await debug.verify(db) == []
    db.salt = 10
    mismatches = await debug.verify(db)
    assert [(m.record, m.memoized, m.fresh) for m in mismatches] == [("impure()", 2, 12)]
    assert await db.impure() == 2  # the memo is untouched
