"""What PagerDuty hears: the decision per transition, dedup keys, severities, sanitized and
capped fields, a huge job that still pages, and refused settings."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import pytest

from tests.factories import sink_job as job
from tests.fakes.pagerduty import ROUTING_KEY
from tests.unit.sinks.pagerduty.support import (
    JOB_ID,
    JOB_KEY,
    alert,
    mock_sink,
    other,
    status,
)
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.sinks.pagerduty import MAX_EVENT_BYTES, PagerDutySink, decide


@pytest.mark.parametrize(
    ("envelope", "expected"),
    [
        pytest.param(status("FAILED"), ("trigger", JOB_KEY), id="failed"),
        pytest.param(status("failed_validation"), ("trigger", JOB_KEY), id="lowercase"),
        pytest.param(
            status("TIMEOUT_EXCEEDED", type="batch.job.timeout_exceeded"),
            ("trigger", JOB_KEY),
            id="batch timeout",
        ),
        pytest.param(status("SUCCESS"), ("resolve", JOB_KEY), id="success"),
        pytest.param(status("Cancelled"), ("resolve", JOB_KEY), id="cancelled"),
        pytest.param(status("RUNNING"), None, id="running"),
        pytest.param(
            alert("overrun"), ("trigger", f"{JOB_KEY}/overrun/2026-11-18T08:00:00Z"), id="overrun"
        ),
        pytest.param(
            alert("overrun", resolved=True),
            ("resolve", f"{JOB_KEY}/overrun/2026-11-18T08:00:00Z"),
            id="overrun resolved",
        ),
        pytest.param(
            other("watcher.source.retired", job_id=None),
            ("trigger", "watcher/ft/source"),
            id="retired",
        ),
        pytest.param(other("fine_tuning.job.resolved"), None, id="bare resolved"),
    ],
)
def test_decide(envelope: Envelope, expected: tuple[str, str] | None) -> None:
    """Which transitions trigger, which resolve, and on which dedup_key."""
    decision = decide(envelope.transition, frozenset({"SUCCESS", "CANCELLED"}))
    actual = None if decision is None else (decision.action, decision.dedup_key)
    assert expected == actual


def test_two_spells_of_a_stall_have_two_keys() -> None:
    """A late resolution of an earlier spell cannot close the next spell's alert."""
    resolve_on = frozenset({"SUCCESS"})
    first = decide(alert(since="2026-11-18T08:00:00Z", resolved=True).transition, resolve_on)
    second = decide(alert(since="2026-11-18T09:00:00Z").transition, resolve_on)
    assert first is not None and second is not None
    assert first.dedup_key != second.dedup_key


def test_dedup_key_is_capped_at_255() -> None:
    """A hostile, very long job id still gives a dedup_key of at most 255 characters."""
    long_id = "x" * 400
    decision = decide(status("FAILED", job_id=long_id).transition, frozenset())
    assert decision is not None
    assert 255 == len(decision.dedup_key)
    other_key = decide(status("FAILED", job_id="x" * 399 + "y").transition, frozenset())
    assert other_key is not None and other_key.dedup_key != decision.dedup_key


async def test_resolve_on_is_configurable() -> None:
    """With resolve_on [SUCCESS] a cancellation is no longer a resolve."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    sink = mock_sink(handler, resolve_on=["success"])
    await sink.send([status("CANCELLED")])
    assert [] == seen


@pytest.mark.parametrize(
    ("envelope", "severity", "expected"),
    [
        pytest.param(status("FAILED"), None, "error", id="failed default"),
        pytest.param(status("TIMEOUT_EXCEEDED"), None, "error", id="timeout default"),
        pytest.param(alert("overrun"), None, "warning", id="overrun default"),
        pytest.param(other("watcher.source.retired", job_id=None), None, "info", id="retired"),
        pytest.param(status("FAILED"), {"FAILED": "critical"}, "critical", id="by status"),
        pytest.param(status("FAILED"), {"failed": "Warning"}, "warning", id="any case"),
        pytest.param(
            status("FAILED"),
            {"FAILED": "info", "fine_tuning.job.failed": "critical"},
            "critical",
            id="type wins over status",
        ),
        pytest.param(alert("stalled"), {"stalled": "critical"}, "critical", id="by kind"),
    ],
)
async def test_severity(envelope: Envelope, severity: dict[str, str] | None, expected: str) -> None:
    """Severity per status or kind by default, overridden by type or status."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(202)

    await mock_sink(handler, severity=severity).send([envelope])
    assert [expected] == [event["payload"]["severity"] for event in seen]


async def test_hostile_fields_are_sanitized_and_capped() -> None:
    """Line breaks and control characters in API strings are flattened; summary <= 1024."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(202)

    hostile = job(model="m\r\nX-Injected: 1\x1b[31m", suffix="s" * 3000)
    await mock_sink(handler).send([status("FAILED", job=hostile)])
    payload = seen[0]["payload"]
    assert len(payload["summary"]) <= 1024
    assert not any(ch in payload["summary"] + payload["component"] for ch in "\r\n\x1b")


async def test_a_huge_job_still_pages() -> None:
    """A job too large for PagerDuty's 512 KB is sent with trimmed details, not dropped."""
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(202)

    huge = job(errors=[{"message": "e" * 1000, "count": i} for i in range(1000)])
    await mock_sink(handler).send([status("FAILED", job=huge)])
    assert len(seen[0]) <= MAX_EVENT_BYTES
    details = json.loads(seen[0])["payload"]["custom_details"]
    assert (True, JOB_ID, "FAILED") == (
        details["truncated"],
        details["job"]["id"],
        details["status"],
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"url": "ftp://events.example/"}, "url must be", id="scheme"),
        pytest.param({"url": "not a url"}, "url must be", id="no host"),
        pytest.param({"timeout": 0}, "timeout must be positive", id="timeout"),
        pytest.param({"severity": {"FAILED": "sev1"}}, "must be one of", id="severity level"),
        pytest.param({"resolve_on": ["SUCCESS", "failed"]}, "a status that triggers", id="clash"),
        pytest.param({"routing_key": Secret(" ")}, "routing_key", id="blank key"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    """Invalid settings raise ValueError naming the sink and the setting, never the key."""
    settings: dict[str, Any] = {"routing_key": Secret(ROUTING_KEY)} | kwargs
    with pytest.raises(ValueError, match=message) as caught:
        PagerDutySink("oncall", client=httpx.AsyncClient(), **settings)
    assert "'oncall'" in str(caught.value)
    assert ROUTING_KEY not in str(caught.value)
