"""
P8: memory per evaluated memo with one dependency edge, key and value objects excluded.

`q(k)` reads one input `n(k)` and returns its value. The inputs are set first; then,
between two `tracemalloc` measurements of the live heap (each after `gc.collect()`),
`q(k)` is evaluated for 10,000 keys (200 with `--quick`) from outside any query, so no
reader records an edge to them. The difference divided by the count is the memory of one
memo: its record, its slot in the query's table, its dependency edge both ways, and
whatever else picante keeps. (The table is a dict, so its share per memo depends on where
in the dict's growth cycle the count falls: about 30 to 55 bytes.) Excluded: the key ints
and values exist before the first measurement (the query returns the input's own value
object), and the key tuple each call builds (`(k,)`) is measured the same way on its own
and subtracted.

Peers, where installed, are measured the same way: one computed node per key over one
pre-made source each (reaktiv `Computed` over a `Signal`, observ `computed` over a key of
a reactive dict, shiny async `reactive.calc` over a `reactive.value`), created and
evaluated between the measurements, including the per-node closure their APIs need.
shiny can only read a calc inside a reactive context, so it reads them all under one
shared context, whose registration with each calc is counted too; it is measured over
2,000 nodes only (well over 10,000 objects), because its calc constructor reads the
function's source with `inspect`, which takes about 2 ms a node under tracemalloc (the
figure per node is the same at 2,000 and at 10,000).

Goal: ≤ 400 bytes per memo.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import TYPE_CHECKING, Any

import picante
from picante._store import deps_of

from ._harness import Check, Row, load_peer, verify


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import ModuleType


__all__ = ["run"]

PEERS = ("observ", "reaktiv", "shiny")
# shiny's nodes are expensive to make under tracemalloc; each holds a dozen objects or more.
SHINY_NODES = 2_000
# Keys above CPython's cached small ints, so every key is an object of its own.
FIRST_KEY = 1_000


@picante.database
class Memos:
    @picante.input
    async def n(self, k: int) -> int:
        raise NotImplementedError

    @picante.query
    async def q(self, k: int) -> int:
        return await self.n(k)


def _live_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _measure(build: Callable[[], Awaitable[None]]) -> int:
    """Bytes that stay allocated by `await build()` (what it built is kept alive)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = _live_bytes()
        await build()
        after = _live_bytes()
    finally:
        tracemalloc.stop()
    return after - before


async def _picante(keys: list[int]) -> int:
    db = Memos()
    with picante.batch(db):
        for k in keys:
            db.n.set(k, k)
    # The first evaluation creates the query's table and warms up the code paths.
    verify(await db.q(keys[0]) == keys[0], "picante memo")
    rest = keys[1:]

    async def evaluate() -> None:
        q = db.q
        for k in rest:
            await q(k)

    total = await _measure(evaluate)
    table = vars(db)["__picante__"].tables["q"]
    verify(len(table) == len(keys), "one memo per key")
    verify(all(len(deps_of(cell)) == 1 for cell in table.values()), "one dependency edge each")

    slots: list[object] = [None] * len(rest)

    async def tuples() -> None:
        # The key tuples the handle builds, in a list that exists already.
        for index, k in enumerate(rest):
            slots[index] = (k,)

    key_bytes = await _measure(tuples)
    return round((total - key_bytes) / len(rest))


async def _nodes(
    count: int,
    make: Callable[[int, list[Any]], None],
    evaluate: Callable[[list[Any]], Awaitable[None]],
) -> int:
    """Bytes per node: *make* fills a ready list with nodes, *evaluate* evaluates them."""
    # One node made and evaluated first, as picante's first memo: lazy imports and caches.
    warm: list[Any] = [None]
    make(0, warm)
    await evaluate(warm)
    nodes: list[Any] = [None] * count

    async def build() -> None:
        for index in range(count):
            make(index, nodes)
        await evaluate(nodes)

    return round(await _measure(build) / count)


async def _reaktiv(reaktiv: ModuleType, keys: list[int]) -> int:
    signals = [reaktiv.Signal(k) for k in keys]

    def make(index: int, nodes: list[Any]) -> None:
        nodes[index] = reaktiv.Computed(lambda signal=signals[index]: signal())

    async def evaluate(nodes: list[Any]) -> None:
        for node in nodes:
            node()

    return await _nodes(len(keys), make, evaluate)


async def _observ(observ: ModuleType, keys: list[int]) -> int:
    state = observ.reactive({k: k for k in keys})

    def make(index: int, nodes: list[Any]) -> None:
        nodes[index] = observ.computed(lambda k=keys[index]: state[k])

    async def evaluate(nodes: list[Any]) -> None:
        for node in nodes:
            node()

    return await _nodes(len(keys), make, evaluate)


async def _shiny(reactive: ModuleType, keys: list[int]) -> int:
    # Each calc's constructor reads its function's source (`inspect`), about 2 ms under
    # tracemalloc: fewer nodes keep the run short, and the figure per node is the same.
    keys = keys[:SHINY_NODES]
    values = [reactive.value(k) for k in keys]
    context = reactive.Context()

    def make(index: int, nodes: list[Any]) -> None:
        value = values[index]

        async def node() -> int:
            return int(value())

        nodes[index] = reactive.calc(node)

    async def evaluate(nodes: list[Any]) -> None:
        with context():
            for node in nodes:
                await node()

    return await _nodes(len(keys), make, evaluate)


async def _main(count: int) -> list[Row]:
    keys = list(range(FIRST_KEY, FIRST_KEY + count))
    pic = await _picante(keys)
    peers: dict[str, float | None] = {}
    for name, measure in (("observ", _observ), ("reaktiv", _reaktiv), ("shiny", _shiny)):
        module = load_peer(name)
        peers[name] = None if module is None else await measure(module, keys)
    return [
        Row(
            f"P8 memory per memo, 1 edge ({count:,} memos)",
            pic,
            peers,
            [Check("≤ 400 bytes per memo", pic / 400, 1.0)],
            unit="bytes",
        )
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure P8; return its result rows (the figures are bytes, not nanoseconds)."""
    return asyncio.run(_main(200 if quick else 10_000))
