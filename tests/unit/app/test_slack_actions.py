"""Slack's clicks through the real wire: ``POST /slack/actions`` served on loopback, signed
requests from the fake Slack's helper, a recording handler; Socket Mode through a loopback
WebSocket. Secrets never reach a log line."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from starlette.applications import Starlette
from structlog.testing import capture_logs

from tests.fakes.slack import FakeSlack
from tests.fakes.slack_interactive import interaction, signed
from tests.waiting import wait_until
from watcher.app.actions import Done
from watcher.app.httpserver import serve_app
from watcher.app.slack_actions import Interactive, SlackActions
from watcher.model.secrets import Secret
from watcher.sinks.slack.card import (
    ACKNOWLEDGE,
    CANCEL,
    SILENCE_HOUR,
    SILENCE_RESOLVED,
    value_of,
)
from watcher.sinks.slack.interaction import Gate

SIGNING = "signing-5ecret-0123456789abcdef"
APP_TOKEN = "xapp-1-A0-123-appt0kensecret"
BOT_TOKEN = "xoxb-fake-token"


class Recording:
    """An ActionHandler that records what it is asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def silence(
        self,
        matchers: Mapping[str, str],
        *,
        by: str,
        comment: str,
        until: float | None = None,
        resolved: tuple[str, str] | None = None,
    ) -> Done:
        self.calls.append(("silence", dict(matchers), by, comment, until, resolved))
        return Done(True, "Silenced <!channel> until later", "sil-1")

    async def expire(self, silence_id: str, *, by: str) -> Done:
        self.calls.append(("expire", silence_id, by))
        return Done(True, "Expired")

    async def acknowledge(self, job_id: str, *, by: str, source: str | None = None) -> Done:
        self.calls.append(("acknowledge", source, job_id, by))
        return Done(True, "Acknowledged")

    async def cancel(self, source: str, job_id: str, *, by: str) -> Done:
        self.calls.append(("cancel", source, job_id, by))
        if job_id == "b-1":
            raise RuntimeError("a bug in the handler")
        return Done(False, "The job is already over (409)")


class Jobs:
    """The store's side: which jobs each source has."""

    def __init__(self, known: Mapping[str, set[str]]) -> None:
        self.known = known

    async def get_snapshots(self, source: str, job_ids: Any) -> dict[str, Any]:
        return {j: object() for j in job_ids if j in self.known.get(source, set())}


@dataclass
class Rig:
    fake: FakeSlack
    slack_url: str
    url: str
    handler: Recording
    client: httpx.AsyncClient

    def click(self, action: str, job: str = "job-1", source: str = "ft", **kw: Any) -> Any:
        value = value_of(source, job)
        assert value is not None
        kw.setdefault("response_url", f"{self.slack_url}/actions/T0/{action}")
        return interaction(action, value, **kw)

    async def post(
        self, payload: Any, *, secret: str = SIGNING, at: float | None = None
    ) -> httpx.Response:
        body, headers = signed(payload, secret, timestamp=at)
        return await self.client.post(f"{self.url}/slack/actions", content=body, headers=headers)


def gate(**kw: Any) -> Gate:
    return Gate(sources={"ft", "batch"}, **kw)


@asynccontextmanager
async def running(the_gate: Gate) -> AsyncIterator[Rig]:
    """The endpoint served on loopback, the fake Slack beside it (its response_urls)."""
    fake = FakeSlack()
    handler = Recording()
    jobs = Jobs({"ft": {"job-1"}, "batch": {"b-1"}})
    async with serve_app(fake.app) as slack_url, httpx.AsyncClient() as client:
        sink = Interactive("slack", the_gate, f"{slack_url}/api", Secret(SIGNING), None)
        actions = SlackActions([sink], handler, jobs, client)  # type: ignore[arg-type]
        async with anyio.create_task_group() as tg:
            await tg.start(actions.run)
            async with serve_app(Starlette(routes=actions.routes())) as url:
                yield Rig(fake, slack_url, url, handler, client)
            tg.cancel_scope.cancel()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with running(gate(cancel=True)) as rig:
        yield rig


async def answered(rig: Rig, n: int = 1) -> list[dict[str, Any]]:
    await wait_until(lambda: len(rig.fake.responses) >= n, what="the ephemeral answer")
    return [payload for _, payload in rig.fake.responses]


async def test_each_button_calls_its_action_and_answers_ephemerally(rig: Rig) -> None:
    for action in (ACKNOWLEDGE, SILENCE_HOUR, SILENCE_RESOLVED, CANCEL):
        response = await rig.post(rig.click(action, username="alice"))
        assert 200 == response.status_code
    answers = await answered(rig, 4)
    await wait_until(lambda: len(rig.handler.calls) == 4, what="4 actions")
    calls = sorted(rig.handler.calls, key=lambda c: str(c))
    now = time.time()
    acknowledge, cancel, silence_a, silence_b = calls
    assert ("acknowledge", "ft", "job-1", "slack:alice") == acknowledge
    assert ("cancel", "ft", "job-1", "slack:alice") == cancel
    hour, resolved = sorted([silence_a, silence_b], key=lambda c: c[4] is None)
    assert hour[:4] == ("silence", {"source": "ft", "job_id": "job-1"}, "slack:alice", "from Slack")
    assert now + 3590 < hour[4] <= now + 3601 and hour[5] is None
    assert (None, ("ft", "job-1")) == resolved[4:]
    assert all(a["response_type"] == "ephemeral" for a in answers)
    texts = " ".join(a["text"] for a in answers)
    assert "already over" in texts and "<!channel>" not in texts and "&lt;!channel&gt;" in texts


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"secret": "not-the-secret"}, "bad_signature"),
        ({"skew": -360}, "stale_timestamp"),
        ({"skew": +360}, "stale_timestamp"),
    ],
    ids=["bad-signature", "6-minutes-old", "6-minutes-ahead"],
)
async def test_unsigned_stale_or_future_requests_get_401(
    rig: Rig, change: dict[str, Any], why: str
) -> None:
    if "skew" in change:  # taken now, not when the module was collected
        change = {"at": time.time() + change["skew"]}
    with capture_logs() as logs:
        response = await rig.post(rig.click(CANCEL), **change)
    assert 401 == response.status_code
    assert [why] == [e["why"] for e in logs if e["event"] == "slack_action_refused"]
    await anyio.sleep(0.05)
    assert [] == rig.handler.calls and [] == rig.fake.responses


async def test_a_replayed_request_gets_401_and_does_nothing_twice(rig: Rig) -> None:
    body, headers = signed(rig.click(CANCEL), SIGNING)
    url = f"{rig.url}/slack/actions"
    first = await rig.client.post(url, content=body, headers=headers)
    second = await rig.client.post(url, content=body, headers=headers)
    assert (200, 401) == (first.status_code, second.status_code)
    await answered(rig)
    assert 1 == len(rig.handler.calls)


async def test_hostile_bodies_get_400_or_413_and_do_nothing(rig: Rig) -> None:
    statuses = []
    for payload in ("{nope", json.dumps({"type": "block_actions"}), "x" * 70_000):
        statuses.append((await rig.post(payload)).status_code)
    big = await rig.client.post(
        f"{rig.url}/slack/actions", content=b"a" * 100_000, headers={"x-slack-signature": "v0=1"}
    )
    assert [400, 400, 413, 413] == [*statuses, big.status_code]
    assert [] == rig.handler.calls


@pytest.mark.parametrize(
    ("click", "why"),
    [
        ({"user": "U-MALLORY"}, "user_not_allowed"),
        ({"channel": "C-OTHER"}, "channel_not_allowed"),
        ({"action": CANCEL}, "cancel_disabled"),
        ({"source": "batch", "job": "job-1"}, "unknown_job"),  # a job of another source
        ({"source": "nope"}, "unknown_source"),
        ({"job": "job-404"}, "unknown_job"),
    ],
)
async def test_refused_clicks_answer_why_and_do_nothing(click: dict[str, Any], why: str) -> None:
    action = click.pop("action", SILENCE_HOUR)
    the_gate = gate(allowed_users={"U-ALICE"}, allowed_channels={"C-ALERTS"})
    with capture_logs() as logs:
        async with running(the_gate) as rig:
            assert 200 == (await rig.post(rig.click(action, **click))).status_code
            (reply,) = await answered(rig)
    assert [] == rig.handler.calls
    assert reply["response_type"] == "ephemeral" and reply["text"].startswith(":no_entry:")
    assert [why] == [e["why"] for e in logs if e["event"] == "slack_action_refused"]


async def test_a_failing_action_is_logged_and_answered(rig: Rig) -> None:
    with capture_logs() as logs:
        assert 200 == (await rig.post(rig.click(CANCEL, "b-1", "batch"))).status_code
        (reply,) = await answered(rig)
    assert reply["text"].startswith(":warning:") and "bug" not in reply["text"]
    (failed,) = [e for e in logs if e["event"] == "slack_action_failed"]
    assert ("RuntimeError", "b-1") == (failed["error"], failed["job_id"])


async def test_answers_go_only_to_slack_or_the_api_host(rig: Rig) -> None:
    with capture_logs() as logs:
        await rig.post(rig.click(ACKNOWLEDGE, response_url="http://127.0.0.2:9/steal"))
        await wait_until(lambda: bool(rig.handler.calls), what="the action")
        await wait_until(
            lambda: any(e["event"] == "slack_response_url_refused" for e in logs),
            what="the refusal",
        )
    assert [] == rig.fake.responses
    assert "steal" not in json.dumps(logs, default=str)


async def test_socket_mode_acks_and_acts_and_keeps_secrets_out_of_logs() -> None:
    """The runner opens Socket Mode with the app token, acks each envelope, and a click
    arriving there takes the same path (refusals included)."""
    fake = FakeSlack(app_token=APP_TOKEN)
    handler = Recording()
    with capture_logs() as logs:
        async with (
            serve_app(fake.app) as slack_url,
            fake.socket.running(),
            httpx.AsyncClient() as client,
        ):
            sink = Interactive(
                "slack", gate(allowed_users={"U-ALICE"}), f"{slack_url}/api", None,
                Secret(APP_TOKEN),
            )  # fmt: skip
            jobs = Jobs({"ft": {"job-1"}})
            actions = SlackActions([sink], handler, jobs, client)  # type: ignore[arg-type]
            assert [] == actions.routes()  # no signing secret: no endpoint
            async with anyio.create_task_group() as tg:
                await tg.start(actions.run)
                value = value_of("ft", "job-1")
                assert value is not None
                url = f"{slack_url}/actions/T0/1"
                ok = interaction(ACKNOWLEDGE, value, response_url=url)
                first = await fake.socket.push(ok)
                refused = interaction(ACKNOWLEDGE, value, user="U-EVE", response_url=url)
                second = await fake.socket.push(refused)
                other = await fake.socket.push(
                    {"event": {"type": "app_mention"}}, kind="events_api"
                )
                for envelope_id in (first, second, other):
                    await fake.socket.acked(envelope_id)
                await wait_until(lambda: len(fake.responses) == 2, what="two answers")
                tg.cancel_scope.cancel()
    assert [("acknowledge", "ft", "job-1", "slack:alice")] == handler.calls
    assert 1 == fake.socket.opened
    events = [e["event"] for e in logs]
    assert "slack_socket_mode_connected" in events and "slack_action_refused" in events
    shown = json.dumps(logs, default=str)
    for secret in (APP_TOKEN, SIGNING, BOT_TOKEN, "ticket="):
        assert secret not in shown


async def test_a_replay_to_another_replica_gets_401(store_url: str) -> None:
    """Two replicas behind a load balancer share the store: a signed request taken by one is
    refused by the other (the verifier's own memory is per process)."""
    from watcher.stores import open_store

    store = open_store(store_url)
    await store.open()
    fake, handler = FakeSlack(), Recording()
    jobs = Jobs({"ft": {"job-1"}})
    try:
        async with serve_app(fake.app) as slack_url, httpx.AsyncClient() as client:
            sink = Interactive(
                "slack", gate(cancel=True), f"{slack_url}/api", Secret(SIGNING), None
            )
            replicas = [
                SlackActions([sink], handler, jobs, client, replays=store)  # type: ignore[arg-type]
                for _ in range(2)
            ]
            async with anyio.create_task_group() as tg:
                for replica in replicas:
                    await tg.start(replica.run)
                async with (
                    serve_app(Starlette(routes=replicas[0].routes())) as one,
                    serve_app(Starlette(routes=replicas[1].routes())) as two,
                ):
                    payload = interaction(
                        CANCEL,
                        value_of("ft", "job-1") or "",
                        response_url=f"{slack_url}/actions/T0/1",
                    )
                    body, headers = signed(payload, SIGNING)
                    first = await client.post(f"{one}/slack/actions", content=body, headers=headers)
                    again = await client.post(f"{two}/slack/actions", content=body, headers=headers)
                    assert (200, 401) == (first.status_code, again.status_code)
                    await wait_until(lambda: len(fake.responses) >= 1, what="the answer")
                tg.cancel_scope.cancel()
        assert 1 == len(handler.calls)
        assert 0 == await store.forget_sink_state("slack:replays", before=0.0)
        assert 1 == await store.forget_sink_state("slack:replays", before=time.time() + 1)
    finally:
        await store.aclose()
