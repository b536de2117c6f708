"""Polling cost per steady-state cycle versus the size of the history.

For 50, 1,000 and 10,000 terminal jobs beside 20 active ones (8 RUNNING, checkpoint
tracking on, the defaults), runs the watcher's cycle against the simulator (its own
process, over loopback HTTP) and prints the API requests and the watcher's CPU time per
steady-state cycle, read from the simulator's request counters and ``time.process_time``.

    .venv/bin/python -m benchmarks.poll_cost [--cycles N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from benchmarks._sim import simulator_process
from watcher.config import validate_config
from watcher.daemon import Watcher
from watcher.logging import configure

ACTIVE = ("RUNNING", "QUEUED", "VALIDATING", "RUNNING", "VALIDATED")


async def measure(url: str, terminal: int, cycles: int, state: Path) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as admin:
        await admin.delete("/_sim/jobs")
        left = terminal
        while left:
            count = min(left, 5000)
            body = {
                "count": count,
                "status": "SUCCESS",
                "checkpoints": 3,
                "created_at": int(time.time()) - 7 * 86400,
            }  # history is old
            (await admin.post("/_sim/jobs", json=body)).raise_for_status()
            left -= count
        for n in range(20):
            body = {"status": ACTIVE[n % len(ACTIVE)], "frozen": True}
            (await admin.post("/_sim/jobs", json=body)).raise_for_status()
        config = validate_config(
            {
                "sources": [
                    {
                        "name": "ft",
                        "kind": "mistral-fine-tuning",
                        "base_url": url,
                        "api_key": "bench-key",
                    }
                ],
                "state": {"url": f"sqlite:///{state}/{terminal}.db"},
                "sinks": [{"name": "console", "kind": "console"}],
            },
            env={},
        )
        async with Watcher(config) as watcher:
            started = time.perf_counter()
            await watcher.once()  # baseline: the one full listing
            baseline_s = time.perf_counter() - started
            await watcher.once()
            requests, cpu, wall = [], [], []
            for _ in range(cycles):
                await admin.post("/_sim/stats/reset")
                c0, w0 = time.process_time(), time.perf_counter()
                await watcher.once()
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
                requests.append((await admin.get("/_sim/stats")).json()["requests"]["total"])
    return {
        "terminal_jobs": terminal,
        "active_jobs": 20,
        "requests_per_cycle": statistics.median(requests),
        "cpu_ms_per_cycle": round(statistics.median(cpu) * 1000, 2),
        "wall_ms_per_cycle": round(statistics.median(wall) * 1000, 2),
        "baseline_full_listing_s": round(baseline_s, 2),
    }


async def main(cycles: int) -> list[dict[str, float]]:
    configure("warning", "json")
    rows = []
    with simulator_process() as url, tempfile.TemporaryDirectory() as state:
        for terminal in (50, 1_000, 10_000):
            rows.append(await measure(url, terminal, cycles, Path(state)))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    rows = anyio.run(main, args.cycles)
    header = (
        "terminal",
        "active",
        "requests/cycle",
        "CPU ms/cycle",
        "wall ms/cycle",
        "first full listing s",
    )
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(v) for v in row.values()))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "poll_cost.json").write_text(json.dumps(rows, indent=2))
