"""
picante: an asyncio-first incremental query framework.

Declare a database class with `@picante.database`; its `@picante.input` and
`@picante.query` methods become ingredients. `await db.words("a.md")` computes and
memoizes; after an input changes, picante recomputes only what is affected and stops
early when a recomputed value comes out equal.
"""

from . import debug as debug, stores as stores, testing as testing
from ._accumulate import accumulate as accumulate, accumulated as accumulated
from ._declare import (
    database as database,
    input as input,
    interned as interned,
    query as query,
)
from ._errors import (
    CacheError as CacheError,
    CycleError as CycleError,
    LimitExceededError as LimitExceededError,
    MissingInputError as MissingInputError,
    PicanteError as PicanteError,
    UsageError as UsageError,
)
from ._events import (
    Event as Event,
    EventStream as EventStream,
    InputRemoved as InputRemoved,
    InputSet as InputSet,
    Lagged as Lagged,
    QueryChanged as QueryChanged,
    QueryInvalidated as QueryInvalidated,
    RevisionBumped as RevisionBumped,
    RevisionStream as RevisionStream,
    Watch as Watch,
    events as events,
    revisions as revisions,
    watch as watch,
)
from ._frames import report_untracked_read as report_untracked_read
from ._gather import gather as gather
from ._ingredients import (
    BoundInput as BoundInput,
    BoundInterned as BoundInterned,
    BoundQuery as BoundQuery,
    CacheInfo as CacheInfo,
    InputIngredient as InputIngredient,
    InternedIngredient as InternedIngredient,
    QueryIngredient as QueryIngredient,
    set_lru as set_lru,
)
from ._persist import load as load, save as save
from ._runtime import (
    batch as batch,
    refresh as refresh,
    revision as revision,
    snapshot as snapshot,
)
from ._share import flush_shared as flush_shared, share as share
from ._store import Durability as Durability, InternId as InternId, Revision as Revision
from ._sweep import sweep as sweep


__all__ = [
    "BoundInput",
    "BoundInterned",
    "BoundQuery",
    "CacheError",
    "CacheInfo",
    "CycleError",
    "Durability",
    "Event",
    "EventStream",
    "InputIngredient",
    "InputRemoved",
    "InputSet",
    "InternId",
    "InternedIngredient",
    "Lagged",
    "LimitExceededError",
    "MissingInputError",
    "PicanteError",
    "QueryChanged",
    "QueryIngredient",
    "QueryInvalidated",
    "Revision",
    "RevisionBumped",
    "RevisionStream",
    "UsageError",
    "Watch",
    "accumulate",
    "accumulated",
    "batch",
    "database",
    "debug",
    "events",
    "flush_shared",
    "gather",
    "input",
    "interned",
    "load",
    "query",
    "refresh",
    "report_untracked_read",
    "revision",
    "revisions",
    "save",
    "set_lru",
    "share",
    "snapshot",
    "stores",
    "sweep",
    "testing",
    "watch",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("picante")
    msg = f"module 'picante' has no attribute {name!r}"
    raise AttributeError(msg)


def _report_public_module() -> None:
    """Make public objects say `picante.X`: tracebacks, reprs, pickles and docs use it."""
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("picante."):
            obj.__module__ = "picante"


_report_public_module()
del _report_public_module
