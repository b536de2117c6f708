"""An ``httpx`` transport over aiohttp's connection pool and C HTTP parser: the daemon's client
for the API and the sinks.

httpx2 keeps the API (requests built, answers read and mapped exactly as before, in
:mod:`watcher.deliver.exchange`); underneath, httpcore2's pure-Python HTTP/1.1 and pool
bookkeeping cost about four times the CPU of aiohttp's per request (``benchmarks.http_client``),
and that CPU was most of a delivery's. Only the transport changes:

- redirects are never followed here (httpx decides, and the sinks ask it not to);
- nothing is decompressed here, no cookie is kept, no default header is added: httpx does
  each of those above the transport, as it would over its own;
- TLS is verified with the context httpx2 itself would build (``httpx.create_ssl_context``);
- no proxy from the environment (the daemon's clients say ``trust_env=False`` too);
- httpx's per-operation timeouts become aiohttp's connect and read timeouts; the deadline of
  a whole exchange stays the caller's (``exchange.exchange``);
- aiohttp's errors become the httpx exceptions httpcore2 would raise, with the same texts
  where the failure is the same (connection refused, TLS, a peer hanging up), so that a
  :class:`~watcher.exceptions.DeliveryError` reads the same over either transport.

aiohttp is imported with this module, which only the daemon's wiring imports: a command that
sends nothing does not load it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
from typing import Any, NoReturn

import aiohttp
import httpx2 as httpx
from yarl import URL

READ_CHUNK = 64 * 1024
KEEPALIVE = 5.0  # seconds an idle connection is kept, as httpx's default Limits


@lru_cache(maxsize=256)
def _url(text: str) -> URL:
    """The yarl URL of ``text`` as httpx encodes it (the same bytes on the wire as httpx's
    own transport sends; yarl does not encode it again)."""
    return URL(str(httpx.URL(text)), encoded=True)


@lru_cache(maxsize=64)
def _timeout(connect: float | None, read: float | None, pool: float | None) -> Any:
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport(...))``: at most ``max_connections``
    connections (idle ones kept ``keepalive`` seconds), TLS verified by ``verify`` (httpx's
    meaning: ``True``, ``False`` or an ``ssl.SSLContext``). The aiohttp session is made on
    first use, inside the running event loop, and closed by :meth:`aclose`."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 64,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self._ssl = httpx.create_ssl_context(verify=verify, trust_env=False)
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies, if any
            auto_decompress=False,  # httpx decodes the content-encoding itself
            trust_env=False,
            # httpx sends exactly the headers it built: aiohttp adds none of its own (a
            # body would otherwise get "content-type: application/octet-stream").
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            raise_for_status=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _check_scheme(request.url.scheme, request)
        session = self._session or self._open()
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        raw_headers = request.headers.raw
        try:
            answer = await session.request(
                request.method,
                _url(str(request.url)),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers],
                data=body or None,
                allow_redirects=False,
                timeout=_timeout(
                    timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool")
                ),
            )
        except Exception as exc:
            _raise_mapped(exc, request)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.raw_headers,
            stream=_Body(answer, request),
            extensions={
                "http_version": b"HTTP/%d.%d" % (answer.version.major, answer.version.minor)
                if answer.version
                else b"HTTP/1.1",
                "reason_phrase": (answer.reason or "").encode("latin-1", "replace"),
            },
        )

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
    ) -> Opened:
        """Send one request without httpx's client around it (:func:`exchange.open_request`'s
        way: the client's work per request is most of the CPU left): ``headers`` complete
        (the client's defaults merged in), ``io_timeout`` for each read and for connecting
        unless ``connect_timeout`` says otherwise. The answer is open: read its body with
        ``aiter_bytes`` (decoded unless ``decompress=False``: then as sent), close it with
        ``aclose``. Failures raise the httpx exceptions of :meth:`handle_async_request`."""
        target = _url(url)
        _check_scheme(target.scheme, None)
        if target.user is not None and any(k.lower() == "authorization" for k in headers):
            # The request's own Authorization (an API key) is what authenticates it; aiohttp
            # refuses to send both, so the URL's credentials are left out.
            target = target.with_user(None)
        session = self._session or self._open()
        try:
            answer = await session.request(
                method,
                target,
                headers=headers,
                data=content or None,
                allow_redirects=False,
                timeout=_timeout(
                    io_timeout if connect_timeout is None else connect_timeout,
                    io_timeout,
                    io_timeout,
                ),
                # Decoded here: what "accept-encoding" offered (gzip, deflate); or left to
                # the caller, who inflates it within its own bounds.
                auto_decompress=decompress,
            )
        except Exception as exc:
            _raise_mapped(exc, None)
        return Opened(answer)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class Opened:
    """An answer of :meth:`AiohttpTransport.open`: what :mod:`watcher.deliver.exchange`
    reads of an ``httpx.Response`` (status, headers, body chunks, close)."""

    is_stream_consumed = False  # read from the connection, never built in memory
    content = b""  # nothing read ahead: the body comes through the iterators

    def __init__(self, answer: aiohttp.ClientResponse) -> None:
        self._answer = answer
        self.status_code = answer.status
        self._headers: httpx.Headers | None = None

    @property
    def headers(self) -> httpx.Headers:
        """Built when first asked for (a delivery accepted with 2xx never asks)."""
        if self._headers is None:
            self._headers = httpx.Headers(self._answer.raw_headers)
        return self._headers

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as the connection gives it: as sent when opened with
        ``decompress=False`` (the same chunks as :meth:`aiter_bytes`)."""
        return self.aiter_bytes()

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return _chunks(self._answer.content.iter_any(), None)

    @property
    def body_done(self) -> bool:
        """Nothing (more) to read: :func:`exchange.exchange` then reads no iterator, as after
        most 2xx answers."""
        return self._answer.content.at_eof()

    async def aclose(self) -> None:
        self.release_now()

    def release_now(self) -> None:
        """:meth:`aclose` without awaiting (it never waits): no shielded scope needed."""
        _let_go(self._answer)


class _Body(httpx.AsyncByteStream):
    """An answer's body, read as httpx reads it; closed early, the connection is dropped
    rather than reused (the rest of the body was never read)."""

    def __init__(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _chunks(self._answer.content.iter_chunked(READ_CHUNK), self._request)

    async def aclose(self) -> None:
        _let_go(self._answer)


async def _chunks(
    source: AsyncIterator[bytes], request: httpx.Request | None
) -> AsyncIterator[bytes]:
    """An answer's body chunks, aiohttp's failures raised as httpx's."""
    try:
        async for chunk in source:
            yield chunk
    except Exception as exc:
        _raise_mapped(exc, request)


def _let_go(answer: aiohttp.ClientResponse) -> None:
    """Done with an answer: its connection back to the pool when the body was read to the
    end, else dropped (the rest of the body was never read)."""
    if answer.content.at_eof():
        answer.release()
    else:
        answer.close()


def _raise_mapped(exc: Exception, request: httpx.Request | None) -> NoReturn:
    """Raise ``exc`` as the httpx exception :func:`_mapped` says (itself when none)."""
    mapped = _mapped(exc, request)
    if mapped is exc:
        raise exc
    raise mapped from exc


def _check_scheme(scheme: str, request: httpx.Request | None) -> None:
    """Only http and https, refused in httpcore2's words otherwise."""
    if scheme in ("http", "https"):
        return
    if not scheme:
        raise httpx.UnsupportedProtocol(
            "Request URL is missing an 'http://' or 'https://' protocol.", request=request
        )
    raise httpx.UnsupportedProtocol(
        f"Request URL has an unsupported protocol '{scheme}://'.", request=request
    )


def _mapped(exc: BaseException, request: httpx.Request | None) -> BaseException:
    """The httpx exception httpcore2 raises for the same failure, with its text."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return httpx.ConnectError(str(exc.certificate_error), request=request)
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return httpx.ConnectError(str(exc.os_error), request=request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc), request=request)
    if isinstance(exc, aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # anyio's words for a connection no address of the host accepted, as httpcore2 says
        return httpx.ConnectError("All connection attempts failed", request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(str(exc), request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx.ReadError(str(exc.strerror or exc), request=request)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return httpx.NetworkError(str(exc), request=request)
    return exc


class AiohttpClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` over :class:`AiohttpTransport`, redirects not followed, no
    proxy or certificate settings from the environment; :func:`exchange.open_request` drives
    its transport directly (``direct``), everything else goes through httpx as usual."""

    def __init__(self, *, max_connections: int = 64, verify: ssl.SSLContext | bool = True) -> None:
        self.direct = AiohttpTransport(max_connections=max_connections, verify=verify)
        super().__init__(transport=self.direct, follow_redirects=False, trust_env=False)


def aiohttp_client(*, max_connections: int = 64) -> AiohttpClient:
    """A client of the daemon's (:class:`AiohttpClient`): one for the API clients and Slack
    actions, one the sinks share."""
    return AiohttpClient(max_connections=max_connections)
