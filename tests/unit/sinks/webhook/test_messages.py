"""WebhookSink's messages: the Standard Webhooks body, headers and signature, one message
per envelope in order, one log line each, and a real receiver over loopback."""

from __future__ import annotations

import base64
import json
import time

import anyio
import httpx2 as httpx
import pytest
import standardwebhooks
from structlog.testing import capture_logs

from tests.factories import sink_job as job
from tests.unit.sinks.webhook.support import (
    NOW,
    SECRET,
    URL,
    envelope,
    make_sink,
    recorder,
)
from watcher import __version__
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.sinks.webhook import WebhookSink


async def test_body_is_the_contract_payload() -> None:
    """The body is compact JSON {type, timestamp, data} with the contract's data fields."""
    seen, handler = recorder()
    await make_sink(handler).send([envelope()])

    expected = {
        "type": "fine_tuning.job.failed",
        "timestamp": "2026-11-18T10:50:00Z",
        "data": {
            "source": "ft",
            "job": job(),
            "status": "FAILED",
            "previous_status": "RUNNING",
            "occurred_at": "2026-11-18T10:50:00Z",
        },
    }
    assert [expected] == [json.loads(request.content) for request in seen]
    compact = json.dumps(expected, separators=(",", ":")).encode()
    assert compact == seen[0].content


async def test_headers() -> None:
    """Content type, user agent, webhook-id (the transition id) and the integer timestamp."""
    seen, handler = recorder()
    await make_sink(handler).send([envelope("wt_abc")])

    headers = seen[0].headers
    expected = {
        "content-type": "application/json",
        "user-agent": f"watcher/{__version__}",
        "webhook-id": "wt_abc",
        "webhook-timestamp": str(int(NOW)),
    }
    assert expected == {key: headers[key] for key in expected}
    assert headers["webhook-signature"].startswith("v1,")


async def test_signature_verifies_with_standardwebhooks() -> None:
    """The signature verifies with the receivers' own library and the shared secret."""
    seen, handler = recorder()
    await make_sink(handler, clock=time.time).send([envelope()])

    payload = standardwebhooks.Webhook(SECRET).verify(seen[0].content, dict(seen[0].headers))
    expected = envelope().transition.payload(NOW)
    assert expected == payload


async def test_signature_fails_with_another_secret() -> None:
    """A receiver holding another secret rejects the message."""
    seen, handler = recorder()
    await make_sink(handler, clock=time.time).send([envelope()])

    other = "whsec_" + base64.b64encode(b"x" * 24).decode()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(seen[0].content, dict(seen[0].headers))


async def test_no_signature_without_secret() -> None:
    """Without a secret no webhook-signature header is sent."""
    seen, handler = recorder()
    await make_sink(handler, secret=None).send([envelope()])

    assert "webhook-signature" not in seen[0].headers


async def test_one_message_per_envelope_in_order() -> None:
    """A batch becomes one message per transition, in batch order."""
    seen, handler = recorder()
    await make_sink(handler).send([envelope("wt_1"), envelope("wt_2"), envelope("wt_3")])

    expected = ["wt_1", "wt_2", "wt_3"]
    assert expected == [r.headers["webhook-id"] for r in seen]


async def test_batch_stops_at_first_failure() -> None:
    """The first failing message raises and the rest of the batch is not sent."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["webhook-id"])
        return httpx.Response(503 if request.headers["webhook-id"] == "wt_2" else 200)

    with pytest.raises(DeliveryError):
        await make_sink(handler).send([envelope("wt_1"), envelope("wt_2"), envelope("wt_3")])
    expected = ["wt_1", "wt_2"]
    assert expected == seen


async def test_extra_headers_sent_but_cannot_override_protocol_headers() -> None:
    """Configured headers are sent; the Standard Webhooks headers stay watcher's own."""
    seen, handler = recorder()
    sink = make_sink(handler, headers={"authorization": "Bearer abc", "webhook-id": "forged"})
    await sink.send([envelope("wt_real")])

    expected = ("Bearer abc", "wt_real")
    assert expected == (seen[0].headers["authorization"], seen[0].headers["webhook-id"])


async def test_lone_surrogate_becomes_a_replacement_character_and_is_still_signed() -> None:
    """A lone surrogate from the API never reaches the receiver (issue 15, item 14: a strict
    one answers 500 for ever): it becomes U+FFFD, the body is valid UTF-8 without a
    surrogate escape, and the signature still verifies."""
    seen, handler = recorder()
    hostile = envelope(job=job(suffix="bad\ud800", metadata={"k\udc00": ["\udbff"]}))
    await make_sink(handler, clock=time.time).send([hostile])

    seen[0].content.decode("utf-8")  # strict: raises on anything invalid
    assert b"\\ud" not in seen[0].content
    payload = standardwebhooks.Webhook(SECRET).verify(seen[0].content, dict(seen[0].headers))
    job_seen = payload["data"]["job"]
    assert ("bad\ufffd", {"k\ufffd": ["\ufffd"]}) == (job_seen["suffix"], job_seen["metadata"])


async def test_one_log_line_per_delivered_transition() -> None:
    """Each accepted transition logs webhook_delivered once, at debug (the dispatcher's
    ``delivered`` line is the info-level one)."""
    _, handler = recorder(202)
    with capture_logs() as logs:
        await make_sink(handler).send([envelope("wt_1"), envelope("wt_2")])

    expected = [
        {
            "event": "webhook_delivered",
            "log_level": "debug",
            "sink": "hooks",
            "transition_id": tid,
            "type": "fine_tuning.job.failed",
            "status_code": 202,
        }
        for tid in ("wt_1", "wt_2")
    ]
    assert expected == logs


async def test_aclose_leaves_the_shared_client_open() -> None:
    """Closing the sink does not close the client it was given."""
    _, handler = recorder()
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    sink = WebhookSink("hooks", URL, secret=None, client=client)
    await sink.aclose()

    assert not client.is_closed
    await client.aclose()


async def test_through_the_wire_to_a_real_receiver() -> None:
    """Over loopback, the Receiver verifies the signature and records the transition."""
    receiver = Receiver(SECRET)
    with anyio.fail_after(10):
        async with serve_app(receiver.app) as base, httpx.AsyncClient() as client:
            sink = WebhookSink(
                "hooks", f"{base}/hook?token=abc", secret=Secret(SECRET), client=client
            )
            await sink.send([envelope("wt_wire")])

    expected = [("wt_wire", "fine_tuning.job.failed", True, None, 200)]
    assert expected == [(r.id, r.type, r.valid, r.error, r.status) for r in receiver.received]
    assert envelope().transition.data() == receiver.received[0].data
