"""
Code fingerprints: a hash of what a query's code is, to tell when it changed.

A query's fingerprint covers its function's instructions with their resolved arguments
(nested functions, lambdas and comprehensions included; line numbers and docstrings do
not count), its `version=`, and what the code refers to, followed recursively:

* a global name resolving to a function or class defined in *your own code* (see
  `_Rules.own_file`) is followed: a function by its code, its default values and its
  closure; a class by its bases, its methods, its simple class attributes and its attrs
  or dataclass fields (defaults, factories, converters);
* `functools.partial` objects, bound methods, `staticmethod`/`classmethod`/`property`
  and wrappers with a `__wrapped__` (`functools.wraps`, `functools.cache`) are followed
  to what they wrap;
* `self.helper(...)` in a query, where `helper` is a plain method of the database class
  (not an ingredient), is followed too, and so is `module.helper` for a module of your
  own;
* module-level constants (`None`, `bool`, `int`, `float`, `complex`, `str`, `bytes` and
  tuples and frozensets of them) count by value, compiled regular expressions by
  pattern and flags, enum members by name and value;
* anything else counts by what it is, not by what it holds: a function or class of the
  standard library or an installed package by its module and qualified name, a module by
  its name, another object by its type; a builtin or a name that does not resolve
  (defined later) by its name alone (which the instructions already hold).

Every part is a name, an opcode or a `repr` of a constant (sets sorted), in an order
fixed by the code itself: two processes compute the same fingerprint whatever their
`PYTHONHASHSEED` or where the project lives. The walk is bounded (`MAX_DEPTH`,
`MAX_NODES`), never calls user code (no `getattr` on modules or instances: their
`__dict__` is read) and is done once per database class (`codecs_of`).
"""

from __future__ import annotations

import dataclasses
import dis
import enum
import functools
import hashlib
import inspect
import itertools
import os
import re
import site
import sys
import sysconfig
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import attrs


if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Fingerprinter",
    "code_fingerprint",
    "constant_repr",
    "own_file",
]

MAX_DEPTH: Final = 16
"""How deep references are followed from a query; deeper ones count by name only."""
MAX_NODES: Final = 500
"""How many functions and classes one query's fingerprint follows at most."""

_SCALARS: Final = frozenset({type(None), bool, int, float, complex, str, bytes, type(Ellipsis)})
_GLOBAL_LOADS: Final = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_LOCAL_LOADS: Final = frozenset({"LOAD_FAST", "LOAD_DEREF", "LOAD_FAST_CHECK"})
_ATTR_LOADS: Final = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_DATACLASS_MADE: Final = frozenset(
    {
        "__init__",
        "__repr__",
        "__eq__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__hash__",
        "__setattr__",
        "__delattr__",
        "__getstate__",
        "__setstate__",
    }
)
"""The methods `dataclasses` writes (described by the fields instead)."""
_MISSING: Final = object()


# -- what is your own code ------------------------------------------------------------------


@functools.cache
def _library_roots() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The directories of the standard library, and those of installed packages (+ picante)."""
    stdlib: set[str] = set()
    packages: set[str] = set()
    # The base installation's too, for a virtual environment with system site-packages.
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    for paths in (sysconfig.get_paths(), sysconfig.get_paths(vars=base)):
        stdlib.update(paths[key] for key in ("stdlib", "platstdlib") if key in paths)
        packages.update(paths[key] for key in ("purelib", "platlib") if key in paths)
    getsitepackages = getattr(site, "getsitepackages", None)  # absent in old virtualenvs
    if getsitepackages is not None:
        packages.update(getsitepackages())
    getusersitepackages = getattr(site, "getusersitepackages", None)
    if getusersitepackages is not None:
        packages.add(getusersitepackages())
    packages.add(str(Path(__file__).parent))
    return tuple(sorted(map(_real, stdlib))), tuple(sorted(map(_real, packages)))


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)


@functools.lru_cache(maxsize=4096)
def _where(filename: str) -> str:
    """Where code from *filename* comes from: "own", "stdlib" or "package"."""
    if filename.startswith("<"):
        # Compiled from a string (`<string>`, `<stdin>`): yours; frozen: the stdlib's.
        return "stdlib" if filename.startswith("<frozen") else "own"
    path = _real(filename)
    stdlib, packages = _library_roots()
    parts = Path(path).parts
    if "site-packages" in parts or "dist-packages" in parts or _under(path, packages):
        # (Tested before the stdlib: site-packages usually lies inside it.)
        return "package"
    return "stdlib" if _under(path, stdlib) else "own"


def own_file(filename: str) -> bool:
    """
    Whether code from *filename* (a `co_filename` or a module's `__file__`) is your own.

    It is, unless it is frozen (`<frozen os>`), or lies under the standard library, a
    site-packages or dist-packages directory (`sysconfig` paths `stdlib`, `platstdlib`,
    `purelib`, `platlib`, `site.getsitepackages()`, the user site) or picante itself.
    Code compiled from a string (`<string>`, `<stdin>`) is your own.
    """
    return _where(filename) == "own"


def _top(module: object) -> str:
    return module.partition(".")[0] if type(module) is str else ""


class _Rules:
    """Which functions, classes and modules are your own, for the queries of *home*."""

    def __init__(self, home: str) -> None:
        # The top-level package of the database class: yours even when installed.
        self.home = home

    def own_module_name(self, name: object, filename: object) -> bool:
        top = _top(name)
        if top == "picante":
            return False
        if type(filename) is str:
            where = _where(filename)
            return where == "own" or (where == "package" and bool(top) and top == self.home)
        # No file: a built-in module, or one made at run time (yours, unless in the stdlib).
        return bool(top) and top not in sys.stdlib_module_names and top != "builtins"

    def own_function(self, fn: types.FunctionType) -> bool:
        return self.own_module_name(fn.__module__, fn.__code__.co_filename)

    def own_class(self, cls: type) -> bool:
        name = cls.__module__
        module = sys.modules.get(name)
        filename = None if module is None else vars(module).get("__file__")
        return self.own_module_name(name, filename)

    def own_module(self, module: types.ModuleType) -> bool:
        namespace = vars(module)
        return self.own_module_name(namespace.get("__name__"), namespace.get("__file__"))


# -- constants ------------------------------------------------------------------------------


def constant_repr(value: object, depth: int = 0) -> str | None:
    """
    The `repr` of a constant that counts by value, with frozensets sorted; else `None`.

    Constants: `None`, `bool`, `int`, `float`, `complex`, `str`, `bytes`, `...`, and
    tuples and frozensets of constants (exact types, not subclasses).
    """
    kind = type(value)
    if kind in _SCALARS:
        if kind is int:
            try:
                return repr(value)
            except ValueError:  # over `sys.get_int_max_str_digits()` digits
                return hex(value)  # type: ignore[arg-type]
        return repr(value)
    if depth > 64:
        return None
    if kind is tuple or kind is frozenset:
        items: list[str] = []
        for item in cast("Iterable[object]", value):
            text = constant_repr(item, depth + 1)
            if text is None:
                return None
            items.append(text)
        if kind is frozenset:
            return f"frozenset({{{', '.join(sorted(items))}}})" if items else "frozenset()"
        return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
    return None


def _argument_repr(argument: object) -> str:
    """An instruction's argument as text: as `repr`, but frozensets (`x in {...}`) sorted."""
    kind = type(argument)
    if kind is tuple or kind is frozenset or kind is int:
        text = constant_repr(argument)
        if text is not None:
            return text
    return repr(argument)


def _qualified(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{module}.{name}"


# -- the walk -------------------------------------------------------------------------------


@attrs.define(slots=True)
class _Scan:
    """What one code object (nested code included) says: its parts and what it refers to."""

    parts: list[str]
    globals: list[tuple[str, tuple[str, ...]]]
    """Global names loaded, each with the attribute names loaded right after it."""
    attributes: list[tuple[str, str]]
    """(local name, attribute) for each `local.attribute` load: `self.helper`."""


@attrs.define(slots=True)
class _Node:
    """A followed object: its own parts and the objects it refers to (label, object, self?)."""

    parts: list[str]
    children: list[tuple[str, object, bool]]


@attrs.define(slots=True)
class _Walk:
    """The state of one query's walk: what was followed already, in which order."""

    seen: dict[int, int] = attrs.field(factory=dict[int, int])
    count: int = 0
    out: list[str] = attrs.field(factory=list[str])


class Fingerprinter:
    """
    Code fingerprints of the queries of one database class *owner* (or of lone functions).

    What the queries reach is described once and shared (a helper called by ten queries
    is disassembled once); each query's fingerprint then walks that graph.
    """

    def __init__(self, owner: type | None = None, home: str | None = None) -> None:
        self.owner = owner
        if home is None:
            home = _top(owner.__module__) if owner is not None else ""
        self.rules = _Rules(home)
        # Objects are kept alive beside their ids, so an id is never reused meanwhile.
        self._scans: dict[int, tuple[types.CodeType, _Scan]] = {}
        self._nodes: dict[tuple[int, bool], tuple[object, _Node]] = {}

    def fingerprint(self, fn: Any, version: str | int | None) -> str:
        """Fingerprint query function *fn*: its code, `version`, and what it refers to."""
        hasher = hashlib.blake2b(digest_size=8)
        hasher.update(repr(version).encode())
        for part in self._scan(fn.__code__).parts:
            hasher.update(part.encode())
            hasher.update(b"\x00")
        # What the function refers to comes after, and only if there is any: a query that
        # refers to nothing but builtins keeps the fingerprint it had before there was any.
        walk = _Walk({id(fn): 0}, 1)
        node = self._function_node(fn, self_context=self.owner is not None, with_code=False)
        out = walk.out
        out.extend(node.parts)
        for label, child, context in node.children:
            self._emit(child, label, context, 1, walk)
        if out:
            hasher.update(b"\x01")
            for part in out:
                hasher.update(part.encode())
                hasher.update(b"\x00")
        return hasher.hexdigest()

    # -- code objects ---------------------------------------------------------------------

    def _scan(self, code: types.CodeType) -> _Scan:
        cached = self._scans.get(id(code))
        if cached is not None:
            return cached[1]
        scan = _Scan([], [], [])
        instructions = list(dis.get_instructions(code))
        for index, instruction in enumerate(instructions):
            scan.parts.append(instruction.opname)
            argument = instruction.argval
            if type(argument) is types.CodeType:
                nested = self._scan(argument)
                scan.parts.append("<code>")
                scan.parts.extend(nested.parts)
                scan.globals.extend(nested.globals)
                scan.attributes.extend(nested.attributes)
                continue
            scan.parts.append(_argument_repr(argument))
            if type(argument) is not str:
                continue
            if instruction.opname in _GLOBAL_LOADS:
                chain: list[str] = []
                for after in itertools.islice(instructions, index + 1, None):
                    if after.opname not in _ATTR_LOADS or type(after.argval) is not str:
                        break
                    chain.append(after.argval)
                scan.globals.append((argument, tuple(chain)))
            elif instruction.opname in _LOCAL_LOADS and index + 1 < len(instructions):
                after = instructions[index + 1]
                if after.opname in _ATTR_LOADS and type(after.argval) is str:
                    scan.attributes.append((argument, after.argval))
        self._scans[id(code)] = (code, scan)
        return scan

    # -- emitting a query's references ----------------------------------------------------

    def _emit(self, obj: object, label: str, context: bool, depth: int, walk: _Walk) -> None:
        out = walk.out
        mark = len(out)
        try:
            self._follow(obj, label, context, depth, walk)
        except Exception as error:  # noqa: BLE001 - an object unlike any expected
            # A fingerprint never makes `save` or `load` fail: what could not be read
            # counts by its type and the error's.
            del out[mark:]
            out.append(f"{label}=<unreadable {_qualified(type(obj))}: {type(error).__name__}>")

    def _follow(self, obj: object, label: str, context: bool, depth: int, walk: _Walk) -> None:
        out = walk.out
        leaf = self._leaf(obj)
        if leaf is not None:
            out.append(f"{label}={leaf}")
            return
        number = walk.seen.get(id(obj))
        if number is not None:
            out.append(f"{label}=<again {number}>")
            return
        if depth >= MAX_DEPTH or walk.count >= MAX_NODES:
            out.append(f"{label}=<not followed>")
            return
        walk.seen[id(obj)] = walk.count
        walk.count += 1
        node = self._node(obj, context)
        out.append(f"{label}=(")
        out.extend(node.parts)
        for child_label, child, child_context in node.children:
            self._emit(child, child_label, child_context, depth + 1, walk)
        out.append(")")

    def _leaf(self, obj: object) -> str | None:
        """What *obj* counts as if it is not followed; `None` if it is (see `_node`)."""
        kind = type(obj)
        constant = constant_repr(obj)
        if constant is not None:
            return f"constant {constant}"
        if kind is types.FunctionType:
            fn: types.FunctionType = obj  # type: ignore[assignment]
            if self.rules.own_function(fn) or _wrapped(fn) is not _MISSING:
                return None
            return f"external {_qualified(fn)}"
        if issubclass(kind, type):
            cls: type = obj  # type: ignore[assignment]
            if "__picante__" in vars(cls):
                # Its queries have fingerprints of their own; its plain methods are
                # followed from `self.method` instead.
                return f"database {cls.__qualname__}"
            return None if self.rules.own_class(cls) else f"external {_qualified(cls)}"
        if kind is types.ModuleType:
            return f"module {vars(obj).get('__name__')}"
        if kind in (functools.partial, types.MethodType, staticmethod, classmethod, property):
            return None
        if kind is re.Pattern:
            pattern: re.Pattern[Any] = obj  # type: ignore[assignment]
            return f"pattern {pattern.pattern!r} {pattern.flags}"
        if issubclass(kind, enum.Enum):
            member: enum.Enum = obj  # type: ignore[assignment]
            value = constant_repr(member.value)
            return f"enum {kind.__qualname__}.{member.name}" + (
                "" if value is None else f"={value}"
            )
        if kind in (types.GenericAlias, types.UnionType) or kind.__module__ == "typing":
            return f"typing {obj!r}"
        if self.rules.own_class(kind):
            return None
        if callable(obj) and _wrapped(obj) is not _MISSING:
            return None
        if kind is types.BuiltinFunctionType:
            return f"external {_qualified(obj)}"
        return f"object {_qualified(kind)}"

    def _node(self, obj: object, context: bool) -> _Node:
        key = (id(obj), context)
        cached = self._nodes.get(key)
        if cached is not None:
            return cached[1]
        kind = type(obj)
        if kind is types.FunctionType and self.rules.own_function(obj):  # type: ignore[arg-type]
            node = self._function_node(obj, self_context=context, with_code=True)
        elif issubclass(kind, type):
            node = self._class_node(obj)  # type: ignore[arg-type]
        elif kind is functools.partial:
            partial: functools.partial[Any] = obj  # type: ignore[assignment]
            node = _Node(["partial"], [("func", partial.func, False)])
            for index, argument in enumerate(partial.args):
                _value(node, f"arg {index}", argument)
            for name in sorted(partial.keywords):
                _value(node, f"keyword {name}", partial.keywords[name])
        elif kind is types.MethodType:
            method: types.MethodType = obj  # type: ignore[assignment]
            node = _Node(["method"], [("__func__", method.__func__, False)])
            if type(method.__self__) is not types.ModuleType:
                node.children.append(("__self__", method.__self__, False))
        elif kind is staticmethod or kind is classmethod:
            node = _Node([kind.__name__], [("__func__", obj.__func__, context)])  # type: ignore[attr-defined]
        elif kind is property:
            prop: property = obj  # type: ignore[assignment]
            node = _Node(["property"], [])
            for name, accessor in (("fget", prop.fget), ("fset", prop.fset), ("fdel", prop.fdel)):
                if accessor is not None:
                    node.children.append((name, accessor, context))
        elif self.rules.own_class(kind):
            # An instance of one of your classes: its class counts, not its state.
            node = _Node(["instance"], [("type", kind, False)])
        else:
            # A wrapper (`functools.cache`, a library's decorator): by what it wraps.
            name = _qualified(obj if kind is types.FunctionType else kind)
            node = _Node([f"wrapper {name}"], [("__wrapped__", _wrapped(obj), False)])
        self._nodes[key] = (obj, node)
        return node

    def _function_node(self, fn: Any, *, self_context: bool, with_code: bool) -> _Node:
        """
        A function: its code (unless *with_code* is false), defaults, closure, the globals
        it loads, what it wraps, and (if *self_context*: a query or a method reached from
        one through `self`) the plain methods of the database class it calls on `self`.
        """
        function: types.FunctionType = fn
        code = function.__code__
        scan = self._scan(code)
        node = _Node([], [])
        if with_code:
            node.parts.append("function")
            node.parts.extend(scan.parts)
        for index, default in enumerate(function.__defaults__ or ()):
            _value(node, f"default {index}", default)
        keyword_defaults = function.__kwdefaults__ or {}
        for name in sorted(keyword_defaults):
            _value(node, f"default {name}", keyword_defaults[name])
        for name, cell in zip(code.co_freevars, function.__closure__ or (), strict=False):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell: by name only
                continue
            _value(node, f"<cell {name}>", contents)
        namespace = function.__globals__
        labels: set[str] = set()
        for name, chain in scan.globals:
            if name.startswith("__") and name.endswith("__"):
                # `__file__`, `__name__`: where the module is, not what it does.
                continue
            target = namespace.get(name, _MISSING)
            if target is _MISSING:
                # A builtin, or a name defined later: its name counts, and the
                # instructions already hold it.
                continue
            label = name
            for attribute in chain:
                if type(target) is not types.ModuleType or not self.rules.own_module(target):
                    break
                found = vars(target).get(attribute, _MISSING)
                if found is _MISSING:
                    break
                target = found
                label += f".{attribute}"
            if label not in labels:
                labels.add(label)
                node.children.append((label, target, False))
        if self_context and self.owner is not None and code.co_argcount:
            self_name = code.co_varnames[0]
            for local, attribute in scan.attributes:
                label = f"self.{attribute}"
                if local != self_name or label in labels:
                    continue
                labels.add(label)
                try:
                    member = inspect.getattr_static(self.owner, attribute)
                except AttributeError:  # an instance attribute
                    continue
                if type(member) in (types.FunctionType, staticmethod, classmethod, property):
                    node.children.append((label, member, True))
        wrapped = _wrapped(function)
        if wrapped is not _MISSING:
            node.children.append(("__wrapped__", wrapped, False))
        return node

    def _class_node(self, cls: type) -> _Node:
        """A class: its bases, fields, methods and simple attributes, by name."""
        node = _Node(["class"], [])
        namespace = vars(cls)
        node.children.extend(("base", base, False) for base in cls.__bases__ if base is not object)
        made: Callable[[str, object], bool] = _made_by_nobody
        if attrs.has(cls):
            for field in attrs.fields(cls):
                node.parts.append(f"field {field.name}")
                default: object = field.default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    node.children.append((f"{field.name} factory", default.factory, False))  # type: ignore[attr-defined]
                elif default is not attrs.NOTHING:
                    _value(node, f"{field.name} default", default)
                if type(field.converter) is types.FunctionType:
                    converter: types.FunctionType = field.converter
                    if self.rules.own_function(converter):
                        node.children.append((f"{field.name} converter", converter, False))
            made = _made_by_attrs
        elif dataclasses.is_dataclass(cls):
            for data_field in dataclasses.fields(cls):
                node.parts.append(f"field {data_field.name}")
                if data_field.default is not dataclasses.MISSING:
                    _value(node, f"{data_field.name} default", data_field.default)
                if data_field.default_factory is not dataclasses.MISSING:
                    factory: object = data_field.default_factory
                    node.children.append((f"{data_field.name} factory", factory, False))
            made = _made_by_dataclasses
        for name in sorted(namespace):
            value: object = namespace[name]
            kind = type(value)
            function_like = kind in (types.FunctionType, staticmethod, classmethod, property)
            if made(name, value):
                continue
            if kind in (types.MemberDescriptorType, types.GetSetDescriptorType):
                continue  # a slot, or `__dict__`: a field, not behaviour
            if name.startswith("__") and name.endswith("__"):
                # Your dunder methods are behaviour; `__module__`, `__doc__`, `__slots__`
                # are not, nor the methods a library adds (attrs' `__setattr__`).
                library = type(value) is types.FunctionType and not self.rules.own_function(value)
                if function_like and not library:
                    node.children.append((name, value, False))
                continue
            if name.startswith("_") and name.endswith("_") and len(name) > 2:
                continue  # `_sunder_` names: enum's machinery
            if function_like or issubclass(kind, type) or kind is functools.partial:
                node.children.append((name, value, False))
                continue
            leaf = self._leaf(value)
            node.parts.append(f"{name}={leaf if leaf is not None else _qualified(kind)}")
        return node


def _value(node: _Node, label: str, value: object) -> None:
    """Add *value* to *node*: by value if a constant, else as a reference."""
    constant = constant_repr(value)
    if constant is not None:
        node.parts.append(f"{label}={constant}")
    else:
        node.children.append((label, value, False))


def _wrapped(obj: object) -> object:
    """What *obj* wraps (`__wrapped__`, read without running any code), or `_MISSING`."""
    try:
        return inspect.getattr_static(obj, "__wrapped__")
    except AttributeError:
        return _MISSING


def _made_by_nobody(name: str, value: object) -> bool:
    return False


def _made_by_attrs(name: str, value: object) -> bool:
    code = getattr(value, "__code__", None)
    return type(code) is types.CodeType and code.co_filename.startswith("<attrs generated")


def _made_by_dataclasses(name: str, value: object) -> bool:
    code = getattr(value, "__code__", None)
    return (
        name in _DATACLASS_MADE and type(code) is types.CodeType and code.co_filename == "<string>"
    )


def code_fingerprint(fn: Any, version: str | int | None, owner: type | None = None) -> str:
    """Fingerprint one query function (see the module docstring); `Fingerprinter` shares work."""
    home = _top(getattr(fn, "__module__", None)) if owner is None else None
    return Fingerprinter(owner, home).fingerprint(fn, version)
