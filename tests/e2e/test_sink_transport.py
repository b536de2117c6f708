"""The sinks' client (httpx2 over aiohttp, ``watcher.deliver.transport``) against real
loopback servers: each exchange ends as it does over httpx2's own transport, with the same
DeliveryError texts (deadline, capped read, redirect refused, connection refused, TLS)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2 as httpx
import pytest
import trustme

from watcher.deliver.exchange import Answer, post, refusal
from watcher.deliver.redact import Scrubber
from watcher.deliver.transport import AiohttpClient, aiohttp_client
from watcher.exceptions import DeliveryError

pytestmark = pytest.mark.e2e

WHERE = "webhook 'hooks' (http://127.0.0.1/…)"
BODY = b'{"type":"fine_tuning.job.failed"}'


async def _answer(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What the loopback server answers, by path."""
    path = head.split(b" ", 2)[1]
    if path == b"/silent":  # reads the request, never answers
        await asyncio.sleep(60)
    elif path == b"/endless":  # a 500 whose body never ends
        writer.write(b"HTTP/1.1 500 Oops\r\ncontent-length: 100000000\r\n\r\n" + b"x" * 65536)
        while True:
            writer.write(b"x" * 1024)
            await writer.drain()
            await asyncio.sleep(0.01)
    elif path == b"/trickle":  # a 503 whose body comes ten bytes at a time, never ending
        writer.write(b"HTTP/1.1 503 Busy\r\ncontent-length: 100000000\r\n\r\n")
        while True:
            writer.write(b"0123456789")
            await writer.drain()
            await asyncio.sleep(0.05)
    elif path == b"/moved":
        writer.write(b"HTTP/1.1 302 Found\r\nlocation: /target\r\ncontent-length: 0\r\n\r\n")
    elif path == b"/echo":  # the request's head as the body
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(head), head))
    else:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    await writer.drain()


class Loopback:
    """A real HTTP/1.1 server on 127.0.0.1 (keep-alive; plain or TLS); ``paths`` lists the
    paths requested, in order."""

    def __init__(self) -> None:
        self.paths: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.paths.append(head.split(b" ", 2)[1])
                await _answer(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
        server = await asyncio.start_server(self.serve, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        finally:
            server.close()


@asynccontextmanager
async def client_of(kind: str, verify: ssl.SSLContext | bool = True) -> AsyncIterator[Any]:
    """``sink``: the daemon's sinks' client; ``httpx2``: httpx2 over its own transport."""
    made = (
        AiohttpClient(verify=verify)
        if kind == "sink"
        else httpx.AsyncClient(verify=verify, follow_redirects=False, trust_env=False)
    )
    async with made as client:
        yield client


async def send(client: httpx.AsyncClient, url: str, deadline: float = 5.0) -> Answer:
    return await post(
        client,
        url,
        content=BODY,
        headers={"content-type": "application/json", "webhook-id": "msg_1"},
        deadline_seconds=deadline,
        where=WHERE,
        scrubber=Scrubber.of_secrets(),
    )


async def error_of(kind: str, url: str, **options: Any) -> str:
    verify = options.pop("verify", True)
    async with client_of(kind, verify) as client:
        with pytest.raises(DeliveryError) as caught:
            await send(client, url, **options)
    return f"retryable={caught.value.retryable}: {caught.value}"


async def both(url: str, **options: Any) -> tuple[str, str]:
    return await error_of("sink", url, **options), await error_of("httpx2", url, **options)


async def test_the_aiohttp_client_is_the_daemon_s() -> None:
    """What the daemon hands its sinks is this client (its transport drives the exchange)."""
    async with aiohttp_client() as client:
        assert isinstance(client, AiohttpClient)
        assert client.follow_redirects is False


async def test_an_answer_arrives_with_the_request_as_httpx_sends_it() -> None:
    """Same headers on the wire (user-agent, accept, content-length…) as httpx2's own."""
    server = Loopback()
    heads = {}
    async with server.running() as url:
        for kind in ("sink", "httpx2"):
            async with client_of(kind) as client:
                got = await send(client, f"{url}/echo")
            assert got.status == 200
            lines = got.body.lower().split(b"\r\n")
            heads[kind] = sorted(line for line in lines[1:] if line)
    assert heads["sink"] == heads["httpx2"]
    assert b"webhook-id: msg_1" in heads["sink"]


async def test_a_silent_peer_costs_the_deadline_and_says_so() -> None:
    server = Loopback()
    async with server.running() as url:
        started = time.monotonic()
        sink, plain = await both(f"{url}/silent", deadline=0.5)
        elapsed = time.monotonic() - started
    assert sink == plain == f"retryable=True: {WHERE}: no answer within 0.5s"
    assert elapsed < 3.0  # two exchanges of 0.5 s


async def cut_short(path: str, deadline: float) -> tuple[Answer, float, Answer]:
    """The answer to ``path`` over the sink client, the seconds it took, and the answer to
    the next request on that client (a connection left mid-body is dropped, not reused)."""
    server = Loopback()
    async with server.running() as url, client_of("sink") as client:
        started = time.monotonic()
        got = await send(client, f"{url}{path}", deadline=deadline)
        elapsed = time.monotonic() - started
        after = await send(client, f"{url}/ok")
    return got, elapsed, after


async def test_an_endless_body_is_read_only_up_to_the_cap_within_the_deadline() -> None:
    got, elapsed, after = await cut_short("/endless", deadline=1.0)
    assert (got.status, len(got.body), after.status) == (500, 4096, 200)
    assert elapsed < 1.5


async def test_a_trickling_body_ends_at_the_deadline_with_what_came() -> None:
    """A body slower than the deadline: the exchange ends at the deadline with the status
    and the part of the body that came (the status decides, the excerpt says why)."""
    got, elapsed, after = await cut_short("/trickle", deadline=0.6)
    assert (503, 200) == (got.status, after.status)
    assert got.body.startswith(b"0123456789") and len(got.body) < 4096
    assert 0.5 < elapsed < 1.5


async def test_a_redirect_is_refused_not_followed() -> None:
    server = Loopback()
    async with server.running() as url:
        texts = []
        for kind in ("sink", "httpx2"):
            async with client_of(kind) as client:
                got = await send(client, f"{url}/moved")
            error = refusal(got, where=WHERE, excerpt="", now=time.time())
            texts.append(f"retryable={error.retryable}: {error}")
    expected = f"retryable=False: {WHERE}: HTTP 302: redirects are not followed; set the final url"
    assert texts == [expected, expected]
    assert server.paths == [b"/moved", b"/moved"]  # /target never requested


async def test_a_refused_connection_reads_the_same() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink, plain = await both(f"http://127.0.0.1:{port}/h")
    assert sink == plain == f"retryable=True: {WHERE}: connection refused by 127.0.0.1:{port}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_an_untrusted_certificate_reads_the_same(ca: trustme.CA) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    async with Loopback().running(tls) as url:
        sink, plain = await both(f"{url}/h")
    assert sink == plain
    assert sink.startswith(f"retryable=True: {WHERE}: TLS certificate not trusted by 127.0.0.1:")


async def test_a_trusted_certificate_is_verified_and_accepted(ca: trustme.CA) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with Loopback().running(tls) as url, client_of("sink", trusting) as client:
        got = await send(client, f"{url}/h")
        through_httpx = await client.post(f"{url}/h", content=BODY)  # the httpx path too
    assert (got.status, got.body, through_httpx.status_code) == (200, b"ok", 200)
