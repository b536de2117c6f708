"""``watcher demo``: the simulator, the watcher and a signature-checking webhook receiver,
all on loopback. Within about a minute the newcomer sees jobs queue, validate, run,
checkpoint, succeed with a model, fail, and be cancelled; then a summary of what the
receiver got. Exits 0 when every status change the simulator applied arrived exactly once
with a valid signature."""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from watcher.app import eventloop
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.app.logging import configure
from watcher.config import validate_config
from watcher.devtools.receiver import Received, Receiver, generate_secret
from watcher.devtools.simulator import load_full_demo, simulator
from watcher.model.statuses import BATCH_TERMINAL, FINE_TUNING_TERMINAL, WORKFLOW_TERMINAL


def _say(text: str = "") -> None:
    print(text, flush=True)


def _delivered(log: list[dict[str, Any]], received: list[Received]) -> tuple[int, int]:
    """How many applied status changes arrived (accepted, valid), and how many are missing."""
    got = Counter(
        (r.data["job"]["id"], r.data.get("previous_status"), r.data.get("status"))
        for r in received
        if r.accepted and isinstance(r.data, dict) and "status" in r.data
    )
    wanted = Counter(
        (e["job_id"], e["previous_status"], e["status"])
        for e in log
        if e.get("kind", "fine_tuning") in ("fine_tuning", "batch", "workflow")
    )
    missing = sum((wanted - got).values())
    return sum(wanted.values()) - missing, missing


async def _demo(speed: float, limit: float, state_dir: Path) -> int:
    secret = generate_secret()
    receiver = Receiver(secret)
    demo = load_full_demo()
    jobs = list(demo.jobs)
    async with (
        serve_app(receiver.app) as receiver_url,
        simulator(jobs=jobs, batches=demo.batches, workflows=demo.workflows, speed=speed) as sim,
    ):
        config = validate_config(
            {
                "sources": [
                    {
                        "name": "demo",
                        "kind": "mistral-fine-tuning",
                        "base_url": sim.base_url,
                        "api_key": sim.api_key,
                        "interval": "1s",
                        "jitter": "100ms",
                    },
                    {
                        "name": "batch",
                        "kind": "mistral-batch",
                        "base_url": sim.base_url,
                        "api_key": sim.api_key,
                        "interval": "1s",
                        "jitter": "100ms",
                        "on_start": "notify",  # a job created before the first poll counts
                    },
                    {
                        # Polls discover executions; their event streams carry the rest.
                        "name": "workflows",
                        "kind": "mistral-workflows",
                        "base_url": sim.base_url,
                        "api_key": sim.api_key,
                        "interval": "2s",
                        "on_start": "notify",
                    },
                ],
                "state": {"url": f"sqlite:///{state_dir}/state.db"},
                "sinks": [
                    {"name": "console", "kind": "console"},
                    {
                        "name": "receiver",
                        "kind": "webhook",
                        "url": f"{receiver_url}/hooks",
                        "secret": secret,
                    },
                ],
                "delivery": {"initial_backoff": "200ms"},
            },
            env={},
        )
        _say("watcher demo: everything runs on loopback, nothing leaves this machine.")
        scripted = f"{len(jobs)} fine-tuning jobs, {len(demo.batches)} batch job(s), "
        _say(
            f"  Mistral API simulator  {sim.base_url}  ({scripted}"
            f"{len(demo.workflows)} workflow execution(s) scripted)"
        )
        _say(
            f"  webhook receiver       {receiver_url}/hooks  (verifies Standard Webhooks "
            "signatures)"
        )
        _say(
            "  watcher                polls every 1 s (workflows: follows their event "
            "streams); transitions below, one per line"
        )
        _say()
        started = time.monotonic()
        done = False
        stop = anyio.Event()
        async with Watcher(config) as watcher, anyio.create_task_group() as tg:
            tg.start_soon(lambda: watcher.serve(until=stop))
            with anyio.move_on_after(limit):
                while True:
                    await anyio.sleep(0.5)
                    settled = (
                        len(sim.sim.jobs) == len(jobs)
                        and all(j.status in FINE_TUNING_TERMINAL for j in sim.sim.jobs.values())
                        and len(sim.sim.batch_jobs) == len(demo.batches)
                        and all(b.status in BATCH_TERMINAL for b in sim.sim.batch_jobs.values())
                        and len(sim.sim.executions) == len(demo.workflows)
                        and all(e.status in WORKFLOW_TERMINAL for e in sim.sim.executions.values())
                    )
                    arrived, missing = _delivered(sim.sim.log, receiver.received)
                    if settled and not missing:
                        done = True
                        break
            stop.set()
        elapsed = time.monotonic() - started
        arrived, missing = _delivered(sim.sim.log, receiver.received)
        ids = receiver.by_id()
        valid = sum(1 for r in receiver.received if r.valid)
        duplicates = sum(len(v) - 1 for v in ids.values())
        types = Counter(r.type for r in receiver.accepted())
        _say()
        _say(f"summary after {elapsed:.0f} s:")
        _say(f"  status changes applied by the simulator: {arrived + missing}")
        _say(f"  received by the webhook receiver:        {arrived} ({missing} missing)")
        _say(
            f"  webhooks received in all: {len(receiver.received)}, "
            f"with a valid signature: {valid}, repeated ids: {duplicates}"
        )
        for name, count in sorted(types.items(), key=lambda kv: str(kv[0])):
            _say(f"    {count:3d} x {name}")
        ok = done and valid == len(receiver.received) and duplicates == 0
        for needed in (
            "fine_tuning.job.failed",
            "fine_tuning.job.cancellation_requested",
            "fine_tuning.job.cancelled",
            "fine_tuning.job.model_ready",
            "batch.job.timeout_exceeded",
            "workflow.activity.retrying",
            "workflow.execution.failed",
        ):
            if not types.get(needed):
                ok = False
                _say(f"  missing: no {needed} arrived")
        _say("demo OK: every transition arrived once, signed." if ok else "demo FAILED")
        return 0 if ok else 1


def run_demo(*, speed: float = 1.0, timeout: float = 90.0) -> int:
    configure("warning", "console" if sys.stderr.isatty() else "json")
    with tempfile.TemporaryDirectory(prefix="watcher-demo-") as state_dir:
        return eventloop.run(_demo, speed, timeout, Path(state_dir))
