"""
P12 on the site example: a cold build of `examples/site.py` against a build of a second,
fresh checkout of the same content, in a fresh process, through a warm `SqliteStore`.

The example renders 60 Markdown pages through HTML templates and partials into 70 output
files (the pages, an index and 9 tag pages): 269 query bodies. Few are worth 100 µs:
traced once (`picante.debug.trace`), `html(path)`, the Markdown rendering of a page,
takes about 0.3 ms, 60 bodies in all; `parse`, `summary`, `tagged`, `template` and
`tag_page` take 5 to 40 µs each. Every build runs in a process of its own (`child`), on
a copy of `examples/site-content` made for it in a new temporary folder (a clean
checkout: no output folder, no cache file), and writes every output file:

1. **cold**: no store;
2. **fill**: a first build through a new, empty SQLite file (`sqlite:PATH`), which
   publishes every result; timed, and reported on its own row, until every entry is
   written (`flush_shared`);
3. **warm**: another checkout, in another folder, built through that file.

Cold and warm run 3 times each (`--quick`: once), alternating which goes
first, each on a new checkout in a new process, after one fill; the times are the
minimums, the bodies run and the round trips the maximums, as for the tree.

The child imports the example (`examples.site`, so the database's name in the store is
`examples.site.Site`) and does what its `run` does, without the cache file: a `Site`
database, `picante.share` (warm and fill only), `refresh` (reads the content folder into
the inputs) and `build` (renders every output and writes it). The time is taken inside
the child, around exactly that, with the store's opening: interpreter start-up and
imports are outside it, and so are closing the store and the checks after the build.
The first `picante.share` of a process sets sharing up (the salt from the installed
libraries' versions, the fingerprints of the queries' code, the imports they need); it
is part of the warm build, and shown on a row of its own. The bodies run are
`picante.debug.stats(db).executions`; the round trips are the store's
`counters.round_trips` from opening to after `flush_shared`: trace-entry lookups, blob
reads and writes. The parent checks that every build wrote the same files, byte for
byte, and that the cold builds ran every body.

Goals, on the warm build: no body runs; it takes at most a tenth of the cold build (the
goal is stated for bodies of ≥ 100 µs, which these mostly are not: the check is shown
as measured); its round trips are at most the graph's depth + 2.

The depth is not a constant of the example: it grows with the nesting of template
includes. The child computes it from the build's dependency graph
(`picante.debug.dependency_graph`): the most queries on one path from a query nothing
reads down to an input (inputs do not count: they are never looked up), as the tree's
limit counts its levels. On the example's content it is 5, by three paths:
`rendered(path)` and `index()` → `template(…)` → `template('base.html')` →
`template('partials/header.html')` → `template('partials/nav.html')`, and
`tag_page(tag)` → `tagged(tag)` → `summaries()` → `summary(path)` → `parse(path)`. The
limit is that + 2, the tree's allowance, kept as is although the example asks for its
roots in three steps (`pages()`, then `tags()`, then all 70 outputs at once): lookups
batched perfectly level by level would need about two round trips more than a single
root would, so the goal is tight for this graph, not loose.

Redis is not measured here: `tests/redis_server.py`, which starts a server, needs pytest.
The tests share results through a real Redis server (`tests/test_share.py`,
`tests/test_stores.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import picante
import picante.debug
from picante.stores import SqliteStore

from ._harness import Check, Profile, Row, verify


if TYPE_CHECKING:
    from collections.abc import Sequence

    from picante.debug import DependencyGraph, Node


__all__ = ["child", "main", "rows"]

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "examples" / "site-content"


# --- the child: one build ---------------------------------------------------------------


def depth(graph: DependencyGraph) -> int:
    """The most queries on one path of *graph*, from a root down to an input."""
    reads: dict[Node, list[Node]] = {}
    for source, target in graph.edges:
        reads.setdefault(source, []).append(target)
    below: dict[Node, int] = {}

    def queries_from(node: Node) -> int:
        if node.kind == "input":
            return 0
        if node not in below:
            below[node] = 1 + max((queries_from(each) for each in reads.get(node, ())), default=0)
        return below[node]

    return max((queries_from(root) for root in graph.roots), default=0)


async def _build(content: Path, out: Path, store_path: Path | None) -> dict[str, Any]:
    """Build the site in *content* into *out*, through the SQLite file *store_path* if any."""
    from examples import site as example

    async with contextlib.AsyncExitStack() as stack:
        start = time.perf_counter()
        store = None
        if store_path is not None:
            store = await stack.enter_async_context(SqliteStore(store_path))
        db = example.Site()
        share_start = time.perf_counter()
        if store is not None:
            picante.share(db, store)
        share_seconds = time.perf_counter() - share_start
        example.refresh(db, content)
        report = await example.build(db, out)
        seconds = time.perf_counter() - start
        if store is not None:
            await picante.flush_shared(db)
        flushed = time.perf_counter() - start
        stats = picante.debug.stats(db)
        verify(not report.errors, f"the site builds without errors: {report.errors}")
        verify(report.written == len(report.outputs), "every output file is written")
        return {
            "seconds": seconds,
            "flushed": flushed,
            "share_seconds": share_seconds,
            "executions": stats.executions,
            "memos": stats.memos,
            "adopted": 0 if stats.shared is None else stats.shared.adopted,
            "published": 0 if stats.shared is None else stats.shared.published,
            "round_trips": 0 if store is None else store.counters.round_trips,
            "outputs": len(report.outputs),
            "pages": len(report.pages),
            "depth": depth(picante.debug.dependency_graph(db)),
        }


def child(argv: Sequence[str]) -> dict[str, Any]:
    """`CONTENT OUT [STORE]`: build the site once; return the figures."""
    content, out, *store = argv
    return asyncio.run(_build(Path(content), Path(out), Path(store[0]) if store else None))


def main(argv: Sequence[str]) -> None:
    """Entry point of a child process: print `child(argv)` as one line of JSON."""
    print(json.dumps(child(argv)), flush=True)


# --- the parent: the rows ---------------------------------------------------------------


def _spawn(folder: Path, name: str, store: Path | None) -> dict[str, Any]:
    """Copy the content to a new checkout `folder/name`, build it in a fresh interpreter."""
    checkout = folder / name
    shutil.copytree(CONTENT, checkout / "content")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    code = "import sys; from benchmarks.p12_site import main; main(sys.argv[1:])"
    where = [str(checkout / "content"), str(checkout / "out")]
    command = [sys.executable, "-c", code, *where, *([str(store)] if store else [])]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        msg = f"P12 site build {name} failed:\n{done.stderr}"
        raise RuntimeError(msg)
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return figures


def _same_files(one: Path, other: Path) -> bool:
    """Whether the folders *one* and *other* hold the same files with the same bytes."""
    files = sorted(path.relative_to(one) for path in one.rglob("*") if path.is_file())
    theirs = sorted(path.relative_to(other) for path in other.rglob("*") if path.is_file())
    return files == theirs and all(
        (one / path).read_bytes() == (other / path).read_bytes() for path in files
    )


def rows(profile: Profile) -> list[Row]:
    """P12's rows for the site example (none, with a note, without markdown-it-py)."""
    if importlib.util.find_spec("markdown_it") is None:
        print(
            "P12 site example skipped: needs markdown-it-py (the examples group)",
            file=sys.stderr,
        )
        return []
    repetitions = 1 if profile.quick else 3
    with tempfile.TemporaryDirectory(prefix="picante-p12-site-") as name:
        folder = Path(name)
        store = folder / "shared.sqlite"
        fill = _spawn(folder, "fill", store)
        verify(fill["executions"] == fill["memos"] > 0, "the filling build runs every body")
        verify(fill["published"] == fill["executions"], "the filling build publishes all")
        cold: list[dict[str, Any]] = []
        warm: list[dict[str, Any]] = []
        for repetition in range(repetitions):
            order = ["cold", "warm"] if repetition % 2 == 0 else ["warm", "cold"]
            for kind in order:
                built = _spawn(folder, f"{kind}-{repetition}", store if kind == "warm" else None)
                (cold if kind == "cold" else warm).append(built)
                verify(
                    _same_files(folder / f"{kind}-{repetition}" / "out", folder / "fill" / "out"),
                    f"the {kind} build writes the same site",
                )
    verify(all(built["executions"] == fill["memos"] for built in cold), "cold runs all")
    for built in (*cold, *warm):
        verify(built["memos"] == fill["memos"], "every build has the same memos")
        verify(built["depth"] == fill["depth"], "every build has the same graph")
    cold_seconds = min(built["seconds"] for built in cold)
    seconds = min(built["seconds"] for built in warm)
    ran = max(built["executions"] for built in warm)
    trips = max(built["round_trips"] for built in warm)
    limit = fill["depth"] + 2
    what = f"P12 site example ({fill['memos']} queries)"
    return [
        Row(
            f"{what}: warm build through sqlite",
            seconds * 1e9,
            {"plain": cold_seconds * 1e9},
            [
                # Bodies run, plus one: 1.00x when none ran (ratios are > 0).
                Check("no body runs", ran + 1.0, 1.0),
                Check("≤ 1/10 of the cold build", seconds / cold_seconds, 0.1),
                Check(f"round trips ≤ depth + 2 ({limit}): {trips}", trips / limit, 1.0),
            ],
        ),
        Row(
            f"{what}: of which the first picante.share",
            min(built["share_seconds"] for built in warm) * 1e9,
            {},
        ),
        Row(
            f"{what}: first build, filling sqlite",
            fill["flushed"] * 1e9,
            {"plain": cold_seconds * 1e9},
        ),
    ]
