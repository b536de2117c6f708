"""Detection latency: from the simulator applying a status change to the receiver getting the
signed webhook, with ``watcher run`` polling every 2 s (the default jitter, a tenth of it).

The simulator and the watcher run as their own processes; the receiver runs here. Changes are
applied at random moments through the simulator's admin API, and each is matched to its
webhook by (job id, status).

    .venv/bin/python -m benchmarks.latency [--changes N] [--interval 2s]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
import yaml

from benchmarks._sim import simulator_process
from watcher.httpserver import serve_app
from watcher.receiver import Receiver, generate_secret

PATH = ("VALIDATING", "VALIDATED", "RUNNING", "SUCCESS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(changes: int, interval: str) -> dict[str, float]:
    secret = generate_secret()
    receiver = Receiver(secret)
    rng = random.Random(4)
    jobs = max(1, changes // len(PATH))
    with simulator_process() as url, tempfile.TemporaryDirectory() as tmp:
        async with (
            serve_app(receiver.app) as receiver_url,
            httpx.AsyncClient(base_url=url, timeout=30) as admin,
        ):
            ids = []
            config = {
                "sources": [
                    {
                        "name": "ft",
                        "kind": "mistral-fine-tuning",
                        "base_url": url,
                        "api_key": "bench-key",
                        "interval": interval,
                    }
                ],
                "state": {"url": f"sqlite:///{tmp}/state.db"},
                "sinks": [
                    {
                        "name": "hooks",
                        "kind": "webhook",
                        "url": f"{receiver_url}/h",
                        "secret": secret,
                    }
                ],
                "routes": [{"match": {"type": ["fine_tuning.job.*"]}, "sinks": ["hooks"]}],
                "logging": {"level": "warning"},
            }
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump(config))
            proc = await anyio.open_process(
                [sys.executable, "-m", "watcher", "run", "-c", str(path)], stdout=None, stderr=None
            )
            try:
                await anyio.sleep(3)  # the baseline
                for _ in range(jobs):
                    body = {"status": "QUEUED", "frozen": True}
                    ids.append((await admin.post("/_sim/jobs", json=body)).json()["ids"][0])
                await anyio.sleep(3)  # their creation is reported; not measured
                applied: dict[tuple[str, str], float] = {}
                plan = [(job_id, status) for status in PATH for job_id in ids][:changes]
                rng.shuffle(plan)
                plan.sort(key=lambda step: PATH.index(step[1]))  # each job walks in order
                for job_id, status in plan:
                    await anyio.sleep(rng.uniform(0, 0.6))
                    applied[(job_id, status)] = time.time()
                    r = await admin.post(f"/_sim/jobs/{job_id}/status", json={"status": status})
                    r.raise_for_status()

                def got() -> dict[tuple[str, str], float]:
                    return {
                        (r.data["job"]["id"], r.data["status"]): r.received_at
                        for r in receiver.received
                        if r.accepted and isinstance(r.data, dict) and r.data.get("status")
                    }

                with anyio.move_on_after(30):
                    while not all(k in got() for k in applied):  # noqa: ASYNC110 (polling a peer)
                        await anyio.sleep(0.2)
            finally:
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(15):
                    await proc.wait()
    arrived = got()
    latencies = [arrived[k] - t for k, t in applied.items() if k in arrived]
    return {
        "interval": interval,
        "changes": len(applied),
        "received": len(latencies),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--interval", default="2s")
    args = parser.parse_args()
    row = anyio.run(main, args.changes, args.interval)
    print(" | ".join(row))
    print(" | ".join(str(v) for v in row.values()))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latency.json").write_text(json.dumps(row, indent=2))
