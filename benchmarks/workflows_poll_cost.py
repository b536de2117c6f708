"""Workflows poll cost (issue 12): API requests per steady cycle of a ``mistral-workflows``
source with 100 and with 10,000 terminal executions in the history, beside a few running
ones. Terminal executions are never read again, so the two figures should be equal (±1).

Streams are off here (``stream: false``): this measures what polling costs.

    .venv/bin/python -m benchmarks.workflows_poll_cost
    .venv/bin/python -m benchmarks.workflows_poll_cost --histories 100 1000 --cycles 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from benchmarks._report import table, verdict, write
from watcher.app import eventloop
from watcher.app.daemon import Watcher
from watcher.config import validate_config
from watcher.devtools.simulator import simulator
from watcher.devtools.simulator.workflows import WorkflowSpec, WorkflowStep

RUNNING = 5


async def one(history: int, cycles: int) -> dict[str, Any]:
    async with simulator(speed=1.0) as sim:
        # The history started and ended before the new-executions listing's overlap.
        long_ago = time.time() - 7200
        for i in range(history):
            ending = WorkflowStep(action="complete" if i % 3 else "fail", after=1.0)
            spec = WorkflowSpec(workflow_name="done", steps=(ending,))
            sim.sim.create_execution(spec, at=long_ago + i * 0.1)
        for _ in range(RUNNING):
            sim.sim.create_execution(WorkflowSpec(workflow_name="live"))
        await anyio.sleep(0.5)  # the endings are applied
        with tempfile.TemporaryDirectory() as tmp:
            config = validate_config(
                {
                    "sources": [
                        {
                            "name": "wf",
                            "kind": "mistral-workflows",
                            "base_url": sim.base_url,
                            "api_key": sim.api_key,
                            "stream": False,
                            "page_size": 1000,
                        }
                    ],
                    "state": {"url": f"sqlite:///{Path(tmp)}/state.db"},
                    "sinks": [{"name": "console", "kind": "console"}],
                    "logging": {"level": "warning"},
                },
                env={},
            )
            async with Watcher(config) as watcher:
                await watcher.once()  # the baseline: the whole history is listed once
                counts = []
                cpu = []
                for _ in range(cycles):
                    before = sim.sim.stats()["requests"]["total"]
                    started = time.process_time()
                    await watcher.pipeline.poll("wf")
                    cpu.append(time.process_time() - started)
                    counts.append(sim.sim.stats()["requests"]["total"] - before)
    return {
        "history": history,
        "requests_per_cycle": max(counts),
        "cycles": cycles,
        "cpu_ms_median": round(1000 * sorted(cpu)[len(cpu) // 2], 1),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows = [await one(history, args.cycles) for history in args.histories]
    spread = max(r["requests_per_cycle"] for r in rows) - min(r["requests_per_cycle"] for r in rows)
    return {
        "rows": rows,
        "verdict": verdict(
            "requests per steady cycle equal (±1) whatever the history",
            spread <= 1,
            ", ".join(f"{r['history']}: {r['requests_per_cycle']}" for r in rows),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    figures = eventloop.run(measure, args)
    columns = {
        "history": "terminal executions",
        "requests_per_cycle": "requests / steady cycle",
        "cpu_ms_median": "watcher CPU / cycle (ms)",
    }
    print(table(figures["rows"], columns))
    print("written to", write("workflows_poll_cost", figures))


if __name__ == "__main__":
    main()
