"""BASELINE, NOT PART OF WATCHER: the poller a user writes instead of running watcher.

A loop over the official ``mistralai`` 1.x SDK that, every cycle, lists every page of
``/v1/fine_tuning/jobs`` and gets every job, keeping the previous statuses in memory and
reporting what changed. It is what the benchmarks compare watcher against (issue 7), written
the plain way such a script is written: sequential, default page size, no filters.

Run in its own process by the benchmarks (so that the CPU it burns is measured as its own)::

    python -m benchmarks.baseline --url URL --api-key KEY --cycles N

prints one JSON line per cycle: ``{"cycle", "requests", "cpu_s", "wall_s", "jobs",
"changes"}``; ``requests`` comes from the simulator's counters (reset before each cycle).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field

import httpx2 as httpx
from mistralai import Mistral


@dataclass
class NaivePoller:
    """List every page, get every job, compare statuses with the previous cycle."""

    client: Mistral
    page_size: int = 100  # the SDK's default
    statuses: dict[str, str] = field(default_factory=dict)

    def cycle(self) -> list[tuple[str, str | None, str]]:
        """One cycle; returns ``(job_id, previous status, status)`` for each change."""
        ids: list[str] = []
        page = 0
        while True:
            listing = self.client.fine_tuning.jobs.list(page=page, page_size=self.page_size)
            ids.extend(job.id for job in listing.data or [])
            page += 1
            if page * self.page_size >= listing.total:
                break
        changes = []
        for job_id in ids:
            job = self.client.fine_tuning.jobs.get(job_id=job_id)
            # Events and checkpoints come with the detail: this is how the script would see
            # a new checkpoint, by comparing its count too.
            state = f"{job.status}/{len(job.checkpoints or [])}"
            previous = self.statuses.get(job_id)
            if previous != state:
                changes.append((job_id, previous, state))
                self.statuses[job_id] = state
        return changes


def run(url: str, api_key: str, cycles: int) -> None:
    """``cycles`` cycles against the simulator at ``url``, one JSON line each."""
    client = Mistral(api_key=api_key, server_url=url)
    poller = NaivePoller(client)
    with httpx.Client(base_url=url, timeout=60) as admin:
        for number in range(1, cycles + 1):
            admin.post("/_sim/stats/reset").raise_for_status()
            cpu, wall = time.process_time(), time.perf_counter()
            changes = poller.cycle()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            requests = admin.get("/_sim/stats").json()["requests"]["total"]
            line = {
                "cycle": number,
                "requests": requests,
                "cpu_s": round(cpu, 3),
                "wall_s": round(wall, 3),
                "jobs": len(poller.statuses),
                "changes": len(changes),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--cycles", type=int, default=1)
    args = parser.parse_args()
    run(args.url, args.api_key, args.cycles)
