"""``watcher cancel`` and ``watcher ack`` as a user runs them, beside a running daemon (a
separate process on the same SQLite store), over the real wire: the simulator, a webhook
receiver and a fake PagerDuty on loopback."""

from __future__ import annotations

import getpass
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from tests.e2e.harness import (
    JSON_LOGS,
    QUICK_DELIVERY,
    QUICK_SOURCE,
    WatcherProcess,
    config,
    source,
    webhook,
    write,
)
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.waiting import wait_until
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, RunningSimulator, simulator
from watcher.model import types

pytestmark = pytest.mark.e2e

API_KEY = "sk-actions-SECRET-0123456789"


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m watcher ARGS`` in a worker thread (the in-process peers keep answering)."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "watcher", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return await anyio.to_thread.run_sync(run)


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    """What the command said last on stderr (its logs come before)."""
    return done.stderr.strip().splitlines()[-1]


def of_type(receiver: Receiver, type_: str) -> list[Any]:
    return [r.data for r in receiver.accepted() if r.type == type_]


async def polled(sim: RunningSimulator, times: int = 2) -> None:
    """The daemon has listed the source ``times`` times (its baseline is committed)."""
    start = sim.sim.requests["list"]
    await wait_until(lambda: sim.sim.requests["list"] >= start + times, what="the daemon polls")


async def test_cancel_from_the_cli_reaches_the_api_once_and_is_watched(tmp_path: Path) -> None:
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as hooks, simulator(api_key=API_KEY) as sim:
        running = sim.sim.create(JobSpec(status="RUNNING", frozen=True))
        done = sim.sim.create(JobSpec(status="SUCCESS", frozen=True))
        path = write(
            tmp_path / "config.yaml",
            config(
                tmp_path,
                sources=[source(sim, **QUICK_SOURCE)],
                sinks=[webhook(f"{hooks}/hooks", secret, timeout="5s")],
                delivery=QUICK_DELIVERY,
                logging=JSON_LOGS,
            ),
        )
        daemon = WatcherProcess(path)
        daemon.start()
        try:
            await polled(sim)
            cancelled = await cli("cancel", "-c", str(path), "ft", running.id, "--by", "alice")
            assert 0 == cancelled.returncode, cancelled.stderr
            assert "CANCELLATION_REQUESTED" in cancelled.stdout
            await wait_until(
                lambda: (
                    of_type(receiver, types.ACTION_CANCEL_REQUESTED)
                    and of_type(receiver, "fine_tuning.job.cancellation_requested")
                ),
                what="the audit and the new status at the webhook",
                diagnose=lambda: [r.type for r in receiver.received],
            )
            answers: dict[str, subprocess.CompletedProcess[str]] = {}

            async def refused(name: str, *args: str) -> None:
                answers[name] = await cli("cancel", "-c", str(path), *args)

            async with anyio.create_task_group() as tg:  # one after the other is slow
                tg.start_soon(refused, "conflict", "ft", done.id)
                tg.start_soon(refused, "missing", "ft", "no-such-job")
                tg.start_soon(refused, "hostile", "ft", "a\x1b[2Jb")
                tg.start_soon(refused, "unknown", "nope", running.id)
            conflict, missing = answers["conflict"], answers["missing"]
            hostile, unknown = answers["hostile"], answers["unknown"]
            await wait_until(  # the daemon delivers what the CLI recorded
                lambda: len(of_type(receiver, types.ACTION_CANCEL_REQUESTED)) >= 3,
                what="the refused cancels' audits",
            )
            async with httpx.AsyncClient() as client:
                counted = (await client.get(f"{sim.base_url}/_sim/cancels")).json()["cancels"]
        finally:
            daemon.stop()
    # Every cancel the API answered is audited, refusals included, saying which.
    audits = of_type(receiver, types.ACTION_CANCEL_REQUESTED)
    assert [
        ("alice", running.id, True, "requested"),
        (getpass.getuser(), done.id, False, "conflict"),
        (getpass.getuser(), "no-such-job", False, "not_found"),
    ] == sorted(
        ((a["by"], a["job"]["id"], a["ok"], a["outcome"]) for a in audits),
        key=lambda a: (not a[2], a[3]),
    )
    [status] = of_type(receiver, "fine_tuning.job.cancellation_requested")
    assert running.id == status["job"]["id"]
    assert (1, f"job {done.id} on source ft cannot be cancelled") == (
        conflict.returncode,
        last_line(conflict).removeprefix("watcher: ").split(" (")[0],
    )
    assert "SUCCESS" in last_line(conflict)  # the API's reason
    assert (1, "watcher: no job no-such-job on source ft") == (
        missing.returncode,
        last_line(missing),
    )
    assert (2, 2) == (hostile.returncode, unknown.returncode)
    assert "\x1b" not in hostile.stderr and "unknown source" in unknown.stderr
    # Exactly one cancel per job that reached the API (the bad ones never left).
    assert {running.id: 1, done.id: 1, "no-such-job": 1} == counted
    outputs = [cancelled, conflict, missing, hostile, unknown]
    assert all(API_KEY not in o.stdout + o.stderr for o in outputs)
    assert API_KEY not in daemon.output()


async def test_ack_stops_repeats_and_acknowledges_the_pagerduty_incident(tmp_path: Path) -> None:
    secret = generate_secret()
    receiver = Receiver(secret)
    pager = FakePagerDuty()
    stalled = "fine_tuning.job.stalled"
    async with serve_app(receiver.app) as hooks, serve_app(pager.app()) as pd_url, \
            simulator(api_key=API_KEY) as sim:  # fmt: skip
        path = write(
            tmp_path / "config.yaml",
            config(
                tmp_path,
                sources=[source(sim, **QUICK_SOURCE)],
                sinks=[
                    webhook(f"{hooks}/hooks", secret, timeout="5s"),
                    {
                        "name": "pager",
                        "kind": "pagerduty",
                        "routing_key": ROUTING_KEY,
                        "url": f"{pd_url}/v2/enqueue",
                    },
                ],
                rules=[{"kind": "stalled", "after": {"QUEUED": "1s"}, "repeat_interval": "1s"}],
                rules_interval="500ms",
                delivery=QUICK_DELIVERY,
                logging=JSON_LOGS,
            ),
        )
        daemon = WatcherProcess(path)
        daemon.start()
        try:
            await polled(sim)  # the silent baseline is behind: a new job's stall is sent
            job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
            await wait_until(
                lambda: len(of_type(receiver, stalled)) >= 2,
                within=15,
                what="a stall and a repeat",
                diagnose=lambda: [r.type for r in receiver.received],
            )
            acked = await cli("ack", "-c", str(path), job.id, "--by", "bob")
            assert 0 == acked.returncode, acked.stderr
            await wait_until(
                lambda: (
                    of_type(receiver, types.ACTION_ACKNOWLEDGED)
                    and ("acknowledge" in [a for a, _ in pager.actions()])
                ),
                what="the acknowledgement at the webhook and PagerDuty",
            )
            at_ack = len(of_type(receiver, stalled))
            await anyio.sleep(2.5)  # more than two repeat intervals
            after = len(of_type(receiver, stalled))
            sim.sim.set_status(job.id, "RUNNING")  # the condition ends
            await wait_until(
                lambda: (
                    of_type(receiver, f"{stalled}.resolved")
                    and "resolve" in [a for a, _ in pager.actions()]
                ),
                what="the resolve",
            )
            again = await cli("ack", "-c", str(path), job.id)  # nothing open any more
        finally:
            daemon.stop()
    # A repeat read just before the acknowledgement may still go out; then none.
    assert after - at_ack <= 1, (at_ack, after)
    [audit] = of_type(receiver, types.ACTION_ACKNOWLEDGED)
    assert ("bob", job.id) == (audit["by"], audit["job"]["id"])
    keys = {action: key for action, key in pager.actions()}
    assert keys["trigger"] == keys["acknowledge"] == keys["resolve"]
    assert keys["trigger"].startswith(f"watcher/ft/{job.id}/stalled")
    assert (1, True) == (again.returncode, "no open alert" in again.stderr)
