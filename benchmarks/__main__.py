"""
`python -m benchmarks [p1 p2 …] [--quick] [--plot DIR]`: run scenarios and print the
result table, or, with `--plot DIR`, measure the plotted scenarios at several graph sizes
and write one PNG per scenario into DIR.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from . import SCENARIOS, SWEEPS
from ._harness import Profile, Row, peer_summary, render_table, summary


def _header(profile: Profile, *, quick: bool) -> None:
    print(
        f"picante benchmarks ({'quick' if quick else 'full'}: median of "
        f"{profile.repetitions} repetitions of ~{profile.target_ns / 1e6:g} ms per contender)"
    )
    implementation = platform.python_implementation()
    print(f"Python {platform.python_version()} ({implementation}), {platform.machine()}")
    print(f"peers: {peer_summary()}")
    print(flush=True)


def _plot(parser: argparse.ArgumentParser, ids: list[str], directory: Path, *, quick: bool) -> int:
    from ._plot import MissingMatplotlibError, load_pyplot, render_sweep, write_plot

    try:
        pyplot = load_pyplot()
    except MissingMatplotlibError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    _header(Profile.of(quick=quick), quick=quick)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for scenario in ids:
        began = time.perf_counter()
        print(f"sweeping {scenario} …", end=" ", file=sys.stderr, flush=True)
        sweep = SWEEPS[scenario](quick=quick)
        path = write_plot(sweep, directory, pyplot)
        print(f"{time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
        print(f"{scenario}: {sweep.ylabel} against {sweep.xlabel} → {path}")
        print(render_sweep(sweep))
        print(flush=True)
    print(f"{len(ids)} plots; {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure picante against its peers (the goals of BENCHMARKS.md).",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="ID",
        help=f"scenario ids to run (default: all): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--plot",
        metavar="DIR",
        type=Path,
        help=(
            "instead of the table, measure cost against graph size and write one PNG per "
            f"scenario into DIR ({', '.join(SWEEPS)}; needs matplotlib)"
        ),
    )
    args = parser.parse_args(argv)
    known = SWEEPS if args.plot is not None else SCENARIOS
    ids = [scenario.lower() for scenario in args.scenarios] or list(known)
    unknown = [scenario for scenario in ids if scenario not in known]
    if unknown:
        what = "plot for" if args.plot is not None else "scenario"
        parser.error(f"no {what} {', '.join(unknown)}; known: {', '.join(known)}")
    if args.plot is not None:
        return _plot(parser, ids, args.plot, quick=args.quick)

    profile = Profile.of(quick=args.quick)
    _header(profile, quick=args.quick)
    rows: list[Row] = []
    started = time.perf_counter()
    for scenario in ids:
        began = time.perf_counter()
        print(f"running {scenario} …", end=" ", file=sys.stderr, flush=True)
        rows += SCENARIOS[scenario](quick=args.quick)
        print(f"{time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    print(render_table(rows))
    print("ratio: picante / the goal's reference (a peer, a shallower depth, or the budget)")
    print()
    print(f"{summary(rows)}; {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
