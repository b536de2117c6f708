"""Slack through the real wire: a storm, hostile values, threads across restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.harness import config, source
from tests.fakes.slack import FakeSlack
from tests.waiting import wait_until
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import Config, validate_config
from watcher.devtools.simulator import JobSpec, RunningSimulator, simulator

pytestmark = pytest.mark.e2e


def slack_config(sim: RunningSimulator, tmp_path: Path, sink: dict[str, Any]) -> Config:
    raw = config(
        tmp_path,
        sources=[source(sim, track_checkpoints=False)],
        sinks=[{"name": "slack", "kind": "slack", **sink}],
        routes=[{"match": {"status": ["FAILED"]}, "sinks": ["slack"]}],
    )
    return validate_config(raw, env={})


async def test_storm_of_200_failures(tmp_path: Path) -> None:
    """200 simultaneous failures yield at most 10 Slack messages, within Slack's 1 message
    per second, that together name all 200 jobs; a hostile suffix arrives escaped."""
    fake = FakeSlack()
    async with serve_app(fake.app) as slack_url, simulator() as sim:
        ids = [
            sim.sim.create(
                JobSpec(status="RUNNING", frozen=True, suffix="<!channel> <@U123> & <script>")
            ).id
            for _ in range(200)
        ]
        settings = slack_config(
            sim, tmp_path, {"webhook_url": f"{slack_url}/hooks/T0/B0/secret", "group_wait": "500ms"}
        )
        async with Watcher(settings) as watcher:
            await watcher.once()  # baseline
            for job_id in ids:
                sim.sim.set_status(job_id, "FAILED")
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: watcher.serve(until=stop))

                def named() -> set[str]:
                    text = json.dumps([m.payload for m in fake.webhook_messages()])
                    return {i for i in ids if i in text}

                # Each look re-reads every message: five a second is enough.
                await wait_until(
                    lambda: len(named()) == 200,
                    within=60,
                    what="all 200 jobs named in Slack",
                    every=0.2,
                    diagnose=lambda: f"{len(named())} named",
                )
                stop.set()
    messages = fake.webhook_messages()
    assert len(messages) <= 10
    # Paced by the dispatcher: no payload refused as invalid; any refusal is a rate limit.
    assert set() == {r.status for r in fake.rejected} - {429}
    raw = json.dumps([m.payload for m in messages])
    assert "<!channel>" not in raw and "<@U123>" not in raw and "<script>" not in raw
    assert "&lt;!channel&gt;" in raw


async def test_bot_threads_survive_a_restart(tmp_path: Path) -> None:
    """In bot mode a job has one card, edited in place, whose thread holds its messages,
    also across a watcher restart."""
    fake = FakeSlack(api_interval=None)
    async with serve_app(fake.app) as slack_url, simulator() as sim:
        job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        settings = slack_config(
            sim,
            tmp_path,
            {
                "token": "xoxb-fake-token",
                "channel": "C-ALERTS",
                "api_url": f"{slack_url}/api",
                "group_wait": "0s",
            },
        )
        settings = settings.model_copy(update={"routes": None})
        async with Watcher(settings) as watcher:
            await watcher.once()
            sim.sim.set_status(job.id, "RUNNING")
            await watcher.once()
        async with Watcher(settings) as watcher:  # restart
            sim.sim.set_status(job.id, "FAILED")
            await watcher.once()
    card, first, second = fake.channel_messages("C-ALERTS")
    assert card.thread_ts is None
    assert (card.ts, card.ts) == (first.thread_ts, second.thread_ts)
    assert (False, True) == (first.reply_broadcast, second.reply_broadcast)
    assert [card.ts] == [u.ts for u in fake.updates]  # the card, edited after the restart
    assert "*FAILED*" in json.dumps(card.payload)
