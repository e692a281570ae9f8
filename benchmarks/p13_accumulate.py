"""
P13, accumulators: collect 1,000 diagnostics, again with nothing changed, then after one edit.

The database checks 100 files of 100 items each (10 files of 10 with `--quick`), the shape
of Salsa's accumulator benchmark (1,000 expressions per input, 10 % of them emit): the
input `source(f)` holds a file's items; `item(f, i)` picks one out (so that an edit of a
file re-runs only the checks of the items that changed); `check(f, i)` accumulates a
`Diagnostic` for one item in ten, `check_file(f)` reads the file's checks and `check_all()`
the files: 20,101 queries, 1,000 diagnostics. The database is built once, and its first
collection made, untimed (that is the first row, a single timing). Then:

* **second collection**: `await picante.accumulated(db.check_all)` with nothing changed,
  timed per call; the bodies run and collectors run over all timed calls are counted
  (picante's own counter), and must be 0;
* **after one edit**: one operation sets `source(f)` of one file to a text whose item 0
  emits a diagnostic or not, alternately (a real change every time), then collects. The
  bodies and collectors one operation runs are counted once beforehand, with
  `picante.testing.record`, outside the timing (a recording listens to the trace hook,
  which turns off the inline paths): they must not exceed the edited file's subtree
  (its items, their checks, the file's check, the root: 202).

For comparison, a row times an uncached walk of the same memos' accumulated values (what
Salsa's `accumulated` does on every call: a depth-first walk of the dependency graph with
a visited set, here over picante's own records of what each memo accumulated).

Peer: plain Python, the same checks as plain functions over the same lists, computed from
scratch on every collection: the floor of collecting without memoizing anything.

Goals: the second collection runs no body and takes ≤ 10 µs; after an edit, the work is
in proportion to the changed subtree (bodies run ≤ the edited file's subtree).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import picante

from ._chain import executions
from ._harness import Check, Profile, Row, compare, verify


__all__ = ["run"]

EMIT_EVERY = 10
"""One item in this many accumulates a diagnostic."""
SECOND_COLLECTION_NS = 10_000


@dataclass(frozen=True)
class Diagnostic:
    file: int
    item: int
    message: str


@picante.database(accumulates=Diagnostic)
class Lint:
    @picante.input
    async def source(self, f: int) -> tuple[int, ...]:
        raise NotImplementedError

    @picante.input
    async def files(self) -> int:
        raise NotImplementedError

    @picante.query
    async def item(self, f: int, i: int) -> int:
        return (await self.source(f))[i]

    @picante.query
    async def check(self, f: int, i: int) -> int:
        value = await self.item(f, i)
        if value % EMIT_EVERY == 0:
            picante.accumulate(Diagnostic(f, i, f"item {i} is a multiple of {EMIT_EVERY}"))
            return 1
        return 0

    @picante.query
    async def check_file(self, f: int) -> int:
        total = 0
        for i in range(len(await self.source(f))):
            total += await self.check(f, i)
        return total

    @picante.query
    async def check_all(self) -> int:
        total = 0
        for f in range(await self.files()):
            total += await self.check_file(f)
        return total


def _sources(files: int, items: int) -> list[tuple[int, ...]]:
    """Item values: `f * items + i`, so one in `EMIT_EVERY` emits."""
    return [tuple(f * items + i for i in range(items)) for f in range(files)]


def _plain(sources: list[tuple[int, ...]]) -> list[Diagnostic]:
    """The same checks without a framework, from scratch."""
    found: list[Diagnostic] = []
    for f, values in enumerate(sources):
        for i, value in enumerate(values):
            if value % EMIT_EVERY == 0:
                found.append(Diagnostic(f, i, f"item {i} is a multiple of {EMIT_EVERY}"))
    return found


def _walk(db: Lint) -> list[Any]:
    """Salsa's `accumulated`: an uncached depth-first walk of the memos, visited set and all."""
    view: Any = vars(db)["__picante__"]
    entries = view.accumulations.entries
    root = view.tables["check_all"][()]
    found: list[Any] = []
    visited = set()
    stack = [root]
    while stack:
        cell = stack.pop()
        if cell in visited:
            continue
        visited.add(cell)
        entry = entries.get(cell)
        if entry is None:
            continue
        own, reads = entry
        found.extend(own)
        stack.extend(reversed(reads))
    return found


async def _main(profile: Profile, files: int, items: int) -> list[Row]:
    sources = _sources(files, items)
    memos = 2 * files * items + files + 1
    expected = _plain(sources)
    count = len(expected)

    db = Lint()
    with picante.batch(db):
        db.files.set(files)
        for f, values in enumerate(sources):
            db.source.set(f, values)
    start = time.perf_counter_ns()
    first = await picante.accumulated(db.check_all)
    cold_ns = time.perf_counter_ns() - start
    verify(list(first) == expected, "the collection equals the plain checks")
    # Every query once, and a collector for each record whose subtree accumulated.
    collected = count + len({found.file for found in expected}) + 1
    verify(executions(db) == memos + collected, "every query and collector ran once")
    verify(_walk(db) == expected, "the uncached walk finds the same values")

    # -- second collection: nothing changed.
    before = executions(db)

    async def second(n: int) -> int:
        clock = time.perf_counter_ns
        begin = clock()
        for _ in range(n):
            await picante.accumulated(db.check_all)
        return clock() - begin

    async def plain_collection(n: int) -> int:
        clock = time.perf_counter_ns
        begin = clock()
        for _ in range(n):
            _plain(sources)
        return clock() - begin

    async def walk(n: int) -> int:
        clock = time.perf_counter_ns
        begin = clock()
        for _ in range(n):
            _walk(db)
        return clock() - begin

    ns = await compare({"picante": second, "plain": plain_collection, "walk": walk}, profile)
    ran = executions(db) - before

    # -- after one edit: file `edited`'s item 0 emits, then not, then emits...
    edited = files // 2
    emitting = sources[edited]
    quiet = (emitting[0] + 1, *emitting[1:])
    texts = [quiet, emitting]
    # Which text the next edit sets: always the other one, however the timing splits them.
    turn = [1]
    db.source.set(edited, quiet)
    with picante.testing.record(db) as log:
        found = await picante.accumulated(db.check_all)
    verify(len(found) == count - 1, "the edit removed one diagnostic")
    collectors = sum(entry.startswith("picante.accumulated(") for entry in log.executed)
    bodies = len(log.executed) - collectors
    subtree = 2 * items + 2
    verify(
        await picante.accumulated(db.check_all) == tuple(found), "collecting again changes nothing"
    )

    async def edit(n: int) -> int:
        clock = time.perf_counter_ns
        elapsed = 0
        for _ in range(n):
            db.source.set(edited, texts[turn[0]])
            turn[0] ^= 1
            begin = clock()
            await picante.accumulated(db.check_all)
            elapsed += clock() - begin
        return elapsed

    async def plain_edit(n: int) -> int:
        clock = time.perf_counter_ns
        elapsed = 0
        for op in range(n):
            sources[edited] = texts[op % 2]
            begin = clock()
            _plain(sources)
            elapsed += clock() - begin
        return elapsed

    edits = await compare({"picante": edit, "plain": plain_edit}, profile, max_ops=2_000)
    verify(
        len(await picante.accumulated(db.check_all)) in (count - 1, count),
        "the edits still collect",
    )
    return [
        Row(
            f"P13 accumulators: cold build + first collection ({memos:,} queries)",
            float(cold_ns),
            {},
        ),
        Row(
            f"P13 accumulators: second collection of {count:,} diagnostics, nothing changed",
            ns["picante"],
            {"plain": ns["plain"]},
            [
                Check("≤ 10 µs", ns["picante"] / SECOND_COLLECTION_NS, 1.0),
                Check("no body runs", ran + 1.0, 1.0),
            ],
        ),
        Row(
            "P13 accumulators: the same memos walked uncached (Salsa's way), for comparison",
            ns["walk"],
            {},
        ),
        Row(
            f"P13 accumulators: one edit, then collect ({bodies} bodies, {collectors} collectors)",
            edits["picante"],
            {"plain": edits["plain"]},
            [Check(f"bodies ≤ the edited file's subtree ({subtree})", bodies / subtree, 1.0)],
        ),
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P13 (accumulators); return its result rows."""
    return asyncio.run(_main(Profile.of(quick=quick), *((10, 10) if quick else (100, 100))))
