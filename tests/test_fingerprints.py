"""
Code fingerprints that follow helpers, the default salt, canonical bytes and digests.

Helpers are tested by building the same module twice from source (`module_from`), once
per version of a helper, each into a fresh module object registered in `sys.modules`:
what a second process would import after an edit.
"""

from __future__ import annotations

import dataclasses
import dis
import hashlib
import itertools
import json
import math
import subprocess
import sys
import textwrap
import types
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import pytest
from cattrs.preconf.orjson import make_converter
from hypothesis import given, strategies as st

import picante
from picante import InternId
from picante._codecs import (
    VALUE_DIGEST_PREFIX,
    canonical_bytes,
    canonical_key_bytes,
    code_fingerprint,
    codecs_of,
    default_salt,
    record_key,
    value_digest,
)
from picante._fingerprints import MAX_DEPTH, Fingerprinter, own_file
from picante._persist import load_plan


if TYPE_CHECKING:
    from collections.abc import Iterator


ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count()


@pytest.fixture
def fresh() -> Iterator[Any]:
    """`fresh(source)`: a new module executed from *source*; removed from `sys.modules` after."""
    made: list[str] = []

    def build(source: str, filename: str = "<fingerprint test>") -> types.ModuleType:
        name = f"fingerprint_subject_{next(_names)}"
        module = types.ModuleType(name)
        sys.modules[name] = module
        made.append(name)
        exec(compile(textwrap.dedent(source), filename, "exec"), vars(module))
        return module

    yield build
    for name in made:
        sys.modules.pop(name, None)


def fingerprint_of(module: types.ModuleType, name: str = "query") -> str:
    """The code fingerprint of function *name* of *module*."""
    return code_fingerprint(getattr(module, name), None)


def query_fingerprints(cls: type) -> dict[str, str | None]:
    """Each query's code fingerprint, as the cache file records it."""
    return {name: codec.code for name, codec in codecs_of(cls).items() if codec.kind == "query"}


# -- what the fingerprint follows ----------------------------------------------------------


HELPER = """
def render(text):
    return {body}

def unrelated(text):
    return {other}

def query(text):
    return render(text)

def lone(text):
    return text.upper()
"""


def test_changed_helper_changes_the_callers_fingerprint_only(fresh: Any) -> None:
    """A helper's new body changes the fingerprint of a function that calls it, no other."""
    before = fresh(HELPER.format(body="'<p>' + text", other="1"))
    after = fresh(HELPER.format(body="'<p>' + text + '</p>'", other="1"))
    elsewhere = fresh(HELPER.format(body="'<p>' + text", other="2"))
    assert fingerprint_of(before) != fingerprint_of(after)
    assert fingerprint_of(before) == fingerprint_of(elsewhere)
    assert fingerprint_of(before, "lone") == fingerprint_of(after, "lone")


def test_helpers_are_followed_transitively(fresh: Any) -> None:
    """query -> outer -> inner: a change two calls away counts."""
    source = """
    def inner(x):
        return x + {n}

    def outer(x):
        return inner(x) * 2

    def query(x):
        return outer(x)
    """
    assert fingerprint_of(fresh(source.format(n=1))) != fingerprint_of(fresh(source.format(n=2)))
    assert fingerprint_of(fresh(source.format(n=1))) == fingerprint_of(fresh(source.format(n=1)))


def test_recursive_helpers_terminate_and_still_count(fresh: Any) -> None:
    """Mutually recursive helpers (a cycle) are walked once; an edit in the cycle counts."""
    source = """
    def even(n):
        return n == 0 or odd(n - 1)

    def odd(n):
        return n != {zero} and even(n - 1)

    def query(n):
        return even(n)
    """
    one = fingerprint_of(fresh(source.format(zero=0)))
    assert one == fingerprint_of(fresh(source.format(zero=0)))
    assert one != fingerprint_of(fresh(source.format(zero=1)))


def test_docstrings_comments_and_line_numbers_of_helpers_do_not_count(fresh: Any) -> None:
    """A helper that moved down (comments, blank lines) or gained a docstring: no change."""
    plain = fresh("def render(t):\n    return t * 2\n\ndef query(t):\n    return render(t)\n")
    moved = fresh(
        "# a comment\n\n\n\ndef render(t):\n    '''Twice *t*.'''\n    # why\n\n    return t * 2"
        "\n\n\ndef query(t):\n    return render(t)\n"
    )
    assert fingerprint_of(plain) == fingerprint_of(moved)


def test_where_the_project_lives_does_not_count(fresh: Any) -> None:
    """Two checkouts (other file names, other `__file__`) give the same fingerprint."""
    source = """
    __file__ = {path!r}
    def render(t):
        return __file__ is None or t

    def query(t):
        return render(t), __name__
    """
    here = fresh(source.format(path="/home/a/project/site.py"), "/home/a/project/site.py")
    there = fresh(source.format(path="/srv/b/checkout/site.py"), "/srv/b/checkout/site.py")
    assert fingerprint_of(here) == fingerprint_of(there)


@pytest.mark.parametrize(
    ("constant", "other"),
    [
        pytest.param("3", "4", id="int"),
        pytest.param("'a'", "'b'", id="str"),
        pytest.param("(1, ('x', None))", "(1, ('y', None))", id="tuple"),
        pytest.param("frozenset({'a', 'b'})", "frozenset({'a', 'c'})", id="frozenset"),
        pytest.param("2.5", "-0.0", id="float"),
        pytest.param("b'x'", "b'y'", id="bytes"),
    ],
)
def test_module_constants_count_by_value(fresh: Any, constant: str, other: str) -> None:
    """A module-level constant a query reads counts by its value."""
    source = "LIMIT = {value}\n\ndef query(x):\n    return (x, LIMIT)\n"
    one = fingerprint_of(fresh(source.format(value=constant)))
    assert one == fingerprint_of(fresh(source.format(value=constant)))
    assert one != fingerprint_of(fresh(source.format(value=other)))


def test_mutable_module_state_counts_by_type_only(fresh: Any) -> None:
    """A module-level list or dict (state that may change at run time) counts by type."""
    source = "SEEN = {value}\n\ndef query(x):\n    return SEEN\n"
    assert fingerprint_of(fresh(source.format(value="[1]"))) == fingerprint_of(
        fresh(source.format(value="[2, 3]"))
    )
    assert fingerprint_of(fresh(source.format(value="[1]"))) != fingerprint_of(
        fresh(source.format(value="{}"))
    )


def test_unresolved_and_builtin_names_count_by_name(fresh: Any) -> None:
    """A builtin or a name defined later counts by its name: no error, same as before."""
    source = "def query(x):\n    return {name}(x)\n"
    builtin = fresh(source.format(name="len"))
    missing = fresh(source.format(name="defined_later"))
    assert fingerprint_of(builtin) == legacy_fingerprint(builtin.query)
    assert fingerprint_of(missing) == legacy_fingerprint(missing.query)
    assert fingerprint_of(missing) != fingerprint_of(fresh(source.format(name="defined_latr")))
    # Defined once the module is complete: then followed.
    missing.defined_later = lambda x: x
    assert fingerprint_of(missing) != legacy_fingerprint(missing.query)


def legacy_fingerprint(fn: Any) -> str:
    """The code fingerprint before helpers were followed (picante 0.1's `code_fingerprint`)."""

    def parts(code: types.CodeType) -> Iterator[str]:
        for instruction in dis.get_instructions(code):
            yield instruction.opname
            if isinstance(instruction.argval, types.CodeType):
                yield "<code>"
                yield from parts(instruction.argval)
            else:
                yield repr(instruction.argval)

    hasher = hashlib.blake2b(digest_size=8)
    hasher.update(repr(None).encode())
    for part in parts(fn.__code__):
        hasher.update(part.encode() + b"\x00")
    return hasher.hexdigest()


def test_library_code_is_named_not_followed(fresh: Any) -> None:
    """A stdlib or installed function counts by module and name: a swapped import counts."""
    source = "from {module} import dumps\n\ndef query(x):\n    return dumps(x)\n"
    json_dumps = fingerprint_of(fresh(source.format(module="json")))
    assert json_dumps != fingerprint_of(fresh(source.format(module="pickle")))
    assert json_dumps != fingerprint_of(fresh(source.format(module="orjson")))
    walked = fresh(source.format(module="json"))
    fingerprinter = Fingerprinter(home="")
    fingerprinter.fingerprint(walked.query, None)
    # json.dumps' code was never disassembled: only the query's own.
    assert [code.co_name for code, _ in fingerprinter._scans.values()] == ["query"]


def test_own_file_rule() -> None:
    """Your files are yours; the stdlib, site-packages and picante are not."""
    assert own_file(__file__)
    assert own_file(str(ROOT / "examples" / "site.py"))
    assert own_file("<string>")
    assert not own_file(json.__file__)
    assert not own_file(attrs.__file__)
    assert not own_file(orjson.__file__)
    assert not own_file(picante.__file__)
    assert not own_file("<frozen os>")
    assert not own_file("/opt/somewhere/lib/python3/dist-packages/thing/mod.py")
    assert not own_file("/home/me/env/lib/python3.11/site-packages/thing/mod.py")


def test_own_package_is_followed_even_when_installed() -> None:
    """Code installed into site-packages is followed if it is the query's own package."""
    fn = json.dumps
    home = Fingerprinter(home="json")
    assert not home.rules.own_function(fn)  # the stdlib: never
    package = attrs.define.__module__.partition(".")[0]  # "attr"
    assert not Fingerprinter(home="").rules.own_function(attrs.define)
    assert Fingerprinter(home=package).rules.own_function(attrs.define)


CLASSY = """
import attrs

class Renderer:
    marker = {marker}

    def render(self, text):
        return self.marker + text + {suffix}

@attrs.frozen
class Post:
    title: str
    tags: tuple = {tags}

def query(text):
    return Renderer().render(text), Post(text)
"""


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"marker": "'+'"}, id="class-attribute"),
        pytest.param({"suffix": "'!'"}, id="method-body"),
        pytest.param({"tags": "('b',)"}, id="attrs-default"),
    ],
)
def test_classes_count_by_methods_attributes_and_fields(fresh: Any, change: dict[str, str]) -> None:
    """A referenced class counts by its methods' code, constant attributes, field defaults."""
    values = {"marker": "'*'", "suffix": "''", "tags": "('a',)"}
    one = fingerprint_of(fresh(CLASSY.format(**values)))
    assert one == fingerprint_of(fresh(CLASSY.format(**values)))
    assert one != fingerprint_of(fresh(CLASSY.format(**(values | change))))


def test_dataclass_fields_count_and_its_generated_methods_are_not_walked(fresh: Any) -> None:
    """A dataclass counts by its fields' defaults; `dataclasses`' own code is not walked."""
    source = """
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Box:
        width: int = {width}

    def query():
        return Box()
    """
    assert fingerprint_of(fresh(source.format(width=1))) != fingerprint_of(
        fresh(source.format(width=2))
    )
    module = fresh(source.format(width=1))
    fingerprinter = Fingerprinter(home="")
    fingerprinter.fingerprint(module.query, None)
    assert [code.co_name for code, _ in fingerprinter._scans.values()] == ["query"]
    assert dataclasses.is_dataclass(module.Box)


@pytest.mark.parametrize(
    ("wrapping", "call"),
    [
        pytest.param(
            "import functools\nhelper = functools.partial(render, 2)", "helper", id="partial"
        ),
        pytest.param("import functools\nhelper = functools.cache(render)", "helper", id="cache"),
        pytest.param(
            "import functools\n"
            "def deco(fn):\n"
            "    @functools.wraps(fn)\n"
            "    def wrapper(*args):\n"
            "        return fn(*args)\n"
            "    return wrapper\n"
            "helper = deco(render)",
            "helper",
            id="decorator",
        ),
        pytest.param("helper = lambda *a: render(*a)", "helper", id="lambda"),
        pytest.param("", "(lambda *a: render(*a))", id="lambda-in-query"),
        pytest.param(
            "def make(fn):\n    def inner(*a):\n        return fn(*a)\n    return inner\n"
            "helper = make(render)",
            "helper",
            id="closure",
        ),
        pytest.param(
            "class Box:\n    helper = staticmethod(render)\nhelper = Box.helper",
            "helper",
            id="staticmethod",
        ),
        pytest.param(
            "class Box:\n    def helper(self, *a):\n        return render(*a)\n"
            "helper = Box().helper",
            "helper",
            id="bound-method",
        ),
    ],
)
def test_wrapped_and_nested_helpers_are_followed(fresh: Any, wrapping: str, call: str) -> None:
    """partial, functools.cache, functools.wraps, lambdas, closures: to the wrapped helper."""
    source = "def render(*a):\n    return {body}\n{wrapping}\ndef query(x):\n    return {call}(x)\n"
    one = fingerprint_of(fresh(source.format(body="a", wrapping=wrapping, call=call)))
    two = fingerprint_of(fresh(source.format(body="a[::-1]", wrapping=wrapping, call=call)))
    assert one != two


def test_default_arguments_count_by_value(fresh: Any) -> None:
    """A helper's default values that are constants count by value; a default helper too."""
    source = """
    def shout(t):
        return t.upper() + {mark}

    def render(t, sep={sep}, fn=shout, *, end={end}):
        return fn(t) + sep + end

    def query(t):
        return render(t)
    """
    values = {"mark": "'!'", "sep": "'-'", "end": "'.'"}
    one = fingerprint_of(fresh(source.format(**values)))
    for change in ({"sep": "'+'"}, {"end": "';'"}, {"mark": "'?'"}):
        assert one != fingerprint_of(fresh(source.format(**(values | change))))


def test_closure_constants_and_functions_count(fresh: Any) -> None:
    """A closure's cells: a constant by value, a function of yours by its code."""
    source = """
    def make(sep):
        def join(items):
            return sep.join(items)
        return join

    helper = make({sep})

    def query(items):
        return helper(items)
    """
    assert fingerprint_of(fresh(source.format(sep="', '"))) != fingerprint_of(
        fresh(source.format(sep="'; '"))
    )


def test_module_attribute_of_your_module_is_followed(fresh: Any) -> None:
    """`helpers.render(...)` follows `render` in your module `helpers`."""
    helpers_one = fresh("def render(t):\n    return t\n")
    helpers_two = fresh("def render(t):\n    return t * 2\n")
    source = "import {name} as helpers\n\ndef query(t):\n    return helpers.render(t)\n"
    one = fresh(source.format(name=helpers_one.__name__))
    two = fresh(source.format(name=helpers_two.__name__))
    assert fingerprint_of(one) != fingerprint_of(two)


def test_enum_members_and_patterns_count_by_value(fresh: Any) -> None:
    """An enum member by its value, a compiled regular expression by pattern and flags."""
    source = """
    import enum
    import re

    class Color(enum.Enum):
        RED = {red}

    WORD = re.compile({pattern})

    def query(t):
        return Color.RED, WORD.findall(t)
    """
    values = {"red": "'red'", "pattern": "r'\\w+'"}
    one = fingerprint_of(fresh(source.format(**values)))
    assert one == fingerprint_of(fresh(source.format(**values)))
    assert one != fingerprint_of(fresh(source.format(**(values | {"red": "'crimson'"}))))
    assert one != fingerprint_of(fresh(source.format(**(values | {"pattern": "r'\\d+'"}))))


def test_walk_is_bounded_in_depth(fresh: Any) -> None:
    """A chain of helpers deeper than MAX_DEPTH: changes past the bound do not count."""
    depth = MAX_DEPTH + 4
    lines = [f"def f{i}(x):\n    return f{i + 1}(x)\n" for i in range(depth)]
    source = (
        "\n".join(lines) + "def f{n}(x):\n    return {value}\n\ndef query(x):\n    return f0(x)\n"
    )
    deep_one = fingerprint_of(fresh(source.format(n=depth, value="x")))
    deep_two = fingerprint_of(fresh(source.format(n=depth, value="-x")))
    assert deep_one == deep_two
    shallow = "def f0(x):\n    return {value}\n\ndef query(x):\n    return f0(x)\n"
    assert fingerprint_of(fresh(shallow.format(value="x"))) != fingerprint_of(
        fresh(shallow.format(value="-x"))
    )


def test_an_unreadable_reference_never_fails_a_fingerprint(
    fresh: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object the walk cannot read counts by type and error; the rest still counts."""
    source = "class Box:\n    pass\n\ndef render(x):\n    return {body}\n\n"
    source += "def query(x):\n    return Box, render(x)\n"

    def broken(self: Fingerprinter, cls: type) -> None:
        raise RuntimeError(cls)

    monkeypatch.setattr(Fingerprinter, "_class_node", broken)
    one = fingerprint_of(fresh(source.format(body="x")))
    assert one == fingerprint_of(fresh(source.format(body="x")))
    assert one != fingerprint_of(fresh(source.format(body="-x")))


def test_frozenset_constants_in_code_do_not_depend_on_the_hash_seed() -> None:
    """`x in {...}` compiles to a frozenset constant, written sorted: same in every process."""
    script = textwrap.dedent(
        """
        from picante._codecs import code_fingerprint
        def query(x):
            return x in {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}
        print(code_fingerprint(query, None))
        """
    )
    outputs = {run_python(script, seed) for seed in ("1", "2", "3")}
    assert len(outputs) == 1


DATABASE = """
import picante

def render(text: str) -> str:
    return {render}

def shout(text: str) -> str:
    return text.upper()

@picante.database(name="Blog")
class Blog:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def text(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def page(self, path: str) -> str:
        self.log.append(f"page({{path!r}})")
        return render(await self.text(path))

    @picante.query
    async def title(self, path: str) -> str:
        self.log.append(f"title({{path!r}})")
        return shout(await self.text(path))

    @picante.query
    async def size(self, path: str) -> int:
        self.log.append(f"size({{path!r}})")
        return len(await self.page(path))

    @picante.query
    async def summary(self, path: str) -> str:
        self.log.append(f"summary({{path!r}})")
        return self.cut(await self.text(path))

    def cut(self, text: str) -> str:
        return text[:{cut}]
"""


async def test_changed_helper_makes_exactly_its_callers_stale(
    fresh: Any, tmp_path: Path, log: list[str]
) -> None:
    """A new `render()` makes `page` stale on load, nothing else; an equal result cuts off."""
    path = tmp_path / "blog.cache"
    first = fresh(DATABASE.format(render="'<p>' + text + '</p>'", cut=3)).Blog(log)
    first.text.set("a", " hello ")
    assert [await first.size("a"), await first.title("a")] == [14, " HELLO "]
    assert await first.summary("a") == " he"
    await picante.save(first, path)
    log.clear()

    # The same text, read by a new `render()` that gives the same page for it.
    changed = fresh(DATABASE.format(render="'<p>' + text.lstrip('!') + '</p>'", cut=3)).Blog
    assert load_plan(path, changed) == {
        "text": ("kept", ""),
        "page": ("stale", "code changed: its memos re-execute on first use"),
        "size": ("kept", ""),
        "title": ("kept", ""),
        "summary": ("kept", ""),
    }
    second = changed(log)
    assert await picante.load(second, path) is True
    assert [await second.size("a"), await second.title("a")] == [14, " HELLO "]
    assert await second.summary("a") == " he"
    assert log == ["page('a')"]  # re-executed; the same page: `size` stays valid


async def test_changed_database_method_makes_its_callers_stale(
    fresh: Any, tmp_path: Path, log: list[str]
) -> None:
    """A plain method of the database class called as `self.cut()` is followed too."""
    path = tmp_path / "blog.cache"
    first = fresh(DATABASE.format(render="text", cut=3)).Blog(log)
    first.text.set("a", "hello")
    await first.summary("a")
    await first.size("a")
    await picante.save(first, path)
    changed = fresh(DATABASE.format(render="text", cut=4)).Blog
    plan = load_plan(path, changed)
    assert {name for name, (verdict, _) in plan.items() if verdict == "stale"} == {"summary"}


def test_queries_of_one_class_do_not_cover_each_other(fresh: Any) -> None:
    """Naming the database class in a query does not make it cover the class's code."""
    source = DATABASE.replace(
        "return shout(await self.text(path))", "return shout(await self.text(path)) + Blog.__name__"
    )
    one = query_fingerprints(fresh(source.format(render="text", cut=3)).Blog)
    two = query_fingerprints(fresh(source.format(render="text + '!'", cut=4)).Blog)
    assert {name for name in one if one[name] != two[name]} == {"page", "summary"}


def test_fingerprints_are_the_same_in_every_process() -> None:
    """Fingerprints of queries that reach sets, classes, enums, wrappers: seed-independent."""
    from tests.fingerprint_subjects import fingerprints

    script = (
        "import json\nfrom tests.fingerprint_subjects import fingerprints\n"
        "print(json.dumps(fingerprints(), sort_keys=True))"
    )
    here = json.dumps(fingerprints(), sort_keys=True)
    assert {run_python(script, "1"), run_python(script, "2")} == {here}


def run_python(script: str, seed: str) -> str:
    """Run *script* in a new Python with `PYTHONHASHSEED` *seed*; its stripped output."""
    ran = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    return ran.stdout.strip()


def test_fingerprints_are_computed_once_per_class() -> None:
    """`codecs_of` caches them: a second call walks nothing."""
    from tests.fingerprint_subjects import Subjects

    first = codecs_of(Subjects)
    assert codecs_of(Subjects) is first
    assert first["everything"].code != first["plain"].code


# -- the default salt ------------------------------------------------------------------------


def test_default_salt_names_python_and_the_libraries() -> None:
    """Python's implementation and minor version, and the versions of the four libraries."""
    expected = "; ".join(
        [
            f"{sys.implementation.name} {sys.version_info[0]}.{sys.version_info[1]}",
            *(f"{name} {version(name)}" for name in ("picante", "attrs", "cattrs", "orjson")),
        ]
    )
    assert default_salt() == expected


# -- canonical bytes and digests ----------------------------------------------------------------


@attrs.frozen
class Tagged:
    name: str
    tags: frozenset[str]


@picante.database
class Values:
    labels = picante.interned(str)

    @picante.query
    async def words(self, key: frozenset[str]) -> frozenset[str]:
        raise NotImplementedError

    @picante.query
    async def tagged(self, key: str) -> Tagged:
        raise NotImplementedError

    @picante.query
    async def counts(self, key: str) -> dict[str, set[int]]:
        raise NotImplementedError

    @picante.query
    async def numbers(self, key: int) -> tuple[float, ...]:
        raise NotImplementedError

    @picante.query
    async def anything(self, key: str) -> Any:
        raise NotImplementedError

    @picante.query(persist=False)
    async def opaque(self, key: str) -> str:
        raise NotImplementedError

    @picante.query
    async def label(self, key: InternId) -> str:
        raise NotImplementedError

    @picante.query
    async def label_id(self, key: str) -> InternId:
        raise NotImplementedError


ENCODE = """
import attrs
import orjson
import picante
from picante._codecs import canonical_bytes, codecs_of

@attrs.frozen
class Tagged:
    name: str
    tags: frozenset[str]

@picante.database
class Values:
    @picante.query
    async def tagged(self, key: str) -> Tagged:
        raise NotImplementedError

codec = codecs_of(Values)["tagged"]
value = Tagged("x", frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}))
print(orjson.dumps(codec.dump_value(value)).decode())
print(canonical_bytes(codec, value).decode())
"""


def test_set_bytes_depend_on_the_hash_seed_and_canonical_bytes_do_not() -> None:
    """The cache file writes a set in hash order; canonical bytes are the same everywhere."""
    runs = [run_python(ENCODE, seed).splitlines() for seed in ("1", "2", "3")]
    assert len({file_bytes for file_bytes, _ in runs}) > 1  # the cache file's encoding
    assert {canonical for _, canonical in runs} == {
        '{"name":"x","tags":["alpha","beta","delta","epsilon","gamma","zeta"]}'
    }


@given(st.lists(st.text(), unique=True))
def test_canonical_bytes_of_a_set_ignore_the_order_it_was_built_in(items: list[str]) -> None:
    """A set built forwards or backwards: the same bytes, sorted."""
    codec = codecs_of(Values)["words"]
    forwards = frozenset(items)
    backwards = frozenset(reversed(items))
    encoded = canonical_bytes(codec, forwards)
    assert encoded is not None
    assert encoded == canonical_bytes(codec, backwards)
    assert orjson.loads(encoded) == sorted(items, key=orjson.dumps)
    assert canonical_key_bytes(codec, (forwards,)) == canonical_key_bytes(codec, (backwards,))


@given(st.dictionaries(st.text(), st.sets(st.integers(-(2**63), 2**63 - 1)), min_size=2))
def test_canonical_bytes_sort_dict_keys(entries: dict[str, set[int]]) -> None:
    """Two equal dicts built in other orders: the same canonical bytes (not the file's)."""
    codec = codecs_of(Values)["counts"]
    backwards = dict(reversed(entries.items()))
    assert canonical_bytes(codec, entries) == canonical_bytes(codec, backwards)
    assert orjson.dumps(codec.dump_value(entries)) != orjson.dumps(codec.dump_value(backwards))


values_of_tagged = st.builds(Tagged, st.text(max_size=5), st.frozensets(st.text(max_size=3)))


@given(values_of_tagged, values_of_tagged)
def test_digests_differ_when_values_differ(one: Tagged, two: Tagged) -> None:
    """Equal values, equal digests; different values, different digests."""
    codec = codecs_of(Values)["tagged"]
    assert (value_digest(codec, one) == value_digest(codec, two)) == (one == two)


def test_value_digest_is_sha256_of_prefix_and_canonical_bytes() -> None:
    """32 bytes: SHA-256 over a domain prefix and the canonical bytes."""
    codec = codecs_of(Values)["numbers"]
    encoded = canonical_bytes(codec, (1.5, -0.0))
    assert encoded == b"[1.5,-0.0]"
    expected = hashlib.sha256(b"picante value digest 1\x00" + encoded).digest()
    assert value_digest(codec, (1.5, -0.0)) == expected
    assert VALUE_DIGEST_PREFIX == b"picante value digest 1\x00"
    assert value_digest(codec, (1.5, 0.0)) != expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("numbers", (math.nan,), id="nan"),
        pytest.param("numbers", (math.inf,), id="infinity"),
        pytest.param("numbers", (1,), id="not-the-annotated-type"),
        pytest.param("anything", {1, 2}, id="would-not-load-back"),
        pytest.param("tagged", Tagged("x", frozenset({1})), id="wrong-member-type"),
        pytest.param("opaque", "text", id="persist-false"),
        pytest.param("label_id", 3, id="intern-id-value"),
    ],
)
def test_values_that_are_not_shareable_have_no_bytes(name: str, value: object) -> None:
    """What the cache file would refuse, `persist=False`, interned ids: `None`."""
    codec = codecs_of(Values)[name]
    assert canonical_bytes(codec, value) is None
    assert value_digest(codec, value) is None


def test_keys_that_are_not_shareable_have_no_bytes() -> None:
    """A key of interned ids is process-local: `None`; a `persist=False` query's key is not."""
    codecs = codecs_of(Values)
    assert canonical_key_bytes(codecs["label"], (InternId(1),)) is None
    assert canonical_key_bytes(codecs["opaque"], ("k",)) == b'["k"]'
    assert canonical_key_bytes(codecs["numbers"], ("one",)) is None


def test_canonical_bytes_use_the_databases_converter() -> None:
    """A converter of your own (its hooks) encodes canonical bytes too, sets still sorted."""
    converter = make_converter()
    converter.register_unstructure_hook(complex, lambda z: [z.real, z.imag])
    converter.register_structure_hook(complex, lambda raw, _: complex(*raw))

    @picante.database(converter=converter)
    class Waves:
        @picante.query
        async def roots(self, n: int) -> frozenset[complex]:
            raise NotImplementedError

    codec = codecs_of(Waves)["roots"]
    assert canonical_bytes(codec, frozenset({2j, 1 + 0j})) == b"[[0.0,2.0],[1.0,0.0]]"


async def test_nothing_canonical_is_built_unless_asked(tmp_path: Path) -> None:
    """Saving and loading never build the canonical converter or dumpers (not on any path)."""

    @picante.database
    class Lazy:
        @picante.input
        async def word(self, key: str) -> frozenset[str]:
            raise NotImplementedError

        @picante.query
        async def size(self, key: str) -> int:
            return len(await self.word(key))

    db = Lazy()
    db.word.set("k", frozenset({"a"}))
    assert await db.size("k") == 1
    await picante.save(db, tmp_path / "lazy.cache")
    assert await picante.load(Lazy(), tmp_path / "lazy.cache")
    codecs = codecs_of(Lazy)
    assert all(codec.canonical_dumps is None for codec in codecs.values())
    assert codecs["size"].canonical is not None
    assert codecs["size"].canonical.converter is None


# -- record keys ------------------------------------------------------------------------------


FIELDS = ("format", "salt", "database", "query", "schema", "code", "key")


def key_of(fields: tuple[Any, ...]) -> bytes:
    return record_key(**dict(zip(FIELDS, fields, strict=True)))


def test_record_key_is_16_bytes_of_length_prefixed_fields() -> None:
    """BLAKE2b-128 over a prefix and each field's length and bytes."""
    fields = (1, "salt", "app.Blog", "page", "abcd", "ef01", b'["a"]')
    hasher = hashlib.blake2b(b"picante record key 1\x00", digest_size=16)
    for field in ("1", "salt", "app.Blog", "page", "abcd", "ef01", b'["a"]'):
        data = field.encode() if isinstance(field, str) else field
        hasher.update(len(data).to_bytes(8, "big") + data)
    assert key_of(fields) == hasher.digest()
    assert len(key_of(fields)) == 16


def test_record_key_fields_do_not_run_into_each_other() -> None:
    """Moving bytes from one field to the next gives another key."""
    base = (1, "s", "ab", "c", "x", "y", b"k")
    shifted = (1, "s", "a", "bc", "x", "y", b"k")
    assert key_of(base) != key_of(shifted)
    assert key_of((1, "", "", "", "", "", b"")) != key_of((1, "", "", "", "", "", b"\x00"))


text_or_bytes = st.one_of(st.text(max_size=4), st.binary(max_size=4))
field_tuples = st.tuples(
    st.integers(0, 3),
    text_or_bytes,
    st.text(max_size=4),
    st.text(max_size=4),
    st.text(max_size=4),
    st.text(max_size=4),
    st.binary(max_size=4),
)


@given(field_tuples, field_tuples)
def test_record_keys_differ_when_fields_differ(one: tuple[Any, ...], two: tuple[Any, ...]) -> None:
    """Two tuples of fields collide only if they are the same (salt as text or UTF-8)."""

    def normal(fields: tuple[Any, ...]) -> tuple[Any, ...]:
        salt = fields[1]
        return (fields[0], salt.encode() if isinstance(salt, str) else salt, *fields[2:])

    assert (key_of(one) == key_of(two)) == (normal(one) == normal(two))
