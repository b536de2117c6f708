"""The one way the tests wait for something another task or process does."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

import anyio

Check = Callable[[], bool] | Callable[[], Awaitable[bool]]


async def wait_until(
    check: Check,
    *,
    within: float = 10.0,
    what: str = "the condition",
    every: float = 0.02,
    diagnose: Callable[[], object] | None = None,
) -> float:
    """Poll ``check`` (plain or async) until it holds; returns the seconds it took.

    Peers change state in other tasks and processes with no event to await, so polling is
    the honest way to watch them. Past ``within`` the test fails with ``what`` and, when
    given, ``diagnose()``: what is still missing.
    """
    start = time.monotonic()
    with anyio.move_on_after(within):
        while True:
            held = check()
            if inspect.isawaitable(held):
                held = await held
            if held:
                return time.monotonic() - start
            await anyio.sleep(every)
    detail = f": {diagnose()}" if diagnose is not None else ""
    raise AssertionError(f"timed out after {within}s waiting for {what}{detail}")
