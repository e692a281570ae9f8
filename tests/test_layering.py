"""The module layering of STYLE.md G3, enforced: lower layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path


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


def imported_modules(path: Path) -> set[str]:
    """The picante modules *path* imports, by relative or absolute import."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("picante."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.split(".")[1]
                for alias in node.names
                if alias.name.startswith("picante.")
            )
    return found


def test_every_module_has_a_layer() -> None:
    """Each private module of the package is placed in the layering."""
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules - {"__main__"} == set(ALLOWED)


def test_imports_follow_layers() -> None:
    """No module imports one above it: data ← frames/runtime ← fetch ← ingredients ← declare."""
    violations = {
        module: sorted(imported_modules(PACKAGE / f"{module}.py") - allowed)
        for module, allowed in ALLOWED.items()
    }
    assert {m: v for m, v in violations.items() if v} == {}


def test_checker_sees_imports() -> None:
    """The import scanner itself finds relative imports (so the test above can fail)."""
    assert "_fetch" in imported_modules(PACKAGE / "_handles.py")
