"""Serve an ASGI app with uvicorn inside the current event loop (the daemon's ``http.listen``,
the simulator, the receiver).

Hardened against clients that hold connections open (slowloris): uvicorn arms no timeout
before a request is complete and caps requests, not connections, so a few thousand
half-sent requests would take every file descriptor of the process (and with them the
daemon's own API requests). :class:`_Guarded` closes a connection that has not sent a whole
request within :data:`REQUEST_TIMEOUT` seconds, and refuses connections beyond
:data:`MAX_CONNECTIONS` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import h11
import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds for a client to send one whole request (headers and body)
MAX_CONNECTIONS = 256  # open connections at once; well under a service's 1,024 descriptors
IDLE_TIMEOUT = 5  # seconds a keep-alive connection may wait for its next request
ACCEPT_BATCH = 64  # connections accepted per turn of the event loop


class _Guarded(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request and a connection cap."""

    refused = 0  # connections refused over the cap, this process (for tests and logs)
    timed_out = 0  # connections closed for sending a request too slowly

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.server_state.connections) >= MAX_CONNECTIONS:
            type(self).refused += 1
            transport.abort()  # before uvicorn counts it: no descriptor held
            return
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()  # the request is whole: the app takes its time
        else:
            self._arm()  # a request under way (or the next one): on the clock

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.transport is not None:
            super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle now: uvicorn's keep-alive timeout takes over

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(REQUEST_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            return
        type(self).timed_out += 1
        self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the daemon owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; ``port=0`` picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it, and
    # without it every keep-alive answer waits 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(ACCEPT_BATCH)
    sock.setblocking(False)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serve_app(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run ``app`` until the block exits; yields its base URL (``http://127.0.0.1:PORT``)."""
    sock = bind(host, port)
    # log_config=None: uvicorn leaves logging alone, so its lines go through watcher's own
    # pipeline (one JSON shape, secrets redacted) instead of handlers of its own.
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        http=_Guarded,
        timeout_keep_alive=IDLE_TIMEOUT,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers
        # asyncio accepts up to `backlog` connections per turn of the loop before any of
        # them reaches connection_made (where the cap closes the extra ones): a small batch
        # keeps a flood from holding every descriptor for a moment.
        backlog=ACCEPT_BATCH,
    )
    server = _Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
                    await anyio.sleep(0.01)
            try:
                yield base_url(sock)
            finally:
                server.should_exit = True
    finally:
        sock.close()
