"""`picante.testing`: recording what ran, asserting nothing ran, and the consistency check."""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

import pytest
from hypothesis import Phase, settings, strategies as st
from hypothesis.stateful import rule

import picante
from picante.testing import assert_nothing_runs, check_consistency, consistency_machine, record
from tests.helpers import until


TIMEOUT = 5


@picante.database
class Site:
    @picante.input
    async def source(self, path: str) -> str: ...

    @picante.query
    async def words(self, path: str) -> int:
        return len((await self.source(path)).split())

    @picante.query
    async def parity(self, path: str) -> int:
        return await self.words(path) % 2

    @picante.query
    async def label(self, path: str) -> str:
        return "odd" if await self.parity(path) else "even"

    @picante.query
    async def page(self, path: str, lang: str = "en") -> str:
        return f"{lang}: {await self.label(path)}"

    @picante.query
    async def total(self) -> int:
        return await self.words("a") + await self.words("b")

    @picante.query
    async def checked(self, path: str) -> int:
        n = await self.words(path)
        if n > 2:
            raise ValueError(path, n)
        return n


def site(**sources: str) -> Site:
    db = Site()
    for path, text in sources.items():
        db.source.set(path, text)
    return db


# -- record ---------------------------------------------------------------------------------


async def test_executed_lists_bodies_in_the_order_they_finished() -> None:
    """A first read lists every body it ran, each dependency before its reader."""
    db = site(a="one two")
    with record(db) as log:
        assert await db.label("a") == "even"
    assert log.executed == ["words('a')", "parity('a')", "label('a')"]
    assert log.verified == set()


async def test_verified_lists_the_memos_an_early_cutoff_spared() -> None:
    """After an edit, what reran is executed; what was checked and kept is verified."""
    db = site(a="one two")
    await db.label("a")
    db.source.set("a", "three four five six")  # 2 → 4 words: parity stays 0
    with record(db) as log:
        assert await db.label("a") == "even"
    assert log.executed == ["words('a')", "parity('a')"]
    assert log.verified == {"label('a')"}
    assert [(run.ingredient, run.changed) for run in log.runs] == [
        ("words", True),
        ("parity", False),
    ]
    db.source.set("a", "one two three seven")  # 4 → 4 words: parity not even rerun
    with record(db) as log:
        assert await db.label("a") == "even"
    assert log.executed == ["words('a')"]
    assert log.verified == {"parity('a')", "label('a')"}


async def test_memoized_reads_are_in_neither_list() -> None:
    """A read answered by a memo known valid runs and checks nothing."""
    db = site(a="one")
    await db.label("a")
    with record(db) as log:
        assert await db.label("a") == "odd"
    assert (log.executed, log.verified) == ([], set())


async def test_entries_are_formatted_as_picante_formats_records() -> None:
    """Entries are calls with the full key, defaults applied: `page('a', 'en')`, `total()`."""
    db = site(a="x", b="y z")
    with record(db) as log:
        await db.page(path="a")
        await db.page("a", "fr")
        await db.total()
    assert log.executed == [
        "words('a')",
        "parity('a')",
        "label('a')",
        "page('a', 'en')",
        "page('a', 'fr')",
        "words('b')",
        "total()",
    ]


async def test_a_failing_body_counts_and_its_memoized_error_does_not() -> None:
    """A body that raised is listed (failed in `runs`); re-raising its memo runs nothing."""
    db = site(a="one two three")
    with record(db) as log:
        with pytest.raises(ValueError, match="'a', 3"):
            await db.checked("a")
        with pytest.raises(ValueError, match="'a', 3"):
            await db.checked("a")
    assert log.executed == ["words('a')", "checked('a')"]
    assert [run.failed for run in log.runs] == [False, True]


async def test_a_record_that_runs_at_two_revisions_is_listed_twice() -> None:
    """Every run is listed, in order, including a second run of the same record."""
    db = site(a="one")
    with record(db) as log:
        await db.words("a")
        db.source.set("a", "one two")
        await db.words("a")
    assert log.executed == ["words('a')", "words('a')"]
    assert [run.revision for run in log.runs] == [1, 2]


async def test_recording_is_readable_inside_the_block() -> None:
    """Inside the block, the recording shows what ran so far."""
    db = site(a="one", b="two")
    with record(db) as log:
        await db.words("a")
        assert log.executed == ["words('a')"]
        await db.words("b")
        assert log.executed == ["words('a')", "words('b')"]
    db.source.set("a", "x y")
    await db.words("a")
    assert log.executed == ["words('a')", "words('b')"]  # frozen at the end of the block


async def test_async_with() -> None:
    """`async with` records exactly like `with`."""
    db = site(a="one")
    async with record(db) as log:
        await db.words("a")
    assert log.executed == ["words('a')"]
    async with assert_nothing_runs(db) as quiet:
        await db.words("a")
    assert quiet.executed == []


async def test_a_recording_sees_only_its_own_view() -> None:
    """A snapshot's runs are in its own recording; the database's in the database's."""
    db = site(a="one", b="two")
    await db.total()
    snap = picante.snapshot(db)
    snap.source.set("a", "one two")
    db.source.set("b", "two three")
    with record(db) as mine, record(snap) as theirs:
        assert await snap.total() == 3
        assert await db.total() == 3
    assert theirs.executed == ["words('a')", "total()"]
    assert mine.executed == ["words('b')", "total()"]


async def test_a_snapshot_reusing_a_memo_verifies_it() -> None:
    """A memo a snapshot takes over from its database shows as verified, not executed."""
    db = site(a="one", b="two")
    await db.total()
    snap = picante.snapshot(db)
    with record(snap) as log:
        assert await snap.total() == 2
    assert (log.executed, log.verified) == ([], {"total()"})


async def test_an_evaluation_shared_by_two_views_runs_in_one() -> None:
    """A snapshot that follows its database's evaluation of a record verifies, not runs."""
    gate, started = asyncio.Event(), asyncio.Event()

    @picante.database
    class Gated:
        @picante.input
        async def n(self) -> int: ...

        @picante.query
        async def slow(self) -> int:
            started.set()
            await gate.wait()
            return await self.n() * 2

    db = Gated()
    db.n.set(21)
    snap = picante.snapshot(db)
    with record(db) as mine, record(snap) as theirs:
        first = asyncio.create_task(db.slow())
        await asyncio.wait_for(started.wait(), TIMEOUT)
        second = asyncio.create_task(snap.slow())
        flight = db.__picante__.tables["slow"][()].flight
        await until(lambda: len(flight.followers or ()) == 2)  # db's caller and the snapshot
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT) == [42, 42]
    assert (mine.executed, mine.verified) == (["slow()"], set())
    assert (theirs.executed, theirs.verified) == ([], {"slow()"})


async def test_nested_and_overlapping_recordings_do_not_interfere() -> None:
    """Each recording sees exactly what ran while it was open, however they overlap."""
    db = site(a="one", b="two")
    outer = record(db)
    first = record(db)
    with outer:
        with first:
            await db.words("a")
        second = record(db).__enter__()
        await db.words("b")
        overlapping = record(db).__enter__()
        second.__exit__(None, None, None)
        await db.total()
    overlapping.__exit__(None, None, None)
    assert outer.executed == ["words('a')", "words('b')", "total()"]
    assert first.executed == ["words('a')"]
    assert second.executed == ["words('b')"]
    assert overlapping.executed == ["total()"]


async def test_recording_unsubscribes_at_the_end() -> None:
    """After the block the database has no listener left (its fast paths come back)."""
    db = site(a="one")
    with record(db), assert_nothing_runs(db):
        pass
    assert db.__picante__.listeners == []


async def test_a_recording_is_entered_once() -> None:
    """Entering a recording a second time is a usage error."""
    db = site()
    log = record(db)
    with log:
        pass
    with pytest.raises(picante.UsageError, match="only once"), log:
        pass


def test_record_needs_a_database() -> None:
    """Recording something that is not a database is a usage error naming it."""

    class NotADatabase:
        pass

    with pytest.raises(
        picante.UsageError,
        match=r"^testing\.record\(\): expected a database .* got a .*NotADatabase; decorate",
    ):
        record(NotADatabase())


# -- assert_nothing_runs --------------------------------------------------------------------


async def test_assert_nothing_runs_passes_when_only_memos_answer() -> None:
    """Memo hits and revalidations without a run pass."""
    db = site(a="one two")
    await db.label("a")
    db.source.set("b", "unrelated")
    with assert_nothing_runs(db) as log:
        assert await db.label("a") == "even"
    assert log.executed == []


async def test_assert_nothing_runs_lists_what_ran() -> None:
    """The failure lists every body that ran, in order."""
    db = site(a="one", b="two")
    await db.total()
    db.source.set("b", "two three")
    with pytest.raises(AssertionError) as info, assert_nothing_runs(db):
        await db.total()
    assert str(info.value) == (
        "expected no query body to run, but 2 bodies ran: words('b'), total()"
    )
    with pytest.raises(AssertionError) as info, assert_nothing_runs(db):
        db.source.set("a", "uno")
        await db.words("a")
    assert str(info.value) == "expected no query body to run, but 1 body ran: words('a')"


async def test_assert_nothing_runs_lets_the_blocks_own_error_through() -> None:
    """An error raised in the block propagates as it is, whatever ran."""
    db = site()
    with pytest.raises(picante.MissingInputError), assert_nothing_runs(db):
        await db.words("a")


# -- the consistency check ------------------------------------------------------------------


PATHS = st.sampled_from(["a", "b"])
TEXTS = st.sampled_from(["", "x", "x y", "y x", "x y z"])
INPUTS: dict[str, Any] = {"source": (st.tuples(PATHS), TEXTS)}
QUERIES: dict[str, Any] = {
    "words": st.tuples(PATHS),
    "label": st.tuples(PATHS),
    "page": st.tuples(PATHS, st.sampled_from(["en", "fr"])),
    "checked": st.tuples(PATHS),
    "total": (),
}
PASSING = settings(max_examples=20, stateful_step_count=20, deadline=None, database=None)
"""A few programs: a correct database passes them all."""
FINDING = settings(PASSING, max_examples=500, phases=[Phase.generate], print_blob=False)
"""Programs until the first failure (the broken databases fail within a few), unshrunk.

No reproduction blob: hypothesis's CI profile (when `CI` is set) would add it as a last note.
"""


def test_a_correct_database_passes() -> None:
    """Values, memoized errors and missing inputs all match a fresh database's."""
    check_consistency(Site, inputs=INPUTS, queries=QUERIES, settings=PASSING)


@picante.database
class HiddenCache(Site):
    """`words` keeps its own cache on the instance, which picante cannot see."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    @picante.query
    async def words(self, path: str) -> int:
        text = await self.source(path)
        if path not in self.counts:
            self.counts[path] = len(text.split())
        return self.counts[path]


def test_a_cache_picante_cannot_see_is_reported() -> None:
    """A memo gone stale behind picante's back fails, naming the call and both answers."""
    with pytest.raises(AssertionError) as info:
        check_consistency(HiddenCache, inputs=INPUTS, queries=QUERIES, settings=FINDING)
    message = str(info.value)
    assert re.fullmatch(
        r"(words|label|page|checked|total)\(.*\) on (database_0|snapshot_\d+) \(revision \d+\) "
        r"(returned|raised) .*, but a fresh database with the same inputs (returned|raised) .*"
        r"\ninputs: source\('[ab]'\) .*",
        message,
    ), message
    # The failing program is attached, as hypothesis prints it, ending with the read; the
    # view the message names is the one the program names so.
    notes = getattr(info.value, "__notes__", [])
    assert notes[1:3] == [
        "state = MemoConsistency_HiddenCache()",
        "database_0 = state.new_database()",
    ]
    view = message.split(" on ", 1)[1].split(" ", 1)[0]
    assert any(note.startswith(f"{view} = state.") for note in notes), (view, notes)
    assert notes[-2].startswith(("state.read(", "state.read_concurrently(")), notes
    assert notes[-1] == "state.teardown()"


SCALE = {"factor": 1}
"""A global setting that `Scaled.scaled` reads without picante knowing."""


@picante.database
class Scaled(Site):
    @picante.query
    async def scaled(self, path: str) -> int:
        return await self.words(path) * SCALE["factor"]


def test_a_global_picante_cannot_see_is_reported() -> None:
    """A rule added to the machine changes a global; the memo that read it is reported."""
    base: Any = consistency_machine(
        Scaled, inputs=INPUTS, queries={"scaled": st.tuples(PATHS)}, snapshots=False
    )

    class WithGlobal(base):  # type: ignore[misc, valid-type]
        @rule(factor=st.integers(1, 3))
        def set_factor(self, factor: int) -> None:
            SCALE["factor"] = factor

        def teardown(self) -> None:
            SCALE["factor"] = 1
            super().teardown()

    from hypothesis.stateful import run_state_machine_as_test

    with pytest.raises(AssertionError, match=r"^scaled\('[ab]'\) on database_0"):
        run_state_machine_as_test(WithGlobal, settings=FINDING)


@picante.database
class Counting(Site):
    """`checked` raises an error whose args count its runs: a fresh database says 1."""

    def __init__(self) -> None:
        self.runs = 0

    @picante.query
    async def checked(self, path: str) -> int:
        self.runs += 1
        await self.words(path)
        raise ValueError(path, self.runs)


def test_errors_are_compared_by_args() -> None:
    """Errors of the same type with different args are a mismatch."""
    with pytest.raises(AssertionError, match=r"raised ValueError\('[ab]', [2-9]\d*\), but"):
        check_consistency(
            Counting, inputs=INPUTS, queries={"checked": st.tuples(PATHS)}, settings=FINDING
        )


class Box:
    """A value with identity equality: `==` says two equal boxes differ."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Box({self.n})"


@picante.database
class Boxes(Site):
    @picante.query(eq=lambda a, b: a.n == b.n)
    async def box(self, path: str) -> Box:
        return Box(await self.words(path))


def test_values_are_compared_by_the_querys_eq() -> None:
    """A query declaring `eq=` is compared by it, not by `==`."""
    check_consistency(Boxes, inputs=INPUTS, queries={"box": st.tuples(PATHS)}, settings=PASSING)


def with_defaults() -> Site:
    """A database that starts with inputs of its own."""
    return site(a="x y z", b="x")


def test_inputs_set_by_make_db_are_removed_from_the_fresh_database_too() -> None:
    """The from-scratch evaluation starts from what make_db sets, and applies removals."""
    check_consistency(with_defaults, inputs=INPUTS, queries=QUERIES, settings=PASSING)


@picante.database
class Stuck:
    @picante.input
    async def n(self) -> int: ...

    @picante.query
    async def forever(self) -> int:
        await asyncio.get_running_loop().create_future()
        return 0


def test_a_read_that_never_finishes_fails_the_example() -> None:
    """A deadlocked read fails after *timeout* instead of hanging the test."""
    with pytest.raises(
        AssertionError, match=r"^reading forever\(\).* on database_0 did not finish within 0.05 s"
    ):
        check_consistency(
            Stuck,
            inputs={"n": ((), st.integers())},
            queries={"forever": ()},
            snapshots=False,
            timeout=0.05,
            settings=settings(max_examples=5, database=None, phases=[Phase.generate]),
        )


def test_the_machine_and_its_subclasses_leave_out_the_explain_phase() -> None:
    """Run as a `TestCase`, subclassed or not, the machine skips hypothesis's slow explain."""
    machine: Any = consistency_machine(Site, inputs=INPUTS, queries=QUERIES)

    class Extended(machine):  # type: ignore[misc, valid-type]
        pass

    for each in (machine, Extended):
        assert Phase.explain not in each.TestCase.settings.phases
        assert Phase.shrink in each.TestCase.settings.phases
        assert each.TestCase.settings.deadline is None


def test_names_are_checked() -> None:
    """A name that is not an input (or a query) of the database is a usage error."""
    with pytest.raises(
        picante.UsageError, match=r"^consistency_machine\(\): 'words' is not an input of Site$"
    ):
        consistency_machine(Site, inputs={"words": ((), st.none())}, queries=QUERIES)
    with pytest.raises(
        picante.UsageError, match=r"^consistency_machine\(\): 'source' is not a query of Site$"
    ):
        consistency_machine(Site, inputs=INPUTS, queries={"source": ()})
    with pytest.raises(picante.UsageError, match=r"give at least one query of Site"):
        consistency_machine(Site, inputs=INPUTS, queries={})


async def test_check_consistency_refuses_a_running_loop() -> None:
    """It runs its own event loop, so calling it from a coroutine is a usage error."""
    with pytest.raises(picante.UsageError, match="plain test function"):
        check_consistency(Site, inputs=INPUTS, queries=QUERIES)


def test_hypothesis_is_imported_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without hypothesis, the machine says what to install; recording still works."""
    for name in ("hypothesis", "hypothesis.stateful", "hypothesis.strategies"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="needs hypothesis, which picante does not install"):
        consistency_machine(Site, inputs=INPUTS, queries=QUERIES)
    db = site(a="one")
    with record(db) as log:
        asyncio.run(asyncio.wait_for(db.words("a"), TIMEOUT))
    assert log.executed == ["words('a')"]


TestSiteConsistency = consistency_machine(Site, inputs=INPUTS, queries=QUERIES).TestCase
TestSiteConsistency.settings = settings(max_examples=10, stateful_step_count=20, deadline=None)
TestSiteConsistency.__doc__ = "The machine's `TestCase` is collected by pytest and passes."
