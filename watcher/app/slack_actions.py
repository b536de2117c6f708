"""Slack's buttons, received: ``POST /slack/actions`` on ``http.listen`` (the app's
Interactivity Request URL) and Socket Mode (``app_token``), both handing each click to the
same path: authorise (:class:`watcher.sinks.slack.interaction.Gate`, then the store must
know the job for that source), act through the :class:`ActionHandler`, and tell the person
the outcome through the payload's ``response_url`` (ephemeral).

Slack wants an answer within 3 seconds: the endpoint verifies and parses, answers 200 at
once and runs the action in the background, in a task group that lives while the daemon
serves (:meth:`SlackActions.run`). A refused request (bad signature, stale or replayed) gets
401, a click we cannot read 400; neither does anything. The card itself is edited by the
sink when the action's consequences (a cancellation, the audit) are delivered.

Socket Mode uses ``slack_sdk``'s builtin client (standard library only, its own threads and
reconnects): each envelope is acknowledged at once from its thread, and ``interactive``
ones are handed to the event loop. Every replica connects: Slack spreads envelopes over the
connections.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import httpx2 as httpx
import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from watcher.abc import SinkState, SnapshotReader
from watcher.app.actions import ActionHandler, Done
from watcher.config import SlackSinkConfig
from watcher.model.secrets import Secret
from watcher.sinks.slack.card import ACKNOWLEDGE, CANCEL, SILENCE_HOUR, SILENCE_RESOLVED
from watcher.sinks.slack.interaction import (
    MAX_BODY,
    WINDOW,
    Click,
    Gate,
    Rejected,
    Verifier,
    allowed_response_url,
    answer,
    outcome,
    parse_form,
    parse_payload,
    unknown_job,
)

log = structlog.get_logger(__name__)

REPLAYS = "slack:replays"  # the sink_state namespace of the signed requests already taken

PATH = "/slack/actions"
SILENCE_SECONDS = 3600.0
RESPONSE_TIMEOUT = 5.0
RECONNECT_WAIT = 30.0  # seconds between attempts to open Socket Mode when it fails


@dataclass(frozen=True)
class Interactive:
    """One interactive Slack sink: where its clicks are checked and answered."""

    name: str
    gate: Gate
    api_url: str
    signing_secret: Secret | None = None
    app_token: Secret | None = None

    @classmethod
    def of(cls, config: SlackSinkConfig, sources: Collection[str]) -> Interactive:
        actions = config.actions
        gate = Gate(
            sources=frozenset(sources),
            allowed_users=frozenset(actions.allowed_users)
            if actions is not None and actions.allowed_users is not None
            else None,
            allowed_channels=frozenset(actions.allowed_channels)
            if actions is not None and actions.allowed_channels is not None
            else None,
            cancel=actions is not None and actions.cancel,
        )
        return cls(config.name, gate, config.api_url, config.signing_secret, config.app_token)


class SlackActions:
    """The endpoint and the Socket Mode runners of the interactive Slack sinks."""

    def __init__(
        self,
        sinks: Sequence[Interactive],
        handler: ActionHandler,
        jobs: SnapshotReader,
        client: httpx.AsyncClient,
        *,
        replays: SinkState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sinks = list(sinks)
        self.handler = handler
        self.jobs = jobs
        # Signed requests already seen by any replica (the verifier's memory is this
        # process's: behind a load balancer a replay may reach another replica).
        self.replays = replays
        self.client = client
        self.clock = clock
        self._signed = [s for s in self.sinks if s.signing_secret is not None]
        self.verifier = Verifier(
            [s.signing_secret for s in self._signed if s.signing_secret is not None], clock=clock
        )
        self._tg: anyio.abc.TaskGroup | None = None

    def routes(self) -> list[Route]:
        """``POST /slack/actions`` when a sink has a signing secret."""
        return [Route(PATH, self.endpoint, methods=["POST"])] if self._signed else []

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the clicks' background work and the Socket Mode clients until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                for sink in self.sinks:
                    if sink.app_token is not None:
                        tg.start_soon(self._socket_mode, sink)
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._tg = None

    # -- HTTP ------------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            declared = MAX_BODY + 1
        body = b""
        if declared <= MAX_BODY:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    break
        try:
            if declared > MAX_BODY or len(body) > MAX_BODY:
                raise Rejected(413, "too_large")
            index = self.verifier.verify(body, headers)
            await self._first_time(headers)
            click = parse_form(body)
        except Rejected as exc:
            log.warning("slack_action_refused", why=exc.why, status=exc.status, via="http")
            return PlainTextResponse(_STATUS_WORDS.get(exc.status, "refused"), exc.status)
        if self._tg is None:
            log.warning("slack_action_refused", why="not_running", status=503, via="http")
            return PlainTextResponse("not running", 503)
        self._tg.start_soon(self.handle, self._signed[index], click)
        return Response(status_code=200)

    async def _first_time(self, headers: dict[str, str]) -> None:
        """:class:`Rejected` (replayed) when another replica already took this request. A
        store that does not answer lets it through: this process's own check has passed."""
        if self.replays is None:
            return
        key = f"{headers['x-slack-request-timestamp']}:{headers['x-slack-signature']}"
        try:
            first = await self.replays.put_sink_state_once(REPLAYS, key, "1")
            await self.replays.forget_sink_state(REPLAYS, before=self.clock() - 2 * WINDOW)
        except Exception as exc:  # the store's own failure: not a reason to drop a click
            log.warning("slack_replay_check_unavailable", error=type(exc).__name__)
            return
        if not first:
            raise Rejected(401, "replayed")

    # -- Socket Mode -----------------------------------------------------------------------

    async def _socket_mode(self, sink: Interactive) -> None:
        from slack_sdk.socket_mode.builtin import SocketModeClient
        from slack_sdk.socket_mode.request import SocketModeRequest
        from slack_sdk.socket_mode.response import SocketModeResponse
        from slack_sdk.web import WebClient

        token = anyio.lowlevel.current_token()
        tg = self._tg
        assert tg is not None

        def on_request(client: Any, request: SocketModeRequest) -> None:
            # In the library's thread: acknowledge first (Slack retries otherwise).
            client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
            if request.type != "interactive":
                return
            try:
                click = parse_payload(request.payload)
            except Rejected as exc:
                anyio.from_thread.run_sync(_refused, exc.why, token=token)
                return
            anyio.from_thread.run_sync(tg.start_soon, self.handle, sink, click, token=token)

        app_token = sink.app_token
        assert app_token is not None
        quiet = logging.getLogger("watcher.slack.socket_mode")
        quiet.setLevel(logging.WARNING)  # the library narrates every ping at INFO
        while True:
            web = WebClient(base_url=f"{sink.api_url}/", timeout=10, logger=quiet)
            client = SocketModeClient(
                app_token=app_token.get(), web_client=web, logger=quiet, concurrency=4
            )
            client.socket_mode_request_listeners.append(on_request)
            try:
                await anyio.to_thread.run_sync(client.connect, abandon_on_cancel=True)
                log.info("slack_socket_mode_connected", sink=sink.name)
                await anyio.sleep_forever()
            except Exception as exc:  # the library says little that is safe: the class
                log.error(
                    "slack_socket_mode_failed",
                    sink=sink.name,
                    error=type(exc).__name__,
                    retry_in=RECONNECT_WAIT,
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(client.close)
            await anyio.sleep(RECONNECT_WAIT)

    # -- a click ---------------------------------------------------------------------------

    async def handle(self, sink: Interactive, click: Click) -> None:
        """Authorise, act, answer: never raises (a background task must not end the
        daemon)."""
        try:
            await self._handle(sink, click)
        except Exception as exc:
            log.error(
                "slack_action_failed",
                sink=sink.name,
                user=click.user_id,
                action=click.action,
                source=click.source,
                job_id=click.job_id,
                error=type(exc).__name__,
            )
            with suppress(Exception):
                await self._answer(sink, click, FAILED)

    async def _handle(self, sink: Interactive, click: Click) -> None:
        refused = sink.gate.refusal(click)
        if refused is None and not await self._known(click):
            refused = unknown_job(click)
        if refused is not None:
            why, words = refused
            log.warning(
                "slack_action_refused",
                sink=sink.name,
                why=why,
                user=click.user_id,
                action=click.action,
                source=click.source,
                job_id=click.job_id,
            )
            await self._answer(sink, click, f":no_entry: {words}")
            return
        done = await self._act(click)
        log.info(
            "slack_action",
            sink=sink.name,
            user=click.user_id,
            action=click.action,
            source=click.source,
            job_id=click.job_id,
            outcome="done" if done.ok else "failed",
        )
        await self._answer(sink, click, outcome(done.ok, done.message))

    async def _known(self, click: Click) -> bool:
        known = await self.jobs.get_snapshots(click.source, [click.job_id])
        return click.job_id in known

    async def _act(self, click: Click) -> Done:
        handler, by = self.handler, click.by
        s, j = click.source, click.job_id
        if click.action == ACKNOWLEDGE:
            return await handler.acknowledge(j, by=by, source=s)
        if click.action == SILENCE_HOUR:
            until = math.floor(self.clock()) + SILENCE_SECONDS
            matchers = {"source": s, "job_id": j}
            return await handler.silence(matchers, by=by, comment="from Slack", until=until)
        if click.action == SILENCE_RESOLVED:
            matchers = {"source": s, "job_id": j}
            return await handler.silence(matchers, by=by, comment="from Slack", resolved=(s, j))
        assert click.action == CANCEL
        return await handler.cancel(s, j, by=by)

    async def _answer(self, sink: Interactive, click: Click, text: str) -> None:
        """The ephemeral answer through the click's ``response_url`` (Slack's own, or on
        the sink's API host); its URL is never logged (it is a credential for 30 min)."""
        if not allowed_response_url(click.response_url, sink.api_url):
            log.warning("slack_response_url_refused", sink=sink.name, user=click.user_id)
            return
        assert click.response_url is not None
        try:
            reply = await self.client.post(
                click.response_url, json=answer(text), timeout=RESPONSE_TIMEOUT
            )
        except httpx.HTTPError as exc:
            log.warning("slack_response_failed", sink=sink.name, error=type(exc).__name__)
            return
        if reply.status_code >= 300:
            log.warning("slack_response_failed", sink=sink.name, status=reply.status_code)


FAILED = ":warning: That did not work: watcher failed to act (its log says why)."
_STATUS_WORDS = {400: "bad request", 401: "unauthorized", 413: "too large"}


def _refused(why: str) -> None:
    log.warning("slack_action_refused", why=why, via="socket_mode")


def interactive_sinks(configs: Sequence[object], sources: Collection[str]) -> list[Interactive]:
    """The Slack sinks of a config that take clicks."""
    return [
        Interactive.of(c, sources)
        for c in configs
        if isinstance(c, SlackSinkConfig) and c.interactive
    ]
