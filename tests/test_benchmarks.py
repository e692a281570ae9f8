"""Smoke runs of the benchmark suite at tiny sizes, so it never rots; no goal is asserted."""

from __future__ import annotations

import importlib.util
import math

import pytest

from benchmarks import SCENARIOS
from benchmarks.__main__ import main
from benchmarks._harness import Row, render_table


# The peers each scenario reports, whether installed or not.
EXPECTED_PEERS = {
    "p1": {"async-lru", "plain"},
    "p2": {"async-lru", "plain"},
    "p3": {"plain", "observ", "reaktiv"},
    "p4": {"observ", "reaktiv"},
    "p7": set(),
}
MODULES = {"observ": "observ", "reaktiv": "reaktiv", "async-lru": "async_lru"}


def _installed(peer: str) -> bool:
    return peer == "plain" or importlib.util.find_spec(MODULES[peer]) is not None


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def test_every_scenario_is_registered() -> None:
    """The suite offers exactly the scenarios implemented so far, by id."""
    assert set(SCENARIOS) == set(EXPECTED_PEERS)


@pytest.mark.parametrize("scenario", sorted(EXPECTED_PEERS))
def test_scenario_quick_run(scenario: str) -> None:
    """A quick run returns rows with positive times for picante and every installed peer."""
    rows = SCENARIOS[scenario](quick=True)
    assert rows
    for row in rows:
        assert isinstance(row, Row)
        assert row.scenario.upper().startswith(scenario.upper())
        assert _positive(row.picante)
        assert set(row.peers) == EXPECTED_PEERS[scenario]
        for peer, value in row.peers.items():
            if _installed(peer):
                assert _positive(value), (peer, value)
            else:
                assert value is None, (peer, value)
        for check in row.checks:
            assert check.goal
            assert check.ratio is None or _positive(check.ratio)
    assert "picante" in render_table(rows)


def test_command_line_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks p1 --quick` prints the table with its header and the goal column."""
    assert main(["p1", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "scenario" in out
    assert "goal" in out
    assert "P1 cached hit" in out
