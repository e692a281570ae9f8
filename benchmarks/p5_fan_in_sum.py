"""
P5: one query sums 1,000 inputs; change one input and await the sum.

The figure is one `n.set(k, v)` plus one `await db.total()`: the sum is recomputed, so
it reads all 1,000 inputs again, each read recorded as a dependency. Peers: observ (a
computed value over a reactive dict, read key by key, so each key is its own
dependency), reaktiv (a computed signal over 1,000 signals), shiny (an async
`reactive.calc` over 1,000 `reactive.value`s, read under `reactive.isolate()` as shiny
requires), and plain Python (the same `async def` sum with no memo: the floor).

Goal: below observ, shiny and reaktiv.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import picante

from ._chain import change_and_await, executions
from ._harness import Profile, Row, compare, load_peer, ratio_check, verify


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import ModuleType

    from ._harness import Case


__all__ = ["run"]

PEERS = ("plain", "observ", "reaktiv", "shiny")
GOAL_PEERS = ("observ", "shiny", "reaktiv")


def _make_db(size: int) -> Any:
    @picante.database
    class Sum:
        @picante.input
        async def n(self, k: int) -> int:
            raise NotImplementedError

        @picante.query
        async def total(self) -> int:
            result = 0
            for k in range(size):
                result += await self.n(k)
            return result

    db = Sum()
    with picante.batch(db):
        for k in range(size):
            db.n.set(k, k)
    return db


def _sync_read(read: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    """Wrap a synchronous peer read in a coroutine, as the timed loop awaits every read."""

    async def aread() -> object:
        return read()

    return aread


def _observ(observ: ModuleType, size: int, changed: int) -> tuple[Callable[..., Any], ...]:
    state = observ.reactive({k: k for k in range(size)})

    def total() -> int:
        result = 0
        for k in range(size):
            result += state[k]
        return result

    computed = observ.computed(total)

    def set_one(value: int) -> None:
        state[changed] = value

    return set_one, computed


def _reaktiv(reaktiv: ModuleType, size: int, changed: int) -> tuple[Callable[..., Any], ...]:
    signals = [reaktiv.Signal(k) for k in range(size)]

    def total() -> int:
        result = 0
        for signal in signals:
            result += signal()
        return result

    return signals[changed].set, reaktiv.Computed(total)


def _shiny(reactive: ModuleType, size: int, changed: int) -> tuple[Callable[..., Any], ...]:
    values = [reactive.value(k) for k in range(size)]

    @reactive.calc
    async def total() -> int:
        result = 0
        for value in values:
            result += value()
        return result

    isolate = reactive.isolate

    async def read() -> int:
        # A calc can only be read inside a reactive context; isolate() makes one.
        with isolate():
            return int(await total())

    return values[changed].set, read


async def _main(profile: Profile, size: int) -> list[Row]:
    changed = size // 2
    expected = size * (size - 1) // 2

    db = _make_db(size)
    verify(await db.total() == expected, "picante sum")
    before = executions(db)
    db.n.set(changed, changed - 1)
    verify(await db.total() == expected - 1, "picante sum after a change")
    verify(executions(db) == before + 1, "one change recomputes the sum once")

    def set_input(value: int) -> None:
        db.n.set(changed, value)

    cases: dict[str, Case] = {"picante": change_and_await(set_input, db.total)}

    inputs = list(range(size))

    async def plain_n(k: int) -> int:
        return inputs[k]

    async def plain_total() -> int:
        n = plain_n
        result = 0
        for k in range(size):
            result += await n(k)
        return result

    def set_plain(value: int) -> None:
        inputs[changed] = value

    verify(await plain_total() == expected, "plain sum")
    cases["plain"] = change_and_await(set_plain, plain_total)

    for name, build in (("observ", _observ), ("reaktiv", _reaktiv)):
        module = load_peer(name)
        if module is None:
            continue
        set_one, read = build(module, size, changed)
        verify(read() == expected, f"{name} sum")
        set_one(changed - 1)
        verify(read() == expected - 1, f"{name} sum after a change")
        cases[name] = change_and_await(set_one, _sync_read(read))

    reactive = load_peer("shiny")
    if reactive is not None:
        set_one, read = _shiny(reactive, size, changed)
        verify(await read() == expected, "shiny sum")
        set_one(changed - 1)
        verify(await read() == expected - 1, "shiny sum after a change")
        cases["shiny"] = change_and_await(set_one, read)

    ns = await compare(cases, profile)
    pic = ns["picante"]
    peers = {name: ns.get(name) for name in PEERS}
    checks = [
        ratio_check(
            f"< {name}", pic, peers[name], 1.0, strict=True, missing=f"{name} not installed"
        )
        for name in GOAL_PEERS
    ]
    return [Row(f"P5 sum of {size:,} inputs: change one", pic, peers, checks)]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P5; return its result rows."""
    return asyncio.run(_main(Profile.of(quick=quick), 100 if quick else 1_000))
