"""A fake Slack for the tests and ``watcher demo``: incoming webhooks and ``chat.postMessage``.

It checks what real Slack checks (and a little more, so that a sink's mistakes show):

- ``POST /hooks/{anything}``: an incoming webhook. The body must be a JSON object with a
  non-empty ``text`` or ``blocks`` (``no_text``; not JSON: ``invalid_payload``); at most 50
  blocks, header text at most 150 characters, section text at most 3000, at most 10
  fields of at most 2000 (``invalid_blocks``); ``text`` at most 4000 (``msg_too_long``:
  Slack itself truncates at 40,000 but advises 4,000). Errors are plain-text bodies with
  Slack's strings and statuses. At most one message per second per hook, else 429 with
  ``Retry-After: 1``.
- ``POST /api/chat.postMessage``: the Web API. ``Authorization: Bearer <token>``
  (``not_authed`` / ``invalid_auth``), a known ``channel`` (``channel_not_found``), not
  archived (``is_archived``), the same payload checks, a ``thread_ts`` naming a message of
  the channel (``thread_not_found``). Answers HTTP 200 ``{"ok": true, "ts", "channel"}``
  with increasing ``ts``, or ``{"ok": false, "error"}``.
- ``POST /api/chat.update``: the same checks, and ``ts`` naming a message of the channel
  (``message_not_found``); replaces the message's payload (``updates`` keeps every edit).
  ``fail_updates(n, retry_after=…)`` answers the next ``n`` edits with HTTP 429
  ``ratelimited``.
- ``POST /api/chat.postEphemeral``: the same checks plus a ``user``; recorded in
  ``ephemeral``.
- ``POST /actions/{anything}``: a ``response_url``; what is posted is recorded in
  ``responses``.
- ``POST /api/apps.connections.open``: needs the app token (``Bearer xapp-…``); answers the
  ``ws://127.0.0.1:PORT/…`` URL of :attr:`socket` (a
  :class:`tests.fakes.slack_interactive.SocketModeServer`, started with
  ``async with slack.socket.running()``).
- ``GET /_received``: what was accepted, as JSON (for a demo in another process).

In-process::

    slack = FakeSlack(token="xoxb-test", channels=["C-ALERTS"])
    async with serve_app(slack.app) as url:
        ...  # webhook_url=f"{url}/hooks/T0/B0/xyz", api_url=f"{url}/api"
        slack.archive("C-ALERTS"); slack.fail_next(1, status=503, error="service_unavailable")
        await slack.wait_for(lambda got: len(got) >= 2)  # tests.waiting.wait_until inside
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.slack_interactive import SocketModeServer
from tests.fakes.slack_payload import PayloadError, validate
from tests.fakes.strict import strict_json
from tests.waiting import wait_until


@dataclass
class SlackMessage:
    """One accepted message."""

    via: str  # "webhook" or "api"
    target: str  # the hook path after /hooks/, or the channel
    payload: dict[str, Any]
    body: bytes
    ts: str
    received_at: float
    thread_ts: str | None = None
    reply_broadcast: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        value = self.payload.get("text")
        return value if isinstance(value, str) else ""

    @property
    def blocks(self) -> list[dict[str, Any]]:
        value = self.payload.get("blocks")
        return value if isinstance(value, list) else []

    def to_json(self) -> dict[str, Any]:
        return {
            "via": self.via,
            "target": self.target,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
            "reply_broadcast": self.reply_broadcast,
            "received_at": self.received_at,
            "payload": self.payload,
        }


@dataclass
class SlackUpdate:
    """One accepted ``chat.update``: the message ``ts`` now shows ``payload``."""

    ts: str
    payload: dict[str, Any]
    received_at: float

    @property
    def text(self) -> str:
        value = self.payload.get("text")
        return value if isinstance(value, str) else ""


@dataclass
class Rejected:
    """One refused request: the HTTP status and Slack's error string."""

    via: str
    target: str
    status: int
    error: str
    body: bytes


class FakeSlack:
    """Records what a sink sends and answers like Slack (see the module doc).

    ``clock`` (seconds) drives the one-message-per-second limit of webhooks, so that tests
    can move time instead of sleeping. ``api_interval`` rate-limits ``chat.postMessage`` per
    channel the same way (``None``: no limit). ``wait_for`` polls with
    :func:`tests.waiting.wait_until`.
    """

    def __init__(
        self,
        *,
        token: str = "xoxb-fake-token",  # noqa: S107 - the fake's own test token
        app_token: str = "xapp-fake-app-token",  # noqa: S107
        channels: Iterable[str] = ("C-ALERTS",),
        webhook_interval: float = 1.0,
        api_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.app_token = app_token
        self.updates: list[SlackUpdate] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []
        self.socket = SocketModeServer()
        self._update_fail: list[str] = []
        self._initial_channels = frozenset(channels)
        self.channels: set[str] = set(channels)
        self.archived: set[str] = set()
        self.webhook_interval = webhook_interval
        self.api_interval = api_interval
        self.clock = clock
        self.messages: list[SlackMessage] = []
        self.rejected: list[Rejected] = []
        self.requests = 0
        self._broken_hooks: dict[str, tuple[int, str]] = {}
        self._last: dict[tuple[str, str], float] = {}
        self._fail: list[tuple[int, str, str | None]] = []
        self._seq = 0
        self.app = Starlette(
            routes=[
                Route("/hooks/{hook:path}", self._webhook, methods=["POST"]),
                Route("/api/chat.postMessage", self._post_message, methods=["POST"]),
                Route("/api/chat.update", self._update, methods=["POST"]),
                Route("/api/chat.postEphemeral", self._post_ephemeral, methods=["POST"]),
                Route("/api/apps.connections.open", self._connections_open, methods=["POST"]),
                Route("/actions/{path:path}", self._response_url, methods=["POST"]),
                Route("/_received", self._list, methods=["GET"]),
            ]
        )

    # -- in-process API ------------------------------------------------------------------

    def webhook_messages(self, hook: str | None = None) -> list[SlackMessage]:
        """Messages accepted through incoming webhooks (of ``hook`` when given)."""
        return [
            m
            for m in self.messages
            if m.via == "webhook" and (hook is None or m.target == hook.strip("/"))
        ]

    def channel_messages(self, channel: str | None = None) -> list[SlackMessage]:
        """Messages accepted by ``chat.postMessage`` (in ``channel`` when given)."""
        return [
            m for m in self.messages if m.via == "api" and (channel is None or m.target == channel)
        ]

    def thread(self, ts: str) -> list[SlackMessage]:
        """The message ``ts`` and its replies, in order."""
        return [m for m in self.messages if m.ts == ts or m.thread_ts == ts]

    def add_channel(self, channel: str) -> None:
        self.channels.add(channel)

    def archive(self, channel: str) -> None:
        """``chat.postMessage`` to ``channel`` now answers ``is_archived``."""
        self.archived.add(channel)

    def unarchive(self, channel: str) -> None:
        self.archived.discard(channel)

    def break_hook(self, hook: str, status: int = 404, error: str = "no_service") -> None:
        """Answer every message to ``hook`` with ``status`` and ``error`` (e.g. 410
        ``channel_is_archived``, 403 ``action_prohibited``, 403 ``invalid_token``)."""
        self._broken_hooks[hook.strip("/")] = (status, error)

    def repair_hook(self, hook: str) -> None:
        self._broken_hooks.pop(hook.strip("/"), None)

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        error: str = "internal_error",
        retry_after: float | str | None = None,
    ) -> None:
        """Refuse the next ``n`` requests (either endpoint) with ``status`` and ``error``.

        Webhooks answer ``error`` as the plain-text body; the API answers
        ``{"ok": false, "error"}`` (use ``status=200`` for Slack's usual way)."""
        if n < 0 or not 100 <= status <= 599:
            raise ValueError("fail_next needs n >= 0 and an HTTP status code")
        after = None if retry_after is None else str(retry_after)
        self._fail = [(status, error, after)] * n

    def fail_updates(self, n: int = 1, *, retry_after: float = 1) -> None:
        """Answer the next ``n`` ``chat.update`` calls with HTTP 429 ``ratelimited``."""
        self._update_fail = [str(retry_after)] * n

    def top_level(self, channel: str | None = None) -> list[SlackMessage]:
        """Channel messages that are no thread reply (the cards, in bot mode)."""
        return [m for m in self.channel_messages(channel) if m.thread_ts is None]

    def card_of(self, job_id: str) -> SlackMessage | None:
        """The top-level message naming ``job_id`` (a job's card), as last edited."""
        for m in self.top_level():
            if job_id in json.dumps(m.payload):
                return m
        return None

    def clear(self) -> None:
        """Forget what was received (channels and behaviour controls stay)."""
        self.messages.clear()
        self.rejected.clear()
        self.updates.clear()
        self.ephemeral.clear()
        self.responses.clear()

    def reset(self, *, clock: Callable[[], float] | None = None) -> None:
        """Back to as constructed: nothing received, channels as given, no failure planned,
        no rate-limit memory (and a new ``clock`` when given)."""
        self.clear()
        self.channels = set(self._initial_channels)
        self.archived.clear()
        self._broken_hooks.clear()
        self._last.clear()
        self._fail.clear()
        self._update_fail.clear()
        self.requests = 0
        if clock is not None:
            self.clock = clock

    async def wait_for(
        self, predicate: Callable[[Sequence[SlackMessage]], bool], *, within: float = 10.0
    ) -> list[SlackMessage]:
        """Wait until ``predicate(messages)`` holds (the test fails after ``within`` s)."""
        await wait_until(
            lambda: predicate(self.messages),
            within=within,
            what="the fake Slack's messages",
            diagnose=lambda: f"{len(self.messages)} received",
        )
        return list(self.messages)

    def _next_ts(self) -> str:
        self._seq += 1
        return f"{1_700_000_000 + self._seq}.{self._seq:06d}"

    def _limited(self, key: tuple[str, str], interval: float | None) -> float | None:
        """Seconds to wait if ``key`` sent less than ``interval`` ago, else ``None``."""
        if interval is None or interval <= 0:
            return None
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < interval:
            return interval - (now - last)
        return None

    def _reject(self, via: str, target: str, status: int, error: str, body: bytes) -> None:
        self.rejected.append(Rejected(via, target, status, error, body))

    # -- HTTP ----------------------------------------------------------------------------

    async def _webhook(self, request: Request) -> Response:
        hook = str(request.path_params["hook"]).strip("/")
        body = await request.body()
        self.requests += 1
        if self._fail:
            status, error, after = self._fail.pop(0)
            self._reject("webhook", hook, status, error, body)
            headers = {"retry-after": after} if after is not None else None
            return PlainTextResponse(error, status_code=status, headers=headers)
        if hook in self._broken_hooks:
            status, error = self._broken_hooks[hook]
            self._reject("webhook", hook, status, error, body)
            return PlainTextResponse(error, status_code=status)
        wait = self._limited(("webhook", hook), self.webhook_interval)
        if wait is not None:
            self._reject("webhook", hook, 429, "rate_limited", body)
            return PlainTextResponse(
                "rate_limited", status_code=429, headers={"retry-after": str(math.ceil(wait))}
            )
        try:
            payload = strict_json(body)
            validate(payload)
        except PayloadError as exc:
            self._reject("webhook", hook, 400, str(exc), body)
            return PlainTextResponse(str(exc), status_code=400)
        except (ValueError, UnicodeDecodeError):
            self._reject("webhook", hook, 400, "invalid_payload", body)
            return PlainTextResponse("invalid_payload", status_code=400)
        self._last[("webhook", hook)] = self.clock()
        self.messages.append(
            SlackMessage(
                via="webhook",
                target=hook,
                payload=payload,
                body=body,
                ts=self._next_ts(),
                received_at=time.time(),
                headers={k.lower(): v for k, v in request.headers.items()},
            )
        )
        return PlainTextResponse("ok")

    async def _api_request(
        self, request: Request
    ) -> tuple[dict[str, Any] | None, Response | None, bytes, dict[str, str]]:
        """Read a Web API call: (payload, None) when it may go on, (None, refusal) when
        not (bad body, planned failure, auth, channel)."""
        body = await request.body()
        self.requests += 1
        headers = {k.lower(): v for k, v in request.headers.items()}
        channel: Any = None

        def refuse(error: str, status: int = 200, extra: dict[str, str] | None = None) -> Response:
            self._reject("api", str(channel or ""), status, error, body)
            return JSONResponse({"ok": False, "error": error}, status_code=status, headers=extra)

        payload: Any
        try:
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                payload = dict(parse_qsl(body.decode("utf-8")))
                if isinstance(payload.get("blocks"), str):
                    payload["blocks"] = json.loads(payload["blocks"])
            else:
                payload = strict_json(body)
        except (ValueError, UnicodeDecodeError):
            return None, refuse("invalid_json"), body, headers
        if not isinstance(payload, dict):
            return None, refuse("json_not_object"), body, headers
        channel = payload.get("channel")
        if self._fail:
            status, error, after = self._fail.pop(0)
            extra = {"retry-after": after} if after is not None else None
            return None, refuse(error, status, extra), body, headers
        auth = headers.get("authorization", "")
        if not auth:
            return None, refuse("not_authed"), body, headers
        if auth != f"Bearer {self.token}":
            return None, refuse("invalid_auth"), body, headers
        if not isinstance(channel, str) or channel not in self.channels:
            return None, refuse("channel_not_found"), body, headers
        if channel in self.archived:
            return None, refuse("is_archived"), body, headers
        return payload, None, body, headers

    def _refuse(self, payload: dict[str, Any], body: bytes, error: str, status: int = 200,
                extra: dict[str, str] | None = None) -> Response:  # fmt: skip
        self._reject("api", str(payload.get("channel") or ""), status, error, body)
        return JSONResponse({"ok": False, "error": error}, status_code=status, headers=extra)

    async def _post_message(self, request: Request) -> Response:
        payload, refused, body, headers = await self._api_request(request)
        if payload is None:
            assert refused is not None
            return refused
        channel = payload["channel"]
        wait = self._limited(("api", channel), self.api_interval)
        if wait is not None:
            return self._refuse(payload, body, "ratelimited", 429,
                                {"retry-after": str(math.ceil(wait))})  # fmt: skip
        try:
            validate(payload)
        except PayloadError as exc:
            return self._refuse(payload, body, str(exc))
        thread_ts = payload.get("thread_ts")
        if thread_ts is not None:
            thread_ts = str(thread_ts)
            known = any(
                m.ts == thread_ts and m.via == "api" and m.target == channel for m in self.messages
            )
            if not known:
                return self._refuse(payload, body, "thread_not_found")
        broadcast = payload.get("reply_broadcast") in (True, "true", "1")
        self._last[("api", channel)] = self.clock()
        ts = self._next_ts()
        self.messages.append(
            SlackMessage(
                via="api",
                target=channel,
                payload=payload,
                body=body,
                ts=ts,
                received_at=time.time(),
                thread_ts=thread_ts,
                reply_broadcast=bool(broadcast and thread_ts is not None),
                headers=headers,
            )
        )
        answer: dict[str, Any] = {"ok": True, "channel": channel, "ts": ts}
        answer["message"] = {"type": "message", "text": payload.get("text"), "ts": ts}
        return JSONResponse(answer)

    async def _update(self, request: Request) -> Response:
        payload, refused, body, _ = await self._api_request(request)
        if payload is None:
            assert refused is not None
            return refused
        if self._update_fail:
            after = self._update_fail.pop(0)
            return self._refuse(payload, body, "ratelimited", 429, {"retry-after": after})
        try:
            validate(payload)
        except PayloadError as exc:
            return self._refuse(payload, body, str(exc))
        ts = str(payload.get("ts") or "")
        channel = payload["channel"]
        found = [m for m in self.messages if m.via == "api" and m.target == channel and m.ts == ts]
        if not found:
            return self._refuse(payload, body, "message_not_found")
        kept = {k: v for k, v in payload.items() if k not in ("channel", "ts")}
        found[0].payload = {"channel": channel, **kept}
        self.updates.append(SlackUpdate(ts=ts, payload=payload, received_at=time.time()))
        return JSONResponse({"ok": True, "channel": channel, "ts": ts, "text": payload.get("text")})

    async def _post_ephemeral(self, request: Request) -> Response:
        payload, refused, body, _ = await self._api_request(request)
        if payload is None:
            assert refused is not None
            return refused
        if not isinstance(payload.get("user"), str):
            return self._refuse(payload, body, "user_not_in_channel")
        try:
            validate(payload)
        except PayloadError as exc:
            return self._refuse(payload, body, str(exc))
        self.ephemeral.append(payload)
        return JSONResponse({"ok": True, "message_ts": self._next_ts()})

    async def _response_url(self, request: Request) -> Response:
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError:
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(payload, dict):
            return PlainTextResponse("invalid_payload", status_code=400)
        self.responses.append((str(request.path_params["path"]), payload))
        return PlainTextResponse("ok")

    async def _connections_open(self, request: Request) -> Response:
        self.requests += 1
        auth = request.headers.get("authorization", "")
        if not auth:
            return JSONResponse({"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.app_token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if not self.socket.url:
            return JSONResponse({"ok": False, "error": "service_unavailable"})
        return JSONResponse({"ok": True, "url": self.socket.url})

    async def _list(self, request: Request) -> Response:
        return JSONResponse([m.to_json() for m in self.messages])
