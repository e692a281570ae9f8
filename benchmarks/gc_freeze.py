"""
What CPython's cyclic garbage collector costs a big picante graph, and what `gc.freeze()`
after a warm-up changes: a stand-alone study (not a P-scenario).

`python -m benchmarks.gc_freeze [--quick] [--files N ...] [--edits N]`

The graph is P11's (`benchmarks/p11_scale.py`): per file, `parse` → `items` → 7 `check`
→ `checks`, and a fan-in-10 tree of sums up to one root; 10,000 files make 101,111 memos
and 100,000 files 1,011,111 (the default sizes; `--quick`: 1,000 files, 10,111 memos).
Each run is one process of its own (P11's method: warm-up build of 20 files, then
`gc.collect()`, then the RSS baseline) that builds the graph cold, then runs a steady
phase like a long-running server or a `--watch` loop:

* *edits* (P11's graph): 1,000 edits (100 with `--quick`), each sets one file's text to
  a value never used before and re-reads the root. No memo is dropped: each edit
  re-executes the file's memos and the tree's path in place.
* *churn*: the same graph, except that `parse`, `items` and `check` are keyed by the
  file's text rather than by its index (`checks(i)` reads `src(i)`, then `check(text,
  j)`, like a content-addressed cache): an edit makes 9 new memos and leaves the file's
  9 old ones unreachable; `picante.sweep(db)` runs every 50 edits (5 with `--quick`)
  and drops them. *cyclic*: the churn graph, with `parse` returning a small tree of
  `Node`s with parent links (a value that holds a reference cycle, as many parsers'
  trees do).

The steady phase edits edits / 10 files spread over the graph, each 10 times in turn.
The runs (in this order, at each size):

1. `default`: the build with the default collector; the edits, not frozen.
2. `freeze`: the same build, then `gc.collect(); gc.freeze()` (the warm-up is the cold
   build); the edits, frozen.
3. `off+freeze`: the build with `gc.disable()`, then `gc.enable(); gc.collect();
   gc.freeze()`; the edits, frozen.
4. `threshold`: the build with `gc.set_threshold(100_000)` (generation 0's threshold,
   700 by default), restored after it; the edits, not frozen.
5. `churn+freeze`: the churn graph, built, collected and frozen; churn with sweeps.
6. `cyclic`: the cyclic graph; churn with sweeps, never frozen.
7. `cyclic+freeze`: as 6, frozen after the build, never unfrozen.
8. `cyclic+refreeze`: as 7, plus `gc.unfreeze(); gc.collect(); gc.freeze()` after the
   sweep every 250 edits (25 with `--quick`).

Figures of a run: the build's time, its time in collections and its longest pause (from
`gc.callbacks`, which stamps the start and the stop of each collection); the forced
collection after the build (all but 1 and 4) and the freeze; in the steady phase the
median time per edit (an input set and the root awaited, timed inside the event loop),
the collections' total and longest pause, and the sweeps and refreezes, timed apart; the
resident set (`VmRSS`) over the baseline after the build and at the end; then the time of
one full `gc.collect()` at the end, frozen or not (what a full collection costs when
something triggers one); and last, `gc.unfreeze()` then `gc.collect()`: the number of
unreachable objects it finds is the cyclic garbage the steady phase left behind, freed
by no collection until then. Last, the database is dropped: the objects a collection
finds and the pymalloc blocks it frees (`sys.getallocatedblocks()`), still frozen, then
after `gc.unfreeze()`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import picante

from ._chain import executions
from ._harness import verify
from .p11_scale import (
    ITEMS,
    WARM_FILES,
    Project,
    _check,
    _file_total,
    _items,
    _parse,
    _Picante,
    _rss_baseline,
    _rss_peak,
    _status_kib,
    expected_root,
    memo_count,
)


if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = ["RUNS", "child", "main", "study"]

FILES = (10_000, 100_000)
QUICK_FILES = (1_000,)
EDITS = 1_000
QUICK_EDITS = 100
# Sweep, and refreeze, every so many edits of the churn phase (quick: a tenth).
SWEEP_EVERY = 50
REFREEZE_EVERY = 250
# How many times the steady phase edits each of the files it edits.
EDITS_PER_FILE = 10
# Generation 0's threshold in the `threshold` run.
THRESHOLD = 100_000

# name: (graph, build GC mode, freeze after the build, refreeze in the steady phase)
RUNS: dict[str, tuple[str, str, bool, bool]] = {
    "default": ("edits", "default", False, False),
    "freeze": ("edits", "default", True, False),
    "off+freeze": ("edits", "off", True, False),
    "threshold": ("edits", "threshold", False, False),
    "churn+freeze": ("churn", "default", True, False),
    "cyclic": ("cyclic", "default", False, False),
    "cyclic+freeze": ("cyclic", "default", True, False),
    "cyclic+refreeze": ("cyclic", "default", True, True),
}


class Node:
    """A syntax tree's node with parent links, as many parsers make: a reference cycle."""

    __slots__ = ("children", "parent", "value")

    def __init__(self, value: int, parent: Node | None = None) -> None:
        self.value = value
        self.parent = parent
        self.children: list[Node] = []


def _tree(text: int) -> Node:
    """`_parse(text)` as a root `Node` with two children that refer back to it."""
    root = Node(_parse(text))
    root.children += [Node(text, root), Node(-text, root)]
    return root


@picante.database
class Keyed(Project):
    """P11's graph (its input and tree) with `parse`, `items` and `check` keyed by text."""

    @picante.query
    async def parse(self, text: int) -> int:
        return _parse(text)

    @picante.query
    async def items(self, text: int) -> tuple[int, ...]:
        return _items(await self.parse(text))

    @picante.query
    async def check(self, text: int, j: int) -> int:
        return _check((await self.items(text))[j])

    @picante.query
    async def checks(self, i: int) -> int:
        text = await self.src(i)
        total = 0
        for j in range(ITEMS):
            total += await self.check(text, j)
        return total


@picante.database
class Cyclic(Keyed):
    """`Keyed`, with `parse` returning a tree of `Node`s: each value holds a cycle."""

    @picante.query
    async def parse(self, text: int) -> Node:  # type: ignore[override]
        return _tree(text)

    @picante.query
    async def items(self, text: int) -> tuple[int, ...]:
        return _items((await self.parse(text)).value)  # type: ignore[attr-defined]


class _KeyedPicante(_Picante):
    """P11's picante contender over the `Keyed` graph."""

    database: type[Keyed] = Keyed

    async def _build(self) -> int:
        db = self.db = self.database()  # type: ignore[assignment]
        with picante.batch(db):
            src = db.src
            for i in range(self.files):
                src.set(i, i)
        return await db.tree(self.files, self.top, 0)


class _CyclicPicante(_KeyedPicante):
    database = Cyclic


class _Collections:
    """A `gc.callbacks` hook: the duration of each collection while `on` (nanoseconds)."""

    def __init__(self) -> None:
        self.on = False
        self.pauses: list[int] = []
        self.generations = [0, 0, 0]
        self._started = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses.append(time.perf_counter_ns() - self._started)
            self.generations[info["generation"]] += 1

    def take(self) -> dict[str, Any]:
        """The figures so far (total, longest, count per generation), then start afresh."""
        out = {
            "gc_ns": sum(self.pauses),
            "max_pause_ns": max(self.pauses, default=0),
            "collections": self.generations,
        }
        self.pauses, self.generations = [], [0, 0, 0]
        return out


def _timed(call: Any) -> tuple[int, Any]:
    start = time.perf_counter_ns()
    result = call()
    return time.perf_counter_ns() - start, result


def _rss() -> int:
    return 1024 * (_status_kib("VmRSS") or 0)


def child(argv: Sequence[str]) -> dict[str, Any]:
    """
    Measure one run (`RUNS`) in this fresh process: argv is the run's name, the number of
    files and of edits, and the intervals of the sweeps and the refreezes (in edits).
    """
    name, files, edits, sweep_every, refreeze_every = argv[0], *map(int, argv[1:])
    graph, mode, freeze, refreeze = RUNS[name]
    kind = {"edits": _Picante, "churn": _KeyedPicante, "cyclic": _CyclicPicante}[graph]
    warm = kind(WARM_FILES)
    verify(warm.build() == expected_root(WARM_FILES, {}), "warm-up root")
    del warm
    contender = kind(files)
    memos = memo_count(files)
    hook = _Collections()
    gc.collect()
    rss_before = _rss_baseline()
    gc.callbacks.append(hook)
    out: dict[str, Any] = {"run": name, "files": files, "memos": memos, "edits": edits}
    thresholds = gc.get_threshold()
    if mode == "off":
        gc.disable()
    elif mode == "threshold":
        gc.set_threshold(THRESHOLD)
    hook.on = True
    build_ns, root = _timed(contender.build)
    hook.on = False
    gc.enable()
    gc.set_threshold(*thresholds)
    out |= {"build_ns": build_ns} | {f"build_{k}": v for k, v in hook.take().items()}
    out["build_peak_bytes"] = _rss_peak() - rss_before
    verify(root == expected_root(files, {}), "root value")
    verify(executions(contender.db) == memos, f"{memos:,} memos")
    if freeze or mode == "off" or graph != "edits":
        out["collect_ns"], _ = _timed(gc.collect)
    if freeze:
        out["freeze_ns"], _ = _timed(gc.freeze)
        out["frozen"] = gc.get_freeze_count()
    out["rss_built_bytes"] = _rss() - rss_before

    # The steady phase: edit k sets a text never used before on one of edits / 10 files,
    # spread over the graph, each edited 10 times (as a user edits a few files in turn).
    hot = max(1, min(files, edits // EDITS_PER_FILE))
    stride = files // hot
    totals = {}
    expected = root
    samples: list[int] = []
    sweep_ns: list[int] = []
    refreeze_ns: list[int] = []
    swept = 0
    hook.on = True
    for k in range(1, edits + 1):
        file = (k % hot) * stride
        text = files * (k + 1) + file
        old = totals.get(file, _file_total(file))
        totals[file] = _file_total(text)
        expected += totals[file] - old
        elapsed, root = contender.edit_and_read(file, text)
        samples.append(elapsed)
        verify(root == expected, "root after an edit")
        if graph != "edits" and k % sweep_every == 0:
            hook.on = False
            elapsed, dropped = _timed(lambda: picante.sweep(contender.db))
            sweep_ns.append(elapsed)
            swept += dropped
            if refreeze and k % refreeze_every == 0:
                start = time.perf_counter_ns()
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                refreeze_ns.append(time.perf_counter_ns() - start)
            hook.on = True
    hook.on = False
    steady = hook.take()
    out |= {
        "edit_ns": statistics.median(samples),
        "edit_max_ns": max(samples),
        "steady_gc_ns": steady["gc_ns"],
        "steady_max_pause_ns": steady["max_pause_ns"],
        "steady_collections": steady["collections"],
        "sweeps": len(sweep_ns),
        "sweep_ns": statistics.median(sweep_ns) if sweep_ns else 0,
        "swept": swept,
        "refreezes": len(refreeze_ns),
        "refreeze_ns": statistics.median(refreeze_ns) if refreeze_ns else 0,
        "rss_end_bytes": _rss() - rss_before,
        "blocks_end": sys.getallocatedblocks(),
    }
    out["full_collect_ns"], out["leaked_before_unfreeze"] = _timed(gc.collect)
    # Unfrozen, a collection finds the cyclic garbage the freeze kept from every one.
    gc.unfreeze()
    out["unfreeze_collect_ns"], out["leaked"] = _timed(gc.collect)
    out["blocks_freed"] = out["blocks_end"] - sys.getallocatedblocks()
    # The whole database dropped: frozen, then not.
    if freeze:
        gc.freeze()
    contender.db = None
    blocks = sys.getallocatedblocks()
    out["drop_found"] = gc.collect()
    out["drop_blocks_freed"] = blocks - sys.getallocatedblocks()
    gc.unfreeze()
    out["drop_unfreeze_found"] = gc.collect()
    out["drop_unfreeze_blocks_freed"] = blocks - sys.getallocatedblocks()
    return out


def child_main(argv: Sequence[str]) -> None:
    """Entry point of a child process: print `child(argv)` as one line of JSON, then exit."""
    print(json.dumps(child(argv)), flush=True)
    os._exit(0)


def _spawn(name: str, files: int, edits: int, every: tuple[int, int]) -> dict[str, Any]:
    """Run `child` in a fresh interpreter (as P11 does) and return its figures."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    code = "import sys; from benchmarks.gc_freeze import child_main; child_main(sys.argv[1:])"
    command = [sys.executable, "-c", code, name, str(files), str(edits), *map(str, every)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        msg = f"gc_freeze child {name} {files} failed:\n{done.stderr}"
        raise RuntimeError(msg)
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return figures


def study(files: int, edits: int, *, quick: bool = False) -> list[dict[str, Any]]:
    """Every run of `RUNS` at *files* files, one process each."""
    every = (SWEEP_EVERY // 10, REFREEZE_EVERY // 10) if quick else (SWEEP_EVERY, REFREEZE_EVERY)
    return [_spawn(name, files, edits, every) for name in RUNS]


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.1f}"


def _mb(size: float) -> str:
    return f"{size / 1e6:,.0f}"


COLUMNS = (
    "run",
    "build s",
    "build GC s",
    "build max ms",
    "collect ms",
    "edit µs",
    "steady GC ms",
    "steady max ms",
    "sweep ms",
    "refreeze ms",
    "RSS built MB",
    "RSS end MB",
    "full GC ms",
    "leaked",
    "blocks",
    "db drop: found",
    "blocks",
    "unfrozen: found",
    "blocks",
)


def _row(figures: dict[str, Any]) -> list[str]:
    return [
        figures["run"],
        f"{figures['build_ns'] / 1e9:.2f}",
        f"{figures['build_gc_ns'] / 1e9:.2f}",
        _ms(figures["build_max_pause_ns"]),
        _ms(figures["collect_ns"]) if "collect_ns" in figures else "—",
        f"{figures['edit_ns'] / 1e3:,.0f}",
        _ms(figures["steady_gc_ns"]),
        _ms(figures["steady_max_pause_ns"]),
        _ms(figures["sweep_ns"]) if figures["sweeps"] else "—",
        _ms(figures["refreeze_ns"]) if figures["refreezes"] else "—",
        _mb(figures["rss_built_bytes"]),
        _mb(figures["rss_end_bytes"]),
        _ms(figures["full_collect_ns"]),
        f"{figures['leaked']:,}",
        f"{figures['blocks_freed']:,}",
        f"{figures['drop_found']:,}",
        f"{figures['drop_blocks_freed']:,}",
        f"{figures['drop_unfreeze_found']:,}",
        f"{figures['drop_unfreeze_blocks_freed']:,}",
    ]


def render(results: list[dict[str, Any]]) -> str:
    """One table of the runs at one size."""
    rows = [list(COLUMNS), *(_row(figures) for figures in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    first = results[0]
    churn = next((r for r in results if r["sweeps"]), None)
    notes = [
        f"{first['memos']:,} memos; {first['edits']:,} edits in the steady phase",
    ]
    if churn is not None:
        notes.append(
            f"churn: {churn['swept']:,} records swept in {churn['sweeps']} sweeps; "
            "leaked = unreachable objects found by gc.collect() after gc.unfreeze() at the end "
            "(blocks: pymalloc blocks it freed); db drop: the same for the database dropped, "
            "while still frozen, then after gc.unfreeze()"
        )
    return "\n".join(
        [line(rows[0]), "  ".join("-" * w for w in widths), *map(line, rows[1:]), *notes]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gc_freeze",
        description="What the cyclic GC costs a big graph, and what gc.freeze() changes.",
    )
    parser.add_argument("--files", type=int, nargs="+", help="sizes (default: 10,000 100,000)")
    parser.add_argument("--edits", type=int, help="steady-phase edits (default: 1,000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 files, 100 edits")
    args = parser.parse_args(argv)
    sizes: Sequence[int] = args.files or (QUICK_FILES if args.quick else FILES)
    edits: int = args.edits or (QUICK_EDITS if args.quick else EDITS)
    if min(sizes) < 1 or edits < 1:
        parser.error("--files and --edits must be positive")
    print(
        f"gc_freeze: CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs; one process per run",
        flush=True,
    )
    started = time.perf_counter()
    for files in sizes:
        print()
        print(render(study(files, edits, quick=args.quick)), flush=True)
    print(f"\n{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
