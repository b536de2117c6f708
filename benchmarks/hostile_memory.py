"""Peak memory under hostile API answers (issue 15, item 7): the daemon's peak RSS while a
loopback API answers some job details with huge bodies, against the same daemon fed sound
answers.

A real ``watcher run`` process (config file, SQLite state, JSON logs, one webhook sink)
polls ``tests/hostile_api.py`` every 500 ms: 12 RUNNING jobs, pages of 5, each first seen
reported. In the hostile runs, 6 of the jobs' details answer ``--size`` MB each, asked again
every cycle (those jobs are never reported): with ``Content-Length``, chunked (no length),
as a gzip bomb, or all three kinds plus a 2,000-level-deep item and a lying ``total``.
Measured from outside the process: ``VmHWM`` (peak RSS) from ``/proc/PID/status`` after
``--seconds`` of each run.

    .venv/bin/python -m benchmarks.hostile_memory [--seconds 20] [--size 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from benchmarks._report import table, verdict, write
from tests.e2e.harness import JSON_LOGS, QUICK_DELIVERY, WatcherProcess, config, source, webhook
from tests.e2e.harness import write as write_config
from tests.hostile_api import KEY, HostileApi, Huge, jobs
from watcher.app import eventloop
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret

LIMIT_MIB = 256  # deploy/kubernetes/base/deployment.yaml: resources.limits.memory
TARGET_MIB = 0.75 * LIMIT_MIB  # a margin of a quarter of the limit
HOSTILE = ("job-001", "job-003", "job-005", "job-007", "job-009", "job-011")


def scenarios(size: int) -> dict[str, HostileApi]:
    def huge(kinds: tuple[Huge, ...]) -> dict[str, tuple[int, Huge]]:
        return {job: (size, kinds[i % len(kinds)]) for i, job in enumerate(HOSTILE)}

    mixed: tuple[Huge, ...] = ("content-length", "chunked", "gzip-bomb")
    return {
        "sound": HostileApi(jobs(12)),
        "Content-Length": HostileApi(jobs(12), huge=huge(("content-length",))),
        "chunked": HostileApi(jobs(12), huge=huge(("chunked",))),
        "gzip bomb": HostileApi(jobs(12), huge=huge(("gzip-bomb",))),
        "all + deep + lying total": HostileApi(
            jobs(12), huge=huge(mixed), deep={"job-004": 2000}, total=lambda n: 3
        ),
    }


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


async def measure(name: str, api: HostileApi, seconds: float, home: Path) -> dict[str, Any]:
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as receiver_url, serve_app(api.app()) as base_url:
        content = config(
            home,
            sources=[
                source(
                    base_url=base_url,
                    api_key=KEY,
                    interval="500ms",
                    jitter="50ms",
                    timeout="10s",
                    max_retries=0,
                    on_start="notify",
                    page_size=5,
                )
            ],
            sinks=[webhook(f"{receiver_url}/hooks", secret, timeout="5s")],
            delivery=QUICK_DELIVERY,
            logging=JSON_LOGS,
        )
        daemon = WatcherProcess(write_config(home / "config.yaml", content))
        daemon.start()
        assert daemon.proc is not None
        try:
            await anyio.sleep(seconds)
            figures = status(daemon.proc.pid)
        finally:
            daemon.stop()
    reported = {
        r.data["job"]["id"]
        for r in receiver.received
        if r.accepted and isinstance(r.data, dict) and isinstance(r.data.get("job"), dict)
    }
    asked = sum(1 for what, job in api.asked if what == "detail" and job in api.huge)
    return {
        "scenario": name,
        "peak": figures["VmHWM"] / 1024,
        "rss": figures["VmRSS"] / 1024,
        "reported": len(reported),
        "hostile_asked": asked,
    }


async def main(seconds: float, size_mb: int) -> list[dict[str, Any]]:
    rows = []
    for name, api in scenarios(size_mb * 1024 * 1024).items():
        with tempfile.TemporaryDirectory(prefix="watcher-hostile-") as home:
            row = await measure(name, api, seconds, Path(home))
        print(f"{name}: peak RSS {row['peak']:.1f} MiB", file=sys.stderr)
        rows.append(row)
    return rows


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each run's length")
    parser.add_argument("--size", type=int, default=200, help="MB of each hostile answer")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    started = time.perf_counter()
    rows = eventloop.run(main, args.seconds, args.size)
    print(
        table(
            rows,
            {
                "scenario": "answers",
                "peak": "peak RSS (VmHWM, MiB)",
                "rss": "RSS at the end (MiB)",
                "reported": "jobs reported (of 12)",
                "hostile_asked": "hostile answers served",
            },
        )
    )
    worst = max(row["peak"] for row in rows)
    checks = [
        verdict(
            f"peak RSS under hostile answers <= {TARGET_MIB:g} MiB (limit {LIMIT_MIB} Mi)",
            worst <= TARGET_MIB,
            f"{worst:.1f} MiB",
        )
    ]
    write(
        "hostile_memory",
        {
            "rows": rows,
            "checks": checks,
            "seconds": args.seconds,
            "size_mb": args.size,
            "took_s": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    run()
