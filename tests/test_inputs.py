"""Inputs: reads, sets, removes, no-ops, absence as a dependency, mutation rules."""

from __future__ import annotations

import pytest

import picante


@picante.database
class Files:
    @picante.input
    async def source(self, path: str) -> str: ...

    @picante.input
    async def config(self) -> int: ...


async def test_set_returns_new_revision_and_reads_back() -> None:
    """Each effective set moves the revision by one; reads see the value."""
    db = Files()
    assert picante.revision(db) == 0
    assert db.source.set("a", "x") == 1
    assert db.source.set("b", "y") == 2
    assert db.config.set(3) == 3
    assert (await db.source("a"), db.source.get("b"), await db.config()) == ("x", "y", 3)
    assert picante.revision(db) == 3


async def test_equal_set_is_a_noop() -> None:
    """Setting an equal value does not move the revision."""
    db = Files()
    db.source.set("a", "x")
    assert db.source.set("a", "x") == 1
    assert db.source.set("a", "".join(["x"])) == 1
    assert picante.revision(db) == 1


async def test_remove_absent_is_a_noop() -> None:
    """Removing an absent key does not move the revision; removing a present one does."""
    db = Files()
    assert db.source.remove("a") == 0
    db.source.set("a", "x")
    assert db.source.remove("a") == 2
    assert db.source.remove("a") == 2
    assert db.source.get("a") is None


async def test_missing_input_error_fields() -> None:
    """Reading an absent input raises `MissingInputError`, a `LookupError`, with fields."""
    db = Files()
    with pytest.raises(picante.MissingInputError) as info:
        await db.source("nope.md")
    assert isinstance(info.value, LookupError)
    assert (info.value.ingredient, info.value.key) == ("source", ("nope.md",))
    assert str(info.value) == "no value for input source('nope.md')"


async def test_get_default() -> None:
    """`get` returns *default* (None unless given) for an absent key."""
    db = Files()
    assert db.source.get("a") is None
    assert db.source.get("a", default="?") == "?"
    db.source.set("a", "")
    assert db.source.get("a", default="?") == ""


async def test_set_without_value() -> None:
    """`set()` with no arguments names what is missing."""
    db = Files()
    with pytest.raises(TypeError, match=r"^Files\.config\.set\(\) needs the value as its last"):
        db.config.set()


async def test_custom_eq_decides_noop() -> None:
    """An input's `eq=` decides which sets are no-ops."""

    @picante.database
    class Db:
        @picante.input(eq=lambda a, b: a.lower() == b.lower())
        async def name(self) -> str: ...

    db = Db()
    db.name.set("Ada")
    assert db.name.set("ADA") == 1
    assert db.name.get() == "Ada"
    assert db.name.set("Bob") == 2


async def test_raising_eq_counts_as_changed() -> None:
    """A value whose `==` raises is never a no-op (and the set still succeeds)."""

    class Weird:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError

        __hash__ = object.__hash__

    db = Files()
    db.config.set(Weird())  # type: ignore[arg-type]
    assert db.config.set(Weird()) == 2  # type: ignore[arg-type]


async def test_absence_is_a_dependency(log: list[str]) -> None:
    """absent→present, present→absent and v1→v2 all invalidate a reader."""

    @picante.database
    class Db:
        @picante.input
        async def source(self, path: str) -> str: ...

        @picante.query
        async def describe(self, path: str) -> str:
            log.append(f"describe({path!r})")
            try:
                return await self.source(path)
            except picante.MissingInputError:
                return "<absent>"

        @picante.query
        async def peek(self, path: str) -> str:
            log.append(f"peek({path!r})")
            return self.source.get(path, default="<none>")

    db = Db()
    assert (await db.describe("a"), await db.peek("a")) == ("<absent>", "<none>")
    db.source.set("a", "v1")
    assert (await db.describe("a"), await db.peek("a")) == ("v1", "v1")
    db.source.set("a", "v2")
    assert (await db.describe("a"), await db.peek("a")) == ("v2", "v2")
    db.source.remove("a")
    assert (await db.describe("a"), await db.peek("a")) == ("<absent>", "<none>")
    db.source.set("b", "other")
    assert (await db.describe("a"), await db.peek("a")) == ("<absent>", "<none>")
    assert log == ["describe('a')", "peek('a')"] * 4


async def test_mutation_inside_query_is_refused() -> None:
    """Setting or removing an input from inside a running query raises `UsageError`."""

    @picante.database
    class Db:
        @picante.input
        async def source(self, path: str) -> str: ...

        @picante.query
        async def sneaky(self, op: str) -> int:
            if op == "set":
                self.source.set("a", "x")
            else:
                self.source.remove("a")
            return 0

    db = Db()
    db.source.set("a", "0")
    with pytest.raises(
        picante.UsageError,
        match=r"^source\.set\(\) was called inside the running query sneaky\('set'\); "
        r"queries must not mutate inputs$",
    ):
        await db.sneaky("set")
    with pytest.raises(picante.UsageError, match=r"^source\.remove\(\) was called inside"):
        await db.sneaky("remove")
    assert (db.source.get("a"), picante.revision(db)) == ("0", 1)


async def test_mutation_from_child_task_of_query_is_refused() -> None:
    """A child task spawned by a query is part of it: it may not mutate either."""
    import asyncio

    @picante.database
    class Db:
        @picante.input
        async def source(self, path: str) -> str: ...

        @picante.query
        async def sneaky(self) -> int:
            async def child() -> None:
                self.source.set("a", "x")

            await asyncio.gather(child())
            return 0

    db = Db()
    with pytest.raises(picante.UsageError):
        await db.sneaky()
    assert picante.revision(db) == 0
