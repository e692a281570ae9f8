"""Shared fixtures: the recompute log, and hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings


settings.register_profile(
    "tests",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("fast", parent=settings.get_profile("tests"), max_examples=20)
settings.register_profile("thorough", parent=settings.get_profile("tests"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tests"))


@pytest.fixture
def log() -> list[str]:
    """A list that query bodies append their call to: `words('a.md')`."""
    return []
