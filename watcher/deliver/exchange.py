"""One HTTP exchange and the meaning of its answer. The API clients' requests and the HTTP
sinks' POSTs go out through :func:`open_request` (directly on the daemon's aiohttp-backed
client, through httpx on any other); :func:`post` and :func:`refusal` are the sinks'
(webhook, Slack, PagerDuty).

A single deadline covers the whole exchange (httpx's timeouts are per operation, so a peer
trickling bytes could otherwise hold a delivery for ever); the body is read only as far as an
excerpt and the remaining time allow (the status line decides); transport failures become
:class:`~watcher.exceptions.DeliveryError` saying what failed in one line
(:func:`~watcher.deliver.transport_errors.describe_transport_error`: never a URL), and only
what the sink's scrubber lets through. :func:`post` builds and sends one request; :func:`refusal` is
the one mapping of an answer that is not 2xx to a :class:`~watcher.exceptions.DeliveryError`
(``retry.classify`` decides), shared by webhook, Slack and PagerDuty.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import anyio
import httpx2 as httpx

from watcher.deliver.redact import Scrubber
from watcher.deliver.retry import Verdict, classify, parse_retry_after
from watcher.deliver.transport_errors import describe_transport_error
from watcher.exceptions import DeliveryError

BODY_READ_LIMIT = 4096  # enough for an excerpt; the rest of an error page is not read


class Reply(Protocol):
    """An answer being read: an ``httpx.Response`` opened with ``stream=True``, or a
    ``transport.Opened`` of the direct way."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> httpx.Headers: ...

    @property
    def is_stream_consumed(self) -> bool: ...

    @property
    def content(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


async def exchange(
    opening: Callable[[], Awaitable[Reply]],
    *,
    url: str | httpx.URL,
    deadline_seconds: float,
    where: str,
    describe: Callable[[str], str],
    read_limit: int,
) -> tuple[int, httpx.Headers, bytes]:
    """Open the answer with ``opening`` (e.g. a partial of :func:`open_request`); its status,
    headers and at most ``read_limit`` bytes of the body.

    ``url`` names the peer, ``where`` the sink, in errors; ``describe`` turns the description
    of a transport failure into what may be shown (sanitized, secrets scrubbed, capped)."""
    timeout = deadline_seconds
    response: Reply | None = None
    body = bytearray()  # what was read when the deadline came is kept
    # One deadline scope for the whole exchange: reaching it before the answer opened is a
    # failure; while its body is read, it only stops the reading (the status line decides).
    with anyio.CancelScope(deadline=anyio.current_time() + timeout):
        try:
            response = await opening()
        except httpx.UnsupportedProtocol:
            raise DeliveryError(f"{where}: unsupported protocol", retryable=False) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"{where}: {describe(describe_transport_error(exc, url))}", retryable=True
            ) from None
        try:
            await _read(response, read_limit, body)
        except httpx.HTTPError:
            pass  # the status line decides; an unreadable body is no reason to retry
        finally:
            release_now = getattr(response, "release_now", None)
            if release_now is not None:
                release_now()  # the direct way's answer closes without waiting
            else:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
    if response is None:
        raise DeliveryError(f"{where}: no answer within {timeout:g}s", retryable=True)
    return response.status_code, response.headers, bytes(body[:read_limit])


async def _read(response: Reply, limit: int, into: bytearray) -> None:
    """At most about ``limit`` bytes of the body into ``into`` (none read when the direct
    way's answer says its body is done: no iterator for an empty body)."""
    if getattr(response, "body_done", False):
        return
    async for chunk in response.aiter_bytes():
        into += chunk
        if len(into) >= limit:
            break


@dataclass(frozen=True)
class Answer:
    """A peer's answer: status, headers and the first ``read_limit`` bytes of the body."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def verdict(self) -> Verdict:
        return classify(self.status)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def retry_after(self, *, now: float) -> float | None:
        """The peer's ``Retry-After`` in seconds (capped), if it sent a usable one."""
        return parse_retry_after(self.headers.get("retry-after"), now=now)


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    deadline_seconds: float,
    where: str,
    scrubber: Scrubber,
    read_limit: int = BODY_READ_LIMIT,
) -> Answer:
    """POST ``content`` to ``url``, ``deadline_seconds`` for the whole exchange; transport
    failures raise :class:`DeliveryError` (retryable) quoting only what ``scrubber`` lets
    through."""
    opening = partial(
        open_request,
        client,
        "POST",
        url,
        headers=headers,
        content=content,
        timeouts=httpx.Timeout(deadline_seconds),
    )
    status, answer_headers, raw = await exchange(
        opening,
        url=url,
        deadline_seconds=deadline_seconds,
        where=where,
        describe=scrubber.excerpt,
        read_limit=read_limit,
    )
    return Answer(status, answer_headers, raw)


async def open_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    timeouts: httpx.Timeout,
    params: list[tuple[str, Any]] | None = None,
    content: bytes = b"",
    decompress: bool = True,
) -> Reply:
    """Send one request on ``client``, redirects not followed; the answer open for reading
    (close it with ``aclose``). On watcher's own client (``transport.AiohttpClient``) its
    transport takes the request as it is, without httpx's client work around it (most of
    the CPU of a request); the client's default headers still go with it, under the
    request's own; ``timeouts`` per operation (httpx's meaning: the caller holds the
    deadline of the whole). ``decompress=False``: the body is read as sent (``aiter_raw``),
    the caller inflates it. Transport failures raise httpx's exceptions either way."""
    direct: Direct | None = getattr(client, "direct", None)
    if direct is None:
        request = client.build_request(
            method, url, params=params, content=content or None, headers=headers, timeout=timeouts
        )
        return await client.send(request, stream=True, follow_redirects=False)
    if params:
        # Encoded as httpx encodes them, after any query the URL already has.
        url = f"{url}{'&' if '?' in url else '?'}{httpx.QueryParams(params)}"
    return await direct.open(
        method,
        url,
        headers=_merged_headers(client.headers, headers),
        content=content,
        io_timeout=timeouts.read if timeouts.read is not None else math.inf,
        connect_timeout=timeouts.connect,
        decompress=decompress,
    )


class Direct(Protocol):
    """A transport that sends a request without httpx's client (``transport.AiohttpTransport``)."""

    async def open(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes,
        io_timeout: float,
        connect_timeout: float | None = None,
        decompress: bool = True,
    ) -> Reply: ...


# What the direct way can decode of the encodings httpx offers by default (it offers br and
# zstd too where their packages are installed).
DECODABLE = frozenset({"gzip", "deflate", "identity"})


def _merged_headers(defaults: httpx.Headers, headers: Mapping[str, str]) -> dict[str, str]:
    """The client's default headers under the request's own (names lowercase, as httpx
    merges them), "accept-encoding" kept to what the direct way decodes."""
    merged = dict(_defaults(tuple(defaults.items())))
    for name, value in headers.items():
        merged[name.lower()] = value
    return merged


@functools.lru_cache(maxsize=32)
def _defaults(items: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A client's default headers as the direct way sends them (the same few every request:
    worked out once)."""
    merged = dict(items)
    offered = merged.get("accept-encoding")
    if offered is not None:
        kept = [e.strip() for e in offered.split(",") if e.strip().lower() in DECODABLE]
        merged["accept-encoding"] = ", ".join(kept) or "identity"
    return tuple(merged.items())


def refusal(
    answer: Answer,
    *,
    where: str,
    excerpt: str,
    now: float,
    least_wait: float | None = None,
) -> DeliveryError:
    """The :class:`DeliveryError` for an answer that is not 2xx (``retry.classify`` decides).

    Retryable (408, 425, 429, 5xx) with ``Retry-After`` honoured, at least ``least_wait``
    seconds on 429 when given; final otherwise, a redirect saying it is not followed.
    ``excerpt`` is what of the body may be quoted (already scrubbed)."""
    status = answer.status
    reason = f"{where}: HTTP {status}" + (f": {excerpt}" if excerpt else "")
    if answer.verdict is Verdict.RETRY:
        retry_after = answer.retry_after(now=now)
        if least_wait is not None and status == 429:
            retry_after = max(retry_after or 0.0, least_wait)
        return DeliveryError(reason, retryable=True, retry_after=retry_after)
    if 300 <= status < 400:
        reason = f"{where}: HTTP {status}: redirects are not followed; set the final url"
    return DeliveryError(reason, retryable=False)
