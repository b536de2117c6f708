"""The time rules' schedule: an alert fires once, repeats if asked, resolves when its
condition ends, and stays quiet for a failing source or a spell older than a silent start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.factories import T0, job
from tests.unit.record.fakes import Clock, Counted, ft_config
from watcher.config import RouteConfig, StalledRuleConfig
from watcher.detect.diff import diff
from watcher.detect.routing import Router
from watcher.model.snapshot import Cursor
from watcher.record.alerting import Alerting
from watcher.record.recorder import Recorder
from watcher.sources.fine_tuning import KIND
from watcher.stores.sql import SqlStore

STALLED = StalledRuleConfig(kind="stalled", after={"QUEUED": 60}, repeat_interval=600)


class Source:
    name = "ft"
    kind = KIND
    interval = 1.0

    async def poll(self, ctx: Any) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


async def queued_since_t0(store: SqlStore, cursor: Cursor | None = None) -> None:
    """Job ``a`` of source ``ft``, QUEUED since T0, as the last cycle committed it."""
    snapshot, _ = diff(None, job("a", "QUEUED", created_at=T0), source="ft", kind=KIND)
    await store.commit("ft", cursor or Cursor(baseline_done=True), [snapshot], [], now=T0)


def alerting(
    store: SqlStore,
    clock: Clock,
    *,
    rules: list[Any] | None = None,
    owns: Callable[[str], bool] = lambda source: True,
) -> tuple[Alerting, Counted]:
    counted = Counted()
    recorder = Recorder(store, Router([RouteConfig(sinks=["hooks"])]), metrics=counted)
    sources = {"ft": (Source(), ft_config())}
    rules = [STALLED] if rules is None else rules
    return Alerting(recorder, sources, rules, clock=clock, owns=owns), counted


async def test_an_alert_fires_once_then_repeats_when_asked(sqlite: SqlStore) -> None:
    """A stalled job alerts once when its limit passes, then once per repeat_interval."""
    await queued_since_t0(sqlite)
    clock = Clock(T0 + 100)
    rules, counted = alerting(sqlite, clock)
    fired = await rules.check()
    clock.now = T0 + 200
    quiet = await rules.check()
    clock.now = T0 + 700
    repeated = await rules.check()
    assert (1, 0, 1) == (fired, quiet, repeated)
    assert ["fine_tuning.job.stalled"] * 2 == counted.types
    (alert,) = await sqlite.open_alerts("ft")
    assert (1, T0 + 700) == (alert.repeats, alert.last_sent_at)


async def test_an_alert_resolves_when_its_condition_ends(sqlite: SqlStore) -> None:
    """When the job moves on, the alert closes and a ``.resolved`` transition follows."""
    await queued_since_t0(sqlite)
    clock = Clock(T0 + 100)
    rules, counted = alerting(sqlite, clock)
    await rules.check()
    running, _ = diff(None, job("a", "RUNNING", created_at=T0), source="ft", kind=KIND)
    await sqlite.commit("ft", Cursor(baseline_done=True), [running], [], now=T0 + 150)
    clock.now = T0 + 200
    assert 1 == await rules.check()
    assert ["fine_tuning.job.stalled", "fine_tuning.job.stalled.resolved"] == counted.types
    assert [] == await sqlite.open_alerts("ft")


async def test_alerts_are_held_back_while_the_source_fails(sqlite: SqlStore) -> None:
    """A source that cannot be polled has stale snapshots: no alert is raised from them."""
    await queued_since_t0(sqlite, Cursor(baseline_done=True, failing_since=float(T0)))
    rules, counted = alerting(sqlite, Clock(T0 + 100))
    assert (0, [], []) == (await rules.check(), counted.types, await sqlite.open_alerts("ft"))


async def test_a_spell_older_than_a_silent_start_is_never_sent(sqlite: SqlStore) -> None:
    """A job already stalled at the silent first start is remembered, never reported."""
    await queued_since_t0(sqlite, Cursor(baseline_done=True, baseline_at=float(T0 + 50)))
    clock = Clock(T0 + 100)
    rules, counted = alerting(sqlite, clock)
    fired = await rules.check()
    clock.now = T0 + 2000
    repeated = await rules.check()
    (alert,) = await sqlite.open_alerts("ft")
    assert (0, 0, [], True) == (fired, repeated, counted.types, alert.data["silent"])


async def test_only_the_sources_this_replica_polls_are_checked(sqlite: SqlStore) -> None:
    """Another replica's source is its business: nothing fires here."""
    await queued_since_t0(sqlite)
    rules, counted = alerting(sqlite, Clock(T0 + 100), owns=lambda source: False)
    assert (0, []) == (await rules.check(), counted.types)


async def test_without_time_rules_nothing_is_read(sqlite: SqlStore) -> None:
    """With no stalled or overrun rule, a pass does nothing at all."""
    await queued_since_t0(sqlite)
    rules, counted = alerting(sqlite, Clock(T0 + 100), rules=[])
    assert (0, []) == (await rules.check(), counted.types)
