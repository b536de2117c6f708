"""A minimal keep-alive HTTP/1.1 server on loopback, in its own process: what a sender costs
when the receiver costs next to nothing.

An asyncio ``Protocol`` that reads requests with a ``Content-Length`` body (no chunked
bodies) and answers each with ``200`` and a two-byte body, keeping the connection open. It
records each request's ``webhook-id`` header in arrival order; ``GET /_received`` answers
them one per line (then forgets them), so a benchmark can check that nothing was lost,
duplicated or reordered without the receiver verifying anything.

    python -m benchmarks._minimal_server     # prints {"url": "http://127.0.0.1:PORT"}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import ClassVar

from benchmarks._sim import serving

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
ID = b"\r\nwebhook-id:"


class Minimal(asyncio.Protocol):
    received: ClassVar[list[bytes]] = []  # webhook-ids in arrival order, every connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        replies = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else None])
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            if head.startswith(b"GET /_received"):
                listing = b"\n".join(self.received)
                self.received.clear()
                replies.append(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(listing))
                replies.append(listing)
                continue
            at = lower.find(ID)
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                value = head[at + len(ID) : stop if stop >= 0 else None].strip()
                self.received.append(value)
            replies.append(OK)
        self.buffer = buffer
        if replies:
            self.transport.write(b"".join(replies))


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Minimal, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"url": f"http://127.0.0.1:{port}"}), flush=True)
    async with server:
        await server.serve_forever()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minimal_server() -> AbstractContextManager[tuple[str, int]]:
    """The server in its own process; yields its base URL and pid."""
    return serving([sys.executable, "-m", "benchmarks._minimal_server"])


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        asyncio.run(serve())
