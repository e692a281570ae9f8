"""Smoke runs of the benchmark suite at tiny sizes, so it never rots; no goal is asserted."""

from __future__ import annotations

import functools
import gc
import importlib.util
import math
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from benchmarks import SCENARIOS, SWEEPS, gc_freeze, watch_memory
from benchmarks.__main__ import main
from benchmarks._harness import Row, Sweep, render_table


if TYPE_CHECKING:
    from collections.abc import Iterator


# The peers each scenario reports (in one row or another), whether installed or not.
EXPECTED_PEERS = {
    "p1": {"async-lru", "plain"},
    "p2": {"async-lru", "plain"},
    "p3": {"plain", "observ", "reaktiv"},
    "p4": {"observ", "reaktiv"},
    "p5": {"plain", "observ", "reaktiv", "shiny"},
    "p6": {"async-lru", "plain"},
    "p7": set(),
    "p8": {"observ", "reaktiv", "shiny"},
    "p9": {"plain"},
    "p10": {"async-lru", "plain"},
    "p11": {"observ", "reaktiv"},
    "p12": {"plain"},
    "p13": {"plain"},
    "gather": {"asyncio.gather", "loop"},
}
# The units of each scenario's rows, when not nanoseconds per operation: P8 counts bytes
# per object; P11 mixes times, bytes and GC-tracked objects per memo, and a GC share.
UNITS = {"p8": {"bytes"}, "p11": {"ns", "bytes", "objects", "%"}}
# The scenarios plotted against graph size by `--plot`, and the unit of each plot's y axis.
PLOTTED = {"p3", "p4", "p7", "p11"}
Y_UNIT = {"p11": "%"}
# Rows whose figures are differences of two timings (P6: a waiter minus the bare task): on
# a busy machine they can come out at or below zero, so they need only be finite.
DIFFERENCE = "above the task"
MODULES = {"observ": "observ", "reaktiv": "reaktiv", "async-lru": "async_lru", "shiny": "shiny"}
PNG = b"\x89PNG\r\n\x1a\n"


def _installed(peer: str) -> bool:
    # The standard library's contenders are always there.
    builtin = {"plain", "asyncio.gather", "loop"}
    return peer in builtin or importlib.util.find_spec(MODULES[peer]) is not None


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@pytest.fixture(autouse=True)
def _frozen_heap() -> Iterator[None]:
    """
    Keep what exists before each test (pytest, hypothesis, the peers' modules) out of the
    collector: the harness collects before every timed repetition, and traversing that
    heap again each time would be most of a smoke run's time.
    """
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@functools.cache
def _quick_rows(scenario: str) -> list[Row]:
    """The rows of a quick run of *scenario*, measured once for all the tests below."""
    return SCENARIOS[scenario](quick=True)


@functools.cache
def _quick_sweep(scenario: str) -> Sweep:
    """A quick sweep of *scenario*, measured once for all the tests below."""
    return SWEEPS[scenario](quick=True)


def test_every_scenario_is_registered() -> None:
    """The suite offers exactly the scenarios implemented so far, by id."""
    assert set(SCENARIOS) == set(EXPECTED_PEERS)
    assert set(SWEEPS) == PLOTTED


@pytest.mark.parametrize("scenario", sorted(EXPECTED_PEERS))
def test_scenario_quick_run(scenario: str) -> None:
    """A quick run returns rows with positive figures for picante and every installed peer."""
    rows = _quick_rows(scenario)
    assert rows
    reported: set[str] = set()
    for row in rows:
        assert isinstance(row, Row)
        assert row.scenario.upper().startswith(scenario.upper() + " ")
        assert row.unit in UNITS.get(scenario, {"ns"})
        valid = _finite if DIFFERENCE in row.scenario else _positive
        assert valid(row.picante)
        assert set(row.peers) <= EXPECTED_PEERS[scenario]
        reported |= set(row.peers)
        for peer, value in row.peers.items():
            if _installed(peer):
                assert valid(value), (peer, value)
            else:
                assert value is None, (peer, value)
        for check in row.checks:
            assert check.goal
            assert check.ratio is None or valid(check.ratio)
    assert reported == EXPECTED_PEERS[scenario]
    assert any(row.checks for row in rows)
    table = render_table(rows)
    assert "picante" in table
    assert (" B" in table) == any(row.unit == "bytes" for row in rows)


def test_single_flight_runs_each_key_once() -> None:
    """P6 counts executions over every timed key: exactly one each, so its check holds."""
    rows = _quick_rows("p6")
    checks = {check.goal: check for row in rows for check in row.checks}
    assert checks["exactly 1 execution per key"].ratio == 1.0
    assert checks["exactly 1 execution per key"].holds is True


def test_command_line_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks p1 --quick` prints the table with its header and the goal column."""
    assert main(["p1", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "scenario" in out
    assert "goal" in out
    assert "P1 cached hit" in out


@pytest.mark.parametrize("scenario", sorted(PLOTTED))
def test_sweep_quick_run(scenario: str) -> None:
    """A quick sweep gives, for picante and each installed peer, a positive time per size."""
    sweep = _quick_sweep(scenario)
    assert isinstance(sweep, Sweep)
    assert sweep.scenario == scenario
    assert sweep.title
    assert sweep.xlabel
    assert sweep.ylabel
    assert len(sweep.sizes) >= 3
    assert list(sweep.sizes) == sorted(set(sweep.sizes))
    assert "picante" in sweep.series
    peers = EXPECTED_PEERS[scenario] - {"plain"}
    assert set(sweep.series) - {"picante", "plain"} == {p for p in peers if _installed(p)}
    assert set(sweep.missing) == {p for p in peers if not _installed(p)}
    for values in sweep.series.values():
        assert len(values) == len(sweep.sizes)
        assert all(_positive(value) for value in values)
    assert sweep.goal is None or _positive(sweep.goal[0])
    # Only P4's contenders grow apart by orders of magnitude (reaktiv grows with depth).
    assert sweep.log_y == (scenario == "p4")
    assert sweep.unit == Y_UNIT.get(scenario, "ns")


class _Recorder:
    """Stands in for a matplotlib figure or axes: records every method called on it."""

    def __init__(self, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]], name: str):
        self._calls = calls
        self._name = name

    def __getattr__(self, attribute: str) -> _Recorder:
        return _Recorder(self._calls, f"{self._name}.{attribute}")

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._calls.append((self._name, args, kwargs))
        if self._name == "figure.savefig":
            Path(args[0]).write_bytes(PNG)


def _fake_matplotlib(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Install a matplotlib that records the drawing calls (deterministic, nothing drawn)."""
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    pyplot = types.ModuleType("matplotlib.pyplot")
    pyplot.subplots = lambda **_: (_Recorder(calls, "figure"), _Recorder(calls, "axes"))  # type: ignore[attr-defined]
    pyplot.close = _Recorder(calls, "pyplot.close")  # type: ignore[attr-defined]
    matplotlib = types.ModuleType("matplotlib")
    matplotlib.use = _Recorder(calls, "matplotlib.use")  # type: ignore[attr-defined]
    matplotlib.pyplot = pyplot  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "matplotlib", matplotlib)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", pyplot)
    return calls


def test_plot_writes_one_png_per_sweep(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--plot DIR` draws each sweep on log-scale x, with title and axis labels, into DIR."""
    calls = _fake_matplotlib(monkeypatch)
    asked: list[tuple[str, bool]] = []

    def measured(scenario: str) -> Any:
        def sweep(*, quick: bool = False) -> Sweep:
            asked.append((scenario, quick))
            return _quick_sweep(scenario)

        return sweep

    for scenario in PLOTTED:
        monkeypatch.setitem(SWEEPS, scenario, measured(scenario))
    directory = tmp_path / "img"
    assert main(["--quick", "--plot", str(directory)]) == 0
    order = ["p3", "p4", "p7", "p11"]
    assert asked == [(scenario, True) for scenario in order]
    pngs = [f"{scenario}.png" for scenario in order]
    assert sorted(path.name for path in directory.iterdir()) == sorted(pngs)
    assert ("matplotlib.use", ("Agg",), {}) in calls

    def called(name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for call, args, kwargs in calls if call == name]

    assert [args for args, _ in called("axes.set_xscale")] == [("log",)] * 4
    for method in ("axes.set_title", "axes.set_xlabel", "axes.set_ylabel"):
        texts = [args[0] for args, _ in called(method)]
        assert len(texts) == 4
        assert all(isinstance(text, str) and text for text in texts)
    ylabels = [args[0] for args, _ in called("axes.set_ylabel")]
    for scenario, ylabel in zip(order, ylabels, strict=True):
        assert f"({Y_UNIT.get(scenario, 'µs')})" in ylabel
    labels = [kwargs["label"] for _, kwargs in called("axes.plot")]
    assert labels.count("picante") == 4
    assert len(called("axes.legend")) == 4
    saved = [Path(args[0]) for args, _ in called("figure.savefig")]
    assert saved == [directory / png for png in pngs]
    assert len(called("pyplot.close")) == 4
    out = capsys.readouterr().out
    for path in saved:
        assert str(path) in out


def test_plot_without_matplotlib_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without matplotlib, `--plot` exits 1 at once, saying what to install; nothing is made."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    directory = tmp_path / "img"
    assert main(["--quick", "--plot", str(directory)]) == 1
    captured = capsys.readouterr()
    assert "--plot needs matplotlib" in captured.err
    assert "--group benchmarks" in captured.err
    assert captured.out == ""
    assert not directory.exists()


def test_plot_rejects_a_scenario_without_a_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the plotted scenarios can be named with `--plot`."""
    with pytest.raises(SystemExit) as exit_info:
        main(["p1", "--plot", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no plot for p1" in capsys.readouterr().err


def test_watch_memory_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    """
    `python -m benchmarks.watch_memory --quick` (a stand-alone study, not a scenario) runs
    both watch loops to the end, and the one that sweeps ends with fewer memos.
    """
    assert watch_memory.main(["--quick"]) == 0
    out = capsys.readouterr().out.splitlines()
    rule = next(index for index, line in enumerate(out) if line.startswith("----"))
    rows = [line.split() for line in out[rule + 1 : out.index("", rule)]]
    assert [row[0] for row in rows] == [str(edit) for edit in range(0, 101, 10)]
    first, last = rows[0], rows[-1]
    # edit, files, then memos, input cells, traced MB and ms per edit: without, with sweep.
    assert first[2] == first[3]  # nothing to sweep yet
    assert int(last[3]) < int(last[2])
    assert int(last[5]) < int(last[4])
    assert out[-1].startswith("summaries equal after every edit")


def test_gc_freeze_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    """
    `python -m benchmarks.gc_freeze --quick` (a stand-alone study) runs every run to the end;
    a frozen database, dropped, is freed only once unfrozen.
    """
    assert gc_freeze.main(["--quick"]) == 0
    out = capsys.readouterr().out.splitlines()
    rule = next(index for index, line in enumerate(out) if line.startswith("----"))
    rows = {
        line.split()[0]: line.split() for line in out[rule + 1 : rule + 1 + len(gc_freeze.RUNS)]
    }
    assert list(rows) == list(gc_freeze.RUNS)
    # The last four columns: found and freed with the database dropped, frozen then not.
    assert rows["default"][-4] != "0"
    assert rows["freeze"][-4] == "0"
    assert rows["freeze"][-2] != "0"


def test_analyze_tree_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    """The analyzer benchmark runs (200 files, once) and prints its two tables."""
    from benchmarks import analyze_tree

    analyze_tree.main(["--quick"])
    out = capsys.readouterr().out
    assert out.startswith("generated tree: 201 files, ")
    assert "\npicante/: " in out
    assert out.count("| restart (lru_cache: cold) |") == 2
