"""Failure storm, end to end: 2,000 batch jobs fail at once; how fast and at what CPU do their
signed webhooks leave (issue 16, acceptance).

The simulator (``watcher simulate``, its own process) holds 2,000 RUNNING batch jobs; the
minimal receiver (``benchmarks._minimal_server``, its own process) takes webhooks. watcher
runs IN THIS PROCESS, wired as the daemon wires it (``watcher.app.daemon.Watcher``: the
config below, a SQLite state file, the batch source, one signed webhook sink routed to
FAILED): a first cycle is the silent baseline; then every job is set FAILED in the
simulator, and one cycle is measured: the poll (listing, diff, one commit of the 2,000
transitions with their outbox rows) and the dispatcher's drain (claims, encoding, signing,
POSTs, commits). Measured: wall time of both, the CPU of this process over both (the
simulator and receiver are other processes), and the receiver's record (every transition
once, each job's in order).

For reference, in the same run: aiohttp alone POSTs as many bodies of the same size to the
same receiver, 8 in flight; its CPU per POST is the unit of the ratio.

    .venv/bin/python -m benchmarks.failure_storm [--jobs 2000] [--profile FILE]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import anyio
import httpx2 as httpx

from benchmarks._minimal_server import cpu_seconds, minimal_server
from benchmarks._report import table, verdict, write
from benchmarks._sim import simulator_process
from benchmarks.delivery import profiled
from watcher.app import eventloop
from watcher.app.daemon import Watcher
from watcher.app.logging import configure
from watcher.config import validate_config
from watcher.devtools.receiver import generate_secret

API_KEY = "bench-key"
TARGET_RATE = 2000  # transitions delivered per second
TARGET_RATIO = 8.0  # watcher's CPU per transition / aiohttp's CPU per POST
IN_FLIGHT = 8


async def fail_all(admin: httpx.AsyncClient, ids: list[str]) -> None:
    """Every job FAILED in the simulator (before the measured cycle)."""
    limiter = anyio.CapacityLimiter(16)

    async def one(job_id: str) -> None:
        async with limiter:
            r = await admin.post(f"/_sim/batch/jobs/{job_id}/status", json={"status": "FAILED"})
            r.raise_for_status()

    async with anyio.create_task_group() as tg:
        for job_id in ids:
            tg.start_soon(one, job_id)


async def raw_aiohttp(url: str, count: int, size: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``count`` POSTs of ``size`` bytes by aiohttp alone."""
    import aiohttp

    body = b"{" + b'"x":"' + b"a" * max(0, size - 9) + b'"}'
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # warm up
            async with session.post(url, data=body) as r:
                await r.read()
        share, rest = divmod(count, IN_FLIGHT)

        async def worker(n: int) -> None:
            for _ in range(n):
                async with session.post(url, data=body) as r:
                    await r.read()
                    assert r.status == 200

        cpu, wall = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for k in range(IN_FLIGHT):
                tg.start_soon(worker, share + (1 if k < rest else 0))
        return time.perf_counter() - wall, time.process_time() - cpu


async def run(jobs: int, profile: Path | None) -> dict[str, Any]:
    configure("warning", "json")
    secret = generate_secret()
    with (
        simulator_process(API_KEY) as sim,
        minimal_server() as (hooks, receiver_pid),
        TemporaryDirectory() as tmp,
    ):
        async with httpx.AsyncClient(base_url=sim, timeout=120) as admin:
            body = {"count": jobs, "status": "RUNNING", "log": False}
            ids = (await admin.post("/_sim/batch/jobs", json=body)).json()["ids"]
            config = validate_config(
                {
                    "sources": [
                        {
                            "name": "batch",
                            "kind": "mistral-batch",
                            "base_url": sim,
                            "api_key": API_KEY,
                        }
                    ],
                    "state": {"url": f"sqlite:///{tmp}/state.db"},
                    "sinks": [
                        {"name": "hook", "kind": "webhook", "url": f"{hooks}/h", "secret": secret}
                    ],
                    "routes": [{"match": {"status": ["FAILED"]}, "sinks": ["hook"]}],
                },
                env={},
            )
            async with Watcher(config) as watcher:
                await watcher.once()  # the silent baseline
                await fail_all(admin, ids)
                theirs = cpu_seconds(receiver_pid)
                with profiled(profile):
                    cpu, started = time.process_time(), time.perf_counter()
                    outcome = await watcher.pipeline.poll("batch")
                    polled = time.perf_counter()
                    poll_cpu = time.process_time() - cpu
                    await watcher.dispatcher.drain()
                    done = time.perf_counter()
                    cpu = time.process_time() - cpu
                theirs = cpu_seconds(receiver_pid) - theirs
                status = await watcher.store.status()
                async with httpx.AsyncClient() as probe:
                    ids_received = (await probe.get(f"{hooks}/_received")).text.split()
                raw_wall, raw_cpu = await raw_aiohttp(f"{hooks}/h", len(ids_received) or jobs, 600)
    counts = Counter(ids_received)
    transitions = len(counts)
    per_transition_ms = 1000 * cpu / max(transitions, 1)
    per_post_ms = 1000 * raw_cpu / max(len(ids_received), 1)
    return {
        "jobs": jobs,
        "poll_outcome": outcome.outcome,
        "transitions": transitions,
        "duplicates": sum(n - 1 for n in counts.values()),
        "left_pending": status.pending,
        "dead": status.dead,
        "poll_s": round(polled - started, 2),
        "poll_cpu_s": round(poll_cpu, 2),
        "drain_s": round(done - polled, 2),
        "drain_cpu_s": round(cpu - poll_cpu, 2),
        "total_s": round(done - started, 2),
        "per_second": round(transitions / (done - started)),
        "drain_per_second": round(transitions / (done - polled)),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_transition": round(per_transition_ms, 3),
        "receiver_cpu_s": round(theirs, 2),
        "raw_s": round(raw_wall, 2),
        "raw_cpu_ms_per_post": round(per_post_ms, 3),
        "ratio": round(per_transition_ms / per_post_ms, 1),
    }


COLUMNS = {
    "jobs": "jobs failing",
    "transitions": "webhooks received",
    "duplicates": "duplicates",
    "poll_s": "poll s",
    "drain_s": "drain s",
    "per_second": "end to end /s",
    "drain_per_second": "drain /s",
    "drain_cpu_s": "drain CPU s",
    "cpu_s": "watcher CPU s",
    "cpu_ms_per_transition": "watcher CPU ms/transition",
    "raw_cpu_ms_per_post": "aiohttp CPU ms/POST",
    "ratio": "ratio",
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--profile", type=Path, help="pyinstrument profile of the measured cycle")
    args = parser.parse_args()
    row = eventloop.run(run, args.jobs, args.profile)
    print(table([row], COLUMNS))
    print()
    checks = [
        verdict(
            "every job's failure delivered once",
            row["transitions"] == args.jobs and not row["duplicates"] and not row["left_pending"],
            f"{row['transitions']:,} of {args.jobs:,}, duplicates {row['duplicates']}, "
            f"left pending {row['left_pending']}",
        ),
        verdict(
            f"drain >= {TARGET_RATE:,}/s",
            row["drain_per_second"] >= TARGET_RATE,
            f"drain {row['drain_per_second']:,}/s ({row['drain_s']} s); end to end, poll "
            f"included: {row['per_second']:,}/s ({row['total_s']} s)",
        ),
        verdict(
            f"watcher's CPU per transition <= {TARGET_RATIO:g}x aiohttp's per POST",
            row["ratio"] <= TARGET_RATIO,
            f"{row['cpu_ms_per_transition']} ms against {row['raw_cpu_ms_per_post']} ms: "
            f"{row['ratio']}x",
        ),
    ]
    write("failure_storm", {"row": row, "targets": checks})
