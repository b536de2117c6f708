"""Memory and scale: the daemon tracking 100,000 jobs (issue 7, #4).

A real ``watcher run`` process (config file, SQLite state, JSON logs) watches a simulator
account of 100,000 fine-tuning jobs (99,950 terminal, 50 active: the poll-cost mix). Its
first poll is the silent baseline: a full listing whose 100,000 snapshots go to the store.
A full resync (a full listing compared against the store) then comes every
``resync_interval``, set short here so that one happens within the run.

Measured from outside the process: RSS from ``/proc/PID/status`` (``VmRSS`` sampled every
0.2 s; ``VmHWM`` is the peak), and the durations of both full listings from the daemon's
``poll_done`` log lines (``seconds``: listing, store look-ups, comparison and the commit).

    .venv/bin/python -m benchmarks.scale [--jobs 100000] [--steady 30] [--py-spy FILE]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2 as httpx
import yaml

from benchmarks._pyspy import hot, recording
from benchmarks._report import table, verdict, write
from benchmarks._sim import simulator_process
from benchmarks.poll_cost import ACTIVE, API_KEY

RSS_TARGET_MB = 150.0
RESYNC_TARGET_S = 60.0
INTERVAL_S = 10
RESYNC_S = 60


def seed(url: str, jobs: int) -> float:
    started = time.perf_counter()
    now = int(time.time())
    terminal = jobs - sum(ACTIVE.values())
    with httpx.Client(base_url=url, timeout=600) as admin:
        admin.delete("/_sim/jobs").raise_for_status()
        body = {
            "count": terminal,
            "status": "SUCCESS",
            "checkpoints": 3,
            "created_at": now - 7 * 86400,
        }
        admin.post("/_sim/jobs", json=body).raise_for_status()
        for status, count in ACTIVE.items():
            body = {
                "count": count,
                "status": status,
                "checkpoints": 3,
                "frozen": True,
                "created_at": now - 3600,
            }
            admin.post("/_sim/jobs", json=body).raise_for_status()
    return time.perf_counter() - started


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of ``pid``, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class Sampler(threading.Thread):
    """RSS of a process every ``every`` seconds, with the time of each sample."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                mem = memory_mb(self.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            self.samples.append((time.monotonic(), mem["VmRSS"]))
            self.peak = max(self.peak, mem["VmHWM"])

    def rss_between(self, start: float, end: float) -> list[float]:
        return [rss for at, rss in self.samples if start <= at <= end]


class LogReader(threading.Thread):
    """The daemon's JSON log lines, each with the monotonic time it arrived."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.changed = threading.Condition()

    def run(self) -> None:
        for raw in self.stream:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            with self.changed:
                self.lines.append((time.monotonic(), line))
                self.changed.notify_all()

    def wait_for(
        self, event: str, nth: int, timeout: float, **where: Any
    ) -> tuple[float, dict[str, Any]]:
        """The ``nth`` line of ``event`` whose fields pass ``where`` (name -> predicate) and
        the time it arrived; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [
                    (at, line)
                    for at, line in self.lines
                    if line.get("event") == event
                    and all(key in line and test(line[key]) for key, test in where.items())
                ]
                if len(found) >= nth:
                    return found[nth - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{nth} x {event} not seen in {timeout:g} s")
                self.changed.wait(left)

    def count(self, event: str) -> int:
        with self.changed:
            return sum(1 for _, line in self.lines if line.get("event") == event)


def run(jobs: int, steady: float, profile: Path | None = None) -> dict[str, Any]:
    with simulator_process(API_KEY) as url, tempfile.TemporaryDirectory() as tmp:
        seeded = seed(url, jobs)
        print(f"{jobs:,} jobs seeded in {seeded:.1f} s")
        config = {
            "sources": [
                {
                    "name": "ft",
                    "kind": "mistral-fine-tuning",
                    "base_url": url,
                    "api_key": API_KEY,
                    "interval": f"{INTERVAL_S}s",
                    "resync_interval": f"{RESYNC_S}s",
                }
            ],
            "state": {"url": f"sqlite:///{tmp}/state.db"},
            "sinks": [{"name": "console", "kind": "console"}],
            "logging": {"level": "debug", "format": "json"},  # every poll_done
        }
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run", "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler, logs = Sampler(proc.pid), LogReader(proc.stderr)
        sampler.start()
        logs.start()
        spy = ExitStack()
        spy.enter_context(recording(proc.pid, profile))
        try:
            started_at, _ = logs.wait_for("watcher_started", 1, 60)
            first_at, first = logs.wait_for("poll_done", 1, 600)
            print(f"baseline poll: {first['seconds']} s, {first['requests']} requests")
            after_first = memory_mb(proc.pid)
            # The first poll RESYNC_S after the baseline lists everything again: a resync
            # (a steady poll needs a few requests, a full listing one per 100 jobs).
            resync_at, resync = logs.wait_for(
                "poll_done", 2, RESYNC_S + 600, requests=lambda n: n > jobs // 200
            )
            print(f"resync poll: {resync['seconds']} s, {resync['requests']} requests")
            polls_before = logs.count("poll_done")
            settle_start = time.monotonic()
            time.sleep(steady)
            steady_rss = sampler.rss_between(settle_start, time.monotonic())
            final = memory_mb(proc.pid)
            polls = [line for _, line in logs.lines if line.get("event") == "poll_done"]
        finally:
            spy.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            finally:
                sampler.stop.set()
    steady_polls = polls[polls_before:]
    return {
        "jobs": jobs,
        "seed_s": round(seeded, 1),
        "baseline_poll_s": first["seconds"],
        "started_to_baseline_done_s": round(first_at - started_at, 1),
        "baseline_requests": first["requests"],
        "rss_after_baseline_mb": round(after_first["VmRSS"], 1),
        "resync_poll_s": resync["seconds"],
        "resync_requests": resync["requests"],
        "resync_log_delay_s": round(resync_at - first_at, 1),
        "steady_rss_mb": round(statistics.median(steady_rss), 1),
        "steady_rss_max_mb": round(max(steady_rss), 1),
        "peak_rss_mb": round(max(sampler.peak, final["VmHWM"]), 1),
        "steady_polls": len(steady_polls),
        "steady_poll_requests": [p["requests"] for p in steady_polls],
        "rss_samples": [(round(at - started_at, 1), round(rss, 1)) for at, rss in sampler.samples][
            ::5
        ],
        "exit_code": proc.returncode,
    }


COLUMNS = {
    "jobs": "tracked jobs",
    "baseline_poll_s": "baseline poll s (full listing + commit)",
    "resync_poll_s": "full resync s",
    "resync_requests": "resync requests",
    "steady_rss_mb": "steady RSS MB",
    "peak_rss_mb": "peak RSS MB",
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady state")
    parser.add_argument("--py-spy", type=Path, help="profile the daemon into this file (raw)")
    args = parser.parse_args()
    row = run(args.jobs, args.steady, args.py_spy)
    print(table([row], COLUMNS))
    print()
    checks = [
        verdict(
            f"RSS with {row['jobs']:,} tracked jobs <= {RSS_TARGET_MB:g} MB",
            row["steady_rss_mb"] <= RSS_TARGET_MB,
            f"steady {row['steady_rss_mb']} MB, peak {row['peak_rss_mb']} MB",
        ),
        verdict(
            f"full resync of {row['jobs']:,} jobs <= {RESYNC_TARGET_S:g} s",
            row["resync_poll_s"] <= RESYNC_TARGET_S,
            f"{row['resync_poll_s']} s ({row['resync_requests']} requests)",
        ),
    ]
    if args.py_spy is not None:
        print(f"hottest watcher frames (inclusive share of samples, {args.py_spy}):")
        for frame, share in hot(args.py_spy, within="watcher/"):
            print(f"  {share:6.1%}  {frame}")
    write(
        "scale",
        {
            "settings": {"interval_s": INTERVAL_S, "resync_interval_s": RESYNC_S},
            "row": row,
            "targets": checks,
        },
    )
