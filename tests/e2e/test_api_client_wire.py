"""The API client on the daemon's client (httpx2's API over aiohttp, sending directly) puts
the same request on the wire as over httpx2's own: the same path and query (a list repeats
its key; the request's path goes before a query the base URL has, its parameters after it),
the bearer key, the encodings asked for; and it reads a gzip answer the same way, through the
capped reader."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator

import httpx2 as httpx
import pytest

from watcher.deliver.transport import aiohttp_client
from watcher.model.secrets import Secret
from watcher.sources.mistral import ApiClient

pytestmark = pytest.mark.e2e

KEY = "sk-wire-key-123"
BODY = {"data": [{"id": "j-1", "status": "RUNNING", "name": "é ☃"}], "total": 1}


class Recorder:
    """A loopback HTTP/1.1 server that records each request's target and headers and answers
    a gzip-encoded JSON body."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (f.partition(":") for f in fields if f)
                }
                self.seen.append((line.split(" ")[1], headers))
                body = gzip.compress(json.dumps(BODY).encode())
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    found = Recorder()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found


async def test_the_daemons_client_sends_and_reads_what_httpx2_does(recorder: Recorder) -> None:
    answers = []
    for client in (httpx.AsyncClient(trust_env=False), aiohttp_client()):
        async with client:
            api = ApiClient(
                source="ft",
                base_url=f"http://127.0.0.1:{recorder.port}/gw?tenant=a%20b",
                api_key=Secret(KEY),
                client=client,
                timeout=5.0,
                max_retries=0,
            )
            params = {
                "status": ["RUNNING", "QUEUED"],
                "created_after": "2026-01-01T00:00:00+00:00",
                "page": 2,
                "only": True,
                "suffix": "é/&?=#",
            }
            answers.append(await api.get_json("/v1/fine_tuning/jobs", params, route="list"))
    assert [BODY, BODY] == answers
    (plain_target, plain), (direct_target, direct) = recorder.seen
    assert plain_target == direct_target
    assert plain_target.startswith(
        "/gw/v1/fine_tuning/jobs?tenant=a+b&status=RUNNING&status=QUEUED&"
    )
    for headers in (plain, direct):
        assert f"Bearer {KEY}" == headers["authorization"]
        assert "gzip, deflate" == headers["accept-encoding"]
        assert "application/json" == headers["accept"]
        assert headers["user-agent"].startswith("watcher/")
