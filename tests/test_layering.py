"""
The module layering of STYLE.md G3, enforced: lower layers never import higher ones.

Imports under `if TYPE_CHECKING:` are checked separately. They never execute, so they
cannot make a lower layer load a higher one, nor close an import cycle; they only name
types for the checkers. So they may leave their layer (upward or sideways), but only along
the edges `TYPE_ONLY` lists, each with the reason a module names that one's type: every
such seam stays visible here, and the same import made at run time (outside the `if`, or
in its `else:`) still fails `test_imports_follow_layers`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple


PACKAGE = Path(__file__).resolve().parent.parent / "picante"

# module -> the picante modules it may import (at run time or for type checking).
ALLOWED: dict[str, set[str]] = {
    "_errors": set(),
    "_store": {"_errors"},
    "_frames": {"_errors", "_store"},
    "_sync": {"_errors", "_store", "_frames"},
    "_runtime": {"_errors", "_store", "_frames", "_sync"},
    "_cycles": {"_errors", "_store", "_frames"},
    "_fetch": {"_errors", "_store", "_frames", "_cycles", "_runtime", "_sync"},
    "_handles": {"_errors", "_store", "_frames", "_runtime", "_fetch"},
    "_ingredients": {"_errors", "_store", "_frames", "_runtime", "_handles"},
    "_accumulate": {"_errors", "_store", "_frames", "_runtime", "_ingredients"},
    "_declare": {"_errors", "_store", "_handles", "_ingredients", "_accumulate"},
    "_fingerprints": set(),
    "_codecs": {"_errors", "_store", "_runtime", "_fingerprints"},
    "_format": {"_errors", "_store", "_runtime"},
    "_persist": {"_errors", "_store", "_runtime", "_codecs", "_format", "_accumulate"},
    "_events": {"_errors", "_store", "_runtime"},
    "_sweep": {"_errors", "_store", "_runtime"},
    "_gather": {"_frames", "_handles"},
    "_share": {"_codecs", "_errors", "_frames", "_runtime", "_store", "stores"},
    "debug": {"_errors", "_store", "_frames", "_runtime", "_events", "_accumulate", "stores"},
    "testing": {"_errors", "_store", "_runtime", "_accumulate", "debug"},
    # The stores know nothing of the engine: bytes in, bytes out.
    "stores": {"_errors"},
}

# module -> the higher modules it imports under `if TYPE_CHECKING:` only, to name their types.
TYPE_ONLY: dict[str, set[str]] = {
    # `spec_of(cls) -> DatabaseSpec`: the registry is declared above, read below.
    "_runtime": {"_declare"},
    "testing": {"_declare"},
    # `DatabaseSpec.codecs`: the spec holds what `codecs_of` builds for it.
    "_declare": {"_codecs"},
    # `debug.trace` wraps the handles of `DatabaseSpec.queries`, typed as they are.
    "debug": {"_ingredients"},
}


class Imports(NamedTuple):
    """The picante modules a source imports: when it runs, and for type checking only."""

    run: set[str]
    typing: set[str]


def imported_modules(source: str) -> Imports:
    """The picante modules *source* imports, by relative or absolute import."""
    tree = ast.parse(source)
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and _is_type_checking(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    found = Imports(set(), set())
    for node in ast.walk(tree):
        names: set[str] = set()
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level == 1:
                names.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("picante."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(
                alias.name.split(".")[1]
                for alias in node.names
                if alias.name.startswith("picante.")
            )
        (found.typing if id(node) in typing_only else found.run).update(names)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING`."""
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def imports_of(module: str) -> Imports:
    """What the module *module* of the package imports."""
    return imported_modules((PACKAGE / f"{module}.py").read_text())


def test_every_module_has_a_layer() -> None:
    """Each private module of the package is placed in the layering."""
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules - {"__main__"} == set(ALLOWED)


def test_imports_follow_layers() -> None:
    """No module imports one above it: data ← frames/runtime ← fetch ← ingredients ← declare."""
    violations = {
        module: sorted(imports_of(module).run - allowed) for module, allowed in ALLOWED.items()
    }
    assert {m: v for m, v in violations.items() if v} == {}


def test_type_only_imports_follow_their_edges() -> None:
    """Under `if TYPE_CHECKING:`, a module imports its layer's modules or a `TYPE_ONLY` edge."""
    violations = {
        module: sorted(imports_of(module).typing - allowed - TYPE_ONLY.get(module, set()))
        for module, allowed in ALLOWED.items()
    }
    assert {m: v for m, v in violations.items() if v} == {}


def test_type_only_edges_are_used() -> None:
    """Every `TYPE_ONLY` edge points upward and is used, so the table stays exact."""
    unused = {
        module: sorted(targets - imports_of(module).typing) for module, targets in TYPE_ONLY.items()
    }
    assert {m: v for m, v in unused.items() if v} == {}
    assert all(targets.isdisjoint(ALLOWED[m]) for m, targets in TYPE_ONLY.items())


def test_checker_sees_imports() -> None:
    """The import scanner itself finds relative imports (so the test above can fail)."""
    assert "_fetch" in imports_of("_handles").run


SOURCE = """
from __future__ import annotations

import typing
from typing import TYPE_CHECKING

from . import _store
from ._errors import UsageError

if TYPE_CHECKING:
    from ._declare import DatabaseSpec
    import picante.debug

    if sys.version_info >= (3, 12):
        from ._events import Event
else:
    from ._frames import ACTIVE

if typing.TYPE_CHECKING:
    from picante._persist import save


def later():
    from ._runtime import view_of
"""


def test_checker_separates_type_checking_imports() -> None:
    """Imports under `if TYPE_CHECKING:` (nested ones too) are type-only; the `else:` runs."""
    assert imported_modules(SOURCE) == Imports(
        run={"_store", "_errors", "_frames", "_runtime"},
        typing={"_declare", "debug", "_events", "_persist"},
    )
