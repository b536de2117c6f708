"""The event loop every watcher process runs on: uvloop (libuv's loop, in C) where it is
installed, asyncio's own otherwise (``WATCHER_EVENT_LOOP=asyncio`` chooses it anyway).

Delivery is bound by CPU on the one event-loop thread, and much of that CPU is the loop's
own scheduling and socket work: on uvloop a delivered webhook takes about a tenth fewer
instructions (callgrind, ``benchmarks.delivery``'s drain). Everything watcher runs (anyio,
aiohttp, asyncpg, aiosqlite's thread, uvicorn, APScheduler's asyncio scheduler) runs on
either. uvloop is imported only when a loop starts: a command that runs none does not load it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

import anyio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

CHOICE = "WATCHER_EVENT_LOOP"  # "uvloop" (the default where installed) or "asyncio"


def uses_uvloop() -> bool:
    """Whether loops started here run on uvloop."""
    if os.environ.get(CHOICE, "").strip().lower() == "asyncio":
        return False
    return importlib.util.find_spec("uvloop") is not None


def backend_options() -> dict[str, bool]:
    """anyio's options for the asyncio backend: uvloop when :func:`uses_uvloop`."""
    return {"use_uvloop": uses_uvloop()}


def run(func: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    """``anyio.run(func, *args)`` on watcher's event loop."""
    return anyio.run(func, *args, backend="asyncio", backend_options=backend_options())
