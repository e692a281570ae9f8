"""Durability: memos over durable inputs revalidate in O(1) after less durable changes."""

from __future__ import annotations

import asyncio
from typing import Any

import picante


TIMEOUT = 5


def make_build(
    log: list[str] | None = None,
    gate: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> Any:
    log = [] if log is None else log

    @picante.database
    class Build:
        @picante.input(durability=picante.Durability.HIGH)
        async def toolchain(self) -> str: ...

        @picante.input(durability=picante.Durability.MEDIUM)
        async def flags(self) -> str: ...

        @picante.input
        async def source(self, path: str) -> str: ...

        @picante.query
        async def compiler(self) -> str:
            log.append("compiler()")
            if gate is not None and started is not None:
                started.set()
                await gate.wait()
            return f"cc-{await self.toolchain()}"

        @picante.query
        async def command(self) -> str:
            log.append("command()")
            return f"{await self.compiler()} {await self.flags()}"

        @picante.query
        async def obj(self, path: str) -> str:
            log.append(f"obj({path!r})")
            return f"{await self.command()} {await self.source(path)}"

    return Build()


async def test_durability_of_memo_is_minimum_of_its_reads(log: list[str]) -> None:
    """A memo is as durable as the least durable thing it read."""
    db = make_build(log)
    db.toolchain.set("1")
    db.flags.set("-O2")
    db.source.set("a.c", "int a;")
    await db.obj("a.c")
    cells = db.__picante__.tables
    assert cells["compiler"][()].durability == picante.Durability.HIGH
    assert cells["command"][()].durability == picante.Durability.MEDIUM
    assert cells["obj"][("a.c",)].durability == picante.Durability.LOW


async def test_less_durable_changes_cost_no_dependency_checks() -> None:
    """After LOW changes, memos over HIGH/MEDIUM inputs are reused with zero checks."""
    db = make_build()
    db.toolchain.set("1")
    db.flags.set("-O2")
    db.source.set("a.c", "int a;")
    assert await db.command() == "cc-1 -O2"
    view = db.__picante__
    checks = view.counters.dependency_checks
    with picante.testing.assert_nothing_runs(db) as log:
        for i in range(100):
            db.source.set("a.c", f"int a{i};")
            assert await db.command() == "cc-1 -O2"
    assert view.counters.dependency_checks == checks
    assert log.verified == set()  # clean: not even revalidated
    db.flags.set("-O3")
    with picante.testing.record(db) as log:
        assert await db.command() == "cc-1 -O3"
    assert log.executed == ["command()"]
    assert log.verified == set()  # compiler() read nothing that changed: clean, no check


async def test_durability_revalidates_a_memo_push_cannot_vouch_for() -> None:
    """
    A HIGH memo finished after a LOW change is not clean, yet it is revalidated in O(1)
    by its durability, without looking at its dependencies.
    """
    gate, started = asyncio.Event(), asyncio.Event()
    db = make_build(gate=gate, started=started)
    db.toolchain.set("1")
    db.source.set("a.c", "x")
    with picante.testing.record(db) as log:
        task = asyncio.create_task(db.compiler())
        await asyncio.wait_for(started.wait(), TIMEOUT)
        db.source.set("a.c", "y")  # LOW change while compiler() runs at the older revision
        gate.set()
        assert await asyncio.wait_for(task, TIMEOUT) == "cc-1"
    assert log.executed == ["compiler()"]
    cell = db.__picante__.tables["compiler"][()]
    assert (cell.clean, cell.verified_at) == (False, 2)
    checks = db.__picante__.counters.dependency_checks
    with picante.testing.assert_nothing_runs(db) as log:
        assert await db.compiler() == "cc-1"
    assert db.__picante__.counters.dependency_checks == checks
    assert log.verified == {"compiler()"}  # by its durability, at revision 3


async def test_durable_change_still_invalidates(log: list[str]) -> None:
    """Durability never changes results: a HIGH change recomputes what read it."""
    db = make_build(log)
    db.toolchain.set("1")
    db.flags.set("-O2")
    db.source.set("a.c", "int a;")
    assert await db.obj("a.c") == "cc-1 -O2 int a;"
    log.clear()
    db.toolchain.set("2")
    assert await db.obj("a.c") == "cc-2 -O2 int a;"
    assert log == ["compiler()", "command()", "obj('a.c')"]
