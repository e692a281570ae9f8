"""
Hypothesis strategies shared by the property tests.

Keys and values are deliberately tiny (keys `0..4`, values `-3..12`), so that generated
operations keep hitting the same records: a set often overwrites a value a query already
read, sets the value it already has (a no-op) or removes a key that is absent (a no-op).

A *cell* is an input record `(input name, key tuple)`, e.g. `("src", (3,))`, and a
*record* is a query record in the same shape, e.g. `("chain", (4,))` or `("total", ())`.
"""

from __future__ import annotations

from typing import TypeAlias

from hypothesis import strategies as st


__all__ = [
    "KEYS",
    "MAX_VALUE",
    "MIN_VALUE",
    "Cell",
    "Mutation",
    "Record",
    "keys",
    "mutations",
    "records",
    "values",
]

Cell: TypeAlias = tuple[str, tuple[int, ...]]
"""An input record: `(input name, key)`."""

Record: TypeAlias = tuple[str, tuple[int, ...]]
"""A query record: `(query name, key)`."""

Mutation: TypeAlias = tuple[Cell, int | None]
"""A `set` of a cell to a value, or (value `None`) a `remove` of it."""

KEYS = range(5)
"""The key space of every keyed input and query."""

MIN_VALUE = -3
MAX_VALUE = 12


def keys() -> st.SearchStrategy[int]:
    """Draw a key from the small shared key space."""
    return st.sampled_from(KEYS)


def values() -> st.SearchStrategy[int]:
    """Draw an input value from a range small enough to repeat, with negatives and > 10."""
    return st.integers(MIN_VALUE, MAX_VALUE)


def records(signature: dict[str, int]) -> list[Record]:
    """
    List every record of the ingredients in *signature* (name → number of key parameters).

    An ingredient with no key parameter is a singleton with the one record `(name, ())`.
    """
    result: list[Record] = []
    for name, arity in signature.items():
        if arity == 0:
            result.append((name, ()))
        else:
            assert arity == 1, "the test graphs only use zero or one key parameter"
            result.extend((name, (k,)) for k in KEYS)
    return result


def mutations(cells: list[Cell]) -> st.SearchStrategy[Mutation]:
    """Draw a `set` of one of *cells* to a value from `values()`, or one time in four a `remove`."""
    return st.tuples(st.sampled_from(cells), st.integers(0, 3), values()).map(
        lambda drawn: (drawn[0], None if drawn[1] == 0 else drawn[2])
    )
