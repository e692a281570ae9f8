"""
P11: scale. A graph of about 1,000,000 memos over 100,000 inputs, built cold with the
default garbage collector and with the collector disabled, each in a process of its own.

The graph, per file i of 100,000 (an input `src(i)`, its text; an int here):

* `parse(i)` reads `src(i)`;
* `items(i)` reads `parse(i)` and returns the file's 7 items (a tuple of ints);
* `check(i, j)`, for each item j of 0 … 6, reads `items(i)` and checks that item;
* `checks(i)` reads the file's 7 `check(i, j)` and sums them.

That is 10 memos a file, 1,000,000 in all. Above them a tree of fan-in 10 sums the
`checks` up to one root: `tree(n, 1, i)` reads `checks(10 i … 10 i + 9)`, `tree(n, level,
i)` reads `tree(n, level - 1, 10 i … 10 i + 9)` (those that exist: a level has ⌈width
below / 10⌉ nodes); the key carries the number of files *n*, so the tree's shape needs
no input. With 100,000 files the tree adds 10,000 + 1,000 + 100 + 10 + 1 = 11,111 memos:
1,011,111 in all. Nine memos of a file's ten read exactly one thing (89 % of all memos
have one dependency edge), and each `items(i)` has seven readers. Every key is a tuple of
ints and every value an int or a tuple of ints, so keys and values hold no GC-tracked
object once a collection has examined them (see below).

Each measurement runs in a fresh subprocess (`child`), one per contender, GC mode and
size, so that peak RSS and the collector's work belong to one build. The child

1. builds a graph of 20 files once and drops it (imports, first calls, caches);
2. collects (`gc.collect()`), then takes its baseline: the number of GC-tracked objects,
   and the resident set size (RSS) now, with the kernel's peak-RSS mark reset to it;
3. times the build with the collector enabled at its default thresholds, or disabled:
   from an empty database (picante: a new database, every input set in one batch, then
   the root awaited; a peer: every input signal and computed object made, then the root
   read). `gc.callbacks` stamps the start and the stop of each collection during the
   build: their sum is the time in collections, the longest is the longest pause;
4. reads the peak RSS (`VmHWM` in `/proc/self/status`): its growth over the baseline,
   per memo, is the memory all in (records, tables, keys, values, inputs, allocator
   overhead). Not `ru_maxrss`: on Linux it keeps the parent's peak across `exec`, so the
   children of a process larger than their build (the suite's) reported no growth at
   all. Without `/proc`, `ru_maxrss` it is;
5. (with the default GC) collects, then counts the GC-tracked objects beyond the
   baseline, minus those among the keys and values. CPython untracks a tuple whose items
   are all untracked (ints) when a collection examines it, so after `gc.collect()` the
   keys and values hold none: the count is checked by walking picante's tables (each
   key and value that is still tracked would be subtracted; none is). What remains is
   picante's bookkeeping, including the 100,000 input cells (0.1 per memo);
6. (with the default GC) changes one input and re-reads the root, 5 times (different
   files, each a real change that reaches the root): the median; then re-reads the root
   with nothing changed: the median time per read over 5 batches of many reads.

Peers: observ and reaktiv, where installed, build the same graph, one computed object per
memo, made bottom-up, each a lambda bound to what it reads (observ: one reactive dict of
the inputs; reaktiv: one `Signal` per input), then read the root. At full size a build of
theirs takes 7 to 47 s and 2.1 to 2.6 GB (measured once; the two together take over two
minutes), too long for the suite: they are compared on the same graph at 10,000 files
(101,111 memos), with picante measured again at that size, and the rows say so.

picante's own full-size builds, whose figures the goals are checked on, run three times
each, alternating GC off and default GC: build time, time in collections and longest
pause are the medians (the other figures come from the first default-GC build). The
builds compared with the peers run once each. `--quick` builds 1,000 files (10,111 memos)
for every contender, once. `sweep()` measures the share of the default-GC build spent in
collections at five sizes, for each contender.

Goals: ≤ 1.0 GC-tracked object per memo (keys and values excluded); the default-GC build
≤ 1.25x the GC-disabled build; longest pause ≤ 100 ms; ≤ 300 bytes per memo all in;
≥ 3x faster and ≥ 3x smaller than observ and reaktiv on the same graph.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import picante

from ._chain import executions
from ._harness import Check, Row, Sweep, load_peer, ratio_check, verify


if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import ModuleType


__all__ = ["child", "memo_count", "run", "sweep"]

ITEMS = 7
FAN = 10
FILES = 100_000
# The peers' size (and picante's, to compare on the same graph): a tenth of FILES.
PEER_FILES = 10_000
QUICK_FILES = 1_000
SWEEP_FILES = (1_000, 3_000, 10_000, 30_000, 100_000)
QUICK_SWEEP_FILES = (100, 300, 1_000)
WARM_FILES = 20
EDITS = 5
# Repetitions of picante's full-size builds (each GC mode).
REPETITIONS = 3
PEERS = ("observ", "reaktiv")
# Goals.
GC_RATIO = 1.25
PAUSE_NS = 100_000_000
OBJECTS_PER_MEMO = 1.0
BYTES_PER_MEMO = 300
PEER_FACTOR = 3
# How many per-type counts a child reports (the largest).
TYPES = 8


# --- the graph -------------------------------------------------------------------------


def widths(files: int) -> list[int]:
    """The number of tree nodes at each level above the files, bottom-up, to the root."""
    out: list[int] = []
    width = files
    while True:
        width = -(-width // FAN)
        out.append(width)
        if width == 1:
            return out


def memo_count(files: int) -> int:
    """Memos in the graph over *files* files: 10 per file, plus the tree."""
    return files * (ITEMS + 3) + sum(widths(files))


def _parse(text: int) -> int:
    return text * 3 + 1


def _items(parsed: int) -> tuple[int, ...]:
    return tuple(range(parsed, parsed + ITEMS))


def _check(item: int) -> int:
    return item % 5


def _file_total(text: int) -> int:
    return sum(_check(item) for item in _items(_parse(text)))


def expected_root(files: int, texts: dict[int, int]) -> int:
    """The root's value when file i's text is `texts.get(i, i)`."""
    return sum(_file_total(texts.get(i, i)) for i in range(files))


def _edits(files: int) -> list[tuple[int, int]]:
    """(file, new text) for each timed edit: spread over the files, each changing the root."""
    out = []
    for edit in range(EDITS):
        file = (2 * edit + 1) * files // (2 * EDITS)
        text = file + 1
        while _file_total(text) == _file_total(file):
            text += 1
        out.append((file, text))
    return out


@picante.database
class Project:
    @picante.input
    async def src(self, i: int) -> int:
        raise NotImplementedError

    @picante.query
    async def parse(self, i: int) -> int:
        return _parse(await self.src(i))

    @picante.query
    async def items(self, i: int) -> tuple[int, ...]:
        return _items(await self.parse(i))

    @picante.query
    async def check(self, i: int, j: int) -> int:
        return _check((await self.items(i))[j])

    @picante.query
    async def checks(self, i: int) -> int:
        total = 0
        for j in range(ITEMS):
            total += await self.check(i, j)
        return total

    @picante.query
    async def tree(self, files: int, level: int, i: int) -> int:
        below = files if level == 1 else -(-files // FAN ** (level - 1))
        first = i * FAN
        total = 0
        for child in range(first, min(first + FAN, below)):
            if level == 1:
                total += await self.checks(child)
            else:
                total += await self.tree(files, level - 1, child)
        return total


# --- one build in a child process ---------------------------------------------------------


class _Contender:
    """One contender's graph in a child: build it, edit an input, read the root."""

    def __init__(self, files: int) -> None:
        self.files = files

    def build(self) -> int:
        """Build the whole graph cold and return the root's value."""
        raise NotImplementedError

    def edit(self, file: int, text: int) -> None:
        raise NotImplementedError

    def read(self) -> int:
        raise NotImplementedError

    def edit_and_read(self, file: int, text: int) -> tuple[int, int]:
        """Set file *file*'s text, re-read the root: (nanoseconds taken, the root's value)."""
        clock = time.perf_counter_ns
        start = clock()
        self.edit(file, text)
        root = self.read()
        return clock() - start, root

    def reads(self, n: int) -> tuple[int, int]:
        """Read the root *n* times: (nanoseconds taken, the root's value)."""
        clock = time.perf_counter_ns
        read = self.read
        root = 0
        start = clock()
        for _ in range(n):
            root = read()
        return clock() - start, root

    def nodes(self) -> int:
        """How many memos (computed objects) the build made."""
        raise NotImplementedError

    def keys_and_values(self) -> list[object]:
        """The key and value objects the graph holds (picante's own walk; peers: none)."""
        return []


class _Picante(_Contender):
    def __init__(self, files: int) -> None:
        super().__init__(files)
        self.loop = asyncio.new_event_loop()
        self.db: Project | None = None
        self.top = len(widths(files))

    def build(self) -> int:
        return self.loop.run_until_complete(self._build())

    async def _build(self) -> int:
        db = self.db = Project()
        with picante.batch(db):
            src = db.src
            for i in range(self.files):
                src.set(i, i)
        return await db.tree(self.files, self.top, 0)

    # Timed inside the event loop: one `run_until_complete` costs more than a cached read.
    def edit_and_read(self, file: int, text: int) -> tuple[int, int]:
        return self.loop.run_until_complete(self._edit_and_read(file, text))

    async def _edit_and_read(self, file: int, text: int) -> tuple[int, int]:
        db = self.db
        assert db is not None
        clock = time.perf_counter_ns
        start = clock()
        db.src.set(file, text)
        root = await db.tree(self.files, self.top, 0)
        return clock() - start, root

    def reads(self, n: int) -> tuple[int, int]:
        return self.loop.run_until_complete(self._reads(n))

    async def _reads(self, n: int) -> tuple[int, int]:
        db = self.db
        assert db is not None
        clock = time.perf_counter_ns
        tree, files, top = db.tree, self.files, self.top
        root = 0
        start = clock()
        for _ in range(n):
            root = await tree(files, top, 0)
        return clock() - start, root

    def nodes(self) -> int:
        return executions(self.db)

    def keys_and_values(self) -> list[object]:
        out: list[object] = []
        for table in vars(self.db)["__picante__"].tables.values():
            for key, cell in table.items():
                out += (key, cell.key, cell.value)
        return out


def _sum_of(nodes: Sequence[Callable[[], int]]) -> Callable[[], int]:
    return lambda: sum(node() for node in nodes)


def _peer_graph(
    computed: Callable[[Callable[[], Any]], Callable[[], Any]],
    sources: Sequence[Callable[[], int]],
) -> tuple[Callable[[], int], int]:
    """The graph as computed objects over *sources*: the root and how many were made."""
    made = 0
    level: list[Callable[[], int]] = []
    for source in sources:
        parse = computed(lambda source=source: _parse(source()))
        items = computed(lambda parse=parse: _items(parse()))
        checks = [computed(lambda items=items, j=j: _check(items()[j])) for j in range(ITEMS)]
        level.append(computed(_sum_of(checks)))
        made += ITEMS + 3
    while True:
        level = [computed(_sum_of(level[k : k + FAN])) for k in range(0, len(level), FAN)]
        made += len(level)
        if len(level) == 1:
            return level[0], made


class _Observ(_Contender):
    def __init__(self, files: int) -> None:
        super().__init__(files)
        self.observ: ModuleType = load_peer("observ")  # type: ignore[assignment]
        self.state: Any = None
        self.root: Callable[[], int] | None = None
        self.made = 0

    def build(self) -> int:
        state = self.state = self.observ.reactive({i: i for i in range(self.files)})
        sources = [lambda i=i: state[i] for i in range(self.files)]
        self.root, self.made = _peer_graph(self.observ.computed, sources)
        return self.root()

    def edit(self, file: int, text: int) -> None:
        self.state[file] = text

    def read(self) -> int:
        assert self.root is not None
        return self.root()

    def nodes(self) -> int:
        return self.made


class _Reaktiv(_Contender):
    def __init__(self, files: int) -> None:
        super().__init__(files)
        self.reaktiv: ModuleType = load_peer("reaktiv")  # type: ignore[assignment]
        self.signals: list[Any] = []
        self.root: Callable[[], int] | None = None
        self.made = 0

    def build(self) -> int:
        signal = self.reaktiv.Signal
        self.signals = [signal(i) for i in range(self.files)]
        self.root, self.made = _peer_graph(self.reaktiv.Computed, self.signals)
        return self.root()

    def edit(self, file: int, text: int) -> None:
        self.signals[file].set(text)

    def read(self) -> int:
        assert self.root is not None
        return self.root()

    def nodes(self) -> int:
        return self.made


_KINDS: dict[str, type[_Contender]] = {
    "picante": _Picante,
    "observ": _Observ,
    "reaktiv": _Reaktiv,
}


def _status_kib(field: str) -> int | None:
    """A `VmRSS` / `VmHWM` figure of `/proc/self/status`, in KiB (None without /proc)."""
    try:
        with Path("/proc/self/status").open() as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_baseline() -> int:
    """
    Start measuring peak RSS: reset the kernel's high-water mark to the current resident
    size where Linux allows it, and return the resident size now, in bytes.
    """
    if _status_kib("VmHWM") is None:
        # No /proc (macOS): ru_maxrss, in bytes there.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        # "5" resets this process's peak RSS (VmHWM) to its current RSS.
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return 1024 * (_status_kib("VmHWM") or 0)
    return 1024 * (_status_kib("VmRSS") or 0)


def _rss_peak() -> int:
    """The peak RSS of this process image so far, in bytes."""
    peak = _status_kib("VmHWM")
    if peak is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return 1024 * peak


def _median_read(contender: _Contender, expected: int) -> float:
    """Nanoseconds per re-read of the root with nothing changed: median of 5 batches."""
    once, root = contender.reads(1)
    verify(root == expected, "no-op re-read value")
    # Batches of about 10 ms.
    reads = max(1, min(100_000, 10_000_000 // max(once, 1)))
    samples = []
    for _ in range(5):
        elapsed, root = contender.reads(reads)
        verify(root == expected, "no-op re-read value")
        samples.append(elapsed / reads)
    return statistics.median(samples)


def child(argv: Sequence[str]) -> dict[str, Any]:
    """
    Measure one build in this (fresh) process: `argv` is contender, GC mode ("default" or
    "off"), number of files, then optionally "count" (objects) and "edits" (edit and
    no-op re-reads). Returns the figures (also printed as JSON by `main`).
    """
    name, mode, files_text, *options = argv
    files = int(files_text)
    kind = _KINDS[name]
    warm = kind(WARM_FILES)
    verify(warm.build() == expected_root(WARM_FILES, {}), f"{name} warm-up root")
    del warm
    contender = kind(files)
    memos = memo_count(files)
    expected = expected_root(files, {})

    pauses: list[int] = []
    generations = [0, 0, 0]
    started = [0]
    clock = time.perf_counter_ns

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = clock()
        else:
            pauses.append(clock() - started[0])
            generations[info["generation"]] += 1

    gc.collect()
    ids_before = {id(o) for o in gc.get_objects()} if "count" in options else set()
    objects_before = len(gc.get_objects())
    rss_before = _rss_baseline()
    enabled = gc.isenabled()
    if mode == "off":
        gc.disable()
    gc.callbacks.append(on_gc)
    try:
        start = clock()
        root = contender.build()
        build_ns = clock() - start
    finally:
        gc.callbacks.remove(on_gc)
        if enabled:
            gc.enable()
    rss = _rss_peak() - rss_before
    verify(root == expected, f"{name} root value")
    verify(contender.nodes() == memos, f"{name} made {memos:,} memos")
    out: dict[str, Any] = {
        "contender": name,
        "gc": mode,
        "files": files,
        "memos": memos,
        "build_ns": build_ns,
        "gc_ns": sum(pauses),
        "max_pause_ns": max(pauses, default=0),
        "collections": generations,
        "rss_bytes": rss,
    }
    if "count" in options:
        gc.collect()
        after = gc.get_objects()
        distinct = {id(o): o for o in contender.keys_and_values()}
        tracked_keys_values = sum(gc.is_tracked(o) for o in distinct.values())
        out["tracked_keys_values"] = tracked_keys_values
        out["objects"] = len(after) - objects_before - tracked_keys_values
        types = collections.Counter(type(o).__name__ for o in after if id(o) not in ids_before)
        out["types"] = {name: count / memos for name, count in types.most_common(TYPES)}
        del after, distinct, types
    if "edits" in options:
        texts: dict[int, int] = {}
        samples = []
        for file, text in _edits(files):
            texts[file] = text
            value = expected_root(files, texts)
            elapsed, root = contender.edit_and_read(file, text)
            samples.append(elapsed)
            verify(root == value, f"{name} root after an edit")
        out["edit_ns"] = statistics.median(samples)
        out["read_ns"] = _median_read(contender, value)
    return out


def main(argv: Sequence[str]) -> None:
    """Entry point of a child process: print `child(argv)` as one line of JSON, then exit."""
    print(json.dumps(child(argv)), flush=True)
    # Skip tearing down a heap of millions of objects (seconds for the peers).
    os._exit(0)


def _spawn(name: str, mode: str, files: int, *options: str) -> dict[str, Any]:
    """Run `child` in a fresh interpreter and return its figures."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    code = "import sys; from benchmarks.p11_scale import main; main(sys.argv[1:])"
    command = [sys.executable, "-c", code, name, mode, str(files), *options]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        msg = f"P11 child {name} {mode} {files} failed:\n{done.stderr}"
        raise RuntimeError(msg)
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return figures


# --- the table ----------------------------------------------------------------------------


def _installed() -> list[str]:
    return [name for name in PEERS if load_peer(name) is not None]


def _measure(
    files: int, names: Sequence[str], repetitions: int = 1
) -> dict[tuple[str, str], dict[str, Any]]:
    """
    Each contender's GC-disabled and default-GC builds over *files* files, *repetitions*
    times, alternating (GC off first, then default first, …): the build's figures are the
    medians; objects, RSS, edit and re-read come from the first default-GC build.
    """
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for repetition in range(repetitions):
        modes = ("off", "default") if repetition % 2 == 0 else ("default", "off")
        for name in names:
            for mode in modes:
                options = ("count", "edits") if mode == "default" and repetition == 0 else ()
                runs.setdefault((name, mode), []).append(_spawn(name, mode, files, *options))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, figures in runs.items():
        out[key] = figures[0] | {
            field: statistics.median(run[field] for run in figures) for field in _MEDIAN
        }
    return out


# The figures of a build that are medians over the repetitions.
_MEDIAN = ("build_ns", "gc_ns", "max_pause_ns")


def _per_memo(figures: dict[str, Any], field: str) -> float:
    return float(figures[field]) / int(figures["memos"])


def _full_rows(full: dict[tuple[str, str], dict[str, Any]]) -> list[Row]:
    off, on = full["picante", "off"], full["picante", "default"]
    memos = on["memos"]
    size = f"{memos:,} memos"
    share = on["gc_ns"] / on["build_ns"]
    objects = on["objects"] / memos
    rss = on["rss_bytes"] / memos
    return [
        Row(f"P11 cold build, GC off ({size})", off["build_ns"], {}),
        Row(
            f"P11 cold build, default GC ({size})",
            on["build_ns"],
            {},
            [ratio_check(f"≤ {GC_RATIO}x GC off", on["build_ns"], off["build_ns"], GC_RATIO)],
        ),
        Row("P11 time in collections, default GC", on["gc_ns"], {}),
        Row("P11 GC share of the default-GC build", 100 * share, {}, unit="%"),
        Row(
            "P11 longest GC pause, default GC",
            on["max_pause_ns"],
            {},
            [Check("≤ 100 ms", on["max_pause_ns"] / PAUSE_NS, 1.0)],
        ),
        Row(
            "P11 GC-tracked objects per memo (key, value excluded)",
            objects,
            {},
            [Check("≤ 1.0 per memo", objects / OBJECTS_PER_MEMO, 1.0)],
            unit="objects",
        ),
        Row(
            "P11 peak RSS per memo, all in",
            rss,
            {},
            [Check(f"≤ {BYTES_PER_MEMO} B per memo", rss / BYTES_PER_MEMO, 1.0)],
            unit="bytes",
        ),
        Row("P11 one edit + re-read of the root", on["edit_ns"], {}),
        Row("P11 no-op re-read of the root", on["read_ns"], {}),
    ]


def _peer_rows(same: dict[tuple[str, str], dict[str, Any]], installed: Sequence[str]) -> list[Row]:
    """Rows comparing every contender on the same graph (the peers' size)."""
    memos = same["picante", "default"]["memos"]
    at = f"P11 at {memos:,} memos:"

    def row(label: str, mode: str, field: str, unit: str = "ns", *, goal: str = "") -> Row:
        def figure(name: str) -> float | None:
            if name not in installed:
                return None
            return _per_memo(same[name, mode], field)

        pic = figure("picante")
        assert pic is not None
        peers = {name: figure(name) for name in PEERS}
        checks = [
            ratio_check(
                f"{goal} {name}", pic, peers[name], 1 / PEER_FACTOR, missing=f"{name} not installed"
            )
            for name in PEERS
            if goal
        ]
        return Row(f"{at} {label}", pic, peers, checks, unit=unit)

    def whole(label: str, field: str) -> Row:
        peers = {
            name: float(same[name, "default"][field]) if name in installed else None
            for name in PEERS
        }
        return Row(f"{at} {label}", float(same["picante", "default"][field]), peers)

    return [
        row("build per memo, default GC", "default", "build_ns", goal="≥ 3x faster than"),
        row("build per memo, GC off", "off", "build_ns"),
        row("peak RSS per memo, all in", "default", "rss_bytes", "bytes", goal="≥ 3x smaller than"),
        row("GC-tracked objects per memo", "default", "objects", "objects"),
        whole("longest GC pause, default GC", "max_pause_ns"),
        whole("one edit + re-read of the root", "edit_ns"),
        whole("no-op re-read of the root", "read_ns"),
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P11 (one subprocess per build); return its result rows."""
    installed = ["picante", *_installed()]
    files, peer_files = (QUICK_FILES, QUICK_FILES) if quick else (FILES, PEER_FILES)
    # The goals on picante's own figures rest on two builds in two processes: alternated,
    # three times (the peers' figures are several times apart: once is enough).
    full = _measure(files, ["picante"], 1 if quick else REPETITIONS)
    same = full if peer_files == files else _measure(peer_files, ["picante"])
    same |= _measure(peer_files, installed[1:])
    return _full_rows(full) + _peer_rows(same, installed)


def sweep(*, quick: bool = False) -> Sweep:
    """The share of the default-GC build spent in collections, at several graph sizes."""
    installed = ["picante", *_installed()]
    sizes = QUICK_SWEEP_FILES if quick else SWEEP_FILES
    series: dict[str, list[float]] = {name: [] for name in installed}
    for files in sizes:
        for name in installed:
            figures = _spawn(name, "default", files)
            series[name].append(100 * figures["gc_ns"] / figures["build_ns"])
    # If collections are all the default-GC build adds, ≤ 1.25x GC off is a share ≤ 20 %.
    share = 100 * (1 - 1 / GC_RATIO)
    return Sweep(
        scenario="p11",
        title="Share of a cold build spent in the garbage collector (default GC)",
        xlabel="memos in the graph (10 per file + a fan-in-10 tree)",
        ylabel="time in collections / build time",
        sizes=tuple(memo_count(files) for files in sizes),
        series={name: tuple(values) for name, values in series.items()},
        missing=tuple(name for name in PEERS if name not in installed),
        goal=(share, f"{share:.0f} %: a default-GC build {GC_RATIO}x one with GC off"),
        unit="%",
    )
