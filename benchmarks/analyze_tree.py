"""
The analyzer example measured: `examples/analyze.py` (picante) against
`examples/analyze_lru.py` (the same analysis cached by hand with `functools.lru_cache`),
on a generated tree of 2,000 modules and on `picante/` itself.

    python -m benchmarks.analyze_tree [--quick] [--files N] [--repetitions N]

The generated tree (`generate`) is deterministic: 40 packages of 49 modules and an
`__init__.py` each. A module imports a few modules of its own package with lower numbers
and an "API" module (numbers 0 to 4, which import only within their package) of the
package below; it defines constants, four functions and a class, about 100 lines.
Every fifth package has a two-module import cycle, every tenth a three-module one; about
one module in twelve has an unused import, one in a hundred an undefined name, and two
files do not parse.

Each contender, per repetition, with the file texts already in memory (reading the tree
is the same for both and not measured):

* **cold**: a new database (a new `Tree`), every text set, every diagnostic computed;
* **warm**: the same check again, nothing changed;
* **edit a body**: one line added inside a function of a module in the middle of the
  graph (its later lines move);
* **edit an import**: that module imports one more module of its package;
* **restart**: a new database loaded from the cache file saved after the cold check
  (`picante.load`), every text set again, every diagnostic computed. `lru_cache` has no
  persistence: its restart is a cold check, in a new process.

The figures are medians over the repetitions, each in a new database; every step
starts from `gc.collect()` and runs with the collector off. "bodies" is
`picante.debug.stats(db).executions` for that step. Both contenders must find the same
diagnostics at every step (checked).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import gc
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import picante
from examples import analyze, analyze_lru


if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = 40
API = 5  # modules 0 to 4 of a package import only within it
STDLIB = ("os", "re", "json", "math", "itertools", "functools", "collections")
STEPS = ("cold", "warm", "edit a body", "edit an import", "restart")


# --- the generated tree --------------------------------------------------------------


def module_text(rng: random.Random, package: int, number: int, per_package: int) -> str:
    """The source of module `number` of package `package`."""
    name = f"gen.p{package:02}.m{number:02}"
    lines = [f'"""Module {name}, generated for the analyzer benchmark."""', ""]
    stdlib = rng.sample(STDLIB, 2)
    lines += [f"import {module}" for module in sorted(stdlib)]
    unused = rng.random() < 1 / 12
    if unused:
        lines.append("import shutil")
    own: list[str] = []
    if number >= API:
        own = sorted(rng.sample([f"m{n:02}" for n in range(number)], min(3, number)))
    elif number:
        own = [f"m{number - 1:02}"]
    # The cycles: m21 <-> m20 in every fifth package, m32 -> m30 -> m31 -> m32 in every
    # tenth (m30 and m31 import upwards).
    if package % 5 == 0 and number in (20, 21) and per_package > 21:
        own.append("m21" if number == 20 else "m20")
    if package % 10 == 3 and number in (30, 31, 32) and per_package > 32:
        own.append(f"m{number + 1:02}" if number < 32 else "m30")
    own = sorted(set(own))
    if own:
        lines.append(f"from gen.p{package:02} import {', '.join(own)}")
    below: list[str] = []
    if number >= API:
        for lower in (package - 1, package - 2):
            if lower >= 0:
                api = rng.randrange(API)
                below.append(f"gen.p{lower:02}.m{api:02}")
                lines.append(f"from gen.p{lower:02}.m{api:02} import compute_0")
                break
    lines += ["", "", f"LIMIT = {rng.randrange(5, 50)}", f"NAME = {name!r}", ""]
    if rng.random() < 0.01:
        lines += ["DEFAULT = undefined_setting", ""]
    for function in range(4):
        # Between them, the four functions use every module imported.
        used: set[str] = {own[(function + i) % len(own)] for i in range(2)} if own else set()
        calls = [f"{module}.compute_{rng.randrange(4)}(total)" for module in sorted(used)]
        if below and function == 0:
            calls.append("compute_0(total)")
        lines += [
            "",
            f"def compute_{function}(value):",
            f'    """Step {function} of {name}."""',
            "    total = value",
            "    for step in range(LIMIT):",
            f"        total += step * {rng.randrange(1, 9)}",
            f"        if total % {rng.randrange(2, 7)} == 0:",
            "            total //= 2",
            f"    parts = [str(total), {stdlib[0]}.__name__, {stdlib[1]}.__name__]",
            *(f"    total += {call}" for call in calls),
            '    return total + len(" ".join(parts))',
            "",
        ]
    lines += [
        "",
        "class Worker:",
        f'    """Runs the steps of {name}."""',
        "",
        "    def __init__(self, start):",
        "        self.start = start",
        "",
        "    def run(self):",
        "        value = self.start",
        "        for function in (compute_0, compute_1, compute_2, compute_3):",
        "            value = function(value)",
        "        return value",
        "",
    ]
    return "\n".join(lines)


def generate(folder: Path, files: int = 2000, seed: int = 0) -> Path:
    """Write the tree into *folder*/gen; return that path."""
    rng = random.Random(seed)
    root = folder / "gen"
    per_package = files // PACKAGES - 1
    (root).mkdir(parents=True)
    (root / "__init__.py").write_text('"""The generated tree."""\n')
    for package in range(PACKAGES):
        directory = root / f"p{package:02}"
        directory.mkdir()
        (directory / "__init__.py").write_text(f'"""Package {package}."""\n')
        for number in range(per_package):
            text = module_text(rng, package, number, per_package)
            (directory / f"m{number:02}.py").write_text(text)
    for broken in ("p07/m40.py", "p33/m12.py"):
        path = root / broken
        if path.exists():
            path.write_text(path.read_text().replace("):\n", ")\n", 1))
    return root


# --- the contenders ------------------------------------------------------------------


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """Collect, then keep the cyclic GC off: no collection lands in a timed step."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def texts_of(root: Path) -> dict[str, str]:
    """Every file's text, by the analyzer's key."""
    return {
        path: (root.parent / path).read_text(encoding="utf-8")
        for path in sorted(analyze.list_sources(root))
    }


def body_edit(text: str) -> str:
    """One more line in the first function's body, before its last statement."""
    tree = ast.parse(text)
    function = next(
        node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )
    last = function.body[-1]
    lines = text.splitlines(keepends=True)
    lines.insert(last.lineno - 1, " " * last.col_offset + "_unused = 0\n")
    return "".join(lines)


def import_edit(text: str, module: str) -> str:
    """One more import, after the last import at the top of the module."""
    tree = ast.parse(text)
    last = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)][-1]
    lines = text.splitlines(keepends=True)
    lines.insert(last.end_lineno or last.lineno, f"import {module}\n")
    return "".join(lines)


def set_all(db: analyze.Analyzer, texts: dict[str, str]) -> None:
    with picante.batch(db):
        for path, text in texts.items():
            db.text.set(path, text)
        db.files.set(tuple(texts))


async def measure_picante(
    texts: dict[str, str], edited: str, imported: str, cache: Path
) -> dict[str, tuple[float, int, tuple[analyze.Diagnostic, ...]]]:
    """Each step: (seconds, bodies run, diagnostics)."""
    results: dict[str, tuple[float, int, tuple[analyze.Diagnostic, ...]]] = {}
    db = analyze.Analyzer()

    async def timed(step: str, before: Callable[[], object] = lambda: None) -> None:
        ran = picante.debug.stats(db).executions
        with collector_off():
            start = time.perf_counter()
            before()
            found = await db.diagnostics()
            seconds = time.perf_counter() - start
        results[step] = (seconds, picante.debug.stats(db).executions - ran, found)

    await timed("cold", lambda: set_all(db, texts))
    await picante.save(db, cache)
    await timed("warm")
    text = body_edit(texts[edited])
    await timed("edit a body", lambda: db.text.set(edited, text))
    text = import_edit(text, imported)
    await timed("edit an import", lambda: db.text.set(edited, text))

    del db
    with collector_off():
        start = time.perf_counter()
        db = analyze.Analyzer()
        await picante.load(db, cache)
        set_all(db, texts)
        found = await db.diagnostics()
        seconds = time.perf_counter() - start
    results["restart"] = (seconds, picante.debug.stats(db).executions, found)
    return results


def measure_lru(
    texts: dict[str, str], edited: str, imported: str
) -> dict[str, tuple[float, tuple[analyze.Diagnostic, ...]]]:
    """Each step: (seconds, diagnostics); a restart is a cold check, caches cleared."""
    results: dict[str, tuple[float, tuple[analyze.Diagnostic, ...]]] = {}

    def clear() -> analyze_lru.Tree:
        analyze_lru.parse.cache_clear()
        analyze_lru.facts.cache_clear()
        return analyze_lru.Tree()

    tree = clear()

    def timed(step: str, before: Callable[[], object] = lambda: None) -> None:
        with collector_off():
            start = time.perf_counter()
            before()
            found = tree.check()
            results[step] = (time.perf_counter() - start, found)

    def cold() -> None:
        for path, text in texts.items():
            tree.set(path, text)

    timed("cold", cold)
    timed("warm")
    text = body_edit(texts[edited])
    timed("edit a body", lambda: tree.set(edited, text))
    text = import_edit(text, imported)
    timed("edit an import", lambda: tree.set(edited, text))
    tree = clear()
    timed("restart", cold)
    return results


# --- the table -----------------------------------------------------------------------


def seconds_text(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.001:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def measure_tree(name: str, root: Path, edited: str, imported: str, repetitions: int) -> list[str]:
    """The Markdown table of *root*, measured *repetitions* times."""
    texts = texts_of(root)
    picante_runs: list[dict[str, tuple[float, int, tuple[analyze.Diagnostic, ...]]]] = []
    lru_runs: list[dict[str, tuple[float, tuple[analyze.Diagnostic, ...]]]] = []
    with tempfile.TemporaryDirectory(prefix="picante-analyze-") as folder:
        cache = Path(folder) / "analyze.cache"
        for repetition in range(repetitions):
            # Alternate which goes first, so that drift hits both alike.
            first_lru = repetition % 2 == 1
            if first_lru:
                lru_runs.append(measure_lru(texts, edited, imported))
            cache.unlink(missing_ok=True)
            picante_runs.append(asyncio.run(measure_picante(texts, edited, imported, cache)))
            if not first_lru:
                lru_runs.append(measure_lru(texts, edited, imported))
        size = cache.stat().st_size
    for mine, other in zip(picante_runs, lru_runs, strict=True):
        for step in STEPS:
            if mine[step][2] != other[step][1]:
                msg = f"{name}, {step}: picante and lru_cache disagree"
                raise AssertionError(msg)
    diagnostics = len(picante_runs[0]["cold"][2])
    lines = [
        f"{name}: {len(texts)} files, {diagnostics} diagnostics, cache file "
        f"{size / 1e6:.1f} MB; median of {repetitions}",
        "",
        "| step | picante | bodies run | lru_cache | picante / lru_cache |",
        "|---|---:|---:|---:|---:|",
    ]
    for step in STEPS:
        ours = statistics.median(run[step][0] for run in picante_runs)
        theirs = statistics.median(run[step][0] for run in lru_runs)
        bodies = statistics.median(run[step][1] for run in picante_runs)
        label = "restart (lru_cache: cold)" if step == "restart" else step
        lines.append(
            f"| {label} | {seconds_text(ours)} | {bodies:,.0f} | "
            f"{seconds_text(theirs)} | {ours / theirs:.2f}x |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.analyze_tree",
        description="The analyzer example: picante against lru_cache.",
    )
    parser.add_argument("--files", type=int, default=2000, help="files in the tree")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="200 files, 1 repetition")
    args = parser.parse_args(argv)
    files, repetitions = (200, 1) if args.quick else (args.files, args.repetitions)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    with tempfile.TemporaryDirectory(prefix="picante-tree-") as folder:
        root = generate(Path(folder), files)
        middle = f"p{PACKAGES // 2:02}"
        number = min(10, files // PACKAGES - 2)
        lines = measure_tree(
            "generated tree",
            root,
            edited=f"gen/{middle}/m{number:02}.py",
            imported=f"gen.{middle}.m{number - 1:02}",
            repetitions=repetitions,
        )
    print("\n".join(lines), end="\n\n", flush=True)
    lines = measure_tree(
        "picante/",
        ROOT / "picante",
        edited="picante/_format.py",
        imported="picante._errors",
        repetitions=repetitions,
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
