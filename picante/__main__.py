"""
`python -m picante inspect CACHEFILE [--json]`: summarize a cache file without its program.

Prints the database, revision and format, then one line per ingredient (kind, records,
bytes, fingerprints) and the log. A file that cannot be read gets one line saying why,
on standard error, and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ._errors import CacheError
from ._format import read_summary


if TYPE_CHECKING:
    from collections.abc import Sequence


_DESCRIPTION = "Summarize a picante cache file without the program that wrote it."


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
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m picante", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="summarize a cache file")
    inspect.add_argument("file", help="the cache file written by picante.save")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        summary = read_summary(args.file)
    except CacheError as error:
        print(f"picante inspect: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2) if args.json else _format(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
