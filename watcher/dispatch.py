"""The dispatcher: sends pending deliveries from the outbox to their sinks.

Per (transition, sink): attempts and ``next_attempt_at`` are persisted; a retryable
failure waits an exponential backoff with jitter (never less than the peer's
``Retry-After``); a final failure, or a retryable one older than ``max_age``, moves the
delivery to dead-letter. A delivery is marked delivered only after the sink accepted it, so
a crash at any point re-sends with the same transition id rather than losing it.

Order per job and sink is kept: a later transition of a job is not sent to a sink before
an earlier one was delivered there (or given up).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

import anyio
import structlog

from watcher.abc import PendingDelivery, Sink, Store
from watcher.config import DeliveryConfig
from watcher.exceptions import DeliveryError
from watcher.retry import backoff

log = structlog.get_logger(__name__)

BATCH = 1000  # pending rows read per pass
IDLE_WAIT = 1.0  # seconds between passes when nothing is due and nobody woke us


class Dispatcher:
    def __init__(
        self,
        store: Store,
        sinks: Mapping[str, Sink],
        config: DeliveryConfig,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        batch: int = BATCH,
    ) -> None:
        self.store = store
        self.sinks = dict(sinks)
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.batch = batch
        self._wake = anyio.Event()

    def wake(self) -> None:
        """New deliveries are pending: start a pass now rather than at the next tick."""
        self._wake.set()

    async def run_once(self) -> int:
        """One pass over the due deliveries; returns how many were attempted."""
        due = await self.store.pending(now=self.clock(), limit=self.batch)
        if not due:
            return 0
        limiters = {name: anyio.CapacityLimiter(self.config.concurrency) for name in self.sinks}
        async with anyio.create_task_group() as tg:
            for delivery in due:
                tg.start_soon(self._deliver, delivery, limiters.get(delivery.sink))
        return len(due)

    async def _deliver(
        self, delivery: PendingDelivery, limiter: anyio.CapacityLimiter | None
    ) -> None:
        t = delivery.envelope.transition
        bound = log.bind(
            sink=delivery.sink, transition_id=t.id, type=t.type, source=t.source, job_id=t.job_id
        )
        sink = self.sinks.get(delivery.sink)
        if sink is None or limiter is None:
            bound.error("delivery_dead", reason="sink no longer configured")
            with anyio.CancelScope(shield=True):
                await self.store.failed(
                    delivery.seq,
                    delivery.sink,
                    now=self.clock(),
                    error="sink no longer configured",
                    retry_at=None,
                )
            return
        async with limiter:
            try:
                await sink.send([delivery.envelope])
            except DeliveryError as exc:
                await self._failed(delivery, str(exc), exc.retryable, exc.retry_after, bound)
            except Exception as exc:  # a sink bug must not silence the other sinks
                bound.exception("sink_crashed")
                await self._failed(delivery, f"sink error: {type(exc).__name__}", True, None, bound)
            else:
                with anyio.CancelScope(shield=True):
                    await self.store.delivered(delivery.seq, delivery.sink, now=self.clock())
                bound.info("delivered", attempts=delivery.attempts + 1)

    async def _failed(
        self,
        delivery: PendingDelivery,
        error: str,
        retryable: bool,
        retry_after: float | None,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> None:
        now = self.clock()
        retry_at: float | None = None
        if retryable and now - delivery.created_at < self.config.max_age:
            delay = backoff(
                delivery.attempts,
                base=self.config.initial_backoff,
                cap=self.config.max_backoff,
                retry_after=retry_after,
                rng=self.rng,
            )
            retry_at = now + delay
            bound.warning(
                "delivery_retry",
                error=error,
                attempts=delivery.attempts + 1,
                retry_in=round(delay, 3),
            )
        else:
            why = "final error" if not retryable else "max age reached"
            bound.error("delivery_dead", error=error, reason=why, attempts=delivery.attempts + 1)
        with anyio.CancelScope(shield=True):
            await self.store.failed(
                delivery.seq, delivery.sink, now=now, error=error, retry_at=retry_at
            )

    async def drain(self) -> None:
        """Passes until nothing is due right now (``watcher once``)."""
        while await self.run_once():
            pass

    async def run(self) -> None:
        """Forever: a pass, then wait for a wake-up or the next tick."""
        while True:
            try:
                attempted = await self.run_once()
            except Exception:
                log.exception("dispatch_pass_failed")
                attempted = 0
                await anyio.sleep(IDLE_WAIT)
            if attempted:
                continue
            wait = IDLE_WAIT
            next_due = await self.store.next_due()
            if next_due is not None:
                wait = min(wait, max(0.0, next_due - self.clock()))
            with anyio.move_on_after(wait):
                await self._wake.wait()
            self._wake = anyio.Event()
