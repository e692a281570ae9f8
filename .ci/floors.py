"""Print pip constraints that pin each runtime dependency to its floor: `attrs==24.3`.

CI installs the tests with them (`pip install -c`), so the floors in pyproject.toml are tested.
Every dependency must have a `>=` floor and nothing else (no markers, extras or upper bounds),
so that the pin is the lowest version the project allows. The optional extras' dependencies
(`redis` for `picante[redis]`) are pinned too: the tests install and use them.
"""

import re
import sys
import tomllib
from pathlib import Path


FLOOR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([0-9][0-9A-Za-z.]*)$")

pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
extras = pyproject["project"].get("optional-dependencies", {})
for requirement in [
    *pyproject["project"]["dependencies"],
    *(requirement for extra in extras.values() for requirement in extra),
]:
    match = FLOOR.match(requirement)
    if match is None:
        sys.exit(f"floors.py: {requirement!r} is not of the form 'name>=version'")
    print(f"{match[1]}=={match[2]}")
