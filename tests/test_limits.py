"""`max_state_bytes`: a mutation that would exceed the bound is refused and changes nothing."""

from __future__ import annotations

import pytest

import picante
from picante._store import sizeof


LIMIT = 2_000


@picante.database(max_state_bytes=LIMIT)
class Bounded:
    names = picante.interned(str)

    @picante.input
    async def blob(self, key: str) -> str: ...

    @picante.query
    async def length(self, key: str) -> int:
        return len(await self.blob(key))


def state_bytes(db: Bounded) -> int:
    return db.__picante__.input_bytes + db.__picante__.family.interned_bytes


async def test_accounts_keys_and_values() -> None:
    """The state is the deep size of every present key and value, and shrinks on remove."""
    db = Bounded()
    db.blob.set("a", "x" * 100)
    assert state_bytes(db) == sizeof(("a",)) + sizeof("x" * 100)
    db.blob.set("a", "y")
    assert state_bytes(db) == sizeof(("a",)) + sizeof("y")
    db.blob.remove("a")
    assert state_bytes(db) == 0


async def test_set_over_limit_has_no_effect() -> None:
    """A refused set changes no value, no revision and no memo."""
    db = Bounded()
    db.blob.set("a", "x" * 100)
    assert await db.length("a") == 100
    before = (picante.revision(db), state_bytes(db))
    with pytest.raises(
        picante.LimitExceededError,
        match=r"^Bounded: setting blob\('b'\) would make the state [\d,]+ bytes, "
        r"over max_state_bytes=2,000$",
    ):
        db.blob.set("b", "z" * LIMIT)
    assert (picante.revision(db), state_bytes(db)) == before
    assert db.blob.get("b") is None
    assert await db.length("a") == 100


async def test_batch_over_limit_has_no_effect() -> None:
    """A refused batch applies none of its changes."""
    db = Bounded()
    db.blob.set("a", "x")
    with (
        pytest.raises(picante.LimitExceededError, match="this batch of 2 changes"),
        picante.batch(db),
    ):
        db.blob.set("a", "y")
        db.blob.set("b", "z" * LIMIT)
    assert (picante.revision(db), db.blob.get("a"), db.blob.get("b")) == (1, "x", None)


async def test_replacing_with_smaller_fits() -> None:
    """What counts is the state after the change: replacing a big value frees its bytes."""
    db = Bounded()
    db.blob.set("a", "x" * 1500)
    with pytest.raises(picante.LimitExceededError):
        db.blob.set("b", "y" * 600)
    with picante.batch(db):
        db.blob.set("a", "")
        db.blob.set("b", "y" * 600)
    assert db.blob.get("b") == "y" * 600


async def test_interned_values_count() -> None:
    """Interned values count toward the bound; a refused intern adds nothing."""
    db = Bounded()
    db.names.intern("n" * 1000)
    with pytest.raises(picante.LimitExceededError, match=r"^Bounded: interning a value in names"):
        db.names.intern("m" * 1000)
    assert len(db.names) == 1
    with pytest.raises(picante.LimitExceededError):
        db.blob.set("a", "x" * 1000)


async def test_snapshot_inherits_accounting() -> None:
    """A snapshot starts from its parent's state size and keeps its own from then on."""
    db = Bounded()
    db.blob.set("a", "x" * 1000)
    snap = picante.snapshot(db)
    with pytest.raises(picante.LimitExceededError):
        snap.blob.set("b", "y" * 1000)
    snap.blob.remove("a")
    snap.blob.set("b", "y" * 1000)
    assert (db.blob.get("a"), db.blob.get("b")) == ("x" * 1000, None)


def test_bad_limit_rejected() -> None:
    """The bound must be a positive int."""
    with pytest.raises(picante.UsageError, match=r"max_state_bytes must be a positive int"):
        picante.database(max_state_bytes=0)


def test_subclass_inherits_limit() -> None:
    """A subclass of a bounded database is bounded the same way."""

    class Child(Bounded):
        pass

    assert Child.__picante__.max_state_bytes == LIMIT  # type: ignore[attr-defined]
