"""deliver.exchange: one HTTP exchange under one deadline, and the one meaning of an answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial

import anyio
import httpx2 as httpx
import pytest

from watcher.deliver.exchange import (
    BODY_READ_LIMIT,
    Answer,
    exchange,
    open_request,
    post,
    refusal,
)
from watcher.deliver.redact import Scrubber
from watcher.deliver.retry import Verdict
from watcher.exceptions import DeliveryError

URL = "https://hooks.example.com/t0k3n-secret-path"
WHERE = "webhook 'hooks' (https://hooks.example.com/…)"
NOW = 1_795_000_000.0

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


async def send(handler: Handler, *, deadline: float = 2.0, read_limit: int = 64) -> Answer:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await post(
            client,
            URL,
            content=b"{}",
            headers={"content-type": "application/json"},
            deadline_seconds=deadline,
            where=WHERE,
            scrubber=Scrubber.of_secrets(URL),
            read_limit=read_limit,
        )


def answer(status: int, body: bytes = b"", **headers: str) -> Answer:
    return Answer(status, httpx.Headers(headers), body)


async def test_post_sends_the_request_and_reads_the_answer() -> None:
    """The request goes out as built; status, headers and body come back."""
    seen: list[tuple[str, str, bytes, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.content, request.headers["x"]))
        return httpx.Response(202, content=b"accepted", headers={"x-answer": "yes"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        got = await post(
            client,
            URL,
            content=b"{}",
            headers={"x": "1"},
            deadline_seconds=2.0,
            where=WHERE,
            scrubber=Scrubber(),
        )

    expected = ([("POST", URL, b"{}", "1")], 202, "yes", b"accepted")
    assert expected == (seen, got.status, got.headers["x-answer"], got.body)


async def test_body_is_read_only_up_to_the_limit() -> None:
    """A long body is cut at ``read_limit`` bytes."""
    got = await send(lambda _: httpx.Response(500, content=b"x" * 10_000), read_limit=100)

    assert 100 == len(got.body)


async def test_body_that_never_ends_costs_only_the_deadline() -> None:
    """A peer trickling an endless body cannot hold the delivery past the deadline."""

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"."
            await anyio.sleep(0.01)

    with anyio.fail_after(5):
        got = await send(
            lambda _: httpx.Response(503, content=endless()),
            deadline=0.3,
            read_limit=BODY_READ_LIMIT,
        )

    assert (503, True) == (got.status, 0 < len(got.body) < BODY_READ_LIMIT)


async def test_timeout_is_retryable() -> None:
    """No answer within the deadline is a retryable error naming the deadline."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(10)
        return httpx.Response(200)

    with anyio.fail_after(5), pytest.raises(DeliveryError) as caught:
        await send(handler, deadline=0.2)

    expected = (True, f"{WHERE}: no answer within 0.2s")
    assert expected == (caught.value.retryable, str(caught.value))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            httpx.ConnectError(f"cannot reach {URL}\r\n"),
            (True, f"{WHERE}: cannot connect to hooks.example.com:443"),
            id="connection error: retryable, host named, never the URL",
        ),
        pytest.param(
            httpx.UnsupportedProtocol("no"),
            (False, f"{WHERE}: unsupported protocol"),
            id="unsupported protocol: final",
        ),
    ],
)
async def test_transport_errors(error: httpx.HTTPError, expected: tuple[bool, str]) -> None:
    """A failed connection is retryable and quotes only scrubbed text; a URL httpx cannot
    speak to never works: final."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(DeliveryError) as caught:
        await send(handler)

    assert expected == (caught.value.retryable, str(caught.value))


async def test_exchange_returns_status_headers_and_excerpt() -> None:
    """The bare exchange gives the status line's verdict material and a capped body."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(418, content=b"teapot" * 10, headers={"a": "b"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        opening = partial(
            open_request, client, "POST", URL, headers={}, timeouts=httpx.Timeout(1.0)
        )
        status, headers, raw = await exchange(
            opening, url=URL, deadline_seconds=1.0, where=WHERE, describe=str, read_limit=12
        )

    expected = (418, "b", b"teapotteapot")
    assert expected == (status, headers["a"], raw)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_accepted(status: int) -> None:
    """Every 2xx is done: no error to raise."""
    assert Verdict.DONE == answer(status).verdict


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    """408, 425, 429 and 5xx are retryable, with the body's excerpt in the reason."""
    error = refusal(answer(status), where=WHERE, excerpt="busy", now=NOW)

    expected = (True, f"{WHERE}: HTTP {status}: busy", None)
    assert expected == (error.retryable, str(error), error.retry_after)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("120", 120.0, id="delta seconds"),
        pytest.param("Wed, 18 Nov 2026 11:08:40 GMT", 120.0, id="HTTP date"),
        pytest.param("soon", None, id="unparseable"),
        pytest.param("999999", 3600.0, id="capped"),
    ],
)
def test_retry_after_is_honoured(header: str, expected: float | None) -> None:
    """``Retry-After`` (seconds or a date) becomes the error's ``retry_after``."""
    error = refusal(answer(503, **{"retry-after": header}), where=WHERE, excerpt="", now=NOW)

    assert expected == error.retry_after


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, 30.0, id="none given"),
        pytest.param("5", 30.0, id="shorter"),
        pytest.param("90", 90.0, id="longer"),
    ],
)
def test_least_wait_on_429(header: str | None, expected: float) -> None:
    """``least_wait`` is a floor for 429 only (PagerDuty's advice)."""
    headers = {"retry-after": header} if header is not None else {}
    error = refusal(answer(429, **headers), where=WHERE, excerpt="", now=NOW, least_wait=30.0)

    assert expected == error.retry_after


def test_least_wait_does_not_apply_to_5xx() -> None:
    """A 503 without ``Retry-After`` keeps the computed backoff."""
    error = refusal(answer(503), where=WHERE, excerpt="", now=NOW, least_wait=30.0)

    assert None is error.retry_after


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422, 600, 100])
def test_other_statuses_are_final(status: int) -> None:
    """Everything else is final; an empty excerpt adds nothing."""
    error = refusal(answer(status), where=WHERE, excerpt="", now=NOW)

    expected = (False, f"{WHERE}: HTTP {status}")
    assert expected == (error.retryable, str(error))


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_final_and_say_so(status: int) -> None:
    """A redirect is not followed: final, telling the operator to set the final URL."""
    error = refusal(
        answer(status, location="https://elsewhere/"), where=WHERE, excerpt="x", now=NOW
    )

    expected = (False, f"{WHERE}: HTTP {status}: redirects are not followed; set the final url")
    assert expected == (error.retryable, str(error))


async def test_mapping_against_a_peer() -> None:
    """End to end: a 429 with Retry-After from a peer becomes a retryable error."""
    got = await send(
        lambda _: httpx.Response(429, content=b"slow down", headers={"retry-after": "7"})
    )
    error = refusal(got, where=WHERE, excerpt=Scrubber().excerpt(got.text()), now=NOW)

    expected = (True, 7.0, f"{WHERE}: HTTP 429: slow down")
    assert expected == (error.retryable, error.retry_after, str(error))
