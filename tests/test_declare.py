"""Declaring databases: decorators, validation at class creation, inheritance, keys."""

from __future__ import annotations

from typing import Any

import pytest

import picante


class TestValidation:
    def test_sync_method_rejected(self) -> None:
        """A query that is not `async def` fails at class creation, naming it."""
        with pytest.raises(
            picante.UsageError, match=r"^Site\.words: must be declared with async def"
        ):

            @picante.database
            class Site:
                @picante.query
                def words(self, path: str) -> int:  # type: ignore[arg-type]
                    return 0

    def test_var_positional_rejected(self) -> None:
        """`*args` cannot form a key."""
        with pytest.raises(
            picante.UsageError,
            match=r"^Site\.words: \*paths is not supported; a key is a fixed list of parameters$",
        ):

            @picante.database
            class Site:
                @picante.query
                async def words(self, *paths: str) -> int:
                    return 0

    def test_var_keyword_rejected(self) -> None:
        """`**kwargs` cannot form a key."""
        with pytest.raises(picante.UsageError, match=r"^Site\.words: \*\*options is not supported"):

            @picante.database
            class Site:
                @picante.query
                async def words(self, **options: str) -> int:
                    return 0

    def test_keyword_only_rejected(self) -> None:
        """Key parameters are positional; keyword-only ones are refused with the name."""
        with pytest.raises(picante.UsageError, match=r"^Site\.page: keyword-only parameter 'lang'"):

            @picante.database
            class Site:
                @picante.query
                async def page(self, path: str, *, lang: str = "en") -> str:
                    return ""

    def test_missing_parameter_annotation(self) -> None:
        """Every key parameter needs an annotation (persistence uses it)."""
        with pytest.raises(
            picante.UsageError,
            match=r"^Site\.words: parameter 'path' needs a type annotation$",
        ):

            @picante.database
            class Site:
                @picante.query
                async def words(self, path) -> int:  # type: ignore[no-untyped-def]
                    return 0

    def test_missing_return_annotation(self) -> None:
        """The value type must be annotated too."""
        with pytest.raises(
            picante.UsageError, match=r"^Site\.source: the return value needs a type annotation$"
        ):

            @picante.database
            class Site:
                @picante.input
                async def source(self, path: str): ...  # type: ignore[no-untyped-def]

    def test_reserved_name_as_ingredient(self) -> None:
        """An ingredient cannot be called `__picante__`."""
        with pytest.raises(picante.UsageError, match=r"__picante__ is reserved by picante"):

            @picante.database
            class Site:
                @picante.query
                async def __picante__(self) -> int:
                    return 0

    def test_reserved_name_as_attribute(self) -> None:
        """A plain class attribute `__picante__` clashes too."""
        with pytest.raises(picante.UsageError, match=r"^Site\.__picante__: the name"):

            @picante.database
            class Site:
                __picante__ = 1

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"lru": 0}, r"^Site\.words: lru must be a positive int or None, got 0$"),
            ({"lru": True}, r"^Site\.words: lru must be a positive int or None, got True$"),
            ({"eq": 3}, r"^Site\.words: eq must be callable, False or None, got 3$"),
            ({"persist": "yes"}, r"^Site\.words: persist must be a bool, got 'yes'$"),
            ({"version": 1.5}, r"^Site\.words: version must be a str, an int or None, got 1\.5$"),
        ],
    )
    def test_bad_query_options(self, options: dict[str, Any], message: str) -> None:
        """Options are checked at class creation with the method named."""
        with pytest.raises(picante.UsageError, match=message):

            @picante.database
            class Site:
                @picante.query(**options)
                async def words(self, path: str) -> int:
                    return 0

    def test_bad_durability(self) -> None:
        """`durability=` must be a `picante.Durability`."""
        with pytest.raises(picante.UsageError, match=r"^Site\.config: durability must be"):

            @picante.database
            class Site:
                @picante.input(durability="high")  # type: ignore[arg-type]
                async def config(self) -> int: ...

    def test_input_with_a_real_body_rejected(self) -> None:
        """An input whose body does work fails at class creation, saying what to write."""
        message = (
            r"^Site\.source: the body of an input is never run \(its values are set with "
            r"db\.source\.set\(\.\.\.\)\), so it must be empty: write `raise "
            r"NotImplementedError` \(or `\.\.\.`\), or make it a @picante\.query if it "
            r"computes its value$"
        )
        with pytest.raises(picante.UsageError, match=message):

            @picante.database
            class Site:
                @picante.input
                async def source(self, path: str) -> str:
                    return path.upper()

    @pytest.mark.parametrize(
        "body",
        [
            "raise ValueError",
            "return 'x'",
            "print(path)\n        raise NotImplementedError",
            "raise NotImplementedError(f'{path}')",
        ],
    )
    def test_input_bodies_that_do_work(self, body: str) -> None:
        """Anything beyond an empty body or a bare `raise NotImplementedError` is work."""
        source = f"""
@picante.database
class Site:
    @picante.input
    async def source(self, path: str) -> str:
        {body}
"""
        with pytest.raises(picante.UsageError, match=r"^Site\.source: the body of an input"):
            exec(source, {"picante": picante})

    @pytest.mark.parametrize(
        "body",
        [
            "raise NotImplementedError",
            "raise NotImplementedError()",
            "raise NotImplementedError('set by the file watcher')",
            '"""The text of a page."""\n        raise NotImplementedError',
            "...",
            "pass",
            '"""The text of a page."""',
            "return None",
        ],
    )
    async def test_input_placeholder_bodies(self, body: str) -> None:
        """Every empty body is an input declaration, and none of them is ever run."""
        source = f"""
@picante.database
class Site:
    @picante.input
    async def source(self, path: str) -> str:
        {body}
"""
        namespace: dict[str, Any] = {"picante": picante}
        exec(source, namespace)
        db = namespace["Site"]()
        db.source.set("a.md", "text")
        assert await db.source("a.md") == "text"
        with pytest.raises(picante.MissingInputError):
            await db.source("b.md")

    def test_not_a_database(self) -> None:
        """Using a query on an undecorated class explains what is missing."""

        class Site:
            @picante.query
            async def words(self, path: str) -> int:
                return 0

        with pytest.raises(picante.UsageError, match=r"^Site is not a database"):
            Site().words  # noqa: B018


class TestInheritance:
    def test_subclass_inherits_adds_and_overrides(self, log: list[str]) -> None:
        """A subclass, decorated again or not, inherits, adds and overrides ingredients."""

        @picante.database
        class Base:
            @picante.input
            async def source(self, path: str) -> str: ...

            @picante.query
            async def words(self, path: str) -> int:
                log.append("Base.words")
                return len((await self.source(path)).split())

            @picante.query
            async def double(self, path: str) -> int:
                return 2 * await self.words(path)

        class Child(Base):
            @picante.query
            async def words(self, path: str) -> int:
                log.append("Child.words")
                return 100

            @picante.query
            async def triple(self, path: str) -> int:
                return 3 * await self.words(path)

        @picante.database
        class Grandchild(Child):
            pass

        assert list(Base.__picante__.ingredients) == ["source", "words", "double"]  # type: ignore[attr-defined]
        assert list(Child.__picante__.ingredients) == ["source", "words", "double", "triple"]  # type: ignore[attr-defined]
        assert list(Grandchild.__picante__.ingredients) == list(Child.__picante__.ingredients)  # type: ignore[attr-defined]

        async def run() -> tuple[int, int, int]:
            base, child = Base(), Grandchild()
            base.source.set("a", "x y")
            child.source.set("a", "x y")
            return await base.double("a"), await child.double("a"), await child.triple("a")

        import asyncio

        assert asyncio.run(run()) == (4, 200, 300)
        assert log == ["Base.words", "Child.words"]

    async def test_two_instances_share_nothing(self) -> None:
        """Two databases of one class have separate inputs, memos and revisions."""

        @picante.database
        class Site:
            @picante.input
            async def source(self, path: str) -> str: ...

        one, two = Site(), Site()
        one.source.set("a", "1")
        assert two.source.get("a") is None
        assert (picante.revision(one), picante.revision(two)) == (1, 0)

    async def test_user_init_without_super(self) -> None:
        """A user `__init__` with its own fields needs no `super().__init__()`."""

        @picante.database
        class Site:
            def __init__(self, root: str) -> None:
                self.root = root

            @picante.input
            async def source(self, path: str) -> str: ...

            @picante.query
            async def where(self, path: str) -> str:
                return f"{self.root}/{path}:{await self.source(path)}"

        db = Site("/srv")
        db.source.set("a", "x")
        assert await db.where("a") == "/srv/a:x"

    def test_user_init_subclass_still_runs(self) -> None:
        """A class's own `__init_subclass__` keeps working under the decorator."""
        seen: list[str] = []

        @picante.database
        class Base:
            def __init_subclass__(cls, **kwargs: Any) -> None:
                seen.append(cls.__name__)
                super().__init_subclass__(**kwargs)

        class Child(Base):
            @picante.query
            async def one(self) -> int:
                return 1

        assert seen == ["Child"]
        assert list(Child.__picante__.ingredients) == ["one"]  # type: ignore[attr-defined]


class TestKeys:
    async def test_defaults_and_keywords_address_one_record(self, log: list[str]) -> None:
        """`page("a")`, `page("a", "en")` and `page(path="a")` are the same record."""

        @picante.database
        class Site:
            @picante.query
            async def page(self, path: str, lang: str = "en") -> str:
                log.append(f"page({path!r}, {lang!r})")
                return f"{path}.{lang}"

        db = Site()
        results = [
            await db.page("a"),
            await db.page("a", "en"),
            await db.page(path="a"),
            await db.page("a", lang="en"),
            await db.page(lang="en", path="a"),
        ]
        assert results == ["a.en"] * 5
        assert log == ["page('a', 'en')"]

    async def test_bad_arguments_raise_like_python(self) -> None:
        """A call that does not match the signature raises Python's own `TypeError`."""

        @picante.database
        class Site:
            @picante.query
            async def page(self, path: str, lang: str = "en") -> str:
                return path

        db = Site()
        with pytest.raises(
            TypeError, match=r"^Site\.page\(\) missing 1 required positional argument: 'path'$"
        ):
            await db.page()  # type: ignore[call-arg]
        with pytest.raises(
            TypeError,
            match=r"^Site\.page\(\) takes from 2 to 3 positional arguments but 4 were given$",
        ):
            await db.page("a", "b", "c")  # type: ignore[call-arg]
        with pytest.raises(
            TypeError, match=r"^Site\.page\(\) got an unexpected keyword argument 'nope'$"
        ):
            await db.page("a", nope=1)  # type: ignore[call-arg]

    def test_reserved_parameter_prefix(self) -> None:
        """Parameter names starting with `_picante_` are reserved for generated code."""
        with pytest.raises(
            picante.UsageError,
            match=r"^Site\.page: parameter '_picante_key': names starting with _picante_ are",
        ):

            @picante.database
            class Site:
                @picante.query
                async def page(self, _picante_key: str) -> str:
                    return ""

    async def test_handle_repr_names_the_database(self) -> None:
        """A handle is a method bound to the database's view, and says so."""

        @picante.database
        class Site:
            @picante.query
            async def page(self, path: str) -> str:
                return path

        db = Site()
        assert repr(db.page) == "<bound method Site.page of <Site rev=0 memos=0>>"
        assert isinstance(db.page, picante.BoundQuery)
        assert db.page.ingredient is Site.page
        assert db.page is db.page

    async def test_unhashable_argument_names_parameter(self) -> None:
        """An unhashable argument raises `TypeError` naming the query and the parameter."""

        @picante.database
        class Site:
            @picante.input
            async def source(self, path: str, tags: tuple[str, ...]) -> str: ...

            @picante.query
            async def page(self, path: str, tags: tuple[str, ...]) -> str:
                return path

        db = Site()
        with pytest.raises(
            TypeError,
            match=r"^Site\.page\(\): argument 'tags' must be hashable to be part of a key, "
            r"got list$",
        ):
            await db.page("a", ["x"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^Site\.source\(\): argument 'tags' must be hashable"):
            db.source.set("a", ["x"], "value")

    async def test_singleton_key_is_empty_tuple(self) -> None:
        """A query without parameters is a singleton whose key is `()`."""

        @picante.database
        class Site:
            @picante.input
            async def config(self) -> int: ...

            @picante.query
            async def doubled(self) -> int:
                return 2 * await self.config()

        db = Site()
        db.config.set(21)
        assert await db.doubled() == 42
        db.config.remove()
        with pytest.raises(picante.MissingInputError) as info:
            await db.doubled()
        assert (info.value.ingredient, info.value.key) == ("config", ())


class TestAnnotations:
    def test_resolved_lazily(self) -> None:
        """Forward references work: annotations are resolved only when types are asked for."""

        @picante.database
        class Site:
            @picante.query
            async def page(self, path: Path) -> Rendered:  # noqa: F821  # type: ignore[name-defined]
                raise NotImplementedError

        ingredient = Site.__picante__.ingredients["page"]  # type: ignore[attr-defined]
        with pytest.raises(NameError):
            ingredient.key_types()
        globals()["Path"] = str
        globals()["Rendered"] = bytes
        try:
            assert ingredient.key_types() == (str,)
            assert ingredient.value_type() is bytes
        finally:
            del globals()["Path"], globals()["Rendered"]
