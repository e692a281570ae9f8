"""
An incremental static-site generator: Markdown pages and HTML templates in, a website
out.

The content folder holds `pages/**/*.md` (each with a small front-matter block) and
`templates/**/*.html`. Every file is an input of the `Site` database; every output file
is a query. A run loads the previous run's cache, re-reads the content folder and
rebuilds only the pages whose sources, templates or partials changed; `--watch` keeps
doing that on every save.

    python examples/site.py examples/site-content --out /tmp/site
    python examples/site.py examples/site-content --out /tmp/site --watch

Templates know two things: `{{ name }}` inserts a variable (HTML-escaped, except
fragments that are already HTML: a page's `content`, a listing's `body`, a page's
`tag_links`), and a line `{% include "partials/nav.html" %}` inserts another template,
whose includes are resolved in turn.

Needs the `examples` dependency group: markdown-it-py, and watchfiles for `--watch`,
rich for the progress bar.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import signal
import sys
import time
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from markdown_it import MarkdownIt

import picante
from picante.stores import RedisStore, SqliteStore


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

    from rich.progress import Progress

    from picante.stores import Store


MARKDOWN = MarkdownIt("commonmark").enable("table")
INCLUDE = re.compile(r'\{%\s*include\s+"([^"]+)"\s*%\}')
VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
MD_LINK = re.compile(r"^(?![a-z][a-z0-9+.-]*:)([^#?]*)\.md(?=$|#)")


class ContentError(Exception):
    """A page or template that cannot be rendered: an unknown `{{ variable }}`, say."""


# --8<-- [start:database]
@attrs.frozen
class Page:
    """A page source, split into its front matter and its Markdown body."""

    title: str
    tags: tuple[str, ...]
    template: str
    body: str


@attrs.frozen
class Summary:
    """What listings show of a page: an edit to its body alone leaves this equal."""

    title: str
    tags: tuple[str, ...]
    url: str


@picante.database
class Site:
    """A website: its sources are the inputs, each output file is a query."""

    def __init__(self) -> None:
        # The outputs whose query body ran: picante runs a body only to recompute it.
        self.rebuilt: set[str] = set()

    # The text of a page or template, by its path in the content folder:
    # "pages/about.md".
    @picante.input
    async def file(self, path: str) -> str:
        raise NotImplementedError

    # Every page and template path, sorted: what the last scan of the content folder
    # found.
    @picante.input
    async def paths(self) -> tuple[str, ...]:
        raise NotImplementedError

    @picante.query
    async def pages(self) -> tuple[str, ...]:
        """The pages among `paths()`: equal when only templates come and go."""
        return tuple(path for path in await self.paths() if path.startswith("pages/"))

    # --8<-- [end:database]

    # --8<-- [start:parse]
    @picante.query
    async def parse(self, path: str) -> Page:
        """Split the page at *path* into front matter and body."""
        meta, body = split_front_matter(await self.file(path))
        return Page(
            title=meta.get("title", path.rpartition("/")[2].removesuffix(".md")),
            tags=parse_list(meta.get("tags", "")),
            template=meta.get("template", "page.html"),
            body=body,
        )

    @picante.query
    async def summary(self, path: str) -> Summary:
        page = await self.parse(path)
        return Summary(page.title, page.tags, output_name(path))

    @picante.query
    async def summaries(self) -> tuple[Summary, ...]:
        """Every page's summary, in path order: the one thing listings depend on."""
        paths = await self.pages()
        return tuple(await asyncio.gather(*(self.summary(p) for p in paths)))

    @picante.query
    async def html(self, path: str) -> str:
        """The page's Markdown as HTML, with links to `other.md` made `other.html`."""
        tokens = MARKDOWN.parse((await self.parse(path)).body)
        for token in tokens:
            for child in token.children or ():
                if child.type == "link_open":
                    href = str(child.attrGet("href"))
                    child.attrSet("href", MD_LINK.sub(r"\1.html", href))
        return str(MARKDOWN.renderer.render(tokens, MARKDOWN.options, {}))

    # --8<-- [end:parse]

    # --8<-- [start:render]
    @picante.query
    async def template(self, name: str) -> str:
        """The template *name*, each `{% include "..." %}` line replaced by that one.

        Each include is a query of its own, so a partial is resolved once, shared by
        every template that includes it, and editing it rebuilds exactly the pages that
        use it.
        """
        lines: list[str] = []
        for line in (await self.file(f"templates/{name}")).splitlines(keepends=True):
            include = INCLUDE.fullmatch(line.strip())
            lines.append(await self.template(include[1]) if include else line)
        return "".join(lines)

    @picante.query
    async def rendered(self, path: str) -> str:
        """The final HTML of the page at *path*."""
        name = output_name(path)
        self.rebuilt.add(name)
        page = await self.parse(path)
        layout, content = await asyncio.gather(
            self.template(page.template), self.html(path)
        )
        root = root_of(name)
        return fill(
            layout,
            text={"title": page.title, "root": root},
            html={"content": content, "tag_links": tag_links(page.tags, root)},
        )

    # --8<-- [end:render]

    # --8<-- [start:index]
    @picante.query
    async def tags(self) -> tuple[str, ...]:
        summaries = await self.summaries()
        return tuple(sorted({tag for summary in summaries for tag in summary.tags}))

    @picante.query
    async def tagged(self, tag: str) -> tuple[Summary, ...]:
        """The pages tagged *tag*.

        Recomputed whenever a summary changes, but equal unless a page with this tag
        changed: then, and only then, `tag_page(tag)` is rebuilt (early cutoff).
        """
        summaries = await self.summaries()
        return tuple(summary for summary in summaries if tag in summary.tags)

    @picante.query
    async def index(self) -> str:
        """The home page: every page's title, under a heading per folder."""
        self.rebuilt.add("index.html")
        sections: dict[str, list[Summary]] = {}
        for summary in await self.summaries():
            folder = summary.url.rpartition("/")[0] or "general"
            sections.setdefault(folder, []).append(summary)
        body = "\n".join(
            f"<h2>{escape(folder.capitalize())}</h2>\n{link_list(summaries, root='')}"
            for folder, summaries in sections.items()
        )
        return fill(
            await self.template("index.html"),
            text={"title": "Documentation and blog", "root": ""},
            html={"body": body},
        )

    @picante.query
    async def tag_page(self, tag: str) -> str:
        """The page listing every page tagged *tag*."""
        self.rebuilt.add(tag_output(tag))
        return fill(
            await self.template("tag.html"),
            text={"title": f"Tagged {tag}", "tag": tag, "root": "../"},
            html={"body": link_list(await self.tagged(tag), root="../")},
        )

    # --8<-- [end:index]


# --8<-- [start:helpers]
def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Split a `---`-fenced block of `key: value` lines off the top of *text*."""
    head, fence, body = text.removeprefix("---\n").partition("\n---\n")
    if not text.startswith("---\n") or not fence:
        return {}, text
    meta: dict[str, str] = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            meta[key.strip()] = value.strip().strip("\"'")
    return meta, body


def parse_list(value: str) -> tuple[str, ...]:
    """`[guide, intro]` (or `guide, intro`) as `("guide", "intro")`."""
    return tuple(item.strip() for item in value.strip("[]").split(",") if item.strip())


def fill(template: str, *, text: Mapping[str, str], html: Mapping[str, str]) -> str:
    """Replace each `{{ name }}`: *text* values HTML-escaped, *html* ones as is."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name in html:
            return html[name]
        if name in text:
            return escape(text[name])
        msg = f"unknown variable {match[0]}"
        raise ContentError(msg)

    return VARIABLE.sub(value, template)


def output_name(path: str) -> str:
    """`pages/guides/install.md` is written to `guides/install.html`."""
    return path.removeprefix("pages/").removesuffix(".md") + ".html"


def tag_output(tag: str) -> str:
    return f"tags/{tag}.html"


def root_of(name: str) -> str:
    """The relative link from output *name* to the site's root: `../` per folder."""
    return "../" * name.count("/")


def tag_links(tags: Iterable[str], root: str) -> str:
    return " ".join(
        f'<a href="{root}{tag_output(tag)}">{escape(tag)}</a>' for tag in tags
    )


def link_list(summaries: Iterable[Summary], root: str) -> str:
    items = "".join(
        f'  <li><a href="{root}{summary.url}">{escape(summary.title)}</a></li>\n'
        for summary in summaries
    )
    return f"<ul>\n{items}</ul>"


# --8<-- [end:helpers]


# --8<-- [start:scan]
def is_source(path: str) -> bool:
    """Is *path* (relative to the content folder) a page or a template?

    Hidden files are not.
    """
    name = path.rpartition("/")[2]
    return not name.startswith(".") and (
        (path.startswith("pages/") and name.endswith(".md"))
        or (path.startswith("templates/") and name.endswith(".html"))
    )


def list_sources(content: Path) -> set[str]:
    """The pages and templates under *content*, as `/`-separated relative paths."""
    paths = (
        path.relative_to(content).as_posix()
        for path in content.rglob("*")
        if path.is_file()
    )
    return {path for path in paths if is_source(path)}


def refresh(db: Site, content: Path, changed: Iterable[str] | None = None) -> None:
    """Bring the inputs up to date with *content*, in one revision.

    Re-reads the *changed* sources (all of them when `None`) and every source that
    appeared or vanished since `paths()` was set. Setting an input to an equal value is
    a no-op, so re-reading an unchanged file invalidates nothing.
    """
    present = list_sources(content)
    known = set(db.paths.get(default=()))
    reread = present ^ known  # appeared or vanished
    reread.update(present if changed is None else filter(is_source, changed))
    with picante.batch(db):
        for path in sorted(reread):
            try:
                db.file.set(path, (content / path).read_text(encoding="utf-8"))
            except FileNotFoundError:
                db.file.remove(path)
                present.discard(path)
        db.paths.set(tuple(sorted(present)))


# --8<-- [end:scan]


# --8<-- [start:build]
@attrs.frozen
class Report:
    """What one build did."""

    pages: tuple[str, ...]
    rebuilt: frozenset[str]
    outputs: frozenset[str]
    written: int
    errors: tuple[tuple[str, str], ...]  # (output name, message)
    seconds: float

    @property
    def pages_rebuilt(self) -> list[str]:
        return [page for page in self.pages if output_name(page) in self.rebuilt]

    @property
    def tags_rebuilt(self) -> list[str]:
        return sorted(name for name in self.rebuilt if name.startswith("tags/"))


BUILD_ERRORS = (ContentError, picante.MissingInputError, picante.CycleError)


async def outputs(db: Site) -> dict[str, Callable[[], Awaitable[str]]]:
    """Every output file of the site, by name, with the query that renders it."""
    found: dict[str, Callable[[], Awaitable[str]]] = {"index.html": db.index}
    for path in await db.pages():
        found[output_name(path)] = functools.partial(db.rendered, path)
    for tag in await db.tags():
        found[tag_output(tag)] = functools.partial(db.tag_page, tag)
    return found


async def build(
    db: Site, out: Path, previous: Iterable[str] = (), progress: Progress | None = None
) -> Report:
    """Render every output concurrently; write those that differ from those in *out*.

    Deletes the outputs named in *previous* that the site no longer has.
    """
    start = time.perf_counter()
    db.rebuilt.clear()
    jobs = await outputs(db)
    bar = progress.add_task("Building", total=len(jobs)) if progress else None
    errors: list[tuple[str, str]] = []

    async def render(name: str, query: Callable[[], Awaitable[str]]) -> bool:
        try:
            text = await query()
        except BUILD_ERRORS as error:
            errors.append((name, str(error)))
            return False
        finally:
            if progress is not None and bar is not None:
                progress.advance(bar)
        return write_if_changed(out / name, text)

    written = await asyncio.gather(
        *(render(name, query) for name, query in jobs.items())
    )
    for name in set(previous) - jobs.keys():
        (out / name).unlink(missing_ok=True)
    return Report(
        pages=await db.pages(),
        rebuilt=frozenset(db.rebuilt),
        outputs=frozenset(jobs),
        written=sum(written),
        errors=tuple(sorted(errors)),
        seconds=time.perf_counter() - start,
    )


def write_if_changed(path: Path, text: str) -> bool:
    """Write *text* to *path* unless it already holds exactly that; say if it wrote."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


# --8<-- [end:build]


# --8<-- [start:main]
def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def print_report(report: Report) -> None:
    pages, rebuilt = len(report.pages), len(report.pages_rebuilt)
    tags = sum(name.startswith("tags/") for name in report.outputs)
    index = "rebuilt" if "index.html" in report.rebuilt else "reused"
    print(f"{rebuilt} of {pages} pages rebuilt, {pages - rebuilt} reused")
    print(f"index {index}, {len(report.tags_rebuilt)} of {tags} tag pages rebuilt")
    print_errors(report)


def print_errors(report: Report) -> None:
    """One line per distinct error, with the outputs it broke."""
    broken: dict[str, list[str]] = {}
    for name, message in report.errors:
        broken.setdefault(message, []).append(name)
    for message, names in broken.items():
        print(f"error: {message} (in {few(names)})")


def few(names: list[str], shown: int = 2) -> str:
    """`a, b and 6 more`."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


async def run(
    content: Path, out: Path, cache: Path, *, watch: bool, share: Sequence[Store] = ()
) -> Report:
    start = time.perf_counter()
    db = Site()
    picante.share(db, *share)  # reuse what other builds computed (no store: nothing)
    if await picante.load(db, cache, on_corrupt="delete"):
        print(f"loaded the cache {cache} in {ms(time.perf_counter() - start)}")
        previous: set[str] = set(await outputs(db))
    else:
        print(f"no cache at {cache}: building everything")
        previous = set()
    refresh(db, content)

    if sys.stdout.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            report = await build(db, out, previous, progress)
    else:
        report = await build(db, out, previous)
    print_report(report)
    saving = time.perf_counter()
    await picante.save(db, cache)
    await picante.flush_shared(db)
    print(
        f"built in {ms(report.seconds)}, wrote {report.written} file"
        f"{'' if report.written == 1 else 's'} to {out}, "
        f"saved the cache in {ms(time.perf_counter() - saving)}"
    )
    if watch:
        await watch_and_rebuild(db, content, out, cache, report)
    return report


# --8<-- [end:main]


# --8<-- [start:watch]
async def watch_and_rebuild(
    db: Site, content: Path, out: Path, cache: Path, last: Report
) -> None:
    """Rebuild after every change under *content*, until Ctrl-C."""
    # watchfiles types `stop_event` with trio's Event too: unknown to pyright without
    # trio.
    from watchfiles import awatch  # pyright: ignore[reportUnknownVariableType]

    # Ctrl-C sets an event the watcher checks, rather than cancelling the task: the
    # rebuild in progress finishes and is saved, and nothing is left waiting on the
    # watcher's thread.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        print(f"watching {content} (Ctrl-C to stop)")
        async for changes in awatch(content, stop_event=stop):
            changed = {Path(p).relative_to(content).as_posix() for _, p in changes}
            revision = picante.revision(db)
            refresh(db, content, changed)
            if picante.revision(db) == revision:
                continue  # no page or template changed
            last = await build(db, out, last.outputs)
            # Drop what this rebuild did not need (a deleted page's memos, say) before
            # the save, so that neither the process nor the cache keeps every file ever
            # seen.
            swept = picante.sweep(db)
            print(
                f"rebuilt {describe(last)} in {ms(last.seconds)}, "
                f"swept {swept} record{'' if swept == 1 else 's'}"
            )
            print_errors(last)
            await picante.save(db, cache)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def describe(report: Report) -> str:
    """`1 of 60 pages (about.md), the index, 2 tag pages`."""
    pages = [page.removeprefix("pages/") for page in report.pages_rebuilt]
    text = f"{len(pages)} of {len(report.pages)} pages"
    if pages:
        text += f" ({few(pages)})"
    if "index.html" in report.rebuilt:
        text += ", the index"
    if tags := len(report.tags_rebuilt):
        text += f", {tags} tag page{'s' if tags > 1 else ''}"
    return text


# --8<-- [end:watch]


async def shared_run(
    content: Path, out: Path, cache: Path, watch: bool, url: str | None
) -> Report:
    """`run`, sharing results through the store at *url* if one is given."""
    if url is None:
        return await run(content, out, cache, watch=watch)
    store: Store
    if url.startswith("sqlite:"):
        store = SqliteStore(url.removeprefix("sqlite:"))
    else:
        store = RedisStore(url, namespace="site")
    async with store:
        return await run(content, out, cache, watch=watch, share=[store])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a static site, incrementally.")
    parser.add_argument(
        "content", type=Path, help="the folder with pages/ and templates/"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where to write the site"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="cache file (default: OUT.picante-cache, beside OUT, not in it)",
    )
    parser.add_argument("--watch", action="store_true", help="rebuild on every change")
    parser.add_argument(
        "--share",
        metavar="URL",
        help="share results with other builds: sqlite:PATH, or redis://... (or unix://)",
    )
    args = parser.parse_args(argv)
    content: Path = args.content.resolve()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    # Beside the output folder, not in it: what is deployed is the site, not the cache.
    cache: Path = args.cache or out.with_name(f"{out.name}.picante-cache")
    try:
        report = asyncio.run(shared_run(content, out, cache, args.watch, args.share))
    except KeyboardInterrupt:
        print("stopped")
        return
    if args.watch:
        print("stopped")  # Ctrl-C ended the watch loop
        return
    sys.exit(1 if report.errors else 0)


if __name__ == "__main__":
    main()
