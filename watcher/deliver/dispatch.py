"""The dispatcher: sends pending deliveries from the outbox to their sinks.

Per (transition, sink): attempts and ``next_attempt_at`` are persisted; a retryable
failure waits an exponential backoff with jitter (never less than the peer's
``Retry-After``); a final failure, or a retryable one older than ``max_age``, moves the
delivery to dead-letter. A delivery is marked delivered only after the sink accepted it, so
a crash at any point re-sends with the same transition id rather than losing it.

Order per job and sink is kept: a later transition of a job is not sent to a sink before
an earlier one was delivered there (or given up).

Replicas sharing a database each run a dispatcher over the one outbox: a delivery is
claimed (``Store.claim``, a lease of ``lease`` seconds per send that may go before it in its
slot) shortly before it is sent (:mod:`watcher.deliver.rounds`), so two replicas never send
it at the same time, and one killed mid-send leaves its claims to the leader to release
(or the lease to expire) and another replica to retry. Rate-limited sinks are served by one
replica only (``serves``), so that their limit holds for the whole deployment.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio
import structlog

from watcher.abc import Outbox, Sink
from watcher.config import DeliveryConfig
from watcher.deliver.retry import backoff
from watcher.deliver.rounds import Flow, Group
from watcher.exceptions import DeliveryError
from watcher.model.outbox import Envelope, PendingDelivery


class DeliveryMetrics(Protocol):
    """What the dispatcher counts (:class:`watcher.app.metrics.Metrics` provides it)."""

    def claim_conflict(self, sink: str, count: int) -> None: ...

    def delivery_attempt(self, sink: str, result: str) -> None: ...

    def delivery_finished(self, sink: str, outcome: str) -> None: ...


log = structlog.get_logger(__name__)

BATCH = 1000  # pending rows read per pass
LEASE = 60.0  # seconds a claimed delivery stays ours (longer than any one send)
IDLE_WAIT = 1.0  # seconds between passes when nothing is due and nobody woke us
DIRECT_TIMEOUT = 30.0  # seconds for one sink to take a message sent outside the outbox
# Messages per concurrency slot claimed in one transaction (when that many are due): each
# synced commit costs 2-3 ms of CPU, so 16 a slot (128 at concurrency 8) makes it 0.035 ms a
# message instead of 0.08 at 4, at the price of leases that long and of up to that many
# accepted messages sent again after a crash (a killed replica's claims are released by the
# leader within seconds, or at the start of a process alone on its store).
ROUND_PER_SLOT = 16
HELD_WAIT = 0.25  # seconds between passes while what is due cannot go yet


@dataclass(frozen=True)
class SinkPolicy:
    """How a sink takes its deliveries: ``group_wait`` seconds to gather a group of up to
    ``group_max`` transitions into one message; at most ``max_per_minute`` messages (the
    rest waits, to join the next message: nothing is dropped)."""

    group_wait: float = 0.0
    group_max: int = 1
    max_per_minute: int | None = None


NO_POLICY = SinkPolicy()


class Dispatcher:
    def __init__(
        self,
        store: Outbox,
        sinks: Mapping[str, Sink],
        config: DeliveryConfig,
        *,
        policies: Mapping[str, SinkPolicy] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        batch: int = BATCH,
        metrics: DeliveryMetrics | None = None,
        owner: str = "watcher",
        lease: float = LEASE,
        serves: Callable[[str], bool] = lambda sink: True,
        orphans: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.sinks = dict(sinks)
        self.config = config
        self.policies = dict(policies or {})
        self.clock = clock  # wall time: what the outbox stores, shared by the replicas
        self.monotonic = monotonic  # the pacing of rate-limited sinks: a wall step is no pause
        self.rng = rng or random.Random()
        self.batch = batch
        self._wake = anyio.Event()
        self._sent: dict[str, deque[float]] = {}  # message times per sink, last minute
        self.metrics = metrics
        self.owner = owner
        self.lease = lease
        self.serves = serves
        self.orphans = orphans
        # Monotonic time of the last sign of progress: a turn of the loop, or a delivery
        # attempt finished (for the health checks and the systemd watchdog).
        self.last_progress = time.monotonic()

    def wake(self) -> None:
        """New deliveries are pending: start a pass now rather than at the next tick."""
        self._wake.set()

    def _allowance(self, sink: str, policy: SinkPolicy) -> int | None:
        if policy.max_per_minute is None:
            return None
        now = self.monotonic()
        sent = self._sent.setdefault(sink, deque())
        while sent and sent[0] <= now - 60:
            sent.popleft()
        return max(0, policy.max_per_minute - len(sent))

    async def send_direct(self, envelope: Envelope, sinks: Sequence[str]) -> list[str]:
        """Deliver ``envelope`` now to ``sinks``, outside the outbox (for when the store
        itself cannot be written): one attempt each, nothing recorded; returns the sinks
        that accepted it."""
        accepted = []
        for name in sinks:
            sink = self.sinks.get(name)
            if sink is None:
                continue
            try:
                with anyio.fail_after(DIRECT_TIMEOUT):
                    await sink.send([envelope])
            except (DeliveryError, TimeoutError) as exc:
                log.error("direct_delivery_failed", sink=name, error=str(exc)[:300])
                continue
            accepted.append(name)
        return accepted

    async def run_once(self) -> int:
        """One pass over the due deliveries; returns how many were attempted."""
        now = self.clock()
        due = await self.store.pending(now=now, limit=self.batch, sinks=self._served())
        by_sink: dict[str, list[PendingDelivery]] = defaultdict(list)
        for delivery in due:
            by_sink[delivery.sink].append(delivery)
        plans: list[tuple[str, list[list[PendingDelivery]]]] = []
        for name, items in by_sink.items():
            policy = self.policies.get(name, SinkPolicy())
            if policy.group_wait > 0 and now - min(d.created_at for d in items) < policy.group_wait:
                continue  # still gathering what arrives together
            groups = [
                items[i : i + policy.group_max] for i in range(0, len(items), policy.group_max)
            ]
            allowance = self._allowance(name, policy)
            if allowance is not None:
                groups = groups[:allowance]  # the rest joins a later message
            if groups:
                plans.append((name, groups))
        if not plans:
            return 0
        async with anyio.create_task_group() as tg:
            for name, groups in plans:
                tg.start_soon(self._deliver_sink, name, groups)
        return sum(len(group) for _, groups in plans for group in groups)

    def _served(self) -> list[str] | None:
        """The sinks this replica delivers to; ``None``: every delivery in the outbox, those
        to sinks no longer configured included (they go to dead-letter). Only a replica
        that serves every sink and may clean up (``orphans``) takes those: during a rolling
        update another replica may know a sink this one does not."""
        served = [name for name in self.sinks if self.serves(name)]
        if len(served) == len(self.sinks) and self.orphans():
            return None
        return served

    async def _deliver_sink(self, name: str, groups: list[list[PendingDelivery]]) -> None:
        policy = self.policies.get(name, SinkPolicy())
        if name not in self.sinks:
            await self._orphaned(name, [d for group in groups for d in group])
            return
        if policy.max_per_minute is None:
            # `concurrency` messages in flight while the store claims the next ones and
            # records the accepted ones, a claim's worth per transaction (one sync to disk
            # for both, overlapped with the sends).
            slots = self.config.concurrency
            await self._flow(name, groups, slots, slots * ROUND_PER_SLOT)
            return
        # A rate-limited sink gets its messages one by one, evenly spaced (Slack: 1/s).
        spacing = 60.0 / policy.max_per_minute
        for group in groups:
            sent = self._sent.get(name)
            if sent:
                await anyio.sleep(min(spacing, max(0.0, sent[-1] + spacing - self.monotonic())))
            await self._flow(name, [group], 1, 1)

    async def _flow(self, name: str, groups: list[Group], slots: int, per_claim: int) -> None:
        async def claim(chunk: list[Group], turns: int, done: list[PendingDelivery]) -> list[Group]:
            flat = [d for group in chunk for d in group]
            keys = {d.seq for d in await self._claim(name, flat, turns, delivered=done)}
            self._recorded(name, done)
            return [kept for group in chunk if (kept := [d for d in group if d.seq in keys])]

        async def send(group: Group) -> bool:
            return await self._send(name, group)

        async def record(done: list[PendingDelivery]) -> None:
            await self._accepted(name, done)

        flow = Flow(groups, slots=slots, per_claim=per_claim, claim=claim, send=send, record=record)
        await flow.run()

    async def _accepted(self, name: str, accepted: list[PendingDelivery]) -> None:
        if not accepted:
            return
        with anyio.CancelScope(shield=True):
            await self.store.delivered_all([(d.seq, name) for d in accepted], now=self.clock())
        self._recorded(name, accepted)

    def _recorded(self, name: str, accepted: list[PendingDelivery]) -> None:
        for delivery in accepted:
            self._attempted(name, "ok")
            self._finished(name, "delivered")
            t = delivery.envelope.transition
            log.info(
                "delivered",
                sink=name,
                transition_id=t.id,
                type=t.type,
                source=t.source,
                job_id=t.job_id,
                attempts=delivery.attempts + 1,
            )

    async def _orphaned(self, name: str, deliveries: list[PendingDelivery]) -> None:
        log.error("delivery_dead", sink=name, reason="sink no longer configured",
                  deliveries=len(deliveries))  # fmt: skip
        with anyio.CancelScope(shield=True):
            for delivery in deliveries:
                await self.store.failed(
                    delivery.seq,
                    name,
                    now=self.clock(),
                    error="sink no longer configured",
                    retry_at=None,
                )
                self._finished(name, "dead")

    async def _send(self, name: str, group: list[PendingDelivery]) -> bool:
        """One message; failures are recorded here, acceptances by the caller (``True``)."""
        if self.policies.get(name, NO_POLICY).max_per_minute is not None:
            # Message times, for the pacing of a rate-limited sink (trimmed to the minute by
            # _allowance); kept for no other sink, or they would pile up forever.
            self._sent.setdefault(name, deque()).append(self.monotonic())
        try:
            await self.sinks[name].send([delivery.envelope for delivery in group])
        except DeliveryError as exc:
            bound = self._about(name, group)
            for delivery in group:
                await self._failed(delivery, str(exc), exc.retryable, exc.retry_after, bound)
        except Exception as exc:  # a sink bug must not silence the other sinks
            bound = self._about(name, group)
            bound.exception("sink_crashed")
            for delivery in group:
                await self._failed(delivery, f"sink error: {type(exc).__name__}", True, None, bound)
        else:
            return True
        return False

    @staticmethod
    def _about(name: str, group: list[PendingDelivery]) -> structlog.typing.FilteringBoundLogger:
        """The logger of a failed message (bound only then: most messages go through)."""
        first = group[0].envelope.transition
        return log.bind(  # type: ignore[no-any-return]
            sink=name,
            transition_id=first.id,
            type=first.type,
            source=first.source,
            job_id=first.job_id,
            group=len(group),
        )

    async def _claim(
        self,
        name: str,
        group: list[PendingDelivery],
        turns: int = 1,
        *,
        delivered: list[PendingDelivery] | None = None,
    ) -> list[PendingDelivery]:
        """The part of ``group`` this replica now holds (another replica may have taken the
        rest since it was read: it is theirs to send), for ``turns`` leases (as many sends
        as may go before the last of them in a slot). One transaction, which records
        ``delivered`` (accepted by the sink) first."""
        now = self.clock()
        keys = [(d.seq, name) for d in group]
        until = now + self.lease * max(1, turns)
        done = [(d.seq, name) for d in delivered or ()]
        got = await self.store.claim(keys, owner=self.owner, until=until, now=now, delivered=done)
        if len(got) < len(keys) and self.metrics is not None:
            self.metrics.claim_conflict(name, len(keys) - len(got))
        return [d for d in group if (d.seq, name) in got]

    async def release(self) -> None:
        """Give back this replica's claims (a clean stop: nobody waits for the leases)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            try:
                released = await self.store.release(self.owner)
            except Exception as exc:  # best effort: the leases expire anyway
                log.warning("claims_not_released", error=f"{type(exc).__name__}: {exc}"[:300])
                return
            if released:
                log.info("claims_released", deliveries=released)

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
                delivery.seq,
                delivery.sink,
                now=now,
                error=error,
                retry_at=retry_at,
                owner=self.owner,
            )
        self._attempted(delivery.sink, "retryable_error" if retryable else "final_error")
        if retry_at is None:
            self._finished(delivery.sink, "dead")

    def _attempted(self, sink: str, result: str) -> None:
        self.last_progress = time.monotonic()
        if self.metrics is not None:
            self.metrics.delivery_attempt(sink, result)

    def _finished(self, sink: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.delivery_finished(sink, outcome)

    async def drain(self) -> None:
        """Passes until nothing is due right now (``watcher once``)."""
        while await self.run_once():
            pass

    async def run(self) -> None:
        """Forever: a pass, then wait for a wake-up or the next tick."""
        while True:
            self.last_progress = time.monotonic()
            wait = IDLE_WAIT
            try:
                if await self.run_once():
                    continue
                next_due = await self.store.next_due(sinks=self._served())
            except Exception:
                # The store failing (read-only, unreachable) never ends the loop; what the
                # pass claimed goes to the next one, not after its lease (a minute or more).
                log.exception("dispatch_pass_failed")
                await anyio.sleep(IDLE_WAIT)
                await self.release()
                continue
            if next_due is not None:
                # Due but held back (a group gathering, a spent rate limit, a sink another
                # replica serves): look again shortly, not in a busy loop. A wake() still
                # starts a pass at once.
                wait = min(wait, max(HELD_WAIT, next_due - self.clock()))
            with anyio.move_on_after(wait):
                await self._wake.wait()
            self._wake = anyio.Event()
