"""
An incremental analyzer of a Python source tree: a small linter and an import graph.

Every `.py` file under the folder is an input; what the analyzer knows of it (its
imports, its definitions, its problems) and of the tree (which module imports which,
import cycles, who imports a module transitively) are queries. It reports:

* `E999` a syntax error;
* `F401` an import never used (a `from x import y as y` re-export, a name in `__all__`
  and a `__future__` import count as used);
* `F821` a name read at module level that nothing binds (not checked in a module with a
  star import);
* `E0401` an import of a module of the tree that does not exist, and `E0611` a name that
  an existing module of the tree does not define;
* `R0401` an import cycle: the modules import each other when they run (imports inside
  functions or under `if TYPE_CHECKING:` do not count).

The folder is a package, named as the folder: `picante/_fetch.py` is `picante._fetch`.

    python examples/analyze.py picante
    python examples/analyze.py picante --cache /tmp/analyze.cache --watch
    python examples/analyze.py picante --importers picante._errors
    python examples/analyze.py picante --serve   # JSON lines on stdin and stdout

Needs the `examples` dependency group for `--watch` (watchfiles) and the progress bar
(rich).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import builtins
import json
import signal
import sys
import time
import warnings
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import attrs

import picante
from picante.stores import RedisStore, SqliteStore


if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterable,
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
        Sequence,
    )

    from rich.progress import Progress

    from picante.stores import Store


# --8<-- [start:summary]
@attrs.frozen(order=True)
class Diagnostic:
    """One problem, as a linter prints it: `pkg/a.py:3:1: F401 ...`."""

    path: str
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


@attrs.frozen(order=True)
class Problem:
    """A problem that a file shows on its own, where it is in the file."""

    line: int
    col: int
    code: str
    message: str


@attrs.frozen
class Import:
    """A name that an import statement binds: `import a.b`, `from a import b`."""

    line: int
    col: int
    module: str  # absolute, `pkg.util`; still relative if it climbs out of the tree
    name: str  # "" for `import module`, "*" for a star import
    # Run when the module runs: not inside a function, nor under `if TYPE_CHECKING:`.
    runtime: bool

    def candidates(self) -> tuple[str, ...]:
        """The modules it imports, most specific first: `from a import b` may be a.b."""
        if self.name in ("", "*"):
            return (self.module,)
        return (f"{self.module}.{self.name}", self.module)


@attrs.frozen
class Definitions:
    """The names a module binds at module level."""

    names: frozenset[str]
    # Any name may exist: the module has a star import, a module `__getattr__`, or
    # does not parse.
    open: bool


@attrs.frozen
class Summary:
    """What the rest of the analysis needs of a file: no syntax tree, nothing big.

    An edit inside a function that moves no line and changes no import's use leaves
    it equal, and the analysis stops there (early cutoff).
    """

    imports: tuple[Import, ...]
    definitions: Definitions
    problems: tuple[Problem, ...]  # E999, F401, F821: found in the file alone


# --8<-- [end:summary]


# --8<-- [start:database]
def no_modules(db: Analyzer, path: str) -> frozenset[str]:
    """Where the import closure of a module on an import cycle starts: nothing."""
    return frozenset()


@picante.database(accumulates=Diagnostic)
class Analyzer:
    """A Python source tree: the file texts are the inputs."""

    # Every source file, by its path from the folder above the tree: `pkg/util.py`.
    @picante.input
    async def files(self) -> tuple[str, ...]:
        raise NotImplementedError

    @picante.input
    async def text(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def parse(self, path: str) -> Summary:
        return summarize(path, await self.text(path))

    @picante.query
    async def imports(self, path: str) -> tuple[tuple[str, ...], ...]:
        """The modules *path* imports when it runs, each as `Import.candidates()`.

        No line numbers: moving an import leaves it equal.
        """
        summary = await self.parse(path)
        return tuple(sorted({i.candidates() for i in summary.imports if i.runtime}))

    @picante.query
    async def definitions(self, path: str) -> Definitions:
        return (await self.parse(path)).definitions

    # --8<-- [end:database]

    # --8<-- [start:graph]
    @picante.query
    async def modules(self) -> dict[str, str]:
        """The path of each module of the tree, by name."""
        return {module_name(path): path for path in await self.files()}

    @picante.query
    async def path_of(self, module: str) -> str | None:
        """The file of *module*, if the tree has it.

        Each module name asked for has a memo of its own: when a file comes or goes,
        they all run again, but only those whose answer changed invalidate their
        readers.
        """
        return (await self.modules()).get(module)

    @picante.query
    async def resolved_imports(self, path: str) -> tuple[str, ...]:
        """The files of the tree that *path* imports when it runs."""
        found: set[str] = set()
        for candidates in await self.imports(path):
            target = await resolve(self, candidates)
            if target is not None and target != path:
                found.add(target)
        return tuple(sorted(found))

    @picante.query(cycle_initial=no_modules)
    async def import_closure(self, path: str) -> frozenset[str]:
        """The files *path* imports, directly or not; itself too if on a cycle.

        Import cycles are no error: a cycle iterates from `no_modules` to a fixpoint
        (the sets only grow, and the tree is finite).
        """
        found: set[str] = set()
        for target in await self.resolved_imports(path):
            found.add(target)
            found |= await self.import_closure(target)
        return frozenset(found)

    @picante.query
    async def cycle(self, path: str) -> tuple[str, ...]:
        """A shortest import cycle through *path*, `(path, ..., path)`; or `()`."""
        if path not in await self.import_closure(path):
            return ()
        came_from: dict[str, str] = {}
        queue = deque([path])
        while queue:
            node = queue.popleft()
            for target in await self.resolved_imports(node):
                if target == path:
                    chain = [node]
                    while chain[-1] != path:
                        chain.append(came_from[chain[-1]])
                    return (*reversed(chain), path)
                if target not in came_from:
                    came_from[target] = node
                    queue.append(target)
        return ()  # unreachable: path is in its own closure

    # --8<-- [end:graph]

    # --8<-- [start:lint]
    @picante.query
    async def lint(self, path: str) -> int:
        """Accumulate the diagnostics of *path*; return how many."""
        summary = await self.parse(path)
        problems = list(summary.problems)
        for item in summary.imports:
            problems.extend(await import_problems(self, item))
        if cycle := await self.cycle(path):
            for item in summary.imports:
                if item.runtime and await resolve(self, item.candidates()) == cycle[1]:
                    chain = " -> ".join(map(module_name, cycle))
                    message = f"import cycle: {chain}"
                    problems.append(Problem(item.line, item.col, "R0401", message))
                    break
        for p in sorted(set(problems)):  # `from a import b, c`: one E0401
            picante.accumulate(Diagnostic(path, p.line, p.col, p.code, p.message))
        return len(set(problems))

    @picante.query
    async def check(self) -> int:
        """Lint every file; return the number of diagnostics.

        The diagnostics themselves are what it accumulated:
        `await picante.accumulated(db.check)`.
        """
        return sum([await self.lint(path) for path in await self.files()])

    @picante.query
    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Every diagnostic, sorted: a query, so that sorting them is memoized too."""
        return tuple(sorted(await picante.accumulated(self.check)))

    # --8<-- [end:lint]

    # --8<-- [start:importers]
    @picante.query
    async def imported_by(self) -> dict[str, tuple[str, ...]]:
        """The files that import each file directly (the import graph reversed)."""
        graph: dict[str, list[str]] = {}
        for path in await self.files():
            for target in await self.resolved_imports(path):
                graph.setdefault(target, []).append(path)
        return {target: tuple(sources) for target, sources in graph.items()}

    @picante.query
    async def importers(self, path: str) -> tuple[str, ...]:
        """The files that import *path*, directly or not, sorted (not *path* itself)."""
        graph = await self.imported_by()
        found: set[str] = set()
        stack = [path]
        while stack:
            for source in graph.get(stack.pop(), ()):
                if source not in found:
                    found.add(source)
                    stack.append(source)
        found.discard(path)
        return tuple(sorted(found))

    # --8<-- [end:importers]


# --8<-- [start:resolve]
async def resolve(db: Analyzer, candidates: Iterable[str]) -> str | None:
    """The file of the first of *candidates* that the tree has."""
    for module in candidates:
        if (path := await db.path_of(module)) is not None:
            return path
    return None


async def import_problems(db: Analyzer, item: Import) -> list[Problem]:
    """`E0401` for a module of the tree that does not exist, `E0611` for a name."""
    target = await db.path_of(item.module)
    if target is None:
        top = item.module.partition(".")[0]
        if item.module.startswith(".") or await db.path_of(top) is not None:
            message = f"cannot import `{item.module}`"
            return [Problem(item.line, item.col, "E0401", message)]
        return []  # not a module of the tree: the standard library, say
    if item.name in ("", "*") or await db.path_of(f"{item.module}.{item.name}"):
        return []
    definitions = await db.definitions(target)
    if definitions.open or item.name in definitions.names:
        return []
    message = f"`{item.module}` has no name `{item.name}`"
    return [Problem(item.line, item.col, "E0611", message)]


# --8<-- [end:resolve]


# --8<-- [start:summarize]
BUILTINS = frozenset(dir(builtins)) | {"__file__", "__builtins__", "__path__"}


def module_name(path: str) -> str:
    """`pkg/sub/mod.py` is `pkg.sub.mod`, and `pkg/__init__.py` is `pkg`."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def summarize(path: str, text: str) -> Summary:
    """Parse *text*, the file at *path*, into what the analysis needs of it."""
    try:
        with warnings.catch_warnings():
            # "invalid escape sequence" and the like: a linter's business, not ours.
            warnings.simplefilter("ignore")
            tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError) as error:  # ValueError: a null byte
        line, col = 1, 1
        message = str(error)
        if isinstance(error, SyntaxError):
            line, col, message = error.lineno or 1, error.offset or 1, error.msg
        problem = Problem(line, col, "E999", f"{type(error).__name__}: {message}")
        return Summary((), Definitions(frozenset(), open=True), (problem,))
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    scope = Scope(package)
    scope.visit(tree)
    return scope.summary()


class Scope(ast.NodeVisitor):
    """One walk over a module: what it imports, binds and reads.

    Module level is what runs when the module is imported: its statements, class
    bodies, decorators and default values, not function bodies. Names bound in class
    bodies and comprehensions count as defined for reads at module level (a
    simplification that errs on the side of silence).
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self.functions = 0  # depth of function bodies around the node
        self.nested = 0  # depth of class bodies and comprehensions, at module level
        self.type_checking = 0  # depth of `if TYPE_CHECKING:` blocks
        self.imports: list[Import] = []
        self.bindings: list[tuple[Import, str]] = []  # module-level, name bound
        self.bound: set[str] = set()  # module-level names
        self.local: set[str] = set()  # bound in class bodies and comprehensions
        self.reads: list[ast.Name] = []  # module-level reads
        self.used: set[str] = set()  # names read anywhere, annotations too
        self.star = False

    def summary(self) -> Summary:
        problems: list[Problem] = []
        for item, bound in self.bindings:
            if bound not in self.used and item.module != "__future__":
                what = ".".join(filter(None, (item.module, item.name)))
                message = f"`{what}` imported but unused"
                problems.append(Problem(item.line, item.col, "F401", message))
        known = self.bound | self.local | BUILTINS
        if not self.star:
            problems.extend(
                Problem(
                    name.lineno,
                    name.col_offset + 1,
                    "F821",
                    f"undefined name `{name.id}`",
                )
                for name in self.reads
                if name.id not in known
            )
        definitions = Definitions(
            frozenset(self.bound), open=self.star or "__getattr__" in self.bound
        )
        return Summary(tuple(self.imports), definitions, tuple(sorted(problems)))

    def bind(self, name: str) -> None:
        if self.functions:
            return
        (self.local if self.nested else self.bound).add(name)

    # Imports.
    def add_import(self, node: ast.stmt, module: str, name: str, bound: str) -> None:
        runtime = not (self.functions or self.type_checking)
        item = Import(node.lineno, node.col_offset + 1, module, name, runtime)
        self.imports.append(item)
        if name == "*":
            self.star = self.star or not self.functions
            return
        self.bind(bound)
        if not (self.functions or self.nested):
            self.bindings.append((item, bound))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.partition(".")[0]
            if alias.asname == alias.name:  # `import a as a`: a re-export
                self.used.add(bound)
            self.add_import(node, alias.name, "", bound)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            parts = self.package.split(".") if self.package else []
            if parts and node.level <= len(parts):
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(filter(None, [*base, module]))
            else:  # climbs out of the tree: leave it relative, unresolvable
                module = "." * node.level + module
        for alias in node.names:
            bound = alias.asname or alias.name
            if alias.asname == alias.name:  # `from a import b as b`: a re-export
                self.used.add(bound)
            self.add_import(node, module, alias.name, bound)

    # Scopes.
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.bind(node.name)
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.arguments(node.args)
        if node.returns:
            self.annotation(node.returns)
        self.functions += 1
        for statement in node.body:
            self.visit(statement)
        self.functions -= 1

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.visit_FunctionDef(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.arguments(node.args)
        self.functions += 1
        self.visit(node.body)
        self.functions -= 1

    def arguments(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.visit(default)
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        every += [arg for arg in (args.vararg, args.kwarg) if arg is not None]
        for arg in every:
            if arg.annotation is not None:
                self.annotation(arg.annotation)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.bind(node.name)
        for child in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(child)
        self.nested += 1
        for statement in node.body:
            self.visit(statement)
        self.nested -= 1

    def comprehension(self, node: ast.expr) -> None:
        self.nested += 1
        self.generic_visit(node)
        self.nested -= 1

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self.comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self.comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self.comprehension(node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self.comprehension(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.bound.update(node.names)  # assigned in a function, bound in the module

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        self.visit(test)
        self.type_checking += guarded
        for statement in node.body:
            self.visit(statement)
        self.type_checking -= guarded
        for statement in node.orelse:
            self.visit(statement)

    # Names.
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.used.add(node.id)
            if not self.functions:
                self.reads.append(node)
        else:
            self.bind(node.id)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bind(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.bind(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.bind(node.rest)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        self.annotation(node.annotation)
        if node.value is not None:
            self.visit(node.value)
            if "TypeAlias" in ast.unparse(node.annotation):  # `X: TypeAlias = "..."`
                self.annotation(node.value)

    # Quoted types outside annotations: `tuple["Table", int]`, `cast("T", value)`.
    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.generic_visit(node)
        self.annotation(node.slice)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        function = ast.unparse(node.func)
        if function in ("cast", "typing.cast") and node.args:
            self.annotation(node.args[0])

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            self.exports(node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        if isinstance(node.target, ast.Name) and node.target.id == "__all__":
            self.exports(node.value)

    def exports(self, value: ast.expr) -> None:
        """The names listed in `__all__` count as used."""
        if isinstance(value, ast.List | ast.Tuple):
            for item in value.elts:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    self.used.add(item.value)

    def annotation(self, node: ast.expr) -> None:
        """Names in an annotation are used (quoted ones too), but never undefined."""
        for child in ast.walk(node):
            if isinstance(child, ast.Name):
                self.used.add(child.id)
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                try:
                    quoted = ast.parse(child.value, mode="eval")
                except SyntaxError:
                    continue
                self.used.update(
                    name.id for name in ast.walk(quoted) if isinstance(name, ast.Name)
                )


# --8<-- [end:summarize]


# --8<-- [start:scan]
def is_source(path: str) -> bool:
    """Is *path* a Python file to analyze? Not in a hidden folder nor `__pycache__`."""
    parts = path.split("/")
    return path.endswith(".py") and not any(
        part.startswith(".") or part == "__pycache__" for part in parts
    )


def list_sources(root: Path) -> set[str]:
    """The Python files under *root*, by path from the folder above *root*."""
    paths = (
        path.relative_to(root.parent).as_posix()
        for path in root.rglob("*.py")
        if path.is_file()
    )
    return {path for path in paths if is_source(path)}


def refresh(db: Analyzer, root: Path, changed: Iterable[str] | None = None) -> None:
    """Bring the inputs up to date with *root*, in one revision.

    Re-reads the *changed* files (all of them when `None`) and every file that
    appeared or vanished since `files()` was set. Setting an input to an equal value
    is a no-op: re-reading an unchanged file invalidates nothing.
    """
    present = list_sources(root)
    known = set(db.files.get(default=()))
    reread = present ^ known  # appeared or vanished
    reread.update(present if changed is None else filter(is_source, changed))
    with picante.batch(db):
        for path in sorted(reread):
            try:
                text = (root.parent / path).read_text(encoding="utf-8")
            except (FileNotFoundError, UnicodeDecodeError):
                db.text.remove(path)
                present.discard(path)
            else:
                db.text.set(path, text)
        db.files.set(tuple(sorted(present)))


# --8<-- [end:scan]


# --8<-- [start:analyze]
@attrs.frozen
class Report:
    """What one analysis found, and what it cost."""

    diagnostics: tuple[Diagnostic, ...]  # sorted
    files: int
    ran: int  # query bodies run
    seconds: float


async def analyze(db: Analyzer, progress: Progress | None = None) -> Report:
    """Check every file; the diagnostics, sorted."""
    before = picante.debug.stats(db).executions
    start = time.perf_counter()
    paths = await db.files()
    if progress is not None:
        # The same work as check() does, one file at a time, to show how far it got.
        bar = progress.add_task("Analyzing", total=len(paths))
        for path in paths:
            await db.lint(path)
            progress.advance(bar)
    diagnostics = await db.diagnostics()
    seconds = time.perf_counter() - start
    ran = picante.debug.stats(db).executions - before
    return Report(diagnostics, len(paths), ran, seconds)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def bodies(count: int) -> str:
    return f"{count} query {'body' if count == 1 else 'bodies'}"


def print_report(report: Report) -> None:
    for diagnostic in report.diagnostics:
        print(diagnostic)
    found = plural(len(report.diagnostics), "diagnostic")
    print(f"Found {found} in {plural(report.files, 'file')}.")


# --8<-- [end:analyze]


# --8<-- [start:watch]
async def reanalyze(
    db: Analyzer, root: Path, changed: Iterable[str], last: Report
) -> tuple[Report, list[str]] | None:
    """Apply the edits of *changed* files, analyze again, sweep; say what changed.

    Returns the new report and the lines to print, or `None` if no input changed.
    The watch loop calls this after each batch of edits; so do the tests.
    """
    revision = picante.revision(db)
    refresh(db, root, changed)
    if picante.revision(db) == revision:
        return None
    report = await analyze(db)
    # Drop what this analysis did not need (a deleted file's memos, say): neither the
    # process nor the cache keeps every file ever seen.
    swept = picante.sweep(db)
    old, new = set(last.diagnostics), set(report.diagnostics)
    lines = [f"- {diagnostic}" for diagnostic in sorted(old - new)]
    lines += [f"+ {diagnostic}" for diagnostic in sorted(new - old)]
    lines.append(
        f"{plural(len(new), 'diagnostic')}: {bodies(report.ran)} ran"
        f" in {ms(report.seconds)}, swept {plural(swept, 'record')}"
    )
    return report, lines


async def watch(db: Analyzer, root: Path, cache: Path | None, last: Report) -> None:
    """Analyze again after every change under *root*, until Ctrl-C."""
    # watchfiles types `stop_event` with trio's Event too: unknown to pyright without
    # trio.
    from watchfiles import awatch  # pyright: ignore[reportUnknownVariableType]

    # Ctrl-C sets an event the watcher checks, rather than cancelling the task: the
    # analysis in progress finishes and is saved.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        print(f"watching {root} (Ctrl-C to stop)", flush=True)
        async for changes in awatch(root, stop_event=stop):
            changed = {Path(p).relative_to(root.parent).as_posix() for _, p in changes}
            done = await reanalyze(db, root, changed, last)
            if done is None:
                continue  # no Python file changed
            last, lines = done
            print("\n".join(lines), flush=True)
            if cache is not None:
                await picante.save(db, cache)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


# --8<-- [end:watch]


# --8<-- [start:serve]
class RequestError(Exception):
    """A request that cannot be answered: the message says why."""


Handler: TypeAlias = "Callable[[Analyzer, dict[str, Any]], Awaitable[object]]"


async def serve(
    db: Analyzer, requests: AsyncIterable[str], respond: Callable[[str], None]
) -> None:
    """Answer each JSON request line of *requests* with one JSON line to *respond*."""
    async for line in requests:
        if line.strip():
            respond(json.dumps(await answer(db, line)))


async def answer(db: Analyzer, line: str) -> dict[str, object]:
    """`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`; no raise."""
    reply: dict[str, object] = {}
    try:
        decoded: object = json.loads(line)
        if not isinstance(decoded, dict):
            msg = "a request is a JSON object"
            raise RequestError(msg)
        request = cast("dict[str, Any]", decoded)
        if "id" in request:
            reply["id"] = request["id"]  # echoed, for clients that pipeline requests
        op = request.get("op")
        handler = OPERATIONS.get(op) if isinstance(op, str) else None
        if handler is None:
            msg = f"unknown op {op!r}; one of: {', '.join(OPERATIONS)}"
            raise RequestError(msg)
        result = await handler(db, request)
    except json.JSONDecodeError as error:
        return {"ok": False, "error": f"not JSON: {error}"}
    except RequestError as error:
        return {**reply, "ok": False, "error": str(error)}
    except Exception as error:  # noqa: BLE001 - a bug in a handler: say so, keep serving
        return {**reply, "ok": False, "error": f"internal error: {error!r}"}
    return {**reply, "ok": True, "result": result}


def field(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str):
        msg = f"{request['op']!r} needs {name!r}, a string"
        raise RequestError(msg)
    return value


async def known_file(db: Analyzer, request: dict[str, Any]) -> str:
    path = field(request, "path")
    if path not in await db.files():
        msg = f"no file {path!r}"
        raise RequestError(msg)
    return path


async def known_module(db: Analyzer, request: dict[str, Any]) -> str:
    module = field(request, "module")
    path = await db.path_of(module)
    if path is None:
        msg = f"no module {module!r}"
        raise RequestError(msg)
    return path


async def diagnostics(db: Analyzer, request: dict[str, Any]) -> object:
    """Of one file (`path`), or of every file."""
    if "path" in request:
        found = await picante.accumulated(db.lint, await known_file(db, request))
    else:
        found = await db.diagnostics()
    return [attrs.asdict(diagnostic) for diagnostic in sorted(found)]


async def importers(db: Analyzer, request: dict[str, Any]) -> object:
    """The modules that import `module`, directly or not."""
    paths = await db.importers(await known_module(db, request))
    return sorted(map(module_name, paths))


async def imported(db: Analyzer, request: dict[str, Any]) -> object:
    """The modules that `module` imports when it runs, directly or not."""
    paths = await db.import_closure(await known_module(db, request))
    return sorted(map(module_name, paths))


async def set_text(db: Analyzer, request: dict[str, Any]) -> object:
    """An editor's unsaved buffer: `path` now reads `text` (a new file if need be)."""
    path, text = field(request, "path"), field(request, "text")
    if not is_source(path) or path.startswith("/") or ".." in path.split("/"):
        msg = f"not a Python file's path in the tree: {path!r}"
        raise RequestError(msg)
    files = db.files.get(default=())
    with picante.batch(db):
        db.text.set(path, text)
        if path not in files:
            db.files.set(tuple(sorted([*files, path])))
    return None


async def remove(db: Analyzer, request: dict[str, Any]) -> object:
    path = await known_file(db, request)
    with picante.batch(db):
        db.text.remove(path)
        db.files.set(tuple(p for p in await db.files() if p != path))
    return None


async def stats(db: Analyzer, request: dict[str, Any]) -> object:
    """The revision, the number of files, and the query bodies run so far."""
    numbers = picante.debug.stats(db)
    files = len(await db.files())
    return {"revision": numbers.revision, "files": files, "ran": numbers.executions}


OPERATIONS: dict[str, Handler] = {
    "diagnostics": diagnostics,
    "importers": importers,
    "imports": imported,
    "set": set_text,
    "remove": remove,
    "stats": stats,
}


async def stdin_lines() -> AsyncIterator[str]:
    """The lines of standard input, read in a thread: the event loop never blocks."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        yield line


# --8<-- [end:serve]


# --8<-- [start:main]
@attrs.frozen
class Options:
    root: Path
    cache: Path | None = None
    watch: bool = False
    serve: bool = False
    importers: str | None = None


async def run(options: Options, share: Sequence[Store] = ()) -> int:
    """Analyze the tree as *options* say; return the exit status."""
    start = time.perf_counter()
    db = Analyzer()
    picante.share(db, *share)  # reuse what other runs computed (no store: nothing)
    cache = options.cache
    if cache is not None and await picante.load(db, cache, on_corrupt="delete"):
        print(f"loaded {cache} in {ms(time.perf_counter() - start)}", file=sys.stderr)
    refresh(db, options.root)
    status = 0
    if options.serve:
        await serve(db, stdin_lines(), lambda line: print(line, flush=True))
    elif options.importers is not None:
        path = await db.path_of(options.importers)
        if path is None:
            print(f"no module {options.importers!r} in the tree", file=sys.stderr)
            return 2
        for importer in await db.importers(path):
            print(module_name(importer))
    else:
        if sys.stdout.isatty():
            from rich.progress import Progress

            with Progress(transient=True) as progress:
                report = await analyze(db, progress)
        else:
            report = await analyze(db)
        print_report(report)
        ran = bodies(report.ran)
        print(f"analyzed in {ms(report.seconds)}: {ran} ran", file=sys.stderr)
        status = 1 if report.diagnostics else 0
        if options.watch:
            await save(db, cache)
            await watch(db, options.root, cache, report)
            print("stopped")
            status = 0  # stopped by Ctrl-C, as asked
    await save(db, cache)
    return status


async def save(db: Analyzer, cache: Path | None) -> None:
    if cache is not None:
        await picante.save(db, cache)
    await picante.flush_shared(db)


async def shared_run(options: Options, url: str | None) -> int:
    """`run`, sharing results through the store at *url* if one is given."""
    if url is None:
        return await run(options)
    store: Store
    if url.startswith("sqlite:"):
        store = SqliteStore(url.removeprefix("sqlite:"))
    else:
        store = RedisStore(url, namespace="analyze")
    async with store:
        return await run(options, share=[store])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Analyze a Python tree, incrementally."
    )
    parser.add_argument("root", type=Path, help="the folder to analyze (a package)")
    parser.add_argument("--cache", type=Path, help="keep a cache file between runs")
    parser.add_argument(
        "--share",
        metavar="URL",
        help="share results with other runs: sqlite:PATH, or redis://... (or unix://)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="analyze on every change")
    mode.add_argument(
        "--serve", action="store_true", help="answer JSON requests on stdin"
    )
    mode.add_argument(
        "--importers",
        metavar="MODULE",
        help="print the modules that import MODULE, directly or not",
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    if not root.is_dir():
        parser.error(f"not a folder: {args.root}")
    options = Options(root, args.cache, args.watch, args.serve, args.importers)
    try:
        return asyncio.run(shared_run(options, args.share))
    except KeyboardInterrupt:
        print("stopped")
        return 130


# --8<-- [end:main]


if __name__ == "__main__":
    sys.exit(main())
