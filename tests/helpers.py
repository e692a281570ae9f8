"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from collections.abc import Callable


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until *condition* holds: a state check, never a timed sleep."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    msg = "condition never held"
    raise AssertionError(msg)
