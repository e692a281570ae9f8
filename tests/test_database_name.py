"""A database's identity in cache files: `@picante.database(name=...)` and its default."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

import picante


if TYPE_CHECKING:
    from pathlib import Path


TIMEOUT = 60

NOTES = """\
import asyncio
import sys

import picante


@picante.database{options}
class Notes:
    @picante.input
    async def text(self, k: str) -> str:
        raise NotImplementedError

    @picante.query
    async def words(self, k: str) -> int:
        print(f"words({{k!r}})")
        return len((await self.text(k)).split())


async def main(path: str) -> None:
    db = Notes()
    db.text.set("a", "one two")
    await db.words("a")
    await picante.save(db, path)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
"""

READER = """\
import asyncio
import sys

import picante

import notes


async def main(path: str) -> None:
    db = notes.Notes()
    await picante.load(db, path)
    print(await db.words("a"))


asyncio.run(main(sys.argv[1]))
"""


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=script.parent,
        check=False,
    )


def write(folder: Path, options: str = "") -> Path:
    (folder / "notes.py").write_text(NOTES.format(options=options))
    (folder / "reader.py").write_text(READER)
    return folder / "notes.py"


def test_a_class_run_as_a_script_and_imported_is_one_database(tmp_path: Path) -> None:
    """Saved by `python notes.py`, loaded by a program that imports `notes`."""
    cache = tmp_path / "notes.cache"
    saved = run(write(tmp_path), str(cache))
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout == "words('a')\n"
    loaded = run(tmp_path / "reader.py", str(cache))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == "2\n"  # the memo came from the file: words('a') did not run


def test_a_file_of_the_old_script_name_still_loads(tmp_path: Path) -> None:
    """Files written as `__main__.Notes` (before) load into the script's class."""
    cache = tmp_path / "notes.cache"
    script = write(tmp_path, '(name="__main__.Notes")')
    assert run(script, str(cache)).returncode == 0
    loader = tmp_path / "load_again.py"
    loader.write_text(
        NOTES.format(options="").replace(
            '    await db.words("a")\n    await picante.save(db, path)',
            "    await picante.load(db, path)\n    print(await db.words('a'))",
        )
    )
    again = run(loader, str(cache))
    assert again.returncode == 0, again.stderr
    assert again.stdout == "2\n"


def named_notes(runs: list[str]) -> type[Any]:
    """A new class named `Notes` each call (as one moved to another module would be)."""

    @picante.database(name="notes")
    class Notes:
        @picante.input
        async def text(self) -> str:
            raise NotImplementedError

        @picante.query
        async def shout(self) -> str:
            runs.append("shout()")
            return (await self.text()).upper()

    return Notes


async def test_a_given_name_survives_a_move(tmp_path: Path) -> None:
    runs: list[str] = []
    before, after = named_notes(runs), named_notes(runs)
    assert before is not after
    db = before()
    db.text.set("hi")
    await db.shout()
    await picante.save(db, tmp_path / "notes.cache")
    other = after()
    await picante.load(other, tmp_path / "notes.cache")
    assert await other.shout() == "HI"
    assert runs == ["shout()"]


async def test_another_name_is_refused_with_the_fix(tmp_path: Path) -> None:
    @picante.database
    class Notes:
        @picante.input
        async def text(self) -> str:
            raise NotImplementedError

    @picante.database(name="elsewhere")
    class Other(Notes):
        pass

    db = Notes()
    db.text.set("hi")
    await picante.save(db, tmp_path / "notes.cache")
    other = Other()
    written = f"{__name__}.{Notes.__qualname__}"
    with pytest.raises(picante.CacheError) as caught:
        await picante.load(other, tmp_path / "notes.cache")
    message = str(caught.value)
    assert f"written by database {written!r}, not 'elsewhere'" in message
    assert f"@picante.database(name={written!r})" in message
    assert other.text.get() is None  # nothing loaded


@pytest.mark.parametrize(("bad", "shown"), [(42, "an int: 42"), ("  ", "a str: '  '")])
def test_a_name_is_a_non_empty_str(bad: object, shown: str) -> None:
    expected = f"database(): name must be a non-empty str or None, got {shown}"
    with pytest.raises(picante.UsageError, match=f"^{re.escape(expected)}$"):
        picante.database(name=bad)  # type: ignore[arg-type]
