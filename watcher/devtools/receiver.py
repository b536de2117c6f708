"""A real Standard Webhooks receiver, for ``watcher demo`` and the end-to-end tests.

It verifies each request with ``standardwebhooks`` (the API receivers use), records every
request, valid or not, and can be told to misbehave: fail the next ``n`` requests, be down
(503 to everything) or hold each request before answering, so that a test can kill a
sender mid-send.

In-process (same event loop)::

    receiver = Receiver(secret)
    async with serve_app(receiver.app) as url:
        ...
        await receiver.wait_for(lambda got: len(got) >= 2, timeout=5)

From another process, over HTTP: ``GET /_received`` lists what arrived, ``GET /_control``
shows the behaviour, ``POST /_control`` with ``{"down": bool, "delay": seconds,
"fail_next": n, "status": code, "retry_after": seconds, "clear": bool}`` changes it. Every
other path accepts webhooks (``POST``). ``python -m watcher.devtools.receiver`` serves one.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watcher.app import eventloop
from watcher.app.httpserver import serve_app

SECRET_ENV = "WATCHER_RECEIVER_SECRET"  # noqa: S105 - a variable name, not a secret


def generate_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


@dataclass
class Received:
    """One request as it arrived; ``status`` is the answer (``None`` while held or if the
    sender went away before it was given)."""

    id: str | None
    type: str | None
    data: Any
    valid: bool
    error: str | None
    received_at: float
    body: bytes
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None

    @property
    def accepted(self) -> bool:
        """The sender was told yes (valid signature, 2xx answer)."""
        return self.valid and self.status is not None and 200 <= self.status < 300

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "data": self.data,
            "valid": self.valid,
            "error": self.error,
            "received_at": self.received_at,
            "status": self.status,
            "path": self.path,
        }


def _unreadable(body: bytes) -> str | None:
    """Why a strict receiver refuses ``body`` (invalid UTF-8, or a lone surrogate escaped
    in its JSON, which no UTF-8 string can hold), else ``None``."""
    try:
        parsed = json.loads(body.decode("utf-8"), parse_constant=str)
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")  # a surrogate raises
    except UnicodeError:
        return "invalid UTF-8 or a lone surrogate"
    except ValueError:
        return None  # not JSON: the signature decides
    return None


class Receiver:
    """Verifies and records webhooks; behaviour controls for tests (see the module doc).

    Waiting helpers use anyio events, so they must run in the event loop serving ``app``.
    """

    def __init__(
        self, secret: str, *, on_receive: Callable[[Received], object] | None = None
    ) -> None:
        self._webhook = Webhook(secret)
        self._on_receive = on_receive
        self.received: list[Received] = []
        self.in_flight = 0
        self.arrivals = 0
        self._down = False
        self._delay = 0.0
        self._fail_next = 0
        self._fail_status = 503
        self._fail_retry_after: str | None = None
        self._changed = anyio.Event()
        self._arrived = anyio.Event()
        self.app = Starlette(
            routes=[
                Route("/_received", self._list, methods=["GET"]),
                Route("/_control", self._control, methods=["GET", "POST"]),
                Route("/{path:path}", self._hook, methods=["POST"]),
            ]
        )

    # -- in-process API ------------------------------------------------------------------

    def by_id(self) -> dict[str, list[Received]]:
        """Requests grouped by ``webhook-id`` (requests without one are left out)."""
        out: dict[str, list[Received]] = {}
        for item in self.received:
            if item.id is not None:
                out.setdefault(item.id, []).append(item)
        return out

    def accepted(self) -> list[Received]:
        """Requests that were answered with a 2xx and carried a valid signature."""
        return [item for item in self.received if item.accepted]

    def fail_next(self, n: int, status: int = 503, retry_after: float | str | None = None) -> None:
        """Answer the next ``n`` webhooks with ``status`` (and ``Retry-After`` when given)."""
        if n < 0 or not 100 <= status <= 599:
            raise ValueError("fail_next needs n >= 0 and an HTTP status code")
        self._fail_next = n
        self._fail_status = status
        self._fail_retry_after = None if retry_after is None else str(retry_after)

    def set_down(self, down: bool) -> None:
        """While down, every webhook is answered 503 (and still recorded)."""
        self._down = down

    def set_delay(self, seconds: float) -> None:
        """Hold each webhook ``seconds`` before answering (0: answer at once)."""
        if not seconds >= 0:
            raise ValueError("delay must be >= 0")
        self._delay = float(seconds)

    def clear(self) -> None:
        """Forget what was received (the behaviour controls stay)."""
        self.received.clear()
        self._notify()

    @property
    def arrived(self) -> anyio.Event:
        """An event set when the next webhook arrives (before it is held or answered)."""
        return self._arrived

    async def wait_for(
        self,
        predicate: Callable[[Sequence[Received]], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - tests read better with the bound inline
    ) -> list[Received]:
        """Wait until ``predicate(received)`` holds; raises ``TimeoutError`` after ``timeout``."""
        with anyio.fail_after(timeout):
            while not predicate(self.received):
                await self._changed.wait()
        return list(self.received)

    async def wait_in_flight(
        self,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - tests read better with the bound inline
    ) -> None:
        """Wait until at least ``count`` webhooks are being held."""
        with anyio.fail_after(timeout):
            while self.in_flight < count:
                await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    # -- HTTP ----------------------------------------------------------------------------

    def _verify(self, body: bytes, headers: dict[str, str]) -> tuple[bool, str | None]:
        try:
            self._webhook.verify(body, headers, json_parse=False)
        except Exception as exc:  # malformed headers raise anything: all mean "invalid"
            return False, f"{type(exc).__name__}: {exc}"[:200]
        return True, None

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        headers = {key.lower(): value for key, value in request.headers.items()}
        valid, error = self._verify(body, headers)
        unreadable = _unreadable(body)
        try:
            parsed = json.loads(body, parse_constant=str)  # NaN would break /_received
        except (ValueError, UnicodeDecodeError):
            parsed = None
        kind = parsed.get("type") if isinstance(parsed, dict) else None
        item = Received(
            id=headers.get("webhook-id"),
            type=kind if isinstance(kind, str) else None,
            data=parsed.get("data") if isinstance(parsed, dict) else None,
            valid=valid,
            error=error,
            received_at=time.time(),
            body=body,
            path=request.url.path,
            headers=headers,
        )
        # The answer is decided on arrival: a later set_down() does not change a held one.
        extra: dict[str, str] = {}
        if self._down:
            status, message = 503, "down"
        elif self._fail_next > 0:
            self._fail_next -= 1
            status, message = self._fail_status, "told to fail"
            if self._fail_retry_after is not None:
                extra["retry-after"] = self._fail_retry_after
        elif unreadable is not None:  # a strict receiver, as many are
            status, message = 400, unreadable
        elif not valid:
            status, message = 401, "invalid signature"
        else:
            status, message = 200, "ok"
        self.received.append(item)
        self.arrivals += 1
        self.in_flight += 1
        arrived, self._arrived = self._arrived, anyio.Event()
        arrived.set()
        self._notify()
        try:
            if self._delay > 0 and await _sender_left(request, self._delay):
                return Response(status_code=499)  # nobody listens; status stays None
            item.status = status
        finally:
            self.in_flight -= 1
            self._notify()
        if self._on_receive is not None:
            self._on_receive(item)
        return JSONResponse({"status": message}, status_code=status, headers=extra)

    async def _list(self, request: Request) -> Response:
        return JSONResponse([item.to_json() for item in self.received])

    def _state(self) -> dict[str, Any]:
        return {
            "down": self._down,
            "delay": self._delay,
            "fail_next": self._fail_next,
            "status": self._fail_status,
            "retry_after": self._fail_retry_after,
            "in_flight": self.in_flight,
            "received": len(self.received),
        }

    async def _control(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self._state())
        try:
            wish = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "body must be JSON"}, status_code=400)
        if not isinstance(wish, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        try:
            if "down" in wish:
                if not isinstance(wish["down"], bool):
                    raise ValueError("down must be a boolean")
                self.set_down(wish["down"])
            if "delay" in wish:
                self.set_delay(_number(wish["delay"], "delay"))
            if "fail_next" in wish:
                count = wish["fail_next"]
                status = wish.get("status", 503)
                if not isinstance(count, int) or not isinstance(status, int):
                    raise ValueError("fail_next and status must be integers")
                retry_after = wish.get("retry_after")
                if retry_after is not None and not isinstance(retry_after, int | float | str):
                    raise ValueError("retry_after must be seconds or an HTTP date")
                self.fail_next(count, status=status, retry_after=retry_after)
            if wish.get("clear") is True:
                self.clear()
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self._state())


async def _sender_left(request: Request, seconds: float) -> bool:
    """Hold the request ``seconds``; ``True`` as soon as the sender hangs up meanwhile (a
    killed sender leaves a record without an answer, and shutdown does not wait for it)."""
    with anyio.move_on_after(seconds):
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return True
    return False


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


async def run_receiver(
    *,
    secret: str,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[str], object] | anyio.Event | None = None,
    task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a :class:`Receiver` until cancelled; ``ready`` (a callable taking the base URL,
    or an event) and ``task_status`` learn when it listens."""
    receiver = Receiver(secret)
    stop = anyio.Event()

    async def serve(*, task_status: TaskStatus[str]) -> None:
        # Shielded, and stopped by an event rather than by cancellation: serve_app only
        # shuts uvicorn down and closes its socket when its block exits normally.
        with anyio.CancelScope(shield=True):
            async with serve_app(receiver.app, host, port) as url:
                task_status.started(url)
                await stop.wait()

    async with anyio.create_task_group() as tg:
        url = await tg.start(serve)
        try:
            if isinstance(ready, anyio.Event):
                ready.set()
            elif ready is not None:
                ready(url)
            task_status.started(url)
            await anyio.sleep_forever()
        finally:
            stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m watcher.devtools.receiver``: prints ``{"url": …}`` (and a generated
    secret) as one JSON line once listening. The secret comes from
    ``$WATCHER_RECEIVER_SECRET``."""
    parser = argparse.ArgumentParser(
        prog="python -m watcher.devtools.receiver", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_ENV)
    announce: dict[str, str] = {}
    if not secret:
        secret = announce["secret"] = generate_secret()

    def ready(url: str) -> None:
        print(json.dumps({"url": url, **announce}), flush=True)

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                tg.start_soon(
                    partial(
                        run_receiver, secret=secret, host=args.host, port=args.port, ready=ready
                    )
                )
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break

    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(serve)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
