"""
The exception tree, and the one helper that formats a record for humans.

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
    "fmt_key",
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

    Attributes:
        path: The chain of `(query name, key)` records, starting and ending with the same
            record: `(("words", ("a",)), ("page", ("a", "en")), ("words", ("a",)))`.
    """

    path: tuple[tuple[str, tuple[object, ...]], ...]

    def __init__(self, path: Sequence[tuple[str, tuple[object, ...]]]) -> None:
        path = tuple(path)
        super().__init__(path)
        self.path = path

    def __str__(self) -> str:
        chain = " → ".join(fmt_key(name, key) for name, key in self.path)
        return f"cycle: {chain}"


class UsageError(PicanteError):
    """
    picante was used in a way it does not allow.

    Raised at class creation for a bad declaration (the message starts with
    `Class.method:`), and at run time for a forbidden operation such as setting an input
    from inside a running query.
    """


class CacheError(PicanteError):
    """A cache file could not be written or read; the message gives the reason."""


class LimitExceededError(PicanteError):
    """A mutation would have made the database exceed its `max_state_bytes`."""
