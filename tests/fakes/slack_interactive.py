"""The fake Slack's interactive side: signed interaction requests as Slack sends them, and
a loopback Socket Mode server.

- :func:`interaction` builds a ``block_actions`` payload (a button pressed on a message);
  :func:`signed` turns it into the request Slack POSTs to an app's Interactivity Request
  URL: ``application/x-www-form-urlencoded`` body ``payload=<json>``,
  ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` = ``v0=`` + HMAC-SHA256 of
  ``v0:{timestamp}:{body}`` with the signing secret (Slack's "Verifying requests").
- :class:`SocketModeServer`: a WebSocket server on 127.0.0.1 (``websockets``) that says
  ``hello`` to each connection, lets the test push envelopes (``interactive`` by
  :meth:`SocketModeServer.push`) and records the client's acknowledgements
  (``{"envelope_id": …}``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.waiting import wait_until


def interaction(
    action_id: str,
    value: str,
    *,
    user: str = "U-ALICE",
    username: str = "alice",
    channel: str = "C-ALERTS",
    message_ts: str = "1700000001.000001",
    response_url: str = "https://hooks.slack.com/actions/T0/1/x",
) -> dict[str, Any]:
    """A ``block_actions`` payload: ``user`` pressed button ``action_id`` on a message."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": username, "name": username, "team_id": "T0"},
        "api_app_id": "A0",
        "team": {"id": "T0", "domain": "example"},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "channel": {"id": channel, "name": "alerts"},
        "message": {"type": "message", "ts": message_ts, "text": "card"},
        "trigger_id": "1.2.3",
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "watcher_job_actions",
                "value": value,
                "text": {"type": "plain_text", "text": action_id},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed(
    payload: dict[str, Any] | str, secret: str, *, timestamp: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of the request Slack sends for ``payload`` (a string: sent as is)."""
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    body = urlencode({"payload": raw}).encode()
    ts = str(int(time.time() if timestamp is None else timestamp))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": sign(secret, ts, body),
    }
    return body, headers


class SocketModeServer:
    """Socket Mode's WebSocket end on loopback: ``url`` is what ``apps.connections.open``
    answers; :meth:`push` sends an envelope to every connection, ``acks`` holds the
    envelope ids the clients acknowledged."""

    def __init__(self) -> None:
        self.url = ""
        self.connections: list[ServerConnection] = []
        self.acks: list[str] = []
        self.received: list[Any] = []
        self.opened = 0

    async def _handle(self, connection: ServerConnection) -> None:
        self.opened += 1
        self.connections.append(connection)
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0"}}
        await connection.send(json.dumps(hello))
        try:
            async for message in connection:  # until the client leaves, cleanly or not
                try:
                    data = json.loads(message)
                except ValueError:
                    continue
                self.received.append(data)
                if isinstance(data, dict) and isinstance(data.get("envelope_id"), str):
                    self.acks.append(data["envelope_id"])
        except ConnectionClosed:
            pass  # a client that drops the socket without a close frame (as clients do)
        finally:
            self.connections.remove(connection)

    async def push(self, payload: dict[str, Any], *, kind: str = "interactive") -> str:
        """Send an envelope of ``kind`` to every connection (waits for one); its id."""
        await wait_until(lambda: bool(self.connections), what="a Socket Mode connection")
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": False,
        }
        for connection in list(self.connections):
            await connection.send(json.dumps(envelope))
        return envelope_id

    async def acked(self, envelope_id: str, *, within: float = 5.0) -> None:
        await wait_until(
            lambda: envelope_id in self.acks, within=within, what=f"ack of {envelope_id}"
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SocketModeServer]:
        async with serve(self._handle, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/link/?ticket={uuid.uuid4()}&app_id=A0"
            try:
                yield self
            finally:
                self.url = ""
                for connection in list(self.connections):
                    await connection.close()
