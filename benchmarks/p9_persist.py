"""
P9: `picante.save` and `picante.load` of a database with 100,000 memos.

The database has 100,000 inputs `value(k)` and 100,000 memos `doubled(k)`, each reading
its one input (1,000 of each with `--quick`); no interned values. A *record* is an input
or a memo, so the file holds 200,000 records. Three operations are timed, alternately:

* full save: `save(db, path)` to a path never used before, so the whole state is written
  (encoded, written to a temporary file, fsynced, renamed, directory fsynced);
* load: `load(fresh, path)` of that file into a new, empty database (made untimed);
* save after one change: one input is set to a new value and its memo recomputed
  (untimed), then `save` to the path the database was loaded from appends the two
  changed records to the log, `<path>.log`. Should the log grow near the size at which
  `save` compacts it, it is restarted untimed, so every timed save is an append: this is
  verified after each one (the base file is untouched).

The loaded databases answer every query with no execution (picante's own counter), and
the logged changes load back too. The files live in a temporary directory.

Peer: plain Python, the floor of the same work without a framework: the inputs and memo
values as two dicts, `orjson.dumps` of their items written to a file and fsynced (no
temporary file, no dependencies), and `orjson.loads` of the file back into two dicts.
Plain Python has no log: its figure in the row of the save after one change is its full
save. The databases are frozen out of the garbage collector while they are timed
(`gc.freeze()`), as in P7.

Goals: ≥ 300,000 records/s each way (≤ 3.33 µs per record); a save after one change
costs ≤ 1/20 of a full save.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

import picante

from ._chain import executions
from ._harness import Check, Profile, Row, compare, ratio_check, verify


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._harness import Case


__all__ = ["run"]

RECORDS_PER_SECOND = 300_000
# The goal's time per record.
BUDGET_NS = 1e9 / RECORDS_PER_SECOND
# `save` compacts once the log passes half the base; restart the log well before.
LOG_SHARE = 0.25


@picante.database
class Store:
    @picante.input
    async def value(self, k: int) -> int:
        raise NotImplementedError

    @picante.query
    async def doubled(self, k: int) -> int:
        return 2 * await self.value(k)


@dataclass(frozen=True)
class _Op:
    """One operation: `await run()` timed, then `done(result)` untimed (checks, cleanup)."""

    run: Callable[[], Awaitable[object]]
    done: Callable[[object], None]


def _case(prepare: Callable[[], Awaitable[_Op]]) -> Case:
    """Each operation: `await prepare()` untimed, the timed `run`, then `done` untimed."""
    clock = time.perf_counter_ns

    async def case(n: int) -> int:
        elapsed = 0
        for _ in range(n):
            op = await prepare()
            start = clock()
            result = await op.run()
            elapsed += clock() - start
            op.done(result)
        return elapsed

    return case


async def _store(size: int) -> Store:
    # Setup only: the collector is paused while the records are made (as in P7).
    enabled = gc.isenabled()
    gc.disable()
    try:
        db = Store()
        with picante.batch(db):
            for k in range(size):
                db.value.set(k, k)
        for k in range(size):
            await db.doubled(k)
    finally:
        if enabled:
            gc.enable()
    verify(executions(db) == size, "every memo computed")
    return db


async def _loaded(path: Path, expected: dict[int, int]) -> Store:
    """A new database loaded from *path*; every memo is checked to be reused as loaded."""
    db = Store()
    verify(await picante.load(db, path), f"{path.name} loads")
    for k, value in expected.items():
        verify(await db.doubled(k) == 2 * value, "a loaded memo has its value")
    verify(executions(db) == 0, "a loaded database answers without executing")
    return db


def _log(path: Path) -> Path:
    return path.with_name(path.name + ".log")


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _drop_long_log(path: Path) -> bool:
    """Delete the log of *path* if it is near the size at which `save` would compact it."""
    log = _log(path)
    if log.exists() and log.stat().st_size > LOG_SHARE * path.stat().st_size:
        log.unlink()
        return True
    return False


def _full_save(db: Store, directory: Path, file_size: int) -> Case:
    """Each operation saves *db* to a new path: a full file of *file_size* bytes."""
    names = itertools.count()

    async def prepare() -> _Op:
        path = directory / f"full-{next(names)}.picante"

        def done(_: object) -> None:
            verify(_identity(path)[0] == file_size, "a full save writes the whole state")
            verify(not _log(path).exists(), "a full save writes no log")
            path.unlink()

        return _Op(lambda: picante.save(db, path), done)

    return _case(prepare)


def _load(path: Path) -> Case:
    """Each operation loads *path* into a new database (made untimed)."""

    async def prepare() -> _Op:
        fresh = Store()

        def done(loaded: object) -> None:
            verify(loaded is True, "the file loads")

        return _Op(lambda: picante.load(fresh, path), done)

    return _case(prepare)


def _incremental_save(db: Store, path: Path, size: int, expected: dict[int, int]) -> Case:
    """Each operation changes one input, recomputes its memo, then saves (timed) to *path*."""
    changes = itertools.count(1)

    async def prepare() -> _Op:
        if _drop_long_log(path):
            # Without its log, the next save writes a new base; the log starts over.
            await picante.save(db, path)
        change = next(changes)
        k = change % size
        expected[k] = size + change
        db.value.set(k, expected[k])
        verify(await db.doubled(k) == 2 * expected[k], "the changed memo recomputed")
        base = _identity(path)

        def done(_: object) -> None:
            verify(_identity(path) == base, "the save appended to the log, base untouched")

        return _Op(lambda: picante.save(db, path), done)

    return _case(prepare)


def _write_plain(state: dict[str, dict[int, int]], path: Path) -> None:
    data = orjson.dumps({name: list(table.items()) for name, table in state.items()})
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _read_plain(path: Path) -> dict[str, dict[int, int]]:
    raw = orjson.loads(path.read_bytes())
    return {name: dict(items) for name, items in raw.items()}


def _plain_save(state: dict[str, dict[int, int]], path: Path) -> Case:
    """Each operation writes the plain dicts to *path*: `orjson.dumps`, write, fsync."""

    async def save() -> None:
        # The floor: on the event loop's thread, no worker thread.
        _write_plain(state, path)

    async def prepare() -> _Op:
        return _Op(save, lambda _: None)

    return _case(prepare)


def _plain_load(path: Path, size: int) -> Case:
    """Each operation reads *path* back into two dicts."""

    async def load() -> dict[str, dict[int, int]]:
        return _read_plain(path)

    def done(state: object) -> None:
        verify(isinstance(state, dict) and len(state["doubled"]) == size, "plain state loads")

    async def prepare() -> _Op:
        return _Op(load, done)

    return _case(prepare)


async def _measure(profile: Profile, size: int, directory: Path) -> dict[str, float]:
    """Nanoseconds per operation of each case, all timed alternately."""
    db = await _store(size)
    reference = directory / "reference.picante"
    await picante.save(db, reference)
    full_size = reference.stat().st_size
    start = directory / "incremental.picante"
    await picante.save(db, start)
    expected = {k: k for k in range(size)}
    # The database of the incremental saves is loaded from a file, as a restarted program's.
    changing = await _loaded(start, expected)
    base = _identity(start)
    await picante.save(changing, start)
    verify(_identity(start) == base, "a save with nothing changed writes nothing")
    verify(not _log(start).exists(), "a save with nothing changed writes no log")

    plain = {"value": dict(expected), "doubled": {k: 2 * v for k, v in expected.items()}}
    plain_path = directory / "plain.json"
    _write_plain(plain, plain_path)
    verify(_read_plain(plain_path) == plain, "plain state round-trips")
    cases: dict[str, Case] = {
        "save": _full_save(db, directory, full_size),
        "plain save": _plain_save(plain, plain_path),
        "load": _load(reference),
        "plain load": _plain_load(plain_path, size),
        "incremental": _incremental_save(changing, start, size, expected),
    }
    # The databases hold hundreds of thousands of objects, which every `gc.collect()` of
    # the harness would traverse again: freeze them out of the collector (as in P7).
    gc.collect()
    gc.freeze()
    try:
        ns = await compare(cases, profile)
    finally:
        gc.unfreeze()
    verify(_log(start).exists(), "the incremental saves wrote a log")
    await _loaded(start, expected)
    return ns


def _rows(ns: dict[str, float], size: int) -> list[Row]:
    records = 2 * size
    save, load = ns["save"] / records, ns["load"] / records
    goal = f"≥ {RECORDS_PER_SECOND:,} records/s"
    return [
        Row(
            f"P9 full save, {size:,} memos + {size:,} inputs, per record",
            save,
            {"plain": ns["plain save"] / records},
            [Check(goal, save / BUDGET_NS, 1.0)],
        ),
        Row(
            f"P9 load, {size:,} memos + {size:,} inputs, per record",
            load,
            {"plain": ns["plain load"] / records},
            [Check(goal, load / BUDGET_NS, 1.0)],
        ),
        Row(
            "P9 save after one input change (log), per save",
            ns["incremental"],
            {"plain": ns["plain save"]},
            [ratio_check("≤ 1/20 of a full save", ns["incremental"], ns["save"] / 20, 1.0)],
        ),
    ]


async def _main(profile: Profile, size: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="picante-p9-") as directory:
        return _rows(await _measure(profile, size, Path(directory)), size)


def run(*, quick: bool = False) -> list[Row]:
    """Measure P9; return its result rows."""
    return asyncio.run(_main(Profile.of(quick=quick), 1_000 if quick else 100_000))
