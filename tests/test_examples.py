"""The examples run, and say what they should: each is a subprocess, as a user runs it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PAGES = 60
TAGS = 9


def environment() -> dict[str, str]:
    """The test's environment, with the checkout importable whether installed or not."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run_example(*args: str | Path, status: int = 0) -> list[str]:
    """Run `python ARGS...`, check its exit *status*, and return its output lines."""
    done = subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=50,
        check=False,
    )
    assert done.returncode == status, done.stderr
    return done.stdout.splitlines()


def ran_per_step(lines: list[str]) -> dict[str, set[str]]:
    """The `ran: ...` line after each `== N. heading` line, as a set, by step number."""
    steps: dict[str, set[str]] = {}
    step = ""
    for line in lines:
        if line.startswith("== "):
            step = line.removeprefix("== ").partition(".")[0]
        elif line.startswith("ran: "):
            ran = line.removeprefix("ran: ")
            steps[step] = set() if ran == "nothing" else set(ran.split(", "))
    return steps


def test_quickstart() -> None:
    lines = run_example(EXAMPLES / "quickstart.py")
    steps = ran_per_step(lines)
    assert steps == {
        "1": {"report()", "total()", "words('a.md')", "words('b.md')"},
        "2": set(),
        "3": {"words('b.md')", "total()", "report()"},
        "4": {"words('a.md')"},
        "5": {"words('b.md')", "total()", "report()"},
    }
    assert "My notes: 5 words in 2 files" in lines
    assert "My notes: 6 words in 2 files" in lines
    assert any(line.startswith("MissingInputError: ") for line in lines)


def test_build_graph() -> None:
    lines = run_example(EXAMPLES / "build_graph.py")
    every_compile = {"compile('main.c')", "compile('parse.c')", "compile('util.c')"}
    assert ran_per_step(lines) == {
        "1": {"command()", "link()", *every_compile},
        "2": set(),
        "3": {"compile('main.c')", "link()"},
        "4": {"compile('util.c')"},
        "5": {"command()", "link()", *every_compile},
    }
    programs = [line for line in lines if line.startswith("app@")]
    assert programs[0] == programs[1]  # nothing changed
    assert programs[2] == programs[3]  # a comment changed: the same program
    assert len(set(programs)) == 3
    assert any("O(1)" in line for line in lines)


def test_watch() -> None:
    page = "<h1>Home</h1><p>Welcome. Have a look around.</p>"
    assert run_example(EXAMPLES / "watch.py") == [
        "watching page('index')",
        "  reload: <h1>Home</h1><p>Welcome.</p>",
        "edit index.md: a new sentence",
        f"  reload: {page}",
        # The page comes out equal (early cutoff): the watcher prints nothing.
        "edit index.md: trailing whitespace",
        # The error is shown, and the watcher keeps watching.
        "edit layout.html: a typo",
        "  error: layout.html: unknown variable {{ titel }}",
        # Equal to the page before the error, and shown again: the error came in between.
        "edit layout.html: the typo fixed",
        f"  reload: {page}",
        "stopped watching",
    ]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    # The site generator needs the `examples` dependency group (markdown-it-py).
    pytest.importorskip("markdown_it", reason="needs the examples dependency group")
    shutil.copytree(EXAMPLES / "site-content", tmp_path / "content")
    return Site(tmp_path / "content", tmp_path / "out")


class Site:
    """A copy of the example content, and `examples/site.py` building it."""

    def __init__(self, content: Path, out: Path) -> None:
        self.content = content
        self.out = out

    def build(self, *extra: str, status: int = 0) -> list[str]:
        return run_example(
            EXAMPLES / "site.py", self.content, "--out", self.out, *extra, status=status
        )

    def edit(self, path: str, old: str, new: str) -> None:
        file = self.content / path
        text = file.read_text(encoding="utf-8")
        assert old in text
        file.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_site_rebuilds_only_what_changed(site: Site) -> None:
    first = site.build()
    assert f"{PAGES} of {PAGES} pages rebuilt, 0 reused" in first
    assert f"index rebuilt, {TAGS} of {TAGS} tag pages rebuilt" in first
    assert (site.out / "index.html").is_file()
    assert (site.out / "tags" / "guide.html").is_file()
    assert (site.out / "guides" / "caching.html").is_file()
    # The cache lives beside the output folder: nothing but the site is deployed.
    assert site.out.with_name(f"{site.out.name}.picante-cache").is_file()
    assert not any(path.name.endswith("picante-cache") for path in site.out.rglob("*"))

    second = site.build()
    assert any(line.startswith("loaded the cache ") for line in second)
    assert f"0 of {PAGES} pages rebuilt, {PAGES} reused" in second
    assert f"index reused, 0 of {TAGS} tag pages rebuilt" in second
    assert any(line.startswith("built in ") and "wrote 0 files" in line for line in second)

    # A new paragraph: that page only; its summary (title, tags) is equal, so listings
    # are not even recomputed (early cutoff).
    site.edit("pages/guides/caching.md", "## Clearing the cache", "One more paragraph.\n\n##")
    third = site.build()
    assert f"1 of {PAGES} pages rebuilt, {PAGES - 1} reused" in third
    assert f"index reused, 0 of {TAGS} tag pages rebuilt" in third
    assert "One more paragraph." in (site.out / "guides" / "caching.html").read_text()

    # A new title: that page, the index, and the pages of its two tags.
    site.edit("pages/guides/caching.md", "title: How caching works", "title: Cache keys")
    fourth = site.build()
    assert f"1 of {PAGES} pages rebuilt, {PAGES - 1} reused" in fourth
    assert f"index rebuilt, 2 of {TAGS} tag pages rebuilt" in fourth
    assert "Cache keys" in (site.out / "index.html").read_text()
    assert "Cache keys" in (site.out / "tags" / "internals.html").read_text()


def test_site_tracks_templates_and_partials(site: Site) -> None:
    site.build()
    site.edit("templates/partials/footer.html", "MIT-licensed", "MIT licensed")
    assert f"{PAGES} of {PAGES} pages rebuilt, 0 reused" in site.build()
    assert "MIT licensed" in (site.out / "about.html").read_text()

    site.edit("templates/tag.html", "Every page tagged", "All pages tagged")
    lines = site.build()
    assert f"0 of {PAGES} pages rebuilt, {PAGES} reused" in lines
    assert f"index reused, {TAGS} of {TAGS} tag pages rebuilt" in lines


def test_site_adds_and_removes_pages(site: Site) -> None:
    site.build()
    new = site.content / "pages" / "guides" / "new.md"
    new.write_text("---\ntitle: Brand new\ntags: [guide, fresh]\n---\nHello.\n")
    lines = site.build()
    assert f"1 of {PAGES + 1} pages rebuilt, {PAGES} reused" in lines
    assert f"index rebuilt, 2 of {TAGS + 1} tag pages rebuilt" in lines
    assert (site.out / "guides" / "new.html").is_file()
    assert (site.out / "tags" / "fresh.html").is_file()

    new.unlink()
    lines = site.build()
    assert f"0 of {PAGES} pages rebuilt, {PAGES} reused" in lines
    assert f"index rebuilt, 1 of {TAGS} tag pages rebuilt" in lines
    assert not (site.out / "guides" / "new.html").exists()
    assert not (site.out / "tags" / "fresh.html").exists()


def test_site_reports_broken_templates(site: Site) -> None:
    site.edit("templates/tag.html", "{{ tag }}", "{{ tga }}")
    lines = site.build(status=1)
    assert f"index rebuilt, {TAGS} of {TAGS} tag pages rebuilt" in lines
    assert any(line.startswith("error: unknown variable {{ tga }} (in tags/") for line in lines)
    assert not (site.out / "tags" / "guide.html").exists()
    assert (site.out / "guides" / "caching.html").is_file()

    site.edit("templates/tag.html", "{{ tga }}", "{{ tag }}")
    lines = site.build()
    assert not any(line.startswith("error:") for line in lines)
    assert (site.out / "tags" / "guide.html").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
async def test_site_watch(site: Site) -> None:
    pytest.importorskip("watchfiles", reason="needs the examples dependency group")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "site.py"),
        str(site.content),
        "--out",
        str(site.out),
        "--watch",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=environment(),
    )
    assert process.stdout is not None

    async def next_line() -> str:
        assert process.stdout is not None
        return (await process.stdout.readline()).decode().rstrip()

    try:
        async with asyncio.timeout(30):
            while not (line := await next_line()).startswith("watching "):
                assert line, "site.py exited before watching"
        # The watcher starts just after that line: edit until a rebuild shows up.
        for attempt in range(20):
            site.edit("pages/about.md", "playground game", f"playground game ({attempt})")
            try:
                async with asyncio.timeout(1):
                    line = await next_line()
            except TimeoutError:
                continue
            break
        assert line.startswith(f"rebuilt 1 of {PAGES} pages (about.md) in ")
        # Every memo is still needed: the sweep after the rebuild drops nothing.
        assert line.endswith(" ms, swept 0 records")
        assert "playground game (" in (site.out / "about.html").read_text()

        # A deleted page: the rebuild no longer needs its memos, and the sweep drops them.
        # (Edits above that the watcher saw late may show up first: skip their lines.)
        (site.content / "pages" / "guides" / "caching.md").unlink()
        async with asyncio.timeout(30):
            while f" of {PAGES - 1} pages" not in (line := await next_line()):
                assert line.startswith(f"rebuilt 1 of {PAGES} pages (about.md) in "), line
        # Its parse, summary, html and rendered memos, and its file input, now absent.
        assert line.endswith(" ms, swept 5 records"), line
        assert not (site.out / "guides" / "caching.html").exists()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
    assert rest.decode().splitlines()[-1:] == ["stopped"]
    assert process.returncode == 0


def test_site_shared_between_two_checkouts(site: Site, tmp_path: Path) -> None:
    """A second clean checkout, building through the same store, runs no page body."""
    store = f"sqlite:{tmp_path / 'shared.sqlite'}"
    other = Site(tmp_path / "other-content", tmp_path / "other-out")
    shutil.copytree(site.content, other.content)
    first = site.build("--share", store)
    assert f"{PAGES} of {PAGES} pages rebuilt, 0 reused" in first
    second = other.build("--share", store)
    assert second[0].startswith("no cache at ")  # nothing local: all from the store
    assert f"0 of {PAGES} pages rebuilt, {PAGES} reused" in second
    assert f"index reused, 0 of {TAGS} tag pages rebuilt" in second
    written = sorted(path.relative_to(site.out) for path in site.out.rglob("*"))
    assert written == sorted(path.relative_to(other.out) for path in other.out.rglob("*"))
    for path in written:
        if (site.out / path).is_file():
            assert (site.out / path).read_bytes() == (other.out / path).read_bytes()
    # An edit in one checkout: that page is built, nothing else.
    other.edit("pages/guides/caching.md", "## Clearing the cache", "More.\n\n##")
    third = other.build("--share", store)
    assert f"1 of {PAGES} pages rebuilt, {PAGES - 1} reused" in third
