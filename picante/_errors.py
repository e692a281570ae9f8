"""
The exception tree, the one helper that formats a record for humans, and the message of
the most common misuse: passing something else where a database is expected.

```
PicanteError
├── MissingInputError   (also a LookupError)  an input was read while absent
├── CycleError                                 a query needed itself
├── UsageError                                 picante was used in a way it does not allow
├── CacheError                                 a cache file could not be written or read
└── LimitExceededError                         a mutation would exceed max_state_bytes
```

Every constructor argument is passed to `BaseException.__init__`, so `.args` holds the
structured fields: errors pickle, compare and re-raise identically, which matters because
picante memoizes errors and re-raises them. Messages are built in `__str__`.

Exceptions raised by user queries are never wrapped.
"""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = [
    "CacheError",
    "CycleError",
    "LimitExceededError",
    "MissingInputError",
    "PicanteError",
    "UsageError",
    "describe",
    "fmt_key",
    "not_a_database",
]


def fmt_key(ingredient: str, key: tuple[object, ...]) -> str:
    """
    Format a record as the call that addresses it: `page('a.md', 'en')`.

    The single formatter for records everywhere: errors, reprs and debug output.
    """
    return f"{ingredient}({', '.join(map(repr, key))})"


class PicanteError(Exception):
    """
    Base class of every error raised by picante itself.

    Exceptions raised by user queries are not wrapped: they propagate unchanged.
    """


class MissingInputError(PicanteError, LookupError):
    """
    An input was read while it had no value.

    Attributes:
        ingredient: The name of the input, e.g. `"source"`.
        key: The key that was read, as the tuple of bound arguments (`()` for a
            singleton).
    """

    ingredient: str
    key: tuple[object, ...]

    def __init__(self, ingredient: str, key: tuple[object, ...]) -> None:
        super().__init__(ingredient, key)
        self.ingredient = ingredient
        self.key = key

    def __str__(self) -> str:
        return f"no value for input {fmt_key(self.ingredient, self.key)}"


class CycleError(PicanteError):
    """
    A query needed its own value, directly or through other queries.

    Raised in the query that closed the cycle; every query on the cycle sees it unless it
    catches it. A cycle never deadlocks, also when it runs through child tasks or through
    independent tasks waiting on each other.

    A query that declares `cycle_initial` or `cycle_fallback` resolves the cycles it
    heads instead (see `picante.query`); then `CycleError` means that a cycle it headed
    did not converge within `max_iterations` (`iterations` and `last` say how far it got),
    or that a cycle was headed by a query that did not opt in (the message names the
    queries on the cycle that did not).

    Attributes:
        path: The chain of `(query name, key)` records, starting and ending with the same
            record: `(("words", ("a",)), ("page", ("a", "en")), ("words", ("a",)))`. For
            a cycle that did not converge, the head alone.
        iterations: How many iterations a fixpoint ran before giving up, else `None`.
        last: The reprs of the last two values a fixpoint computed, else `()`.
    """

    path: tuple[tuple[str, tuple[object, ...]], ...]
    iterations: int | None
    last: tuple[str, ...]

    def __init__(
        self,
        path: Sequence[tuple[str, tuple[object, ...]]],
        iterations: int | None = None,
        last: Sequence[str] = (),
        opted_out: Sequence[tuple[str, tuple[object, ...]]] = (),
    ) -> None:
        path = tuple(path)
        last = tuple(last)
        opted_out = tuple(opted_out)
        if iterations is None and not last and not opted_out:
            super().__init__(path)
        else:
            super().__init__(path, iterations, last, opted_out)
        self.path = path
        self.iterations = iterations
        self.last = last
        self._opted_out = opted_out

    def __str__(self) -> str:
        chain = " → ".join(fmt_key(name, key) for name, key in self.path)
        if self.iterations is not None:
            return (
                f"cycle headed by {chain} did not converge in {self.iterations} "
                f"iterations; the last two values: {', '.join(self.last)}"
            )
        if self._opted_out:
            names = ", ".join(fmt_key(name, key) for name, key in self._opted_out)
            return (
                f"cycle: {chain} (entered at a query that resolves no cycle; on this "
                f"cycle, these do not declare cycle_initial or cycle_fallback: {names})"
            )
        return f"cycle: {chain}"


class UsageError(PicanteError):
    """
    picante was used in a way it does not allow.

    Raised at class creation for a bad declaration (the message starts with
    `Class.method:`), and at run time for a forbidden operation such as setting an input
    from inside a running query.
    """


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def describe(obj: object) -> str:
    """
    Say what *obj* is, for an error message: `the class Site`, `an int: 42`,
    `the query handle Site.words`, `the function make_site`.
    """
    if obj is None:
        return "None"
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    ingredient = getattr(obj, "ingredient", None)
    kind = getattr(ingredient, "kind", None)
    if isinstance(kind, str) and hasattr(ingredient, "qualname"):
        return f"the {kind} handle {getattr(ingredient, 'qualname', '?')}"
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"the function {getattr(obj, '__qualname__', '?')}"
    name = type(obj).__qualname__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    if getattr(type(obj), "__picante__", None) is not None:
        return f"{article} {name} database"
    if type(obj).__repr__ is object.__repr__:
        return f"{article} {name}"  # `<Plain object at 0x7f…>` would say nothing more
    return f"{article} {name}: {_short.repr(obj)}"


def not_a_database(function: str, obj: object) -> UsageError:
    """The error of *function* (`"save"`) given *obj* where it takes a database."""
    hint = ""
    if isinstance(obj, type) and getattr(obj, "__picante__", None) is not None:
        hint = f"; pass an instance, {obj.__qualname__}()"
    elif hasattr(ingredient := getattr(obj, "ingredient", None), "kind"):
        name = getattr(ingredient, "name", "words")
        hint = f"; pass the database itself (db, not db.{name})"
    elif not callable(obj) and hasattr(obj, "__dict__"):
        hint = f"; decorate the class {type(obj).__qualname__} with @picante.database"
    msg = (
        f"{function}(): expected a database (an instance of a @picante.database class), "
        f"got {describe(obj)}{hint}"
    )
    return UsageError(msg)


class CacheError(PicanteError):
    """A cache file could not be written or read; the message gives the reason."""


class LimitExceededError(PicanteError):
    """A mutation would have made the database exceed its `max_state_bytes`."""
