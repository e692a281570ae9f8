"""
picante quickstart: count the words of a few in-memory files, incrementally.

Every query appends its call to `log` when it runs, and each step prints that log: the
first read runs everything, a second read runs nothing (memoized), an edit reruns only
what depends on it, an edit that keeps a word count equal stops at `words` (early
cutoff), and a removed input raises `picante.MissingInputError`.

Run it with `python examples/quickstart.py`.
"""

from __future__ import annotations

import asyncio

import attrs

import picante


log: list[str] = []


# --8<-- [start:declare]
@attrs.frozen
class Config:
    title: str = "Notes"


@picante.database
class Notes:
    @picante.input
    async def paths(self) -> tuple[str, ...]:
        raise NotImplementedError

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input(durability=picante.Durability.HIGH)
    async def config(self) -> Config:
        raise NotImplementedError

    @picante.query
    async def words(self, path: str) -> int:
        log.append(f"words({path!r})")
        return len((await self.source(path)).split())

    @picante.query
    async def total(self) -> int:
        log.append("total()")
        return sum([await self.words(path) for path in await self.paths()])

    @picante.query
    async def report(self) -> str:
        log.append("report()")
        config = await self.config()
        count = len(await self.paths())
        return f"{config.title}: {await self.total()} words in {count} files"


# --8<-- [end:declare]


async def step(db: Notes, heading: str) -> None:
    """Print *heading*, the report (or the error) and the queries that ran for it."""
    print(f"\n== {heading} (revision {picante.revision(db)})")
    try:
        print(await db.report())
    except picante.MissingInputError as error:
        print(f"MissingInputError: {error}")
    print("ran:", ", ".join(log) or "nothing")
    log.clear()


async def main() -> None:
    db = Notes()
    db.config.set(Config(title="My notes"))
    db.paths.set(("a.md", "b.md"))
    db.source.set("a.md", "hello world")
    db.source.set("b.md", "one two three")
    await step(db, "1. First read: every query runs")
    await step(db, "2. Second read: nothing runs, the values are memoized")

    db.source.set("b.md", "one two three four")
    await step(db, "3. Edit b.md: only the queries that depend on it run")

    db.source.set("a.md", "goodbye world")
    await step(db, "4. Edit a.md, still 2 words: early cutoff, its readers do not run")

    db.source.remove("b.md")
    await step(db, "5. Remove b.md: reading it raises, and so do its dependents")


if __name__ == "__main__":
    asyncio.run(main())
