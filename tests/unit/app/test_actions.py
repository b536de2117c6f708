"""Acknowledge and cancel through :class:`Actions`: an acknowledged alert stops repeating
and still resolves, PagerDuty hears ``acknowledge`` for the trigger's own ``dedup_key``,
and every ack or cancel that reached something is audited (refusals included)."""

from __future__ import annotations

from typing import Any

from tests.factories import T0, job
from tests.unit.record.fakes import Clock, Counted
from tests.unit.record.test_alerting import STALLED, Source, alerting, queued_since_t0
from watcher.abc import CancelAnswer
from watcher.app.actions import Actions
from watcher.config import RouteConfig
from watcher.detect.diff import diff
from watcher.detect.routing import Router
from watcher.model import types
from watcher.model.snapshot import Cursor
from watcher.model.transitions import Transition
from watcher.record.recorder import Recorder
from watcher.sinks.pagerduty.meaning import DEFAULT_RESOLVE_ON, decisions, resolving
from watcher.sources.fine_tuning import KIND
from watcher.stores.sql import SqlStore

ACK = types.ACTION_ACKNOWLEDGED


class Cancelling(Source):
    """A source whose API answers cancels with ``answer``, remembering the ids asked."""

    def __init__(self, answer: CancelAnswer) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def cancel(self, job_id: str) -> CancelAnswer:
        self.asked.append(job_id)
        return self.answer


def actions(store: SqlStore, clock: Clock, **sources: Any) -> tuple[Actions, Counted]:
    counted = Counted()
    recorder = Recorder(store, Router([RouteConfig(sinks=["hooks"])]), metrics=counted)
    return Actions(store, recorder, sources, clock=clock), counted


async def queued(store: SqlStore) -> list[Transition]:
    """Every transition recorded, in order."""
    return [t for t, _ in await store.transitions_between(0, T0 + 10**6)]


async def test_an_acknowledged_alert_stops_repeating_and_still_resolves(store: SqlStore) -> None:
    await queued_since_t0(store)
    clock = Clock(T0 + 100)
    rules, fired = alerting(store, clock)
    doer, audited = actions(store, clock)
    assert 1 == await rules.check()
    done = await doer.acknowledge("a", by="alice")
    assert done.ok and "alice" not in done.message and "stalled" in done.message
    assert [ACK] == audited.types
    clock.now = T0 + 100 + 5 * STALLED.repeat_interval
    assert 0 == await rules.check()  # no repeat while acknowledged
    running, _ = diff(None, job("a", "RUNNING", created_at=T0), source="ft", kind=KIND)
    await store.commit("ft", Cursor(baseline_done=True), [running], [], now=clock.now)
    clock.now += 10
    assert 1 == await rules.check()
    assert ["fine_tuning.job.stalled", "fine_tuning.job.stalled.resolved"] == fired.types
    requeued = job("a", "QUEUED", created_at=T0, modified_at=int(clock.now))
    again, _ = diff(running, requeued, source="ft", kind=KIND)
    assert again.status_since == int(clock.now)
    await store.commit("ft", Cursor(baseline_done=True), [again], [], now=clock.now)
    clock.now += 1000
    assert 1 == await rules.check()  # a new spell fires as usual
    assert "fine_tuning.job.stalled" == fired.types[-1]


async def test_unacknowledged_alerts_still_repeat(store: SqlStore) -> None:
    """The control: without an acknowledgement the same schedule repeats."""
    await queued_since_t0(store)
    clock = Clock(T0 + 100)
    rules, _ = alerting(store, clock)
    await rules.check()
    clock.now = T0 + 100 + 5 * STALLED.repeat_interval
    assert 1 == await rules.check()


async def test_pagerduty_acknowledges_the_triggers_own_incident(store: SqlStore) -> None:
    await queued_since_t0(store)
    clock = Clock(T0 + 100)
    rules, _ = alerting(store, clock)
    await rules.check()
    doer, _ = actions(store, clock)
    await doer.acknowledge("a", by="alice", source="ft")
    trigger, ack = await queued(store)
    assert (ACK, "alice") == (ack.type, ack.details["by"])
    assert "a" == ack.job.get("id")  # the job as last seen goes with the audit
    on = resolving(DEFAULT_RESOLVE_ON)
    [(opened, key)] = [(d.action, d.dedup_key) for d in decisions(trigger, on)]
    [(acked, same)] = [(d.action, d.dedup_key) for d in decisions(ack, on)]
    assert ("trigger", "acknowledge", key) == (opened, acked, same)


async def test_nothing_to_acknowledge_is_a_refusal_without_audit(store: SqlStore) -> None:
    await queued_since_t0(store)
    doer, audited = actions(store, Clock(T0 + 10))  # not stalled yet: no alert
    done = await doer.acknowledge("a", by="alice")
    assert (False, [], []) == (done.ok, audited.types, await queued(store))
    assert "no open alert" in done.message
    done = await doer.acknowledge("a\x1b[2J", by="alice")
    assert not done.ok and "\x1b" not in done.message


async def test_a_cancel_is_audited_with_the_apis_answer(store: SqlStore) -> None:
    said = CancelAnswer(True, "cancel requested: it is now CANCELLATION_REQUESTED", "requested")
    source = Cancelling(said)
    doer, audited = actions(store, Clock(T0), ft=source)
    done = await doer.cancel("ft", "j1", by="bob")
    assert [types.ACTION_CANCEL_REQUESTED] == audited.types
    assert (True, said.message, ["j1"]) == (done.ok, done.message, source.asked)
    [audit] = await queued(store)
    assert (types.ACTION_CANCEL_REQUESTED, "ft", "j1") == (audit.type, audit.source, audit.job_id)
    assert ("bob", True, "requested") == (
        audit.details["by"],
        audit.details["ok"],
        audit.details["outcome"],
    )


async def test_a_refused_cancel_is_audited_as_refused(store: SqlStore) -> None:
    source = Cancelling(CancelAnswer(False, "job j1 on source ft cannot be cancelled", "conflict"))
    doer, _ = actions(store, Clock(T0), ft=source)
    done = await doer.cancel("ft", "j1", by="bob")
    [audit] = await queued(store)
    assert (False, False, "conflict") == (done.ok, audit.details["ok"], audit.details["outcome"])


async def test_a_cancel_that_reaches_no_api_is_refused_without_audit(store: SqlStore) -> None:
    source = Cancelling(CancelAnswer(True, "yes", "requested"))
    doer, _ = actions(store, Clock(T0), ft=source, plain=Source())
    unknown = await doer.cancel("nope", "j1", by="bob")
    unable = await doer.cancel("plain", "j1", by="bob")
    bad = await doer.cancel("ft", "j\n1", by="bob")
    assert [False, False, False] == [unknown.ok, unable.ok, bad.ok]
    assert ([], []) == (source.asked, await queued(store))
    assert "cannot cancel" in unable.message and "control" in bad.message
