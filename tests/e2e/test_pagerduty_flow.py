"""PagerDuty through the watcher: a failure pages once; the job's later success resolves
it, across a restart; no secret reaches the operator's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.e2e.harness import config, source, write
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.slack import FakeSlack
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import validate_config
from watcher.devtools.simulator import JobSpec, simulator

pytestmark = pytest.mark.e2e


async def test_failure_pages_once_and_success_resolves(tmp_path: Path) -> None:
    """FAILED triggers once with one dedup_key (kept across a restart); the same job's
    SUCCESS later resolves it with that key."""
    fake = FakePagerDuty()
    async with serve_app(fake.app()) as pd_url, simulator() as sim:
        job = sim.sim.create(JobSpec(status="RUNNING", frozen=True))
        pager = {
            "name": "pager",
            "kind": "pagerduty",
            "routing_key": ROUTING_KEY,
            "url": f"{pd_url}/v2/enqueue",
        }
        raw = config(tmp_path, sources=[source(sim, track_checkpoints=False)], sinks=[pager])
        settings = validate_config(raw, env={})
        async with Watcher(settings) as watcher:
            await watcher.once()
            sim.sim.set_status(job.id, "FAILED")
            await watcher.once()
            await watcher.once()
        sim.sim.set_status(job.id, "QUEUED")  # retried by the team…
        sim.sim.set_status(job.id, "RUNNING")
        sim.sim.set_status(job.id, "SUCCESS")  # …and it worked
        async with Watcher(settings) as watcher:  # another process
            await watcher.once()
    key = f"watcher/ft/{job.id}"
    assert [("trigger", key), ("resolve", key)] == fake.actions()


def test_no_secret_in_deliveries_output(tmp_path: Path) -> None:
    """Dead letters of Slack and PagerDuty keep their reasons and none of their secrets."""

    async def scenario() -> None:
        slack = FakeSlack()
        pager = FakePagerDuty()
        pager.answer = (
            400,
            {"status": "invalid event", "message": "Event object is invalid", "errors": ["nope"]},
            {},
        )
        async with serve_app(slack.app) as slack_url, serve_app(pager.app()) as pd_url, \
                simulator() as sim:  # fmt: skip
            slack.break_hook("T0/B0/hooktoken-SECRET", 404, "no_service")
            sim.sim.create(JobSpec(status="FAILED", frozen=True))
            content = config(
                tmp_path,
                sources=[source(sim, on_start="notify")],
                sinks=[
                    {
                        "name": "slack",
                        "kind": "slack",
                        "group_wait": 0,
                        "webhook_url": f"{slack_url}/hooks/T0/B0/hooktoken-SECRET",
                    },
                    {
                        "name": "pager",
                        "kind": "pagerduty",
                        "routing_key": ROUTING_KEY,
                        "url": f"{pd_url}/v2/enqueue",
                    },
                ],
                logging={"level": "debug"},
            )
            path = write(tmp_path / "config.yaml", content)
            once = await anyio.to_thread.run_sync(lambda: run("once", "-c", str(path)))
            listed = run("deliveries", "-c", str(path), "--state", "dead")
            outputs.extend([once.stdout, once.stderr, listed.stdout, listed.stderr])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "watcher", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    outputs: list[str] = []
    anyio.run(scenario)
    text = "".join(outputs)
    assert "no_service" in text and "Event object is invalid" in text
    assert "hooktoken-SECRET" not in text
    assert ROUTING_KEY not in text
