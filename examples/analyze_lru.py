"""
The analysis of `examples/analyze.py` without picante: `functools.lru_cache` and caches
invalidated by hand, as a careful programmer would write it.

The same diagnostics, from the same functions (`summarize`, `module_name`), so that a
comparison measures the caching alone:

* parsing is cached by `(path, text)`: an edit re-parses that file only;
* the import graph (which file imports which, cycles) is rebuilt, whole, when a file
  comes or goes or when one changes its imports or its definitions; otherwise kept;
* each file's diagnostics are cached with the text they were computed from, and all of
  them are dropped when the graph is rebuilt (any of them may depend on it);
* a check with no edit since the last one returns the last result.

Nothing is kept between processes: a restart analyzes everything again. It is used by
`benchmarks/analyze_tree.py`, and the tests check that it finds what `analyze.py` finds.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import TYPE_CHECKING

import attrs

from examples.analyze import Diagnostic, Problem, Summary, module_name, summarize


if TYPE_CHECKING:
    from collections.abc import Mapping

    from examples.analyze import Definitions, Import


# Bounded: each edit leaves the old text's entry behind.
@functools.lru_cache(maxsize=1 << 16)
def parse(path: str, text: str) -> Summary:
    return summarize(path, text)


@functools.lru_cache(maxsize=1 << 16)
def facts(path: str, text: str) -> tuple[tuple[tuple[str, ...], ...], Definitions]:
    """What the graph needs of a file: its runtime imports and its definitions."""
    summary = parse(path, text)
    imports = {item.candidates() for item in summary.imports if item.runtime}
    return tuple(sorted(imports)), summary.definitions


@attrs.frozen
class Graph:
    """The tree as a whole: its modules, who imports whom, the cycles."""

    modules: Mapping[str, str]  # path by module name
    definitions: Mapping[str, Definitions]  # by path
    imports: Mapping[str, tuple[str, ...]]  # resolved, by path
    cycles: Mapping[str, tuple[str, ...]]  # a shortest cycle, by path, if on one

    def resolve(self, candidates: tuple[str, ...]) -> str | None:
        return next((self.modules[m] for m in candidates if m in self.modules), None)


class Tree:
    """The files of a tree, and their analysis, cached."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self._graph: Graph | None = None
        self._graph_key: object = None
        self._lints: dict[str, tuple[str, list[Diagnostic]]] = {}
        self._last: tuple[Diagnostic, ...] | None = None  # until the next edit

    def set(self, path: str, text: str) -> None:
        if self.texts.get(path) != text:
            self.texts[path] = text
            self._last = None

    def remove(self, path: str) -> None:
        if self.texts.pop(path, None) is not None:
            self._last = None

    def graph(self) -> Graph:
        """The import graph, rebuilt only if a file's imports or definitions changed."""
        key = tuple(
            (path, facts(path, text)) for path, text in sorted(self.texts.items())
        )
        if self._graph is None or key != self._graph_key:
            self._graph = build_graph(key)
            self._graph_key = key
            self._lints.clear()  # every file's diagnostics may depend on the graph
        return self._graph

    def check(self) -> tuple[Diagnostic, ...]:
        """Every file's diagnostics, sorted."""
        if self._last is not None:
            return self._last
        graph = self.graph()
        found: list[Diagnostic] = []
        for path, text in self.texts.items():
            cached = self._lints.get(path)
            if cached is None or cached[0] != text:
                cached = (text, lint(graph, path, parse(path, text)))
                self._lints[path] = cached
            found.extend(cached[1])
        self._lints = {path: self._lints[path] for path in self.texts}  # forget removed
        self._last = tuple(sorted(found))
        return self._last

    def importers(self, path: str) -> tuple[str, ...]:
        """The files that import *path*, directly or not, sorted (not *path* itself)."""
        graph = self.graph()
        reverse: dict[str, list[str]] = {}
        for source, targets in graph.imports.items():
            for target in targets:
                reverse.setdefault(target, []).append(source)
        found: set[str] = set()
        stack = [path]
        while stack:
            for source in reverse.get(stack.pop(), ()):
                if source not in found:
                    found.add(source)
                    stack.append(source)
        found.discard(path)
        return tuple(sorted(found))


def build_graph(
    files: tuple[tuple[str, tuple[tuple[tuple[str, ...], ...], Definitions]], ...],
) -> Graph:
    modules = {module_name(path): path for path, _ in files}
    graph = Graph(modules, {path: d for path, (_, d) in files}, {}, {})
    imports: dict[str, tuple[str, ...]] = {}
    for path, (candidates, _) in files:
        found = {graph.resolve(c) for c in candidates} - {None, path}
        imports[path] = tuple(sorted(p for p in found if p is not None))
    graph = attrs.evolve(graph, imports=imports)
    cycles = {
        path: shortest_cycle(imports, path)
        for component in strongly_connected(imports)
        if len(component) > 1
        for path in component
    }
    return attrs.evolve(graph, cycles=cycles)


def strongly_connected(graph: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    """Tarjan's algorithm, without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = graph[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def shortest_cycle(
    imports: Mapping[str, tuple[str, ...]], path: str
) -> tuple[str, ...]:
    """As `Analyzer.cycle`: a breadth-first search from *path* back to it."""
    came_from: dict[str, str] = {}
    queue = deque([path])
    while queue:
        node = queue.popleft()
        for target in imports[node]:
            if target == path:
                chain = [node]
                while chain[-1] != path:
                    chain.append(came_from[chain[-1]])
                return (*reversed(chain), path)
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    return ()


def lint(graph: Graph, path: str, summary: Summary) -> list[Diagnostic]:
    """As `Analyzer.lint`."""
    problems = list(summary.problems)
    for item in summary.imports:
        problems.extend(import_problems(graph, item))
    if cycle := graph.cycles.get(path):
        for item in summary.imports:
            if item.runtime and graph.resolve(item.candidates()) == cycle[1]:
                chain = " -> ".join(map(module_name, cycle))
                problems.append(
                    Problem(item.line, item.col, "R0401", f"import cycle: {chain}")
                )
                break
    return [
        Diagnostic(path, p.line, p.col, p.code, p.message)
        for p in sorted(set(problems))
    ]


def import_problems(graph: Graph, item: Import) -> list[Problem]:
    """As `analyze.import_problems`."""
    target = graph.modules.get(item.module)
    if target is None:
        top = item.module.partition(".")[0]
        if item.module.startswith(".") or top in graph.modules:
            return [
                Problem(item.line, item.col, "E0401", f"cannot import `{item.module}`")
            ]
        return []
    if item.name in ("", "*") or f"{item.module}.{item.name}" in graph.modules:
        return []
    definitions = graph.definitions[target]
    if definitions.open or item.name in definitions.names:
        return []
    message = f"`{item.module}` has no name `{item.name}`"
    return [Problem(item.line, item.col, "E0611", message)]
