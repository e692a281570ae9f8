"""Interned tables: stable ids, shared by snapshots, never a revision, never a dependency."""

from __future__ import annotations

import pytest

import picante
from picante._store import deps_of


@picante.database
class Db:
    labels = picante.interned(str)
    points = picante.interned(tuple)

    @picante.input
    async def text(self) -> str: ...

    @picante.query
    async def label_id(self) -> int:
        return self.labels.intern(await self.text())


async def test_equal_values_share_an_id() -> None:
    """Interning equal values returns one id; lookup returns the value."""
    db = Db()
    first = db.labels.intern("a")
    assert db.labels.intern("a") == first
    second = db.labels.intern("b")
    assert (first, second) == (0, 1)
    assert isinstance(first, int)
    assert (db.labels.lookup(first), db.labels.lookup(second)) == ("a", "b")
    assert len(db.labels) == 2


async def test_values_of_different_types_differ() -> None:
    """`1`, `1.0` and `True` are three values, though they compare equal."""

    @picante.database
    class Mixed:
        values = picante.interned(object)

    mixed = Mixed()
    assert len({mixed.values.intern(1), mixed.values.intern(1.0), mixed.values.intern(True)}) == 3
    assert mixed.values.intern((1,)) == mixed.values.intern((1,))


async def test_interning_never_moves_revision() -> None:
    """Interning is not a mutation."""
    db = Db()
    db.labels.intern("x")
    assert picante.revision(db) == 0


async def test_shared_with_snapshots() -> None:
    """A database and its snapshots share the table, in both directions."""
    db = Db()
    a = db.labels.intern("a")
    snap = picante.snapshot(db)
    b = snap.labels.intern("b")
    assert db.labels.lookup(b) == "b"
    assert snap.labels.lookup(a) == "a"
    assert db.labels.intern("b") == b


async def test_reading_interned_is_not_a_dependency() -> None:
    """A query that interns or looks up values is invalidated only by what else it read."""
    db = Db()
    db.text.set("x")
    assert await db.label_id() == 0
    db.labels.intern("more")
    cell = db.__picante__.tables["label_id"][()]
    assert [dep.ingredient.name for dep in deps_of(cell)] == ["text"]


async def test_bad_lookups_and_values() -> None:
    """Unknown ids and unhashable values get clear errors."""
    db = Db()
    with pytest.raises(
        LookupError, match=r"^Db\.labels\.lookup\(\): no interned value has the id 5$"
    ):
        db.labels.lookup(picante.InternId(5))
    with pytest.raises(TypeError, match=r"^Db\.points\.intern\(\): list is not hashable$"):
        db.points.intern([1])  # type: ignore[arg-type]
