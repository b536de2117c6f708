"""Scale-out under SIGKILL: three ``watcher run`` replicas on one PostgreSQL database,
six simulated workspaces (one source each) playing a scripted scenario, one webhook
receiver. One replica at a time is SIGKILLed every 2-4 s and restarted a second later.

Prints, and writes to benchmarks/results/takeover.json: status changes applied and
delivered, lost, duplicates (same webhook-id / another id), the delivery latency of every
status change (from the change to its first accepted delivery: p50, p99, max), and the
takeover time after each kill: from the SIGKILL to the dead replica's sources being polled
again (the next listing request each source's simulator receives).

    .venv/bin/python -m benchmarks.takeover [--kills 20] [--jobs 12]

Needs PostgreSQL (``$WATCHER_TEST_POSTGRES_URL``, default
postgresql://postgres@127.0.0.1:5432/test): a database of its own is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import yaml

from benchmarks._report import table, verdict, write
from watcher.app import eventloop
from watcher.app.coordination.advisory import current_owners
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import RunningSimulator, random_scenario, simulator

ADMIN = os.environ.get("WATCHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REPLICAS = ("r1", "r2", "r3")
WORKSPACES = 6
LIMIT = 10.0  # the bound on takeover


class Replica:
    def __init__(self, name: str, config: Path) -> None:
        self.name, self.config = name, config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.config.parent / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run", "-c", str(self.config)],
            stdout=log,
            stderr=log,
            env={**os.environ, "WATCHER_REPLICA": self.name},
        )
        log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def changes(sims: dict[str, RunningSimulator]) -> Counter[tuple[str, str | None, str]]:
    out: Counter[tuple[str, str | None, str]] = Counter()
    for sim in sims.values():
        out.update((e["job_id"], e["previous_status"], e["status"]) for e in sim.sim.log)
    return out


def latencies(sims: dict[str, RunningSimulator], receiver: Receiver) -> list[float]:
    """Seconds from each status change (the simulator's clock, whole seconds) to its first
    accepted delivery: detection and delivery together, an upper bound of each."""
    applied: dict[tuple[str, str | None, str], float] = {}
    for sim in sims.values():
        for e in sim.sim.log:
            applied.setdefault((e["job_id"], e["previous_status"], e["status"]), float(e["at"]))
    first: dict[tuple[str, str | None, str], float] = {}
    for r in receiver.received:
        if r.accepted and isinstance(r.data, dict) and r.data.get("status"):
            key = (r.data["job"]["id"], r.data["previous_status"], r.data["status"])
            first[key] = min(first.get(key, r.received_at), r.received_at)
    return sorted(first[k] - applied[k] for k in first if k in applied)


def received(receiver: Receiver) -> dict[tuple[str, str | None, str], set[str]]:
    out: dict[tuple[str, str | None, str], set[str]] = {}
    for r in receiver.received:
        if r.accepted and isinstance(r.data, dict) and r.data.get("status") and r.id:
            key = (r.data["job"]["id"], r.data["previous_status"], r.data["status"])
            out.setdefault(key, set()).add(r.id)
    return out


async def run(url: str, workdir: Path, kills: int, jobs: int) -> dict[str, Any]:
    secret = generate_secret()
    receiver = Receiver(secret)
    async with AsyncExitStack() as stack:
        hook = await stack.enter_async_context(serve_app(receiver.app))
        sims = {
            f"ws-{n}": await stack.enter_async_context(simulator(speed=1.0))
            for n in range(WORKSPACES)
        }
        config = {
            "sources": [
                {
                    "name": name,
                    "kind": "mistral-fine-tuning",
                    "base_url": sim.base_url,
                    "api_key": sim.api_key,
                    "interval": "1s",
                    "timeout": "2s",
                    "max_retries": 2,
                }
                for name, sim in sims.items()
            ],
            "state": {"url": url},
            "sinks": [{"name": "hooks", "kind": "webhook", "url": f"{hook}/hooks",
                       "secret": secret, "timeout": "2s"}],
            "delivery": {"initial_backoff": "200ms", "max_backoff": "1s"},
            "logging": {"level": "info", "format": "json"},
        }  # fmt: skip
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        replicas = {name: Replica(name, path) for name in REPLICAS}
        stack.callback(lambda: [r.stop() for r in replicas.values()])
        for replica in replicas.values():
            replica.start()
        names = list(sims)

        def lists(source: str) -> int:
            return int(sims[source].sim.stats()["requests"]["list"])

        with anyio.fail_after(60):  # every source owned and polled twice (the baseline)
            while not (  # noqa: ASYNC110 (state of other processes: nothing to await)
                all((await current_owners(url, names)).values())
                and all(lists(s) >= 2 for s in names)
            ):
                await anyio.sleep(0.2)
        duration = kills * 4.0
        for n, sim in enumerate(sims.values()):
            sim.sim.schedule(
                random_scenario(
                    n, jobs, start_within=duration * 0.6, step_gap=(1.0, duration * 0.08)
                )
            )
        rng = random.Random(1)
        takeovers: list[float] = []
        for _ in range(kills):
            await anyio.sleep(rng.uniform(2.0, 4.0))
            owners = await current_owners(url, names)
            holding = [r for r in REPLICAS if r in owners.values()]
            victim = replicas[rng.choice(holding or list(REPLICAS))]
            orphans = [s for s, owner in owners.items() if owner == victim.name]
            before = {s: lists(s) for s in orphans}
            victim.kill()
            killed = time.monotonic()
            with anyio.fail_after(LIMIT * 3):
                waiting = set(orphans)
                while waiting:
                    for source in [s for s in waiting if lists(s) > before[s]]:
                        takeovers.append(time.monotonic() - killed)
                        waiting.discard(source)
                    await anyio.sleep(0.02)
            await anyio.sleep(rng.uniform(0.5, 1.5))
            victim.start()
        with anyio.fail_after(300):
            while any(sim.sim.pending() for sim in sims.values()) or any(  # noqa: ASYNC110
                k not in received(receiver) for k in changes(sims)
            ):
                await anyio.sleep(0.5)
        await anyio.sleep(2.0)  # late duplicates would arrive now
        wanted, got = changes(sims), received(receiver)
        accepted = Counter(r.id for r in receiver.received if r.accepted and r.id)
        delays = latencies(sims, receiver)
        return {
            "delivery_p50_s": statistics.median(delays) if delays else None,
            "delivery_p99_s": delays[int(0.99 * (len(delays) - 1))] if delays else None,
            "delivery_max_s": delays[-1] if delays else None,
            "replicas": len(REPLICAS),
            "sources": WORKSPACES,
            "kills": kills,
            "changes": sum(wanted.values()),
            "delivered": sum(1 for k in wanted if k in got),
            "lost": sum(1 for k in wanted if k not in got),
            "spurious": sum(1 for k in got if k not in wanted),
            "dup_same_id": sum(n - 1 for n in accepted.values() if n > 1),
            "dup_other_id": sum(len(ids) - 1 for ids in got.values()),
            "takeovers": len(takeovers),
            "takeover_p50_s": statistics.median(takeovers) if takeovers else None,
            "takeover_max_s": max(takeovers) if takeovers else None,
        }


async def main_async(kills: int, jobs: int) -> dict[str, Any]:
    admin = await asyncpg.connect(ADMIN, timeout=10)
    name = f"watcher_bench_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="watcher-takeover-") as tmp:
            return await run(f"{ADMIN.rsplit('/', 1)[0]}/{name}", Path(tmp), kills, jobs)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=12, help="jobs per workspace")
    args = parser.parse_args()
    figures = eventloop.run(main_async, args.kills, args.jobs)
    print(table([figures], {k: k for k in figures}))
    checks = [
        verdict("nothing lost", figures["lost"] == 0, f"{figures['lost']} lost"),
        verdict(
            "duplicates only with the same webhook-id",
            figures["dup_other_id"] == 0,
            f"{figures['dup_same_id']} with the same id, {figures['dup_other_id']} with another",
        ),
        verdict(
            f"every delivery within {LIMIT:g} s of its change, during the kill storm",
            (figures["delivery_max_s"] or 0) <= LIMIT,
            f"p50 {figures['delivery_p50_s']:.2f}s, p99 {figures['delivery_p99_s']:.2f}s, "
            f"max {figures['delivery_max_s']:.2f}s",
        ),
        verdict(
            f"takeover within {LIMIT:g} s",
            (figures["takeover_max_s"] or 0) <= LIMIT,
            f"max {figures['takeover_max_s']:.2f}s, median {figures['takeover_p50_s']:.2f}s",
        ),
    ]
    write("takeover", {"figures": figures, "targets": checks})


if __name__ == "__main__":
    main()
