"""One sink's share of a dispatcher pass, pipelined: the messages are sent by ``slots``
workers while the store claims the next ones and records the accepted ones, in one
transaction for both, so that no slot waits for a commit.

- A message is sent only once claimed; it is claimed a little ahead (the next claim starts
  when half a claim's worth is left to send), with a lease of as many turns as sends may go
  before it in a slot (``turns``): a live replica never has a delivery it is about to send
  taken from it.
- What the sink accepted is recorded with the next claim, or on its own once enough has
  piled up with no claim coming, and whatever is left when the pass ends or is cut short
  (a stop, a reload, a store error) is recorded then: accepted messages are not sent
  again, except after a crash (at-least-once, same transition id).
- A pass holds at most one message per (job, sink) (the outbox gives out no delivery that
  waits behind an earlier one), so the order of sends within it does not matter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from watcher.model.outbox import PendingDelivery

Group = list[PendingDelivery]
# (groups to claim, turns of the lease, accepted deliveries to record) -> the groups claimed
Claim = Callable[[list[Group], int, list[PendingDelivery]], Awaitable[list[Group]]]
Send = Callable[[Group], Awaitable[bool]]  # True: the sink accepted the message
Record = Callable[[list[PendingDelivery]], Awaitable[None]]


class Flow:
    def __init__(
        self,
        groups: list[Group],
        *,
        slots: int,
        per_claim: int,
        claim: Claim,
        send: Send,
        record: Record,
    ) -> None:
        self.todo: deque[Group] = deque(groups)  # read, not claimed yet
        self.ready: deque[Group] = deque()  # claimed, not sent yet
        self.accepted: list[PendingDelivery] = []  # accepted, not recorded yet
        self.slots = max(1, slots)
        self.per_claim = max(1, per_claim)
        self.busy = 0  # messages being sent
        self.claiming = False
        self._claim, self._send, self._record = claim, send, record
        self._changed = anyio.Event()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(min(self.slots, len(self.todo))):
                    tg.start_soon(self._worker)
                await self._store()
        finally:
            # Even when the pass is cut short: what the sink accepted is recorded.
            done, self.accepted = self.accepted, []
            await self._record(done)

    def _low(self) -> bool:
        """Few enough messages wait claimed that the next claim is due: it commits while
        those are sent (and takes along what the sink accepted meanwhile)."""
        return len(self.ready) <= self.per_claim // 2

    def _piled_up(self) -> bool:
        """Enough accepted messages wait to be recorded that they go on their own: no claim
        is coming to take them along soon."""
        if self.todo:
            return len(self.accepted) >= 2 * self.per_claim
        return len(self.accepted) >= self.per_claim

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _store(self) -> None:
        failure: Exception | None = None
        while True:
            claiming = bool(self.todo) and self._low()
            if failure is None and (claiming or self._piled_up()):
                take = min(self.per_claim, len(self.todo)) if claiming else 0
                chunk = [self.todo.popleft() for _ in range(take)]
                done, self.accepted = self.accepted, []
                turns = -(-(self.busy + len(self.ready) + len(chunk)) // self.slots)
                self.claiming = True
                try:
                    self.ready.extend(await self._claim(chunk, turns, done))
                except BaseException as exc:
                    self.accepted[:0] = done  # not recorded: run's finally tries again
                    if not isinstance(exc, Exception):
                        raise
                    # No more claims; what is claimed is still sent, then the error raised.
                    failure = exc
                    self.todo.clear()
                finally:
                    self.claiming = False
                    self._notify()
                continue
            if not self.todo and not self.ready and not self.busy:
                break
            await self._changed.wait()
        if failure is not None:
            raise failure

    async def _worker(self) -> None:
        while True:
            if self.ready:
                group = self.ready.popleft()
                self.busy += 1
                if self.todo and self._low():
                    self._notify()  # time to claim the next ones
                try:
                    if await self._send(group):
                        self.accepted.extend(group)
                finally:
                    self.busy -= 1
                    if self._piled_up() or not (self.busy or self.ready):
                        self._notify()
                continue
            if not self.todo and not self.claiming:
                return
            await self._changed.wait()
