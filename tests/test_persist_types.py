"""
What `save` writes, `load` reads back identically, or `save` fails; `persist=False` inputs;
what `save` and `load` tell through the "picante" logger; `python -m picante inspect
--against` and its behaviour when its output pipe closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest

import picante
from picante import CacheError, UsageError
from picante._format import read_summary


ROOT = Path(__file__).resolve().parent.parent
HEADER = struct.Struct(">8sHQ16s")


@attrs.frozen
class Spot:
    x: int
    weight: float


@picante.database
class Site:
    def __init__(self, log: list[str] | None = None) -> None:
        self.log = [] if log is None else log

    @picante.input
    async def source(self, path: str) -> int: ...

    @picante.input
    async def samples(self, path: str) -> tuple[float, ...]: ...

    @picante.input
    async def title(self, path: str) -> str: ...

    @picante.input
    async def ratio(self, path: str) -> float: ...

    @picante.input
    async def spot(self, path: str) -> Spot: ...

    @picante.input(persist=False)
    async def handle(self, path: str) -> object: ...

    @picante.query
    async def doubled(self, path: str) -> int:
        self.log.append(f"doubled({path!r})")
        return 2 * await self.source(path)

    @picante.query
    async def opened(self, path: str) -> str:
        self.log.append(f"opened({path!r})")
        return f"{await self.handle(path)!r}"

    @picante.query
    async def shout(self, path: str) -> str:
        self.log.append(f"shout({path!r})")
        return (await self.opened(path)).upper()

    @picante.query
    async def flag(self, path: str) -> int:
        self.log.append(f"flag({path!r})")
        return await self.source(path) > 0  # type: ignore[return-value]  # on purpose


def files(path: Path) -> tuple[bytes | None, bytes | None]:
    """The bytes of the cache file and its log (`None`: absent)."""
    log = path.with_name(path.name + ".log")
    return (
        path.read_bytes() if path.exists() else None,
        log.read_bytes() if log.exists() else None,
    )


def files_in(directory: Path) -> list[str]:
    """The names of the files in *directory*, sorted."""
    return sorted(path.name for path in directory.iterdir())


# -- save refuses what would not load back identically ------------------------------------


WRONG = {
    "bool-for-int": ("source", "a.md", True, r"source\('a\.md'\): value True is not an int$"),
    "nan-in-tuple": (
        "samples",
        "a.md",
        (1.0, math.nan),
        r"samples\('a\.md'\): value \(1\.0, nan\) is not a tuple\[float, \.\.\.\] \(JSON",
    ),
    "object-for-str": (
        "title",
        "a.md",
        object(),
        r"title\('a\.md'\): value <object .* is not a str$",
    ),
    "int-for-float": ("ratio", "a.md", 1, r"ratio\('a\.md'\): value 1 is not a float$"),
    "inf": ("ratio", "a.md", math.inf, r"ratio\('a\.md'\): value inf is not a float \(JSON"),
    "bool-in-attrs": (
        "spot",
        "a.md",
        Spot(True, 1.0),
        r"spot\('a\.md'\): value Spot\(x=True, weight=1\.0\) would load back as Spot\(x=1,",
    ),
    "nan-in-attrs": (
        "spot",
        "a.md",
        Spot(1, math.nan),
        r"spot\('a\.md'\): value .* would not load back as a Spot \(JSON has no nan",
    ),
    "int-key-for-str": ("source", 3, 1, r"source\(3\): key 3 is not a str$"),
}
"""Case id → (input, key, value, the error after `cannot save Site.`)."""


@pytest.mark.parametrize(("name", "key", "value", "message"), WRONG.values(), ids=WRONG.keys())
async def test_wrong_type_fails_the_save_and_keeps_the_files(
    tmp_path: Path, name: str, key: object, value: object, message: str
) -> None:
    """A key or value that would load back as something else: CacheError, files untouched."""
    path = tmp_path / "site.cache"
    db = Site()
    db.source.set("good", 1)
    await picante.save(db, path)
    db.source.set("good", 2)
    await picante.save(db, path)  # a log entry
    before = files(path)
    getattr(db, name).set(key, value)
    with pytest.raises(CacheError, match=rf"^cannot save Site\.{message}"):
        await picante.save(db, path)  # would be an incremental save
    assert files(path) == before
    other = Site()
    getattr(other, name).set(key, value)
    with pytest.raises(CacheError, match=rf"^cannot save Site\.{message}"):
        await picante.save(other, path)  # a full save
    assert files(path) == before
    assert files_in(tmp_path) == ["site.cache", "site.cache.lock", "site.cache.log"]
    fresh = Site()
    assert await picante.load(fresh, path) is True
    assert fresh.source.get("good") == 2


async def test_memo_of_the_wrong_type_fails_the_save(tmp_path: Path) -> None:
    """A query that returns a bool under `-> int` cannot be saved either."""
    db = Site()
    db.source.set("a", 1)
    assert await db.flag("a") is True
    with pytest.raises(
        CacheError, match=r"^cannot save Site\.flag\('a'\): value True is not an int"
    ):
        await picante.save(db, tmp_path / "site.cache")
    assert files_in(tmp_path) == []


async def test_values_that_match_load_back_identically(tmp_path: Path) -> None:
    """The same values, well typed, load back with the same types (-0.0 included)."""
    db = Site()
    db.source.set("a", -5)
    db.samples.set("a", (1.0, -0.0, 1e300))
    db.ratio.set("a", 2.0)
    db.spot.set("a", Spot(3, -0.0))
    await picante.save(db, tmp_path / "site.cache")
    fresh = Site()
    assert await picante.load(fresh, tmp_path / "site.cache") is True
    assert fresh.samples.get("a") == (1.0, -0.0, 1e300)
    assert math.copysign(1, fresh.samples.get("a")[1]) == -1  # type: ignore[index]
    assert type(fresh.ratio.get("a")) is float
    assert fresh.spot.get("a") == Spot(3, -0.0)


# -- persist=False inputs -------------------------------------------------------------------


async def test_unpersisted_input_is_left_out_and_its_readers_revalidate(tmp_path: Path) -> None:
    """
    A `persist=False` input has no section; after a load it is absent, the memos that read
    it are stale: they re-execute once it is set again, and backdate, so their readers stay.
    """
    path = tmp_path / "site.cache"
    log: list[str] = []
    db = Site(log)
    db.source.set("a", 4)
    db.handle.set("h", object.__new__(Spot))  # not even a valid Spot: never written
    db.handle.set("k", 7)
    assert await db.doubled("a") == 8
    assert await db.shout("k") == "7"
    await picante.save(db, path)
    summary = read_summary(path)
    sections = summary["sections"]
    assert isinstance(sections, list)
    assert "handle" not in {section["name"] for section in sections}

    log.clear()
    fresh = Site(log)
    assert await picante.load(fresh, path) is True
    assert fresh.handle.get("k") is None
    assert await fresh.doubled("a") == 8  # untouched by the unpersisted input
    fresh.handle.set("k", 7)
    assert await fresh.shout("k") == "7"
    assert log == ["opened('k')"]  # stale, re-executed; same value: `shout` stays valid


@pytest.mark.parametrize("persist", [1, None, "yes"])
def test_input_persist_must_be_a_bool(persist: Any) -> None:
    with pytest.raises(UsageError, match=r"persist must be a bool"):

        @picante.database
        class Bad:
            @picante.input(persist=persist)
            async def source(self, path: str) -> str: ...


# -- logging ----------------------------------------------------------------------------------


def variant(value_type: type, *, version: int = 1) -> type:
    """A database class named `Shifting` whose input type and query version can change."""

    class Shifting:
        @picante.input
        async def source(self, path: str) -> value_type: ...  # type: ignore[valid-type]

        @picante.query(version=version)
        async def doubled(self, path: str) -> int:
            return 2 * len(str(await self.source(path)))

    # The annotation is a string (`from __future__ import annotations`): resolve it here.
    Shifting.source.fn.__annotations__["return"] = value_type
    Shifting.__qualname__ = "Shifting"
    return picante.database(Shifting)


def rewrite(path: Path, change: Any) -> None:
    """Rewrite the cache file's payload with *change*(payload), with a valid checksum."""
    data = path.read_bytes()
    payload = orjson.loads(data[HEADER.size :])
    change(payload)
    raw = orjson.dumps(payload)
    digest = hashlib.blake2b(raw, digest_size=16).digest()
    path.write_bytes(HEADER.pack(b"PICANTE\n", 1, len(raw), digest) + raw)


async def test_load_logs_dropped_and_stale_sections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shift.cache"
    old = variant(str)
    db = old()
    db.source.set("a", "xy")
    await db.doubled("a")
    await picante.save(db, path)
    caplog.set_level(logging.INFO, logger="picante")
    assert await picante.load(variant(bytes, version=2)(), path) is True
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "picante"]
    assert (
        logging.WARNING,
        f"{path}: dropped section Shifting.source (schema changed: its key or value types differ)",
    ) in messages
    assert (
        logging.INFO,
        f"{path}: Shifting.doubled is stale (code changed: its memos re-execute on first use)",
    ) in messages

    caplog.clear()

    def garble(payload: dict[str, Any]) -> None:
        for section in payload["sections"]:
            if section["name"] == "source":
                section["records"][0][2] = 12  # an int where a str is expected

    rewrite(path, garble)
    assert await picante.load(old(), path) is True
    [record] = [r for r in caplog.records if r.name == "picante"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        f"{path}: dropped section Shifting.source (decode failure: expected str, got int"
    )


@pytest.mark.parametrize("on_corrupt", ["ignore", "delete"])
async def test_load_logs_a_corrupt_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, on_corrupt: Any
) -> None:
    path = tmp_path / "site.cache"
    path.write_bytes(b"not a cache")
    caplog.set_level(logging.INFO, logger="picante")
    assert await picante.load(Site(), path, on_corrupt=on_corrupt) is False
    [record] = [r for r in caplog.records if r.name == "picante"]
    assert record.levelno == logging.WARNING
    verb = "ignored a" if on_corrupt == "ignore" else "deleted (with its log) a"
    assert record.getMessage() == (
        f"{path}: {verb} corrupt cache file: not a picante cache file (wrong magic bytes)"
    )


async def test_save_logs_left_out_memos_and_compaction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "site.cache"
    db = Site()
    db.source.set("big", 10**15)
    db.source.set("small", 1)
    await db.doubled("big")
    await db.doubled("small")
    caplog.set_level(logging.INFO, logger="picante")
    await picante.save(db, path, max_record_bytes=3)
    assert [r.getMessage() for r in caplog.records if r.name == "picante"] == [
        f"{path}: left out 1 memos of Site.doubled, over max_record_bytes=3"
    ]
    caplog.clear()
    await picante.save(db, path)  # a full save, no log yet
    for n in range(40):  # until the log passes half the file
        db.title.set(str(n), "x" * 20)
        await picante.save(db, path)
    messages = [r.getMessage() for r in caplog.records if r.name == "picante"]
    assert len(messages) >= 1
    assert all(m.startswith(f"{path}: compacting the file and its log (") for m in messages)


# -- python -m picante inspect ------------------------------------------------------------------

MODULE = """
import picante

@picante.database
class Shop:
    @picante.input
    async def price(self, item: str) -> {price}: ...

    @picante.input
    async def stock(self, item: str) -> int: ...

    @picante.query
    async def total(self, item: str) -> int:
        return {factor} * await self.stock(item)
"""


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(cwd), str(ROOT)])
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        cwd=cwd,
        check=False,
        timeout=60,
    )


def test_inspect_against_says_what_a_load_would_drop(tmp_path: Path) -> None:
    module = tmp_path / "shop.py"
    module.write_text(textwrap.dedent(MODULE.format(price="int", factor=2)))
    saved = python(
        "-c",
        "import asyncio, picante, shop\n"
        "db = shop.Shop()\n"
        "db.price.set('a', 3); db.stock.set('a', 4)\n"
        "async def go():\n"
        "    await db.total('a')\n"
        "    await picante.save(db, 'shop.cache')\n"
        "asyncio.run(go())\n",
        cwd=tmp_path,
    )
    assert saved.returncode == 0, saved.stderr
    module.write_text(textwrap.dedent(MODULE.format(price="float", factor=3)))
    (tmp_path / "elsewhere.py").write_text("class Plain:\n    pass\n")

    shown = python("-m", "picante", "inspect", "shop.cache", "--against", "shop:Shop", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    tail = shown.stdout.split("against   shop:Shop: a load would\n")[1]
    assert tail.splitlines() == [
        "price                    dropped (schema changed: its key or value types differ)",
        "stock                    kept",
        "total                    stale (code changed: its memos re-execute on first use)",
    ]

    as_json = python(
        "-m", "picante", "inspect", "shop.cache", "--json", "--against", "shop:Shop", cwd=tmp_path
    )
    against = orjson.loads(as_json.stdout)["against"]
    assert against["sections"][0] == {
        "name": "price",
        "verdict": "dropped",
        "why": "schema changed: its key or value types differ",
    }

    for spec, error in [
        ("shop", "expected MODULE:CLASS"),
        ("nowhere:Shop", "cannot import it (ModuleNotFoundError"),
        ("elsewhere:Plain", "not a @picante.database class"),
    ]:
        failed = python("-m", "picante", "inspect", "shop.cache", "--against", spec, cwd=tmp_path)
        assert (failed.returncode, failed.stdout) == (1, ""), spec
        assert failed.stderr.startswith(f"picante inspect: --against {spec}"), failed.stderr
        assert error in failed.stderr
        assert "Traceback" not in failed.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_inspect_exits_quietly_when_its_output_closes(tmp_path: Path, as_json: bool) -> None:
    """`inspect ... | head -1`: the reader is gone before anything is written."""
    path = tmp_path / "site.cache"
    db = Site()
    for n in range(50):
        db.source.set(str(n), n)
    asyncio.run(picante.save(db, path))
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write fails with EPIPE
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "picante", "inspect", str(path), *(["--json"] * as_json)]
    try:
        done = subprocess.run(
            args, stdout=write_end, stderr=subprocess.PIPE, env=env, check=False, timeout=60
        )
    finally:
        os.close(write_end)
    assert done.stderr == b""
    assert done.returncode == 141
