"""HTTP access to a Mistral API: bearer auth, explicit timeouts, retries with backoff.

Converts httpx errors and HTTP statuses into watcher's own exceptions:
429/5xx/timeouts/connection errors are retried (``Retry-After`` honoured) and then become
:class:`SourceUnavailable`; 401/403 :class:`SourceAuthError`; 410 :class:`SourceRetired`;
an answer that is not JSON :class:`SourceProtocolError`; 404 :class:`NotFound`; an answer
too large to buffer (:mod:`watcher.sources.answers`) or too deep to decode
(:mod:`watcher.sources.decoding`) :class:`~watcher.exceptions.UnusableAnswer`. Transport
failures are named by :func:`watcher.deliver.transport_errors.describe_transport_error` (cannot
resolve, refused, TLS…).

A POST (:meth:`ApiClient.post_json`, an action such as cancel) is retried only when the API
cannot have applied it: a connection never made, or 429/503 (refused before processing).
A timeout or a lost connection after sending, or another 5xx, is reported, never repeated.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, TypeVar

import anyio
import httpx2 as httpx
import structlog

from watcher import __version__
from watcher.deliver.exchange import open_request
from watcher.deliver.redact import Scrubber
from watcher.deliver.retry import Verdict, backoff, classify, parse_retry_after
from watcher.deliver.transport_errors import describe_transport_error
from watcher.exceptions import (
    NotFound,
    SourceAuthError,
    SourceProtocolError,
    SourceRetired,
    SourceUnavailable,
    StreamRefused,
    UnusableAnswer,
)
from watcher.model.secrets import Secret
from watcher.sources.answers import (
    MAX_ANSWER,
    ByteBudget,
    TooLarge,
    Undecodable,
    read_capped,
    read_excerpt,
    share,
)
from watcher.sources.decoding import Refused, decode
from watcher.sources.endpoint import Endpoint

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Longer waits than this give up the cycle instead of holding it (the next cycle retries).
MAX_WAIT = 60.0
# Answers larger than this are decoded in a worker thread (the event loop keeps answering).
THREAD_DECODE = 1024 * 1024


# Statuses that say a POST was refused before it was processed: it may be sent again.
NOT_PROCESSED = frozenset({429, 503})
# Transport errors raised before a request left: sending it again cannot apply it twice.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Posted(NamedTuple):
    """A POST's final answer: a 2xx, or a refusal for the caller to word (404, 409, 422…)."""

    status: int
    body: Any  # the decoded JSON, None when empty or not JSON
    detail: str  # the API's own message (``detail``/``message``): one clean line, scrubbed


class _Retryable(NamedTuple):
    """Why an attempt got no usable answer, when another attempt may get one."""

    problem: str
    retry_after: float | None = None


class ApiClient:
    """GETs JSON from one API, counting requests (polling cost is a feature to measure)."""

    def __init__(
        self,
        *,
        source: str,
        base_url: str,
        api_key: Secret,
        client: httpx.AsyncClient,
        timeout: float,
        max_retries: int,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        observe: Callable[[str, int | None], None] | None = None,
        in_flight: ByteBudget | None = None,
        max_answer: int = MAX_ANSWER,
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self._endpoint = Endpoint.of(base_url)
        self._api_key = api_key
        self._client = client
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._deadline = timeout  # for the whole exchange: httpx's timeouts are per read
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self.requests = 0
        # A peer that asked for a long pause (Retry-After beyond MAX_WAIT) gets it: no
        # request goes out before this time, whichever cycle asks.
        self.not_before = 0.0
        # Told of every request sent: (route, HTTP status, or None when no answer came).
        self.observe = observe
        # The bytes its answers may buffer at once: the process's budget (the daemon shares
        # one among its sources), else this client's own.
        self.in_flight = in_flight if in_flight is not None else ByteBudget()
        self.max_answer = max_answer

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key.get()}",
            "Accept": accept,
            # Encodings read a bounded step at a time (:mod:`watcher.sources.answers`).
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"watcher/{__version__}",
        }

    @asynccontextmanager
    async def stream(
        self,
        client: httpx.AsyncClient,
        path: str,
        params: Mapping[str, Any],
        *,
        route: str,
        idle_timeout: float,
    ) -> AsyncIterator[httpx.EventSource]:
        """``GET path`` as a server-sent event stream on ``client`` (streams hold their
        connections for long: not the shared client's pool). One attempt, no retries: the
        caller reconnects. A read gap longer than ``idle_timeout`` raises
        ``httpx.ReadTimeout``. Refusals raise as :meth:`get_json`'s answers do, a final 4xx
        as :class:`StreamRefused`. Not counted in :attr:`requests` (a cycle's cost): the
        ``observe`` callback sees it as the route ``stream``."""
        timeout = httpx.Timeout(self._deadline, connect=min(self._deadline, 5.0), read=idle_timeout)
        try:
            # No size cap in the parser: the caller bounds events itself and refuses the
            # stream with its own message (httpx2's cap would end it as a transport error).
            async with client.sse(
                self._endpoint.url(path),
                params=self._endpoint.params(params),
                headers=self._headers("text/event-stream"),
                timeout=timeout,
                max_event_size=None,
            ) as source:
                status = source.response.status_code
                self._observe(route, status)
                if status != 200:
                    body = await read_excerpt(source.response)
                    retry_after = source.response.headers.get("retry-after")
                    self._refused(status, retry_after, body, route)
                yield source
        except httpx.ReadTimeout:
            self._observe(route, None)
            raise  # the stream went quiet: the caller's business
        except httpx.TransportError as exc:
            self._observe(route, None)
            problem = describe_transport_error(exc, self.base_url)
            raise SourceUnavailable(self.source, f"{problem} ({route})") from None

    def _refused(self, status: int, retry_header: str | None, body: bytes, route: str) -> None:
        """Why a stream was not opened, as an exception."""
        if status in (401, 403, 410) or classify(status) is Verdict.RETRY:
            outcome = self._answer(status, retry_header, body, route)  # raises those
            if isinstance(outcome, _Retryable):
                raise SourceUnavailable(self.source, outcome.problem)
        detail = " ".join(body.decode("utf-8", "replace").split())[:200]
        raise StreamRefused(self.source, status, detail)

    async def get_json(self, path: str, params: Mapping[str, Any], *, route: str) -> Any:
        """The decoded JSON body of ``GET path``; ``route`` names it in logs and errors."""
        headers = self._headers()
        problem = ""
        wait = self.not_before - time.time()
        if wait > 0:
            raise SourceUnavailable(self.source, f"the API asked to wait {wait:.0f}s more")
        for attempt in range(self._max_retries + 1):
            self.requests += 1
            outcome = await self._attempt(path, params, headers, route)
            if not isinstance(outcome, _Retryable):
                return outcome
            problem = outcome.problem
            if attempt == self._max_retries:
                break
            delay = backoff(
                attempt,
                base=self._backoff_base,
                cap=self._backoff_cap,
                retry_after=outcome.retry_after,
            )
            if delay > MAX_WAIT:
                problem += f" (asked to wait {delay:.0f}s)"
                self.not_before = time.time() + delay
                break
            log.debug(
                "api_retry",
                source=self.source,
                route=route,
                problem=problem,
                attempt=attempt + 1,
                delay=round(delay, 3),
            )
            await self._sleep(delay)
        raise SourceUnavailable(self.source, problem or f"{route} failed")

    async def post_json(self, path: str, *, route: str) -> Posted:
        """``POST path`` (no body): its final answer. 401/403, 410 and exhausted retries
        raise as :meth:`get_json`'s do; an answer lost after sending, or a 5xx other than
        503, raises :class:`SourceUnavailable` at once (the API may have applied it)."""
        headers = self._headers()
        wait = self.not_before - time.time()
        if wait > 0:
            raise SourceUnavailable(self.source, f"the API asked to wait {wait:.0f}s more")
        problem = f"{route} failed"
        for attempt in range(self._max_retries + 1):
            self.requests += 1
            retry_after: float | None = None
            try:
                with anyio.fail_after(self._deadline):
                    status, retry_header, body = await self._send(
                        "POST", path, {}, headers, _excerpt
                    )
            except NEVER_SENT as exc:
                self._observe(route, None)
                problem = f"{describe_transport_error(exc, self.base_url)} ({route})"
            except (TimeoutError, httpx.TransportError) as exc:
                self._observe(route, None)
                what = (
                    "timeout"
                    if isinstance(exc, TimeoutError)
                    else describe_transport_error(exc, self.base_url)
                )
                raise SourceUnavailable(
                    self.source, f"no answer to {route} ({what}): it may have been applied"
                ) from None
            except (TooLarge, Undecodable) as exc:
                self._observe(route, None)
                raise UnusableAnswer(self.source, f"answer to {route} unread: {exc}") from None
            else:
                self._observe(route, status)
                if status == 410:
                    raise SourceRetired(self.source, route)
                if status in (401, 403):
                    raise SourceAuthError(self.source, status)
                if status not in NOT_PROCESSED:
                    if status >= 500:
                        raise SourceUnavailable(
                            self.source, f"HTTP {status} from {route}: it may have been applied"
                        )
                    return self._posted(status, body)
                problem = f"HTTP {status} from {route}"
                retry_after = parse_retry_after(retry_header, now=time.time())
            if attempt == self._max_retries:
                break
            delay = backoff(
                attempt, base=self._backoff_base, cap=self._backoff_cap, retry_after=retry_after
            )
            if delay > MAX_WAIT:
                problem += f" (asked to wait {delay:.0f}s)"
                self.not_before = time.time() + delay
                break
            await self._sleep(delay)
        raise SourceUnavailable(self.source, problem)

    def _posted(self, status: int, body: bytes | None) -> Posted:
        """A final answer, its JSON decoded and its message made fit to quote."""
        try:
            decoded = decode(body) if body else None
        except ValueError:  # not JSON, or refused (decoding.Refused)
            decoded = None
        said: Any = None
        if isinstance(decoded, dict):
            said = decoded.get("detail") or decoded.get("message")
        if isinstance(said, list):  # FastAPI's 422: [{"loc", "msg", "type"}…]
            said = "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in said)
        if said is None and body and decoded is None:
            said = body[:4096].decode("utf-8", "replace")
        scrubber = Scrubber.of_secrets(self._api_key)
        return Posted(status, decoded, scrubber.excerpt(str(said)) if said else "")

    async def _attempt(
        self, path: str, params: Mapping[str, Any], headers: Mapping[str, str], route: str
    ) -> Any:
        """One request: its decoded body, or :class:`_Retryable` saying why it is worth
        another; final errors raise."""

        async def meaning(status: int, retry_header: str | None, body: bytes) -> Any:
            self._observe(route, status)
            if classify(status) is not Verdict.DONE or len(body) < THREAD_DECODE:
                return self._answer(status, retry_header, body, route)
            return await anyio.to_thread.run_sync(self._answer, status, retry_header, body, route)

        try:
            with anyio.fail_after(self._deadline):
                return await self._send("GET", path, params, headers, meaning)
        except TimeoutError:
            self._observe(route, None)
            return _Retryable(f"timeout on {route}")
        except httpx.TransportError as exc:
            self._observe(route, None)
            return _Retryable(f"{describe_transport_error(exc, self.base_url)} ({route})")
        except TooLarge as exc:
            self._observe(route, 200)
            raise UnusableAnswer(
                self.source, f"answer from {route} is too large: {exc.describe(self.max_answer)}"
            ) from None
        except Undecodable as exc:
            self._observe(route, 200)
            raise UnusableAnswer(self.source, f"answer from {route}: {exc}") from None

    def _answer(self, status: int, retry_header: str | None, body: bytes, route: str) -> Any:
        """What an HTTP answer means: its decoded body, :class:`_Retryable`, or an error."""
        if status == 410:
            raise SourceRetired(self.source, route)
        if status in (401, 403):
            raise SourceAuthError(self.source, status)
        verdict = classify(status)
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(retry_header, now=time.time())
            return _Retryable(f"HTTP {status} from {route}", retry_after)
        if verdict is not Verdict.DONE:
            if status == 404:
                raise NotFound(self.source, f"HTTP 404 from {route}")
            raise SourceProtocolError(self.source, f"HTTP {status} from {route}")
        try:
            return decode(body)
        except Refused as exc:
            raise UnusableAnswer(self.source, f"answer from {route} is {exc.reason}") from None
        except ValueError:
            return _Retryable(f"malformed JSON from {route}")

    def _observe(self, route: str, status: int | None) -> None:
        if self.observe is not None:
            self.observe(route, status)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str],
        meaning: Callable[[int, str | None, bytes], Awaitable[T]],
    ) -> T:
        """Send one request; ``meaning`` of its status, ``Retry-After`` and body. A 2xx body
        is read up to :attr:`max_answer` bytes (:class:`~watcher.sources.answers.TooLarge`
        past it, refused before reading when its ``Content-Length`` says so) while holding
        its share of the bytes in flight, until ``meaning`` is done with it; any other
        answer gives an excerpt."""
        response = await open_request(
            self._client,
            method,
            self._endpoint.url(path),
            params=self._endpoint.params(params),
            headers=headers,
            timeouts=self._timeout,
            decompress=False,  # inflated by read_capped, a bounded step at a time
        )
        try:
            retry_header = response.headers.get("retry-after")
            status = response.status_code
            if not 200 <= status < 300:
                return await meaning(status, retry_header, await read_excerpt(response))
            async with self.in_flight.hold(share(response, self.max_answer)):
                body = await read_capped(response, self.max_answer)
                return await meaning(status, retry_header, body)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()


async def _excerpt(
    status: int, retry_header: str | None, body: bytes
) -> tuple[int, str | None, bytes]:
    """A POST's answer as read (its body is at most an excerpt of a few KB)."""
    return status, retry_header, body
