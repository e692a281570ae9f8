"""
Runtime data: revisions, durability, input cells and query cells. Pure data: no asyncio,
no I/O, no algorithm beyond what a single cell knows about itself.

How a record is laid out (one object per record, plain `__slots__` for a small, fast cell):

* `InputCell` — the value of one input key (or `ABSENT`), the revision it last changed
  at, the memos that read it (`dependents`), and, only while evaluations bound to an older
  revision are running, the versions they may still need (`history`).
* `QueryCell` — one memo: the value or the failure, `verified_at` (the last revision at
  which the value is known to be right), `changed_at` (the revision at which the value
  last became different), the minimum durability of what it read, the dependencies in
  the order they were first read, the memos that read it, and `clean`.

`clean` is what makes revalidation after an unrelated change O(1). Invariant: a clean
memo is valid at its view's current revision, and every query it depends on is clean.
A mutation marks every memo that transitively depends on the changed input as not clean
(push), and a read of a clean memo needs no walk at all (pull). A memo that failed is
never clean: errors are memoized for one revision only.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Final, TypeAlias


if TYPE_CHECKING:
    from types import TracebackType


__all__ = [
    "ABSENT",
    "NEVER",
    "Durability",
    "Failure",
    "InputCell",
    "QueryCell",
    "Revision",
    "default_eq",
    "errors_equal",
]

Revision: TypeAlias = int
"""A point in a view's timeline. A new database is at revision 0; each change adds 1."""

NEVER: Final = -1
"""The `verified_at` of a cell that has no memo yet."""


class Durability(enum.IntEnum):
    """
    How rarely an input changes; a hint that never changes results, only work.

    A memo whose dependencies all have durability ≥ D is revalidated in O(1) while no
    input of durability ≥ D has changed since it was last verified.
    """

    LOW = 0
    MEDIUM = 1
    HIGH = 2


class _Absent:
    """The value of an input cell that has no value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


def default_eq(a: object, b: object) -> bool:
    """
    Decide whether *a* and *b* are equal for early cutoff: `a is b or a == b`.

    A raising `==`, or one that does not return a `bool` (numpy arrays), counts as "changed":
    the worst that can do is recompute more.
    """
    if a is b:
        return True
    try:
        result = a == b
    except Exception:  # noqa: BLE001 - any failure of a user's __eq__ means "changed"
        return False
    return result is True


def errors_equal(a: BaseException, b: BaseException) -> bool:
    """Decide whether two memoized errors are the same outcome: same type, equal args."""
    return type(a) is type(b) and default_eq(a.args, b.args)


class Failure:
    """A memoized exception and the traceback it was first raised with."""

    __slots__ = ("error", "traceback")

    def __init__(self, error: BaseException, traceback: TracebackType | None) -> None:
        self.error = error
        self.traceback = traceback

    def reraise(self) -> Any:
        """Raise the error again with its original traceback (so it does not grow)."""
        raise self.error.with_traceback(self.traceback)


class InputCell:
    """One input record: its current value (or `ABSENT`) and who read it."""

    __slots__ = ("changed_at", "dependents", "history", "ingredient", "key", "value")

    def __init__(
        self, ingredient: Any, key: tuple[object, ...], value: object, changed_at: Revision
    ) -> None:
        self.ingredient = ingredient
        self.key = key
        self.value = value
        self.changed_at = changed_at
        self.dependents: set[QueryCell] | None = None
        # Older (changed_at, value) versions, newest last; kept only while an evaluation
        # bound to an older revision is running (see `View.keep_history`).
        self.history: list[tuple[Revision, object]] | None = None

    def version_at(self, revision: Revision) -> tuple[Revision, object]:
        """Return `(changed_at, value)` as it was at *revision*."""
        if self.changed_at <= revision:
            return self.changed_at, self.value
        for changed_at, value in reversed(self.history or ()):
            if changed_at <= revision:
                return changed_at, value
        # Older than any version kept: the cell did not exist, i.e. it was absent.
        return 0, ABSENT

    def __repr__(self) -> str:
        from ._errors import fmt_key

        return f"<InputCell {fmt_key(self.ingredient.name, self.key)} changed={self.changed_at}>"


class QueryCell:
    """One query record: the memo and the bookkeeping that revalidates it."""

    __slots__ = (
        "changed_at",
        "clean",
        "dependents",
        "deps",
        "durability",
        "failure",
        "flight",
        "ingredient",
        "key",
        "value",
        "verified_at",
    )

    def __init__(self, ingredient: Any, key: tuple[object, ...]) -> None:
        self.ingredient = ingredient
        self.key = key
        self.value: Any = None
        self.failure: Failure | None = None
        self.verified_at: Revision = NEVER
        self.changed_at: Revision = NEVER
        self.durability = Durability.HIGH
        self.deps: tuple[InputCell | QueryCell, ...] = ()
        self.dependents: set[QueryCell] | None = None
        self.clean = False
        # The evaluation in progress for the current revision, if any (a `Frame`).
        self.flight: Any = None

    def __repr__(self) -> str:
        from ._errors import fmt_key

        return (
            f"<Memo {fmt_key(self.ingredient.name, self.key)}"
            f" verified={self.verified_at} changed={self.changed_at}>"
        )
