"""Prometheus metrics (``watcher_`` prefix), in a registry of each daemon's own.

Label values are bounded: sources, sinks and routes come from the config or the code;
whatever comes from the API (HTTP status codes, job statuses, transition types derived from
statuses, a sink's reasons) is capped to known values, else ``other``. No job id is ever a
label.

Counters move as things happen; what lives in the store (jobs by status, the outbox) is read
by :meth:`Metrics.refresh_store` on a schedule and rendered from that cache at scrape time,
so that a scrape never waits for the database.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

from watcher import __version__
from watcher.abc import CountsFinalErrors, Readiness
from watcher.model.outbox import StoreStatus
from watcher.model.statuses import KNOWN_STATUSES
from watcher.model.transitions import Transition
from watcher.model.types import JOB_PREFIXES, is_known

# The documented statuses and watcher's own DELETED; the rest is "other".
JOB_STATUSES = KNOWN_STATUSES
POLL_OUTCOMES = ("ok", "skipped", "retired", "auth_error", "error", "stale")
MAX_REASONS = 20  # distinct final-error reasons per sink before the rest count as "other"
# Poll cycles last from milliseconds (nothing changed) to minutes (a full resync of a large
# history with retries).
POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def status_label(status: str) -> str:
    """A job status as a label value: documented ones as they are, the rest ``other``."""
    return status if status in JOB_STATUSES else "other"


def type_label(type_: str, prefixes: Collection[str] = JOB_PREFIXES) -> str:
    """A transition type as a label value: ``<prefix>.<known suffix>`` or a known
    ``watcher.*`` type as it is; an unknown suffix (e.g. an undocumented status) becomes
    ``<prefix>.other``, anything else ``other``."""
    if is_known(type_, tuple(prefixes)):
        return type_
    for prefix in prefixes:
        if type_.startswith(prefix + "."):
            return f"{prefix}.other"
    if type_.startswith("watcher."):
        return "watcher.other"
    return "other"


def code_label(status: int | None) -> str:
    """An HTTP status as a label value; ``None`` (no answer: transport error or timeout)
    is ``error``."""
    if status is None:
        return "error"
    return str(status) if 100 <= status <= 599 else "other"


class _StoreCollector:
    """Jobs and outbox gauges from the last :class:`StoreStatus` read (no I/O at scrape)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families(None, 0.0)

    def collect(self) -> Iterable[Metric]:
        return self._families(self._metrics.store_status, self._metrics.clock())

    def _families(self, status: StoreStatus | None, now: float) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "watcher_jobs",
            "Jobs tracked, by source and last seen status (undocumented statuses: other).",
            labels=["source", "status"],
        )
        retired = GaugeMetricFamily(
            "watcher_source_retired",
            "1 when the source's API answered 410 Gone (an expected, reported state).",
            labels=["source"],
        )
        pending = GaugeMetricFamily(
            "watcher_outbox_pending", "Deliveries waiting for their sink (pending)."
        )
        oldest = GaugeMetricFamily(
            "watcher_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none is pending).",
        )
        dead = GaugeMetricFamily("watcher_outbox_dead", "Dead-lettered deliveries.")
        silences = GaugeMetricFamily(
            "watcher_silences_active", "Silences in force (watcher silence add, Slack)."
        )
        refreshed = GaugeMetricFamily(
            "watcher_store_stats_timestamp_seconds",
            "When the jobs and outbox gauges were last read from the store.",
        )
        if status is not None:
            for source in self._metrics.sources:
                counts: dict[str, int] = {}
                for raw, count in status.jobs_by_source.get(source, {}).items():
                    label = status_label(raw)
                    counts[label] = counts.get(label, 0) + count
                for label, count in sorted(counts.items()):
                    jobs.add_metric([source, label], count)
                cursor = status.cursors.get(source)
                retired.add_metric([source], 1.0 if cursor is not None and cursor.retired else 0.0)
            pending.add_metric([], status.pending)
            age = now - status.oldest_pending_at if status.oldest_pending_at else 0.0
            oldest.add_metric([], max(0.0, age) if status.pending else 0.0)
            dead.add_metric([], status.dead)
            silences.add_metric([], status.silences_active)
            refreshed.add_metric([], self._metrics.store_status_at)
        yield from (jobs, retired, pending, oldest, dead, silences, refreshed)


class _SinkErrorsCollector:
    """``watcher_sink_final_errors_total{sink,reason}`` from the sinks that count their
    final errors by reason (:class:`~watcher.abc.CountsFinalErrors`, e.g. Slack)."""

    def __init__(self, sinks: Mapping[str, object]) -> None:
        self._sinks = dict(sinks)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            "watcher_sink_final_errors",
            f"Final (not retried) errors by sink and the sink's reason (first {MAX_REASONS}"
            " reasons per sink, then other).",
            labels=["sink", "reason"],
        )

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for name, sink in self._sinks.items():
            if not isinstance(sink, CountsFinalErrors):
                continue
            counts = sink.final_errors
            other = 0
            # A Counter keeps insertion order: the first reasons keep their own series, so
            # every series only ever grows.
            for index, (reason, count) in enumerate(counts.items()):
                if index < MAX_REASONS and isinstance(reason, str):
                    family.add_metric([name, reason[:64]], float(count))
                else:
                    other += int(count)
            if other:
                family.add_metric([name, "other"], float(other))
        return [family]


class _StoreHealthCollector:
    """Whether the store takes writes, and how often its file had to be written back (the
    SQLite file deleted or replaced under the daemon), read from the store at scrape."""

    def __init__(self, store: Readiness) -> None:
        self._store = store

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families()

    def _families(self) -> list[Metric]:
        writable = GaugeMetricFamily(
            "watcher_store_writable",
            "1 while the state store takes writes, 0 while it refuses them (or its file is"
            " lost and not yet written back).",
        )
        store = self._store
        failing = store.write_error is not None or store.standing_error is not None
        writable.add_metric([], 0.0 if failing else 1.0)
        restores = CounterMetricFamily(
            "watcher_store_file_restores",
            "Times the SQLite file was found deleted or replaced and written back.",
        )
        restores.add_metric([], float(getattr(store, "restores", 0)))
        return [writable, restores]


class Metrics:
    """Every metric of one daemon, registered in :attr:`registry` (not the global one)."""

    def __init__(
        self,
        sources: Iterable[str] = (),
        *,
        sinks: Mapping[str, object] | None = None,
        prefixes: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        process: bool = True,
    ) -> None:
        self.sources = list(sources)
        self.clock = clock
        self.prefixes = tuple(dict.fromkeys([*JOB_PREFIXES, *prefixes]))
        self.store_status: StoreStatus | None = None
        self._recent: dict[str, deque[float]] = {}  # monotonic times of API requests, a minute
        self.store_status_at = 0.0
        self.registry = registry = CollectorRegistry(auto_describe=True)
        common: dict[str, Any] = {"namespace": "watcher", "registry": registry}
        self.polls = Counter(
            "polls", "Poll cycles by source and outcome.", ["source", "outcome"], **common
        )
        self.poll_duration = Histogram(
            "poll_duration_seconds",
            "Duration of poll cycles that reached the API, by source.",
            ["source"],
            buckets=POLL_BUCKETS,
            **common,
        )
        self.last_success = Gauge(
            "last_successful_poll_timestamp_seconds",
            "When each source was last polled successfully (Unix time).",
            ["source"],
            **common,
        )
        self.api_requests = Counter(
            "api_requests",
            "HTTP requests to the APIs by source, route and status code (error: no answer).",
            ["source", "route", "code"],
            **common,
        )
        self.transitions = Counter(
            "transitions",
            "Transitions recorded, by type (unknown suffixes: <prefix>.other).",
            ["type"],
            **common,
        )
        self.silenced = Counter(
            "transitions_silenced",
            "Transitions a silence kept from every sink (recorded, not sent).",
            **common,
        )
        self.deliveries = Counter(
            "deliveries",
            "Deliveries finished, by sink and final outcome (delivered or dead).",
            ["sink", "outcome"],
            **common,
        )
        self.delivery_attempts = Counter(
            "delivery_attempts",
            "Delivery attempts (one per transition and sink tried), by sink and result.",
            ["sink", "result"],
            **common,
        )
        self.ownership_changes = Counter(
            "ownership_changes",
            "Sources taken or given up by this replica (acquired, released, lost).",
            ["source", "change"],
            **common,
        )
        self.owned = Gauge(
            "source_owned", "1 while this replica polls the source, else 0.", ["source"], **common
        )
        self.claim_conflicts = Counter(
            "delivery_claim_conflicts",
            "Deliveries another replica claimed between our read and our claim, by sink.",
            ["sink"],
            **common,
        )
        self.streams = Gauge(
            "streams_open",
            "Event streams this replica holds open, by source (the rest is polled).",
            ["source"],
            **common,
        )
        self.reload_ok = Gauge(
            "config_last_reload_successful",
            "1 when the last SIGHUP reload was applied (or none was asked), 0 when it failed"
            " and the previous config still runs.",
            **common,
        )
        self.reload_ok.set(1)
        self.reload_at = Gauge(
            "config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (start or last applied reload; Unix time).",
            **common,
        )
        self.reload_at.set(clock())
        Info("build", "The running watcher.", **common).info({"version": __version__})
        registry.register(_StoreCollector(self))
        registry.register(_SinkErrorsCollector(sinks or {}))
        if process:
            ProcessCollector(registry=registry)
        for source in self.sources:
            for outcome in POLL_OUTCOMES:
                self.polls.labels(source, outcome)  # every series exists from the start

    def watch_store(self, store: Readiness) -> None:
        """Expose the store's own health (writable, file restores)."""
        self.registry.register(_StoreHealthCollector(store))

    # --- what the daemon's parts report ----------------------------------------------------

    def reload_done(self, ok: bool) -> None:
        self.reload_ok.set(1 if ok else 0)

    def poll_done(self, source: str, outcome: str, seconds: float) -> None:
        self.polls.labels(source, outcome if outcome in POLL_OUTCOMES else "error").inc()
        if outcome not in ("skipped", "stale"):
            self.poll_duration.labels(source).observe(seconds)
        if outcome == "ok":
            self.last_success.labels(source).set(self.clock())

    def streams_open(self, source: str, count: int) -> None:
        self.streams.labels(source).set(count)

    def ownership_changed(self, source: str, change: str) -> None:
        """``change``: acquired, released or lost."""
        self.ownership_changes.labels(source, change).inc()
        self.owned.labels(source).set(1 if change == "acquired" else 0)

    def claim_conflict(self, sink: str, count: int) -> None:
        self.claim_conflicts.labels(sink).inc(count)

    def requests_last_minute(self, source: str) -> int:
        """API requests the source sent in the last 60 s (this process)."""
        sent = self._recent.get(source)
        if sent is None:
            return 0
        while sent and sent[0] < time.monotonic() - 60:
            sent.popleft()
        return len(sent)

    def api_request(self, source: str, route: str, status: int | None) -> None:
        self.api_requests.labels(source, route, code_label(status)).inc()
        sent = self._recent.setdefault(source, deque())
        sent.append(time.monotonic())
        while sent and sent[0] < sent[-1] - 60:
            sent.popleft()

    def transitions_recorded(self, transitions: Iterable[Transition]) -> None:
        for transition in transitions:
            self.transitions.labels(type_label(transition.type, self.prefixes)).inc()

    def transitions_silenced(self, count: int) -> None:
        self.silenced.inc(count)

    def delivery_attempt(self, sink: str, result: str) -> None:
        """``result``: ok, retryable_error or final_error."""
        self.delivery_attempts.labels(sink, result).inc()

    def delivery_finished(self, sink: str, outcome: str) -> None:
        """``outcome``: delivered or dead."""
        self.deliveries.labels(sink, outcome).inc()

    def refreshed(self, status: StoreStatus) -> None:
        """A fresh read of the store for the jobs and outbox gauges."""
        self.store_status = status
        self.store_status_at = self.clock()
