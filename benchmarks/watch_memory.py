"""
What a long `--watch` session keeps, with and without `picante.sweep`: a stand-alone study.

`python -m benchmarks.watch_memory [--edits N] [--files N] [--quick]`

A linter-like database: each file's text is an input (`source(path)`), `files()` lists the
paths; `parse(path)` is its `ast.Module` (`eq=False`: ASTs have no usable `==`),
`diagnostics(path)` what a few lint rules find in it, and `summary()` the diagnostics of
every listed file, counted per rule. After the first build, each of the edits (1,000; 100
with `--quick`) changes the inputs in one revision and then reads `summary()` again, as a
watch loop would. Seven edits in ten modify a file (a new text); the others add a file
under a path never used before, or delete one (its input removed, and its path dropped
from `files()`), adding more often below the starting count (200 files; 40 with `--quick`)
and deleting more often above it. The edits come from a seeded `random.Random`, so both
runs see the same ones.

The study runs twice in one process, each time on a fresh database: without sweeping, and
with `picante.sweep(db)` after each read of the summary. Without it, every deleted path
leaves its `parse` and `diagnostics` memos, the AST they hold, and its absent input cell
behind. At the start and every tenth of the edits (every 100 of 1,000), each run records
its memos (records with a value: `verified_at >= 0`), its input cells (absent ones
included), and the memory `tracemalloc` traces (after `gc.collect()`, since just before
the run's database was made). The time of an edit is the input change, the read and, in
the second run, the sweep; the table shows the median over each tenth, and the overall
median follows. tracemalloc traces every allocation of both runs, which slows both alike:
the times compare the runs, they are not what an edit costs untraced.

Both runs must read equal summaries after every edit (sweeping never changes a result):
the script fails otherwise.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import gc
import hashlib
import random
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import picante
from picante._store import InputCell, QueryCell

from ._harness import verify


__all__ = ["Checkpoint", "Run", "main", "study"]

SEED = 14
IMPORTS = (
    "import os",
    "import re",
    "import sys",
    "import json",
    "import itertools",
    "from pathlib import Path",
    "from typing import Any",
    "from collections import Counter",
)
# Limits of two lint rules: arguments, and statements in a function's body.
MAX_ARGS = 4
MAX_STATEMENTS = 12


class Diagnostic(NamedTuple):
    line: int
    rule: str
    message: str


class Summary(NamedTuple):
    files: int
    diagnostics: int
    per_rule: tuple[tuple[str, int], ...]


@picante.database
class Linter:
    """A project under a linter: file texts in, a summary of its diagnostics out."""

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input
    async def files(self) -> tuple[str, ...]:
        raise NotImplementedError

    @picante.query(eq=False)
    async def parse(self, path: str) -> ast.Module:
        return ast.parse(await self.source(path), filename=path)

    @picante.query
    async def diagnostics(self, path: str) -> tuple[Diagnostic, ...]:
        return tuple(sorted(lint(await self.parse(path))))

    @picante.query
    async def summary(self) -> Summary:
        per_rule: dict[str, int] = {}
        paths = await self.files()
        for path in paths:
            for diagnostic in await self.diagnostics(path):
                per_rule[diagnostic.rule] = per_rule.get(diagnostic.rule, 0) + 1
        return Summary(len(paths), sum(per_rule.values()), tuple(sorted(per_rule.items())))


def lint(tree: ast.Module) -> list[Diagnostic]:
    """A handful of rules in the style of flake8's: what a watch loop would recompute."""
    found: list[Diagnostic] = []
    imported: dict[str, int] = {}
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                imported[(alias.asname or alias.name).partition(".")[0]] = node.lineno
        elif isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            used.add(node.value.id)
        elif isinstance(node, ast.FunctionDef):
            if ast.get_docstring(node) is None:
                found.append(Diagnostic(node.lineno, "D103", f"{node.name}: no docstring"))
            if len(node.args.args) > MAX_ARGS:
                found.append(Diagnostic(node.lineno, "PLR0913", f"{node.name}: too many args"))
            if len(node.body) > MAX_STATEMENTS:
                found.append(Diagnostic(node.lineno, "PLR0915", f"{node.name}: too long"))
        elif isinstance(node, ast.ExceptHandler) and node.type is None:
            found.append(Diagnostic(node.lineno, "E722", "bare except"))
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq)
            and isinstance(right, ast.Constant)
            and right.value is None
            for op, right in zip(node.ops, node.comparators, strict=True)
        ):
            found.append(Diagnostic(node.lineno, "E711", "comparison to None"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
        ):
            found.append(Diagnostic(node.lineno, "T201", "print found"))
    found.extend(
        Diagnostic(line, "F401", f"{name} imported but unused")
        for name, line in imported.items()
        if name not in used
    )
    return found


def module_text(rng: random.Random) -> str:
    """A module of a few functions, some of which break a rule or two."""
    lines = sorted(rng.sample(IMPORTS, rng.randint(1, 4)))
    for index in range(rng.randint(4, 12)):
        args = [f"a{n}" for n in range(rng.randint(0, 6))]
        lines += ["", "", f"def f{index}({', '.join(args)}):"]
        if rng.random() < 0.6:
            lines.append(f'    """Step {index} of the pipeline."""')
        lines.append("    total = 0")
        for step in range(rng.randint(2, 14)):
            kind = rng.random()
            arg = rng.choice(args) if args else "total"
            if kind < 0.1:
                lines.append(f"    print({arg}, {step})")
            elif kind < 0.2:
                lines += ["    try:", f"        total += int({arg})", "    except:", "        pass"]
            elif kind < 0.3:
                lines += [f"    if {arg} == None:", f"        total -= {step}"]
            elif kind < 0.4:
                lines.append(f"    total += len(os.path.join(str({arg}), 'x{step}'))")
            else:
                lines.append(f"    total += {arg} * {step} if {arg} else {rng.randint(1, 99)}")
        lines.append("    return total")
    return "\n".join(lines) + "\n"


@dataclass
class Checkpoint:
    edit: int
    files: int
    memos: int
    input_cells: int
    traced: int  # bytes


@dataclass
class Run:
    sweep: bool
    checkpoints: list[Checkpoint] = field(default_factory=list)
    # Seconds per edit, and (sweeping) of the sweep alone.
    times: list[float] = field(default_factory=list)
    sweep_times: list[float] = field(default_factory=list)
    swept: int = 0
    # A digest of the summary read after the first build and after each edit.
    summaries: list[bytes] = field(default_factory=list)


def count_cells(db: Linter) -> tuple[int, int]:
    """The database's memos (records with a value) and its input cells, absent ones too."""
    memos = cells = 0
    tables: dict[str, dict[Any, Any]] = vars(db)["__picante__"].tables
    for table in tables.values():
        for cell in table.values():
            if type(cell) is QueryCell:
                memos += cell.verified_at >= 0
            elif type(cell) is InputCell:
                cells += 1
    return memos, cells


def live_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def digest(summary: Summary) -> bytes:
    return hashlib.blake2b(repr(summary).encode(), digest_size=16).digest()


async def simulate(run: Run, *, edits: int, files: int, every: int) -> None:
    """Build a *files*-file project, then make *edits* edits, reading the summary after each."""
    rng = random.Random(SEED)
    baseline = live_bytes()
    db = Linter()
    disk = {f"pkg/mod{n:04}.py": module_text(rng) for n in range(files)}
    made = files
    with picante.batch(db):
        for path, text in disk.items():
            db.source.set(path, text)
        db.files.set(tuple(disk))

    async def read() -> None:
        run.summaries.append(digest(await db.summary()))
        if run.sweep:
            started = time.perf_counter()
            run.swept += picante.sweep(db)
            run.sweep_times.append(time.perf_counter() - started)

    def checkpoint(edit: int) -> None:
        memos, cells = count_cells(db)
        run.checkpoints.append(Checkpoint(edit, len(disk), memos, cells, live_bytes() - baseline))

    await read()
    checkpoint(0)
    for edit in range(1, edits + 1):
        # Adds and deletes lean towards the starting count.
        choice = rng.random()
        adding = min(0.3, max(0.0, 0.15 + (files - len(disk)) * 0.3 / files))
        if choice < adding:
            path = f"pkg/mod{made:04}.py"
            made += 1
            disk[path] = text = module_text(rng)
            started = time.perf_counter()
            with picante.batch(db):
                db.source.set(path, text)
                db.files.set(tuple(disk))
        elif choice < 0.3 and len(disk) > 1:
            path = rng.choice(list(disk))
            del disk[path]
            started = time.perf_counter()
            with picante.batch(db):
                db.source.remove(path)
                db.files.set(tuple(disk))
        else:
            path = rng.choice(list(disk))
            disk[path] = text = module_text(rng)
            started = time.perf_counter()
            db.source.set(path, text)
        await read()
        run.times.append(time.perf_counter() - started)
        if edit % every == 0 or edit == edits:
            checkpoint(edit)


def study(*, edits: int, files: int) -> tuple[Run, Run]:
    """Run the simulation without, then with, sweeping; return both runs."""
    every = max(1, edits // 10)
    runs = (Run(sweep=False), Run(sweep=True))
    for run in runs:
        gc.collect()
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        try:
            asyncio.run(simulate(run, edits=edits, files=files, every=every))
        finally:
            if not tracing:
                tracemalloc.stop()
    plain, swept = runs
    for step, (a, b) in enumerate(zip(plain.summaries, swept.summaries, strict=True)):
        verify(a == b, f"the summaries after edit {step} differ with and without sweep")
    return runs


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f}"


def ratio(sweeping: float, plain: float) -> str:
    return f"{sweeping / plain:.2f}x" if plain else "—"


def window_ms(run: Run, first: int, last: int) -> str:
    """The median milliseconds per edit of edits *first* + 1 through *last*."""
    times = run.times[first:last]
    return f"{statistics.median(times) * 1e3:.2f}" if times else "—"


def render(plain: Run, swept: Run) -> str:
    """The checkpoints of both runs side by side, then the medians and the final ratios."""
    groups = ["memos", "input cells", "traced MB", "ms per edit"]
    header = ["edit", "files", *["no sweep", "sweep"] * len(groups)]
    rows: list[list[str]] = []
    previous = 0
    for a, b in zip(plain.checkpoints, swept.checkpoints, strict=True):
        rows.append(
            [
                f"{a.edit:,}",
                f"{a.files:,}",
                f"{a.memos:,}",
                f"{b.memos:,}",
                f"{a.input_cells:,}",
                f"{b.input_cells:,}",
                megabytes(a.traced),
                megabytes(b.traced),
                window_ms(plain, previous, a.edit),
                window_ms(swept, previous, b.edit),
            ]
        )
        previous = a.edit
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    # Each group's name centred over its two columns.
    for index, group in enumerate(groups):
        left = 2 + 2 * index
        width = widths[left] + 2 + widths[left + 1]
        if len(group) > width:
            widths[left] += len(group) - width
    titles = [" " * widths[0], " " * widths[1]]
    for index, group in enumerate(groups):
        left = 2 + 2 * index
        titles.append(group.center(widths[left] + 2 + widths[left + 1]))

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))

    a, b = plain.checkpoints[-1], swept.checkpoints[-1]
    time_plain = statistics.median(plain.times)
    time_sweep = statistics.median(swept.times)
    return "\n".join(
        [
            "  ".join(titles).rstrip(),
            line(header),
            "  ".join("-" * width for width in widths),
            *(line(row) for row in rows),
            "",
            f"median per edit: no sweep {time_plain * 1e3:.2f} ms, sweep {time_sweep * 1e3:.2f} ms "
            f"(of which the sweep {statistics.median(swept.sweep_times) * 1e3:.2f} ms)",
            f"records swept: {swept.swept:,} over {len(swept.times):,} edits",
            f"at edit {a.edit:,}, sweep / no sweep: memos {ratio(b.memos, a.memos)}, "
            f"input cells {ratio(b.input_cells, a.input_cells)}, "
            f"traced memory {ratio(b.traced, a.traced)}, "
            f"time per edit {ratio(time_sweep, time_plain)}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.watch_memory",
        description="What a long watch session keeps, with and without picante.sweep.",
    )
    parser.add_argument("--edits", type=int, help="edits to make (default: 1,000; 100 quick)")
    parser.add_argument("--files", type=int, help="files to start with (default: 200; 40 quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 edits, 40 files")
    args = parser.parse_args(argv)
    edits: int = (100 if args.quick else 1_000) if args.edits is None else args.edits
    files: int = (40 if args.quick else 200) if args.files is None else args.files
    if edits < 1 or files < 1:
        parser.error("--edits and --files must be positive")
    print(
        f"watch_memory: {edits:,} edits to a linted project of ~{files:,} files "
        f"(seed {SEED}), without and with picante.sweep after each read",
        flush=True,
    )
    started = time.perf_counter()
    plain, swept = study(edits=edits, files=files)
    print(render(plain, swept))
    print(f"summaries equal after every edit; {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
