"""
Type-level tests of the public API: checked by mypy --strict and pyright strict, never run.

Each `assert_type` pins what the checkers infer. Each `# type: ignore[code]  # pyright:
ignore[rule]` marks a line that must stay an error for both checkers: mypy's
`warn_unused_ignores` and pyright's `reportUnnecessaryTypeIgnoreComment` (enabled for
this folder, where pyright ignores `# type: ignore`) fail the check if it stops being one.
"""

from __future__ import annotations

from typing import Any, assert_type

import attrs

import picante


@attrs.frozen
class Config:
    minify: bool = False


@picante.database
class Site:
    # `raise NotImplementedError`: the input body every checker accepts with no
    # configuration (mypy reports a `...` body as [empty-body]).
    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.input(durability=picante.Durability.HIGH, eq=lambda a, b: a == b, persist=True)
    async def config(self) -> Config:
        raise NotImplementedError

    @picante.query
    async def words(self, path: str) -> int:
        return len((await self.source(path)).split())

    @picante.query(lru=10, eq=lambda a, b: a == b, persist=False, version=2)
    async def page(self, path: str, lang: str = "en") -> str:
        config = await self.config()
        text = await self.source(path)
        return f"{lang}: {text.strip() if config.minify else text}"


async def check() -> None:
    db = Site()
    assert_type(db, Site)

    # Queries: the value type comes from the method's return annotation.
    assert_type(await db.words("a"), int)
    assert_type(await db.words(path="a"), int)
    assert_type(await db.page("a"), str)
    assert_type(await db.page("a", "fr"), str)
    assert_type(await db.page("a", lang="fr"), str)
    assert_type(db.words.cache_info(), picante.CacheInfo)
    assert_type(db.words.cache_info().maxsize, int | None)
    assert_type(await picante.gather(db.words("a"), db.page("a")), tuple[int, str])
    assert_type(await picante.gather(*(db.words(p) for p in "ab")), list[int])
    assert_type(
        await picante.gather(db.words("a"), db.words("b"), return_exceptions=True),
        list[int | BaseException],
    )

    # Inputs.
    assert_type(await db.source("a"), str)
    assert_type(await db.config(), Config)
    assert_type(db.source.get("a"), str | None)
    assert_type(db.source.get("a", default=0), str | int)
    assert_type(db.config.get(), Config | None)
    assert_type(db.source.set("a", "x"), int)
    assert_type(db.config.set(Config(minify=True)), int)
    assert_type(db.source.remove("a"), int)
    assert_type(picante.revision(db), int)

    # Handles and declarations. A ParamSpec keeps parameter names, which a type expression
    # cannot spell, so these are checked by assignment rather than `assert_type`.
    words: picante.BoundQuery[[str], int] = db.words
    source: picante.BoundInput[[str], str, str] = db.source
    declared: picante.QueryIngredient[Site, [str], int] = Site.words
    assert_type(db.words.ingredient.key_types(), tuple[Any, ...])
    wrong_value: picante.BoundQuery[[str], str]
    wrong_value = db.words  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    wrong_key: picante.BoundInput[[int], str, int]
    wrong_key = db.source  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    del words, source, declared, wrong_value, wrong_key

    # Errors carry typed fields.
    try:
        await db.words("a")
    except picante.MissingInputError as error:
        assert_type(error.ingredient, str)
        assert_type(error.key, tuple[object, ...])
    except picante.CycleError as error:
        assert_type(error.path, tuple[tuple[str, tuple[object, ...]], ...])

    # Calls that must stay errors.
    await db.words(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await db.words()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await db.words("a", "b")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await db.words(name="a")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await db.page("a", "fr", "x")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await db.page("a", 2)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await db.source(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await db.config("a")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    picante.revision()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

    # Persistence, events and debugging.
    assert_type(await picante.save(db, "cache"), None)
    assert_type(await picante.load(db, "cache", on_corrupt="ignore"), bool)
    await picante.load(db, "cache", on_corrupt="maybe")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    stream = picante.events(db, buffer=16)
    assert_type(stream, picante.EventStream)
    assert_type(await anext(stream), picante.Event)
    assert_type(await anext(picante.revisions(db)), picante.Revision)
    assert_type(picante.watch(db.words, "a"), picante.Watch[int])
    assert_type(await anext(picante.watch(db.words, "a")), int)
    async with picante.watch(db.words, "a") as values:
        assert_type(values, picante.Watch[int])
    async with picante.events(db) as events, picante.revisions(db) as revisions:
        assert_type(events, picante.EventStream)
        assert_type(revisions, picante.RevisionStream)
    assert_type(picante.debug.dependency_graph(db).to_dot(), str)
    assert_type(picante.debug.explain(db, db.words, "a"), picante.debug.Explanation)

    # watch and explain take the query's key as the query itself does.
    assert_type(picante.watch(db.page, "a", lang="fr"), picante.Watch[str])
    assert_type(picante.debug.explain(db, db.page, path="a"), picante.debug.Explanation)
    assert_type(picante.debug.explain(db, "page", "a", "fr"), picante.debug.Explanation)
    picante.watch(db.words, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    picante.watch(db.words)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    picante.watch(db.page, "a", "fr", "x")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    picante.watch(db.page, "a", language="fr")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    picante.debug.explain(db, db.words, 1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    picante.debug.explain(db, db.words)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    picante.debug.explain(db, db.page, "a", 2)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    verification = await picante.debug.verify(db)
    assert_type(verification, picante.debug.Verification)
    assert_type(verification.not_comparable, list[picante.debug.NotComparable])
    assert_type(list(verification), list[picante.debug.Mismatch])
    assert_type(picante.refresh(db), picante.Revision)
    assert_type(picante.sweep(db, unused_for=2), int)
    assert_type(picante.set_lru(db.words, 10), None)
    assert_type(picante.set_lru(db.words, None), None)
    with picante.debug.trace(db) as recorded:
        assert_type(recorded.summary(), dict[str, picante.debug.QueryTrace])


@attrs.frozen
class Diagnostic:
    path: str
    message: str


@attrs.frozen
class Hint:
    text: str


@picante.database(accumulates=Diagnostic)
class Checked:
    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def check(self, path: str, strict: bool = False) -> int:
        picante.accumulate(Diagnostic(path, "unused import"))
        return len(await self.source(path))


@picante.database(accumulates=Diagnostic | Hint)
class Hinted(Checked):
    pass


async def accumulators() -> None:
    db = Checked()
    assert_type(picante.accumulate(Diagnostic("a", "b")), None)
    # The key parameters are the query's; the values' type is the database's, which a
    # handle does not carry: a tuple of Any, to annotate where it is used.
    assert_type(await picante.accumulated(db.check, "a"), tuple[Any, ...])
    assert_type(await picante.accumulated(db.check, "a", strict=True), tuple[Any, ...])
    diagnostics: tuple[Diagnostic, ...] = await picante.accumulated(db.check, path="a")
    assert_type(diagnostics, tuple[Diagnostic, ...])
    await picante.accumulated(db.check, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await picante.accumulated(db.check)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await picante.accumulated(db.source, "a")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue]
    assert_type(await picante.accumulated(Hinted().check, "a"), tuple[Any, ...])
