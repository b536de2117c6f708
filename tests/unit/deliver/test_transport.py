"""deliver.transport: the sinks' client keeps httpx's meaning of requests and failures."""

from __future__ import annotations

import aiohttp
import httpx2 as httpx
import pytest

from watcher.deliver.exchange import _merged_headers, post
from watcher.deliver.redact import Scrubber
from watcher.deliver.transport import AiohttpClient, _mapped
from watcher.exceptions import DeliveryError

WHERE = "webhook 'hooks' (ftp://example.com/…)"


@pytest.mark.parametrize("direct", [True, False], ids=["exchange.post", "httpx client"])
async def test_an_unsupported_scheme_is_final(direct: bool) -> None:
    """Refused before any connection, whichever way the request goes."""
    async with AiohttpClient() as client:
        if not direct:
            with pytest.raises(httpx.UnsupportedProtocol, match="unsupported protocol 'ftp://'"):
                await client.post("ftp://example.com/h", content=b"{}")
            return
        with pytest.raises(DeliveryError) as caught:
            await post(
                client,
                "ftp://example.com/h",
                content=b"{}",
                headers={},
                deadline_seconds=1.0,
                where=WHERE,
                scrubber=Scrubber(),
            )
    assert (caught.value.retryable, str(caught.value)) == (False, f"{WHERE}: unsupported protocol")


def test_the_request_s_headers_go_over_the_client_s() -> None:
    """httpx's merge: the client's defaults, then the request's own, names lowercase; only
    the encodings the direct way decodes are offered."""
    defaults = httpx.Headers({"user-agent": "python-httpx2", "accept-encoding": "gzip, br, zstd"})

    got = _merged_headers(defaults, {"User-Agent": "watcher/1", "Webhook-Id": "msg_1"})

    assert got == {"user-agent": "watcher/1", "accept-encoding": "gzip", "webhook-id": "msg_1"}


def test_nothing_decodable_offered_means_identity() -> None:
    got = _merged_headers(httpx.Headers({"accept-encoding": "br"}), {})

    assert got == {"accept-encoding": "identity"}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            aiohttp.ServerDisconnectedError(),
            (httpx.RemoteProtocolError, "Server disconnected without sending a response."),
            id="peer hung up",
        ),
        pytest.param(
            aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
            (httpx.ReadTimeout, "Timeout on reading data from socket"),
            id="read timeout",
        ),
        pytest.param(TimeoutError(), (httpx.ReadTimeout, ""), id="asyncio timeout"),
        pytest.param(
            aiohttp.ClientPayloadError("Response payload is not completed"),
            (httpx.RemoteProtocolError, "Response payload is not completed"),
            id="truncated body",
        ),
    ],
)
def test_aiohttp_errors_become_httpx_errors(
    error: Exception, expected: tuple[type[Exception], str]
) -> None:
    mapped = _mapped(error, None)

    assert (type(mapped), str(mapped)) == expected


def test_an_error_that_is_not_the_network_s_is_left_as_it_is() -> None:
    error = ValueError("a bug")

    assert _mapped(error, None) is error
