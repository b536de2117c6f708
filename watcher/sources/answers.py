"""How much of an API's answers watcher holds in memory: a cap per answer, and a budget of
bytes in flight shared by every request of the process.

A foreign API can answer anything, of any size; buffering it whole before looking would let
one answer (or four concurrent detail fetches) exhaust a pod's memory. So an answer is
refused without being buffered when its ``Content-Length`` is over :data:`MAX_ANSWER`, and
refused as soon as the bytes read pass the cap otherwise (chunked, or compressed: the cap
counts decompressed bytes, inflated a bounded step at a time, so a compression bomb stops at
the cap too; only gzip and deflate are asked for and read).

Every read holds a share of a :class:`ByteBudget` while it buffers and while its answer is
decoded: its ``Content-Length`` when the answer is not compressed, else the whole cap. The
share is taken at once, before the first byte is read, and never grown: readers wait for one
another instead of deadlocking, and the bytes buffered by all of them together stay under
the budget's limit (:data:`IN_FLIGHT` for the daemon).

Sizing: a listing page of 100 jobs is a few hundred KB, a detail with thousands of
checkpoints a few MB; the caps leave room for either, several times over, within the
256 MiB limit of the shipped Kubernetes manifests (``deploy/``).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from watcher.deliver.exchange import Reply

MAX_ANSWER = 16 * 1024 * 1024  # bytes of one answer, decoded
IN_FLIGHT = 32 * 1024 * 1024  # bytes buffered at once by all the process's API reads
INFLATE_STEP = 1024 * 1024  # bytes inflated at a time from a compressed answer
ERROR_READ = 4096  # of an answer that is not a 2xx, only an excerpt is ever read


class TooLarge(Exception):
    """An answer over the cap: ``size`` bytes said (``declared``) or read so far."""

    def __init__(self, size: int, *, declared: bool) -> None:
        super().__init__(size)
        self.size = size
        self.declared = declared

    def describe(self, cap: int) -> str:
        if self.declared:
            return f"{self.size} bytes (Content-Length), over the {cap}-byte cap: not read"
        return f"over the {cap}-byte cap: refused after {self.size} bytes"


class ByteBudget:
    """Bytes that reads may buffer at once: each holds its share until it is done with its
    answer; a read whose share does not fit waits for others to finish. Within one event
    loop (the daemon's)."""

    def __init__(self, limit: int = IN_FLIGHT) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0  # the most ever held at once (for tests and benchmarks)
        self._waiters: list[anyio.Event] = []

    @asynccontextmanager
    async def hold(self, amount: int) -> AsyncIterator[None]:
        """``amount`` bytes of the budget (at most all of it) for the block."""
        amount = max(0, min(amount, self.limit))
        while self.used + amount > self.limit:
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            finally:
                if event in self._waiters:
                    self._waiters.remove(event)
        self.used += amount
        self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            self.used -= amount
            waiters, self._waiters = self._waiters, []
            for event in waiters:
                event.set()


def declared_size(response: Reply) -> int | None:
    """The answer's ``Content-Length`` when it gives a usable one."""
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() and len(value) < 20 else None


def share(response: Reply, cap: int) -> int:
    """How much of the budget reading ``response`` takes: its declared size when that is
    also what will be read (not compressed), else the cap. Raises :class:`TooLarge` when
    the declared size is over the cap."""
    declared = declared_size(response)
    if declared is not None and declared > cap:
        raise TooLarge(declared, declared=True)
    encoded = response.headers.get("content-encoding", "identity").strip().lower()
    plain = encoded in ("", "identity")
    return declared if declared is not None and plain else cap


class Undecodable(Exception):
    """An answer in a content encoding watcher does not read (it asks for gzip or none)."""


def _decompressor(response: Reply) -> zlib._Decompress | None:
    """A zlib decompressor for the answer's encoding (``None``: not compressed)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise Undecodable(f"content encoding {encoding[:40]!r} not asked for")


async def read_capped(response: Reply, cap: int) -> bytes:
    """The body of ``response``, decompressed (gzip, deflate), read until ``cap`` bytes:
    past it :class:`TooLarge`, with nothing more read or inflated (a compression bomb
    stops at the cap, not at its first chunk)."""
    return await _read(response, cap, cut=False)


async def read_excerpt(response: Reply, limit: int = ERROR_READ) -> bytes:
    """At most ``limit`` bytes of the body (an error page: its status line decides); an
    encoding watcher does not read gives nothing."""
    try:
        return await _read(response, limit, cut=True)
    except Undecodable:
        return b""


async def _read(response: Reply, cap: int, *, cut: bool) -> bytes:
    if response.is_stream_consumed:  # read already (built in memory: a mock transport's)
        body = response.content
        if len(body) > cap and not cut:
            raise TooLarge(len(body), declared=False)
        return body[:cap]
    inflate = _decompressor(response)
    chunks: list[bytes] = []
    size = 0

    def take(chunk: bytes) -> bool:
        """Keep ``chunk``; whether the cap is reached (``cut``: the answer ends there)."""
        nonlocal size
        size += len(chunk)
        if size > cap and not cut:
            # Let go of what was read now: the traceback keeps this frame alive past the
            # budget's release.
            chunks.clear()
            raise TooLarge(size, declared=False)
        chunks.append(chunk)
        return size >= cap and cut

    try:
        async for raw in response.aiter_raw():
            if inflate is None:
                if take(raw):
                    break
                continue
            full = False
            while raw and not full:
                # Small steps: zlib builds each step's output whole, then copies it.
                full = take(inflate.decompress(raw, min(cap - size + 1, INFLATE_STEP)))
                raw = inflate.unconsumed_tail
            if full:
                break
        else:
            if inflate is not None:
                take(inflate.flush())
    except zlib.error as exc:
        raise Undecodable(f"broken compressed answer ({exc})") from None
    body = b"".join(chunks)
    chunks.clear()
    return body[:cap] if cut else body
