"""PagerDutySink's answers: the retry verdict per status, transport errors, the deadline,
a batch stopping at its first failure, request headers, no routing key leak."""

from __future__ import annotations

import json

import anyio
import httpx2 as httpx
import pytest
from structlog.testing import capture_logs

from tests.fakes.pagerduty import ROUTING_KEY
from tests.unit.sinks.pagerduty.support import (
    Handler,
    alert,
    answering,
    mock_sink,
    status,
)
from watcher.exceptions import DeliveryError


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
    assert "cannot connect to" in str(caught.value)


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
