"""The public namespace: sorted `__all__`, stable `__module__`, errors that pickle."""

from __future__ import annotations

import pickle

import pytest

import picante


def test_all_is_sorted_and_complete() -> None:
    """`__all__` lists every public name, sorted."""
    public = sorted(name for name in vars(picante) if not name.startswith("_"))
    assert picante.__all__ == public


# Type aliases, documented as such (`Revision = int`, `Event` a union of the event
# classes), and the `picante.debug`, `picante.stores` and `picante.testing` modules.
ALIASES = {"Revision", "Event", "debug", "stores", "testing"}


def test_public_objects_report_picante_module() -> None:
    """Classes and functions say `picante.X`, not the private module they live in."""
    modules = {
        name: getattr(picante, name).__module__ for name in picante.__all__ if name not in ALIASES
    }
    expected = {name: "picante" for name in picante.__all__ if name not in ALIASES}
    assert {name: module for name, module in modules.items() if name not in ALIASES} == expected
    assert picante.Revision is int
    assert picante.debug.__name__ == "picante.debug"
    assert picante.testing.__name__ == "picante.testing"
    assert picante.stores.__name__ == "picante.stores"


def test_error_tree() -> None:
    """Every framework error derives from `PicanteError`; a missing input is a LookupError."""
    for error in (
        picante.MissingInputError,
        picante.CycleError,
        picante.UsageError,
        picante.CacheError,
        picante.LimitExceededError,
    ):
        assert issubclass(error, picante.PicanteError)
    assert issubclass(picante.MissingInputError, LookupError)


@pytest.mark.parametrize(
    "error",
    [
        picante.MissingInputError("source", ("a.md",)),
        picante.CycleError([("words", ("a",)), ("words", ("a",))]),
        picante.UsageError("Site.words: reason"),
        picante.CacheError("truncated"),
        picante.LimitExceededError("too big"),
    ],
)
def test_errors_pickle(error: picante.PicanteError) -> None:
    """Errors survive pickling with their args and message (memoized errors re-raise so)."""
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.args, str(copy)) == (type(error), error.args, str(error))


def test_version() -> None:
    """`picante.__version__` comes from the installed metadata."""
    assert isinstance(picante.__version__, str)
    assert picante.__version__
