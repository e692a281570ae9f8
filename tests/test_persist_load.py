"""
`picante.load` bounded and validated (size cap before reading, non-regular files, a
symlinked log, record graphs checked before install), and `load` on a database that
already has state (inputs set again on top as one batch, the revision moving forward).

No `from __future__ import annotations`: picante resolves the annotations of `Notes`.
"""

import asyncio
import errno
import gc
import hashlib
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import picante
from picante import CacheError, UsageError


HEADER = struct.Struct(">8sHQ16s")


@picante.database
class Notes:
    """Texts, their lengths and a total over two; tags interned."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    tags = picante.interned(str)

    @picante.input
    async def text(self, key: str) -> str: ...

    @picante.query
    async def length(self, key: str) -> int:
        self.log.append(f"length({key})")
        return len(await self.text(key))

    @picante.query
    async def total(self, a: str, b: str) -> int:
        self.log.append(f"total({a},{b})")
        return await self.length(a) + await self.length(b)


def log_of(path: Path) -> Path:
    """The log next to the cache file *path*."""
    return path.with_name(path.name + ".log")


async def saved(log: list[str], path: Path) -> Path:
    """Save a `Notes` with texts a, b and every memo of total(a, b); return *path*."""
    db = Notes(log)
    db.text.set("a", "one")
    db.text.set("b", "three")
    db.tags.intern("draft")
    db.tags.intern("post")
    assert await db.total("a", "b") == 8
    await picante.save(db, path)
    log.clear()
    return path


def resign(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply *change* to the base payload of *path* and rewrite it with a valid checksum."""
    payload = orjson.loads(path.read_bytes()[HEADER.size :])
    change(payload)
    data = orjson.dumps(payload)
    digest = hashlib.blake2b(data, digest_size=16).digest()
    path.write_bytes(HEADER.pack(b"PICANTE\n", 1, len(data), digest) + data)


def section(payload: dict[str, Any], name: str) -> dict[str, Any]:
    """The section *name* of a parsed payload."""
    return next(s for s in payload["sections"] if s["name"] == name)


def assert_empty(db: Notes) -> None:
    """*db* has no state."""
    assert picante.revision(db) == 0
    assert all(table == {} for table in db.__picante__.tables.values())
    assert len(db.tags) == 0


# -- bounded -----------------------------------------------------------------------------------


async def test_max_bytes_refuses_a_huge_file_before_reading_it(tmp_path: Path) -> None:
    """A 1 GiB (sparse) file under `max_bytes=4096` is refused without being read."""
    path = tmp_path / "huge.cache"
    with path.open("wb") as file:
        file.truncate(2**30)
    db = Notes([])
    tracemalloc.start()
    try:
        with pytest.raises(CacheError, match=r"over max_bytes=4,096"):
            await picante.load(db, path, max_bytes=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert_empty(db)


async def test_max_bytes_counts_the_log_before_reading_it(tmp_path: Path) -> None:
    """A small file whose log is huge is refused by `max_bytes` without reading the log."""
    path = await saved([], tmp_path / "notes.cache")
    with log_of(path).open("wb") as file:
        file.truncate(2**30)
    tracemalloc.start()
    try:
        with pytest.raises(CacheError, match="over max_bytes"):
            await picante.load(Notes([]), path, max_bytes=path.stat().st_size + 100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# -- not a regular file ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["path", "log"])
async def test_a_directory_is_a_corrupt_file_and_is_never_deleted(
    tmp_path: Path, where: str
) -> None:
    """A directory at the path or the log: error raises, ignore returns False, delete refuses."""
    path = await saved([], tmp_path / "notes.cache")
    directory = path if where == "path" else log_of(path)
    if where == "path":
        path.unlink()
    directory.mkdir()
    (directory / "keep").write_text("mine")
    db = Notes([])
    with pytest.raises(CacheError, match="not a regular file"):
        await picante.load(db, path)
    assert await picante.load(db, path, on_corrupt="ignore") is False
    with pytest.raises(CacheError, match="does not delete directory"):
        await picante.load(db, path, on_corrupt="delete")
    assert (directory / "keep").read_text() == "mine"
    assert path.exists()
    assert_empty(db)


async def test_a_symlinked_log_is_corrupt(tmp_path: Path) -> None:
    """A log that is a symbolic link is corrupt; delete removes the link, not its target."""
    path = await saved([], tmp_path / "notes.cache")
    target = tmp_path / "elsewhere"
    target.write_bytes(b"PICALOG\n")
    log_of(path).symlink_to(target)
    db = Notes([])
    with pytest.raises(CacheError, match="symbolic link"):
        await picante.load(db, path)
    assert_empty(db)
    assert await picante.load(db, path, on_corrupt="delete") is False
    assert not log_of(path).is_symlink()
    assert target.read_bytes() == b"PICALOG\n"


async def test_save_never_appends_through_a_symlinked_log(tmp_path: Path) -> None:
    """An incremental save refuses a log planted as a symlink, and creates nothing through it."""
    path = await saved([], tmp_path / "notes.cache")
    db = Notes([])
    assert await picante.load(db, path) is True
    victim = tmp_path / "victim"
    log_of(path).symlink_to(victim)  # dangling: the save's stat sees no log
    db.text.set("a", "changed")
    # Refused by O_NOFOLLOW (ELOOP) or, creating the log, by O_EXCL (EEXIST).
    with pytest.raises(OSError) as refused:
        await picante.save(db, path)
    assert refused.value.errno in {errno.ELOOP, errno.EEXIST}
    assert not victim.exists()


# -- the record graph, checked before anything is installed -------------------------------------


def _loop(payload: dict[str, Any]) -> None:
    length = section(payload, "length")["records"]
    first, second = length[0], length[1]
    first[7], second[7] = [second[0]], [first[0]]


def _self_loop(payload: dict[str, Any]) -> None:
    record = section(payload, "total")["records"][0]
    record[7].append(record[0])


def _duplicate_across(payload: dict[str, Any]) -> None:
    section(payload, "total")["records"][0][0] = section(payload, "text")["records"][0][0]


def _duplicate_within(payload: dict[str, Any]) -> None:
    records = section(payload, "text")["records"]
    records.append([records[0][0], ["c"], "x", True, 1])


def _same_key_twice(payload: dict[str, Any]) -> None:
    records = section(payload, "text")["records"]
    records.append([999, records[0][1], "x", True, 1])


def _set(name: str, index: int, value: object) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        section(payload, name)["records"][0][index] = value

    return change


def _top(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        payload[key] = value

    return change


def _twice(payload: dict[str, Any]) -> None:
    payload["sections"].append(section(payload, "text"))


def _interned_twice(payload: dict[str, Any]) -> None:
    section(payload, "tags")["values"] = ["draft", "draft"]


CRAFTED = {
    "loop": (_loop, "dependencies loop"),
    "self-loop": (_self_loop, "dependencies loop"),
    "id in two sections": (_duplicate_across, "in two sections"),
    "id twice in a section": (_duplicate_within, "id appears twice"),
    "one key twice": (_same_key_twice, "two records of one key"),
    "negative id": (_set("text", 0, -5), "out of range"),
    "huge id": (_set("text", 0, 2**60), "out of range"),
    "dependency id a string": (_set("length", 7, ["0"]), "a dependency id"),
    "dependency id below -1": (_set("length", 7, [-2]), "a dependency id"),
    "revision a string": (_top("revision", "3"), "revision"),
    "negative revision": (_top("revision", -1), "revision"),
    "watermark past the revision": (_top("last_changed", [99, 0, 0]), "last_changed"),
    "input stamp a string": (_set("text", 4, "1"), "text: a record"),
    "input stamp past the revision": (_set("text", 4, 99), "text: a record"),
    "verified past the revision": (_set("length", 4, 99), "length: a record"),
    "negative verified": (_set("length", 4, -1), "length: a record"),
    "durability out of range": (_set("length", 6, 7), "length: a record"),
    "section twice": (_twice, "appears twice"),
    "interned value twice": (_interned_twice, "a value appears twice"),
}


@pytest.mark.parametrize("name", list(CRAFTED))
async def test_crafted_payload_with_a_valid_checksum_raises(tmp_path: Path, name: str) -> None:
    """Each crafted, well-checksummed defect raises `CacheError` saying what is wrong."""
    change, reason = CRAFTED[name]
    path = await saved([], tmp_path / "notes.cache")
    resign(path, change)
    db = Notes([])
    db.text.set("mine", "kept")
    with pytest.raises(CacheError, match=reason):
        await picante.load(db, path)
    assert (picante.revision(db), db.text.get("mine"), db.text.get("a")) == (1, "kept", None)


async def test_a_dependency_naming_no_record_makes_its_memo_stale(tmp_path: Path) -> None:
    """A dependency id with no record (what `max_bytes` leaves) is no corruption: it reruns."""
    log: list[str] = []
    path = await saved(log, tmp_path / "notes.cache")
    resign(path, _set("total", 7, [12345]))
    db = Notes(log)
    assert await picante.load(db, path) is True
    assert await db.total("a", "b") == 8
    assert log == ["total(a,b)"]


# -- load on a database that has state ---------------------------------------------------------


async def test_missing_or_corrupt_file_changes_nothing(tmp_path: Path) -> None:
    """On a database with state, a missing file and an ignored corrupt one change nothing."""
    log: list[str] = []
    db = Notes(log)
    db.text.set("a", "mine")
    assert await db.length("a") == 4
    assert await picante.load(db, tmp_path / "none.cache") is False
    bad = tmp_path / "bad.cache"
    bad.write_bytes(b"garbage")
    assert await picante.load(db, bad, on_corrupt="ignore") is False
    assert picante.revision(db) == 1
    assert await db.length("a") == 4
    assert log == ["length(a)"]


async def test_load_sets_the_databases_inputs_again_on_top(tmp_path: Path) -> None:
    """The file is the base; held inputs are set again at one revision; dependents rerun."""
    log: list[str] = []
    path = await saved(log, tmp_path / "notes.cache")
    file_revision = 2
    db = Notes(log)
    for n in range(5):  # past the file's revision
        db.text.set("a", "x" * n)
    db.text.set("c", "mine")
    assert await db.length("c") == 4
    log.clear()
    before = picante.revision(db)
    assert await picante.load(db, path) is True
    # Installed past both revisions, then the held inputs at one more: one batch.
    assert picante.revision(db) == max(file_revision, before + 1) + 1
    assert (db.text.get("a"), db.text.get("b"), db.text.get("c")) == ("xxxx", "three", "mine")
    assert await db.total("a", "b") == 9
    # length(b) came from the file and is reused; length(a) read a changed input; the
    # database's own memo length(c) was dropped.
    assert await db.length("c") == 4
    assert log == ["length(a)", "total(a,b)", "length(c)"]


async def test_equal_inputs_keep_the_files_memos_valid(tmp_path: Path) -> None:
    """A held input equal to the file's changes nothing: its dependents are reused."""
    log: list[str] = []
    path = await saved(log, tmp_path / "notes.cache")
    db = Notes(log)
    db.text.set("a", "one")
    assert await picante.load(db, path) is True
    assert picante.revision(db) == 2  # max(file 2, 1 + 1); nothing set again changed
    assert await db.total("a", "b") == 8
    assert log == []


async def test_loading_twice_moves_forward_and_saves_the_inputs_set_again(tmp_path: Path) -> None:
    """A second load of the same file moves the revision on; a save keeps the held input."""
    log: list[str] = []
    path = await saved(log, tmp_path / "notes.cache")
    db = Notes(log)
    assert await picante.load(db, path) is True
    db.text.set("c", "mine")
    revision = picante.revision(db)
    assert await picante.load(db, path) is True
    assert picante.revision(db) == revision + 2
    await picante.save(db, path)
    fresh = Notes(log)
    assert await picante.load(fresh, path) is True
    assert (fresh.text.get("c"), fresh.text.get("a")) == ("mine", "one")


async def test_interned_ids_must_agree(tmp_path: Path) -> None:
    """Interned ids handed out must agree with the file's (one a prefix of the other)."""
    path = await saved([], tmp_path / "notes.cache")
    db = Notes([])
    db.tags.intern("draft")
    assert await picante.load(db, path) is True
    assert [db.tags.lookup(0), db.tags.lookup(1)] == ["draft", "post"]
    other = Notes([])
    other.tags.intern("post")
    other.text.set("c", "mine")
    with pytest.raises(UsageError, match="interned table tags conflicts"):
        await picante.load(other, path)
    assert (picante.revision(other), other.text.get("a"), len(other.tags)) == (1, None, 1)


async def test_load_refuses_while_a_query_runs(tmp_path: Path) -> None:
    """`load` while a query of the database is running raises UsageError and changes nothing."""
    path = await saved([], tmp_path / "notes.cache")
    gate = asyncio.Event()

    @picante.database
    class Slow:
        @picante.input
        async def text(self, key: str) -> str: ...

        @picante.query
        async def wait(self, key: str) -> str:
            await gate.wait()
            return await self.text(key)

    db = Slow()
    db.text.set("a", "mine")
    task = asyncio.create_task(db.wait("a"))
    await asyncio.sleep(0)
    with pytest.raises(UsageError, match="while a query of it runs"):
        await picante.load(db, path)
    gate.set()
    assert await task == "mine"


async def test_load_refuses_while_a_snapshot_is_alive(tmp_path: Path) -> None:
    """`load` while a snapshot of the database lives raises UsageError; once it is gone, loads."""
    path = await saved([], tmp_path / "notes.cache")
    db = Notes([])
    db.text.set("c", "mine")
    snap = picante.snapshot(db)
    with pytest.raises(UsageError, match="a snapshot of it is alive"):
        await picante.load(db, path)
    assert db.text.get("a") is None
    del snap
    gc.collect()
    assert await picante.load(db, path) is True
    assert (db.text.get("a"), db.text.get("c")) == ("one", "mine")


@picante.database(max_state_bytes=2_000)
class Small:
    """Texts, at most 2,000 bytes of them."""

    @picante.input
    async def text(self, key: str) -> str: ...


async def test_over_the_state_limit_with_held_inputs_loads_nothing(tmp_path: Path) -> None:
    """File plus held inputs over `max_state_bytes` raise LimitExceededError; nothing changes."""
    path = tmp_path / "small.cache"
    saver = Small()
    saver.text.set("a", "x" * 1_000)
    await picante.save(saver, path)
    db = Small()
    db.text.set("c", "y" * 1_000)
    with pytest.raises(picante.LimitExceededError, match="max_state_bytes"):
        await picante.load(db, path)
    assert (picante.revision(db), db.text.get("a"), db.text.get("c")) == (1, None, "y" * 1_000)
    db.text.set("c", "short")
    assert await picante.load(db, path) is True
    assert (db.text.get("a"), db.text.get("c")) == ("x" * 1_000, "short")


async def test_format_1_file_loads_and_is_rewritten_in_format_2(
    tmp_path: Path, log: list[str]
) -> None:
    """A format-1 file (no durability -1, no deletions) loads; the next save rewrites it."""
    path = await saved(log, tmp_path / "notes.cache")
    resign(path, lambda payload: None)  # the same payload, under a format-1 header
    assert HEADER.unpack_from(path.read_bytes())[1] == 1
    db = Notes(log)
    assert await picante.load(db, path)
    assert await db.total("a", "b") == 8
    assert log == []
    db.text.set("a", "seven")
    await picante.save(db, path)
    # Not appended to a format-1 file's log: the whole file, in the current format.
    assert HEADER.unpack_from(path.read_bytes())[1] == 2
    assert not log_of(path).exists()
    fresh = Notes(log)
    assert await picante.load(fresh, path)
    assert await fresh.total("a", "b") == 10
    assert log == ["length(a)", "total(a,b)"]


async def test_a_newer_format_is_refused_with_its_number(tmp_path: Path, log: list[str]) -> None:
    """A file of a format this picante does not know is corrupt, and says which format."""
    path = await saved(log, tmp_path / "notes.cache")
    data = bytearray(path.read_bytes())
    struct.pack_into(">H", data, 8, 3)
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="format version 3; this picante reads versions 1 to 2"):
        await picante.load(Notes(log), path)
