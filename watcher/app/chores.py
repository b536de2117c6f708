"""The daemon's chores beside the polls: housekeeping of the outbox, the digest, the
heartbeat, and the periodic read of the store for the gauges and systemd's ``STATUS=``.

The chores that must happen once per deployment (housekeeping, digest, heartbeat) are the
leader's alone; every transition they produce goes through the
:class:`~watcher.record.recorder.Recorder`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import anyio
import structlog

from watcher.abc import Ownership, Store
from watcher.app.coordination import claims_of
from watcher.app.health import Health, Progress
from watcher.app.metrics import Metrics
from watcher.app.sdnotify import Notifier
from watcher.config import Config
from watcher.deliver.dispatch import Dispatcher
from watcher.detect.digest import digest_transition, heartbeat, summarize
from watcher.model.outbox import Envelope
from watcher.model.transitions import store_unwritable
from watcher.record.recorder import Recorder

log = structlog.get_logger(__name__)

STORE_ALERT_AFTER = 60.0  # seconds of refused writes before the store's own alert goes out


class Chores:
    """What the schedule runs besides the polls and the time rules."""

    def __init__(
        self,
        config: Config,
        recorder: Recorder,
        store: Store,
        *,
        sources: Sequence[str],
        last_ok: Mapping[str, float],
        metrics: Metrics,
        ownership: Ownership,
        health: Health,
        progress: Progress,
        notifier: Notifier,
        dispatcher: Dispatcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.recorder = recorder
        self.store = store  # reads, pruning, the digest log; transitions go through the recorder
        self.sources = list(sources)
        self.last_ok = last_ok  # wall time of each source's last good poll (the pipeline's)
        self.metrics = metrics
        self.ownership = ownership
        self.health = health
        self.progress = progress
        self.notifier = notifier
        self.dispatcher = dispatcher  # for the one message that cannot go through the outbox
        self.clock = clock
        self._store_failing_since: float | None = None  # on ``clock``
        self._store_alerted = False

    async def housekeeping(self) -> None:
        """Keeps the outbox from growing forever (``delivery.retention``)."""
        if not self.ownership.leader:
            return
        try:
            removed = await self.store.prune(before=time.time() - self.config.delivery.retention)
        except Exception:
            log.exception("housekeeping_failed")
            return
        if removed:
            log.info("outbox_pruned", transitions=removed)

    async def release_dead_claims(self) -> int:
        """The leader gives back at once the claims of replicas that died (their member
        lock is gone): their deliveries go out within seconds instead of waiting for the
        lease. Returns how many deliveries were released."""
        live = self.ownership.replicas()
        if not self.ownership.leader or live is None:
            return 0
        released = 0
        for owner in await self.store.claimants():
            if any(claims_of(owner, name) for name in live):
                continue
            count = await self.store.release(owner)
            if count:
                log.warning("claims_released", owner=owner, deliveries=count, reason="replica gone")
            released += count
        return released

    async def watch_store(self) -> None:
        """A store that has refused every write for :data:`STORE_ALERT_AFTER` seconds cannot
        record the alert about itself: ``watcher.store.unwritable`` goes straight to the
        sinks routed for it, once per spell (by every replica that sees it: with the
        database down there is no leader to ask)."""
        failing = self.store.write_error or self.store.standing_error
        now = self.clock()
        if failing is None:
            if self._store_alerted:
                log.warning("store_writable_after_alert")
            self._store_failing_since, self._store_alerted = None, False
            return
        if self._store_failing_since is None:
            self._store_failing_since = now
        if self._store_alerted or now - self._store_failing_since < STORE_ALERT_AFTER:
            return
        self._store_alerted = True
        since = time.time() - (now - self._store_failing_since)
        transition = store_unwritable(self.ownership.replica, since, failing)
        sinks = self.recorder.router.sinks_for(transition, time.time())
        sent = await self.dispatcher.send_direct(Envelope(transition, time.time()), sinks)
        log.error("store_alert_sent", sinks=sent, routed=list(sinks), error=failing)

    async def send_digest(self, now: float | None = None) -> None:
        """``watcher.digest`` over the last ``digest.period`` to the digest's sinks."""
        if self.config.digest is None or not self.ownership.leader:
            return
        end = time.time() if now is None else now
        start = end - self.config.digest.period
        last = await self.store.last_digest_end()
        if last is not None and start < last < end:
            start = last  # since the previous digest: no gap over weekends or DST
        elif last is not None and last <= start:
            start = last  # a missed digest: the next one covers the whole gap
        found = await self.store.transitions_between(start, end)
        active = {
            name: list((await self.store.active_snapshots(name)).values()) for name in self.sources
        }
        transition = digest_transition(summarize(found, active, start=start, end=end), end)
        added = await self.recorder.outbox(
            [transition], now=time.time(), sinks=self.config.digest.sinks
        )
        await self.store.record_digest_end(end)
        log.info("digest_queued", deliveries=added)

    async def send_heartbeat(self) -> None:
        """``watcher.heartbeat``, routed like any transition (a dead-man's switch)."""
        if self.config.heartbeat is None or not self.ownership.leader:
            return
        now = time.time()
        cursors = {name: await self.store.load_cursor(name) for name in self.sources}
        # Sources other replicas poll: their last good poll as the store last recorded it.
        cached = self.metrics.store_status
        last_ok = {n: t for n, t in (cached.last_poll_at if cached else {}).items() if t > 0}
        last_ok.update(self.last_ok)
        transition = heartbeat(now, self.config.heartbeat.interval, cursors, last_ok)
        await self.recorder.outbox([transition], now=now)

    async def refresh_stats(self) -> None:
        """Read the store for the jobs and outbox gauges, and tell systemd how things are."""
        try:
            with anyio.fail_after(30):
                self.metrics.refreshed(await self.store.status())
        except Exception as exc:  # the gauges keep their last values; readiness tells
            log.warning("stats_refresh_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        self.notifier.status(self.status_line())

    def status_line(self) -> str:
        """One line for systemd's ``STATUS=``: ``polling 2 sources, 0 pending deliveries,
        last poll 3s ago``, with the sources that are not healthy named."""
        names = self.sources
        cached = self.metrics.store_status
        cursors = cached.cursors if cached is not None else {}
        failing = [
            n
            for n in names
            if n in self.progress.poll_finished  # tried at least once
            and n in self.ownership.owned
            and self.health.source_check(n, cursors.get(n)) != "ok"
        ]
        owned = len(self.ownership.owned)
        text = f"polling {owned} source{'s' if owned != 1 else ''}"
        if owned != len(names):
            text += f" of {len(names)} (replica {self.ownership.replica})"
        if failing:
            text += f" ({len(failing)} failing: {', '.join(failing)[:200]})"
        if cached is not None:
            text += f", {cached.pending} pending deliveries"
            if cached.dead:
                text += f", {cached.dead} dead"
        last = max(self.last_ok.values(), default=None)
        ago = f"last poll {max(0.0, time.time() - last):.0f}s ago" if last else "no poll yet"
        return f"{text}, {ago}"
