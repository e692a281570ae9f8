"""
A database whose queries refer to one of each thing a code fingerprint follows.

`tests/test_fingerprints.py` fingerprints it here and in subprocesses with other
`PYTHONHASHSEED`s: every fingerprint must come out the same.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

import picante


if TYPE_CHECKING:
    from collections.abc import Callable


WORDS = frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"})
LIMITS = (1, 2.5, "three", (None, b"four"), frozenset({"x", "y", "z"}))
PATTERN = re.compile(r"\w+", re.IGNORECASE)
HERE = Path(__file__).parent


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@attrs.frozen
class Post:
    title: str
    tags: frozenset[str] = frozenset({"new", "draft", "seen"})
    notes: list[str] = attrs.field(factory=list)

    def slug(self) -> str:
        return self.title.lower().replace(" ", "-")


@dataclasses.dataclass(frozen=True)
class Box:
    width: int = 3
    names: tuple[str, ...] = ("p", "q")

    def area(self) -> int:
        return self.width * self.width


class Renderer:
    marker = "*"
    flags = frozenset({"bold", "italic", "code"})

    def render(self, text: str) -> str:
        return self.marker + clean(text) + self.marker

    @staticmethod
    def quote(text: str) -> str:
        return json.dumps(text)

    @property
    def name(self) -> str:
        return "renderer"


def clean(text: str, strip: str = " \t", keep: frozenset[str] = WORDS) -> str:
    return " ".join(word for word in text.strip(strip).split() if word in keep or word)


def even(n: int) -> bool:
    return n == 0 or odd(n - 1)


def odd(n: int) -> bool:
    return n != 0 and even(n - 1)


def make_joiner(separator: str) -> Callable[[list[str]], str]:
    def join(items: list[str]) -> str:
        return separator.join(clean(item) for item in items)

    return join


@functools.cache
def cached_upper(text: str) -> str:
    return text.upper()


JOIN = make_joiner(", ")
SPLIT = functools.partial(re.split, r"\s+", maxsplit=2)
RENDERER = Renderer()


@picante.database
class Subjects:
    @picante.input
    async def text(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def everything(self, path: str) -> str:
        text = await self.text(path)
        post = Post(clean(text))
        box = Box()
        parts = [
            post.slug(),
            str(box.area()),
            RENDERER.render(text),
            Renderer.quote(text),
            JOIN(SPLIT(text)),
            cached_upper(text),
            Color.RED.value,
            str(even(len(text))),
            str(PATTERN.findall(text)),
            str(LIMITS),
            str(HERE.name),
            str(__file__ is None),
            self.helper(text),
        ]
        return "".join(part for part in parts if part not in {"a", "b", "c", "d"})

    @picante.query
    async def plain(self, path: str) -> int:
        return len(await self.text(path))

    def helper(self, text: str) -> str:
        return text[:3] + str(sorted(WORDS))


def fingerprints() -> dict[str, str | None]:
    """The code fingerprint of each query of `Subjects`, as `codecs_of` computes them."""
    from picante._codecs import codecs_of

    return {name: codec.code for name, codec in codecs_of(Subjects).items()}
