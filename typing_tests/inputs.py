"""
Type-level tests of inputs: checked by mypy --strict and pyright strict, never run.

An input handle is typed from its declaration: calls and `remove` take the key parameters
as the method declares them (keywords and defaults included), `get` and `set` take the
key types positionally (every key parameter, then the value for `set`). Each line ending
in `# type: ignore[code]  # pyright: ignore[rule]` must stay an error for both checkers.
"""

from __future__ import annotations

from typing import assert_type

import attrs

import picante


@attrs.frozen
class Config:
    minify: bool = False


@picante.database
class Files:
    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input(durability=picante.Durability.HIGH)
    async def config(self) -> Config:
        raise NotImplementedError

    @picante.input
    async def cell(self, sheet: str, row: int) -> float | None:
        raise NotImplementedError

    @picante.input
    async def page(self, path: str, lang: str = "en") -> bytes:
        """A docstring above the placeholder is fine."""
        raise NotImplementedError


@picante.database
class MoreFiles(Files):
    @picante.input
    async def extra(self, name: str) -> list[str]:
        raise NotImplementedError


async def reads(db: Files) -> None:
    assert_type(await db.source("a"), str)
    assert_type(await db.source(path="a"), str)
    assert_type(await db.config(), Config)
    assert_type(await db.cell("s", 1), float | None)
    assert_type(await db.page("a"), bytes)
    assert_type(await db.page("a", lang="fr"), bytes)
    assert_type(db.source.get("a"), str | None)
    assert_type(db.source.get("a", default=""), str)
    assert_type(db.source.get("a", default=0), str | int)
    assert_type(db.config.get(), Config | None)
    assert_type(db.cell.get("s", 1), float | None)
    assert_type(db.page.get("a", "en"), bytes | None)

    await db.source(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await db.source()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await db.source("a", "b")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await db.config("a")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    db.source.get(1)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    db.source.get()  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    db.cell.get(1, "s")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    db.config.get("a")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]


def writes(db: Files) -> None:
    assert_type(db.source.set("a", "text"), picante.Revision)
    assert_type(db.config.set(Config(minify=True)), picante.Revision)
    assert_type(db.cell.set("s", 1, None), picante.Revision)
    assert_type(db.cell.set("s", 1, 2.5), picante.Revision)
    assert_type(db.page.set("a", "en", b"<p>"), picante.Revision)
    assert_type(db.source.remove("a"), picante.Revision)
    assert_type(db.source.remove(path="a"), picante.Revision)
    assert_type(db.page.remove("a"), picante.Revision)
    assert_type(db.config.remove(), picante.Revision)

    # A wrong value type, a wrong key type, a missing or extra argument.
    db.source.set("a", 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    db.source.set(1, "a")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    db.source.set("a")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    db.source.set("a", "b", "c")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    db.config.set()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    db.config.set("minify")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    db.cell.set("s", "1", 2.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    db.cell.set("s", 1, "2.5")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    db.source.remove(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    db.source.remove(name="a")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

    # What static typing loses: `set` and `get` take every key parameter positionally.
    # Both calls below work at run time (the default fills `lang`; `path` binds by name).
    db.page.set("a", b"<p>")  # type: ignore[call-arg, arg-type]  # pyright: ignore[reportCallIssue]
    db.page.get("a")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]


def inherited(db: MoreFiles) -> None:
    assert_type(db.source.set("a", "text"), picante.Revision)
    assert_type(db.extra.get("x"), list[str] | None)
    db.extra.set("x", ("a",))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def handles(db: Files) -> None:
    # `BoundInput[P, R, *Ks]`: key parameters, value type, key types. A ParamSpec keeps
    # parameter names, which a type expression cannot spell: checked by assignment.
    source: picante.BoundInput[[str], str, str] = db.source
    config: picante.BoundInput[[], Config] = db.config
    cell: picante.BoundInput[[str, int], float | None, str, int] = db.cell
    declared: picante.InputIngredient[Files, [str], str, str] = Files.source
    wrong: picante.BoundInput[[str], str, int]
    wrong = db.source  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    del source, config, cell, declared, wrong
