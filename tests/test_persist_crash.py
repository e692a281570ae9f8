"""
Crash safety of `picante.save`: a process killed (SIGKILL) at random moments while it saves
over and over leaves a cache that loads, holding one whole saved state.

The child process (`child`) resumes from the cache, then loops: iteration `i` sets the
inputs to state `i` in one batch, computes `summary()`, saves to the same path and records
`i` in a progress file (not on its stdout: what a pipe holds when the child is killed
depends on timing, and lines read ahead by the parent were lost). After its first full
save each save appends to the log, until the log passes half the base and a save compacts
both into a new base, so kills land in full saves, in appends, in compactions, in loads
and in between.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import picante


ROOT = Path(__file__).resolve().parent.parent
KILLS = 60
SEED = 20_261_124
KEYS = range(8)
"""The keys whose text changes with the state: three of them are set, the others absent."""
BULK = range(100, 140)
"""Keys set to the same text in every state: they make the base larger than a log entry."""
BULK_TEXT = "lorem ipsum dolor sit amet " * 3


def keys_of(i: int) -> list[int]:
    """The keys of `KEYS` that have a text in state *i*."""
    return sorted({i % 8, (i // 8) % 8, (3 * i + 1) % 8})


def text_of(i: int, key: int) -> str:
    return f"{i}:{key}"


def summary_of(i: int) -> str:
    """What `summary()` returns in state *i*."""
    return f"{i}|" + ",".join(text_of(i, key) for key in keys_of(i))


@picante.database
class Ledger:
    """The database the child saves: `n()` is the state's number, `text(k)` its texts."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.log = [] if log is None else log

    @picante.input
    async def n(self) -> int: ...

    @picante.input
    async def text(self, key: int) -> str: ...

    @picante.query
    async def summary(self) -> str:
        self.log.append("summary()")
        i = await self.n()
        return f"{i}|" + ",".join([await self.text(key) for key in keys_of(i)])


def set_state(db: Ledger, i: int) -> None:
    """Set every input of *db* to state *i*, as one revision."""
    with picante.batch(db):
        db.n.set(i)
        for key in KEYS:
            if key in keys_of(i):
                db.text.set(key, text_of(i, key))
            else:
                db.text.remove(key)
        for key in BULK:
            db.text.set(key, BULK_TEXT)


def progress_of(cache: Path) -> Path:
    """The file the child appends the number of each state it saved to."""
    return cache.with_name("progress")


async def child(cache: Path) -> None:
    """The child's loop: resume from *cache*, then set, compute, save and record forever."""
    db = Ledger()
    i = await db.n() + 1 if await picante.load(db, cache, on_corrupt="error") else 0
    # Unbuffered writes: the kernel has each line once `write` returns, and keeps it when
    # the process is killed (SIGKILL loses no written data; only a power cut would).
    progress = os.open(progress_of(cache), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(progress, f"ready {i}\n".encode())
    print(f"ready {i}", flush=True)
    while True:
        set_state(db, i)
        assert await db.summary() == summary_of(i)
        await picante.save(db, cache)
        os.write(progress, f"{i}\n".encode())
        i += 1


def records_of(progress: Path) -> list[str]:
    """The whole lines the child recorded (the last one may be torn), and removes the file."""
    if not progress.exists():
        return []
    lines = progress.read_text().split("\n")[:-1]
    progress.unlink()
    return lines


CHILD = """\
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, {root!r})
from tests.test_persist_crash import child

asyncio.run(child(Path({cache!r})))
"""


async def saved_state(cache: Path) -> int | None:
    """
    Load *cache* into a new database and check it holds one whole state: return its number.

    `None` if there is no cache yet.
    """
    log: list[str] = []
    db = Ledger(log)
    if not await picante.load(db, cache, on_corrupt="error"):
        return None
    i = await db.n()
    for key in KEYS:
        assert db.text.get(key) == (text_of(i, key) if key in keys_of(i) else None)
    for key in BULK:
        assert db.text.get(key) == BULK_TEXT
    assert await db.summary() == summary_of(i)
    assert log == []  # the memo was saved with the inputs it read
    return i


def test_killed_at_random_moments(tmp_path: Path) -> None:
    """Each of many SIGKILLs leaves a cache holding the last state saved, or the one after."""
    cache = tmp_path / "cache"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), cache=str(cache)))
    rng = random.Random(SEED)
    state: int | None = None  # what the cache holds; the child resumes after it
    with_log = without_log = unreported = 0
    for _ in range(KILLS):
        with subprocess.Popen(
            [sys.executable, "-u", str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as process:
            assert process.stdout is not None
            if rng.random() < 0.2:
                # Right after the start: while it imports, loads, or saves for the first time.
                time.sleep(rng.uniform(0, 0.2))
            else:
                # A few saves in: each takes a millisecond or so. (Only to time the kill:
                # what was saved is read from the progress file.)
                assert process.stdout.readline().startswith(b"ready")
                time.sleep(rng.uniform(0, 0.012))
            process.send_signal(signal.SIGKILL)
            _, err = process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL, err.decode()
        lines = records_of(progress_of(cache))
        if lines:
            assert lines[0] == f"ready {0 if state is None else state + 1}", lines
        printed = [int(word) for word in lines[1:]]
        if printed:
            state = printed[-1]
        # A save that returned is on disk; one that had not returned may be too.
        has_log = cache.with_name("cache.log").exists()
        found = asyncio.run(saved_state(cache))
        if state is None:
            assert found in (None, 0)
        else:
            assert found in (state, state + 1)
        unreported += found != state
        state = found
        with_log += has_log
        without_log += cache.exists() and not has_log
    # Kills found the cache as a base alone, as a base and a log, and between a save
    # and its report.
    assert with_log > 0
    assert without_log > 0
    assert unreported > 0
    assert state is not None
    assert state > 10  # and the child made progress from kill to kill
