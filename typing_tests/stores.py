"""
Type-level tests of `picante.stores`: checked by mypy --strict and pyright strict, never run.

Each `assert_type` pins what the checkers infer; each `# type: ignore[code]  # pyright:
ignore[rule]` marks a line that must stay an error for both checkers.
"""

from __future__ import annotations

from typing import assert_type

import picante
from picante.stores import (
    MemoryStore,
    RedisStore,
    SqliteStore,
    Store,
    StoreCounters,
    digest,
)


# Each store is a `Store`: the engine takes any of them.
STORES: list[Store] = [
    MemoryStore(max_entries=100),
    SqliteStore(".picante-cache.sqlite", timeout=1.0),
    RedisStore("redis://localhost/0", namespace="site/main", read_from=["site/pr-1"]),
]


async def contract(store: Store) -> None:
    assert_type(await store.candidates([b"K", b"L"]), dict[bytes, list[bytes]])
    assert_type(await store.blobs([digest(b"value")]), dict[bytes, bytes])
    assert_type(await store.put(b"K", b"entry"), None)
    assert_type(await store.put(b"K", b"entry", {digest(b"value"): b"value"}), None)
    assert_type(await store.flush(), None)
    assert_type(store.counters, StoreCounters)
    assert_type(store.counters.hits, int)
    assert_type(store.counters.seconds_waiting, float)
    assert_type(store.inline_bytes, int)
    async with store as entered:
        assert_type(entered, Store)
    await store.aclose()
    await store.candidates(["K"])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]


async def concrete() -> None:
    async with MemoryStore() as memory:
        assert_type(memory, MemoryStore)
    async with SqliteStore("cache.sqlite") as sqlite:
        assert_type(sqlite, SqliteStore)
    RedisStore("redis://localhost", namespace="ns", ttl="1d")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


@picante.database
class Notes:
    @picante.input
    async def text(self, path: str) -> str:
        raise NotImplementedError


async def sharing() -> None:
    db = Notes()
    picante.share(db, MemoryStore())
    assert_type(await picante.flush_shared(db), None)
    picante.share(db)
    picante.share(db, "redis://")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
