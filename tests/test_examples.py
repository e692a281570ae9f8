"""The examples run, and say what they should: each is a subprocess, as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import picante
from examples import analyze
from picante.testing import record


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


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


@contextlib.asynccontextmanager
async def watching(
    command: list[str], *, stderr: bool = False
) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """
    Run an example's *command* in watch mode until it says it is watching; yield the
    reader of its next output line (with *stderr*, of either stream). Then Ctrl-C: it
    must say "stopped" and exit with 0.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if stderr else asyncio.subprocess.DEVNULL,
        env=environment(),
    )
    assert process.stdout is not None
    stdout = process.stdout

    async def next_line() -> str:
        return (await stdout.readline()).decode().rstrip()

    try:
        async with asyncio.timeout(30):
            while not (line := await next_line()).startswith("watching "):
                assert line, f"{command[0]} exited before watching"
        yield next_line
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
    assert rest.decode().splitlines()[-1:] == ["stopped"]
    assert process.returncode == 0


async def first_report(edit: Callable[[int], None], next_line: Callable[[], Awaitable[str]]) -> str:
    """
    Edit (attempt 0, 1, ...) until the watcher reports: it starts just after saying it
    watches, and may miss an edit made before. Return the report's first line.
    """
    for attempt in range(20):
        edit(attempt)
        try:
            async with asyncio.timeout(1):
                return await next_line()
        except TimeoutError:
            continue
    msg = "no report after 20 edits"
    raise AssertionError(msg)


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
async def test_site_watch(site: Site) -> None:
    pytest.importorskip("watchfiles", reason="needs the examples dependency group")
    command = [str(EXAMPLES / "site.py"), str(site.content), "--out", str(site.out), "--watch"]
    async with watching(command, stderr=True) as next_line:
        # The watcher starts just after the "watching" line: edit until a rebuild shows.
        line = await first_report(
            lambda attempt: site.edit(
                "pages/about.md", "playground game", f"playground game ({attempt})"
            ),
            next_line,
        )
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


# -- examples/analyze.py: an incremental analyzer of a Python tree -----------------------

TREE = {
    "pkg/__init__.py": "from pkg.core import run as run\n",
    "pkg/core.py": "import os\n\nfrom pkg import util\n\n\ndef run():\n    return util.helper()\n",
    "pkg/util.py": "from pkg.core import run\n\n\ndef helper():\n    return 1\n",
    "pkg/cli.py": (
        "import sys\n\nfrom pkg.util import helper, missing\nfrom pkg.gone import thing\n\n"
        "print(helper(), undefined_name)\n"
    ),
    "pkg/broken.py": "def oops(:\n    pass\n",
}
DIAGNOSTICS = [
    "pkg/broken.py:1:10: E999 SyntaxError: invalid syntax",
    "pkg/cli.py:1:1: F401 `sys` imported but unused",
    "pkg/cli.py:3:1: E0611 `pkg.util` has no name `missing`",
    "pkg/cli.py:3:1: F401 `pkg.util.missing` imported but unused",
    "pkg/cli.py:4:1: E0401 cannot import `pkg.gone`",
    "pkg/cli.py:4:1: F401 `pkg.gone.thing` imported but unused",
    "pkg/cli.py:6:17: F821 undefined name `undefined_name`",
    "pkg/core.py:1:1: F401 `os` imported but unused",
    "pkg/core.py:3:1: R0401 import cycle: pkg.core -> pkg.util -> pkg.core",
    "pkg/util.py:1:1: F401 `pkg.core.run` imported but unused",
    "pkg/util.py:1:1: R0401 import cycle: pkg.util -> pkg.core -> pkg.util",
]
# The queries of the import graph: an edit that changes no import must run none of them.
GRAPH = {"modules", "path_of", "resolved_imports", "import_closure", "cycle", "imported_by"}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small package with one problem of each kind; returns its folder, `pkg`."""
    for path, text in TREE.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    return tmp_path / "pkg"


def edit(root: Path, path: str, old: str, new: str) -> None:
    file = root.parent / path
    text = file.read_text(encoding="utf-8")
    assert old in text
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def queries(executed: list[str]) -> set[str]:
    """The names of the queries in a `record(db).executed` list."""
    return {entry.partition("(")[0] for entry in executed}


async def analyzed(root: Path) -> tuple[analyze.Analyzer, analyze.Report]:
    db = analyze.Analyzer()
    analyze.refresh(db, root)
    return db, await analyze.analyze(db)


async def step(
    db: analyze.Analyzer, root: Path, path: str, last: analyze.Report
) -> tuple[list[str], list[str], analyze.Report]:
    """`reanalyze` after an edit of *path*: the bodies run, the lines printed, the report."""
    with record(db) as log:
        done = await analyze.reanalyze(db, root, [path], last)
    assert done is not None
    report, lines = done
    return log.executed, lines, report


def test_analyze_prints_diagnostics_like_a_linter(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sorted `path:line:col: code message` lines, a count, and exit status 1."""
    assert analyze.main([str(tree)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [*DIAGNOSTICS, "Found 11 diagnostics in 5 files."]
    assert err.startswith("analyzed in ")
    assert err.endswith(": 52 query bodies ran\n")


def test_analyze_exits_zero_on_a_clean_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No diagnostic: status 0; names bound in classes, comprehensions, `global`,
    `__all__`, re-exports, annotations and quoted types are no false positives."""
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "__init__.py").write_text(
        "from __future__ import annotations\n\n"
        "import typing\nfrom typing import TYPE_CHECKING, cast\n\n"
        "from clean.a import A as A, f\n\n"
        "if TYPE_CHECKING:\n    from clean.a import Hidden\n\n"
        "__all__ = ['f']\n"
        "squares = [n * n for n in range(3)]\n"
        "Alias: typing.TypeAlias = 'list[Hidden]'\n"
        "value = cast('Hidden', None)\n\n\n"
        "class B:\n    x = 1\n    y = x + len(squares)\n\n\n"
        "def g(a: Hidden) -> None:\n    global late\n    late = a\n"
    )
    (tmp_path / "clean" / "a.py").write_text("class A: ...\n\n\nclass Hidden: ...\n\n\nf = A\n")
    assert analyze.main([str(tmp_path / "clean")]) == 0
    assert capsys.readouterr().out.splitlines() == ["Found 0 diagnostics in 2 files."]


async def test_analyze_body_edit_reparses_only_that_file(tree: Path) -> None:
    """An edit inside a function that moves no line: parse() runs, and is cut off."""
    db, report = await analyzed(tree)
    edit(tree, "pkg/util.py", "return 1", "return 2")
    executed, lines, report = await step(db, tree, "pkg/util.py", report)
    assert executed == ["parse('pkg/util.py')"]
    assert lines[0].startswith("11 diagnostics: 1 query body ran in ")
    assert lines[0].endswith(" ms, swept 0 records")


async def test_analyze_moved_lines_rerun_no_import_graph_query(tree: Path) -> None:
    """A docstring on top moves every line: that file's diagnostics move, imports() and
    definitions() run again and are cut off, and no query of the import graph runs."""
    db, report = await analyzed(tree)
    edit(tree, "pkg/core.py", "import os\n", '"""The core."""\nimport os\n')
    executed, lines, report = await step(db, tree, "pkg/core.py", report)
    assert executed == [
        "parse('pkg/core.py')",
        "definitions('pkg/core.py')",
        "imports('pkg/core.py')",
        "lint('pkg/core.py')",
        "check()",
        "picante.accumulated('lint', ('pkg/core.py',))",
        "picante.accumulated('check', ())",
        "diagnostics()",
    ]
    assert not queries(executed) & GRAPH
    assert lines[:-1] == [
        "- pkg/core.py:1:1: F401 `os` imported but unused",
        "- pkg/core.py:3:1: R0401 import cycle: pkg.core -> pkg.util -> pkg.core",
        "+ pkg/core.py:2:1: F401 `os` imported but unused",
        "+ pkg/core.py:4:1: R0401 import cycle: pkg.core -> pkg.util -> pkg.core",
    ]


async def test_analyze_new_unused_import_reruns_that_module_only(tree: Path) -> None:
    """A new import of the standard library: that module's imports are resolved again
    (to the same files: cut off), its diagnostics recomputed, and the collection."""
    db, report = await analyzed(tree)
    edit(tree, "pkg/cli.py", "undefined_name)\n", "undefined_name)\nimport json\n")
    executed, lines, report = await step(db, tree, "pkg/cli.py", report)
    assert executed == [
        "parse('pkg/cli.py')",
        "path_of('json')",
        "imports('pkg/cli.py')",
        "resolved_imports('pkg/cli.py')",
        "lint('pkg/cli.py')",
        "check()",
        "picante.accumulated('lint', ('pkg/cli.py',))",
        "picante.accumulated('check', ())",
        "diagnostics()",
    ]
    assert lines[0] == "+ pkg/cli.py:7:1: F401 `json` imported but unused"
    assert lines[1].startswith("12 diagnostics: 9 query bodies ran in ")


async def test_analyze_syntax_error_is_a_diagnostic_parsed_once(tree: Path) -> None:
    """A file that does not parse is an E999, not a crash; other edits never parse it
    again; fixing it removes the diagnostic."""
    db, report = await analyzed(tree)
    edit(tree, "pkg/core.py", "import os\n", "import os\nimport re\n")
    executed, lines, report = await step(db, tree, "pkg/core.py", report)
    assert "parse('pkg/broken.py')" not in executed
    assert str(report.diagnostics[0]) == DIAGNOSTICS[0]

    edit(tree, "pkg/broken.py", "oops(:", "oops():")
    executed, lines, report = await step(db, tree, "pkg/broken.py", report)
    assert executed[0] == "parse('pkg/broken.py')"
    assert not queries(executed) & GRAPH  # neither version imports anything
    assert lines[0] == f"- {DIAGNOSTICS[0]}"


async def test_analyze_deleted_file_is_swept(tree: Path) -> None:
    """A deleted file's diagnostics go, and the sweep drops its memos."""
    db, report = await analyzed(tree)
    (tree / "cli.py").unlink()
    done = await analyze.reanalyze(db, tree, ["pkg/cli.py"], report)
    assert done is not None
    report, lines = done
    assert lines[:-1] == [f"- {line}" for line in DIAGNOSTICS if line.startswith("pkg/cli.py")]
    swept = re.fullmatch(
        r"5 diagnostics: 9 query bodies ran in .* ms, swept (\d+) records?", lines[-1]
    )
    # parse, imports, resolved_imports, import_closure, cycle, lint, its collection,
    # definitions('pkg/util.py') that only cli read, and the five path_of() of names only
    # cli imported: all in the watch step's own sweep, with no garbage collection.
    assert swept is not None
    assert int(swept[1]) == 13
    assert picante.sweep(db) == 0
    memos = {query.name: query.memos for query in picante.debug.stats(db).queries}
    assert memos["parse"] == memos["lint"] == memos["import_closure"] == 4


async def test_analyze_deleted_module_breaks_its_importers(tree: Path) -> None:
    """Deleting pkg/util.py: its importer cli cannot import it, the cycle through it
    goes, and `from pkg import util` now imports pkg itself: a cycle through the
    package, and a name it lacks."""
    db, report = await analyzed(tree)
    (tree / "util.py").unlink()
    _, lines, report = await step(db, tree, "pkg/util.py", report)
    assert lines[:-1] == [
        "- pkg/cli.py:3:1: E0611 `pkg.util` has no name `missing`",
        "- pkg/core.py:3:1: R0401 import cycle: pkg.core -> pkg.util -> pkg.core",
        "- pkg/util.py:1:1: F401 `pkg.core.run` imported but unused",
        "- pkg/util.py:1:1: R0401 import cycle: pkg.util -> pkg.core -> pkg.util",
        "+ pkg/__init__.py:1:1: R0401 import cycle: pkg -> pkg.core -> pkg",
        "+ pkg/cli.py:3:1: E0401 cannot import `pkg.util`",
        "+ pkg/core.py:3:1: E0611 `pkg` has no name `util`",
        "+ pkg/core.py:3:1: R0401 import cycle: pkg.core -> pkg -> pkg.core",
    ]
    assert await db.importers("pkg/core.py") == ("pkg/__init__.py",)


async def test_analyze_importers_are_transitive(tree: Path) -> None:
    """What imports pkg.util, directly or not; `--importers` prints the same."""
    db, _ = await analyzed(tree)
    assert await db.importers("pkg/util.py") == ("pkg/__init__.py", "pkg/cli.py", "pkg/core.py")
    assert await db.importers("pkg/cli.py") == ()


def test_analyze_importers_option(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--importers MODULE` prints module names; an unknown module is status 2."""
    assert analyze.main([str(tree), "--importers", "pkg.util"]) == 0
    assert capsys.readouterr().out.splitlines() == ["pkg", "pkg.cli", "pkg.core"]
    assert analyze.main([str(tree), "--importers", "pkg.nope"]) == 2
    assert capsys.readouterr().err == "no module 'pkg.nope' in the tree\n"


async def test_analyze_restart_from_cache_runs_no_parse(tree: Path, tmp_path: Path) -> None:
    """A new database loaded from the cache file runs no parse (nor any query body but
    the collections of diagnostics, which cache files do not hold, and the query that
    sorts what they collect)."""
    db, report = await analyzed(tree)
    await picante.save(db, tmp_path / "analyze.cache")
    again = analyze.Analyzer()
    assert await picante.load(again, tmp_path / "analyze.cache")
    analyze.refresh(again, tree)
    with record(again) as log:
        restarted = await analyze.analyze(again)
    assert restarted.diagnostics == report.diagnostics
    assert queries(log.executed) == {"picante.accumulated", "diagnostics"}


def test_analyze_cache_option(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--cache FILE` twice: the same output, and the second run loads the file."""
    cache = str(tmp_path / "analyze.cache")
    assert analyze.main([str(tree), "--cache", cache]) == 1
    first = capsys.readouterr()
    assert analyze.main([str(tree), "--cache", cache]) == 1
    second = capsys.readouterr()
    assert second.out == first.out
    assert second.err.startswith(f"loaded {cache} in ")
    # Only the collections of the four files with diagnostics and of check(), and
    # diagnostics(), which reads the latter.
    assert second.err.endswith(": 6 query bodies ran\n")


def test_analyze_share_option(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--share sqlite:PATH`: a second run with no cache takes what it can from the
    store; queries that accumulate or resolve cycles run again."""
    store = f"sqlite:{tmp_path / 'shared.sqlite'}"
    assert analyze.main([str(tree), "--share", store]) == 1
    first = capsys.readouterr()
    assert analyze.main([str(tree), "--share", store]) == 1
    second = capsys.readouterr()
    assert second.out == first.out
    assert first.err.endswith(": 52 query bodies ran\n")
    assert second.err.endswith(": 17 query bodies ran\n")


async def requests(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_analyze_serve(tree: Path) -> None:
    """One JSON response per request line: answers, edits, and errors for bad requests."""
    db = analyze.Analyzer()
    analyze.refresh(db, tree)
    sent = [
        {"op": "diagnostics", "path": "pkg/core.py", "id": 1},
        {"op": "importers", "module": "pkg.util"},
        {"op": "imports", "module": "pkg"},
        {"op": "set", "path": "pkg/core.py", "text": "from pkg import util\n\nutil.helper()\n"},
        {"op": "diagnostics", "path": "pkg/core.py"},
        {"op": "set", "path": "pkg/new.py", "text": "import pkg.cli\n"},
        {"op": "importers", "module": "pkg.cli"},
        {"op": "remove", "path": "pkg/cli.py"},
        {"op": "diagnostics", "path": "pkg/new.py"},
        {"op": "stats"},
    ]
    bad = ["not json", "[1]", '{"op": "nope"}', '{"op": "diagnostics", "path": 3}']
    bad += ['{"op": "importers", "module": "pkg.cli"}', '{"op": "set", "path": "../x.py"}']
    bad += ['{"op": "set", "path": "/etc/x.py", "text": ""}']
    responses: list[str] = []
    async with asyncio.timeout(10):
        await analyze.serve(db, requests(*map(json.dumps, sent), "", *bad), responses.append)
    replies = [json.loads(line) for line in responses]
    cycle = "import cycle: pkg.core -> pkg.util -> pkg.core"
    assert replies[:9] == [
        {
            "id": 1,
            "ok": True,
            "result": [
                {
                    "path": "pkg/core.py",
                    "line": 1,
                    "col": 1,
                    "code": "F401",
                    "message": "`os` imported but unused",
                },
                {"path": "pkg/core.py", "line": 3, "col": 1, "code": "R0401", "message": cycle},
            ],
        },
        {"ok": True, "result": ["pkg", "pkg.cli", "pkg.core"]},
        {"ok": True, "result": ["pkg.core", "pkg.util"]},
        {"ok": True, "result": None},
        {
            "ok": True,
            "result": [
                {"path": "pkg/core.py", "line": 1, "col": 1, "code": "R0401", "message": cycle},
            ],
        },
        {"ok": True, "result": None},
        {"ok": True, "result": ["pkg.new"]},
        {"ok": True, "result": None},
        {
            "ok": True,
            "result": [
                {
                    "path": "pkg/new.py",
                    "line": 1,
                    "col": 1,
                    "code": "E0401",
                    "message": "cannot import `pkg.cli`",
                },
                {
                    "path": "pkg/new.py",
                    "line": 1,
                    "col": 1,
                    "code": "F401",
                    "message": "`pkg.cli` imported but unused",
                },
            ],
        },
    ]
    assert replies[9]["result"]["files"] == 5  # one added, one removed
    assert replies[10:] == [
        {"ok": False, "error": "not JSON: Expecting value: line 1 column 1 (char 0)"},
        {"ok": False, "error": "a request is a JSON object"},
        {
            "ok": False,
            "error": (
                "unknown op 'nope'; one of: diagnostics, importers, imports, set, remove, stats"
            ),
        },
        {"ok": False, "error": "'diagnostics' needs 'path', a string"},
        {"ok": False, "error": "no module 'pkg.cli'"},
        {"ok": False, "error": "'set' needs 'text', a string"},
        {"ok": False, "error": "not a Python file's path in the tree: '/etc/x.py'"},
    ]


def test_analyze_serve_over_stdin(tree: Path) -> None:
    """`--serve` reads requests from stdin until it ends; nothing else goes to stdout."""
    lines = [json.dumps({"op": "importers", "module": "pkg.core"}), "{}"]
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "analyze.py"), str(tree), "--serve"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=environment(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"ok": True, "result": ["pkg", "pkg.cli", "pkg.util"]},
        {
            "ok": False,
            "error": (
                "unknown op None; one of: diagnostics, importers, imports, set, remove, stats"
            ),
        },
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
async def test_analyze_watch(tree: Path) -> None:
    """`--watch` prints what an edit changed and how many bodies ran; Ctrl-C stops it."""
    pytest.importorskip("watchfiles", reason="needs the examples dependency group")

    def append_import(attempt: int) -> None:
        # Each edit appends an unused import at the end: the first one seen adds one.
        with (tree / "cli.py").open("a", encoding="utf-8") as file:
            file.write(f"import json as j{attempt}\n")

    async with watching([str(EXAMPLES / "analyze.py"), str(tree), "--watch"]) as next_line:
        line = await first_report(append_import, next_line)
        assert line.startswith("+ pkg/cli.py:7:1: F401 `json` imported but unused"), line
        async with asyncio.timeout(30):
            while " query bod" not in (line := await next_line()):
                assert line.startswith("+ pkg/cli.py:"), line
        assert line.startswith("1")  # 12 or more diagnostics


async def test_analyze_lru_finds_the_same(tree: Path) -> None:
    """The hand-cached version finds what the picante one does, edit after edit."""
    from examples import analyze_lru

    db, report = await analyzed(tree)
    by_hand = analyze_lru.Tree()
    for path, text in TREE.items():
        by_hand.set(path, text)
    assert by_hand.check() == report.diagnostics
    assert by_hand.importers("pkg/util.py") == await db.importers("pkg/util.py")
    edits = [
        ("pkg/core.py", "import os\n", '"""The core."""\nimport os\n'),  # lines move
        ("pkg/cli.py", "undefined_name)\n", "undefined_name)\nimport json\n"),
        ("pkg/util.py", "from pkg.core import run\n", ""),  # the cycle goes
        ("pkg/broken.py", "oops(:", "oops():"),
    ]
    for path, old, new in edits:
        edit(tree, path, old, new)
        done = await analyze.reanalyze(db, tree, [path], report)
        assert done is not None
        report = done[0]
        by_hand.set(path, (tree.parent / path).read_text(encoding="utf-8"))
        assert by_hand.check() == report.diagnostics, path
    (tree / "cli.py").unlink()
    by_hand.remove("pkg/cli.py")
    done = await analyze.reanalyze(db, tree, ["pkg/cli.py"], report)
    assert done is not None
    assert by_hand.check() == done[0].diagnostics
