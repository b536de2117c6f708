"""PagerDutySink against the fake PagerDuty: failures trigger and recoveries resolve with
the same dedup key, across restarts; stalls and sources have their own alerts."""

from __future__ import annotations

import pytest

from tests.unit.sinks.pagerduty.support import (
    JOB_KEY,
    NOW,
    Wire,
    alert,
    other,
    status,
)
from watcher.exceptions import DeliveryError
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.model.transitions import source_recovered, source_unreachable


async def test_failure_triggers_then_success_resolves_with_the_same_key(wire: Wire) -> None:
    """A FAILED job triggers once; its later SUCCESS resolves the same dedup_key."""
    sink = wire.sink()
    await sink.send([status("FAILED")])
    await sink.send([status("SUCCESS", previous="FAILED")])
    assert [("trigger", JOB_KEY), ("resolve", JOB_KEY)] == wire.fake.actions()


async def test_a_restarted_sink_resolves_with_the_same_key(wire: Wire) -> None:
    """A new sink instance (a restart, no state) resolves the alert an earlier one opened."""
    await wire.sink().send([status("FAILED")])
    await wire.sink().send([status("CANCELLED", previous="FAILED")])
    assert [("trigger", JOB_KEY), ("resolve", JOB_KEY)] == wire.fake.actions()


async def test_trigger_payload(wire: Wire) -> None:
    """The trigger carries summary, source, severity, timestamp, component/group/class, details."""
    envelope = status("FAILED")
    await wire.sink(client_url="https://watcher.example.com/").send([envelope])

    (event,) = wire.fake.events
    expected = {
        "summary": "FAILED: fine-tuning job 3b9c1e7a… (open-mistral-7b, support-bot) on ft",
        "source": "ft",
        "severity": "error",
        "timestamp": "2026-11-18T10:50:00Z",
        "component": "open-mistral-7b",
        "group": "completion",
        "class": "fine_tuning.job.failed",
        "custom_details": {
            **envelope.transition.data(),
            "type": "fine_tuning.job.failed",
            "transition_id": "wt_failed",
        },
    }
    assert expected == event["payload"]
    top = {k: event[k] for k in ("event_action", "dedup_key", "client", "client_url")}
    expected_top = {
        "event_action": "trigger",
        "dedup_key": JOB_KEY,
        "client": "watcher",
        "client_url": "https://watcher.example.com/",
    }
    assert expected_top == top


async def test_resolve_is_minimal(wire: Wire) -> None:
    """A resolve sends only the routing key, the action and the dedup_key."""
    await wire.sink().send([status("SUCCESS")])
    assert [{"routing_key", "event_action", "dedup_key"}] == [set(e) for e in wire.fake.events]


async def test_stall_triggers_and_its_resolution_resolves(wire: Wire) -> None:
    """A stall alert triggers at warning; stalled.resolved resolves the same key."""
    await wire.sink().send([alert("stalled"), alert("stalled", resolved=True)])
    key = f"{JOB_KEY}/stalled/2026-11-18T08:00:00Z"
    assert [("trigger", key), ("resolve", key)] == wire.fake.actions()
    assert "warning" == wire.fake.events[0]["payload"]["severity"]
    expected = (
        "STALLED: fine-tuning job 3b9c1e7a… (open-mistral-7b, support-bot) on ft: "
        "QUEUED since 2026-11-18T08:00:00Z"
    )
    assert expected == wire.fake.events[0]["payload"]["summary"]


async def test_a_stall_resolving_on_failure_leaves_the_failure_open(wire: Wire) -> None:
    """A job that stalls then fails: the stall's resolution does not close the failure's alert."""
    await wire.sink().send([alert("stalled"), status("FAILED"), alert("stalled", resolved=True)])
    actions = wire.fake.actions()
    assert ("trigger", JOB_KEY) == actions[1]
    assert ("resolve", JOB_KEY) not in actions


async def test_non_paging_transitions_make_no_request(wire: Wire) -> None:
    """Progress, checkpoints and other statuses are accepted without a request."""
    batch = [
        status("QUEUED", previous="VALIDATED"),
        status("RUNNING", previous="QUEUED"),
        status("CANCELLATION_REQUESTED"),
        other("fine_tuning.job.checkpoint", details={"checkpoint": {"step_number": 10}}),
        other("fine_tuning.job.model_ready"),
        other("fine_tuning.job.cost_exceeded"),
        other("watcher.digest", job_id=None),
    ]
    await wire.sink().send(batch)
    assert 0 == wire.fake.requests


async def test_source_unreachable_then_recovered(wire: Wire) -> None:
    """An unreachable source pages critical on the source's key; recovery resolves it."""
    down = Envelope(transition=source_unreachable("ft", NOW - 600, "ConnectError"), detected_at=NOW)
    up = Envelope(transition=source_recovered("ft", NOW - 600, NOW), detected_at=NOW)
    await wire.sink().send([down, up])
    assert [("trigger", "watcher/ft/source"), ("resolve", "watcher/ft/source")] == (
        wire.fake.actions()
    )
    payload = wire.fake.events[0]["payload"]
    assert ("critical", "source ft unreachable: ConnectError") == (
        payload["severity"],
        payload["summary"],
    )


async def test_400_is_final_with_pagerduty_reason(wire: Wire) -> None:
    """PagerDuty's 400 is final, its message and errors quoted (the key never)."""
    sink = wire.sink(routing_key=Secret("wrong-key-000000"))
    with pytest.raises(DeliveryError) as caught:
        await sink.send([status("FAILED")])
    assert not caught.value.retryable
    assert "HTTP 400: Event object is invalid; Invalid routing key" in str(caught.value)
    assert len(str(caught.value).partition("HTTP 400: ")[2]) <= 200


async def test_429_is_retryable_with_retry_after(wire: Wire) -> None:
    """A rate-limited event is retryable, PagerDuty's Retry-After honoured."""
    wire.fake.answer = (429, {"status": "throttle event"}, {"retry-after": "120"})
    with pytest.raises(DeliveryError) as caught:
        await wire.sink().send([status("FAILED")])
    assert (True, 120.0) == (caught.value.retryable, caught.value.retry_after)


async def test_a_test_message_opens_and_resolves_a_real_incident(wire: Wire) -> None:
    """``watcher test-sink``'s message proves the routing key and the way to PagerDuty: a
    trigger at info severity, resolved at once under the same key (issue 15, item 15: it
    used to be accepted without a request)."""
    from watcher.model import types
    from watcher.model.transitions import Transition

    test = Transition(
        id="wt_test_1", type=types.TEST, source="watcher", occurred_at=int(NOW),
        details={"reason": "TEST MESSAGE from `watcher test-sink`: no job is concerned"},
    )  # fmt: skip
    await wire.sink().send([Envelope(test, NOW)])
    actions = wire.fake.actions()
    assert ["trigger", "resolve"] == [action for action, _ in actions]
    assert actions[0][1] == actions[1][1]
    trigger = wire.fake.events[0]
    assert "info" == trigger["payload"]["severity"]
    assert trigger["payload"]["summary"].startswith("TEST (resolved at once): TEST MESSAGE")
