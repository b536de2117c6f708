"""The schedule behind the time rules (``stalled``, ``overrun``): reads snapshots and open
alerts, asks :mod:`watcher.detect.rules` what holds now, and records alert states with the
transitions they produce in one transaction (:meth:`~watcher.record.recorder.Recorder.alerts`).

- a condition that starts holding fires once (``<prefix>.stalled``);
- while it holds, it repeats every ``repeat_interval`` if the rule asks (same type,
  ``details.alert.repeat`` = n);
- when it stops holding (the job moved on or ended) a ``<prefix>.stalled.resolved``
  follows if the rule asks;
- an alert someone acknowledged (``watcher ack``: ``data["acknowledged"]``) is not
  repeated any more; its resolve is still sent, and a later spell fires anew.

A source that currently fails to poll has stale snapshots: its alerts are held back until
it answers again (``watcher.source.unreachable`` covers the outage).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import structlog

from watcher.abc import Source
from watcher.config import (
    OverrunRuleConfig,
    RuleConfig,
    SourceConfig,
    StalledRuleConfig,
    TimeRuleConfig,
)
from watcher.detect.rules import Condition, conditions
from watcher.model import types
from watcher.model.outbox import AlertState
from watcher.model.snapshot import Snapshot
from watcher.model.transitions import Transition, stable_id
from watcher.record.recorder import Recorder

log = structlog.get_logger(__name__)


class Alerting:
    def __init__(
        self,
        recorder: Recorder,
        sources: Mapping[str, tuple[Source, SourceConfig]],
        rules: Sequence[RuleConfig],
        *,
        clock: Callable[[], float] = time.time,
        owns: Callable[[str], bool] = lambda source: True,
    ) -> None:
        self.recorder = recorder
        self.store = recorder.store  # for reads: every write goes through the recorder
        self.owns = owns  # the replica polling a source also checks its alerts
        self.sources = dict(sources)
        self.rules = list(rules)
        self.time_rules: dict[str, TimeRuleConfig] = {
            r.key: r for r in rules if isinstance(r, StalledRuleConfig | OverrunRuleConfig)
        }
        self.clock = clock

    async def check(self) -> int:
        """One pass over every source; returns how many transitions it produced."""
        if not self.time_rules:
            return 0
        produced = 0
        for name in self.sources:
            if not self.owns(name):
                continue
            try:
                produced += await self._check(name)
            except Exception:
                log.exception("alert_check_failed", source=name)
        return produced

    async def _check(self, name: str) -> int:
        source, _ = self.sources[name]
        prefix = source.kind.prefix
        cursor = await self.store.load_cursor(name)
        if cursor.failing_since is not None or cursor.retired:
            return 0  # stale data: held back while the source cannot be polled
        now = self.clock()
        active = await self.store.active_snapshots(name)
        open_alerts = {a.id: a for a in await self.store.open_alerts(name)}
        holding: dict[str, tuple[Condition, Snapshot]] = {}
        for snapshot in active.values():
            for condition in conditions(self.rules, snapshot, now):
                holding[condition.alert_id(snapshot)] = (condition, snapshot)

        states: list[AlertState] = []
        out: list[Transition] = []
        for alert_id, (condition, snapshot) in holding.items():
            alert = open_alerts.get(alert_id)
            rule = condition.rule
            kind = types.job_type(prefix, rule.kind)
            if alert is None:
                # A spell that began before a silent first start is part of the baseline:
                # remembered (so it never fires later), never sent, repeated or resolved.
                # (API times are whole seconds: a spell from the baseline's own second is new.)
                silent = cursor.baseline_at is not None and snapshot.status_since < int(
                    cursor.baseline_at
                )
                states.append(
                    AlertState(
                        id=alert_id,
                        source=name,
                        job_id=snapshot.job_id,
                        rule=rule.key,
                        fired_at=now,
                        last_sent_at=now,
                        data={"type": kind, "silent": silent, **condition.details},
                    )
                )
                if not silent:
                    out.append(
                        self._transition(
                            alert_id, kind, rule, snapshot, condition.details, now, source=name
                        )
                    )
            elif alert.data.get("silent") or alert.data.get("acknowledged"):
                continue
            elif rule.repeat_interval and now - alert.last_sent_at >= rule.repeat_interval:
                repeat = alert.repeats + 1
                states.append(replace(alert, last_sent_at=now, repeats=repeat))
                out.append(
                    self._transition(
                        stable_id(alert_id, "repeat", repeat),
                        kind,
                        rule,
                        snapshot,
                        {**condition.details, "repeat": repeat},
                        now,
                        source=name,
                    )
                )
        for alert_id, alert in open_alerts.items():
            if alert_id in holding:
                continue
            states.append(replace(alert, resolved_at=now))
            known_rule = self.time_rules.get(alert.rule)
            if known_rule is None or not known_rule.resolved or alert.data.get("silent"):
                continue
            latest = active.get(alert.job_id) or (
                await self.store.get_snapshots(name, [alert.job_id])
            ).get(alert.job_id)
            kind = str(alert.data.get("type", types.job_type(prefix, known_rule.kind)))
            hidden = ("type", "silent", "acknowledged")
            facts = {k: v for k, v in alert.data.items() if k not in hidden}
            facts["resolved_after_seconds"] = round(now - alert.fired_at)
            out.append(
                self._transition(
                    stable_id(alert_id, "resolved"),
                    types.resolved(kind),
                    known_rule,
                    latest,
                    facts,
                    now,
                    source=name,
                    job_id=alert.job_id,
                )
            )
        if not states:
            return 0
        await self.recorder.alerts(name, states, out, now=now)
        for transition in out:
            log.info("alert", source=name, job_id=transition.job_id, type=transition.type)
        return len(out)

    @staticmethod
    def _transition(
        transition_id: str,
        type_: str,
        rule: TimeRuleConfig,
        snapshot: Snapshot | None,
        details: Mapping[str, object],
        now: float,
        *,
        source: str,
        job_id: str | None = None,
    ) -> Transition:
        return Transition(
            id=transition_id,
            type=type_,
            source=source,
            job_id=snapshot.job_id if snapshot else job_id,
            occurred_at=int(now),
            job=snapshot.job if snapshot else {},
            details={"alert": {"rule": rule.key, **details}},
        )
