"""`python -m benchmarks [p1 p2 …] [--quick]`: run scenarios and print the result table."""

from __future__ import annotations

import argparse
import platform
import sys
import time

from . import SCENARIOS
from ._harness import Profile, Row, peer_summary, render_table, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure picante against its peers (goals P1-P4 of BENCHMARKS.md).",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="ID",
        help=f"scenario ids to run (default: all): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    ids = [scenario.lower() for scenario in args.scenarios] or list(SCENARIOS)
    unknown = [scenario for scenario in ids if scenario not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")

    profile = Profile.of(quick=args.quick)
    print(
        f"picante benchmarks ({'quick' if args.quick else 'full'}: median of "
        f"{profile.repetitions} repetitions of ~{profile.target_ns / 1e6:g} ms per contender)"
    )
    implementation = platform.python_implementation()
    print(f"Python {platform.python_version()} ({implementation}), {platform.machine()}")
    print(f"peers: {peer_summary()}")
    print(flush=True)
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
