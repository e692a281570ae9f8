"""Shared fixtures: the recompute log, hypothesis profiles, and Redis servers."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.redis_server import RedisServer


if TYPE_CHECKING:
    from collections.abc import Iterator


# Three profiles (`HYPOTHESIS_PROFILE`), by how many examples each property test gets; the
# two memo-consistency machines get more (`test_properties.py`, `test_views_properties.py`):
# * dev, the default: a quick check while working (machines: 37 and 50 schedules);
# * ci, what `.ci/run` uses: the machines' 150 and 200 schedules (about a minute);
# * thorough, after a change to the engine: 2,000 schedules of each machine.
# The bugs the machines found are pinned by regression tests, which run in every profile.
settings.register_profile(
    "tests",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", parent=settings.get_profile("tests"), max_examples=25)
settings.register_profile("ci", parent=settings.get_profile("tests"), max_examples=100)
settings.register_profile("thorough", parent=settings.get_profile("tests"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def log() -> list[str]:
    """A list that query bodies append their call to: `words('a.md')`."""
    return []


def _running_server() -> Iterator[RedisServer]:
    """Start a Redis server in a directory of its own, yield it, stop it and clean up."""
    # Not pytest's tmp_path: a unix socket's path must stay under about 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="picante-redis-"))
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server for the whole session, on a unix socket (`tests/redis_server.py`)."""
    yield from _running_server()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A Redis server of the test's own, which it may kill and restart."""
    yield from _running_server()
