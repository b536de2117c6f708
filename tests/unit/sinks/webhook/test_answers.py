"""WebhookSink's answers: the retry verdict per status, Retry-After, transport errors and
the deadline, short clean excerpts, no secret leaks, and refused settings."""

from __future__ import annotations

import base64
from email.utils import formatdate

import anyio
import httpx2 as httpx
import pytest
from structlog.testing import capture_logs

from tests.unit.sinks.webhook.support import (
    LEAKS,
    LEAKY_URL,
    NOW,
    echo_everything,
    envelope,
    make_sink,
    recorder,
)
from watcher.exceptions import DeliveryError


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
    ("error", "said"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot connect to"),
        (httpx.ConnectTimeout("timed out"), "timed out"),
        (httpx.ReadTimeout("timed out"), "no answer from"),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            "broke the HTTP protocol",
        ),
    ],
    ids=lambda e: type(e).__name__ if isinstance(e, Exception) else "",
)
async def test_transport_errors_are_retryable(error: httpx.HTTPError, said: str) -> None:
    """Connection errors, timeouts and protocol errors are retryable and said in words
    (watcher.deliver.transport)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(DeliveryError) as caught:
        await make_sink(handler).send([envelope()])

    assert caught.value.retryable
    assert said in str(caught.value)


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
