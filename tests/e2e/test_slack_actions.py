"""Slack's buttons through the daemon: the card posted by the real sink carries them,
``POST /slack/actions`` on ``http.listen`` checks every click, the card follows the job."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from structlog.testing import capture_logs

from tests.e2e.harness import config, free_port, source, webhook
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_interactive import interaction, signed
from tests.waiting import wait_until
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import validate_config
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, simulator
from watcher.model import types
from watcher.sinks.slack.card import CANCEL

pytestmark = pytest.mark.e2e

SIGNING = "e2e-signing-secret-0123456789"
TOKEN = "xoxb-fake-token"


async def test_clicks_through_the_daemon_are_checked_and_the_card_follows_the_job(
    tmp_path: Path,
) -> None:
    """Bad signature, 6-minute-old timestamp, replay: 401; a user not allowed and a job of
    another source: refused with an ephemeral answer, no action; the card is edited in
    place when the job fails, and no secret shows in the logs."""
    fake = FakeSlack(token=TOKEN, api_interval=None)
    port = free_port()
    async with serve_app(fake.app) as slack_url, simulator() as sim:
        job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        sink = {
            "name": "slack",
            "kind": "slack",
            "token": TOKEN,
            "channel": "C-ALERTS",
            "api_url": f"{slack_url}/api",
            "group_wait": "0s",
            "signing_secret": SIGNING,
            "actions": {"allowed_users": ["U-ALICE"], "cancel": True},
        }
        raw = config(
            tmp_path,
            sources=[
                source(sim, interval="300ms", track_checkpoints=False),
                source(sim, name="batch", kind="mistral-batch", interval="300ms"),
            ],
            sinks=[sink],
            http={"listen": f"127.0.0.1:{port}"},
        )
        settings = validate_config(raw, env={})
        with capture_logs() as logs:
            async with Watcher(settings) as watcher, httpx.AsyncClient() as http:
                await watcher.once()  # the baseline: QUEUED is no news
                sim.sim.set_status(job.id, "RUNNING")
                stop = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: watcher.serve(until=stop))
                    await wait_until(lambda: fake.card_of(job.id) is not None, what="the card")
                    card = fake.card_of(job.id)
                    assert card is not None
                    (actions,) = [b for b in card.blocks if b["type"] == "actions"]
                    value = next(
                        e["value"] for e in actions["elements"] if e["action_id"] == CANCEL
                    )
                    url = f"http://127.0.0.1:{port}/slack/actions"

                    async def post(payload: dict[str, Any], **kw: Any) -> int:
                        body, headers = signed(payload, kw.pop("secret", SIGNING), **kw)
                        return (await http.post(url, content=body, headers=headers)).status_code

                    respond = f"{slack_url}/actions/T0/1"
                    click = interaction(CANCEL, value, user="U-ALICE", response_url=respond)
                    assert 401 == await post(click, secret="wrong-secret")
                    assert 401 == await post(click, timestamp=time.time() - 360)
                    body, headers = signed(
                        interaction(CANCEL, value, user="U-MALLORY", response_url=respond),
                        SIGNING,
                    )
                    assert 200 == (await http.post(url, content=body, headers=headers)).status_code
                    assert 401 == (await http.post(url, content=body, headers=headers)).status_code
                    other = json.dumps({"source": "batch", "job_id": job.id})
                    elsewhere = interaction(CANCEL, other, user="U-ALICE", response_url=respond)
                    assert 200 == await post(elsewhere)
                    await wait_until(lambda: len(fake.responses) == 2, what="two refusals")

                    sim.sim.set_status(job.id, "FAILED")
                    await wait_until(
                        lambda: "*FAILED*" in json.dumps(card.payload), what="the card edited"
                    )
                    stop.set()
    assert [card] == fake.top_level("C-ALERTS")  # one channel message for the job
    assert all(m.thread_ts == card.ts for m in fake.channel_messages("C-ALERTS")[1:])
    assert CANCEL not in json.dumps(card.payload)  # over: no cancel button
    texts = [payload["text"] for _, payload in fake.responses]
    assert all(t.startswith(":no_entry:") for t in texts)
    refused = [e["why"] for e in logs if e["event"] == "slack_action_refused"]
    assert sorted(refused) == sorted(
        ["bad_signature", "stale_timestamp", "replayed", "user_not_allowed", "unknown_job"]
    )
    assert not [e for e in logs if e["event"] == "slack_action"]  # nothing was done
    shown = json.dumps(logs, default=str)
    assert SIGNING not in shown and TOKEN not in shown


async def test_a_cancel_click_cancels_once_edits_the_card_and_is_audited(tmp_path: Path) -> None:
    """Issue 13's acceptance: a signed click on *Cancel job* → the simulator receives exactly
    one cancel for that job → the job's card is edited to CANCELLATION_REQUESTED then
    CANCELLED → the webhook receives ``watcher.action.cancel_requested`` naming the user;
    the user is told the outcome through ``response_url``."""
    fake = FakeSlack(token=TOKEN, api_interval=None)
    secret = generate_secret()
    receiver = Receiver(secret)
    port = free_port()
    async with serve_app(fake.app) as slack_url, serve_app(receiver.app) as hooks, \
            simulator(speed=4.0) as sim:  # fmt: skip
        job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        other = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        slack = {
            "name": "slack",
            "kind": "slack",
            "token": TOKEN,
            "channel": "C-ALERTS",
            "api_url": f"{slack_url}/api",
            "group_wait": "0s",
            "signing_secret": SIGNING,
            "actions": {"allowed_users": ["U-ALICE"], "cancel": True},
        }
        raw = config(
            tmp_path,
            sources=[source(sim, interval="300ms", track_checkpoints=False)],
            sinks=[slack, webhook(f"{hooks}/hooks", secret, group_wait="0s")],
            http={"listen": f"127.0.0.1:{port}"},
        )
        settings = validate_config(raw, env={})
        async with Watcher(settings) as watcher, httpx.AsyncClient() as http:
            await watcher.once()  # the baseline
            sim.sim.set_status(job.id, "RUNNING")
            sim.sim.set_status(other.id, "RUNNING")
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: watcher.serve(until=stop))
                await wait_until(lambda: fake.card_of(job.id) is not None, what="the card")
                card = fake.card_of(job.id)
                assert card is not None
                (actions,) = [b for b in card.blocks if b["type"] == "actions"]
                cancel = next(e for e in actions["elements"] if e["action_id"] == CANCEL)
                assert "confirm" in cancel  # Slack's confirm dialog before it is sent
                respond = f"{slack_url}/actions/T0/2"
                click = interaction(
                    CANCEL, cancel["value"], user="U-ALICE", username="alice", response_url=respond
                )
                body, headers = signed(click, SIGNING)
                answer = await http.post(
                    f"http://127.0.0.1:{port}/slack/actions", content=body, headers=headers
                )
                assert 200 == answer.status_code
                await wait_until(
                    lambda: "*CANCELLATION_REQUESTED*" in json.dumps(card.payload),
                    what="card: CANCELLATION_REQUESTED",
                )
                # The job holds still (frozen) until the platform finishes the cancel.
                sim.sim.set_status(job.id, "CANCELLED")
                await wait_until(
                    lambda: "*CANCELLED*" in json.dumps(card.payload), what="card: CANCELLED"
                )
                await wait_until(
                    lambda: any(
                        r.type == types.ACTION_CANCEL_REQUESTED for r in receiver.accepted()
                    ),
                    what="the audit at the webhook",
                )
                await wait_until(lambda: len(fake.responses) == 1, what="the user told")
                stop.set()
    assert {job.id: 1} == sim.sim.cancels  # exactly one cancel, of that job only
    edits = [json.dumps(u.payload) for u in fake.updates if u.ts == card.ts]
    requested = next(i for i, e in enumerate(edits) if "*CANCELLATION_REQUESTED*" in e)
    cancelled = next(i for i, e in enumerate(edits) if "*CANCELLED*" in e)
    assert requested < cancelled
    assert [card] == [m for m in fake.top_level("C-ALERTS") if m.ts == card.ts]
    (audit,) = [r.data for r in receiver.accepted() if r.type == types.ACTION_CANCEL_REQUESTED]
    assert audit["job"]["id"] == job.id
    assert audit["by"] in ("slack:alice", "slack:U-ALICE")
    assert audit["ok"] is True
    (told,) = [payload for _, payload in fake.responses]
    assert told["response_type"] == "ephemeral" and "CANCELLATION_REQUESTED" in told["text"]
