"""Transport failures named through the real wire (issue 15, item 17): a name that does not
resolve, a self-signed TLS server and a closed port each give their own one-line problem, to
a source and to a sink alike, and never the URL's credentials."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import trustme

from tests.e2e.harness import free_port
from watcher.deliver.exchange import post
from watcher.deliver.redact import Scrubber
from watcher.deliver.transport import aiohttp_client
from watcher.exceptions import DeliveryError, SourceUnavailable
from watcher.model.secrets import Secret
from watcher.sources.mistral import ApiClient

pytestmark = pytest.mark.e2e

KEY = "sk-transport-key-123"
TOKEN = "t0k3n-in-the-query-string"


@pytest.fixture
def self_signed() -> Iterator[int]:
    """A TLS server on loopback whose certificate no system CA vouches for."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            # The client refuses the certificate: the handshake fails, as expected.
            with conn, contextlib.suppress(ssl.SSLError, OSError):
                context.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()


def cases(tls_port: int) -> list[tuple[str, str]]:
    closed = free_port()
    return [
        (f"http://127.0.0.1:{closed}", f"connection refused by 127.0.0.1:{closed}"),
        (f"https://127.0.0.1:{tls_port}", f"TLS certificate not trusted by 127.0.0.1:{tls_port}"),
        ("https://api.example.invalid", "cannot resolve host api.example.invalid"),
    ]


def clients() -> list[httpx.AsyncClient]:
    """httpx2's own client, and the daemon's (httpx2's API over aiohttp, sending directly)."""
    return [httpx.AsyncClient(trust_env=False), aiohttp_client()]


@pytest.mark.parametrize("which", [0, 1], ids=["httpx2", "daemon"])
async def test_a_source_names_each_transport_failure(self_signed: int, which: int) -> None:
    """DNS, TLS and a refused connection: three different problems, one line each, with
    neither the key nor the URL's credentials."""
    async with clients()[which] as client:
        for base, expected in cases(self_signed):
            host = base.split("://", 1)[1]
            scheme = base.split("://", 1)[0]
            api = ApiClient(
                source="ft",
                base_url=f"{scheme}://user:pa55word@{host}/?token={TOKEN}",
                api_key=Secret(KEY),
                client=client,
                timeout=5.0,
                max_retries=0,
            )
            with pytest.raises(SourceUnavailable) as caught:
                await api.get_json("/v1/fine_tuning/jobs", {}, route="list")
            message = str(caught.value)
            assert expected in message, message
            assert "\n" not in message
            for secret in (KEY, "pa55word", TOKEN):
                assert secret not in message


@pytest.mark.parametrize("which", [0, 1], ids=["httpx2", "daemon"])
async def test_a_sink_names_each_transport_failure(self_signed: int, which: int) -> None:
    """The sinks' exchange says the same problems the same way."""
    async with clients()[which] as client:
        for base, expected in cases(self_signed):
            with pytest.raises(DeliveryError) as caught:
                await post(
                    client,
                    f"{base}/hooks?token={TOKEN}",
                    content=b"{}",
                    headers={},
                    deadline_seconds=5.0,
                    where="webhook 'hooks'",
                    scrubber=Scrubber([TOKEN]),
                )
            assert f"webhook 'hooks': {expected}" in str(caught.value)
            assert TOKEN not in str(caught.value)
            assert caught.value.retryable
