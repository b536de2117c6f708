"""What went wrong on the wire, in one line a human can act on: the one home of the
classification of httpx transport errors, used by the sources' API client and by the sinks'
HTTP exchange (over httpx's own transport or the sinks' aiohttp one, :mod:`.transport`).

httpx wraps every transport failure in a few classes (``ConnectError`` for a name that does
not resolve, a refused connection and an untrusted certificate alike); the cause is in the
chain of exceptions beneath (``__cause__``/``__context__``, the members of an exception
group when several addresses were tried, aiohttp's ``os_error``/``certificate_error``).
:func:`describe_transport_error` walks that chain and names the problem::

    cannot resolve host api.example.invalid
    connection refused by 127.0.0.1:9
    TLS certificate not trusted by 127.0.0.1:8443: unable to get local issuer certificate

Only the peer's host and port are named, never its URL: a URL may carry credentials in its
userinfo or its query (:func:`watcher.model.secrets.masked_url`), a host cannot.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

import httpx2 as httpx

# How deep the chain of causes is followed (a cycle or a pathological chain stops here).
_MAX_CAUSES = 32


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what lies beneath it, breadth first, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < _MAX_CAUSES:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        beneath = (
            current.__cause__,
            current.__context__,
            getattr(current, "os_error", None),  # aiohttp's connector errors
            getattr(current, "certificate_error", None),
        )
        todo.extend(e for e in beneath if isinstance(e, BaseException))
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)


def peer(exc: BaseException, url: str | httpx.URL | None = None) -> str:
    """``host:port`` of the request ``exc`` was raised for, else of ``url`` (``"the peer"``
    when neither is known)."""
    request = None
    if isinstance(exc, httpx.RequestError):
        try:
            request = exc.request
        except RuntimeError:  # raised without a request (a direct transport, bare tests)
            request = None
    if request is not None:
        url = request.url
    if url is None:
        return "the peer"
    try:
        url = httpx.URL(url)
    except httpx.InvalidURL:
        return "the peer"
    host = url.host or "?"
    if ":" in host:
        host = f"[{host}]"
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{host}:{port}"


def _host(where: str) -> str:
    return where.rsplit(":", 1)[0] if where != "the peer" else where


def _tls(cause: ssl.SSLError, where: str) -> str:
    inner = getattr(cause, "certificate_error", None)  # aiohttp's wrapper is an SSLError too
    if isinstance(inner, ssl.SSLError):
        cause = inner
    if isinstance(cause, ssl.SSLCertVerificationError):
        said = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
        return f"TLS certificate not trusted by {where}: {said or 'verification failed'}"
    reason = str(getattr(cause, "reason", None) or type(cause).__name__)
    reason = reason.replace("_", " ").lower()
    return f"TLS handshake with {where} failed: {reason}"


def _os_error(cause: OSError, where: str) -> str | None:
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve host {_host(where)}"
    if isinstance(cause, ConnectionRefusedError) or cause.errno == errno.ECONNREFUSED:
        return f"connection refused by {where}"
    if isinstance(cause, ConnectionResetError):
        return f"connection reset by {where}"
    if cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"no route to {where}"
    if cause.errno == errno.EMFILE:
        return f"cannot connect to {where}: too many open files"
    return None


def describe_transport_error(exc: BaseException, url: str | httpx.URL | None = None) -> str:
    """One line saying what failed between watcher and a peer, from an httpx error (or a
    timeout): resolution, refusal, TLS, timeout, a broken answer. ``url`` names the peer
    when the error carries no request. Never quotes a URL, only its host and port."""
    where = peer(exc, url)
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError):
            return _tls(cause, where)
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            said = _os_error(cause, where)
            if said is not None:
                return said
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connection to {where} timed out"
    if isinstance(exc, httpx.PoolTimeout):
        return f"no free connection to {where} in time"
    if isinstance(exc, httpx.ReadTimeout | TimeoutError | httpx.TimeoutException):
        return f"no answer from {where} in time"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{where} broke the HTTP protocol (closed the connection or sent a bad answer)"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return f"the connection to {where} broke"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "unsupported protocol (only http and https)"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {where}"
    return f"{type(exc).__name__} with {where}"
