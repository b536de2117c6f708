"""PagerDutySink: Events API v2 triggers and resolves, stable dedup keys, no secret leaks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from tests.factories import SINK_JOB_ID, sink_envelope
from tests.factories import sink_job as job
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from watcher.abc import Envelope
from watcher.app.httpserver import serve_app
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.model.transitions import Transition, source_recovered, source_unreachable
from watcher.sinks.pagerduty import MAX_EVENT_BYTES, PagerDutySink, decide

NOW = 1_795_000_000.0
JOB_ID = SINK_JOB_ID
JOB_KEY = f"watcher/ft/{JOB_ID}"

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


def status(new: str, previous: str = "RUNNING", **overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "id": f"wt_{new.lower()}",
        "type": f"fine_tuning.job.{new.lower()}",
        "status": new,
        "previous_status": previous,
        "job": job(status=new),
    }
    return sink_envelope(detected_at=NOW, **(fields | overrides))


def alert(
    kind: str = "stalled", *, resolved: bool = False, since: str = "2026-11-18T08:00:00Z"
) -> Envelope:
    facts: dict[str, Any] = {"rule": kind, "status": "QUEUED", "since": since}
    if resolved:
        facts["resolved_after_seconds"] = 600
    transition = Transition(
        id=f"wt_{kind}_{since}_{resolved}",
        type=f"fine_tuning.job.{kind}" + (".resolved" if resolved else ""),
        source="ft",
        job_id=JOB_ID,
        occurred_at=1_794_999_500,
        job=job(status="QUEUED"),
        details={"alert": facts},
    )
    return Envelope(transition=transition, detected_at=NOW)


def other(type_: str, **overrides: Any) -> Envelope:
    fields: dict[str, Any] = {"id": "wt_other", "type": type_, "source": "ft", "job_id": JOB_ID}
    return Envelope(transition=Transition(**(fields | overrides)), detected_at=NOW)


@dataclass
class Wire:
    fake: FakePagerDuty
    url: str
    client: httpx.AsyncClient

    def sink(self, **kwargs: Any) -> PagerDutySink:
        # The sink's own deadline bounds every exchange (STYLE: every wait has a limit).
        settings: dict[str, Any] = {"routing_key": Secret(ROUTING_KEY), "timeout": 3.0}
        return PagerDutySink("oncall", client=self.client, url=self.url, **(settings | kwargs))


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    fake = FakePagerDuty()
    async with serve_app(fake.app()) as base, httpx.AsyncClient() as client:
        yield Wire(fake, f"{base}/v2/enqueue", client)


def mock_sink(handler: Handler, **kwargs: Any) -> PagerDutySink:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return PagerDutySink("oncall", client=client, routing_key=Secret(ROUTING_KEY), **kwargs)


def answering(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json=body, headers=headers)

    return handler


# --- over the wire -------------------------------------------------------------------------


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


# --- answers and failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "headers", "retryable", "retry_after"),
    [
        pytest.param(202, {}, None, None, id="202 done"),
        pytest.param(200, {}, None, None, id="200 done"),
        pytest.param(400, {}, False, None, id="400 final"),
        pytest.param(403, {}, False, None, id="403 final"),
        pytest.param(404, {}, False, None, id="404 final"),
        pytest.param(301, {"location": "https://x.example/"}, False, None, id="redirect final"),
        pytest.param(429, {}, True, 30.0, id="429 waits 30 s"),
        pytest.param(429, {"retry-after": "5"}, True, 30.0, id="429 waits at least 30 s"),
        pytest.param(500, {}, True, None, id="500 retried"),
        pytest.param(503, {"retry-after": "7"}, True, 7.0, id="503 with Retry-After"),
    ],
)
async def test_answers(
    code: int, headers: dict[str, str], retryable: bool | None, retry_after: float | None
) -> None:
    """202 accepted; 400 and other 4xx final; 429 and 5xx retryable with their wait."""
    sink = mock_sink(answering(code, {"status": "x", "message": "m"}, headers))
    if retryable is None:
        await sink.send([status("FAILED")])
        return
    with pytest.raises(DeliveryError) as caught:
        await sink.send([status("FAILED")])
    assert (retryable, retry_after) == (caught.value.retryable, caught.value.retry_after)


async def test_transport_error_is_retryable() -> None:
    """A connection failure is retryable."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(DeliveryError) as caught:
        await mock_sink(handler).send([status("FAILED")])
    assert caught.value.retryable
    assert "ConnectError: connection refused" in str(caught.value)


async def test_slow_answer_hits_the_deadline() -> None:
    """A peer that does not answer within the timeout gives a retryable error."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(202)

    with anyio.fail_after(3), pytest.raises(DeliveryError) as caught:
        await mock_sink(handler, timeout=0.1).send([status("FAILED")])
    assert caught.value.retryable
    assert "no answer within 0.1s" in str(caught.value)


async def test_batch_stops_at_the_first_failure() -> None:
    """Envelopes are sent in order and the first failure stops the batch."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["event_action"])
        return httpx.Response(500 if len(seen) == 2 else 202)

    with pytest.raises(DeliveryError):
        await mock_sink(handler).send([alert(), status("FAILED"), status("SUCCESS")])
    assert ["trigger", "trigger"] == seen


async def test_request_headers() -> None:
    """The event is JSON, posted to the configured URL with a JSON content type."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    await mock_sink(handler).send([status("FAILED")])
    (request,) = seen
    expected = ("POST", "https://events.pagerduty.com/v2/enqueue", "application/json")
    assert expected == (request.method, str(request.url), request.headers["content-type"])


async def test_routing_key_never_leaks() -> None:
    """No error and no log line carries the routing key, even when the peer echoes it."""
    answers: list[Handler] = [
        answering(400, {"message": f"bad key {ROUTING_KEY}", "errors": [ROUTING_KEY]}),
        answering(429, {"message": ROUTING_KEY}),
        answering(500, None),
        answering(418, {"unexpected": ROUTING_KEY}),
    ]

    def transport_error(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {ROUTING_KEY}", request=request)

    answers.append(transport_error)
    errors: list[str] = []
    with capture_logs() as logs:
        for handler in answers:
            sink = mock_sink(handler)
            assert ROUTING_KEY not in repr(vars(sink))
            with pytest.raises(DeliveryError) as caught:
                await sink.send([status("FAILED")])
            errors.append(str(caught.value))
        await mock_sink(answering(202)).send([status("FAILED"), status("SUCCESS")])
    assert [] == [e for e in errors if ROUTING_KEY in e]
    assert ROUTING_KEY not in repr(logs)
    assert {"pagerduty_rejected", "pagerduty_delivered"} <= {entry["event"] for entry in logs}
    assert any("<redacted>" in e for e in errors)


# --- the decision, the severity, the payload ---------------------------------------------


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
