"""Shared fixtures: the recompute log, and hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings


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
