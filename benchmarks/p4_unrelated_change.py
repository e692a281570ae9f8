"""
P4: the chain of P3; change an unrelated input and await the tail.

Nothing the chain reads changed, so the tail's memo is still valid; picante knows it
without walking the chain (its memos are `clean`), so the cost should not grow with the
depth. The figure is one `other.set(v)` plus one `await db.step(depth - 1)`, at three
depths, all measured alternately in one comparison. Peers: reaktiv (re-checks its
dependencies, which grows with depth) and observ.

Goals: depth 1000 costs ≤ 2 times depth 10 (flat), and ≤ 0.1 times reaktiv at depth 100.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ._chain import executions, observ_chain, picante_chain, reaktiv_chain
from ._harness import Check, Profile, Row, compare, deep_recursion, load_peer, ratio_check, verify


if TYPE_CHECKING:
    from ._chain import Chain, SyncChain
    from ._harness import Case


__all__ = ["run"]

PEERS = ("observ", "reaktiv")


def _picante_case(db: Chain, depth: int) -> Case:
    clock = time.perf_counter_ns
    last = depth - 1
    counter = [0]

    async def case(n: int) -> int:
        first = counter[0] + 1
        counter[0] += n
        start = clock()
        for value in range(first, first + n):
            db.other.set(value)
            await db.step(last)
        return clock() - start

    return case


def _sync_case(chain: SyncChain) -> Case:
    clock = time.perf_counter_ns
    counter = [0]

    async def case(n: int) -> int:
        set_other, tail = chain.set_other, chain.tail
        first = counter[0] + 1
        counter[0] += n
        start = clock()
        for value in range(first, first + n):
            set_other(value)
            tail()
        return clock() - start

    return case


async def _main(profile: Profile, depths: tuple[int, int, int]) -> list[Row]:
    cases: dict[str, Case] = {}
    for depth in depths:
        db = await picante_chain(depth)
        before = executions(db)
        db.other.set(-1)
        verify(await db.step(depth - 1) == depth - 1, "picante chain value")
        verify(executions(db) == before, "an unrelated change recomputes nothing")
        cases[f"picante@{depth}"] = _picante_case(db, depth)
        for name, build in (("observ", observ_chain), ("reaktiv", reaktiv_chain)):
            module = load_peer(name)
            if module is None:
                continue
            chain = build(module, depth)
            chain.set_other(-1)
            verify(chain.tail() == depth - 1, f"{name} chain value")
            cases[f"{name}@{depth}"] = _sync_case(chain)

    ns = await compare(cases, profile, max_ops=1_000_000)
    shallow, middle, deep = depths
    rows: list[Row] = []
    for depth in depths:
        pic = ns[f"picante@{depth}"]
        peers = {name: ns.get(f"{name}@{depth}") for name in PEERS}
        checks: list[Check] = []
        if depth == middle:
            checks.append(
                ratio_check(
                    "≤ 0.1x reaktiv", pic, peers["reaktiv"], 0.1, missing="reaktiv not installed"
                )
            )
        if depth == deep:
            checks.append(ratio_check(f"≤ 2x depth {shallow}", pic, ns[f"picante@{shallow}"], 2.0))
        rows.append(Row(f"P4 chain {depth}: unrelated change", pic, peers, checks))
    return rows


def run(*, quick: bool = False) -> list[Row]:
    """Measure P4; return its result rows."""
    depths = (5, 10, 50) if quick else (10, 100, 1_000)
    with deep_recursion(depths[-1] * 10 + 1_000):
        return asyncio.run(_main(Profile.of(quick=quick), depths))
