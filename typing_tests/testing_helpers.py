"""
Type-level tests of `picante.testing`: checked by mypy --strict and pyright strict, never run.

Each `assert_type` pins what the checkers infer; each `# type: ignore[code]` marks a line
that must stay an error.
"""

from __future__ import annotations

from typing import assert_type

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine

import picante


@picante.database
class Notes:
    @picante.input
    async def source(self, path: str) -> str:
        raise NotImplementedError

    @picante.query
    async def words(self, path: str) -> int:
        return len((await self.source(path)).split())


async def recording() -> None:
    db = Notes()
    with picante.testing.record(db) as log:
        await db.words("a")
    assert_type(log, picante.testing.Recording)
    assert_type(log.executed, list[str])
    assert_type(log.verified, frozenset[str])
    assert_type(log.runs, list[picante.debug.Executed])
    assert_type(log.runs[0].changed, bool)
    async with picante.testing.assert_nothing_runs(db) as quiet:
        await db.words("a")
    assert_type(quiet, picante.testing.Recording)
    log.executed.append(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def consistency() -> None:
    paths = st.sampled_from(["a.md", "b.md"])
    machine = picante.testing.consistency_machine(
        Notes,
        inputs={"source": (st.tuples(paths), st.text())},
        queries={"words": st.tuples(paths)},
        snapshots=False,
        timeout=1.0,
    )
    assert_type(machine, type[RuleBasedStateMachine])
    assert_type(
        picante.testing.check_consistency(
            Notes,
            inputs={"source": (("a.md",), st.text())},
            queries={"words": ("a.md",)},
            settings=settings(max_examples=5),
        ),
        None,
    )
    # A key is a tuple of arguments (or a strategy of them), not a bare value.
    picante.testing.check_consistency(
        Notes,
        inputs={"source": (st.tuples(paths), st.text())},
        queries={"words": "a.md"},  # type: ignore[dict-item]  # pyright: ignore[reportArgumentType]
    )
