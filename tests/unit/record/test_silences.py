"""Silences on the record path: a silenced transition is recorded and sent to no sink, on
every path (cycle, alerts, outbox), counted and logged; the store is read at most every 2 s;
an alert keeps its schedule under a silence; an "until resolved" silence ends with its job,
audited; and what people do (:class:`Actions`) adds, expires and audits silences."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from tests.factories import T0, job, transition
from tests.unit.record.fakes import Clock, Counted
from tests.unit.record.test_alerting import alerting, queued_since_t0
from watcher.app.actions import Actions
from watcher.config import RouteConfig
from watcher.detect.diff import diff
from watcher.detect.routing import Router
from watcher.model import types
from watcher.model.silences import Silence
from watcher.model.snapshot import Cursor
from watcher.record.recorder import Recorder
from watcher.record.silences import TTL, SilenceCache
from watcher.sources.fine_tuning import KIND
from watcher.stores.sql import SqlStore

NOW = float(T0 + 1000)


def silence(id_: str = "sil-a", **fields: object) -> Silence:
    base: dict[str, object] = {
        "id": id_,
        "matchers": {"job_id": "j1"},
        "starts_at": NOW - 10,
        "ends_at": NOW + 3600,
        "comment": "known flake",
        "created_by": "ana",
        "created_at": NOW - 10,
    }
    return Silence(**(base | fields))  # type: ignore[arg-type]


def recorder(store: SqlStore, counted: Counted | None = None) -> Recorder:
    return Recorder(store, Router([RouteConfig(sinks=["hooks"])]), metrics=counted)


async def states(store: SqlStore) -> list[tuple[str, str, str | None]]:
    rows = await store.list_deliveries(state=None, limit=100)
    return sorted((r.transition_id, r.state, r.last_error) for r in rows)


class CountingStore:
    """Active silences as a store would give them, counting the reads."""

    def __init__(self, silences: Sequence[Silence]) -> None:
        self.silences = list(silences)
        self.reads = 0

    async def active_silences(self, now: float) -> list[Silence]:
        self.reads += 1
        return list(self.silences)


async def test_the_cache_reads_the_store_at_most_every_ttl() -> None:
    store, tick = CountingStore([silence()]), Clock(0.0)
    cache = SilenceCache(store, clock=tick)  # type: ignore[arg-type]
    assert ["sil-a"] == [s.id for s in await cache.get(NOW)]
    store.silences = []
    tick.now = TTL * 0.95
    assert ["sil-a"] == [s.id for s in await cache.get(NOW)]  # still the read of t=0
    tick.now = TTL
    assert [] == await cache.get(NOW)
    assert 2 == store.reads
    cache.forget()
    await cache.get(NOW)
    assert 3 == store.reads


async def test_a_cached_silence_past_its_end_no_longer_silences() -> None:
    cache = SilenceCache(CountingStore([silence(ends_at=NOW + 1)]), clock=Clock(0.0))  # type: ignore[arg-type]
    assert [] == await cache.get(NOW + 1)


async def test_a_silenced_transition_is_recorded_and_sent_nowhere(sqlite: SqlStore) -> None:
    await sqlite.add_silence(silence())
    counted = Counted()
    with structlog.testing.capture_logs() as logs:
        added = await recorder(sqlite, counted).cycle(
            "ft", Cursor(baseline_done=True), [], [transition(1), transition(2, "j2")], now=NOW
        )
    assert 1 == added  # only t2's delivery is pending
    assert [
        ("t1", "silenced", "silenced by sil-a"),
        ("t2", "pending", None),
    ] == await states(sqlite)
    assert ["t2"] == [p.envelope.transition.id for p in await sqlite.pending(now=NOW, limit=10)]
    assert (2, 1) == (len(counted.types), counted.silenced)
    (said,) = [e for e in logs if e["event"] == "transition_silenced"]
    assert ("j1", "sil-a", "fine_tuning.job.running") == (
        said["job_id"],
        said["silence"],
        said["type"],
    )
    status = await sqlite.status()
    assert (1, 1) == (status.pending, status.silenced)


async def test_every_path_honours_silences(sqlite: SqlStore) -> None:
    await sqlite.add_silence(silence(matchers={"source": "ft"}))
    rec = recorder(sqlite)
    await rec.outbox([transition(1)], now=NOW)
    await rec.outbox([transition(2)], now=NOW, sinks=["hooks"])
    assert ["silenced", "silenced"] == [s for _, s, _ in await states(sqlite)]


async def test_silenced_rows_are_pruned_like_delivered_ones(sqlite: SqlStore) -> None:
    await sqlite.add_silence(silence())
    await recorder(sqlite).outbox([transition(1)], now=NOW)
    assert 1 == await sqlite.prune(before=NOW + 1)
    assert [] == await states(sqlite)


async def test_a_silenced_alert_keeps_its_schedule(sqlite: SqlStore) -> None:
    """A repeat under a silence is recorded silenced and still advances the schedule: the
    condition, still true when the silence ends, fires again at its next repeat."""
    await queued_since_t0(sqlite)
    clock = Clock(T0 + 100)
    rules, _ = alerting(sqlite, clock)
    assert 1 == await rules.check()  # fired, sent
    await sqlite.add_silence(silence(matchers={"job_id": "a"}, starts_at=T0, ends_at=T0 + 1000))
    rules.recorder.silences.forget()  # as if the cache's 2 s had passed
    clock.now = T0 + 700
    assert 1 == await rules.check()  # repeat 1: silenced
    (alert,) = await sqlite.open_alerts("ft")
    assert (1, T0 + 700) == (alert.repeats, alert.last_sent_at)
    clock.now = T0 + 1100  # the silence is over, but the next repeat is due at T0 + 1300
    assert 0 == await rules.check()
    clock.now = T0 + 1300
    assert 1 == await rules.check()
    rows = await sqlite.list_deliveries(state=None, limit=10)
    assert ["pending", "silenced", "pending"] == [r.state for r in reversed(rows)]


async def test_an_until_resolved_silence_ends_with_its_job(sqlite: SqlStore) -> None:
    bound = silence(ends_at=None, resolved=("ft", "a"), matchers={"job_id": "a"})
    await sqlite.add_silence(bound)
    rec = recorder(sqlite)
    running, found = diff(None, job("a", "RUNNING"), source="ft", kind=KIND)
    await rec.cycle("ft", Cursor(baseline_done=True), [running], found, now=NOW)
    assert {"silenced"} == {s for _, s, _ in await states(sqlite)}
    done, ended = diff(running, job("a", "FAILED"), source="ft", kind=KIND)
    with structlog.testing.capture_logs() as logs:
        await rec.cycle("ft", Cursor(baseline_done=True), [done], ended, now=NOW + 5)
    failed = [t.id for t in ended if t.type == "fine_tuning.job.failed"]
    rows = await sqlite.list_deliveries(state=None, limit=20)
    by_type = {r.type: r.state for r in rows}
    assert "pending" == by_type["fine_tuning.job.failed"], failed  # the end is news
    assert "pending" == by_type[types.ACTION_SILENCE_EXPIRED]
    (over,) = await sqlite.list_silences(include_ended=True)
    assert ("watcher", "job ended", NOW + 5) == (over.ended_by, over.end_reason, over.ended_at)
    assert [] == await sqlite.active_silences(NOW + 6)
    assert ["silence_expired"] == [e["event"] for e in logs if e["event"].startswith("silence")]


async def test_actions_add_and_expire_audited(sqlite: SqlStore) -> None:
    clock = Clock(NOW)
    rec = recorder(sqlite)
    actions = Actions(sqlite, rec, {}, clock=clock)
    with structlog.testing.capture_logs() as logs:
        done = await actions.silence(
            {"job_id": "j1"}, by="ana\x1b[31m", comment="flaky\nretry", until=NOW + 60
        )
    assert done.ok and done.ref is not None and done.ref.startswith("sil-")
    (added,) = [e for e in logs if e["event"] == "silence_added"]
    assert ("ana", "job_id=j1", "flaky retry") == (
        added["by"],
        added["matchers"],
        added["comment"],
    )
    await rec.outbox([transition(1)], now=NOW + 1)  # the cache was told: silenced at once
    assert "silenced" == {r.transition_id: r.state for r in await _rows(sqlite)}["t1"]
    assert not (await actions.expire("sil-nope", by="bo")).ok
    assert (await actions.expire(done.ref, by="bo")).ok
    assert not (await actions.expire(done.ref, by="bo")).ok  # once
    await rec.outbox([transition(2)], now=NOW + 2)
    audits = [
        (r.type, r.source, r.job_id)
        for r in await _rows(sqlite)
        if r.type.startswith("watcher.action.")
    ]
    assert [
        (types.ACTION_SILENCE_EXPIRED, "watcher", "j1"),
        (types.ACTION_SILENCED, "watcher", "j1"),
    ] == audits
    assert "pending" == {r.transition_id: r.state for r in await _rows(sqlite)}["t2"]


async def test_actions_refuse_what_cannot_be(sqlite: SqlStore) -> None:
    actions = Actions(sqlite, recorder(sqlite), {}, clock=Clock(NOW))
    unknown = await actions.silence({"colour": "red"}, by="a", comment="c", until=NOW + 9)
    endless = await actions.silence({"job_id": "j1"}, by="a", comment="c")
    past = await actions.silence({"job_id": "j1"}, by="a", comment="c", until=NOW - 1)
    assert (False, False, False) == (unknown.ok, endless.ok, past.ok)
    assert "job_id" in unknown.message
    assert [] == await sqlite.list_silences(include_ended=True)


async def _rows(store: SqlStore) -> list:  # type: ignore[type-arg]
    return await store.list_deliveries(state=None, limit=100)


async def test_a_silence_bound_to_a_job_matches_it_by_default(sqlite: SqlStore) -> None:
    actions = Actions(sqlite, recorder(sqlite), {}, clock=Clock(NOW))
    done = await actions.silence({}, by="ana", comment="c", resolved=("ft", "j1"))
    (kept,) = await sqlite.list_silences(include_ended=True)
    assert (done.ref, {"source": "ft", "job_id": "j1"}, None) == (
        kept.id,
        kept.matchers,
        kept.ends_at,
    )
