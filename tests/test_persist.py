"""
Cache files: `picante.save` and `picante.load` round trips, the incremental log and its
compaction, code and schema fingerprints, corrupt files, size caps, and
`python -m picante inspect`.

This module does not use `from __future__ import annotations`: the database classes built
by `site_class` annotate their ingredients with the factory's arguments (`-> count_type`),
which picante resolves with `typing.get_type_hints`, and that only sees module globals
when annotations are strings.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from cattrs.preconf.orjson import make_converter

import picante
from picante import CacheError, LimitExceededError, MissingInputError, UsageError
from picante.__main__ import main
from picante._codecs import code_fingerprint
from picante._store import EVICTED


ROOT = Path(__file__).resolve().parent.parent


def files_in(directory: Path) -> list[Path]:
    """The files in *directory*, sorted."""
    return sorted(directory.iterdir())


def log_of(path: Path) -> Path:
    """The incremental log next to the cache file *path*."""
    return path.with_name(path.name + ".log")


def database_name(cls: type) -> str:
    """The name a cache file records for database class *cls*."""
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the main database ---------------------------------------------------------------------


@picante.database
class Site:
    """Sources, their word counts, parities and labels; tags interned."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    tags = picante.interned(str)

    @picante.input
    async def source(self, path: str) -> str: ...

    @picante.query
    async def words(self, path: str) -> int:
        self.log.append(f"words({path!r})")
        return len((await self.source(path)).split())

    @picante.query
    async def parity(self, path: str) -> int:
        self.log.append(f"parity({path!r})")
        return await self.words(path) % 2

    @picante.query
    async def label(self, path: str) -> str:
        self.log.append(f"label({path!r})")
        return "odd" if await self.parity(path) else "even"

    @picante.query
    async def shout(self, path: str) -> str:
        self.log.append(f"shout({path!r})")
        return (await self.source(path)).upper()

    @picante.query
    async def strict(self, path: str) -> int:
        self.log.append(f"strict({path!r})")
        words = await self.words(path)
        if not words:
            raise ValueError(f"{path} is empty")
        return words


@picante.database
class Other:
    """Another database class: its cache files are not `Site`'s."""

    @picante.input
    async def source(self, path: str) -> str: ...


async def filled_site(log: list[str]) -> Site:
    """A `Site` with two sources, two tags, and every label computed."""
    db = Site(log)
    db.source.set("a.md", "one two")
    db.source.set("b.md", "three")
    db.tags.intern("draft")
    db.tags.intern("post")
    assert [await db.label("a.md"), await db.label("b.md")] == ["even", "odd"]
    log.clear()
    return db


async def loaded_site(log: list[str], path: Path) -> Site:
    """A new `Site` loaded from *path*."""
    db = Site(log)
    assert await picante.load(db, path) is True
    return db


# -- round trips and the log ----------------------------------------------------------------


async def test_round_trip_restores_everything_and_reuses_every_memo(
    log: list[str], tmp_path: Path
) -> None:
    """A fresh database loaded from a save has its inputs, tags, revision and memos."""
    path = tmp_path / "site.cache"
    db = await filled_site(log)
    ids = [db.tags.intern("draft"), db.tags.intern("post")]
    await picante.save(db, path)

    fresh = await loaded_site(log, path)
    assert picante.revision(fresh) == picante.revision(db) == 2
    assert (fresh.source.get("a.md"), fresh.source.get("b.md")) == ("one two", "three")
    assert len(fresh.tags) == 2
    assert [fresh.tags.lookup(i) for i in ids] == ["draft", "post"]
    assert [fresh.tags.intern("draft"), fresh.tags.intern("post")] == ids
    assert fresh.tags.intern("new") == 2
    assert [await fresh.label("a.md"), await fresh.label("b.md")] == ["even", "odd"]
    assert [await fresh.words("a.md"), await fresh.parity("b.md")] == [2, 1]
    assert log == []

    # A change saved to the log: base and log together restore it, memos and all.
    fresh.source.set("b.md", "three four five")
    assert await fresh.label("b.md") == "odd"
    assert log == ["words('b.md')", "parity('b.md')"]
    await picante.save(fresh, path)
    assert log_of(path).exists()
    log.clear()
    again = await loaded_site(log, path)
    assert picante.revision(again) == picante.revision(fresh) == 3
    assert again.source.get("b.md") == "three four five"
    assert [again.tags.lookup(i) for i in range(3)] == ["draft", "post", "new"]
    assert [await again.label("a.md"), await again.label("b.md")] == ["even", "odd"]
    assert await again.words("b.md") == 3
    assert log == []


async def test_incremental_save_appends_to_a_log_and_keeps_the_base(
    log: list[str], tmp_path: Path
) -> None:
    """After a load, a change is saved to `<path>.log`; the base file stays byte-equal."""
    path = tmp_path / "site.cache"
    db = await filled_site(log)
    for n in range(20):  # a base large enough that the log stays below half of it
        db.source.set(f"{n}.md", f"page {n}")
    await picante.save(db, path)
    base = path.read_bytes()

    db = await loaded_site(log, path)
    await picante.save(db, path)  # nothing changed since the load: nothing written
    assert not log_of(path).exists()
    db.source.set("a.md", "one two three")
    assert await db.label("a.md") == "odd"
    assert log == ["words('a.md')", "parity('a.md')", "label('a.md')"]
    await picante.save(db, path)
    assert path.read_bytes() == base
    size = log_of(path).stat().st_size
    assert size > 0

    # Nothing changed: reads of valid memos and a save add nothing to the log.
    assert await db.label("a.md") == "odd"
    await picante.save(db, path)
    assert log_of(path).stat().st_size == size
    assert path.read_bytes() == base

    log.clear()
    fresh = await loaded_site(log, path)
    assert fresh.source.get("a.md") == "one two three"
    assert [await fresh.label("a.md"), await fresh.words("a.md")] == ["odd", 3]
    assert log == []


async def test_log_is_compacted_once_it_passes_half_the_base(
    log: list[str], tmp_path: Path
) -> None:
    """A save rewrites the base and drops the log exactly when the log passed half the base."""
    path = tmp_path / "site.cache"
    db = Site(log)
    for n in range(10):
        db.source.set(f"{n}.md", "word " * n)
        await db.label(f"{n}.md")
    await picante.save(db, path)
    appended = compacted = 0
    for step in range(30):
        base, base_size = path.read_bytes(), path.stat().st_size
        log_size = log_of(path).stat().st_size if log_of(path).exists() else 0
        db.source.set("0.md", f"edit {step}")
        await db.label("0.md")
        await picante.save(db, path)
        if log_size > base_size / 2:
            compacted += 1
            assert not log_of(path).exists()
            assert path.read_bytes() != base
        else:
            appended += 1
            assert path.read_bytes() == base
            assert log_of(path).stat().st_size > log_size
    assert appended >= 2
    assert compacted >= 2
    log.clear()
    fresh = await loaded_site(log, path)
    assert fresh.source.get("0.md") == "edit 29"
    assert await fresh.label("0.md") == "even"
    assert log == []


# -- code and schema fingerprints -------------------------------------------------------------


async def words_split(self: Any, path: str) -> int:
    self.log.append(f"words({path!r})")
    return len((await self.source(path)).split())


async def words_split_documented(self: Any, path: str) -> int:
    """The number of words in *path*: `words_split` with a docstring."""
    self.log.append(f"words({path!r})")
    return len((await self.source(path)).split())


async def words_split_on_space(self: Any, path: str) -> int:
    self.log.append(f"words({path!r})")
    return len((await self.source(path)).split(" "))


async def words_plus_one(self: Any, path: str) -> int:
    self.log.append(f"words({path!r})")
    return len((await self.source(path)).split()) + 1


def info_class(*, with_summary: bool) -> type:
    """`Info`, an attrs class; `with_summary` adds a field (same qualified name)."""
    if with_summary:

        @attrs.frozen
        class Info:
            title: str
            summary: str

    else:

        @attrs.frozen
        class Info:
            title: str

    return Info


INFO = info_class(with_summary=False)


def site_class(
    *,
    words_fn: Any = words_split,
    parity_version: str | int | None = None,
    count_type: type = int,
    weight_key: type = str,
    info_type: type = INFO,
    digits_key: type = int,
    tags_type: type = str,
) -> Any:
    """
    Build a database class; every class built here has the same qualified name, so they
    read each other's cache files like successive versions of one program.
    """

    @picante.database
    class Versioned:
        def __init__(self, log: list[str]) -> None:
            self.log = log

        tags = picante.interned(tags_type)

        @picante.input
        async def source(self, path: str) -> str: ...

        @picante.input
        async def count(self) -> count_type: ...

        @picante.input
        async def weight(self, key: weight_key) -> int: ...

        @picante.input
        async def info(self, path: str) -> info_type: ...

        words = picante.query(words_fn)

        @picante.query(version=parity_version)
        async def parity(self, path: str) -> int:
            self.log.append(f"parity({path!r})")
            return await self.words(path) % 2

        @picante.query
        async def label(self, path: str) -> str:
            self.log.append(f"label({path!r})")
            return "odd" if await self.parity(path) else "even"

        @picante.query
        async def length(self, path: str) -> int:
            self.log.append(f"length({path!r})")
            return len(await self.source(path))

        @picante.query
        async def counted(self, path: str) -> str:
            self.log.append(f"counted({path!r})")
            return f"{await self.length(path)} x {await self.count()}"

        @picante.query
        async def weighted(self, path: str) -> int:
            self.log.append(f"weighted({path!r})")
            return await self.weight(path) * await self.length(path)

        @picante.query
        async def title(self, path: str) -> str:
            self.log.append(f"title({path!r})")
            return (await self.info(path)).title

        @picante.query
        async def digits(self, n: digits_key) -> int:
            self.log.append(f"digits({n!r})")
            return len(str(n))

    return Versioned


ALL_VERSIONED = ["label", "length", "counted", "weighted", "title"]


async def save_versioned(log: list[str], path: Path) -> None:
    """Save a `site_class()` database with every input set and every query computed."""
    db = site_class()(log)
    db.source.set("a.md", "one two")
    db.source.set("b.md", "three")
    db.count.set(3)
    db.weight.set("a.md", 10)
    db.info.set("a.md", INFO(title="A"))
    db.tags.intern("draft")
    for path_ in ("a.md", "b.md"):
        await db.label(path_)
        await db.length(path_)
    assert await db.counted("a.md") == "7 x 3"
    assert await db.weighted("a.md") == 70
    assert await db.title("a.md") == "A"
    assert await db.digits(123) == 3
    await picante.save(db, path)
    log.clear()


async def load_versioned(log: list[str], path: Path, **changes: Any) -> Any:
    """Load *path* into a new database of `site_class(**changes)`."""
    db = site_class(**changes)(log)
    assert await picante.load(db, path) is True
    return db


async def test_same_class_reuses_every_memo(log: list[str], tmp_path: Path) -> None:
    """The control: an unchanged class re-executes nothing after a load."""
    path = tmp_path / "site.cache"
    await save_versioned(log, path)
    db = await load_versioned(log, path)
    assert [await db.label("a.md"), await db.label("b.md")] == ["even", "odd"]
    assert [await db.counted("a.md"), await db.weighted("a.md")] == ["7 x 3", 70]
    assert [await db.title("a.md"), await db.digits(123)] == ["A", 3]
    assert log == []


async def test_changed_code_reexecutes_only_that_query_and_cuts_off(
    log: list[str], tmp_path: Path
) -> None:
    """New code of `words` re-executes its memos; an equal result stops there."""
    path = tmp_path / "site.cache"
    await save_versioned(log, path)
    base = path.read_bytes()
    db = await load_versioned(log, path, words_fn=words_split_on_space)
    assert [await db.label("a.md"), await db.label("b.md")] == ["even", "odd"]
    assert [await db.length("a.md"), await db.counted("a.md")] == [7, "7 x 3"]
    assert log == ["words('a.md')", "words('b.md')"]

    # The file no longer matches the code: the next save rewrites it in full.
    await picante.save(db, path)
    assert path.read_bytes() != base
    assert not log_of(path).exists()
    log.clear()
    again = await load_versioned(log, path, words_fn=words_split_on_space)
    assert [await again.label("a.md"), await again.label("b.md")] == ["even", "odd"]
    assert log == []


async def test_added_docstring_is_not_a_code_change(log: list[str], tmp_path: Path) -> None:
    """A query that only gained a docstring keeps its memos."""
    path = tmp_path / "site.cache"
    await save_versioned(log, path)
    db = await load_versioned(log, path, words_fn=words_split_documented)
    assert [await db.label("a.md"), await db.words("b.md")] == ["even", 1]
    assert log == []


async def test_changed_code_with_a_new_value_reexecutes_dependents(
    log: list[str], tmp_path: Path
) -> None:
    """New code of `words` giving a new value re-executes what read it, and only that."""
    path = tmp_path / "site.cache"
    await save_versioned(log, path)
    db = await load_versioned(log, path, words_fn=words_plus_one)
    assert await db.label("a.md") == "odd"
    assert log == ["words('a.md')", "parity('a.md')", "label('a.md')"]
    log.clear()
    assert await db.label("b.md") == "even"
    assert await db.counted("a.md") == "7 x 3"
    assert log == ["words('b.md')", "parity('b.md')", "label('b.md')"]


async def test_changed_version_reexecutes_that_query(log: list[str], tmp_path: Path) -> None:
    """A new `version=` re-executes that query's memos; equal values cut off dependents."""
    path = tmp_path / "site.cache"
    await save_versioned(log, path)
    db = await load_versioned(log, path, parity_version=2)
    assert [await db.label("a.md"), await db.label("b.md")] == ["even", "odd"]
    assert log == ["parity('a.md')", "parity('b.md')"]


async def doubled(self: Any, n: int) -> int:
    return n * 2


async def doubled_documented(self: Any, n: int) -> int:
    """Double *n*."""
    return n * 2


async def doubled_documented_otherwise(self: Any, n: int) -> int:
    """Return twice *n*: a different docstring."""
    return n * 2


async def doubled_moved(self: Any, n: int) -> int:
    # A comment and blank lines: every line number below moves.

    return n * 2


async def or_none(self: Any, n: int) -> int | None:
    return n or None


async def or_none_documented(self: Any, n: int) -> int | None:
    """*n*, or None for zero: a function that loads the constant None."""
    return n or None


async def tripled(self: Any, n: int) -> int:
    return n * 3


async def doubled_by_abs(self: Any, n: int) -> int:
    return abs(n * 2)


async def doubled_by_int(self: Any, n: int) -> int:
    return int(n * 2)


def test_fingerprint_ignores_line_numbers() -> None:
    """Comments and blank lines that move the code do not change its fingerprint."""
    assert code_fingerprint(doubled_moved, None) == code_fingerprint(doubled, None)


@pytest.mark.parametrize(
    ("fn", "other"),
    [
        pytest.param(doubled_documented, doubled_documented_otherwise, id="edited"),
        pytest.param(doubled, doubled_documented, id="added"),
        pytest.param(or_none, or_none_documented, id="added-before-a-None-constant"),
    ],
)
def test_fingerprint_ignores_docstrings(fn: Any, other: Any) -> None:
    """Editing, adding or removing a docstring does not change the fingerprint."""
    assert code_fingerprint(fn, None) == code_fingerprint(other, None)


def test_fingerprint_follows_constants_names_and_version() -> None:
    """A changed constant, called name or `version=` changes the fingerprint."""
    plain = code_fingerprint(doubled, None)
    assert code_fingerprint(tripled, None) != plain
    assert code_fingerprint(doubled_by_abs, None) != code_fingerprint(doubled_by_int, None)
    assert code_fingerprint(doubled, 1) != plain
    assert code_fingerprint(doubled, 1) != code_fingerprint(doubled, 2)
    assert code_fingerprint(doubled, 1) != code_fingerprint(doubled, "1")
    assert code_fingerprint(doubled, 1) == code_fingerprint(doubled, 1)


@pytest.mark.parametrize(
    ("name", "changes", "dependent"),
    [
        pytest.param("count", {"count_type": str}, "counted", id="value-type"),
        pytest.param("weight", {"weight_key": int}, "weighted", id="key-type"),
        pytest.param(
            "info", {"info_type": info_class(with_summary=True)}, "title", id="attrs-field"
        ),
    ],
)
async def test_schema_change_drops_that_input(
    log: list[str], tmp_path: Path, name: str, changes: dict[str, Any], dependent: str
) -> None:
    """An input whose types changed is absent after the load; all the rest loads."""
    path = tmp_path / "site.cache"
    await save_versioned(log, path)
    db = await load_versioned(log, path, **changes)
    assert db.__picante__.tables.get(name, {}) == {}
    with pytest.raises(MissingInputError, match=rf"^no value for input {name}\("):
        await getattr(db, dependent)("a.md")
    assert log == [f"{dependent}('a.md')"]
    log.clear()
    inputs = {
        "source": db.source.get("a.md"),
        "count": db.count.get(),
        "weight": db.weight.get("a.md"),
        "info": db.info.get("a.md"),
    }
    kept = {"source": "one two", "count": 3, "weight": 10, "info": INFO(title="A")}
    assert inputs == {**kept, name: None}
    others = [q for q in ALL_VERSIONED if q != dependent]
    assert [await getattr(db, q)("a.md") for q in others] == [
        {"label": "even", "length": 7, "counted": "7 x 3", "weighted": 70, "title": "A"}[q]
        for q in others
    ]
    assert await db.label("b.md") == "odd"
    assert log == []


async def test_query_key_type_change_drops_its_memos(log: list[str], tmp_path: Path) -> None:
    """A query whose key type changed loads no memo; everything else is reused."""
    path = tmp_path / "site.cache"
    await save_versioned(log, path)
    db = await load_versioned(log, path, digits_key=str)
    assert db.__picante__.tables.get("digits", {}) == {}
    assert [await db.label("a.md"), await db.counted("a.md")] == ["even", "7 x 3"]
    assert log == []
    assert await db.digits("123") == 3
    assert log == ["digits('123')"]


async def test_interned_type_change_loads_nothing(log: list[str], tmp_path: Path) -> None:
    """Ids of a dropped interned table may be in any value: nothing at all is loaded."""
    path = tmp_path / "site.cache"
    await save_versioned(log, path)
    db = site_class(tags_type=int)(log)
    await picante.load(db, path)
    assert (db.source.get("a.md"), db.count.get(), len(db.tags)) == (None, None, 0)
    assert all(table == {} for table in db.__picante__.tables.values())


# -- corrupt, foreign and oversized files ------------------------------------------------------


async def saved_file(log: list[str], tmp_path: Path, *, with_log: bool = False) -> Path:
    """A cache file of a filled `Site` (with a log entry if *with_log*)."""
    path = tmp_path / "site.cache"
    await picante.save(await filled_site(log), path)
    if with_log:
        db = await loaded_site(log, path)
        db.source.set("a.md", "changed")
        await picante.save(db, path)
        assert log_of(path).exists()
    return path


def assert_untouched(db: Site) -> None:
    """*db* has no state: revision 0, no input, no memo, no tag."""
    assert picante.revision(db) == 0
    assert db.source.get("a.md") is None
    assert len(db.tags) == 0
    assert all(table == {} for table in db.__picante__.tables.values())


async def test_truncated_file_raises_with_the_reason(log: list[str], tmp_path: Path) -> None:
    """A truncated file raises `CacheError` saying so; the database is unchanged."""
    path = await saved_file(log, tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    db = Site(log)
    with pytest.raises(CacheError, match=r"^.*site\.cache: truncated"):
        await picante.load(db, path)
    assert_untouched(db)
    path.write_bytes(path.read_bytes()[:20])  # shorter than the header
    with pytest.raises(CacheError, match="truncated"):
        await picante.load(db, path)
    assert_untouched(db)


async def test_corrupt_file_ignored(log: list[str], tmp_path: Path) -> None:
    """`on_corrupt="ignore"` returns False, keeps the file and leaves the database as it was."""
    path = await saved_file(log, tmp_path)
    damaged = path.read_bytes()[:-10]
    path.write_bytes(damaged)
    db = Site(log)
    assert await picante.load(db, path, on_corrupt="ignore") is False
    assert_untouched(db)
    assert path.read_bytes() == damaged
    db.source.set("a.md", "x")
    assert await db.words("a.md") == 1


async def test_corrupt_file_deleted_with_its_log(log: list[str], tmp_path: Path) -> None:
    """`on_corrupt="delete"` returns False and removes the file and its log."""
    path = await saved_file(log, tmp_path, with_log=True)
    path.write_bytes(path.read_bytes()[:-10])
    db = Site(log)
    assert await picante.load(db, path, on_corrupt="delete") is False
    assert_untouched(db)
    # The lock file stays: removing it could let two writers each lock a different one.
    assert files_in(tmp_path) == [path.with_name("site.cache.lock")]


async def test_missing_file_is_not_an_error(log: list[str], tmp_path: Path) -> None:
    """A missing file: `load` returns False and creates nothing."""
    db = Site(log)
    assert await picante.load(db, tmp_path / "none.cache") is False
    assert_untouched(db)
    assert files_in(tmp_path) == []


async def test_empty_file_raises(log: list[str], tmp_path: Path) -> None:
    """An empty file raises `CacheError` saying it is empty."""
    path = tmp_path / "site.cache"
    path.write_bytes(b"")
    db = Site(log)
    with pytest.raises(CacheError, match="empty"):
        await picante.load(db, path)
    assert_untouched(db)


async def test_file_of_another_database_raises(log: list[str], tmp_path: Path) -> None:
    """A file written by another database class is refused, naming that class."""
    path = tmp_path / "other.cache"
    other = Other()
    other.source.set("a.md", "theirs")
    await picante.save(other, path)
    db = Site(log)
    with pytest.raises(CacheError, match=re.escape(repr(database_name(Other)))):
        await picante.load(db, path)
    assert_untouched(db)
    assert await picante.load(db, path, on_corrupt="ignore") is False
    assert_untouched(db)


async def test_max_bytes_refuses_a_larger_cache(log: list[str], tmp_path: Path) -> None:
    """`load(max_bytes=N)` refuses a cache (file and log) larger than N."""
    path = await saved_file(log, tmp_path, with_log=True)
    total = path.stat().st_size + log_of(path).stat().st_size
    db = Site(log)
    with pytest.raises(CacheError, match=rf"over max_bytes={total - 1:,}"):
        await picante.load(db, path, max_bytes=total - 1)
    assert_untouched(db)
    assert await picante.load(db, path, max_bytes=total) is True
    assert db.source.get("a.md") == "changed"


# -- values that cannot be saved ---------------------------------------------------------------


class Opaque:
    """A plain class: neither cattrs nor orjson knows how to write it."""


@picante.database
class Loose:
    """Its values are typed `Any`, so what cannot be written shows up per record."""

    @picante.input
    async def name(self, key: str) -> str: ...

    @picante.input
    async def anything(self, key: str) -> Any: ...

    @picante.query
    async def thing(self, key: str) -> Any:
        await self.name(key)
        return Opaque()


@picante.database
class Typed:
    """A query annotated with a type that cannot be saved."""

    @picante.input
    async def name(self, key: str) -> str: ...

    @picante.query
    async def thing(self, key: str) -> Opaque:
        await self.name(key)
        return Opaque()


async def test_unsaveable_value_names_the_record_and_keeps_the_file(tmp_path: Path) -> None:
    """A value that cannot be written fails `save` naming record and type; the file stays."""
    path = tmp_path / "loose.cache"
    db = Loose()
    db.name.set("a", "x")
    await picante.save(db, path)
    before = path.read_bytes()
    assert isinstance(await db.thing("a"), Opaque)
    with pytest.raises(CacheError, match=r"^cannot save Loose\.thing\('a'\): its Opaque value"):
        await picante.save(db, path)  # an incremental save
    assert path.read_bytes() == before
    assert not log_of(path).exists()

    other = Loose()
    other.anything.set("k", Opaque())
    with pytest.raises(CacheError, match=r"^cannot save Loose\.anything\('k'\): its Opaque value"):
        await picante.save(other, path)  # a full save
    assert path.read_bytes() == before
    assert files_in(tmp_path) == [path, path.with_name(path.name + ".lock")]


async def test_unsaveable_type_fails_save_and_keeps_the_file(tmp_path: Path) -> None:
    """A query typed with a class cattrs cannot read back: `save` names it and the type."""
    path = tmp_path / "typed.cache"
    path.write_bytes(b"previous contents")
    db = Typed()
    db.name.set("a", "x")
    await db.thing("a")
    with pytest.raises(CacheError, match=r"^Typed\.thing: cannot persist its types: .*Opaque"):
        await picante.save(db, path)
    assert path.read_bytes() == b"previous contents"
    assert files_in(tmp_path) == [path]


# -- misuse ------------------------------------------------------------------------------------


async def test_load_into_a_database_with_state_keeps_what_it_set(
    log: list[str], tmp_path: Path
) -> None:
    """`load` into a database with inputs keeps them on top of the file (no `UsageError`)."""
    path = await saved_file(log, tmp_path)
    db = Site(log)
    db.source.set("c.md", "mine")
    assert await picante.load(db, path) is True
    assert (db.source.get("a.md"), db.source.get("c.md")) == ("one two", "mine")
    assert picante.revision(db) > 1


async def test_snapshots_cannot_be_saved_or_loaded(log: list[str], tmp_path: Path) -> None:
    """`save` and `load` of a snapshot raise `UsageError`."""
    path = await saved_file(log, tmp_path)
    before = path.read_bytes()
    snap = picante.snapshot(await filled_site(log))
    with pytest.raises(UsageError, match="not a snapshot"):
        await picante.save(snap, path)
    assert path.read_bytes() == before
    with pytest.raises(UsageError, match="not a snapshot"):
        await picante.load(picante.snapshot(Site(log)), path)


async def test_invalid_on_corrupt_raises(log: list[str], tmp_path: Path) -> None:
    """An unknown `on_corrupt` raises `UsageError`, even for a missing file."""
    db = Site(log)
    with pytest.raises(UsageError, match="on_corrupt must be"):
        await picante.load(db, tmp_path / "none.cache", on_corrupt="bogus")  # type: ignore[arg-type]


# -- persist=False, errors, lru ----------------------------------------------------------------


@picante.database
class Scratch:
    """`upper` is not persisted; `length` reads it."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def text(self) -> str: ...

    @picante.query(persist=False)
    async def upper(self) -> str:
        self.log.append("upper()")
        return (await self.text()).upper()

    @picante.query
    async def length(self) -> int:
        self.log.append("length()")
        return len(await self.upper())


async def test_unpersisted_query_reexecutes_but_its_dependents_do_not(
    log: list[str], tmp_path: Path
) -> None:
    """A `persist=False` memo is saved without its value: it re-executes, its readers not."""
    path = tmp_path / "scratch.cache"
    db = Scratch(log)
    db.text.set("secret")
    assert await db.length() == 6
    await picante.save(db, path)
    assert b"SECRET" not in path.read_bytes()
    log.clear()

    fresh = Scratch(log)
    assert await picante.load(fresh, path) is True
    assert await fresh.length() == 6
    assert log == []
    assert await fresh.upper() == "SECRET"
    assert log == ["upper()"]
    assert await fresh.length() == 6
    assert log == ["upper()"]

    other = Scratch(log)
    assert await picante.load(other, path) is True
    assert await other.upper() == "SECRET"
    assert await other.length() == 6
    assert log == ["upper()", "upper()"]


async def test_memoized_error_reexecutes_after_load(log: list[str], tmp_path: Path) -> None:
    """A query that raised before the save runs again after the load, and raises again."""
    path = tmp_path / "site.cache"
    db = Site(log)
    db.source.set("e.md", "")
    db.source.set("a.md", "one two")
    with pytest.raises(ValueError, match=r"^e\.md is empty$"):
        await db.strict("e.md")
    assert await db.strict("a.md") == 2
    await picante.save(db, path)
    log.clear()

    fresh = await loaded_site(log, path)
    with pytest.raises(ValueError, match=r"^e\.md is empty$"):
        await fresh.strict("e.md")
    assert log == ["strict('e.md')"]
    assert await fresh.strict("a.md") == 2
    assert log == ["strict('e.md')"]


@picante.database
class Squares:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def base(self) -> int: ...

    @picante.query(lru=3)
    async def square(self, n: int) -> int:
        self.log.append(f"square({n})")
        return n * n + await self.base()


def kept(db: Squares) -> list[int]:
    """The keys of `square` whose values are held."""
    table = db.__picante__.tables["square"]
    return sorted(key[0] for key, cell in table.items() if cell.value is not EVICTED)


async def test_lru_memos_load_within_capacity(log: list[str], tmp_path: Path) -> None:
    """An `lru=3` query loads its three held values, and keeps holding at most three."""
    path = tmp_path / "squares.cache"
    db = Squares(log)
    db.base.set(0)
    for n in range(5):
        await db.square(n)
    assert kept(db) == [2, 3, 4]
    await picante.save(db, path)
    log.clear()

    fresh = Squares(log)
    assert await picante.load(fresh, path) is True
    assert kept(fresh) == [2, 3, 4]
    assert [await fresh.square(n) for n in (2, 3, 4)] == [4, 9, 16]
    assert log == []
    assert await fresh.square(5) == 25
    assert kept(fresh) == [3, 4, 5]
    assert await fresh.square(0) == 0
    assert kept(fresh) == [0, 4, 5]
    assert log == ["square(5)", "square(0)"]


# -- size caps on save -------------------------------------------------------------------------


async def big_and_small_site(log: list[str]) -> Site:
    """A `Site` whose `shout('big.md')` memo is large and `shout('small.md')` small."""
    db = Site(log)
    db.source.set("big.md", "word " * 100)
    db.source.set("small.md", "hi")
    for path in ("big.md", "small.md"):
        await db.shout(path)
        await db.label(path)
    log.clear()
    return db


async def test_max_record_bytes_drops_big_memos(log: list[str], tmp_path: Path) -> None:
    """Memos whose value encodes to more than `max_record_bytes` are not saved."""
    path = tmp_path / "site.cache"
    await picante.save(await big_and_small_site(log), path, max_record_bytes=50)
    fresh = await loaded_site(log, path)
    assert fresh.source.get("big.md") == "word " * 100
    assert [await fresh.shout("small.md"), await fresh.label("big.md")] == ["HI", "even"]
    assert log == []
    assert await fresh.shout("big.md") == "WORD " * 100
    assert log == ["shout('big.md')"]


async def test_max_bytes_drops_the_largest_memo_first(log: list[str], tmp_path: Path) -> None:
    """A file one byte over `max_bytes` loses its largest memo only."""
    path = tmp_path / "site.cache"
    db = await big_and_small_site(log)
    await picante.save(db, tmp_path / "full.cache")
    limit = (tmp_path / "full.cache").stat().st_size - 1
    await picante.save(db, path, max_bytes=limit)
    assert path.stat().st_size <= limit
    fresh = await loaded_site(log, path)
    assert [await fresh.shout("small.md"), await fresh.label("big.md")] == ["HI", "even"]
    assert log == []
    assert await fresh.shout("big.md") == "WORD " * 100
    assert log == ["shout('big.md')"]


async def test_max_bytes_below_the_inputs_raises_and_keeps_the_file(
    log: list[str], tmp_path: Path
) -> None:
    """`save(max_bytes=N)` with inputs alone over N raises; the previous file stays."""
    path = tmp_path / "site.cache"
    db = await big_and_small_site(log)
    await picante.save(db, path)
    before = path.read_bytes()
    db.source.set("small.md", "changed")
    with pytest.raises(CacheError, match=r"inputs and interned values alone .* max_bytes=100$"):
        await picante.save(db, path, max_bytes=100)
    assert path.read_bytes() == before
    assert files_in(tmp_path) == [path, path.with_name(path.name + ".lock")]
    fresh = await loaded_site(log, path)
    assert fresh.source.get("small.md") == "hi"


# -- a custom converter ------------------------------------------------------------------------


class Point:
    """A plain class; the converter below writes it as `[x, y]`."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


points = make_converter()
points.register_unstructure_hook(Point, lambda p: [p.x, p.y])
points.register_structure_hook(Point, lambda raw, _: Point(*raw))


@picante.database(converter=points)
class Plane:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def corner(self, name: str) -> Point: ...

    @picante.input
    async def name_at(self, point: Point) -> str: ...

    @picante.query
    async def mirrored(self, name: str) -> Point:
        self.log.append(f"mirrored({name!r})")
        corner = await self.corner(name)
        return Point(corner.y, corner.x)

    @picante.query
    async def mirrored_name(self, point: Point) -> str:
        self.log.append(f"mirrored_name({point!r})")
        return (await self.name_at(Point(point.y, point.x))).upper()


async def test_custom_converter_round_trip(log: list[str], tmp_path: Path) -> None:
    """A database's own cattrs converter writes and reads its custom keys and values."""
    path = tmp_path / "plane.cache"
    db = Plane(log)
    db.corner.set("ne", Point(1, 2))
    db.name_at.set(Point(3, 4), "here")
    assert await db.mirrored("ne") == Point(2, 1)
    assert await db.mirrored_name(Point(4, 3)) == "HERE"
    await picante.save(db, path)
    assert b"[1,2]" in path.read_bytes()
    log.clear()

    fresh = Plane(log)
    assert await picante.load(fresh, path) is True
    assert fresh.corner.get("ne") == Point(1, 2)
    assert fresh.name_at.get(Point(3, 4)) == "here"
    assert await fresh.mirrored("ne") == Point(2, 1)
    assert await fresh.mirrored_name(Point(4, 3)) == "HERE"
    assert log == []


# -- python -m picante inspect -----------------------------------------------------------------


async def test_inspect_prints_a_summary(
    log: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`inspect` prints the database, revision and each ingredient's record count."""
    path = await saved_file(log, tmp_path, with_log=True)
    assert main(["inspect", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.search(rf"^database  {re.escape(database_name(Site))}$", out, re.M)
    assert re.search(r"^revision  3$", out, re.M)
    for name, kind, records in [
        ("tags", "interned", 2),
        ("source", "input", 2),
        ("words", "query", 2),
        ("parity", "query", 2),
        ("label", "query", 2),
        ("shout", "query", 0),
        ("strict", "query", 0),
    ]:
        assert re.search(rf"^{name} +{kind} +{records} ", out, re.M), name
    assert re.search(r"^log       1 entry \(", out, re.M)


async def test_inspect_json(
    log: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`inspect --json` prints a JSON summary with every section."""
    path = await saved_file(log, tmp_path)
    assert main(["inspect", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["database"], summary["revision"]) == (database_name(Site), 2)
    assert {s["name"]: (s["kind"], s["records"]) for s in summary["sections"]} == {
        "tags": ("interned", 2),
        "source": ("input", 2),
        "words": ("query", 2),
        "parity": ("query", 2),
        "label": ("query", 2),
        "shout": ("query", 0),
        "strict": ("query", 0),
    }
    assert summary["log"]["entries"] == 0


async def test_inspect_corrupt_file_prints_one_line(
    log: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt file: exit status 1 and one line on stderr, no traceback."""
    path = await saved_file(log, tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["inspect", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("picante inspect: ")
    assert "truncated" in err
    assert "Traceback" not in err


def run_inspect(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m picante inspect ARGS...` as a user would, with the checkout importable."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "picante", "inspect", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
        timeout=30,
    )


async def test_inspect_runs_as_a_module(log: list[str], tmp_path: Path) -> None:
    """`python -m picante inspect FILE` works from a shell."""
    path = await saved_file(log, tmp_path)
    done = run_inspect(str(path), "--json")
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["database"] == database_name(Site)
    missing = run_inspect(str(tmp_path / "none.cache"))
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("picante inspect: ")
    assert "no such file" in missing.stderr


# -- max_state_bytes ---------------------------------------------------------------------------


def bounded_class(limit: int | None) -> Any:
    """A database class bounded by *limit*; every one built here has the same name."""

    @picante.database(max_state_bytes=limit)
    class Bounded:
        @picante.input
        async def blob(self, key: str) -> str: ...

        @picante.query
        async def size(self, key: str) -> int:
            return len(await self.blob(key))

    return Bounded


async def test_cache_over_max_state_bytes_loads_nothing(tmp_path: Path) -> None:
    """A cache whose inputs exceed `max_state_bytes` raises and loads nothing."""
    path = tmp_path / "bounded.cache"
    db = bounded_class(None)()
    db.blob.set("a", "x" * 5_000)
    db.blob.set("b", "y")
    assert await db.size("a") == 5_000
    await picante.save(db, path)

    small = bounded_class(2_000)()
    with pytest.raises(LimitExceededError, match=r"over max_state_bytes=2,000$"):
        await picante.load(small, path)
    assert picante.revision(small) == 0
    assert (small.blob.get("a"), small.blob.get("b")) == (None, None)
    assert all(table == {} for table in small.__picante__.tables.values())
    assert small.__picante__.input_bytes == 0
    small.blob.set("b", "y")  # the limit's accounting was not touched
    assert small.blob.get("b") == "y"

    roomy = bounded_class(100_000)()
    assert await picante.load(roomy, path) is True
    assert roomy.blob.get("a") == "x" * 5_000
