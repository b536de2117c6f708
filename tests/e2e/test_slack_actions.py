"""Slack's buttons through the daemon: the card posted by the real sink carries them,
``POST /slack/actions`` on ``http.listen`` checks every click, the card follows the job."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from tests.e2e.harness import config, free_port, source
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_interactive import interaction, signed
from tests.waiting import wait_until
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import validate_config
from watcher.devtools.simulator import JobSpec, simulator
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
