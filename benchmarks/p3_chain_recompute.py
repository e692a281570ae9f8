"""
P3: a chain of queries over one input; change the input and await the tail.

Every query of the chain recomputes (each value changes), so the figure is the time of
one `source.set(v)` plus one `await db.step(depth - 1)`, divided by the depth: the cost
per recomputed query. Peers: observ and reaktiv (the same chain as computed values), and
plain Python (the same `async def` chain with no memo, the floor for the work).

Goals: ≤ 1.0 µs per recomputed query, and below observ and reaktiv.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from ._chain import (
    change_and_await,
    change_and_call,
    executions,
    observ_chain,
    picante_chain,
    plain_chain,
    reaktiv_chain,
)
from ._harness import (
    Check,
    Profile,
    Row,
    Sweep,
    compare,
    deep_recursion,
    load_peer,
    ratio_check,
    verify,
)


if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._harness import Case


__all__ = ["run", "sweep"]

PEERS = ("plain", "observ", "reaktiv")


async def _cases(depth: int, names: list[str]) -> dict[str, Case]:
    """The contenders at *depth*, keyed `name@depth`; appends the installed ones to *names*."""
    last = depth - 1

    db = await picante_chain(depth)
    before = executions(db)
    db.source.set(-1)
    verify(await db.step(last) == last - 1, "picante chain value")
    verify(executions(db) == before + depth, "every step recomputes")
    picante_case = change_and_await(db.source.set, partial(db.step, last))

    state, plain_tail = plain_chain(depth)
    plain_case = change_and_await(partial(state.__setitem__, "source"), plain_tail)

    cases: dict[str, Case] = {f"picante@{depth}": picante_case, f"plain@{depth}": plain_case}
    for name, build in (("observ", observ_chain), ("reaktiv", reaktiv_chain)):
        module = load_peer(name)
        if module is None:
            continue
        chain = build(module, depth)
        chain.set_source(-1)
        verify(chain.tail() == last - 1, f"{name} chain value")
        cases[f"{name}@{depth}"] = change_and_call(chain.set_source, chain.tail)
    names += [name for name in ("picante", *PEERS) if f"{name}@{depth}" in cases]
    return cases


async def _measure(profile: Profile, depths: Sequence[int]) -> dict[str, dict[int, float]]:
    """Nanoseconds per recomputed query: contender -> depth -> ns, all timed alternately."""
    cases: dict[str, Case] = {}
    names: list[str] = []
    for depth in depths:
        cases.update(await _cases(depth, names))
    ns = await compare(cases, profile)
    return {
        name: {depth: ns[f"{name}@{depth}"] / depth for depth in depths}
        for name in dict.fromkeys(names)
    }


def _rows(series: dict[str, dict[int, float]], depth: int) -> list[Row]:
    pic = series["picante"][depth]
    peers = {name: series[name][depth] if name in series else None for name in PEERS}
    checks = [Check("≤ 1.0 µs per query", pic / 1_000, 1.0)]
    checks += [
        ratio_check(
            f"< {name}", pic, peers[name], 1.0, strict=True, missing=f"{name} not installed"
        )
        for name in ("observ", "reaktiv")
    ]
    return [Row(f"P3 chain {depth}: recompute all, per query", pic, peers, checks)]


def _run(profile: Profile, depths: Sequence[int]) -> dict[str, dict[int, float]]:
    with deep_recursion(max(depths) * 10 + 1_000):
        return asyncio.run(_measure(profile, depths))


def run(*, quick: bool = False) -> list[Row]:
    """Measure P3; return its result rows."""
    depth = 20 if quick else 100
    return _rows(_run(Profile.of(quick=quick), (depth,)), depth)


def sweep(*, quick: bool = False) -> Sweep:
    """Measure P3 at several chain depths, for the plot of cost against depth."""
    depths = (5, 10, 20) if quick else (10, 30, 100, 300, 1_000)
    series = _run(Profile.of(quick=quick), depths)
    return Sweep(
        scenario="p3",
        title="Change the input of a chain, await the tail (every query recomputes)",
        xlabel="chain depth (queries)",
        ylabel="time per recomputed query",
        sizes=depths,
        series={name: tuple(by_depth[d] for d in depths) for name, by_depth in series.items()},
        missing=tuple(name for name in PEERS if name not in series),
        goal=(1_000.0, "1.0 µs per query"),
    )
