"""
The chain of P3 and P4, in picante and in each peer.

`step(n)` awaits `step(n - 1)` and adds one; `step(0)` reads the input `source`. A second
input, `other`, is read by nothing: changing it is the unrelated change of P4. Every
chain is built bottom-up (step 0 first), so no evaluation recurses through the whole
chain; the peers still recurse when they re-read, hence `deep_recursion` in the scenarios.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import picante


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import ModuleType

    from ._harness import Case


__all__ = [
    "Chain",
    "SyncChain",
    "change_and_await",
    "change_and_call",
    "executions",
    "observ_chain",
    "picante_chain",
    "plain_chain",
    "reaktiv_chain",
]


@picante.database
class Chain:
    """A chain of queries over one input, plus an input nothing reads."""

    @picante.input
    async def source(self) -> int:
        raise NotImplementedError

    @picante.input
    async def other(self) -> int:
        raise NotImplementedError

    @picante.query
    async def step(self, n: int) -> int:
        if n == 0:
            return await self.source()
        return await self.step(n - 1) + 1


def executions(db: object) -> int:
    """How many query bodies *db* has run (picante's own counter)."""
    return int(vars(db)["__picante__"].counters.executions)


async def picante_chain(depth: int) -> Chain:
    """A `Chain` with steps 0 … depth - 1 evaluated, bottom-up, at source = other = 0."""
    db = Chain()
    db.source.set(0)
    db.other.set(0)
    for n in range(depth):
        await db.step(n)
    return db


@dataclass(frozen=True)
class SyncChain:
    """A peer's chain: set the source, set the unrelated input, read the tail."""

    set_source: Callable[[int], None]
    set_other: Callable[[int], None]
    tail: Callable[[], int]


def plain_chain(depth: int) -> tuple[dict[str, int], Callable[[], Awaitable[int]]]:
    """The same functions with no framework: every read of the tail recomputes the chain."""
    state = {"source": 0}

    async def step(n: int) -> int:
        if n == 0:
            return state["source"]
        return await step(n - 1) + 1

    async def tail() -> int:
        return await step(depth - 1)

    return state, tail


def observ_chain(observ: ModuleType, depth: int) -> SyncChain:
    """The chain as observ computed values over two reactive dicts."""
    source = observ.reactive({"v": 0})
    other = observ.reactive({"v": 0})
    steps: list[Any] = [observ.computed(lambda: source["v"])]
    for _ in range(1, depth):
        steps.append(observ.computed(lambda prev=steps[-1]: prev() + 1))
    for step in steps:
        step()

    def set_source(value: int) -> None:
        source["v"] = value

    def set_other(value: int) -> None:
        other["v"] = value

    return SyncChain(set_source, set_other, steps[-1])


def reaktiv_chain(reaktiv: ModuleType, depth: int) -> SyncChain:
    """The chain as reaktiv computed signals over two signals."""
    source = reaktiv.Signal(0)
    other = reaktiv.Signal(0)

    def first() -> int:
        return int(source())

    steps: list[Any] = [reaktiv.Computed(first)]
    for _ in range(1, depth):
        steps.append(reaktiv.Computed(lambda prev=steps[-1]: prev() + 1))
    for step in steps:
        step()
    return SyncChain(source.set, other.set, steps[-1])


def change_and_await(
    change: Callable[[int], object], read: Callable[[], Awaitable[object]]
) -> Case:
    """A case whose operation is `change(v)` with a fresh value, then `await read()`."""
    clock = time.perf_counter_ns
    counter = [0]

    async def case(n: int) -> int:
        first = counter[0] + 1
        counter[0] += n
        start = clock()
        for value in range(first, first + n):
            change(value)
            await read()
        return clock() - start

    return case


def change_and_call(change: Callable[[int], object], read: Callable[[], object]) -> Case:
    """The same for a synchronous peer: `change(v)`, then `read()`."""
    clock = time.perf_counter_ns
    counter = [0]

    async def case(n: int) -> int:
        first = counter[0] + 1
        counter[0] += n
        start = clock()
        for value in range(first, first + n):
            change(value)
            read()
        return clock() - start

    return case
