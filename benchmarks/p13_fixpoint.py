"""
P13, the fixpoint part: five mutually recursive variables iterated to convergence.

The shape of a dataflow analysis over a set lattice. `var(i)` is the set of values that
variable i may hold: its seed (an input), every value of `var(i + 1)` shifted by
`SHIFT[i]` if the result stays below `bound()`, and every value of `var(i + 3)` halved
(indices modulo 5). Each variable reads two others, so the five form one strongly
connected component. `var` declares `cycle_initial` (the empty set): the bodies are
monotone and the sets bounded, so the head iterates until no value changes. `bound()` is
an ordinary query over the input `limit` that every variable reads, as a real analysis
reads the program it analyses: a memo outside the cycle that the cycle depends on.

Rows, in time per operation (the bodies each one ran, counted with
`picante.debug.stats(db).executions`, are in the row's label):

* **cold**: a fresh database, its inputs set outside the clock, then `await db.var(0)`;
* **no-op re-read**: `await db.var(0)` again, nothing changed: a memo hit;
* **unrelated edit + re-read**: `other.set(v)`, an input nothing reads, then
  `await db.var(0)`: the converged component is revalidated as one, and no body runs;
* **edit inside the cycle + re-read**: `seed.set(2, …)`, alternating between two seeds,
  then `await db.var(0)`: the cycle iterates again.

*plain* is the same `step` function in a round-robin loop (Gauss-Seidel: update each
variable in turn from the others' latest values, until a round changes none), from
scratch every time, since it keeps nothing between runs; it is shown for the cold
fixpoint and for the two edits, and each label gives picante's time as a multiple of it.

BENCHMARKS.md sets no goal for the fixpoint part beyond correctness: the only check is
that the unrelated edit runs no body. Every value picante computes is compared with the
plain loop's first.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import picante

from ._harness import Check, Profile, Row, compare, verify


if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._harness import Case


__all__ = ["run"]

N = 5
SHIFT = (37, 53, 71, 89, 97)
"""What `var(i)` adds to the values of `var(i + 1)`."""
SEEDS = tuple(frozenset({i * 7 + 1, i * 13 + 5}) for i in range(N))
EDITED = frozenset({16, 31})
"""The seed of `var(2)` that the edit inside the cycle alternates with `SEEDS[2]`."""


def step(
    i: int, seed: frozenset[int], after: frozenset[int], later: frozenset[int], bound: int
) -> frozenset[int]:
    """Variable *i*'s equation, given the values of `var(i + 1)` (*after*) and `var(i + 3)`."""
    out = set(seed)
    shift = SHIFT[i]
    for x in after:
        y = x + shift
        if y < bound:
            out.add(y)
    for x in later:
        out.add(x // 2)
    return frozenset(out)


def nothing(db: object, i: int) -> frozenset[int]:
    """`var`'s initial value: the bottom of the lattice."""
    return frozenset()


@picante.database(name="benchmarks.p13.Dataflow")
class Dataflow:
    """Five variables, each a function of two others (see the module docstring)."""

    @picante.input
    async def seed(self, i: int) -> frozenset[int]:
        raise NotImplementedError

    @picante.input
    async def limit(self) -> int:
        raise NotImplementedError

    @picante.input
    async def other(self) -> int:
        raise NotImplementedError

    @picante.query
    async def bound(self) -> int:
        return await self.limit()

    @picante.query(cycle_initial=nothing)
    async def var(self, i: int) -> frozenset[int]:
        return step(
            i,
            await self.seed(i),
            await self.var((i + 1) % N),
            await self.var((i + 3) % N),
            await self.bound(),
        )


def plain(seeds: Sequence[frozenset[int]], bound: int) -> tuple[list[frozenset[int]], int]:
    """The fixpoint by a round-robin loop from the empty sets; and the equations evaluated."""
    values = [frozenset[int]()] * N
    bodies = 0
    changed = True
    while changed:
        changed = False
        for i in range(N):
            bodies += 1
            value = step(i, seeds[i], values[(i + 1) % N], values[(i + 3) % N], bound)
            if value != values[i]:
                values[i] = value
                changed = True
    return values, bodies


def fresh(bound: int) -> Dataflow:
    """A database with the inputs set, nothing evaluated."""
    db = Dataflow()
    with picante.batch(db):
        for i, seed in enumerate(SEEDS):
            db.seed.set(i, seed)
        db.limit.set(bound)
        db.other.set(0)
    return db


def executions(db: object) -> int:
    """The bodies *db* has run."""
    return picante.debug.stats(db).executions


async def _main(profile: Profile, bound: int) -> list[Row]:
    clock = time.perf_counter_ns
    expected, plain_bodies = plain(SEEDS, bound)
    edited_seeds = [*SEEDS[:2], EDITED, *SEEDS[3:]]
    edited, _ = plain(edited_seeds, bound)
    db = fresh(bound)
    verify(await db.var(0) == expected[0], "the cold fixpoint is the plain loop's")
    verify([await db.var(i) for i in range(N)] == expected, "every variable's fixpoint")
    cold_bodies = executions(db)
    before = executions(db)
    await db.var(0)
    verify(executions(db) == before, "a re-read with nothing changed is a memo hit")
    db.seed.set(2, EDITED)
    verify([await db.var(i) for i in range(N)] == edited, "the fixpoint after an edit")
    db.seed.set(2, SEEDS[2])
    verify([await db.var(i) for i in range(N)] == expected, "the fixpoint after undoing it")

    # Bodies run by the timed operations, per case: (bodies, operations).
    counted: dict[str, list[int]] = {}

    def count(name: str, bodies: int, n: int) -> None:
        total = counted.setdefault(name, [0, 0])
        total[0] += bodies
        total[1] += n

    async def cold_case(n: int) -> int:
        dbs = [fresh(bound) for _ in range(n)]
        start = clock()
        for each in dbs:
            await each.var(0)
        elapsed = clock() - start
        count("cold", sum(executions(each) for each in dbs), n)
        return elapsed

    async def plain_case(n: int) -> int:
        start = clock()
        for _ in range(n):
            plain(SEEDS, bound)
        return clock() - start

    async def noop_case(n: int) -> int:
        before = executions(db)
        start = clock()
        for _ in range(n):
            await db.var(0)
        elapsed = clock() - start
        count("noop", executions(db) - before, n)
        return elapsed

    tick = [0]

    async def unrelated_case(n: int) -> int:
        before = executions(db)
        other = db.other
        start = clock()
        for _ in range(n):
            tick[0] += 1
            other.set(tick[0])
            await db.var(0)
        elapsed = clock() - start
        count("unrelated", executions(db) - before, n)
        return elapsed

    seeds = (EDITED, SEEDS[2])
    flip = [0]

    async def edit_case(n: int) -> int:
        before = executions(db)
        seed = db.seed
        start = clock()
        for _ in range(n):
            flip[0] ^= 1
            seed.set(2, seeds[flip[0]])
            await db.var(0)
        elapsed = clock() - start
        count("edit", executions(db) - before, n)
        return elapsed

    cases: dict[str, Case] = {
        "cold": cold_case,
        "plain": plain_case,
        "noop": noop_case,
        "unrelated": unrelated_case,
        "edit": edit_case,
    }
    ns = await compare(cases, profile, max_ops=100_000)
    verify([await db.var(i) for i in range(N)] in (expected, edited), "the values after timing")

    def bodies(name: str) -> float:
        total, ops = counted[name]
        return total / ops

    def shown(count: float) -> str:
        return f"{count:.0f}" if count == round(count) else f"{count:.1f}"

    def times(name: str) -> str:
        ratio = ns[name] / ns["plain"]
        return f"{ratio:.1f}x plain" if ratio >= 1 else f"{ratio:.2f}x plain"

    unrelated = bodies("unrelated")
    return [
        Row(
            f"P13 fixpoint: cold, 5 variables to convergence ({cold_bodies} bodies; plain "
            f"{plain_bodies}; {times('cold')})",
            ns["cold"],
            {"plain": ns["plain"]},
        ),
        Row(
            f"P13 fixpoint: no-op re-read ({shown(bodies('noop'))} bodies)",
            ns["noop"],
            {},
        ),
        Row(
            f"P13 fixpoint: unrelated edit + re-read ({shown(unrelated)} bodies; "
            f"{times('unrelated')})",
            ns["unrelated"],
            {"plain": ns["plain"]},
            # As P12 counts: 1 + the bodies run, at most 1.
            [Check("no body runs", unrelated + 1.0, 1.0)],
        ),
        Row(
            f"P13 fixpoint: edit inside the cycle + re-read ({shown(bodies('edit'))} bodies; "
            f"{times('edit')})",
            ns["edit"],
            {"plain": ns["plain"]},
        ),
    ]


def run(*, quick: bool = False) -> list[Row]:
    """Measure the fixpoint part of P13; return its result rows."""
    return asyncio.run(_main(Profile.of(quick=quick), 120 if quick else 300))
