"""Regressions: a snapshot reuses every memo that was valid in the database when taken."""

from __future__ import annotations

import asyncio

import picante


async def test_snapshot_reuses_memo_the_database_revalidated_since() -> None:
    """A memo valid when the snapshot was taken is reused after the database re-verified it."""
    log: list[str] = []

    @picante.database
    class DB:
        @picante.input
        async def x(self) -> int: ...

        @picante.input
        async def other(self) -> int: ...

        @picante.query
        async def failing(self) -> int:
            log.append("failing()")
            raise ValueError(await self.x())

        @picante.query
        async def caught(self) -> int:
            log.append("caught()")
            try:
                return await self.failing()
            except ValueError:
                return -1

    db = DB()
    db.x.set(1)
    assert await db.caught() == -1  # revision 1; not "clean": it read a memoized error
    snap = picante.snapshot(db)  # at revision 1, where caught()'s memo is valid
    db.other.set(1)  # revision 2, unrelated to caught()
    assert await db.caught() == -1  # deep verify reruns failing() only, re-verifies caught()
    log.clear()
    assert await snap.caught() == -1
    assert log == []  # fails: ['caught()']


async def test_snapshot_reuses_memo_valid_through_durability() -> None:
    """A memo valid by durability when the snapshot was taken is reused after a HIGH change."""
    log: list[str] = []

    @picante.database
    class DB:
        @picante.input
        async def low(self) -> int: ...

        @picante.input(durability=picante.Durability.HIGH)
        async def cfg(self) -> int: ...

        @picante.query
        async def high(self) -> int:
            log.append("high()")
            await asyncio.sleep(0)
            return await self.cfg()

    db = DB()
    db.cfg.set(1)  # revision 1
    task = asyncio.create_task(db.high())
    await asyncio.sleep(0)  # high() is running at revision 1 ...
    db.low.set(1)  # ... when revision 2 arrives: its memo is installed not "clean"
    assert await task == 1
    assert await db.high() == 1  # valid at revision 2 through durability alone
    snap = picante.snapshot(db)  # at revision 2, where high()'s memo is valid
    db.cfg.set(2)  # revision 3
    log.clear()
    assert await snap.high() == 1
    assert log == []  # fails: ['high()']


async def test_snapshot_reuses_dependency_valid_through_durability() -> None:
    """A dependency valid by durability when the snapshot was taken survives a HIGH change."""
    log: list[str] = []

    @picante.database
    class DB:
        @picante.input
        async def low(self) -> int: ...

        @picante.input
        async def unrelated(self) -> int: ...

        @picante.input(durability=picante.Durability.HIGH)
        async def cfg(self) -> int: ...

        @picante.query
        async def high(self) -> int:
            log.append("high()")
            await asyncio.sleep(0)
            return await self.cfg()

        @picante.query
        async def mixed(self) -> int:
            log.append("mixed()")
            return await self.high() + await self.low()

    db = DB()
    db.cfg.set(1)  # revision 1
    db.low.set(1)  # revision 2
    task = asyncio.create_task(db.mixed())
    await asyncio.sleep(0)  # mixed() and high() are running at revision 2 ...
    db.unrelated.set(1)  # ... when revision 3 arrives: their memos are installed not "clean"
    assert await task == 2
    assert await db.mixed() == 2  # revision 3: deep verify; high() is valid through durability
    snap = picante.snapshot(db)  # at revision 3, where high()'s memo is valid
    db.cfg.set(2)  # revision 4
    log.clear()
    assert await snap.high() == 1
    assert log == []  # fails: ['high()']


async def test_control_snapshot_reuses_clean_memo() -> None:
    """Control: a clean memo is reused by a snapshot after the database moved on."""
    log: list[str] = []

    @picante.database
    class DB:
        @picante.input(durability=picante.Durability.HIGH)
        async def cfg(self) -> int: ...

        @picante.query
        async def high(self) -> int:
            log.append("high()")
            return await self.cfg()

    db = DB()
    db.cfg.set(1)
    assert await db.high() == 1
    snap = picante.snapshot(db)
    db.cfg.set(2)
    assert await db.high() == 2
    log.clear()
    assert await snap.high() == 1
    assert log == []
