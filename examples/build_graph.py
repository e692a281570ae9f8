"""
A build graph with durability: compile three C files and link them, incrementally.

The toolchain is a HIGH-durability input: it changes rarely. The sources are LOW (the
default): they change all the time. Every query appends its call to `log` when it runs,
and each step prints that log: an edit recompiles one file and relinks, an edit to a
comment recompiles the file but stops there (early cutoff), and a new toolchain
recompiles everything.

Run it with `python examples/build_graph.py`. The output is deterministic.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

import attrs

import picante


log: list[str] = []


# --8<-- [start:declare]
@attrs.frozen
class Toolchain:
    compiler: str
    flags: tuple[str, ...] = ()


@picante.database
class Build:
    @picante.input(durability=picante.Durability.HIGH)
    async def toolchain(self) -> Toolchain:
        raise NotImplementedError

    @picante.input
    async def sources(self) -> tuple[str, ...]:
        raise NotImplementedError

    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def command(self) -> str:
        """The compiler's command line: it reads only the HIGH-durability toolchain."""
        log.append("command()")
        toolchain = await self.toolchain()
        return " ".join([toolchain.compiler, *toolchain.flags])

    @picante.query
    async def compile(self, path: str) -> str:
        """An "object file": a digest of the command and the code minus its comments."""
        log.append(f"compile({path!r})")
        code = re.sub(r"/\*.*?\*/", "", await self.source(path), flags=re.DOTALL)
        return f"{path.removesuffix('.c')}.o@{digest(await self.command(), code)}"

    @picante.query
    async def link(self) -> str:
        """The program: a digest of every object file, compiled concurrently."""
        log.append("link()")
        paths = await self.sources()
        objects = await asyncio.gather(*(self.compile(path) for path in paths))
        return f"app@{digest(*objects)}"


# --8<-- [end:declare]


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


async def step(db: Build, heading: str) -> None:
    """Print *heading*, the linked program and the queries that ran to get it."""
    print(f"\n== {heading}")
    print(await db.link())
    print("ran:", ", ".join(log) or "nothing")
    log.clear()


# --8<-- [start:main]
async def main() -> None:
    db = Build()
    with picante.batch(db):
        db.toolchain.set(Toolchain("cc", ("-O2",)))
        db.sources.set(("main.c", "parse.c", "util.c"))
        db.source.set("main.c", "int main(void) { return run(); }")
        db.source.set("parse.c", "int parse(const char *s) { return *s; }")
        db.source.set("util.c", "/* helpers */ int run(void) { return 0; }")
    await step(db, "1. First build: every query runs")
    await step(db, "2. Nothing changed: nothing runs")

    db.source.set("main.c", "int main(void) { return run() + 1; }")
    await step(db, "3. Edit main.c: it is recompiled and the program relinked")

    db.source.set("util.c", "/* small helpers */ int run(void) { return 0; }")
    await step(db, "4. Edit a comment in util.c: same object file, no relink (cutoff)")

    db.toolchain.set(Toolchain("cc", ("-O2", "-g")))
    await step(db, "5. New toolchain flags: everything is recompiled")

    print(
        "\nDurability: command() read only toolchain(), a HIGH input. In steps 3 and 4"
        "\nonly LOW inputs changed, so picante knew command() was still valid by"
        "\ncomparing two revisions (when the memo was last verified, and when a HIGH"
        "\ninput last changed): O(1), without walking its dependencies. Durability"
        "\nnever changes a result, only the work needed to trust one: make"
        "\nrarely-changing inputs (toolchains, configuration, a standard library)"
        "\nHIGH, and the memos built only on them are revalidated for free."
    )


# --8<-- [end:main]


if __name__ == "__main__":
    asyncio.run(main())
