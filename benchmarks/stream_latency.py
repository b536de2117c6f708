"""Event-driven latency (issue 12): from the simulator emitting a Workflows event to the
receiver getting the signed webhook, with ``interval: 30s`` (polling alone cannot go below
the interval), over streamed executions; and the polled-only latency of the endings no
event announces (TERMINATED, TIMED_OUT).

The simulator and the receiver run in this process, ``watcher run`` in its own. Each
execution runs a script: activity retries at random moments, then an ending (completed,
failed, canceled, continued-as-new then completed, terminated, timed out). Every clock is
this machine's ``time.time()``.

    .venv/bin/python -m benchmarks.stream_latency                  # 60 executions, ~420 changes
    .venv/bin/python -m benchmarks.stream_latency --executions 10 --retries 3
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import yaml

from benchmarks._report import table, verdict, write
from watcher.app import eventloop
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import SECRET_ENV, Receiver, generate_secret
from watcher.devtools.simulator import simulator
from watcher.devtools.simulator.workflows import WorkflowSpec, WorkflowStep

ENDINGS = ("complete", "fail", "cancel", "continue_as_new", "terminate", "time_out")
SILENT = {"terminate", "time_out"}
START = 8.0  # seconds before the scripts begin: the executions are followed by then


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def script(rng: random.Random, retries: int, span: float, index: int) -> tuple[WorkflowStep, ...]:
    times = sorted(rng.uniform(0, span) for _ in range(retries))
    steps = [
        WorkflowStep(
            action="activity_retrying",
            after=START + t,
            activity="call",
            message=f"e{index}.{n}",
        )
        for n, t in enumerate(times)
    ]
    ending = ENDINGS[index % len(ENDINGS)]
    end = START + span + rng.uniform(1, 5)
    if ending == "continue_as_new":
        steps.append(WorkflowStep(action="continue_as_new", after=end))
        steps.append(WorkflowStep(action="complete", after=end + 2))
    else:
        steps.append(WorkflowStep(action=ending, after=end, message="boom"))
    return tuple(steps)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as url, simulator(speed=1.0) as sim:
        executions = {
            sim.sim.create_execution(
                WorkflowSpec(
                    workflow_name=f"bench-{i % 5}",
                    steps=script(rng, args.retries, args.span, i),
                )
            ).execution_id: ENDINGS[i % len(ENDINGS)]
            for i in range(args.executions)
        }
        with tempfile.TemporaryDirectory() as tmp:
            config = {
                "sources": [
                    {
                        "name": "wf",
                        "kind": "mistral-workflows",
                        "base_url": sim.base_url,
                        "api_key": sim.api_key,
                        "interval": args.interval,
                        "on_start": "notify",
                        "max_streams": args.executions,
                    }
                ],
                "state": {"url": f"sqlite:///{tmp}/state.db"},
                "sinks": [
                    {"name": "hooks", "kind": "webhook", "url": f"{url}/h", "secret": secret}
                ],
                "logging": {"level": "warning", "format": "json"},
            }
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump(config))
            env = {**os.environ, SECRET_ENV: secret}
            proc = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited)
                [sys.executable, "-m", "watcher", "run", "-c", str(path)],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            try:
                deadline = time.time() + START + args.span + 60 + 2 * _seconds(args.interval)
                while time.time() < deadline:
                    ended = {
                        str(r.data["job"]["id"])
                        for r in receiver.received
                        if isinstance(r.data, dict)
                        and r.type is not None
                        and r.type.split(".")[-1]
                        in ("completed", "failed", "canceled", "terminated", "timed_out")
                    }
                    if len(ended) >= len(executions):
                        break
                    await anyio.sleep(0.5)
                streams = sim.sim.stream_stats(connections=False)
                requests = dict(sim.sim.stats()["requests"])
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        return summarise(sim.sim, receiver, executions, streams, requests, args)


def _seconds(duration: str) -> float:
    from watcher.config import parse_duration

    return parse_duration(duration)


def summarise(
    sim: Any,
    receiver: Receiver,
    executions: dict[str, str],
    streams: dict[str, Any],
    requests: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    emitted: dict[str, float] = {}  # retry message -> event time
    last_event: dict[str, float] = {}
    for event in sim.workflow_events:
        attributes = event.data.get("attributes", {})
        failure = attributes.get("failure") or {}
        if event.event_type == "ACTIVITY_TASK_RETRYING":
            emitted[str(failure.get("message"))] = event.at
        last_event[event.execution_id] = event.at
    silent = ("TERMINATED", "TIMED_OUT")
    ended_at = {e["job_id"]: e["at"] for e in sim.log if e.get("status") in silent}
    streamed: list[float] = []
    polled: list[float] = []
    seen: set[str | None] = set()
    for r in receiver.received:
        if r.id in seen or not isinstance(r.data, dict):
            continue
        seen.add(r.id)
        job = str((r.data.get("job") or {}).get("id"))
        if r.type == "workflow.activity.retrying":
            message = ((r.data.get("activity") or {}).get("failure") or {}).get("message")
            if message in emitted:
                streamed.append(r.received_at - emitted[message])
        elif r.type in ("workflow.execution.terminated", "workflow.execution.timed_out"):
            if job in ended_at:
                polled.append(r.received_at - ended_at[job])
        elif (
            r.type
            in (
                "workflow.execution.completed",
                "workflow.execution.failed",
                "workflow.execution.canceled",
                "workflow.execution.continued_as_new",
            )
            and job in last_event
            and r.type != "workflow.execution.continued_as_new"
        ):
            streamed.append(r.received_at - last_event[job])
    figures = {
        "executions": len(executions),
        "interval": args.interval,
        "streamed_changes": len(streamed),
        "streamed_p50_s": round(percentile(streamed, 0.5), 3),
        "streamed_p99_s": round(percentile(streamed, 0.99), 3),
        "streamed_max_s": round(max(streamed, default=float("nan")), 3),
        "polled_only_changes": len(polled),
        "polled_only_p50_s": round(percentile(polled, 0.5), 3),
        "polled_only_max_s": round(max(polled, default=float("nan")), 3),
        "streams_opened": streams.get("opened"),
        "replays_from_zero": streams.get("replays_from_zero"),
        "api_requests": requests,
    }
    figures["verdict"] = verdict(
        "streamed p99 <= 1 s",
        figures["streamed_p99_s"] <= 1.0,
        f"p99 {figures['streamed_p99_s']} s over {len(streamed)} changes",
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=60)
    parser.add_argument("--retries", type=int, default=6, help="activity retries per execution")
    parser.add_argument("--span", type=float, default=40.0, help="seconds the retries spread over")
    parser.add_argument("--interval", default="30s")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    figures = eventloop.run(measure, args)
    rows = [{"figure": k, "value": v} for k, v in figures.items() if k != "api_requests"]
    print(table(rows, {"figure": "figure", "value": "value"}))
    print("requests by route:", figures["api_requests"])
    print("written to", write("stream_latency", figures))


if __name__ == "__main__":
    main()
