"""
Property tests of `picante.save` and `picante.load`: round trips of every kind of key and
value, and corrupted cache files and logs.

`Types` declares one input per key and value type (attrs classes with nested fields,
tuples, lists of dicts, nested lists and dicts, `int`, `float`, `str`, `None` and
`int | None`), each with a query that echoes it, so that keys and values of inputs and of
memos both go through the file. The corruption tests damage a cache of fixed contents
(a base file and a log of two entries) and require `CacheError` or a clean load of a state
that was saved, never anything else; the malformed-payload tests give well-checksummed
files whose JSON is wrong, which must load or raise `CacheError` too.

Values of the wrong type (`True` for an `int`, a nan nested in a `list[list[float]]`, a
tuple under `Any`) fail the save, which leaves the file as it was
(`test_mismatched_types_fail_the_save_or_load_back_identically`).

One behaviour is pinned as it is, not as it should be: garbage in the log whose length
field runs past the end is read as a torn tail, hiding the valid entries after it
(`test_garbage_with_a_long_length_reads_as_a_torn_tail`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import struct
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import picante
from picante import CacheError, MissingInputError


if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")


BASE_HEADER = struct.Struct(">8sHQ16s")
"""A base file's header: magic, format, payload length, blake2b-128 of the payload."""

LOG_HEADER = struct.Struct(">8sH16s")
"""A log's header: magic, format, blake2b-128 of its base's payload."""

ENTRY_HEADER = struct.Struct(">I16s")
"""A log entry's header: payload length, blake2b-128 of the payload."""


# -- the database under test --------------------------------------------------------------


@attrs.frozen
class Point:
    x: int
    y: int


@attrs.frozen
class Style:
    color: str
    width: float


@attrs.frozen
class Shape:
    name: str
    corners: tuple[Point, ...]
    style: Style | None


@picante.database
class Types:
    """One input per type, each echoed by a query `q_<input>`; `length` reads `q_text`."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @picante.input
    async def shape(self, key: Point) -> Shape: ...

    @picante.input
    async def anchor(self, key: Shape) -> Point: ...

    @picante.input
    async def cell(self, key: tuple[int, str]) -> tuple[str, ...]: ...

    @picante.input
    async def path(self, key: tuple[str, ...]) -> list[dict[str, int]]: ...

    @picante.input
    async def tree(self, key: str) -> dict[str, list[dict[str, list[int]]]]: ...

    @picante.input
    async def grid(self, key: int) -> list[list[float]]: ...

    @picante.input
    async def weight(self, key: int) -> float: ...

    @picante.input
    async def slot(self, key: float) -> int: ...

    @picante.input
    async def text(self, key: str) -> str: ...

    @picante.input
    async def maybe(self, key: int | None) -> int | None: ...

    @picante.input
    async def unit(self, key: None) -> None: ...

    @picante.query
    async def q_shape(self, key: Point) -> Shape:
        self.log.append(f"q_shape({key!r})")
        return await self.shape(key)

    @picante.query
    async def q_anchor(self, key: Shape) -> Point:
        self.log.append(f"q_anchor({key!r})")
        return await self.anchor(key)

    @picante.query
    async def q_cell(self, key: tuple[int, str]) -> tuple[str, ...]:
        self.log.append(f"q_cell({key!r})")
        return await self.cell(key)

    @picante.query
    async def q_path(self, key: tuple[str, ...]) -> list[dict[str, int]]:
        self.log.append(f"q_path({key!r})")
        return await self.path(key)

    @picante.query
    async def q_tree(self, key: str) -> dict[str, list[dict[str, list[int]]]]:
        self.log.append(f"q_tree({key!r})")
        return await self.tree(key)

    @picante.query
    async def q_grid(self, key: int) -> list[list[float]]:
        self.log.append(f"q_grid({key!r})")
        return await self.grid(key)

    @picante.query
    async def q_weight(self, key: int) -> float:
        self.log.append(f"q_weight({key!r})")
        return await self.weight(key)

    @picante.query
    async def q_slot(self, key: float) -> int:
        self.log.append(f"q_slot({key!r})")
        return await self.slot(key)

    @picante.query
    async def q_text(self, key: str) -> str:
        self.log.append(f"q_text({key!r})")
        return await self.text(key)

    @picante.query
    async def q_maybe(self, key: int | None) -> int | None:
        self.log.append(f"q_maybe({key!r})")
        return await self.maybe(key)

    @picante.query
    async def q_unit(self, key: None) -> None:
        self.log.append(f"q_unit({key!r})")
        return await self.unit(key)

    @picante.query
    async def length(self, key: str) -> int:
        self.log.append(f"length({key!r})")
        return len(await self.q_text(key))


# -- strategies -----------------------------------------------------------------------------

texts = st.text(max_size=6)  # any unicode but lone surrogates, and often empty
ints = st.integers(-(2**63), 2**64 - 1)  # orjson's range: int64 and uint64
floats = st.floats(allow_nan=False, allow_infinity=False)
points = st.builds(Point, ints, ints)
shapes = st.builds(
    Shape,
    texts,
    st.lists(points, max_size=3).map(tuple),
    st.none() | st.builds(Style, texts, floats),
)

KINDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "shape": (points, shapes),
    "anchor": (shapes, points),
    "cell": (st.tuples(ints, texts), st.lists(texts, max_size=3).map(tuple)),
    "path": (
        st.lists(texts, max_size=3).map(tuple),
        st.lists(st.dictionaries(texts, ints, max_size=2), max_size=2),
    ),
    "tree": (
        texts,
        st.dictionaries(
            texts,
            st.lists(st.dictionaries(texts, st.lists(ints, max_size=2), max_size=2), max_size=2),
            max_size=2,
        ),
    ),
    "grid": (ints, st.lists(st.lists(floats, max_size=3), max_size=3)),
    "weight": (ints, floats),
    "slot": (floats, ints),
    "text": (texts, texts),
    "maybe": (st.none() | ints, st.none() | ints),
    "unit": (st.none(), st.none()),
}
"""Input name → (key strategy, value strategy); its query is `q_<name>`."""


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()
"""A drawn change that removes the key instead of setting it."""

Changes: TypeAlias = dict[str, dict[Any, Any]]
"""Per input name: key → value to set, or `REMOVE`."""

Model: TypeAlias = dict[str, dict[Any, Any]]
"""Per input name: key → value, or `REMOVE` for a key that was set and then removed."""

changes = st.fixed_dictionaries(
    {
        name: st.dictionaries(key, st.just(REMOVE) | value, max_size=2)
        for name, (key, value) in KINDS.items()
    }
)


# -- helpers --------------------------------------------------------------------------------


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a fresh event loop (hypothesis examples are synchronous)."""
    return asyncio.run(factory())


def assert_same(actual: object, expected: object) -> None:
    """`actual == expected`, with the same type at every level (a tuple is not a list)."""
    assert type(actual) is type(expected), f"{actual!r} is not a {type(expected).__name__}"
    if isinstance(expected, dict):
        assert isinstance(actual, dict)
        assert len(actual) == len(expected)
        for (key, value), (their_key, their_value) in zip(
            actual.items(), expected.items(), strict=True
        ):
            assert_same(key, their_key)
            assert_same(value, their_value)
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple)
        assert len(actual) == len(expected)
        for mine, theirs in zip(actual, expected, strict=True):
            assert_same(mine, theirs)
    elif attrs.has(type(expected)):
        for field in attrs.fields(type(expected)):
            assert_same(getattr(actual, field.name), getattr(expected, field.name))
    elif isinstance(expected, float) and expected == 0:
        assert math.copysign(1, actual) == math.copysign(1, expected)  # type: ignore[arg-type]
    else:
        assert actual == expected


def apply(db: Types, model: Model, drawn: Changes) -> None:
    """Set (or remove) every drawn key on *db*, and in *model*."""
    for name, entries in drawn.items():
        bound = getattr(db, name)
        for key, value in entries.items():
            if value is REMOVE:
                bound.remove(key)
                model[name][key] = REMOVE
            else:
                bound.set(key, value)
                model[name][key] = value


def present(model: Model) -> list[tuple[str, Any, Any]]:
    """Every `(input name, key, value)` of *model* that has a value."""
    return [
        (name, key, value)
        for name, entries in model.items()
        for key, value in entries.items()
        if value is not REMOVE
    ]


async def compute(db: Types, model: Model) -> None:
    """Await every query whose input has a value; check each answer."""
    for name, key, value in present(model):
        assert_same(await getattr(db, f"q_{name}")(key), value)
        if name == "text":
            assert await db.length(key) == len(value)


def calls(model: Model) -> list[str]:
    """The log lines of every query over an input of *model* that has a value, sorted."""
    lines = [f"q_{name}({key!r})" for name, key, _ in present(model)]
    lines += [f"length({key!r})" for name, key, _ in present(model) if name == "text"]
    return sorted(lines)


def assert_inputs(db: Types, model: Model) -> None:
    """Every input of *db* reads back as *model* says: value (same type) or absent."""
    missing = object()
    for name, entries in model.items():
        # Keys come back with their types too (`3.0` is no `3`, a tuple no list).
        stored = {key: key for key in db.__picante__.tables.get(name, {})}
        for key, value in entries.items():
            found = getattr(db, name).get(key, default=missing)
            if value is REMOVE:
                assert found is missing, f"{name}({key!r}) should be absent"
            else:
                assert_same(found, value)
                assert_same(stored[key,], (key,))


# -- round trips ----------------------------------------------------------------------------


@given(first=changes, second=changes)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_round_trip(tmp_path: Path, first: Changes, second: Changes) -> None:
    """Inputs and memos of every type saved (full, then log) load back equal and reused."""
    cache = tmp_path / "cache"
    cache.unlink(missing_ok=True)
    model: Model = {name: {} for name in KINDS}
    log: list[str] = []

    async def save_twice() -> int:
        db = Types(log)
        apply(db, model, first)
        await compute(db, model)
        await picante.save(db, cache)
        apply(db, model, second)
        await compute(db, model)
        await picante.save(db, cache)
        return picante.revision(db)

    saved_at = run(save_twice)
    event(f"log entry: {cache.with_name('cache.log').exists()}")
    loaded_log: list[str] = []

    async def load_and_read() -> None:
        db = Types(loaded_log)
        assert await picante.load(db, cache) is True
        assert picante.revision(db) == saved_at
        assert_inputs(db, model)
        await compute(db, model)
        assert loaded_log == []  # every memo reused
        # The dependencies came back too: removing every input reruns every query once.
        with picante.batch(db):
            for name, key, _ in present(model):
                getattr(db, name).remove(key)
        for name, key, _ in present(model):
            with pytest.raises(MissingInputError):
                await getattr(db, f"q_{name}")(key)
            if name == "text":
                with pytest.raises(MissingInputError):
                    await db.length(key)
        assert sorted(loaded_log) == calls(model)

    run(load_and_read)


@given(
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    weights=st.dictionaries(st.integers(0, 9), floats, min_size=1, max_size=3),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_non_finite_float_fails_the_save(
    tmp_path: Path, bad: float, weights: dict[int, float]
) -> None:
    """A nan/inf float value has no JSON form: save raises CacheError, the old file stays."""
    cache = tmp_path / "cache"
    cache.unlink(missing_ok=True)

    async def scenario() -> None:
        db = Types([])
        for key, value in weights.items():
            db.weight.set(key, value)
        await picante.save(db, cache)
        before = cache.read_bytes()
        db.weight.set(-1, bad)
        with pytest.raises(CacheError, match=r"weight\(-1\).*float"):
            await picante.save(db, cache)
        assert cache.read_bytes() == before
        fresh = Types([])
        assert await picante.load(fresh, cache, on_corrupt="error") is True
        for key, value in weights.items():
            assert fresh.weight.get(key) == value

    run(scenario)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        pytest.param("grid", (1, [[1.0, math.inf]]), id="in-a-list"),
        pytest.param("shape", (Point(0, 0), Shape("s", (), Style("red", math.nan))), id="in-attrs"),
    ],
)
async def test_non_finite_float_nested_fails_the_save(
    tmp_path: Path, name: str, bad: tuple[object, object]
) -> None:
    """A nan/inf inside a value fails the save too (it was once lost with its section)."""
    db = Types([])
    getattr(db, name).set(*bad)
    with pytest.raises(CacheError, match=rf"^cannot save Types\.{name}\(.*JSON has no nan"):
        await picante.save(db, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


scalars = (
    ints
    | st.booleans()
    | st.floats()  # nan and infinities included
    | texts
    | st.none()
)
"""Values of every native type, so that most draws do not match a given annotation."""

anything = st.recursive(
    scalars | st.builds(Point, scalars, scalars) | st.builds(Style, scalars, scalars),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(texts, inner, max_size=2)
    ),
    max_leaves=6,
)
"""Values of any shape; the builds make attrs instances with fields of the wrong type."""

hashable = st.recursive(
    scalars | st.builds(Point, scalars, scalars),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=4,
)


@given(
    name=st.sampled_from(sorted(KINDS)),
    data=st.data(),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_mismatched_types_fail_the_save_or_load_back_identically(
    tmp_path: Path, name: str, data: st.DataObject
) -> None:
    """
    Any key and value under any annotation: `save` fails with `CacheError` and leaves the
    file byte for byte, or `load` gives back the same key and value (same types), and the
    memo that echoes it is reused.
    """
    key_strategy, value_strategy = KINDS[name]
    key = data.draw(key_strategy | hashable, label="key")
    value = data.draw(value_strategy | anything, label="value")
    cache = tmp_path / "cache"
    cache.unlink(missing_ok=True)

    async def scenario() -> None:
        db = Types([])
        db.text.set("kept", "yes")
        await picante.save(db, cache)
        before = cache.read_bytes()
        getattr(db, name).set(key, value)
        with contextlib.suppress(Exception):  # a query over a wrong type may raise: fine
            await getattr(db, f"q_{name}")(key)
        try:
            await picante.save(db, cache)
        except CacheError:
            event("refused")
            assert cache.read_bytes() == before
            assert not cache.with_name("cache.log").exists()
            return
        event("saved")
        log: list[str] = []
        fresh = Types(log)
        assert await picante.load(fresh, cache) is True
        stored = {stored: stored for stored in fresh.__picante__.tables[name]}
        assert_same(stored[key,], (key,))
        assert_same(getattr(fresh, name).get(key), value)
        assert_same(await getattr(fresh, f"q_{name}")(key), value)
        assert log == []
        if (name, key) != ("text", "kept"):
            assert fresh.text.get("kept") == "yes"

    run(scenario)


# -- corrupted files ------------------------------------------------------------------------

STAGES: list[Changes] = [
    {
        "text": {"a": "alpha", "b": "βeta"},
        "shape": {Point(1, 2): Shape("tri", (Point(0, 0), Point(3, 4)), None)},
        "maybe": {None: 1, 2: None},
        "weight": {1: 0.5},
        "unit": {None: None},
    },
    {"text": {"a": "ALPHA", "b": REMOVE, "c": ""}, "cell": {(1, "x"): ("y", "z")}},
    {"weight": {1: -0.0, 2: 1e300}, "maybe": {2: 3}, "path": {("p", "q"): [{"k": 1}]}},
]
"""The changes before each save of the original cache: a full save, then two log entries."""


@attrs.frozen
class Original:
    """A valid cache (base and log) and what each of its saves held."""

    base: bytes
    log: bytes
    other_base: bytes  # a valid base and log of other contents, to take headers from
    other_log: bytes
    models: list[Model]  # per save, every key ever set: its value then, or REMOVE
    revisions: list[int]
    entry_ends: list[int]  # where each log entry ends in `log`


def log_entry_ends(log: bytes) -> list[int]:
    """The offset where each entry of a valid log ends."""
    ends = []
    offset = LOG_HEADER.size
    while offset < len(log):
        length, _ = ENTRY_HEADER.unpack_from(log, offset)
        offset += ENTRY_HEADER.size + length
        ends.append(offset)
    return ends


@functools.cache
def original() -> Original:
    """Build the original cache once: `STAGES` saved one after the other."""

    async def build(directory: Path) -> Original:
        db = Types([])
        model: Model = {name: {} for name in KINDS}
        snapshots: list[Model] = []
        revisions = []
        for stage in STAGES:
            apply(db, model, stage)
            await compute(db, model)
            await picante.save(db, directory / "cache")
            snapshots.append({name: dict(entries) for name, entries in model.items()})
            revisions.append(picante.revision(db))
        # Every model lists every key of the last one: absent then if not set yet.
        models = [
            {name: {key: snap[name].get(key, REMOVE) for key in model[name]} for name in KINDS}
            for snap in snapshots
        ]
        other = Types([])
        other.text.set("z", "zed")
        await picante.save(other, directory / "other")
        other.text.set("z", "zee")
        await picante.save(other, directory / "other")
        log = (directory / "cache.log").read_bytes()
        assert len(log_entry_ends(log)) == len(STAGES) - 1  # no compaction
        return Original(
            (directory / "cache").read_bytes(),
            log,
            (directory / "other").read_bytes(),
            (directory / "other.log").read_bytes(),
            models,
            revisions,
            log_entry_ends(log),
        )

    with tempfile.TemporaryDirectory() as directory:
        return run(lambda: build(Path(directory)))


@attrs.frozen
class Flip:
    """XOR bytes: each `(position, mask)`, the position taken modulo the length."""

    flips: list[tuple[int, int]]

    def __call__(self, data: bytes, donor: bytes) -> bytes:
        damaged = bytearray(data)
        for position, mask in self.flips:
            if damaged:
                damaged[position % len(damaged)] ^= mask
        return bytes(damaged)


@attrs.frozen
class Truncate:
    """Cut the file short (the position taken modulo the length)."""

    at: int

    def __call__(self, data: bytes, donor: bytes) -> bytes:
        return data[: self.at % len(data)]


@attrs.frozen
class Append:
    """Append garbage."""

    garbage: bytes

    def __call__(self, data: bytes, donor: bytes) -> bytes:
        return data + self.garbage


@attrs.frozen
class Replace:
    """Replace the whole file (empty, or random bytes)."""

    contents: bytes

    def __call__(self, data: bytes, donor: bytes) -> bytes:
        return self.contents


@attrs.frozen
class SwapHeader:
    """Put another file's header in place of this one's: `donor` says which file."""

    donor: str  # "other": the same kind of file of another cache; "sibling": base <-> log

    def __call__(self, data: bytes, donor: bytes) -> bytes:
        mine = BASE_HEADER.size if data.startswith(b"PICANTE\n") else LOG_HEADER.size
        theirs = BASE_HEADER.size if donor.startswith(b"PICANTE\n") else LOG_HEADER.size
        return donor[:theirs] + data[mine:]


Damage: TypeAlias = Flip | Truncate | Append | Replace | SwapHeader

damages: st.SearchStrategy[Damage] = st.one_of(
    st.builds(
        Flip,
        st.lists(st.tuples(st.integers(0, 2**16), st.integers(1, 255)), min_size=1, max_size=3),
    ),
    st.builds(Truncate, st.integers(0, 2**16)),
    st.builds(Append, st.binary(min_size=1, max_size=64)),
    st.builds(Replace, st.binary(max_size=64)),
    st.builds(SwapHeader, st.sampled_from(["other", "sibling"])),
)


def write_cache(cache: Path, base: bytes, log: bytes) -> None:
    """Write a base file and its log."""
    cache.write_bytes(base)
    cache.with_name(cache.name + ".log").write_bytes(log)


async def loaded_stage(db: Types, found: Original) -> int:
    """Which save of the original *db* holds: exactly, inputs and memos (all reused)."""
    revision = picante.revision(db)
    assert revision in found.revisions, f"loaded revision {revision}: no save had it"
    stage = found.revisions.index(revision)
    model = found.models[stage]
    assert_inputs(db, model)
    await compute(db, model)
    assert db.log == []
    return stage


async def load_or_error(db: Types, cache: Path) -> bool | picante.CacheError:
    """`picante.load(db, cache)`, or the `CacheError` it raised."""
    try:
        return await picante.load(db, cache, on_corrupt="error")
    except picante.CacheError as error:
        return error


def assert_empty(db: Types) -> None:
    """*db* has no state: revision 0, no inputs and no memos."""
    assert picante.revision(db) == 0
    assert not any(db.__picante__.tables.values())


def first_difference(damaged: bytes, intact: bytes) -> int:
    """The offset of the first byte where *damaged* and *intact* differ."""
    for offset, (mine, theirs) in enumerate(zip(damaged, intact, strict=False)):
        if mine != theirs:
            return offset
    return min(len(damaged), len(intact))


@given(target=st.sampled_from(["base", "log"]), damage=damages)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_corrupt_file(tmp_path: Path, target: str, damage: Damage) -> None:
    """A damaged base or log raises CacheError or loads a saved state; ignore/delete agree."""
    found = original()
    cache = tmp_path / "cache"
    sibling = damage == SwapHeader("sibling")
    base, log = found.base, found.log
    if target == "base":
        base = damage(found.base, found.log if sibling else found.other_base)
    else:
        log = damage(found.log, found.base if sibling else found.other_log)
    write_cache(cache, base, log)
    last = len(STAGES) - 1

    async def scenario() -> None:
        db = Types([])
        outcome = await load_or_error(db, cache)
        if isinstance(outcome, picante.CacheError):
            assert str(outcome).startswith(f"{cache}: ")  # then the reason
            assert_empty(db)
            stage = None
        else:
            assert outcome is True
            stage = await loaded_stage(db, found)
        event(f"{target} {type(damage).__name__}: stage {stage}")
        if target == "base" or log == found.log:
            # Every byte of the base is checked; an intact file loads as saved.
            assert stage == (last if base == found.base else None)
        else:
            # Never an entry that was damaged; a torn tail or a foreign log loads less.
            damaged_at = first_difference(log, found.log)
            intact = sum(end <= damaged_at for end in found.entry_ends)
            if damaged_at < LOG_HEADER.size:
                intact = 0
            assert stage is None or stage <= intact
            if isinstance(damage, Truncate):
                assert stage == intact
            if isinstance(damage, Append):
                assert stage in (None, last)
            if damage == SwapHeader("other"):
                assert stage == 0  # a log written for another base is ignored
        for mode in ("ignore", "delete"):
            db = Types([])
            assert await picante.load(db, cache, on_corrupt=mode) is (stage is not None)
            if stage is None:
                assert_empty(db)
            else:
                assert await loaded_stage(db, found) == stage
            if stage is not None or mode == "ignore":
                assert cache.read_bytes() == base
                assert cache.with_name("cache.log").read_bytes() == log
            else:
                assert not cache.exists()
                assert not cache.with_name("cache.log").exists()
        if stage is None:
            # Nothing of the damaged file stayed behind: the same database loads a good one.
            write_cache(cache, found.base, found.log)
            assert await picante.load(db, cache) is True
            assert await loaded_stage(db, found) == last

    run(scenario)


# -- the log --------------------------------------------------------------------------------


@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_torn_last_log_entry(tmp_path: Path, data: st.DataObject) -> None:
    """A log cut inside its last entry loads everything before it; the next save is full."""
    found = original()
    start, end = found.entry_ends[-2:]
    cut = data.draw(st.integers(start + 1, end - 1), label="cut")
    cache = tmp_path / "cache"
    write_cache(cache, found.base, found.log[:cut])

    async def scenario() -> None:
        db = Types([])
        assert await picante.load(db, cache) is True
        assert await loaded_stage(db, found) == len(STAGES) - 2
        db.text.set("a", "again")
        await picante.save(db, cache)
        # The torn tail is not appended to: the save wrote a new base and no log.
        assert not cache.with_name("cache.log").exists()
        fresh = Types([])
        assert await picante.load(fresh, cache) is True
        assert fresh.text.get("a") == "again"
        assert picante.revision(fresh) == picante.revision(db)

    run(scenario)


def corrupt_entry(payload_length: int) -> st.SearchStrategy[bytes]:
    """A complete log entry whose checksum does not match its payload."""
    return st.tuples(
        st.binary(min_size=16, max_size=16),
        st.binary(min_size=payload_length, max_size=payload_length),
    ).map(lambda drawn: ENTRY_HEADER.pack(payload_length, drawn[0]) + drawn[1])


@given(data=st.data(), where=st.sampled_from(["overwrite", "insert"]))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_garbage_in_the_middle_of_the_log(tmp_path: Path, data: st.DataObject, where: str) -> None:
    """A corrupt entry followed by valid ones raises CacheError: it is no torn tail."""
    found = original()
    first_end = found.entry_ends[0]
    if where == "overwrite":
        # Entry 1 keeps its length, its bytes are garbage.
        length = first_end - LOG_HEADER.size - ENTRY_HEADER.size
        garbage = data.draw(corrupt_entry(length), label="entry 1")
        log = found.log[: LOG_HEADER.size] + garbage + found.log[first_end:]
        number = 1
    else:
        length = data.draw(st.integers(0, 64), label="length")
        garbage = data.draw(corrupt_entry(length), label="inserted")
        log = found.log[:first_end] + garbage + found.log[first_end:]
        number = 2
    cache = tmp_path / "cache"
    write_cache(cache, found.base, log)

    async def scenario() -> None:
        db = Types([])
        with pytest.raises(picante.CacheError, match=f"log entry {number} is corrupt"):
            await picante.load(db, cache)
        assert_empty(db)

    run(scenario)


def test_garbage_with_a_long_length_reads_as_a_torn_tail(tmp_path: Path) -> None:
    """Garbage whose length field runs past the end hides the entries after it (a limit)."""
    found = original()
    first_end = found.entry_ends[0]
    garbage = ENTRY_HEADER.pack(len(found.log), bytes(16)) + b"garbage"
    cache = tmp_path / "cache"
    write_cache(cache, found.base, found.log[:first_end] + garbage + found.log[first_end:])

    async def scenario() -> int:
        db = Types([])
        assert await picante.load(db, cache) is True
        return await loaded_stage(db, found)

    # Indistinguishable from an append torn after its entry header: entry 2 is dropped.
    assert run(scenario) == 1


# -- well-formed files with malformed contents ----------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["input", "query", "interned", "text", "q_text", ""])
    | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "kind", "records", "x"]), children, max_size=3)
    ),
    max_leaves=6,
)


def mutate(data: st.DataObject, node: Any) -> Any:
    """Replace, drop or add one node somewhere in the JSON tree *node*; return the new tree."""
    if isinstance(node, dict | list):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        actions = ["descend", "descend", "drop", "add", "replace"] if keys else ["add", "replace"]
        action = data.draw(st.sampled_from(actions))
        if action == "descend":
            key = data.draw(st.sampled_from(keys))
            node[key] = mutate(data, node[key])
            return node
        if action == "drop":
            del node[data.draw(st.sampled_from(keys))]
            return node
        if action == "add":
            if isinstance(node, dict):
                node[data.draw(st.text(max_size=8))] = data.draw(json_values)
            else:
                node.insert(data.draw(st.integers(0, len(node))), data.draw(json_values))
            return node
    return data.draw(json_values)


def checksummed_base(payload: bytes) -> bytes:
    """A base file around *payload*, with the right length and checksum."""
    digest = hashlib.blake2b(payload, digest_size=16).digest()
    return BASE_HEADER.pack(b"PICANTE\n", 1, len(payload), digest) + payload


def checksummed_log(base: bytes, payloads: list[bytes]) -> bytes:
    """A log bound to *base*, of one entry per payload, every checksum right."""
    log = LOG_HEADER.pack(b"PICALOG\n", 1, base[BASE_HEADER.size - 16 : BASE_HEADER.size])
    for payload in payloads:
        digest = hashlib.blake2b(payload, digest_size=16).digest()
        log += ENTRY_HEADER.pack(len(payload), digest) + payload
    return log


@given(data=st.data(), target=st.integers(0, len(STAGES) - 1))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_malformed_payload(tmp_path: Path, data: st.DataObject, target: int) -> None:
    """A payload with a valid checksum but malformed JSON fields loads or raises CacheError."""
    found = original()
    payloads = [found.base[BASE_HEADER.size :]]
    payloads += [
        found.log[start + ENTRY_HEADER.size : end]
        for start, end in zip([LOG_HEADER.size, *found.entry_ends], found.entry_ends, strict=False)
    ]
    payloads[target] = orjson.dumps(mutate(data, orjson.loads(payloads[target])))
    base = checksummed_base(payloads[0])
    cache = tmp_path / "cache"
    write_cache(cache, base, checksummed_log(base, payloads[1:]))

    async def scenario() -> None:
        db = Types([])
        outcome = await load_or_error(db, cache)
        event(type(outcome).__name__)
        if isinstance(outcome, picante.CacheError):
            assert str(outcome).startswith(f"{cache}: ")
            assert_empty(db)
            return
        assert outcome is True
        # Whatever loaded answers: a value, or a missing input.
        for name, key, _ in present(found.models[-1]):
            with contextlib.suppress(MissingInputError):
                await getattr(db, f"q_{name}")(key)

    run(scenario)


def craft(data: st.DataObject, payload: dict[str, Any]) -> None:
    """Make one record-level defect a checksum does not catch: ids, loops, types, sizes."""
    records = [(s["name"], record) for s in payload["sections"] for record in s.get("records", [])]
    memos = [record for name, record in records if name.startswith("q_") or name == "length"]
    _, record = data.draw(st.sampled_from(records), label="record")
    other = data.draw(st.sampled_from([r for _, r in records]), label="other")
    defect = data.draw(
        st.sampled_from(
            ["loop", "self loop", "shared id", "id", "dependency", "field", "huge list"]
        ),
        label="defect",
    )
    event(defect)
    if defect == "loop" and len(memos) >= 2:
        first, second = data.draw(st.permutations(memos), label="pair")[:2]
        first[-1].append(second[0])
        second[-1].append(first[0])
    elif defect == "self loop" and memos:
        memo = data.draw(st.sampled_from(memos), label="memo")
        memo[-1].append(memo[0])
    elif defect == "shared id":
        record[0] = other[0]
    elif defect == "id":
        record[0] = data.draw(st.sampled_from([-1, -(2**62), 2**53, 2**63 - 1, "0", 1.0, True]))
    elif defect == "dependency" and memos:
        memo = data.draw(st.sampled_from(memos), label="memo")
        memo[-1].append(data.draw(st.sampled_from([-2, "1", None, 1.5, [0], 2**63 - 1, True])))
    elif defect == "huge list" and memos:
        memo = data.draw(st.sampled_from(memos), label="memo")
        memo[-1].extend([memo[0] + 1] * 200_000)
    else:
        index = data.draw(st.integers(1, len(record) - 1), label="field")
        record[index] = data.draw(
            st.sampled_from(["1", -5, 2**62, None, [], {}, 1.5, True, [0] * 100_000])
        )


@given(data=st.data(), target=st.integers(0, len(STAGES) - 1))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
def test_crafted_records_with_a_valid_checksum(
    tmp_path: Path, data: st.DataObject, target: int
) -> None:
    """A re-signed payload with crafted records raises CacheError or loads, fast and small."""
    found = original()
    payloads = [found.base[BASE_HEADER.size :]]
    payloads += [
        found.log[start + ENTRY_HEADER.size : end]
        for start, end in zip([LOG_HEADER.size, *found.entry_ends], found.entry_ends, strict=False)
    ]
    payload = orjson.loads(payloads[target])
    if not any(s.get("records") for s in payload["sections"]):
        target = 0
        payload = orjson.loads(payloads[0])
    craft(data, payload)
    payloads[target] = orjson.dumps(payload)
    base = checksummed_base(payloads[0])
    cache = tmp_path / "cache"
    write_cache(cache, base, checksummed_log(base, payloads[1:]))

    async def scenario() -> None:
        db = Types([])
        outcome = await load_or_error(db, cache)
        event(type(outcome).__name__)
        if isinstance(outcome, picante.CacheError):
            assert str(outcome).startswith(f"{cache}: ")
            assert_empty(db)
            return
        assert outcome is True
        # Whatever loaded answers, and answers again without spinning.
        for _ in range(2):
            for name, key, _ in present(found.models[-1]):
                with contextlib.suppress(MissingInputError):
                    await getattr(db, f"q_{name}")(key)

    started = time.monotonic()
    tracemalloc.start()
    try:
        run(scenario)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Fast: a hang or a blow-up takes far longer. Coverage's tracer (`pytest --cov`)
    # makes this load of crafted records about three times slower.
    assert time.monotonic() - started < (5 if sys.gettrace() is None else 15)
    # The payload is at most a few MB (the huge lists); loading may not blow up past it.
    assert peak < 10 * len(payloads[target]) + (8 << 20)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param([], id="list"),
        pytest.param({}, id="object"),
        pytest.param(1, id="number"),
        pytest.param(None, id="null"),
    ],
)
def test_log_section_with_a_name_not_a_string(tmp_path: Path, name: object) -> None:
    """A log entry naming a section by something other than a string raises CacheError."""
    found = original()
    entry = {"revision": 99, "last_changed": [99, 0, 0], "sections": [{"name": name}]}
    cache = tmp_path / "cache"
    write_cache(cache, found.base, checksummed_log(found.base, [orjson.dumps(entry)]))

    async def scenario() -> None:
        db = Types([])
        with pytest.raises(picante.CacheError, match="malformed payload: log entry 1"):
            await picante.load(db, cache)
        assert_empty(db)

    run(scenario)


async def test_every_record_is_written_once(tmp_path: Path) -> None:
    """A full save and a log entry hold each record once, memos read by memos included."""
    cache = tmp_path / "cache"
    db = Types([])
    db.text.set("a", "x")
    assert await db.length("a") == 1  # length → q_text → text
    await picante.save(db, cache)
    db.text.set("b", "yz")
    assert await db.length("b") == 2
    await picante.save(db, cache)
    log = cache.with_name("cache.log").read_bytes()
    payloads = [cache.read_bytes()[BASE_HEADER.size :], log[LOG_HEADER.size + ENTRY_HEADER.size :]]
    for payload in payloads:
        ids = [
            record[0]
            for section in orjson.loads(payload)["sections"]
            for record in section.get("records", [])
        ]
        assert sorted(ids) == sorted(set(ids))
        assert len(ids) == 3
