"""Every sink, built from its config like the daemon builds it, never shows a secret given in
any form the config allows (inline, ``${VAR}``, ``*_file``) in an error or a log line."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import anyio.abc
import httpx2 as httpx
import pytest
from structlog.testing import capture_logs

from tests.factories import sink_config, sink_envelope
from watcher.abc import Sink
from watcher.config import SinkConfig
from watcher.deliver.redact import REDACTED
from watcher.exceptions import DeliveryError
from watcher.sinks import build_sink, scrubber_for

KEY = base64.b64encode(b"0123456789abcdef01234567").decode()
WHSEC = f"whsec_{KEY}"
USER = "hook-user"
PASSWORD = "p4ss:w0rd/with&odd"
HOOK_TOKEN = "T000/B000/XyZsEcReTtOkEn42"
BOT_TOKEN = "xoxb-1234-5678-SeCrEtBoTtOkEn"
ROUTING_KEY = "R0UTINGkey0123456789abcdef012345"
SMTP_PASSWORD = "Smtp-Pa55word-xyz"
HEADER_SECRET = "hdr-secret-4242"


def forms(*secrets: str) -> list[str]:
    """The forms a peer may echo a secret in: as is, percent-encoded, base64."""
    found: list[str] = []
    for secret in secrets:
        found += [secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()]
    return found


def sink_of(raw: dict[str, Any], tmp_path: Path, how: str, secret_key: str) -> SinkConfig:
    """The sink config ``raw`` with its ``secret_key`` given ``how``: inline, env or file."""
    value = raw.pop(secret_key)
    env: dict[str, str] = {}
    if how == "env":
        env["SINK_SECRET"] = value
        raw[secret_key] = "${SINK_SECRET}"
    elif how == "file":
        path = tmp_path / "secret"
        path.write_text(value + "\n")
        raw[f"{secret_key}_file"] = str(path)
    else:
        raw[secret_key] = value
    return sink_config(tmp_path, raw, env=env)


class NoState:
    async def get_sink_state(self, sink: str, key: str) -> str | None:
        return None

    async def put_sink_state(self, sink: str, key: str, value: str) -> None:
        return None


def heard(request: httpx.Request) -> str:
    """What a peer may quote of a request, secret-bearing parts first (excerpts are short)."""
    headers = request.headers
    wanted = ("authorization", "webhook-signature", "x-api-key")
    quoted = " ".join(f"{name}={headers[name]}" for name in wanted if name in headers)
    return f"{quoted} {request.url} {request.content.decode()[:100]}"


def echo(status: int) -> httpx.MockTransport:
    """A peer that answers ``status`` quoting back what it received."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = heard(request).encode()
        return httpx.Response(status, content=body, headers={"retry-after": "1"})

    return httpx.MockTransport(handler)


def refuse() -> httpx.MockTransport:
    """A transport failing with an error that quotes the request."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {heard(request)}")

    return httpx.MockTransport(handler)


async def shown_by(sink: Sink) -> str:
    """What the sink let out while failing once: its error and every log line."""
    with capture_logs() as logs:
        try:
            await sink.send([sink_envelope()])
        except DeliveryError as exc:
            logs.append({"error": str(exc), "repr": repr(exc)})
    return repr(logs)


HTTP_SINKS = [
    pytest.param(
        {
            "kind": "webhook",
            "url": f"https://{USER}:{quote(PASSWORD, safe='')}@hooks.example.com/h?token={KEY}",
            "secret": WHSEC,
            "headers": {"x-api-key": HEADER_SECRET},
        },
        "url",
        [*forms(PASSWORD, f"{USER}:{PASSWORD}", KEY, WHSEC, HEADER_SECRET)],
        id="webhook url",
    ),
    pytest.param(
        {"kind": "webhook", "url": "https://hooks.example.com/h", "secret": WHSEC},
        "secret",
        forms(WHSEC, KEY),
        id="webhook secret",
    ),
    pytest.param(
        {"kind": "slack", "webhook_url": f"https://hooks.slack.com/services/{HOOK_TOKEN}"},
        "webhook_url",
        forms(HOOK_TOKEN, "XyZsEcReTtOkEn42"),
        id="slack webhook_url",
    ),
    pytest.param(
        {"kind": "slack", "token": BOT_TOKEN, "channel": "C1", "api_url": "https://slack.test"},
        "token",
        forms(BOT_TOKEN),
        id="slack token",
    ),
    pytest.param(
        {"kind": "pagerduty", "routing_key": ROUTING_KEY, "url": "https://events.test/v2/e"},
        "routing_key",
        forms(ROUTING_KEY),
        id="pagerduty routing_key",
    ),
]


@pytest.mark.parametrize("how", ["inline", "env", "file"])
@pytest.mark.parametrize("transport", ["400", "503", "transport error"])
@pytest.mark.parametrize(("raw", "secret_key", "secrets"), HTTP_SINKS)
async def test_http_sink_never_shows_a_secret(
    raw: dict[str, Any],
    secret_key: str,
    secrets: list[str],
    transport: str,
    how: str,
    tmp_path: Path,
) -> None:
    """A peer echoing the whole request, or a transport error quoting it, leaks nothing."""
    config = sink_of(dict(raw), tmp_path, how, secret_key)
    mock = refuse() if transport == "transport error" else echo(int(transport))
    async with httpx.AsyncClient(transport=mock) as client:
        shown = await shown_by(build_sink(config, client, NoState()))

    assert [] == [secret for secret in secrets if secret in shown]


@asynccontextmanager
async def echoing_smtp() -> AsyncIterator[int]:
    """An SMTP server that offers AUTH and refuses it quoting what the client sent."""

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(b"220 echo ready\r\n")
            buffer = b""
            while True:
                try:
                    buffer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                while b"\r\n" in buffer:
                    line, buffer = buffer.split(b"\r\n", 1)
                    verb = line.split(b" ", 1)[0].upper()
                    if verb == b"EHLO":
                        await stream.send(b"250-echo\r\n250 AUTH PLAIN LOGIN\r\n")
                    elif verb == b"QUIT":
                        await stream.send(b"221 bye\r\n")
                        return
                    else:
                        await stream.send(b"535 5.7.8 refused: " + line[:400] + b"\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
        tasks.cancel_scope.cancel()


@pytest.mark.parametrize("how", ["inline", "env", "file"])
async def test_email_never_shows_the_password(how: str, tmp_path: Path) -> None:
    """A server quoting the AUTH exchange back leaks the password in no form."""
    with anyio.fail_after(10):
        async with echoing_smtp() as port:
            raw = {
                "kind": "email",
                "host": "127.0.0.1",
                "port": port,
                "tls": "none",
                "username": USER,
                "password": SMTP_PASSWORD,
                "from": "watcher@example.com",
                "to": ["oncall@example.com"],
                "timeout": "5s",
            }
            config = sink_of(raw, tmp_path, how, "password")
            async with httpx.AsyncClient() as client:
                sink = build_sink(config, client, NoState())
                shown = await shown_by(sink) + repr(sink.__dict__)

    secrets = forms(SMTP_PASSWORD, f"\0{USER}\0{SMTP_PASSWORD}")
    assert ([], True) == ([s for s in secrets if s in shown], "535" in shown)


def test_webhook_config_scrubs_whsec_key_and_headers(tmp_path: Path) -> None:
    """From a webhook config: the whsec secret, its bare key and extra header values."""
    key = base64.b64encode(b"0123456789abcdef01234567").decode()
    config = sink_config(
        tmp_path,
        {
            "kind": "webhook",
            "url": "https://h.example/h",
            "secret": f"whsec_{key}",
            "headers": {"x-api-key": "hdr-value-1"},
        },
    )

    expected = f"{REDACTED} {REDACTED} {REDACTED}"
    assert expected == scrubber_for(config).scrub(f"whsec_{key} {key} hdr-value-1")


def test_email_config_scrubs_auth_forms(tmp_path: Path) -> None:
    """From an email config: the password, base64 (AUTH LOGIN) and AUTH PLAIN forms."""
    config = sink_config(
        tmp_path,
        {
            "kind": "email",
            "host": "127.0.0.1",
            "port": 25,
            "tls": "none",
            "username": "bot",
            "password": "pw-secret",
            "from": "w@example.com",
            "to": ["o@example.com"],
        },
    )
    forms = [
        "pw-secret",
        base64.b64encode(b"pw-secret").decode(),
        base64.b64encode(b"\0bot\0pw-secret").decode(),
    ]

    expected = " ".join([REDACTED] * 3)
    assert expected == scrubber_for(config).scrub(" ".join(forms))
