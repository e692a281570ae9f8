"""
Cycles that resolve: fixpoint iteration (`cycle_initial`, `cycle_fn`) and fallbacks
(`cycle_fallback`). Scenarios after Salsa's `tests/cycle.rs`, `cycle_result_*.rs` and
`cycle_fallback_immediate.rs`, with call logs pinning what ran.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import pickle
from typing import Any, cast

import pytest

import picante
from picante._runtime import take, view_of
from picante._store import QueryCell


TIMEOUT = 5


def empty(db: object, node: str) -> frozenset[str]:
    return frozenset()


@picante.database
class Graph:
    """Reachability over edges that may form cycles: a monotone fixpoint."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.input
    async def edges(self, node: str) -> tuple[str, ...]:
        raise NotImplementedError

    @picante.query(cycle_initial=empty)
    async def reach(self, node: str) -> frozenset[str]:
        self.log.append(node)
        out = {node}
        for successor in await self.edges(node):
            out |= await self.reach(successor)
        return frozenset(out)


def graph(**edges: str) -> Graph:
    db = Graph()
    with picante.batch(db):
        for node, successors in edges.items():
            db.edges.set(node, tuple(successors))
    return db


async def run(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, TIMEOUT)


async def test_a_cycle_converges_and_its_memos_are_final() -> None:
    """x → y → x: two iterations, then every memo of the cycle is a hit."""
    db = graph(x="y", y="zx", z="")
    assert await run(db.reach("x")) == {"x", "y", "z"}
    # Iteration 0 reads reach(x) = {} inside y; iteration 1 confirms {x, y, z}.
    assert db.log == ["x", "y", "z", "x", "y"]
    db.log.clear()
    assert await run(db.reach("y")) == {"x", "y", "z"}
    assert await run(db.reach("x")) == {"x", "y", "z"}
    assert db.log == []


async def test_the_result_does_not_depend_on_the_entry_point() -> None:
    """Entered at any participant that opted in, the fixpoint is the same."""
    for first in ("x", "y", "z"):
        db = graph(x="y", y="z", z="x")
        assert await run(db.reach(first)) == {"x", "y", "z"}
        assert [await run(db.reach(node)) for node in "xyz"] == [{"x", "y", "z"}] * 3


async def test_an_edit_outside_the_cycle_revalidates_it_without_running_it() -> None:
    """A change no member read leaves the component valid: checked as one, no body runs."""
    db = graph(x="y", y="x", u="")
    await run(db.reach("x"))
    await run(db.reach("u"))
    db.log.clear()
    db.edges.set("u", ("x",))
    assert await run(db.reach("x")) == {"x", "y"}
    assert db.log == []
    assert await run(db.reach("u")) == {"u", "x", "y"}
    assert db.log == ["u"]


async def test_an_edit_inside_the_cycle_iterates_again() -> None:
    """A change a member read re-runs the cycle to its new fixpoint."""
    db = graph(x="y", y="x", z="")
    await run(db.reach("x"))
    db.log.clear()
    db.edges.set("y", ("x", "z"))
    assert await run(db.reach("x")) == {"x", "y", "z"}
    assert db.log == ["x", "y", "z", "x", "y"]
    db.log.clear()
    assert await run(db.reach("y")) == {"x", "y", "z"}
    assert db.log == []


async def test_a_cycle_that_disappears() -> None:
    """Removing the back edge makes the memos plain ones again, with the right values."""
    db = graph(x="y", y="x")
    await run(db.reach("x"))
    db.edges.set("y", ())
    assert await run(db.reach("x")) == {"x", "y"}
    assert await run(db.reach("y")) == {"y"}


@picante.database
class Counter:
    def __init__(self) -> None:
        self.runs = 0

    @picante.input
    async def cap(self) -> int:
        raise NotImplementedError

    @picante.query(cycle_initial=lambda db: 0, max_iterations=10)
    async def count(self) -> int:
        self.runs += 1
        return min(await self.count() + 1, await self.cap())


async def test_a_fixpoint_that_does_not_converge_raises_cycle_error() -> None:
    """Past `max_iterations`, `CycleError` gives the count and the last two values."""
    db = Counter()
    db.cap.set(1000)
    with pytest.raises(picante.CycleError) as info:
        await run(db.count())
    error = info.value
    assert error.iterations == 10
    assert error.last == ("9", "10")
    assert error.path == (("count", ()),)
    assert str(error) == (
        "cycle headed by count() did not converge in 10 iterations; the last two values: 9, 10"
    )
    assert db.runs == 10
    # Memoized for the revision like any error; it pickles with its fields.
    with pytest.raises(picante.CycleError):
        await run(db.count())
    assert db.runs == 10
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.iterations, copy.last, str(copy)) == (10, ("9", "10"), str(error))


async def test_a_self_cycle_converges_under_its_cap() -> None:
    """`count() = min(count() + 1, cap)` reaches the cap, then one more to confirm."""
    db = Counter()
    db.cap.set(3)
    assert await run(db.count()) == 3
    assert db.runs == 4  # it reads 0, 1, 2, then 3 and confirms 3
    db.cap.set(2)
    assert await run(db.count()) == 2


def widen(db: object, iteration: int, previous: int, value: int) -> int:
    """Jump to the top of a small lattice after two iterations."""
    return 100 if iteration >= 2 else value


@picante.database
class Widened:
    @picante.query(cycle_initial=lambda db: 0, cycle_fn=widen)
    async def grow(self) -> int:
        return min(await self.grow() + 1, 100)


async def test_cycle_fn_sees_each_iteration_and_can_widen() -> None:
    """`cycle_fn` replaces the value an iteration computed (here: widening to the top)."""
    assert await run(Widened().grow()) == 100


@picante.database
class Mixed:
    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.query(cycle_initial=lambda db: 0)
    async def a(self) -> int:
        self.log.append("a")
        return min(await self.b() + 1, 3)

    @picante.query
    async def b(self) -> int:
        self.log.append("b")
        return await self.a()


async def test_two_mixed_converge_when_entered_at_the_one_that_opted_in() -> None:
    """Salsa's `two_mixed_converge_initial_value`: a heads the cycle, b follows."""
    db = Mixed()
    assert await run(db.a()) == 3
    assert await run(db.b()) == 3
    assert db.log.count("a") == 4  # a reads 0, 1, 2, then 3 and confirms 3


async def test_two_mixed_entered_at_the_one_that_did_not_opt_in() -> None:
    """Salsa's `two_mixed_panic`: headed by b, the cycle fails and names b."""
    db = Mixed()
    with pytest.raises(picante.CycleError) as info:
        await run(db.b())
    assert info.value.path == (("b", ()), ("a", ()), ("b", ()))
    assert "these do not declare cycle_initial or cycle_fallback: b()" in str(info.value)


@picante.database
class Nested:
    """a ↔ b ↔ c: one component, entered at the outermost; every query opted in."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.query(cycle_initial=lambda db: 0)
    async def a(self) -> int:
        self.log.append("a")
        return min(await self.b(), 5)

    @picante.query(cycle_initial=lambda db: 0)
    async def b(self) -> int:
        self.log.append("b")
        return max(await self.a(), await self.c()) + 0

    @picante.query(cycle_initial=lambda db: 0)
    async def c(self) -> int:
        self.log.append("c")
        return min(await self.b() + 1, 5)


async def test_nested_cycles_converge_as_one_component() -> None:
    """b heads an inner cycle with c inside a's: it does not iterate on its own."""
    db = Nested()
    assert await run(db.a()) == 5
    assert [await run(db.b()), await run(db.c())] == [5, 5]
    runs = {name: db.log.count(name) for name in "abc"}
    # One driver: a runs once per iteration; b and c once per iteration of a each.
    assert runs["a"] == runs["b"] == runs["c"]
    assert runs["a"] <= 8
    db.log.clear()
    assert [await run(db.a()), await run(db.b()), await run(db.c())] == [5, 5, 5]
    assert db.log == []


@picante.database
class FirstOnly:
    """y reads `extra()` only while x's provisional value is the initial one."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.input
    async def extra(self) -> int:
        raise NotImplementedError

    @picante.query(cycle_initial=lambda db: -1)
    async def x(self) -> int:
        self.log.append("x")
        return await self.y()

    @picante.query
    async def y(self) -> int:
        self.log.append("y")
        seen = await self.x()
        if seen == -1:
            return await self.extra()
        return seen


async def test_a_dependency_read_only_in_the_first_iteration_is_kept() -> None:
    """Salsa #834: the memo depends on what every iteration read."""
    db = FirstOnly()
    db.extra.set(7)
    assert await run(db.x()) == 7
    db.log.clear()
    db.extra.set(8)
    assert await run(db.x()) == 8
    assert "x" in db.log


@picante.database
class Fallback:
    def __init__(self) -> None:
        self.log: list[str] = []

    @picante.input
    async def default(self) -> int:
        raise NotImplementedError

    async def _fallback(self) -> int:
        return await self.default()

    @picante.query(cycle_fallback=lambda db: db._fallback())
    async def a(self) -> int:
        self.log.append("a")
        return await self.b() + 1

    @picante.query(cycle_fallback=lambda db: db._fallback())
    async def b(self) -> int:
        self.log.append("b")
        return await self.a()


async def test_fallbacks_whatever_the_entry_point() -> None:
    """Salsa's `cycle_fallback_immediate`: a() == b() == the fallback, entered at either."""
    for first, second in (("a", "b"), ("b", "a")):
        db = Fallback()
        db.default.set(1)
        assert await run(getattr(db, first)()) == 1
        assert await run(getattr(db, second)()) == 1
        # Every participant ran its body to completion once, then took its fallback.
        assert sorted(db.log) == ["a", "b"]


async def test_what_a_fallback_reads_is_a_dependency() -> None:
    """Salsa's `cycle_result_dependencies`: changing the fallback's input changes the result."""
    db = Fallback()
    db.default.set(1)
    assert await run(db.a()) == 1
    db.default.set(2)
    assert await run(db.a()) == 2
    assert await run(db.b()) == 2


@pytest.mark.parametrize("spawn", ["gather", "taskgroup"])
async def test_a_cycle_through_child_tasks_converges(spawn: str) -> None:
    """Re-entry from a child task of a participant resolves like any other."""

    @picante.database
    class Fan:
        @picante.input
        async def edges(self, node: str) -> tuple[str, ...]:
            raise NotImplementedError

        @picante.query(cycle_initial=empty)
        async def reach(self, node: str) -> frozenset[str]:
            successors = await self.edges(node)
            if spawn == "gather":
                found = await asyncio.gather(*(self.reach(s) for s in successors))
            else:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self.reach(s)) for s in successors]
                found = [task.result() for task in tasks]
            return frozenset({node}.union(*found))

    db = Fan()
    db.edges.set("x", ("y", "z"))
    db.edges.set("y", ("x",))
    db.edges.set("z", ("y",))
    assert await run(db.reach("x")) == {"x", "y", "z"}
    assert await run(db.reach("z")) == {"x", "y", "z"}


async def test_an_error_in_a_participant_is_the_heads_outcome() -> None:
    """An exception inside the cycle propagates; the head memoizes it for the revision."""

    @picante.database
    class Failing:
        def __init__(self) -> None:
            self.runs = 0

        @picante.query(cycle_initial=lambda db: 0)
        async def a(self) -> int:
            self.runs += 1
            return await self.b()

        @picante.query
        async def b(self) -> int:
            if await self.a() == 0:
                raise ValueError("no")
            return 1

    db = Failing()
    with pytest.raises(ValueError, match="no"):
        await run(db.a())
    with pytest.raises(ValueError, match="no"):
        await run(db.a())
    assert db.runs == 1


async def test_an_outside_reader_never_sees_a_provisional_value() -> None:
    """A task reading a participant while the head iterates gets the final value."""
    release = asyncio.Event()
    entered = asyncio.Event()

    @picante.database
    class Slow:
        @picante.query(cycle_initial=lambda db: 0)
        async def head(self) -> int:
            value = await self.member()
            if value < 3:
                return value + 1
            entered.set()
            await release.wait()
            return value

        @picante.query
        async def member(self) -> int:
            return await self.head()

    db = Slow()
    head = asyncio.ensure_future(db.head())
    await run(entered.wait())
    # The head is in its last iteration; member()'s provisional outcome exists.
    outside = asyncio.ensure_future(db.member())
    await asyncio.sleep(0)
    assert not outside.done()
    release.set()
    assert await run(head) == 3
    assert await run(outside) == 3


async def test_a_volatile_participant_reruns_the_cycle_at_the_next_revision() -> None:
    """A member that reads the outside world makes the component re-run when asked again."""
    clock = {"now": 1}

    @picante.database
    class Live:
        def __init__(self) -> None:
            self.log: list[str] = []

        @picante.query(cycle_initial=lambda db: 0)
        async def head(self) -> int:
            self.log.append("head")
            return min(await self.tick(), 10)

        @picante.query(volatile=True)
        async def tick(self) -> int:
            self.log.append("tick")
            return max(await self.head(), clock["now"])

    db = Live()
    assert await run(db.head()) == 1
    db.log.clear()
    assert await run(db.head()) == 1
    assert db.log == []
    clock["now"] = 4
    picante.refresh(db)
    assert await run(db.head()) == 4
    assert "tick" in db.log


async def test_snapshots_read_converged_cycles() -> None:
    """A snapshot taken after convergence answers from the component; edits stay out."""
    db = graph(x="y", y="x")
    await run(db.reach("x"))
    snap = picante.snapshot(db)
    db.edges.set("y", ())
    assert await run(snap.reach("y")) == {"x", "y"}
    assert await run(db.reach("y")) == {"y"}
    assert await run(snap.reach("x")) == {"x", "y"}


def test_cycle_options_are_checked_at_declaration() -> None:
    """Options that cannot work together are refused, naming the query."""
    with pytest.raises(picante.UsageError, match="cycle_fn needs cycle_initial"):

        @picante.query(cycle_fn=lambda *args: 0)
        async def a(self: object) -> int:
            return 0

    with pytest.raises(picante.UsageError, match="not both"):

        @picante.query(cycle_initial=lambda db: 0, cycle_fallback=lambda db: 0)
        async def b(self: object) -> int:
            return 0

    with pytest.raises(picante.UsageError, match="max_iterations must be an int >= 1"):

        @picante.query(cycle_initial=lambda db: 0, max_iterations=0)
        async def c(self: object) -> int:
            return 0

    with pytest.raises(picante.UsageError, match="cycle_initial must be a function"):

        @picante.query(cycle_initial=0)  # type: ignore[arg-type]
        async def d(self: object) -> int:
            return 0


async def test_converged_cycles_persist(tmp_path: Any) -> None:
    """A cache file holds the component; loaded, it answers and revalidates as one."""
    db = graph(x="y", y="x", u="")
    await run(db.reach("x"))
    await run(db.reach("u"))
    path = tmp_path / "graph.picante"
    await picante.save(db, path)
    loaded = Graph()
    assert await picante.load(loaded, path)
    assert [await run(loaded.reach(node)) for node in "xyu"] == [{"x", "y"}, {"x", "y"}, {"u"}]
    assert loaded.log == []
    loaded.edges.set("u", ("x",))
    assert await run(loaded.reach("y")) == {"x", "y"}
    assert loaded.log == []
    loaded.edges.set("y", ("x", "u"))
    assert await run(loaded.reach("x")) == {"x", "y", "u"}
    # u now reads x too: three participants, two iterations.
    assert loaded.log == ["x", "y", "u", "x", "y", "u"]


async def test_debug_tools_and_sweep_handle_cycles() -> None:
    """The tools that walk dependencies end on a converged cycle."""
    db = graph(x="y", y="x")
    await run(db.reach("x"))
    graph_ = picante.debug.dependency_graph(db)
    assert "reach('x')" in graph_.to_dot()
    explanation = picante.debug.explain(db, "reach", "y")
    assert explanation is not None
    # Re-running each body against its dependencies' memos gives the same values.
    assert await run(picante.debug.verify(db)) == []
    db.edges.set("x", ())
    assert picante.sweep(db) >= 0
    assert await run(db.reach("x")) == {"x"}
    assert await run(db.reach("y")) == {"x", "y"}


@pytest.mark.parametrize("order", ["ab", "ba"])
async def test_a_cycle_through_independent_tasks_converges(order: str) -> None:
    """Two tasks whose evaluations wait on each other: one task runs the whole cycle."""
    a_started, b_started = asyncio.Event(), asyncio.Event()

    @picante.database
    class Tasks:
        def __init__(self) -> None:
            self.log: list[str] = []

        @picante.query(cycle_initial=lambda db: 0)
        async def a(self) -> int:
            self.log.append("a")
            a_started.set()
            await b_started.wait()
            return min(await self.b() + 1, 3)

        @picante.query
        async def b(self) -> int:
            self.log.append("b")
            b_started.set()
            await a_started.wait()
            return await self.a()

    db = Tasks()
    reads = {"a": db.a, "b": db.b}
    assert await run(asyncio.gather(*(reads[name]() for name in order))) == [3, 3]
    db.log.clear()
    assert [await run(db.a()), await run(db.b())] == [3, 3]
    assert db.log == []


async def test_an_error_in_cycle_fn_or_a_fallback_is_the_outcome() -> None:
    """`cycle_fn` and fallbacks are user code: what they raise is memoized like a body's."""
    runs = {"step": 0, "fallback": 0}

    def step(db: object, iteration: int, previous: int, value: int) -> int:
        runs["step"] += 1
        raise KeyError(iteration)

    def fallback(db: object) -> int:
        runs["fallback"] += 1
        raise LookupError("no fallback")

    @picante.database
    class Raising:
        @picante.query(cycle_initial=lambda db: 0, cycle_fn=step)
        async def a(self) -> int:
            return await self.a() + 1

        @picante.query(cycle_fallback=fallback)
        async def b(self) -> int:
            return await self.b() + 1

    db = Raising()
    for _ in range(2):
        with pytest.raises(KeyError):
            await run(db.a())
        with pytest.raises(LookupError, match="no fallback"):
            await run(db.b())
    # The second reads answered from the memoized errors.
    assert runs == {"step": 1, "fallback": 1}


async def test_fallbacks_on_a_longer_cycle_are_stable() -> None:
    """a → b → c → a, all with fallbacks: the same answers at once and when read again."""

    @picante.database
    class Three:
        def __init__(self) -> None:
            self.log: list[str] = []

        @picante.query(cycle_fallback=lambda db: 0)
        async def a(self) -> int:
            self.log.append("a")
            return await self.b() + 1

        @picante.query(cycle_fallback=lambda db: 0)
        async def b(self) -> int:
            self.log.append("b")
            return await self.c() + 1

        @picante.query(cycle_fallback=lambda db: 0)
        async def c(self) -> int:
            self.log.append("c")
            return await self.a() + 1

    for entry in "abc":
        db = Three()
        assert [await run(getattr(db, name)()) for name in (entry, *"abc")] == [0] * 4
        assert sorted(db.log) == ["a", "b", "c"]


async def test_a_fallback_head_nested_in_another_cycle_takes_its_fallback() -> None:
    """
    Counting paths from n where 2 and 3 each loop on themselves and on each other: 3 heads
    its own cycle (3 → 3) inside 2's (2 → 3 → 2), and takes its fallback as a participant
    of 2's, as it does when entered first.
    """

    def minus(db: object, node: int) -> int:
        return -100 - node

    @picante.database
    class Paths:
        def __init__(self) -> None:
            self.log: list[int] = []

        @picante.input
        async def successors(self, node: int) -> tuple[int, ...]:
            raise NotImplementedError

        @picante.query(cycle_fallback=minus)
        async def paths(self, node: int) -> int:
            self.log.append(node)
            total = 1
            for successor in await self.successors(node):
                total += await self.paths(successor)
            return total

    expected = {1: 1 + (-102) + (-103), 2: -102, 3: -103}
    for entry in (1, 2, 3):
        db = Paths()
        with picante.batch(db):
            db.successors.set(1, (2, 3))
            db.successors.set(2, (2, 3))
            db.successors.set(3, (2, 3))
        assert await run(db.paths(entry)) == expected[entry]
        assert {node: await run(db.paths(node)) for node in (1, 2, 3)} == expected
        # Each body ran to completion once: the component resolved in one iteration.
        assert sorted(db.log) == [1, 2, 3]


@pytest.mark.parametrize("reads", list(itertools.permutations((2, 3, 4))))
async def test_a_member_off_the_cycle_invalidates_the_members_that_read_it(
    reads: tuple[int, ...],
) -> None:
    """
    2 ⇄ 3 resolve by fallback, 4 reads both; then 2 loses its edge. Whichever is read
    first, 2 is memoized again off the cycle with a new value, and 3, still marked as a
    cycle member, must not be found valid by the component check: it reads 2.
    """

    @picante.database
    class Paths:
        @picante.input
        async def successors(self, node: int) -> tuple[int, ...]:
            raise NotImplementedError

        @picante.query(cycle_fallback=lambda db, node: -100)
        async def paths(self, node: int) -> int:
            total = 1
            for successor in await self.successors(node):
                total += await self.paths(successor)
            return total

    db = Paths()
    with picante.batch(db):
        db.successors.set(2, (3,))
        db.successors.set(3, (2,))
        db.successors.set(4, (2, 3))
    assert [await run(db.paths(node)) for node in (2, 3, 4)] == [-100, -100, -199]
    db.successors.set(2, ())
    expected = {2: 1, 3: 2, 4: 4}
    assert [await run(db.paths(node)) for node in reads] == [expected[n] for n in reads]


@pytest.mark.parametrize("entry", range(4))
async def test_heads_nested_two_deep_keep_their_values_between_iterations(entry: int) -> None:
    """
    Longest paths capped at 2 over 0 → 1 → {0, 2} and 2 → {0, 1, 2, 3}, 3 → 2: entered at
    3, head 1 is nested in head 2, nested in head 3. What 1 reports must reach 3 through
    2, or the next iteration reads 1's initial value again and 0 ends at 1, not 2.
    """

    async def widen(db: object, iteration: int, previous: int, value: int, node: int) -> int:
        return 2 if iteration >= 2 else value

    @picante.database
    class Hops:
        @picante.input
        async def successors(self, node: int) -> tuple[int, ...]:
            raise NotImplementedError

        @picante.query(cycle_initial=lambda db, node: 0, cycle_fn=widen)
        async def hops(self, node: int) -> int:
            successors = await self.successors(node)
            if not successors:
                return 0
            return min(2, 1 + max([await self.hops(j) for j in successors]))

    db = Hops()
    with picante.batch(db):
        for node, successors in {0: (1,), 1: (0, 2), 2: (0, 1, 2, 3), 3: (2,)}.items():
            db.successors.set(node, successors)
    await run(db.hops(entry))
    assert [await run(db.hops(node)) for node in range(4)] == [2, 2, 2, 2]


async def test_a_resolved_cycle_leaves_no_evaluation_alive_for_the_collector() -> None:
    """
    Finding a cycle must not tie the evaluation frames into a reference cycle (through
    the `CycleError`'s traceback): a frame alive is a reader at its revision, and `sweep`
    keeps what readers can read. Here, without any collection, it drops the two memos
    that no longer matter.
    """
    db = graph(a="c", c="a", b="a")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        assert await run(db.reach("b")) == frozenset("abc")
        db.edges.remove("b")
        assert await run(db.reach("a")) == frozenset("ac")
        assert picante.sweep(db) == 2  # reach('b') and the input it read
    finally:
        if was_enabled:
            gc.enable()


@picante.database
class Loop:
    """1 ⇄ 4 through an input of edges, resolved by fallback: a member alone gives 1 - 100."""

    @picante.input
    async def successors(self, node: int) -> tuple[int, ...]:
        raise NotImplementedError

    @picante.input
    async def unrelated(self) -> int:
        raise NotImplementedError

    @picante.query(cycle_fallback=lambda db, node: -100)
    async def paths(self, node: int) -> int:
        total = 1
        for successor in await self.successors(node):
            total += await self.paths(successor)
        return total

    @picante.query
    async def doubled(self, node: int) -> int:
        return 2 * await self.paths(node)


def loop() -> Loop:
    db = Loop()
    with picante.batch(db):
        db.successors.set(1, (4,))
        db.successors.set(4, (1,))
    return db


async def test_a_snapshot_that_moved_on_checks_an_inherited_component_whole() -> None:
    """
    A snapshot whose own revision moved past its base (an unrelated input set there)
    revalidates the component it inherited as one: a member it had not read yet is
    taken from the parent, not left to run alone over the other's memo (1 - 100).
    """
    db = loop()
    assert await run(db.paths(1)) == -100
    view = picante.snapshot(db)
    view.unrelated.set(0)
    assert [await run(view.paths(4)), await run(view.paths(1))] == [-100, -100]


async def test_a_snapshot_of_a_snapshot_inherits_a_component_its_parent_did_not_read() -> None:
    """
    The middle snapshot took a memo that reads member 1 and left 1 for later (a cell
    without a memo): the last one inherits 1 from the database through it, rather than
    running 1 alone over 4's memo (1 - 100).
    """
    db = loop()
    middle = picante.snapshot(db)
    assert await run(db.doubled(1)) == -200
    assert await run(middle.doubled(1)) == -200
    last = picante.snapshot(middle)
    with picante.testing.assert_nothing_runs(last):
        assert [await run(last.paths(1)), await run(last.paths(4))] == [-100, -100]


async def test_taking_a_member_takes_the_members_it_reads() -> None:
    """
    A snapshot that takes member 4 from the database takes 1, which 4 read, with it,
    even though the snapshot has not read 1 yet: left for later, 1 could be evaluated
    here over 4's memo, a plain value (1 - 100), never re-entering the cycle.
    """
    db = loop()
    assert await run(db.paths(1)) == -100
    view = picante.snapshot(db)
    ours, theirs = view_of(view), view_of(db)
    source = cast("QueryCell", theirs.tables["paths"][(4,)])
    mine = QueryCell(source.ingredient, (4,))
    ours.table("paths")[(4,)] = mine
    assert take(ours, mine, theirs, source, ours.base)
    taken = ours.tables["paths"][(1,)]
    assert (taken.verified_at, taken.value) == (ours.base, -100)


async def test_a_snapshot_checks_an_inherited_mixed_cycle_as_the_database_would() -> None:
    """
    After an edit the pair did not read, a snapshot reads b (which did not opt in) first:
    it checks the pair's memos as the database would, and answers 3. Run anew instead,
    entered at b, the cycle would raise `CycleError`.
    """
    log: list[str] = []

    @picante.database
    class Capped:
        @picante.input
        async def cap(self) -> int:
            raise NotImplementedError

        @picante.input
        async def unrelated(self) -> int:
            raise NotImplementedError

        @picante.query(cycle_initial=lambda db: 0)
        async def a(self) -> int:
            log.append("a")
            return min(await self.b() + 1, await self.cap())

        @picante.query
        async def b(self) -> int:
            log.append("b")
            return await self.a()

    db = Capped()
    db.cap.set(3)
    assert [await run(db.a()), await run(db.b())] == [3, 3]
    db.unrelated.set(0)
    log.clear()
    view = picante.snapshot(db)
    assert [await run(view.b()), await run(view.a())] == [3, 3]
    assert log == []
    assert [await run(db.b()), await run(db.a())] == [3, 3]
    assert log == []


@pytest.mark.timeout(10)  # the bug was a loop that never yields: no asyncio timeout ends it
async def test_a_view_takes_a_component_another_view_evaluated_whole() -> None:
    """
    The database follows a snapshot's evaluation of the cycle (same state), then takes
    its memos: the two members read each other, and are taken together, once.
    """
    db = loop()
    view = picante.snapshot(db)
    assert await run(asyncio.gather(view.paths(1), db.paths(1))) == [-100, -100]
    with picante.testing.assert_nothing_runs(db):
        assert [await run(db.paths(4)), await run(db.paths(1))] == [-100, -100]


@pytest.mark.parametrize("saved", [False, True])
async def test_a_member_whose_cycle_changed_shape_is_not_backdated(
    saved: bool, tmp_path: Any
) -> None:
    """
    1 ⇄ 4 resolve by fallback (-100 each); then 1 loops on itself alone: 1 is memoized
    again with the same value, -100, but 4 is no longer on a cycle, so its fallback is
    no longer its value: 1 + -100. 1's memo must not be backdated, or 4 (checked alone,
    or after a save and load) would keep -100.
    """
    db = loop()
    assert [await run(db.paths(1)), await run(db.paths(4))] == [-100, -100]
    db.successors.set(1, (1,))
    assert await run(db.paths(1)) == -100
    if saved:
        await picante.save(db, tmp_path / "cache")
        db = Loop()
        await picante.load(db, tmp_path / "cache")
    assert await run(db.paths(4)) == -99


async def test_members_of_a_resolved_cycle_are_never_evicted() -> None:
    """
    With an LRU of one memo, the two members of a component stay: an evicted member
    would run alone over the other's memo (1 - 100), since a valid memo is a hit and
    the cycle is never re-entered.
    """
    db = loop()
    picante.set_lru(db.paths, 1)
    assert [await run(db.paths(node)) for node in (1, 4, 1, 4)] == [-100] * 4
    assert db.paths.cache_info().evicted == 0


async def test_a_failing_initial_value_is_not_memoized_without_the_head() -> None:
    """What `cycle_initial` or a fallback raises depends on what it read, like a body's."""

    @picante.database
    class Needs:
        @picante.input
        async def start(self) -> int:
            raise NotImplementedError

        @picante.query(cycle_fallback=lambda db: db.start())
        async def a(self) -> int:
            return await self.b()

        @picante.query
        async def b(self) -> int:
            return await self.a()

    db = Needs()
    with pytest.raises(picante.MissingInputError):
        await run(db.a())
    db.start.set(5)
    assert [await run(db.a()), await run(db.b())] == [5, 5]


async def test_a_clean_dependency_outside_the_cycle_keeps_it_valid() -> None:
    """A member reads a query outside the cycle; an unrelated edit runs no body."""

    @picante.database
    class Outside:
        def __init__(self) -> None:
            self.log: list[str] = []

        @picante.input
        async def base(self) -> int:
            raise NotImplementedError

        @picante.input
        async def other(self) -> int:
            raise NotImplementedError

        @picante.query
        async def outside(self) -> int:
            self.log.append("outside")
            return await self.base()

        @picante.query(cycle_initial=lambda db: 0)
        async def a(self) -> int:
            self.log.append("a")
            return min(await self.b() + await self.outside(), 3)

        @picante.query
        async def b(self) -> int:
            self.log.append("b")
            return await self.a()

    db = Outside()
    db.base.set(1)
    db.other.set(0)
    assert await run(db.a()) == 3
    db.log.clear()
    db.other.set(1)
    assert [await run(db.a()), await run(db.b())] == [3, 3]
    assert db.log == []


async def test_readers_of_a_cycle_that_comes_out_the_same_are_not_rerun() -> None:
    """The component re-runs from its head; an equal value backdates, its reader stays."""

    @picante.database
    class Reader:
        def __init__(self) -> None:
            self.log: list[str] = []

        @picante.input
        async def cap(self) -> int:
            raise NotImplementedError

        @picante.query(cycle_initial=lambda db: 0)
        async def a(self) -> int:
            self.log.append("a")
            return min(await self.b() + 1, await self.cap(), 3)

        @picante.query
        async def b(self) -> int:
            self.log.append("b")
            return await self.a()

        @picante.query
        async def report(self) -> str:
            self.log.append("report")
            return f"b={await self.b()}"

    db = Reader()
    db.cap.set(10)
    # Entered at a, which heads the cycle (entered at b, which did not opt in, it fails).
    assert await run(db.a()) == 3
    assert await run(db.report()) == "b=3"
    db.log.clear()
    db.cap.set(20)  # a still caps at 3
    assert await run(db.report()) == "b=3"
    assert "report" not in db.log
    assert "a" in db.log


def test_options_that_cannot_work_with_cycles_are_refused() -> None:
    """share=True or eq=False with a fixpoint is a declaration error."""
    with pytest.raises(picante.UsageError, match="share=True with cycle options"):

        @picante.query(cycle_initial=lambda db: 0, share=True)
        async def a(self: object) -> int:
            return 0

    with pytest.raises(picante.UsageError, match="eq=False with cycle options"):

        @picante.query(cycle_initial=lambda db: 0, eq=False)
        async def b(self: object) -> int:
            return 0


async def test_only_the_last_iteration_accumulates() -> None:
    """A head's accumulated values are its last iteration's; members keep their own."""

    @picante.database(accumulates=str)
    class Noting:
        @picante.query(cycle_initial=lambda db: 0)
        async def a(self) -> int:
            value = min(await self.b() + 1, 3)
            picante.accumulate(f"a={value}")
            return value

        @picante.query
        async def b(self) -> int:
            value = await self.a()
            picante.accumulate(f"b saw {value}")
            return value

    db = Noting()
    assert await run(db.a()) == 3
    assert await run(picante.accumulated(db.a)) == ("a=3", "b saw 3")
    assert await run(picante.accumulated(db.b)) == ("b saw 3", "a=3")
