"""
Live reload with `picante.watch`: show a page again each time an edit changes it.

A development server would push each new version of the page to the browser; this script
prints one line per version instead (or per error), while the main coroutine edits the
in-memory "files" the way a file watcher would. Four edits: one that changes the page,
one that does not (the watcher stays silent: early cutoff), one that breaks the layout
(the watcher prints the error and keeps watching) and one that fixes it.

Run it with `python examples/watch.py`.
"""

from __future__ import annotations

import asyncio
import re
from html import escape
from typing import TYPE_CHECKING

import attrs

import picante


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class TemplateError(Exception):
    """A layout that cannot be filled in: one with an unknown `{{ variable }}`, say."""


# --8<-- [start:database]
@attrs.frozen
class Page:
    title: str
    paragraphs: tuple[str, ...]


@picante.database
class Pages:
    # The text of each file, by name: "index.md", "layout.html".
    @picante.input
    async def file(self, name: str) -> str:
        raise NotImplementedError

    @picante.query
    async def parse(self, name: str) -> Page:
        """The page's `# title` line and its paragraphs, whitespace trimmed."""
        title, _, body = (await self.file(f"{name}.md")).strip().partition("\n")
        paragraphs = (" ".join(part.split()) for part in body.split("\n\n"))
        return Page(title.removeprefix("# "), tuple(filter(None, paragraphs)))

    @picante.query
    async def page(self, name: str) -> str:
        """The HTML of page *name*: its title and paragraphs in `layout.html`."""
        page = await self.parse(name)
        body = "".join(f"<p>{escape(paragraph)}</p>" for paragraph in page.paragraphs)
        return fill(await self.file("layout.html"), title=escape(page.title), body=body)


def fill(layout: str, **values: str) -> str:
    """Replace each `{{ name }}` in *layout* with `values[name]`."""

    def value(match: re.Match[str]) -> str:
        if match[1] not in values:
            msg = f"layout.html: unknown variable {match[0]}"
            raise TemplateError(msg)
        return values[match[1]]

    return VARIABLE.sub(value, layout)


# --8<-- [end:database]


# --8<-- [start:watch]
async def live_reload(updates: AsyncIterator[str], shown: asyncio.Event) -> None:
    """Print each version of the page, or its error, until *updates* is closed."""
    while True:
        try:
            html = await anext(updates)
        except StopAsyncIteration:  # closed; must come before `except Exception`
            return
        except Exception as error:  # noqa: BLE001 - show it, and keep watching
            print(f"  error: {error}")
        else:
            print(f"  reload: {html}")
        shown.set()


async def main() -> None:
    db = Pages()
    db.file.set("index.md", "# Home\n\nWelcome.\n")
    db.file.set("layout.html", "<h1>{{ title }}</h1>{{ body }}")

    print("watching page('index')")
    shown = asyncio.Event()  # set by the watcher each time it prints a line
    updates = picante.watch(db.page, "index")
    watcher = asyncio.create_task(live_reload(updates, shown))
    await shown.wait()  # the page as it is now

    async def edit(name: str, old: str, new: str, what: str) -> None:
        print(f"edit {name}: {what}")
        shown.clear()
        db.file.set(name, (await db.file(name)).replace(old, new))

    await edit("index.md", "Welcome.", "Welcome. Have a look around.", "a new sentence")
    await shown.wait()

    # parse("index") recomputes to an equal Page, so page("index") is not even
    # recomputed and the watcher prints nothing. Read the page here to have that done
    # before going on.
    await edit("index.md", "around.\n", "around.  \n\n\n", "trailing whitespace")
    await db.page("index")

    await edit("layout.html", "{{ title }}", "{{ titel }}", "a typo")
    await shown.wait()
    await edit("layout.html", "{{ titel }}", "{{ title }}", "the typo fixed")
    await shown.wait()

    await updates.aclose()  # ends the watcher's loop
    await watcher
    print("stopped watching")


# --8<-- [end:watch]


if __name__ == "__main__":
    asyncio.run(main())
