"""Check the sdist and the wheel that `python -m build` wrote to DIST (the only argument).

The wheel must have `picante/py.typed` and the license. The sdist must have the license
and every file git tracks, except those left out on purpose (`LEFT_OUT`): the tests read
`examples/` and import `benchmarks/`, and an unpacked sdist's tests must pass.
"""

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


# Tracked files the sdist leaves out on purpose: the docs site and CI's own scripts.
LEFT_OUT = ("docs/", "mkdocs.yml", ".ci/")

dist = Path(sys.argv[1])
(sdist,) = dist.glob("picante-*.tar.gz")
(wheel,) = dist.glob("picante-*.whl")
problems = []

with zipfile.ZipFile(wheel) as archive:
    in_wheel = set(archive.namelist())
problems += [
    f"{wheel.name}: no {name}"
    for name in ("picante/py.typed", "picante/__init__.py")
    if name not in in_wheel
]
if not any(name.endswith(".dist-info/licenses/LICENSE") for name in in_wheel):
    problems.append(f"{wheel.name}: no LICENSE in its .dist-info/licenses/")

with tarfile.open(sdist) as archive:
    # Each member is under `picante-<version>/`.
    in_sdist = {name.partition("/")[2] for name in archive.getnames()}
root = Path(__file__).parent.parent
tracked = subprocess.run(
    ["git", "ls-files"], check=True, capture_output=True, text=True, cwd=root
).stdout.splitlines()
problems += [
    f"{sdist.name}: no {name}"
    for name in ["LICENSE", "PKG-INFO", *tracked]
    if name not in in_sdist and not name.startswith(LEFT_OUT)
]

if problems:
    sys.exit("\n".join(problems))
print(f"{sdist.name}: {len(in_sdist)} files; {wheel.name}: {len(in_wheel)} files; all there")
