"""Misuse of the public API fails with a message naming the function, what it got, and why."""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

import pytest

import picante
from picante import debug


if TYPE_CHECKING:
    from collections.abc import Callable


@picante.database
class Site:
    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def words(self, path: str) -> int:
        return len((await self.source(path)).split())


class Plain:
    """A class that was not decorated with `@picante.database`."""


EXPECTED = "expected a database (an instance of a @picante.database class), got "


async def call(function: Callable[..., Any], db: object) -> None:
    """Call *function* with *db* (and what else it needs), entering or awaiting the result."""
    if function is debug.explain:
        result = function(db, "words", "a")
    elif function in (picante.save, picante.load):
        result = function(db, "cache")
    else:
        result = function(db)
    if inspect.isawaitable(result):
        await result
    elif hasattr(result, "__enter__"):
        with result:
            pass


# Each function that takes a database, as named in its messages.
FUNCTIONS = {
    "events": picante.events,
    "revisions": picante.revisions,
    "save": picante.save,
    "load": picante.load,
    "sweep": picante.sweep,
    "debug.dependency_graph": debug.dependency_graph,
    "debug.trace": debug.trace,
    "debug.stats": debug.stats,
    "debug.explain": debug.explain,
    "debug.verify": debug.verify,
    "revision": picante.revision,
    "refresh": picante.refresh,
    "snapshot": picante.snapshot,
    "batch": picante.batch,
    "testing.record": picante.testing.record,
    "testing.assert_nothing_runs": picante.testing.assert_nothing_runs,
}

CASES = [
    (object(), "an object"),
    (42, "an int: 42"),
    (None, "None"),
    (Plain(), "a Plain; decorate the class Plain with @picante.database"),
    (Site, "the class Site; pass an instance, Site()"),
]


@pytest.mark.parametrize(("name", "function"), list(FUNCTIONS.items()))
@pytest.mark.parametrize(("argument", "got"), CASES)
async def test_not_a_database(
    name: str, function: Callable[..., Any], argument: object, got: str
) -> None:
    """A function given something else than a database says what it got and wants."""
    with pytest.raises(picante.UsageError, match=f"^{re.escape(f'{name}(): {EXPECTED}{got}')}$"):
        await call(function, argument)


async def test_a_handle_instead_of_its_database() -> None:
    """Passing `db.words` where `db` is expected names the handle and the fix."""
    db = Site()
    with pytest.raises(
        picante.UsageError,
        match=re.escape(
            "events(): expected a database (an instance of a @picante.database class), got "
            "the query handle Site.words; pass the database itself (db, not db.words)"
        ),
    ):
        picante.events(db.words)
    with pytest.raises(
        picante.UsageError, match=r"got the input handle Site\.source; .* db\.source"
    ):
        debug.stats(db.source)


@pytest.mark.parametrize(
    ("function", "name"), [(picante.watch, "watch"), (picante.set_lru, "set_lru")]
)
def test_a_query_is_expected(function: Callable[..., Any], name: str) -> None:
    """`watch` and `set_lru` say what they got when it is not a query handle."""
    db = Site()
    expected = f"{name}(): expected a query of a database instance (db.words), got "
    with pytest.raises(picante.UsageError, match=f"^{re.escape(expected)}a Site database$"):
        function(db, 1)
    with pytest.raises(picante.UsageError, match=f"^{re.escape(expected)}the input handle Site"):
        function(db.source, 1)
    with pytest.raises(picante.UsageError, match=f"^{re.escape(expected)}the function print$"):
        function(print, 1)


def test_database_on_a_function() -> None:
    """`@picante.database` on a function says it decorates classes."""
    with pytest.raises(
        picante.UsageError,
        match=r"^@picante\.database decorates a class, got the function .*<locals>\.make$",
    ):

        @picante.database
        def make() -> Site:
            return Site()


def test_database_given_an_instance() -> None:
    """`picante.database(obj)` with an instance names its type."""
    with pytest.raises(
        picante.UsageError, match=r"^@picante\.database decorates a class, got an int: 3$"
    ):
        picante.database(3)  # type: ignore[type-var]


def test_database_instances_need_a_dict() -> None:
    """A class whose instances have no `__dict__` cannot be a database, said at creation."""
    with pytest.raises(
        picante.UsageError,
        match=re.escape(
            "Slotted: a database's instances need a __dict__ (picante keeps its state there, "
            "under __picante__): drop __slots__, or add '__dict__' to it"
        ),
    ):

        @picante.database
        class Slotted:
            __slots__ = ("root",)


def test_positional_options() -> None:
    """Options passed positionally to `@picante.query`/`@picante.input` are refused."""
    with pytest.raises(
        picante.UsageError,
        match=re.escape(
            "@picante.query decorates an async def method, got an int: 10 "
            "(options are keyword-only: @picante.query(lru=...))"
        ),
    ):
        picante.query(10)  # type: ignore[call-overload]
    with pytest.raises(
        picante.UsageError, match=re.escape("(options are keyword-only: @picante.input(durability=")
    ):
        picante.input(picante.Durability.HIGH)  # type: ignore[call-overload]
