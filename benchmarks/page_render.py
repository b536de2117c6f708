"""The status page's cost (issue 14): server time to render ``/`` with 10,000 tracked jobs
and 5,000 pending deliveries, and what loading it in a loop does to a steady poll cycle.

The store (SQLite, a temporary file) is seeded directly: 10,000 followed jobs of a source
that is not polled (``archive``; one in ten with a 40-point loss curve) and 5,000 pending
deliveries to a webhook, not yet due (attempted 3 times, next attempt in a day).

- Render: ``GET /`` (and ``/deliveries``) through the page's ASGI app in this process,
  timed around the request, median and p95 over ``--loads`` loads after a warm-up; target
  ``/`` ≤ 300 ms.
- Poll cycle: ``Watcher.once()`` of a source with 50 active jobs on the simulator (its own
  process, over loopback), back to back, on the main thread; its CPU is that thread's
  (``time.thread_time``). First alone, then while another thread (its own event loop and
  store connection on the same file, as a browser's refresh would reach the daemon's store)
  loads ``/`` in a loop without pause; target: the cycle's CPU changes by ≤ 5 %. The
  page's own rendering CPU is the render figure above; in the daemon it shares the event
  loop (a load of ``/`` keeps it for about the render time).

    .venv/bin/python -m benchmarks.page_render [--jobs 10000] [--pending 5000]
        [--loads 20] [--cycles 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import sqlalchemy as sa

from benchmarks._report import table, verdict, write
from benchmarks._sim import simulator_process
from watcher.app import eventloop
from watcher.app.actions import Done
from watcher.app.daemon import Watcher
from watcher.app.logging import configure
from watcher.app.web import StatusPage
from watcher.config import Config, validate_config
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.transitions import Transition
from watcher.stores import open_store
from watcher.stores.schema import deliveries

API_KEY = "bench-key"
ACTIVE = {"QUEUED": 25, "VALIDATING": 8, "VALIDATED": 5, "RUNNING": 10, "CANCELLATION_REQUESTED": 2}
STATUSES = ("QUEUED", "VALIDATING", "RUNNING", "VALIDATED")


class NoActions:
    """The page's buttons are not pressed here."""

    async def silence(self, *args: Any, **kwargs: Any) -> Done:
        return Done(False, "not here")

    async def expire(self, *args: Any, **kwargs: Any) -> Done:
        return Done(False, "not here")

    async def acknowledge(self, *args: Any, **kwargs: Any) -> Done:
        return Done(False, "not here")

    async def cancel(self, *args: Any, **kwargs: Any) -> Done:
        return Done(False, "not here")


def bench_config(url: str, db: Path) -> Config:
    return validate_config(
        {
            "sources": [
                {"name": "ft", "kind": "mistral-fine-tuning", "base_url": url, "api_key": API_KEY}
            ],
            "state": {"url": f"sqlite:///{db}"},
            "sinks": [{"name": "console", "kind": "console"}],
            "http": {"listen": "127.0.0.1:9464"},
        },
        env={},
    )


def _snapshot(n: int, now: int) -> Snapshot:
    job_id = f"bench-{n:05d}-4000-8000-{n:012d}"
    job: dict[str, Any] = {"id": job_id, "status": STATUSES[n % 4], "suffix": f"run-{n}"}
    if n % 10 == 0:
        job["loss_curve"] = [[s, 2.5 - s / 20, 0.0 if s % 4 else 2.4 - s / 20] for s in range(40)]
    return Snapshot(
        source="archive",
        job_id=job_id,
        status=job["status"],
        created_at=now - 7200,
        modified_at=now - n % 3600,
        status_since=now - n % 3600,
        terminal=False,
        job=job,
    )


async def seed(db: Path, jobs: int, pending: int) -> float:
    started = time.perf_counter()
    now = int(time.time())
    store = open_store(f"sqlite:///{db}")
    await store.open()
    try:
        cursor = Cursor(baseline_done=True)
        for start in range(0, jobs, 2000):
            batch = [_snapshot(n, now) for n in range(start, min(jobs, start + 2000))]
            await store.commit("archive", cursor, batch, [], now=time.time())
        routed = [
            Routed(
                Transition(
                    id=f"bench-t{n}",
                    type="fine_tuning.job.running",
                    source="archive",
                    job_id=_snapshot(n % jobs, now).job_id,
                    status="RUNNING",
                    previous_status="QUEUED",
                    occurred_at=now,
                ),
                ["hooks"],
            )
            for n in range(pending)
        ]
        await store.enqueue(routed, now=time.time())
        engine = store.engine  # type: ignore[attr-defined]
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(deliveries).values(
                    attempts=3, next_attempt_at=time.time() + 86400, last_error="HTTP 503"
                )
            )
    finally:
        await store.aclose()
    return time.perf_counter() - started


async def seed_simulator(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as admin:
        (await admin.delete("/_sim/jobs")).raise_for_status()
        for status, count in ACTIVE.items():
            body = {"count": count, "status": status, "frozen": True, "checkpoints": 3}
            (await admin.post("/_sim/jobs", json=body | {"created_at": int(time.time()) - 3600}))


async def render_times(config: Config, loads: int) -> dict[str, Any]:
    store = open_store(config.state.url)
    await store.open()
    page = StatusPage(config, store, NoActions())
    out: dict[str, Any] = {}
    transport = httpx.ASGITransport(app=page.app())
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://page") as http:
            for path in ("/", "/deliveries"):
                times, size = [], 0
                for i in range(loads + 2):
                    started = time.perf_counter()
                    answer = await http.get(path)
                    elapsed = time.perf_counter() - started
                    answer.raise_for_status()
                    size = len(answer.content)
                    if i >= 2:  # warm-up: templates compiled, connections open
                        times.append(elapsed)
                times.sort()
                out[path] = {
                    "median_ms": round(statistics.median(times) * 1000, 1),
                    "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1000, 1),
                    "bytes": size,
                }
    finally:
        await store.aclose()
    return out


def page_loop(config: Config, stop: threading.Event, loads: list[int]) -> None:
    """Loads ``/`` without pause in its own event loop and store connection until ``stop``."""

    async def run() -> None:
        store = open_store(config.state.url)
        await store.open()
        page = StatusPage(config, store, NoActions())
        transport = httpx.ASGITransport(app=page.app())
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://page") as http:
                while not stop.is_set():
                    (await http.get("/")).raise_for_status()
                    loads[0] += 1
        finally:
            await store.aclose()

    eventloop.run(run)


async def cycle_cpu(watcher: Watcher, cycles: int) -> list[float]:
    out = []
    for _ in range(cycles):
        started = time.thread_time()
        await watcher.once()
        out.append(time.thread_time() - started)
    return out


async def poll_cost(config: Config, cycles: int) -> dict[str, Any]:
    async with Watcher(config) as watcher:
        await watcher.once()  # the silent baseline
        await watcher.once()  # warm
        alone = await cycle_cpu(watcher, cycles)
        stop, loads = threading.Event(), [0]
        loader = threading.Thread(target=page_loop, args=(config, stop, loads), daemon=True)
        loader.start()
        await anyio.sleep(2.0)  # the loop is loading pages
        started = loads[0]
        loaded = await cycle_cpu(watcher, cycles)
        during = loads[0] - started
        stop.set()
        await anyio.to_thread.run_sync(loader.join, 60)
        again = await cycle_cpu(watcher, cycles)  # alone again: the machine's drift
    base = statistics.median(alone + again)
    with_page = statistics.median(loaded)
    return {
        "cycle_cpu_ms_alone": round(base * 1000, 2),
        "cycle_cpu_ms_with_page": round(with_page * 1000, 2),
        "change_pct": round((with_page - base) / base * 100, 1),
        "page_loads_during": during,
    }


async def main(jobs: int, pending: int, loads: int, cycles: int) -> dict[str, Any]:
    configure("warning", "json")
    with tempfile.TemporaryDirectory() as tmp, simulator_process(API_KEY) as url:
        db = Path(tmp) / "page.db"
        seeded = await seed(db, jobs, pending)
        print(f"{jobs:,} followed jobs and {pending:,} pending deliveries seeded in {seeded:.1f} s")
        await seed_simulator(url)
        config = bench_config(url, db)
        renders = await render_times(config, loads)
        for path, figures in renders.items():
            print(f"  GET {path}: {figures['median_ms']} ms median, {figures['p95_ms']} ms p95")
        cost = await poll_cost(config, cycles)
        print(
            f"  poll cycle CPU {cost['cycle_cpu_ms_alone']} ms alone, "
            f"{cost['cycle_cpu_ms_with_page']} ms with / loaded in a loop "
            f"({cost['change_pct']:+.1f} %, {cost['page_loads_during']} loads meanwhile)"
        )
    return {"jobs": jobs, "pending": pending, "renders": renders, **cost}


COLUMNS = {
    "jobs": "tracked jobs",
    "pending": "pending deliveries",
    "index_ms": "GET / median ms",
    "index_p95_ms": "GET / p95 ms",
    "deliveries_ms": "GET /deliveries median ms",
    "cycle_cpu_ms_alone": "poll cycle CPU ms",
    "cycle_cpu_ms_with_page": "with / in a loop",
    "change_pct": "change %",
}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=5_000)
    parser.add_argument("--loads", type=int, default=20, help="page loads timed per page")
    parser.add_argument("--cycles", type=int, default=15, help="poll cycles per phase")
    args = parser.parse_args()
    result = eventloop.run(main, args.jobs, args.pending, args.loads, args.cycles)
    row = {
        **result,
        "index_ms": result["renders"]["/"]["median_ms"],
        "index_p95_ms": result["renders"]["/"]["p95_ms"],
        "deliveries_ms": result["renders"]["/deliveries"]["median_ms"],
    }
    print()
    print(table([row], COLUMNS))
    print()
    checks = [
        verdict("GET / ≤ 300 ms server time", row["index_ms"] <= 300, f"{row['index_ms']} ms"),
        verdict(
            "poll cycle CPU changes ≤ 5 % with / loaded in a loop",
            abs(row["change_pct"]) <= 5,
            f"{row['change_pct']:+.1f} %",
        ),
    ]
    write("page_render", {"rows": [row], "targets": checks})
