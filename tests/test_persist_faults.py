"""
A failed save changes nothing on disk, and two writers never mix.

The fault-injection test fails each file operation of a save in turn (`_format.ops`):
counted on a dry run of the same save, then failed one at a time, for first, full,
incremental and compacting saves, by ENOSPC, EIO, a short write (then a full disk) and a
cancellation of the awaiting task. The two-writer tests interleave the saves of two
databases that loaded the same file, in one process and in two.
"""

from __future__ import annotations

import ast
import asyncio
import errno
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import picante
from picante import _format, _persist


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


ROOT = Path(__file__).resolve().parent.parent
KEYS = ("a", "b", "c", "d")
TIMEOUT = 10.0


@picante.database
class Notes:
    """Texts and their lengths: a loaded length that disagrees with its text is a mix."""

    @picante.input
    async def text(self, key: str) -> str: ...

    @picante.query
    async def length(self, key: str) -> int:
        return len(await self.text(key))


def set_state(db: Notes, name: str) -> dict[str, str]:
    """Set every key of *db* to a text naming state *name*, compute every length."""
    state = {key: f"{name}:{key}" for key in KEYS}
    with picante.batch(db):
        for key, text in state.items():
            db.text.set(key, text)
    return state


async def computed(db: Notes) -> None:
    for key in KEYS:
        await db.length(key)


async def state_in(path: Path) -> dict[str, str] | None:
    """The texts a fresh `Notes` loads from *path* (`None`: no file), lengths checked."""
    db = Notes()
    if not await picante.load(db, path):
        return None
    texts = {key: db.text.get(key) for key in KEYS}
    for key, text in texts.items():
        assert text is not None
        assert await db.length(key) == len(text)
    return {key: text for key, text in texts.items() if text is not None}


def files(directory: Path) -> dict[str, bytes]:
    """Every file in *directory* but the lock, by name: what a failed save must not change."""
    return {
        file.name: file.read_bytes()
        for file in sorted(directory.iterdir())
        if not file.name.endswith(".lock")
    }


# -- the saves under test: each sets up a directory and returns the save to fail ------------


@dataclass
class Setup:
    """A database about to save *after* over a cache holding *before* (`None`: no cache)."""

    db: Notes
    path: Path
    before: dict[str, str] | None
    after: dict[str, str]


async def first_save(directory: Path) -> Setup:
    """The first save to a path: a full file where there was none."""
    db = Notes()
    after = set_state(db, "new")
    await computed(db)
    return Setup(db, directory / "cache", None, after)


async def full_save(directory: Path) -> Setup:
    """Another database's save over a base and a log: a full file replaces both."""
    path = directory / "cache"
    old = Notes()
    set_state(old, "old")
    await computed(old)
    await picante.save(old, path)
    old.text.set("a", "logged")
    await picante.save(old, path)
    assert _format.log_path(path).exists()
    db = Notes()
    after = set_state(db, "new")
    await computed(db)
    return Setup(db, path, {**{k: f"old:{k}" for k in KEYS}, "a": "logged"}, after)


async def incremental_save(directory: Path, *, with_log: bool) -> Setup:
    """A save after one change: appended to the log (a new one unless *with_log*)."""
    path = directory / "cache"
    db = Notes()
    before = set_state(db, "old")
    await computed(db)
    await picante.save(db, path)
    if with_log:
        db.text.set("b", "logged")
        await picante.save(db, path)
        before["b"] = "logged"
    db.text.set("a", "changed")
    await computed(db)
    return Setup(db, path, before, {**before, "a": "changed"})


async def compacting_save(directory: Path) -> Setup:
    """A save once the log is past its share of the base: a new base, the log removed."""
    setup = await incremental_save(directory, with_log=True)
    state = _persist._persisted(_persist.view_of(setup.db))
    state.base_size = 1  # So the log is past half of it: this save compacts.
    return setup


SAVES: dict[str, Callable[[Path], Awaitable[Setup]]] = {
    "first": first_save,
    "full": full_save,
    "new log": lambda directory: incremental_save(directory, with_log=False),
    "append": lambda directory: incremental_save(directory, with_log=True),
    "compacting": compacting_save,
}


# -- fault injection -------------------------------------------------------------------------

OPS = ("open", "write", "fsync", "ftruncate", "fchmod", "link", "replace", "unlink", "flock")


class Faults:
    """Wraps `_format.ops`: counts each operation, and fails the *k*-th as *kind* says."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kind: str, k: int | None) -> None:
        self.kind = kind
        self.k = k
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.disk_full = False
        self.cancel: Callable[[], None] = lambda: None
        for name in OPS:
            monkeypatch.setattr(_format.ops, name, self.wrap(name, getattr(_format.ops, name)))

    def wrap(self, name: str, op: Callable[..., Any]) -> Callable[..., Any]:
        def faulty(*args: Any) -> Any:
            self.calls.append((name, args))
            if name == "write" and self.disk_full:
                raise OSError(errno.ENOSPC, "injected: disk full")
            if len(self.calls) != self.k:
                return op(*args)
            if self.kind == "cancel":
                # Cancel the task, and go on once the save knows (no sleeps).
                event = _format.abort.get()
                assert event is not None
                self.cancel()
                assert event.wait(TIMEOUT)
                return op(*args)
            if self.kind == "short":
                fd, data = args
                self.disk_full = True  # what a short write usually means
                return op(fd, data[: len(data) // 2])
            code = errno.ENOSPC if self.kind == "ENOSPC" else errno.EIO
            raise OSError(code, f"injected: {name}")

        return faulty


def after_commit(call: tuple[str, tuple[Any, ...]]) -> bool:
    """Whether *call* removes a file set aside: the save is complete by then."""
    name, args = call
    return name == "unlink" and str(args[0]).endswith(".old")


async def run_save(setup: Setup, faults: Faults) -> BaseException | None:
    """Save *setup*, with *faults* able to cancel it; what it raised (`None`: returned)."""
    task = asyncio.ensure_future(picante.save(setup.db, setup.path))
    loop = asyncio.get_running_loop()
    faults.cancel = lambda: loop.call_soon_threadsafe(task.cancel)
    done, _ = await asyncio.wait((task,), timeout=TIMEOUT)
    assert done, "the save hung"
    return task.exception() if not task.cancelled() else asyncio.CancelledError()


async def save_calls(name: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The file operations of the save *name*, counted on a dry run in *directory* (made)."""
    setup = await SAVES[name](directory)
    with monkeypatch.context() as patch:
        faults = Faults(patch, "none", None)
        assert await run_save(setup, faults) is None
    assert await state_in(setup.path) == setup.after
    return faults.calls


@pytest.mark.parametrize("kind", ["ENOSPC", "EIO", "short", "cancel"])
@pytest.mark.parametrize("name", list(SAVES))
async def test_failing_any_file_operation_leaves_the_files_unchanged(
    name: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failing the k-th file operation of a save, for every k, leaves every file as it was."""
    (tmp_path / "dry").mkdir()
    calls = await save_calls(name, tmp_path / "dry", monkeypatch)
    kinds = {call[0] for call in calls}
    assert {"open", "write", "fsync", "flock"} <= kinds
    tried = 0
    for k, call in enumerate(calls, 1):
        if kind == "short" and call[0] != "write":
            continue
        directory = tmp_path / str(k)
        directory.mkdir()
        setup = await SAVES[name](directory)
        before = files(directory)
        with monkeypatch.context() as patch:
            raised = await run_save(setup, Faults(patch, kind, k))
        tried += 1
        if after_commit(call):
            # Only a file set aside is left over; the save itself is complete.
            assert await state_in(setup.path) == setup.after
            continue
        expected = asyncio.CancelledError if kind == "cancel" else OSError
        assert isinstance(raised, expected), (k, call, raised)
        assert files(directory) == before, (k, call)
        assert await state_in(setup.path) == setup.before, (k, call)
        # The view does not believe the failed save happened: the next one writes it all.
        setup.db.text.set("d", "next")
        await asyncio.wait_for(picante.save(setup.db, setup.path), TIMEOUT)
        assert await state_in(setup.path) == {**setup.after, "d": "next"}
    assert tried > 0


async def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that writes only part of its bytes is continued: the save is whole."""
    real = _format.ops.write

    def one_byte(fd: int, data: bytes | memoryview) -> int:
        return real(fd, data[:1])

    monkeypatch.setattr(_format.ops, "write", one_byte)
    for number, make in enumerate((first_save, lambda d: incremental_save(d, with_log=True))):
        directory = tmp_path / str(number)
        directory.mkdir()
        setup = await make(directory)
        await picante.save(setup.db, setup.path)
        assert await state_in(setup.path) == setup.after


# -- cancellation ----------------------------------------------------------------------------


async def test_save_cancelled_by_wait_for_then_another_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save cancelled mid-write by `wait_for` leaves no trace; the next save's state wins."""
    setup = await full_save(tmp_path)
    before = files(tmp_path)
    real = _format.ops.write
    reached = threading.Event()

    def stalled(fd: int, data: bytes | memoryview) -> int:
        # The first write waits for the cancellation to reach the save.
        if not reached.is_set():
            reached.set()
            event = _format.abort.get()
            assert event is not None
            assert event.wait(TIMEOUT)
        return real(fd, data)

    monkeypatch.setattr(_format.ops, "write", stalled)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(picante.save(setup.db, setup.path), timeout=0.05)
    assert reached.is_set()
    assert files(tmp_path) == before
    second = set_state(setup.db, "second")
    await asyncio.wait_for(picante.save(setup.db, setup.path), timeout=TIMEOUT)
    assert await state_in(setup.path) == second


async def test_a_save_queued_behind_a_cancelled_one_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save started while a cancelled one still writes runs after it, and its state wins."""
    setup = await full_save(tmp_path)
    real = _format.ops.write
    started = threading.Event()
    go = threading.Event()

    def gated(fd: int, data: bytes | memoryview) -> int:
        if not started.is_set():
            started.set()
            assert go.wait(TIMEOUT)
        return real(fd, data)

    monkeypatch.setattr(_format.ops, "write", gated)
    first = asyncio.ensure_future(picante.save(setup.db, setup.path))
    assert await asyncio.to_thread(started.wait, TIMEOUT)
    first.cancel()
    second_state = set_state(setup.db, "second")
    second = asyncio.ensure_future(picante.save(setup.db, setup.path))
    go.set()
    await asyncio.wait_for(asyncio.wait((first, second)), timeout=TIMEOUT)
    assert first.cancelled()
    assert second.exception() is None
    assert await state_in(setup.path) == second_state


# -- two writers -----------------------------------------------------------------------------


async def test_two_databases_in_one_process_never_mix(tmp_path: Path) -> None:
    """Two databases that loaded one file and save in turn: the file is the last saver's."""
    path = tmp_path / "cache"
    await seeded(path)
    one, two = Notes(), Notes()
    assert await picante.load(one, path)
    assert await picante.load(two, path)
    expected: dict[str, str] = {}
    for step in range(6):
        writer = (one, two)[step % 2]
        # One key each time, so an append would be the natural save: never onto another's log.
        writer.text.set(KEYS[step % len(KEYS)], f"step {step}")
        await computed(writer)
        await picante.save(writer, path)
        expected = {key: writer.text.get(key) or "" for key in KEYS}
        assert await state_in(path) == expected
    # Concurrently: the lock orders them; the file is one of the two, whole.
    states = [set_state(one, "one"), set_state(two, "two")]
    await asyncio.wait_for(
        asyncio.gather(picante.save(one, path), picante.save(two, path)), TIMEOUT
    )
    assert await state_in(path) in states


WRITER = """\
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import picante
from tests.test_persist_faults import Notes, KEYS

async def main(name: str, path: Path) -> None:
    db = Notes()
    assert await picante.load(db, path)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range({rounds}):
        db.text.set(KEYS[i % len(KEYS)], f"{{name}} {{i}}")
        for key in KEYS:
            await db.length(key)
        await picante.save(db, path)
    print({{k: db.text.get(k) for k in KEYS}}, flush=True)

asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
"""


async def seeded(path: Path) -> None:
    """Save a database in state "seed" to *path*."""
    seed = Notes()
    set_state(seed, "seed")
    await computed(seed)
    await picante.save(seed, path)


def test_two_processes_never_mix(tmp_path: Path) -> None:
    """Two processes that loaded one file save over and over: the file is one's last state."""
    path = tmp_path / "cache"
    asyncio.run(seeded(path))
    script = WRITER.format(root=str(ROOT), rounds=40)
    writers = [
        subprocess.Popen(
            [sys.executable, "-u", "-c", script, name, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    finals: list[dict[str, str]] = []
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline() == "ready\n"
        for writer in writers:  # Both loaded: start them together.
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            out, err = writer.communicate(timeout=60)
            assert writer.returncode == 0, err
            finals.append(ast.literal_eval(out.strip()))
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    assert asyncio.run(state_in(path)) in finals


async def test_an_empty_log_left_by_a_crash_is_appended_to_with_its_header(tmp_path: Path) -> None:
    """A log a crash left empty (created, nothing written) gets the header with the next entry."""
    path = tmp_path / "notes.cache"
    db = Notes()
    set_state(db, "first")
    await computed(db)
    await picante.save(db, path)
    log = path.with_name(path.name + ".log")
    log.touch()  # as a SIGKILL right after the log's creation leaves it
    resumed = Notes()
    assert await picante.load(resumed, path)
    expected = set_state(resumed, "second")
    await picante.save(resumed, path)  # an incremental save: appended to the empty log
    assert log.read_bytes().startswith(b"PICALOG\n")
    assert await state_in(path) == expected
