"""A source's request budget (``max_requests_per_minute``): never more than that many HTTP
requests in any 60 seconds, spread evenly over the cycles.

Two mechanisms, because they answer two questions:

- a sliding window over the last 60 s is the hard limit: every HTTP request (each page,
  each retry) takes a place in it, and waits for one when it is full, so the API never sees
  more than the budget per minute whatever the cycle does (a full listing is paced);
- a credit refilled at ``per_minute / 60`` per second is what a steady cycle plans with. It
  holds at most one interval's share (a whole minute's for intervals of a minute or more),
  so that a cycle every 30 s gets half the budget each time, instead of one cycle spending
  most of the minute and the next finding the window full.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from watcher.sources.mistral import ApiClient

WINDOW = 60.0


class RequestBudget:
    def __init__(
        self,
        per_minute: int,
        *,
        interval: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()  # when each request of the last WINDOW went out
        self._cap = max(1.0, per_minute * min(interval, WINDOW) / WINDOW)
        self._credit = self._cap
        self._credited_at: float | None = None

    def _forget(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - WINDOW:
            self._sent.popleft()

    def _refill(self, now: float) -> None:
        if self._credited_at is not None:
            earned = (now - self._credited_at) * self.per_minute / WINDOW
            self._credit = min(self._cap, self._credit + max(0.0, earned))
        self._credited_at = now

    def allowance(self) -> int:
        """Requests a cycle starting now may plan: the credit, within the window's room."""
        now = self._clock()
        self._refill(now)
        self._forget(now)
        room = self.per_minute - len(self._sent)
        return max(0, min(math.floor(self._credit), room))

    async def acquire(self) -> None:
        """Take a place for one request, waiting while the last minute is full."""
        now = self._clock()
        self._forget(now)
        while len(self._sent) >= self.per_minute:
            await self._sleep(max(0.0, self._sent[0] + WINDOW - now))
            now = self._clock()
            self._forget(now)
        self._refill(now)
        self._sent.append(now)
        self._credit -= 1.0


class BudgetedApiClient(ApiClient):
    """An :class:`ApiClient` whose every HTTP attempt takes a place in a
    :class:`RequestBudget` first: the first one before :meth:`get_json` starts, each retry
    after its backoff (the only thing the client's ``sleep`` is used for). The place is
    taken just before the request is sent, not after (a refused request still counts)."""

    def __init__(
        self,
        budget: RequestBudget,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        **kwargs: Any,
    ) -> None:
        async def backoff_then_acquire(seconds: float) -> None:
            await sleep(seconds)
            await budget.acquire()

        super().__init__(sleep=backoff_then_acquire, **kwargs)
        self.budget = budget

    async def get_json(self, path: str, params: Mapping[str, Any], *, route: str) -> Any:
        await self.budget.acquire()
        return await super().get_json(path, params, route=route)
