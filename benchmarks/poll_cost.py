"""Poll cost per steady-state cycle, watcher against the naive SDK poller (issue 7, #1).

For 50 active jobs beside 1,000 / 10,000 / 100,000 terminal ones, both pollers run against
the same simulator (its own process, over loopback HTTP) in the same run:

- watcher at its default settings (page size 100, checkpoint tracking on), in this process;
  CPU is ``time.process_time`` around ``Watcher.once()`` (the simulator is another process,
  so nothing else runs here meanwhile);
- the baseline (:mod:`benchmarks.baseline`, the official ``mistralai`` 1.x SDK listing every
  page and getting every job) in a child process that measures its own ``process_time``.

Requests come from the simulator's counters, reset before each cycle; store round trips
(statements, BEGIN and COMMIT included, of the poll and of the delivery pass that ends
``once()``) from SQLAlchemy's events on watcher's engine. Cycles run back to
back: a steady-state cycle costs the same whatever the pause before it. The active jobs are
frozen (nothing changes: the steady state); their mix is ``ACTIVE``. watcher's steady cycle
is one ``created_after`` listing, one listing per status its active jobs are in, and one
detail per RUNNING job (checkpoints do not move ``modified_at``): 1 + 5 + 10 = 16 here.
Its hourly full resync (``resync_interval``) is measured too, and shown amortised over the
120 cycles of an hour at the default 30 s interval.

    .venv/bin/python -m benchmarks.poll_cost [--sizes 1000,10000,100000] [--cycles 10]
        [--baseline-cycles N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
from sqlalchemy import event

from benchmarks._report import table, verdict, write
from benchmarks._sim import simulator_process
from watcher.app import eventloop
from watcher.app.daemon import Watcher
from watcher.app.logging import configure
from watcher.config import Config, validate_config

API_KEY = "bench-key"
# 50 active jobs: most wait in the queue, a fifth train (each costs a detail per cycle with
# checkpoint tracking on), a few are being validated, parked or cancelled.
ACTIVE = {"QUEUED": 25, "VALIDATING": 8, "VALIDATED": 5, "RUNNING": 10, "CANCELLATION_REQUESTED": 2}
DEFAULT_INTERVAL = 30.0  # watcher's defaults, for the amortised resync figure
DEFAULT_RESYNC = 3600.0


def watcher_config(url: str, db: Path, **source: Any) -> Config:
    """watcher's defaults: only what it needs to reach the simulator and store its state."""
    return validate_config(
        {
            "sources": [
                {
                    "name": "ft",
                    "kind": "mistral-fine-tuning",
                    "base_url": url,
                    "api_key": API_KEY,
                    **source,
                }
            ],
            "state": {"url": f"sqlite:///{db}"},
            "sinks": [{"name": "console", "kind": "console"}],
        },
        env={},
    )


async def seed(admin: httpx.AsyncClient, terminal: int) -> float:
    """A fresh account: ``terminal`` SUCCESS jobs a week old, the ``ACTIVE`` mix an hour old."""
    started = time.perf_counter()
    (await admin.delete("/_sim/jobs")).raise_for_status()
    now = int(time.time())
    body = {"count": terminal, "status": "SUCCESS", "checkpoints": 3, "created_at": now - 7 * 86400}
    (await admin.post("/_sim/jobs", json=body)).raise_for_status()
    for status, count in ACTIVE.items():
        body = {
            "count": count,
            "status": status,
            "checkpoints": 3,
            "frozen": True,
            "created_at": now - 3600,
        }
        (await admin.post("/_sim/jobs", json=body)).raise_for_status()
    return time.perf_counter() - started


async def requests_since_reset(admin: httpx.AsyncClient) -> int:
    total: int = (await admin.get("/_sim/stats")).json()["requests"]["total"]
    return total


class RoundTrips:
    """Counts what watcher's store engine sends: statements, BEGIN and COMMIT."""

    def __init__(self, watcher: Watcher) -> None:
        self.count = 0
        engine = watcher.store.engine.sync_engine  # type: ignore[attr-defined]
        for name in ("before_cursor_execute", "begin", "commit"):
            event.listen(engine, name, self._one)

    def _one(self, *args: Any) -> None:
        self.count += 1


async def timed_once(watcher: Watcher, admin: httpx.AsyncClient) -> dict[str, float]:
    """One ``once()``: its requests, store round trips, CPU and wall time."""
    await admin.post("/_sim/stats/reset")
    trips = getattr(watcher, "_round_trips", None)
    if trips is None:
        trips = RoundTrips(watcher)
        watcher._round_trips = trips  # type: ignore[attr-defined]
    before = trips.count
    cpu, wall = time.process_time(), time.perf_counter()
    await watcher.once()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "requests": await requests_since_reset(admin),
        "store_round_trips": trips.count - before,
        "cpu_s": cpu,
        "wall_s": wall,
    }


async def measure_watcher(url: str, db: Path, cycles: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as admin:
        async with Watcher(watcher_config(url, db)) as watcher:
            first = await timed_once(watcher, admin)  # the silent baseline: a full listing
            await watcher.once()  # first steady cycle: warms caches and connections
            steady = [await timed_once(watcher, admin) for _ in range(cycles)]
        # A forced resync: the same state, a resync interval every cycle exceeds.
        async with Watcher(watcher_config(url, db, resync_interval="1ms")) as watcher:
            resync = await timed_once(watcher, admin)
    requests = [c["requests"] for c in steady]
    return {
        "requests": whole(statistics.median(requests)),
        "requests_min": min(requests),
        "requests_max": max(requests),
        "store_round_trips": whole(statistics.median(c["store_round_trips"] for c in steady)),
        "cpu_s": statistics.median(c["cpu_s"] for c in steady),
        "wall_s": statistics.median(c["wall_s"] for c in steady),
        "cycles": cycles,
        "first_poll": first,
        "resync": resync,
    }


def measure_baseline(url: str, cycles: int) -> dict[str, Any]:
    """The baseline in a child process; its per-cycle lines are echoed as they come."""
    command = [sys.executable, "-m", "benchmarks.baseline", "--url", url, "--api-key", API_KEY]
    proc = subprocess.Popen([*command, "--cycles", str(cycles)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for raw in proc.stdout:
        lines.append(json.loads(raw))
        print(f"    baseline cycle {raw.strip()}", flush=True)
    if proc.wait() != 0:
        raise RuntimeError(f"the baseline exited with {proc.returncode}")
    return {
        "requests": whole(statistics.median(line["requests"] for line in lines)),
        "cpu_s": statistics.median(line["cpu_s"] for line in lines),
        "wall_s": statistics.median(line["wall_s"] for line in lines),
        "cycles": len(lines),
        "per_cycle": lines,
    }


def whole(value: float) -> float:
    """A median of counts as an int when it is one (16, not 16.0)."""
    return int(value) if float(value).is_integer() else value


def baseline_cycles(terminal: int, override: int | None) -> int:
    """Fewer baseline cycles where one takes minutes (100,000 jobs: one cycle)."""
    if override is not None:
        return override
    return 3 if terminal <= 1_000 else 2 if terminal <= 10_000 else 1


async def measure(
    url: str, terminal: int, cycles: int, baseline_n: int, tmp: Path
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as admin:
        seeded = await seed(admin, terminal)
    print(f"{terminal:,} terminal + {sum(ACTIVE.values())} active jobs seeded in {seeded:.1f} s")
    ours = await measure_watcher(url, tmp / f"{terminal}.db", cycles)
    print(f"  watcher: {ours['requests']} requests, {ours['cpu_s'] * 1000:.1f} ms CPU per cycle")
    theirs = await anyio.to_thread.run_sync(measure_baseline, url, baseline_n)
    per_resync = DEFAULT_RESYNC / DEFAULT_INTERVAL
    return {
        "terminal_jobs": terminal,
        "active_jobs": sum(ACTIVE.values()),
        "watcher_requests": ours["requests"],
        "watcher_cpu_ms": round(ours["cpu_s"] * 1000, 2),
        "watcher_wall_ms": round(ours["wall_s"] * 1000, 1),
        "watcher_store_round_trips": ours["store_round_trips"],
        "baseline_requests": theirs["requests"],
        "baseline_cpu_s": round(theirs["cpu_s"], 2),
        "baseline_wall_s": round(theirs["wall_s"], 1),
        "requests_ratio": round(theirs["requests"] / ours["requests"], 1),
        "cpu_ratio": round(theirs["cpu_s"] / ours["cpu_s"], 1),
        "resync_requests": ours["resync"]["requests"],
        "resync_cpu_s": round(ours["resync"]["cpu_s"], 2),
        "resync_wall_s": round(ours["resync"]["wall_s"], 2),
        "amortised_requests": round(
            ours["requests"] + (ours["resync"]["requests"] - ours["requests"]) / per_resync, 1
        ),
        "first_poll_requests": ours["first_poll"]["requests"],
        "first_poll_wall_s": round(ours["first_poll"]["wall_s"], 2),
        "watcher_cycles": ours["cycles"],
        "watcher_requests_range": [ours["requests_min"], ours["requests_max"]],
        "baseline_cycles": theirs["cycles"],
        "baseline_per_cycle": theirs["per_cycle"],
    }


async def main(
    sizes: list[int], cycles: int, baseline_override: int | None
) -> list[dict[str, Any]]:
    configure("warning", "json")
    rows = []
    with simulator_process(API_KEY) as url, tempfile.TemporaryDirectory() as tmp:
        for terminal in sizes:
            n = baseline_cycles(terminal, baseline_override)
            if n == 1:
                print(f"  (the baseline is measured over ONE cycle at {terminal:,} terminal jobs)")
            rows.append(await measure(url, terminal, cycles, n, Path(tmp)))
    return rows


COLUMNS = {
    "terminal_jobs": "terminal jobs",
    "watcher_requests": "watcher req/cycle",
    "baseline_requests": "baseline req/cycle",
    "requests_ratio": "req ratio",
    "watcher_cpu_ms": "watcher CPU ms/cycle",
    "watcher_store_round_trips": "watcher store round trips/cycle",
    "baseline_cpu_s": "baseline CPU s/cycle",
    "cpu_ratio": "CPU ratio",
    "baseline_cycles": "baseline cycles measured",
    "resync_requests": "watcher resync req",
    "resync_wall_s": "watcher resync s",
    "amortised_requests": "watcher req/cycle incl. hourly resync",
}


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    requests = [row["watcher_requests"] for row in rows]
    if len(rows) > 1:
        spread = max(requests) - min(requests)
        found.append(
            verdict(
                "watcher requests/cycle flat across sizes (±1)",
                spread <= 2,
                f"{requests} over {[r['terminal_jobs'] for r in rows]} terminal jobs",
            )
        )
    at_10k = [row for row in rows if row["terminal_jobs"] == 10_000]
    for row in at_10k:
        found.append(
            verdict(
                "≥ 500x fewer requests at 10,000 terminal jobs",
                row["requests_ratio"] >= 500,
                f"{row['requests_ratio']}x "
                f"({row['baseline_requests']} vs {row['watcher_requests']})",
            )
        )
        found.append(
            verdict(
                "≥ 1,000x less CPU at 10,000 terminal jobs (same run)",
                row["cpu_ratio"] >= 1000,
                f"{row['cpu_ratio']}x ({row['baseline_cpu_s']} s vs {row['watcher_cpu_ms']} ms)",
            )
        )
        found.append(
            verdict(
                "≤ 15 ms CPU per steady cycle at 10,000 terminal jobs",
                row["watcher_cpu_ms"] <= 15,
                f"{row['watcher_cpu_ms']} ms, {row['watcher_store_round_trips']} store round "
                f"trips, {row['watcher_requests']} requests",
            )
        )
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="terminal jobs, comma-separated"
    )
    parser.add_argument("--cycles", type=int, default=10, help="watcher steady-state cycles")
    parser.add_argument(
        "--baseline-cycles", type=int, default=None, help="default: 3 / 2 / 1 by size"
    )
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    rows = eventloop.run(main, sizes, args.cycles, args.baseline_cycles)
    print()
    print(table(rows, COLUMNS))
    print()
    checks = targets(rows)
    write(
        "poll_cost",
        {
            "settings": {
                "active": ACTIVE,
                "watcher": "defaults: page_size 100, track_checkpoints on, resync_interval 1h",
                "baseline": "mistralai 1.x SDK, page_size 100, list every page + get every job",
                "watcher_cycles": args.cycles,
            },
            "rows": rows,
            "targets": checks,
        },
    )
