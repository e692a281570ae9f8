"""
Memo consistency in every view: a state machine over a database and its snapshots.

`ViewConsistency` keeps one database and the snapshots taken of it and of each other,
each with a plain-dict model of its inputs and its expected revision. Its rules set and
remove inputs on any view, run batches on any view (some of which raise and must change
nothing), take and drop snapshots, intern values, and await queries on any view, alone
and concurrently across views. Every answer is compared with a from-scratch evaluation
over that view's model, errors included. The graph has an LRU-limited query (`square`,
`lru=2`) under a chain, so eviction happens all the time, an interned table shared by
all views, a failing query, absent inputs and a HIGH-durability input.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from hypothesis import event, settings, strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import picante
from picante import MissingInputError


T = TypeVar("T")

KEYS = range(4)
TIMEOUT = 10


@picante.database
class Views:
    """The query graph of the machine."""

    tags = picante.interned(str)

    @picante.input
    async def src(self, k: int) -> int: ...  # type: ignore[empty-body]

    @picante.input(durability=picante.Durability.HIGH)
    async def cfg(self) -> int: ...  # type: ignore[empty-body]

    @picante.query
    async def value(self, k: int) -> int:
        try:
            return await self.src(k)
        except MissingInputError:
            return 0

    @picante.query(lru=2)
    async def square(self, k: int) -> int:
        return (await self.value(k)) ** 2 + self.cfg.get(default=0)

    @picante.query
    async def chain(self, k: int) -> int:
        if k == 0:
            return await self.square(0)
        return await self.chain(k - 1) + await self.square(k)

    @picante.query
    async def label(self, k: int) -> str:
        tag = self.tags.intern(f"parity-{await self.chain(k) % 2}")
        return self.tags.lookup(tag)

    @picante.query
    async def fails(self, k: int) -> int:
        v = await self.value(k)
        if v % 3 == 2:
            raise ValueError(k, v)
        return v

    @picante.query
    async def total(self) -> int:
        chains = await asyncio.gather(*(self.chain(k) for k in KEYS))
        outcomes = await asyncio.gather(*(self.fails(k) for k in KEYS), return_exceptions=True)
        good = sum(o for o in outcomes if isinstance(o, int))
        return sum(chains) + good + 1000 * sum(isinstance(o, Exception) for o in outcomes)


Cell = tuple[str, tuple[int, ...]]
Inputs = dict[Cell, int]


def oracle(inputs: Inputs, name: str, key: tuple[int, ...]) -> tuple[object, Exception | None]:
    """Evaluate *name(key)* from scratch over *inputs*: `(value, None)` or `(None, error)`."""

    def value(k: int) -> int:
        return inputs.get(("src", (k,)), 0)

    def square(k: int) -> int:
        return value(k) ** 2 + inputs.get(("cfg", ()), 0)

    def chain(k: int) -> int:
        return sum(square(i) for i in range(k + 1))

    def fails(k: int) -> int:
        v = value(k)
        if v % 3 == 2:
            raise ValueError(k, v)
        return v

    def total() -> int:
        good = failed = 0
        for k in KEYS:
            try:
                good += fails(k)
            except ValueError:
                failed += 1
        return sum(chain(k) for k in KEYS) + good + 1000 * failed

    functions: dict[str, Any] = {
        "value": value,
        "square": square,
        "chain": chain,
        "label": lambda k: f"parity-{chain(k) % 2}",
        "fails": fails,
        "total": total,
    }
    try:
        return functions[name](*key), None
    except Exception as error:
        return None, error


RECORDS = [
    *((name, (k,)) for name in ("value", "square", "chain", "label", "fails") for k in KEYS),
    ("total", ()),
]
CELLS = [*(("src", (k,)) for k in KEYS), ("cfg", ())]


class BoomError(Exception):
    """Raised inside a batch to discard it."""


class View:
    """A database or snapshot, with the model of its inputs and its expected revision."""

    def __init__(self, db: Views, inputs: Inputs, revision: int) -> None:
        self.db = db
        self.inputs = inputs
        self.revision = revision


class ViewConsistency(RuleBasedStateMachine):
    """In every view, every answer equals a from-scratch evaluation of that view's inputs."""

    views = Bundle("views")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.all: list[View] = []
        self.interned: dict[str, int] = {}

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coro: Any) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(TIMEOUT):
                return await coro

        return self.loop.run_until_complete(bounded())

    @initialize(target=views)
    def new_database(self) -> View:
        view = View(Views(), {}, 0)
        self.all.append(view)
        return view

    @rule(target=views, parent=views)
    def take_snapshot(self, parent: View) -> View:
        view = View(picante.snapshot(parent.db), dict(parent.inputs), parent.revision)
        assert picante.revision(view.db) == parent.revision
        self.all.append(view)
        return view

    @precondition(lambda self: len(self.all) > 3)
    @rule(data=st.data())
    def forget_a_view(self, data: st.DataObject) -> None:
        """Drop the machine's own reference to a view (bundles may still hold it)."""
        self.all.pop(data.draw(st.integers(0, len(self.all) - 1)))

    def apply(
        self, view: View, changes: list[tuple[tuple[str, tuple[int, ...]], int | None]]
    ) -> None:
        """Record *changes* in the model: one revision if anything changed."""
        before = dict(view.inputs)
        for cell, value in changes:
            if value is None:
                view.inputs.pop(cell, None)
            else:
                view.inputs[cell] = value
        if view.inputs != before:
            view.revision += 1

    @rule(view=views, cell=st.sampled_from(CELLS), value=st.none() | st.integers(0, 6))
    def mutate(self, view: View, cell: tuple[str, tuple[int, ...]], value: int | None) -> None:
        name, key = cell
        handle = getattr(view.db, name)
        revision = handle.remove(*key) if value is None else handle.set(*key, value)
        self.apply(view, [(cell, value)])
        assert revision == view.revision

    @rule(
        view=views,
        changes=st.lists(
            st.tuples(st.sampled_from(CELLS), st.none() | st.integers(0, 6)), min_size=1, max_size=5
        ),
        fail=st.booleans(),
    )
    def batch(
        self,
        view: View,
        changes: list[tuple[tuple[str, tuple[int, ...]], int | None]],
        fail: bool,
    ) -> None:
        try:
            with picante.batch(view.db):
                for (name, key), value in changes:
                    handle = getattr(view.db, name)
                    if value is None:
                        handle.remove(*key)
                    else:
                        handle.set(*key, value)
                assert picante.revision(view.db) == view.revision, "a batch applied early"
                if fail:
                    raise BoomError
        except BoomError:
            event("batch", "raised")
        else:
            self.apply(view, changes)
            event("batch", "applied")
        assert picante.revision(view.db) == view.revision

    @rule(view=views, text=st.sampled_from(["a", "b", "parity-0", "parity-1", "c"]))
    def intern(self, view: View, text: str) -> None:
        tag = view.db.tags.intern(text)
        assert self.interned.setdefault(text, tag) == tag
        for other in self.all:
            assert other.db.tags.lookup(tag) == text

    def check(self, view: View, record: tuple[str, tuple[int, ...]], actual: Any) -> None:
        value, error = actual
        expected_value, expected_error = oracle(view.inputs, *record)
        if expected_error is None:
            assert error is None, f"{record} raised {error!r}"
            assert value == expected_value, record
        else:
            assert error is not None, f"{record} = {value!r}, expected {expected_error!r}"
            assert (type(error), error.args) == (type(expected_error), expected_error.args)

    @staticmethod
    async def call(view: View, record: tuple[str, tuple[int, ...]]) -> Any:
        name, key = record
        try:
            return await getattr(view.db, name)(*key), None
        except Exception as error:
            return None, error

    @rule(view=views, record=st.sampled_from(RECORDS))
    def query(self, view: View, record: tuple[str, tuple[int, ...]]) -> None:
        self.check(view, record, self.run(self.call(view, record)))

    @rule(calls=st.lists(st.tuples(views, st.sampled_from(RECORDS)), min_size=2, max_size=8))
    def query_concurrently(self, calls: list[tuple[View, tuple[str, tuple[int, ...]]]]) -> None:
        async def gather() -> list[Any]:
            return await asyncio.gather(*(self.call(view, record) for view, record in calls))

        for (view, record), result in zip(calls, self.run(gather()), strict=True):
            self.check(view, record, result)

    @invariant()
    def every_view_is_consistent(self) -> None:
        for view in self.all:
            assert picante.revision(view.db) == view.revision
            for name, key in CELLS:
                assert getattr(view.db, name).get(*key) == view.inputs.get((name, key))

    @invariant()
    def lru_keeps_at_most_two_values(self) -> None:
        for view in self.all:
            table = view.db.__picante__.tables.get("square", {})
            kept = [c for c in table.values() if c.verified_at >= 0 and c.value is not EVICTED]
            assert len(kept) <= 2


EVICTED = picante._store.EVICTED

TestViewConsistency = ViewConsistency.TestCase
TestViewConsistency.__doc__ = "In every view, every memo equals a from-scratch evaluation."
TestViewConsistency.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
