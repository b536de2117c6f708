"""What the webhook sink's tests share: a sink over a mock transport, envelopes, a
recording peer, a leaky URL and a peer echoing it back."""

from __future__ import annotations

import base64
from collections.abc import Callable, Coroutine
from typing import Any

import httpx2 as httpx

from tests.factories import sink_envelope
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.sinks.webhook import WebhookSink

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
NOW = 1_795_000_000.0
URL = "https://hooks.example.com/mistral"

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


def envelope(tid: str = "wt_0001", **overrides: Any) -> Envelope:
    return sink_envelope(id=tid, detected_at=NOW, **overrides)


def make_sink(
    handler: Handler,
    *,
    url: str = URL,
    secret: str | None = SECRET,
    clock: Callable[[], float] = lambda: NOW,
    **kwargs: Any,
) -> WebhookSink:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return WebhookSink(
        "hooks",
        url,
        secret=Secret(secret) if secret is not None else None,
        client=client,
        clock=clock,
        **kwargs,
    )


def recorder(
    status: int = 200, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[list[httpx.Request], Handler]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers=headers, content=body)

    return seen, handler


LEAKY_URL = (
    "https://alice:pw-hunter2-secret@hooks.example.com/hook/tok-path-secret?token=q-secret-1"
)
LEAKS = [
    "pw-hunter2-secret",
    "tok-path-secret",
    "q-secret-1",
    SECRET,
    SECRET[6:],
    base64.b64encode(b"alice:pw-hunter2-secret").decode(),  # the Basic auth httpx sends
]


def echo_everything(status: int) -> Handler:
    """A peer that echoes the URL, the headers and the body back in its error page."""

    def handler(request: httpx.Request) -> httpx.Response:
        headers = " ".join(
            f"{k}={v}" for k, v in request.headers.items() if k.startswith(("a", "w"))
        )
        echoed = f"{headers} {request.url} {request.content.decode()}"
        return httpx.Response(status, content=echoed.encode())

    return handler
