"""
`python -m picante inspect CACHEFILE [--json] [--against MODULE:CLASS]`: summarize a cache
file without its program.

Prints the database, revision and format, then one line per ingredient (kind, records,
bytes, fingerprints) and the log. With `--against`, also what a `load` by that database
class would do with each section (kept, stale, dropped, and why). A file that cannot be
read gets one line saying why, on standard error, and exit status 1. When standard output
is closed early (`inspect ... | head -1`), it stops quietly with status 141, as a program
killed by SIGPIPE would.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ._errors import CacheError
from ._format import read_summary
from ._persist import load_plan


if TYPE_CHECKING:
    from collections.abc import Sequence


_DESCRIPTION = "Summarize a picante cache file without the program that wrote it."
_SIGPIPE_STATUS = 128 + 13
"""The status of a program killed by SIGPIPE, as shells report it."""


def _format(summary: dict[str, Any]) -> str:
    log = summary["log"]
    lines = [
        f"{summary['path']}: picante cache, format {summary['format']}, {summary['bytes']:,} bytes",
        f"database  {summary['database']}",
        f"revision  {summary['revision']}",
        "",
        # Records count the file and its log; bytes, the section in the file.
        f"{'ingredient':<24} {'kind':<9} {'records':>9} {'bytes':>11}  schema            code",
    ]
    lines.extend(
        f"{section['name']:<24} {section['kind']:<9} {section['records']:>9,} "
        f"{section['bytes']:>11,}  {section['schema']}  {section.get('code', '-')}"
        for section in summary["sections"]
    )
    entries = log["entries"]
    state = (
        "none"
        if not entries and not log["torn_tail"]
        else f"{entries} {'entry' if entries == 1 else 'entries'}"
    )
    details = [f"{log['bytes']:,} bytes"] if log["bytes"] else []
    if log["torn_tail"]:
        details.append("a torn last entry (ignored)")
    if log["ignored"]:
        details.append(f"ignored: {log['ignored']}")
    lines += ["", f"log       {state}" + (f" ({', '.join(details)})" if details else "")]
    against = summary.get("against")
    if against is not None:
        lines += ["", f"against   {against['class']}: a load would"]
        lines.extend(
            f"{section['name']:<24} {section['verdict']}"
            + (f" ({section['why']})" if section["why"] else "")
            for section in against["sections"]
        )
    return "\n".join(lines)


def _load_class(spec: str) -> type:
    """The database class *spec* (`MODULE:CLASS`, CLASS possibly dotted) names."""
    module_name, colon, qualname = spec.partition(":")
    if not colon or not module_name or not qualname:
        msg = f"--against {spec}: expected MODULE:CLASS"
        raise CacheError(msg)
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception as error:  # noqa: BLE001 - any failure to import is reported alike
        msg = f"--against {spec}: cannot import it ({type(error).__name__}: {error})"
        raise CacheError(msg) from None
    if not isinstance(found, type) or "__picante__" not in vars(found):
        msg = f"--against {spec}: not a @picante.database class"
        raise CacheError(msg)
    return found


def _against(path: str, spec: str) -> dict[str, object]:
    plan = load_plan(path, _load_class(spec))
    return {
        "class": spec,
        "sections": [
            {"name": name, "verdict": verdict, "why": why} for name, (verdict, why) in plan.items()
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m picante", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="summarize a cache file")
    inspect.add_argument("file", help="the cache file written by picante.save")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.add_argument(
        "--against",
        metavar="MODULE:CLASS",
        help="say which sections a load by this database class would keep or drop, and why",
    )
    args = parser.parse_args(argv)
    try:
        summary = read_summary(args.file)
        if args.against is not None:
            summary["against"] = _against(args.file, args.against)
    except CacheError as error:
        print(f"picante inspect: {error}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(summary, indent=2) if args.json else _format(summary))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): as Python's docs recommend, point stdout at
        # devnull so the interpreter's final flush does not fail again, and stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _SIGPIPE_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
