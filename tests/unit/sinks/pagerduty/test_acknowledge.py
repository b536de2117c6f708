"""``watcher.action.acknowledged`` to PagerDuty: one ``acknowledge`` per alert it names,
keyed like the alert's trigger; nothing for an acknowledgement it cannot read."""

from __future__ import annotations

from typing import Any

import pytest

from watcher.model import types
from watcher.model.transitions import Transition, action_taken
from watcher.sinks.pagerduty.meaning import DEFAULT_RESOLVE_ON, decide, decisions, resolving

ON = resolving(DEFAULT_RESOLVE_ON)


def ack(**details: Any) -> Transition:
    return action_taken(types.ACTION_ACKNOWLEDGED, "ft", "j1", by="al", at=1e9, key="k", **details)


def test_each_named_alert_is_acknowledged_under_its_triggers_key() -> None:
    stalled = Transition(
        id="t",
        type="fine_tuning.job.stalled",
        source="ft",
        job_id="j1",
        details={"alert": {"rule": "stalled", "since": "2026-01-01T00:00:00Z"}},
    )
    overrun = Transition(
        id="u",
        type="fine_tuning.job.overrun",
        source="ft",
        job_id="j1",
        details={"alert": {"rule": "overrun"}},
    )
    trigger_keys = [decide(t, ON).dedup_key for t in (stalled, overrun)]  # type: ignore[union-attr]
    alerts = [{"rule": "stalled", "since": "2026-01-01T00:00:00Z"}, {"rule": "overrun"}]
    acks = decisions(ack(alerts=alerts), ON)
    assert [("acknowledge", k) for k in trigger_keys] == [(d.action, d.dedup_key) for d in acks]


@pytest.mark.parametrize(
    "details",
    [{}, {"alerts": "stalled"}, {"alerts": [{"since": "x"}, "stalled", None]}],
)
def test_an_acknowledgement_it_cannot_read_sends_nothing(details: dict[str, Any]) -> None:
    assert [] == decisions(ack(**details), ON)


def test_other_transitions_decide_as_before() -> None:
    failed = Transition(id="f", type="fine_tuning.job.failed", source="ft", job_id="j1",
                        status="FAILED", previous_status="RUNNING")  # fmt: skip
    assert [decide(failed, ON)] == decisions(failed, ON)
