"""
`picante.sweep(db, unused_for=N)`: drop the memos (and absent input cells) that the last N
revisions did not use; keep what used memos read; results never change.

A memo is used when it is computed or revalidated. A memo that stayed clean and was only
hit leaves no trace: the first sweep that finds it unused only marks it for re-checking,
the next one drops it unless it was read meanwhile. Every test pins what ran with a call
log and what is left with the tables' records.
"""

from __future__ import annotations

import asyncio
import gc
import random
from typing import TYPE_CHECKING, cast

import pytest

import picante
from picante._format import read_summary
from picante._runtime import view_of
from picante._store import EVICTED, NEVER, InputCell, QueryCell


if TYPE_CHECKING:
    from pathlib import Path


TIMEOUT = 5


@picante.database
class Site:
    """Sources, the list of paths, a language; words, parities, labels and a total."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input
    async def paths(self) -> tuple[str, ...]:
        raise NotImplementedError

    @picante.input
    async def lang(self) -> str:
        raise NotImplementedError

    @picante.query
    async def words(self, path: str) -> int:
        self.log.append(f"words({path!r})")
        return len((await self.source(path)).split())

    @picante.query
    async def parity(self, path: str) -> int:
        self.log.append(f"parity({path!r})")
        return await self.words(path) % 2

    @picante.query
    async def label(self, path: str) -> str:
        self.log.append(f"label({path!r})")
        return f"{await self.lang()}:{'odd' if await self.parity(path) else 'even'}"

    @picante.query
    async def total(self) -> int:
        self.log.append("total()")
        return sum([await self.words(path) for path in await self.paths()])

    @picante.query
    async def optional(self, path: str) -> str:
        self.log.append(f"optional({path!r})")
        return self.source.get(path, default="-")


TEXTS = {"a": "one two", "b": "three", "c": "four five six"}


def site(log: list[str]) -> Site:
    """A `Site` with sources a, b, c, paths (a, b, c) and lang "en" (one revision)."""
    db = Site(log)
    with picante.batch(db):
        for path, text in TEXTS.items():
            db.source.set(path, text)
        db.paths.set(("a", "b", "c"))
        db.lang.set("en")
    return db


async def computed(log: list[str]) -> Site:
    """`site()` with total() and every label computed, the log cleared."""
    db = site(log)
    assert await db.total() == 6
    assert [await db.label(path) for path in "abc"] == ["en:even", "en:odd", "en:odd"]
    log.clear()
    return db


def records(db: object) -> list[str]:
    """The records *db* holds: input cells and memos (not empty query cells), sorted."""
    out = []
    for name, table in view_of(db).tables.items():
        for key, cell in table.items():
            if type(cell) is QueryCell and cell.verified_at == NEVER:
                continue
            args = ", ".join(repr(part) for part in key)
            out.append(f"{name}({args})")
    return sorted(out)


def memos(db: object) -> list[str]:
    """The memos *db* holds, sorted."""
    inputs = {
        name
        for name, table in view_of(db).tables.items()
        for cell in table.values()
        if type(cell) is InputCell
    }
    return [record for record in records(db) if record.split("(")[0] not in inputs]


ALL_MEMOS = sorted(
    [
        *(f"{query}({path!r})" for query in ("label", "parity", "words") for path in "abc"),
        "total()",
    ]
)


# -- what goes, what stays ----------------------------------------------------------------------


async def test_sweep_drops_unused_memos_and_keeps_what_used_ones_read(log: list[str]) -> None:
    """
    A memo not verified in the last revision and not clean goes at once; clean memos
    nothing used reaches go at the next sweep; what a used memo read stays throughout.
    The count returned is the number of records dropped.
    """
    db = await computed(log)
    assert memos(db) == ALL_MEMOS
    db.lang.set("fr")  # label('a'), label('b'), label('c') are no longer clean
    assert await db.label("a") == "fr:even"
    assert log == ["label('a')"]

    # label b and c: stale and unused. The rest is clean (only marked), or read by label('a').
    assert picante.sweep(db) == 2
    assert memos(db) == sorted(set(ALL_MEMOS) - {"label('b')", "label('c')"})
    # Nothing was read since: the marked memos go; what label('a') read stays.
    assert picante.sweep(db) == 0  # once more at this revision: nothing more
    picante.refresh(db)  # marks are due one revision later
    assert picante.sweep(db) == 5
    assert memos(db) == ["label('a')", "parity('a')", "words('a')"]
    assert picante.sweep(db) == 0
    # Inputs that have a value are never dropped.
    assert [r for r in records(db) if r not in memos(db)] == [
        "lang()",
        "paths()",
        "source('a')",
        "source('b')",
        "source('c')",
    ]

    # Results never change; exactly the swept memos run again.
    log.clear()
    assert await db.total() == 6
    assert [await db.label(path) for path in "abc"] == ["fr:even", "fr:odd", "fr:odd"]
    assert log == [
        "total()",
        "words('b')",
        "words('c')",
        "label('b')",
        "parity('b')",
        "label('c')",
        "parity('c')",
    ]


async def test_sweep_after_removing_keys_then_rereading_them(log: list[str]) -> None:
    """
    After keys are removed, a sweep drops their memos and absent input cells; reading
    them again recomputes (a missing input error, then the value once they are back).
    """
    db = await computed(log)
    with picante.batch(db):
        db.source.remove("c")
        db.paths.set(("a", "b"))
    assert await db.total() == 3
    assert log == ["total()"]
    # words, parity, label of c: not clean (source c changed), not used; source('c') is
    # absent and nobody kept reads it. label b stays (clean, only marked).
    assert picante.sweep(db) == 4
    assert not [record for record in records(db) if "'c'" in record]
    log.clear()

    with pytest.raises(picante.MissingInputError):
        await db.label("c")
    assert log == ["label('c')", "parity('c')", "words('c')"]
    with pytest.raises(picante.MissingInputError):
        await db.label("c")  # memoized at this revision: no rerun
    assert log == ["label('c')", "parity('c')", "words('c')"]
    log.clear()

    with picante.batch(db):
        db.source.set("c", "seven")
        db.paths.set(("a", "b", "c"))
    assert await db.total() == 4
    assert await db.label("c") == "en:odd"
    assert log == ["total()", "words('c')", "parity('c')", "label('c')"]


async def test_clean_memo_only_hit_is_marked_then_dropped(log: list[str]) -> None:
    """
    A clean memo that was only hit since the last used revision is marked by the first
    sweep (not dropped, not re-run), kept by another sweep at the same revision, and
    dropped by the first sweep a revision later; read again, it recomputes.
    """
    db = site(log)
    assert await db.words("b") == 1
    db.source.set("a", "x")  # a new revision words('b') did not read
    assert await db.words("b") == 1  # a hit: clean, nothing checked
    assert picante.sweep(db) == 0
    assert memos(db) == ["words('b')"]
    assert picante.sweep(db) == 0  # once more at this revision: nothing more
    picante.refresh(db)  # marks are due one revision later
    assert picante.sweep(db) == 1
    assert memos(db) == []
    assert await db.words("b") == 1
    assert log == ["words('b')", "words('b')"]


async def test_clean_memo_read_between_sweeps_is_kept(log: list[str]) -> None:
    """A memo marked by a sweep and read before the next one is checked (no re-run), and kept."""
    db = site(log)
    assert await db.label("b") == "en:odd"
    db.source.set("a", "x")
    assert picante.sweep(db) == 0
    checks = view_of(db).counters.dependency_checks
    assert await db.label("b") == "en:odd"  # re-checked, not re-run
    assert picante.sweep(db) == 0
    assert picante.sweep(db) == 0
    assert memos(db) == ["label('b')", "parity('b')", "words('b')"]
    assert log == ["label('b')", "parity('b')", "words('b')"]
    # It was re-checked (walked or by durability), never re-executed.
    assert view_of(db).counters.dependency_checks > checks


async def test_a_snapshot_taken_after_a_sweep_reuses_the_memos_it_marked(
    log: list[str],
) -> None:
    """
    A memo the sweep marked was valid at the sweep's revision: a snapshot taken at that
    revision reuses it, as it would have before the sweep, also after the database
    checked it again at a later revision.
    """
    db = site(log)
    assert [await db.label("b"), await db.label("c")] == ["en:odd", "en:odd"]
    db.source.set("a", "x")  # a revision the labels did not read: they stay clean
    assert picante.sweep(db) == 0  # ... and are marked
    log.clear()
    view, later = picante.snapshot(db), picante.snapshot(db)
    assert [await view.label("b"), await view.label("c")] == ["en:odd", "en:odd"]
    db.source.set("c", "seven eight")
    assert [await db.label("b"), await db.label("c")] == ["en:odd", "en:even"]
    assert log == ["words('c')", "parity('c')", "label('c')"]
    log.clear()
    assert [await later.label("b"), await later.label("c")] == ["en:odd", "en:odd"]
    assert log == []


async def test_a_sweep_keeps_the_marks_a_snapshot_needs(log: list[str]) -> None:
    """
    A second sweep, while a snapshot of the mark's revision lives, keeps the memos the
    snapshot can read, and their marks: a snapshot taken after it still reuses them.
    """
    db = site(log)
    assert await db.label("b") == "en:odd"
    db.source.set("a", "x")
    assert picante.sweep(db) == 0  # marks label('b') and what it read
    first = picante.snapshot(db)
    assert picante.sweep(db) == 0
    log.clear()
    second = picante.snapshot(db)
    assert [await second.label("b"), await first.label("b")] == ["en:odd", "en:odd"]
    assert log == []


async def test_unused_for_counts_revisions(log: list[str]) -> None:
    """`unused_for=N` keeps memos used in the last N revisions, and drops older ones."""
    db = site(log)
    for path in "abc":
        await db.label(path)  # revision 1: all three
    db.lang.set("fr")  # revision 2
    await db.label("b")
    await db.label("c")
    db.lang.set("de")  # revision 3
    await db.label("c")
    log.clear()
    labels = ["label('a')", "label('b')", "label('c')"]
    assert [m for m in memos(db) if m.startswith("label")] == labels
    assert picante.sweep(db, unused_for=3) == 0
    assert picante.sweep(db, unused_for=2) == 1
    assert [m for m in memos(db) if m.startswith("label")] == labels[1:]
    # label('b'), last used at revision 2, goes with unused_for=1; parity and words of a,
    # clean, were only marked by the sweep above (at revision 3), and so are those of b
    # now: they stay till revision 4, where they go (label('c') and what it read, used at
    # revision 3 and clean, are only marked then).
    assert picante.sweep(db, unused_for=1) == 1
    picante.refresh(db)
    assert picante.sweep(db, unused_for=1) == 4
    assert memos(db) == ["label('c')", "parity('c')", "words('c')"]
    assert [await db.label(path) for path in "abc"] == ["de:even", "de:odd", "de:odd"]
    assert log == [
        "label('a')",
        "parity('a')",
        "words('a')",
        "label('b')",
        "parity('b')",
        "words('b')",
    ]


async def test_sweep_keeps_the_deep_dependencies_of_a_used_memo(log: list[str]) -> None:
    """
    Everything a used memo read stays, however long ago it was itself verified: here
    parity and words, only ever hit by label's re-executions.
    """
    db = site(log)
    assert await db.label("a") == "en:even"
    for lang in ("fr", "de", "it", "es"):
        db.lang.set(lang)
        assert await db.label("a") == f"{lang}:even"
        assert picante.sweep(db) == 0
    assert memos(db) == ["label('a')", "parity('a')", "words('a')"]
    assert log == ["label('a')", "parity('a')", "words('a')"] + ["label('a')"] * 4


async def test_sweep_drops_absent_input_cells_nobody_kept_reads(log: list[str]) -> None:
    """
    Absent input cells go when no kept memo read them: a removed input nobody read, and
    the cell a missing read created (with the memoized error that read it). The absent
    cell a used memo read stays, so setting it later still reaches that memo.
    """
    db = site(log)
    db.source.set("tmp", "x")
    db.source.remove("tmp")
    with pytest.raises(picante.MissingInputError):
        await db.words("zzz")
    assert await db.optional("maybe") == "-"
    db.lang.set("fr")
    assert await db.optional("maybe") == "-"  # a hit
    # source('tmp'): absent, unread. words('zzz') and optional are clean: only marked.
    assert picante.sweep(db) == 1
    assert "source('tmp')" not in records(db)
    assert await db.optional("maybe") == "-"  # read between sweeps: kept
    # words('zzz') (an error memo) and the absent source('zzz') it read go together.
    assert picante.sweep(db) == 0  # once more at this revision: nothing more
    picante.refresh(db)  # marks are due one revision later
    assert picante.sweep(db) == 2
    assert "words('zzz')" not in records(db)
    assert "source('zzz')" not in records(db)
    assert "source('maybe')" in records(db)
    db.source.set("maybe", "yes")
    assert await db.optional("maybe") == "yes"
    assert log == ["words('zzz')", "optional('maybe')", "optional('maybe')"]


# -- consistency ---------------------------------------------------------------------------------


async def test_reverse_edges_stay_consistent_after_sweep(log: list[str]) -> None:
    """
    A swept memo is no longer a reader of what it read: changing that input invalidates
    nothing; a memo recomputed after the sweep is a reader again, and is never stale.
    """
    db = await computed(log)
    db.source.set("b", "x y")  # words, parity, label of b and total: not clean
    assert await db.label("a") == "en:even"
    assert picante.sweep(db) == 4
    assert not [m for m in memos(db) if "'b'" in m]
    counters = view_of(db).counters
    invalidations = counters.invalidations
    db.source.set("b", "x y z")
    assert counters.invalidations == invalidations  # no reader of source('b') is left
    assert await db.parity("b") == 1
    log.clear()
    db.source.set("b", "x y z w")
    assert counters.invalidations == invalidations + 2  # words('b') and parity('b')
    assert await db.parity("b") == 0
    assert log == ["words('b')", "parity('b')"]


async def test_lru_order_stays_consistent_after_sweep(log: list[str]) -> None:
    """A swept memo leaves its query's LRU order: no ghost is evicted later, no KeyError."""

    @picante.database
    class Db:
        @picante.input
        async def base(self, n: int) -> int:
            raise NotImplementedError

        @picante.query(lru=2)
        async def square(self, n: int) -> int:
            log.append(f"square({n})")
            return n * n + await self.base(n)

    db = Db()
    for n in range(6):
        db.base.set(n, 0)
    assert [await db.square(n) for n in (1, 2)] == [1, 4]
    db.base.set(1, 10)
    assert await db.square(1) == 11
    assert picante.sweep(db) == 0  # square(2) clean, only marked
    db.base.set(1, 20)
    assert picante.sweep(db) == 2  # square(2), marked; square(1), stale
    view = view_of(db)
    table = view.tables["square"]
    assert set(view.lrus["square"].order) <= set(table.values())
    log.clear()
    assert [await db.square(n) for n in range(6)] == [0, 21, 4, 9, 16, 25]
    assert [await db.square(n) for n in (4, 5)] == [16, 25]
    assert log == [f"square({n})" for n in range(6)]
    assert set(view.lrus["square"].order) <= set(table.values())
    kept = sorted(cast("int", key[0]) for key, cell in table.items() if cell.value is not EVICTED)
    assert kept == [4, 5]


async def test_sweep_results_never_change_randomized() -> None:
    """
    Random sets, removes, refreshes, reads, snapshots and sweeps (any `unused_for`):
    every answer, of the database and of live snapshots, equals a from-scratch one.
    """
    for seed in range(12):
        rng = random.Random(seed)
        log: list[str] = []
        db = Site(log)
        model: dict[str, object] = {}

        def expected(query: str, path: str, state: dict[str, object]) -> object:
            def words(p: str) -> int | tuple[str, str]:
                text = state.get(f"source:{p}")
                return ("missing", p) if text is None else len(str(text).split())

            lang = state.get("lang")
            if query == "words":
                return words(path)
            if query == "parity":
                w = words(path)
                return w if isinstance(w, tuple) else w % 2
            if query == "label":
                if lang is None:  # label reads lang first
                    return ("missing", "lang")
                w = words(path)
                if isinstance(w, tuple):
                    return w
                return f"{lang}:{'odd' if w % 2 else 'even'}"
            if query == "optional":
                return state.get(f"source:{path}", "-")
            paths = state.get("paths")
            if paths is None:
                return ("missing", "paths")
            total = 0
            for p in cast("tuple[str, ...]", paths):
                w = words(p)
                if isinstance(w, tuple):
                    return w
                total += w
            return total

        async def answer(target: Site, query: str, path: str) -> object:
            try:
                if query == "total":
                    return await target.total()
                return await getattr(target, query)(path)
            except picante.MissingInputError as error:
                return ("missing", error.key[0] if error.key else error.ingredient)

        snapshots: list[tuple[Site, dict[str, object]]] = []
        for _ in range(200):
            op = rng.random()
            path = rng.choice("abcd")
            if op < 0.15:
                text = rng.choice(["one", "one two", "a b c", "x y z w"])
                db.source.set(path, text)
                model[f"source:{path}"] = text
            elif op < 0.22:
                db.source.remove(path)
                model.pop(f"source:{path}", None)
            elif op < 0.27:
                lang = rng.choice(["en", "fr"])
                db.lang.set(lang)
                model["lang"] = lang
            elif op < 0.32:
                paths = tuple(rng.sample("abcd", rng.randint(0, 3)))
                db.paths.set(paths)
                model["paths"] = paths
            elif op < 0.37:
                picante.refresh(db)
            elif op < 0.47:
                picante.sweep(db, unused_for=rng.randint(1, 3))
            elif op < 0.50 and len(snapshots) < 2:
                snapshots.append((picante.snapshot(db), dict(model)))
            elif op < 0.53 and snapshots:
                snapshots.pop(0)
                gc.collect()
            else:
                query = rng.choice(["words", "parity", "label", "total", "optional"])
                if snapshots and rng.random() < 0.3:
                    snap, state = rng.choice(snapshots)
                    got = await asyncio.wait_for(answer(snap, query, path), TIMEOUT)
                    assert got == expected(query, path, state), (seed, query, path)
                else:
                    got = await asyncio.wait_for(answer(db, query, path), TIMEOUT)
                    assert got == expected(query, path, model), (seed, query, path)


# -- usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1", None])
async def test_unused_for_must_be_a_positive_int(log: list[str], bad: object) -> None:
    """`unused_for` must be a positive int (not a bool, a float or a string)."""
    db = await computed(log)
    db.lang.set("fr")
    with pytest.raises(picante.UsageError, match="unused_for"):
        picante.sweep(db, unused_for=bad)  # type: ignore[arg-type]
    assert memos(db) == ALL_MEMOS  # nothing dropped


async def test_sweep_of_a_non_database_raises() -> None:
    """sweep needs a database instance."""
    with pytest.raises(picante.UsageError):
        picante.sweep(object())


async def test_sweep_while_a_query_runs_raises(log: list[str]) -> None:
    """A sweep while a query of the database is running is refused; after it, it works."""
    gate = asyncio.Event()
    started = asyncio.Event()

    @picante.database
    class Db:
        @picante.input
        async def n(self) -> int:
            raise NotImplementedError

        @picante.query
        async def slow(self) -> int:
            log.append("slow()")
            started.set()
            await gate.wait()
            return await self.n()

        @picante.query
        async def quick(self) -> int:
            log.append("quick()")
            return await self.n() + 1

    db = Db()
    db.n.set(1)
    assert await db.quick() == 2
    db.n.set(2)
    task = asyncio.ensure_future(db.slow())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    with pytest.raises(picante.UsageError, match="runs"):
        picante.sweep(db)
    assert "quick()" in memos(db)  # nothing dropped
    gate.set()
    assert await asyncio.wait_for(task, TIMEOUT) == 2
    assert picante.sweep(db) == 1  # quick(): stale and unused
    assert memos(db) == ["slow()"]


async def test_sweep_inside_a_running_query_raises(log: list[str]) -> None:
    """A query that sweeps its own database gets a UsageError."""

    @picante.database
    class Db:
        @picante.query
        async def sweeper(self) -> int:
            log.append("sweeper()")
            return picante.sweep(self)

    db = Db()
    with pytest.raises(picante.UsageError):
        await asyncio.wait_for(db.sweeper(), TIMEOUT)
    assert log == ["sweeper()"]


# -- snapshots -----------------------------------------------------------------------------------


async def test_snapshot_taken_before_a_sweep_keeps_what_it_reads(log: list[str]) -> None:
    """
    A live snapshot keeps the memos valid at its revision: after a sweep of its database
    it answers as before and reuses them (nothing runs). Once it is gone, they go.
    """
    db = await computed(log)
    snap = picante.snapshot(db)
    db.lang.set("fr")
    assert await db.label("a") == "fr:even"
    assert picante.sweep(db) == 0
    assert picante.sweep(db) == 0
    log.clear()
    assert [await snap.label(path) for path in "abc"] == ["en:even", "en:odd", "en:odd"]
    assert await snap.total() == 6
    assert log == []
    del snap
    gc.collect()
    assert picante.sweep(db) >= 2
    assert "label('b')" not in memos(db)
    assert "label('c')" not in memos(db)
    assert [await db.label(path) for path in "abc"] == ["fr:even", "fr:odd", "fr:odd"]
    assert log.count("label('b')") == log.count("label('c')") == 1


async def test_a_snapshots_absent_cell_is_not_swept(log: list[str]) -> None:
    """
    An input a snapshot removed, that its parent still has, stays removed in the
    snapshot after a sweep of the snapshot (its absent cell hides the inherited value).
    """
    db = await computed(log)
    snap = picante.snapshot(db)
    snap.source.remove("a")
    snap.lang.set("fr")
    assert picante.sweep(snap) == 0
    assert picante.sweep(snap) == 0
    assert snap.source.get("a") is None
    assert db.source.get("a") == "one two"
    with pytest.raises(picante.MissingInputError):
        await snap.words("a")
    assert await db.words("a") == 2


async def test_an_input_the_database_removed_stays_readable_by_an_older_snapshot(
    log: list[str],
) -> None:
    """A sweep of the database keeps the old version of an input a live snapshot reads."""
    db = site(log)
    db.source.set("x", "v w")
    snap = picante.snapshot(db)
    db.source.remove("x")
    assert picante.sweep(db) == 0  # the absent cell holds the version the snapshot reads
    assert picante.sweep(db) == 0
    assert db.source.get("x") is None
    assert snap.source.get("x") == "v w"
    assert await snap.words("x") == 2


# -- cache files ---------------------------------------------------------------------------------


def section_records(path: Path) -> dict[str, int]:
    """Records per section of the cache file *path* (and its log)."""
    summary = read_summary(path)
    sections = summary["sections"]
    assert isinstance(sections, list)
    return {section["name"]: section["records"] for section in sections}


async def test_save_after_sweep_leaves_swept_records_out(log: list[str], tmp_path: Path) -> None:
    """A save after a sweep writes only what is left; a load of it answers the same."""
    path = tmp_path / "site.cache"
    db = await computed(log)
    db.lang.set("fr")
    assert await db.label("a") == "fr:even"
    assert picante.sweep(db) == 2
    assert picante.sweep(db) == 0  # once more at this revision: nothing more
    picante.refresh(db)  # marks are due one revision later
    assert picante.sweep(db) == 5
    await picante.save(db, path)
    counts = section_records(path)
    assert (counts["label"], counts["parity"], counts["words"]) == (1, 1, 1)
    assert counts.get("total", 0) == 0

    fresh = Site(log)
    assert await picante.load(fresh, path) is True
    log.clear()
    assert await fresh.label("a") == "fr:even"
    assert log == []
    assert [await fresh.label(path) for path in "bc"] == ["fr:odd", "fr:odd"]
    assert await fresh.total() == 6
    assert sorted(log) == sorted(
        [
            *("label('b')", "parity('b')", "words('b')"),
            *("label('c')", "parity('c')", "words('c')"),
            "total()",
        ]
    )


async def test_incremental_save_records_the_deletions(log: list[str], tmp_path: Path) -> None:
    """
    After a first save, a sweep's deletions go to the log; the file and log together
    hold no swept record, and a fresh load answers the same, recomputing only those.
    """
    path = tmp_path / "site.cache"
    db = await computed(log)
    for n in range(30):  # a base large enough that the next save appends to the log
        db.source.set(f"page{n}", f"text {n}")
    await picante.save(db, path)
    assert section_records(path)["label"] == 3
    base = path.read_bytes()

    db.lang.set("fr")
    assert await db.label("a") == "fr:even"
    assert picante.sweep(db) == 2
    assert picante.sweep(db) == 0  # once more at this revision: nothing more
    picante.refresh(db)  # marks are due one revision later
    assert picante.sweep(db) == 5
    await picante.save(db, path)
    assert path.read_bytes() == base  # appended to the log, not rewritten
    assert path.with_name(path.name + ".log").exists()
    counts = section_records(path)
    assert (counts["label"], counts["parity"], counts["words"]) == (1, 1, 1)
    assert counts.get("total", 0) == 0

    fresh = Site(log)
    assert await picante.load(fresh, path) is True
    assert memos(fresh) == memos(db) == ["label('a')", "parity('a')", "words('a')"]
    log.clear()
    assert await fresh.label("a") == "fr:even"
    assert log == []
    assert await fresh.label("b") == "fr:odd"
    assert await fresh.total() == 6
    assert log == ["label('b')", "parity('b')", "words('b')", "total()", "words('c')"]


async def test_memo_recomputed_after_its_sweep_is_saved_again(
    log: list[str], tmp_path: Path
) -> None:
    """
    A swept memo read again before the next incremental save is saved as the new memo
    (the deletion does not hide it): a fresh load reuses it without running anything.
    """
    path = tmp_path / "site.cache"
    db = await computed(log)
    for n in range(30):
        db.source.set(f"page{n}", f"text {n}")
    await picante.save(db, path)
    db.source.set("b", "x y")
    assert await db.label("a") == "en:even"
    assert picante.sweep(db) == 4  # total and words, parity, label of b
    assert await db.label("b") == "en:even"
    assert await db.total() == 7
    await picante.save(db, path)
    assert path.with_name(path.name + ".log").exists()

    fresh = Site(log)
    assert await picante.load(fresh, path) is True
    assert memos(fresh) == ALL_MEMOS
    log.clear()
    assert await fresh.label("b") == "en:even"
    assert await fresh.total() == 7
    assert log == []


async def test_sweep_after_a_load_then_save_and_load_again(log: list[str], tmp_path: Path) -> None:
    """A database loaded from a file, swept and saved, loads back without the swept records."""
    path = tmp_path / "site.cache"
    await picante.save(await computed(log), path)
    db = Site(log)
    assert await picante.load(db, path) is True
    db.lang.set("fr")
    assert await db.label("a") == "fr:even"
    assert picante.sweep(db) == 2
    assert picante.sweep(db) == 0  # once more at this revision: nothing more
    picante.refresh(db)  # marks are due one revision later
    assert picante.sweep(db) == 5
    await picante.save(db, path)

    fresh = Site(log)
    assert await picante.load(fresh, path) is True
    assert memos(fresh) == ["label('a')", "parity('a')", "words('a')"]
    log.clear()
    assert [await fresh.label(p) for p in "ab"] == ["fr:even", "fr:odd"]
    assert log == ["label('b')", "parity('b')", "words('b')"]


async def test_a_removed_input_swept_before_an_incremental_save_stays_removed(
    log: list[str], tmp_path: Path
) -> None:
    """
    An input saved with a value, then removed and its absent cell swept, is absent after
    a load of the file and its log: the deletion is recorded, the old value not revived.
    """
    path = tmp_path / "site.cache"
    db = await computed(log)
    for n in range(30):
        db.source.set(f"page{n}", f"text {n}")
    db.source.set("tmp", "x")
    await picante.save(db, path)
    assert section_records(path)["source"] == 34
    db.source.remove("tmp")
    assert picante.sweep(db) == 1
    assert "source('tmp')" not in records(db)
    await picante.save(db, path)
    assert path.with_name(path.name + ".log").exists()
    assert section_records(path)["source"] == 33
    fresh = Site(log)
    assert await picante.load(fresh, path) is True
    assert fresh.source.get("tmp") is None
    assert fresh.source.get("page0") == "text 0"
