"""
What every scenario shares: optional peers, alternating timing, result rows and the table.

Timing. A scenario describes each contender as a *case*: an async function that performs
`n` operations and returns the nanoseconds they took, measured with `time.perf_counter_ns`
around the operations only (setup stays outside). `compare` first calibrates, per case,
how many operations fill a repetition of the target length (this also warms the
specializing interpreter), then runs several repetitions, all cases one after another in
each, alternating the order between repetitions so that drift hits every case alike. Each
repetition starts from `gc.collect()` and runs with the collector disabled, so every case
sees the same GC state. The figure reported is the median over the repetitions.
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import statistics
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias


if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import ModuleType


__all__ = [
    "PEERS",
    "Case",
    "Check",
    "Profile",
    "Row",
    "Sweep",
    "compare",
    "deep_recursion",
    "format_ns",
    "format_value",
    "load_peer",
    "peer_summary",
    "ratio_check",
    "render_table",
    "summary",
    "verify",
]

Case: TypeAlias = Callable[[int], Awaitable[int]]
"""`async def case(n) -> elapsed_ns`: perform *n* operations, return the time they took."""

# Display name -> (module to import, distribution name), in table column order.
PEERS: dict[str, tuple[str, str] | None] = {
    "async-lru": ("async_lru", "async-lru"),
    "plain": None,
    "observ": ("observ", "observ"),
    "reaktiv": ("reaktiv", "reaktiv"),
    "shiny": ("shiny.reactive", "shiny"),
    # The other ways to fan out, for `gather_fanout`: standard library, always there.
    "asyncio.gather": None,
    "loop": None,
}

_NOT_INSTALLED = "not installed"


def load_peer(name: str) -> ModuleType | None:
    """Import peer *name*'s module, or return None if it is not installed (never raises)."""
    spec = PEERS[name]
    if spec is None:
        msg = f"{name} is not an importable peer"
        raise ValueError(msg)
    try:
        return importlib.import_module(spec[0])
    except ImportError:
        return None


def peer_summary() -> str:
    """One line naming each importable peer with its version, or saying it is missing."""
    parts: list[str] = []
    for name, spec in PEERS.items():
        if spec is None:
            continue
        if load_peer(name) is None:
            parts.append(f"{name} {_NOT_INSTALLED}")
            continue
        try:
            version = importlib.metadata.version(spec[1])
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        parts.append(f"{name} {version}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Profile:
    """How hard to measure: the full run, or a tiny smoke run (`--quick`)."""

    quick: bool
    # Wall time one repetition of one case aims at.
    target_ns: int
    repetitions: int

    @classmethod
    def of(cls, *, quick: bool) -> Profile:
        if quick:
            return cls(quick=True, target_ns=300_000, repetitions=3)
        return cls(quick=False, target_ns=40_000_000, repetitions=9)


async def _timed(case: Case, n: int) -> int:
    """Run *case* for *n* operations with the collector off, from a collected heap."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return await case(n)
    finally:
        if enabled:
            gc.enable()


async def _calibrate(case: Case, target_ns: int, max_ops: int) -> int:
    """Return how many operations of *case* take about *target_ns*."""
    n = 1
    while True:
        elapsed = max(await _timed(case, n), 1)
        if elapsed * 8 >= target_ns or n >= max_ops:
            break
        n = min(max_ops, n * 8 if elapsed * 64 < target_ns else n * 2)
    return max(1, min(max_ops, round(n * target_ns / elapsed)))


async def compare(
    cases: Mapping[str, Case],
    profile: Profile,
    *,
    max_ops: int = 10_000_000,
) -> dict[str, float]:
    """
    Time every case alternately; return the median nanoseconds per operation of each.

    A case is `async def case(n) -> elapsed_ns` performing *n* operations.
    """
    ops = {name: await _calibrate(case, profile.target_ns, max_ops) for name, case in cases.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for repetition in range(profile.repetitions):
        order = names if repetition % 2 == 0 else names[::-1]
        for name in order:
            elapsed = await _timed(cases[name], ops[name])
            samples[name].append(elapsed / ops[name])
    return {name: statistics.median(values) for name, values in samples.items()}


@dataclass(frozen=True)
class Check:
    """One goal of a row: `ratio` (picante / reference) must be ≤ `limit` (or < if strict)."""

    goal: str
    ratio: float | None
    limit: float
    strict: bool = False
    # Why the ratio is missing, e.g. "reaktiv not installed".
    missing: str = ""

    @property
    def holds(self) -> bool | None:
        """True or False, or None when the reference could not be measured."""
        if self.ratio is None:
            return None
        return self.ratio < self.limit if self.strict else self.ratio <= self.limit


@dataclass(frozen=True)
class Row:
    """One measured figure of a scenario: picante and each applicable peer, in `unit`."""

    scenario: str
    picante: float
    # Peer display name -> its figure, or None when the peer is not installed.
    peers: dict[str, float | None]
    checks: Sequence[Check] = ()
    # What the figures count: "ns" (per operation), "bytes" (per object, for memory),
    # "objects" (a count per object) or "%" (a share).
    unit: str = "ns"


@dataclass(frozen=True)
class Sweep:
    """A scenario's cost against graph size, for a plot: each contender's figure per size."""

    # Scenario id ("p3"): also the name of the plot's file.
    scenario: str
    title: str
    xlabel: str
    ylabel: str
    sizes: tuple[int, ...]
    # Contender -> its figure (in `unit`) at each of `sizes`, in order; peers not installed
    # are absent.
    series: dict[str, tuple[float, ...]]
    # Peers that apply but are not installed.
    missing: tuple[str, ...] = ()
    # The goal as a line to draw, if it is one value: (figure in `unit`, label).
    goal: tuple[float, str] | None = None
    # Plot the time on a log scale too, if the figures span a decade (contenders that grow
    # apart by orders of magnitude).
    log_y: bool = False
    # What the figures are: "ns" per operation (drawn in µs), or "%" (a share, drawn as is).
    unit: str = "ns"


def ratio_check(
    goal: str,
    picante: float,
    reference: float | None,
    limit: float,
    *,
    strict: bool = False,
    missing: str = "",
) -> Check:
    """A check of `picante / reference` against *limit*; missing when *reference* is None."""
    ratio = None if reference is None else picante / reference
    return Check(goal, ratio, limit, strict=strict, missing=missing if reference is None else "")


def format_ns(ns: float) -> str:
    """Format a duration for the table: ns below 1 µs, µs below 1 ms, ms below 1 s, s above."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 10_000:
        return f"{ns / 1_000:.2f} µs"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def format_value(value: float, unit: str) -> str:
    """
    Format a figure of a row in its unit: a duration (`format_ns`), a byte count, a count
    of objects (two decimals: it is per memo), or a percentage.
    """
    if unit == "bytes":
        return f"{value:,.0f} B"
    if unit == "objects":
        return f"{value:,.2f}"
    if unit == "%":
        return f"{value:.1f} %"
    return format_ns(value)


def _format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def _format_holds(check: Check) -> str:
    holds = check.holds
    if holds is None:
        return f"n/a ({check.missing})" if check.missing else "n/a"
    return "✓" if holds else "✗"


def render_table(rows: Sequence[Row]) -> str:
    """The result table: scenario, picante, each peer, ratio, goal, and whether it holds."""
    peer_names = [name for name in PEERS if any(name in row.peers for row in rows)]
    header = ["scenario", "picante", *peer_names, "ratio", "goal", "ok"]
    right = {1, *range(2, 2 + len(peer_names)), 2 + len(peer_names)}
    lines: list[list[str]] = []
    for row in rows:
        cells = [row.scenario, format_value(row.picante, row.unit)]
        for name in peer_names:
            if name not in row.peers:
                cells.append("—")
            else:
                value = row.peers[name]
                cells.append(_NOT_INSTALLED if value is None else format_value(value, row.unit))
        checks: list[Check | None] = [*row.checks] or [None]
        for index, check in enumerate(checks):
            if index > 0:
                cells = [""] * (2 + len(peer_names))
            if check is None:
                cells += ["—", "—", ""]
            else:
                cells += [_format_ratio(check.ratio), check.goal, _format_holds(check)]
            lines.append(cells)
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        out = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def summary(rows: Sequence[Row]) -> str:
    """Count the goals that hold, fail, and could not be evaluated."""
    checks = [check for row in rows for check in row.checks]
    held = sum(check.holds is True for check in checks)
    failed = sum(check.holds is False for check in checks)
    unknown = sum(check.holds is None for check in checks)
    return f"goals: {held} hold, {failed} fail, {unknown} not evaluated (peer missing)"


class deep_recursion:  # noqa: N801 - used like a function: `with deep_recursion(10_000):`
    """Raise the recursion limit for a block (peers evaluate deep chains recursively)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.saved = 0

    def __enter__(self) -> None:
        self.saved = sys.getrecursionlimit()
        sys.setrecursionlimit(max(self.saved, self.limit))

    def __exit__(self, *exc: object) -> None:
        sys.setrecursionlimit(self.saved)


def verify(condition: bool, what: str) -> None:
    """Raise if a scenario's setup does not measure what it claims (survives `python -O`)."""
    if not condition:
        msg = f"benchmark setup is wrong: {what}"
        raise RuntimeError(msg)
