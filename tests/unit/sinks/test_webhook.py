"""WebhookSink: Standard Webhooks messages, the retry verdict per status, no secret leaks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from typing import Any

import anyio
import httpx
import pytest
import standardwebhooks
from structlog.testing import capture_logs

from tests.factories import sink_envelope
from tests.factories import sink_job as job
from watcher import __version__
from watcher.abc import Envelope
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.sinks.webhook import WebhookSink, redact_url

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
NOW = 1_795_000_000.0
URL = "https://hooks.example.com/mistral"

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


def envelope(tid: str = "wt_0001", **overrides: Any) -> Envelope:
    return sink_envelope(id=tid, detected_at=NOW, **overrides)


def make_sink(
    handler: Handler,
    *,
    url: str = URL,
    secret: str | None = SECRET,
    clock: Callable[[], float] = lambda: NOW,
    **kwargs: Any,
) -> WebhookSink:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return WebhookSink(
        "hooks",
        url,
        secret=Secret(secret) if secret is not None else None,
        client=client,
        clock=clock,
        **kwargs,
    )


def recorder(
    status: int = 200, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[list[httpx.Request], Handler]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers=headers, content=body)

    return seen, handler


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


async def test_lone_surrogate_is_escaped_and_still_signed() -> None:
    """A lone surrogate from the API is sent ASCII-escaped and the signature still verifies."""
    seen, handler = recorder()
    hostile = envelope(job=job(suffix="bad\ud800"))
    await make_sink(handler, clock=time.time).send([hostile])

    payload = standardwebhooks.Webhook(SECRET).verify(seen[0].content, dict(seen[0].headers))
    expected = "bad\ud800"
    assert expected == payload["data"]["job"]["suffix"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "done"),
        (201, "done"),
        (204, "done"),
        (299, "done"),
        (301, "final"),
        (400, "final"),
        (401, "final"),
        (404, "final"),
        (408, "retry"),
        (409, "final"),
        (410, "final"),
        (422, "final"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (504, "retry"),
    ],
)
async def test_status_verdict(status: int, expected: str) -> None:
    """2xx is accepted, 408/429/5xx retryable, other statuses final."""
    _, handler = recorder(status)
    error: DeliveryError | None = None
    try:
        await make_sink(handler).send([envelope()])
    except DeliveryError as exc:
        error = exc
    actual = "done" if error is None else ("retry" if error.retryable else "final")
    assert expected == actual
    assert error is None or f"HTTP {status}" in str(error)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("120", 120.0, id="delta-seconds"),
        pytest.param(formatdate(NOW + 90, usegmt=True), 90.0, id="HTTP-date"),
        pytest.param("soon", None, id="unparseable"),
        pytest.param(None, None, id="absent"),
    ],
)
async def test_retry_after_honoured(header: str | None, expected: float | None) -> None:
    """Retry-After (seconds or HTTP date, against the sink's clock) becomes retry_after."""
    _, handler = recorder(429, headers={"retry-after": header} if header else None)
    with pytest.raises(DeliveryError) as caught:
        await make_sink(handler).send([envelope()])

    assert (True, expected) == (caught.value.retryable, caught.value.retry_after)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_transport_errors_are_retryable(error: httpx.HTTPError) -> None:
    """Connection errors, timeouts and protocol errors are retryable and named."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(DeliveryError) as caught:
        await make_sink(handler).send([envelope()])

    assert caught.value.retryable
    assert type(error).__name__ in str(caught.value)


async def test_slow_peer_hits_the_overall_deadline() -> None:
    """A peer that does not answer within the timeout gives a retryable error."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(200)

    with anyio.fail_after(3), pytest.raises(DeliveryError) as caught:
        await make_sink(handler, timeout=0.05).send([envelope()])

    assert caught.value.retryable


async def test_final_4xx_reason_is_a_short_clean_excerpt() -> None:
    """A final 4xx names the status and a capped excerpt of the body without control chars."""
    _, handler = recorder(422, body=("bad field\x1b[31m\r\nFAKE LINE\u202e " * 50).encode())
    with pytest.raises(DeliveryError) as caught:
        await make_sink(handler).send([envelope()])

    message = str(caught.value)
    assert not caught.value.retryable
    assert message.startswith("webhook 'hooks' (https://hooks.example.com/…): HTTP 422: bad field")
    assert not any(ch in message for ch in "\x1b\r\n\u202e")
    assert len(message) < 300


async def test_gone_is_final_and_logged_loudly() -> None:
    """410 Gone is final and logs webhook_gone at error level."""
    _, handler = recorder(410)
    with capture_logs() as logs, pytest.raises(DeliveryError) as caught:
        await make_sink(handler).send([envelope("wt_gone")])

    assert not caught.value.retryable
    gone = [entry for entry in logs if entry["event"] == "webhook_gone"]
    expected = [("error", "hooks", "wt_gone")]
    assert expected == [(e["log_level"], e["sink"], e["transition_id"]) for e in gone]


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


LEAKY_URL = (
    "https://alice:pw-hunter2-secret@hooks.example.com/hook/tok-path-secret?token=q-secret-1"
)
LEAKS = [
    "pw-hunter2-secret",
    "tok-path-secret",
    "q-secret-1",
    SECRET,
    SECRET[6:],
    base64.b64encode(b"alice:pw-hunter2-secret").decode(),  # the Basic auth httpx sends
]


def echo_everything(status: int) -> Handler:
    """A peer that echoes the URL, the headers and the body back in its error page."""

    def handler(request: httpx.Request) -> httpx.Response:
        headers = " ".join(
            f"{k}={v}" for k, v in request.headers.items() if k.startswith(("a", "w"))
        )
        echoed = f"{headers} {request.url} {request.content.decode()}"
        return httpx.Response(status, content=echoed.encode())

    return handler


@pytest.mark.parametrize("status", [200, 400, 401, 404, 410, 429, 503])
async def test_no_secret_in_errors_or_logs(status: int) -> None:
    """Neither the webhook secret, nor URL credentials, nor the signature leak anywhere."""
    signatures: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        signatures.append(request.headers["webhook-signature"].split(",", 1)[1])
        echoed = echo_everything(status)(request)
        assert isinstance(echoed, httpx.Response)
        return httpx.Response(status, content=signatures[-1].encode() + b" " + echoed.content)

    sink = make_sink(handler, url=LEAKY_URL, headers={"x-api-key": "hdr-secret-42"})
    with capture_logs() as logs:
        try:
            await sink.send([envelope()])
        except DeliveryError as exc:
            logs.append({"error": str(exc), "repr": repr(exc)})

    seen = repr(logs)
    leaked = [leak for leak in [*LEAKS, "hdr-secret-42", *signatures] if leak in seen]
    assert not leaked


async def test_no_secret_in_transport_errors() -> None:
    """A transport error quoting the URL shows only the redacted form."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    with pytest.raises(DeliveryError) as caught:
        await make_sink(handler, url=LEAKY_URL).send([envelope()])

    leaked = [leak for leak in LEAKS if leak in str(caught.value)]
    assert not leaked
    assert "https://hooks.example.com/…" in str(caught.value)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("c2VjcmV0LXdpdGhvdXQtcHJlZml4LTEyMzQ1Ng==", id="no prefix"),
        pytest.param("whsec_!!not*base64 at all!!", id="not base64"),
        pytest.param("whsec_" + base64.b64encode(b"short").decode(), id="too short"),
        pytest.param("whsec_", id="empty"),
    ],
)
def test_invalid_secret_rejected_without_quoting_it(secret: str) -> None:
    """A malformed secret is a ValueError at construction that does not contain it."""
    with pytest.raises(ValueError, match="webhook 'hooks'") as caught:
        make_sink(recorder()[1], secret=secret)

    assert secret not in str(caught.value)
    assert secret[6:] not in str(caught.value) or secret == "whsec_"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "https:///path-only"])
def test_invalid_url_rejected_without_quoting_it(url: str) -> None:
    """Only http(s) URLs with a host are accepted."""
    with pytest.raises(ValueError, match="url must be") as caught:
        make_sink(recorder()[1], url=url)

    assert url not in str(caught.value)


@pytest.mark.parametrize(
    "headers",
    [{"bad name": "x"}, {"x-token": "abc\r\nx-injected: 1"}, {"x-token": "a\x00b"}],
)
def test_invalid_extra_headers_rejected(headers: dict[str, str]) -> None:
    """Header names must be tokens and values free of line breaks (no header injection)."""
    with pytest.raises(ValueError, match="header"):
        make_sink(recorder()[1], headers=headers)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example.com", "https://hooks.example.com/"),
        ("https://hooks.example.com/", "https://hooks.example.com/"),
        ("https://hooks.example.com/a/b?c=d", "https://hooks.example.com/…"),
        ("HTTP://u:p@Hooks.Example.com:8443/x", "http://hooks.example.com:8443/…"),
        ("http://[::1]:9000/t0ken", "http://[::1]:9000/…"),
        ("https://example.com/#frag", "https://example.com/…"),
        ("no scheme at all", "<invalid url>"),
        ("http://host:notaport/", "<invalid url>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """Only scheme, host and port of a URL are shown."""
    assert expected == redact_url(url)


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
