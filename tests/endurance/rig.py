"""Real peers for the endurance scenarios: the simulator (counting the faults it serves) and
the receiver in the test's event loop, and a fleet of ``watcher run`` processes, each
SIGKILL-able, with their JSON logs read back."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.e2e.harness import (
    JSON_LOGS,
    QUICK_DELIVERY,
    WatcherProcess,
    config,
    source,
    webhook,
    write,
)
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import DEFAULT_API_KEY, RunningSimulator, Simulator, create_app
from watcher.devtools.simulator.engine import Fault, Route

from .scale import SPEED

# Events that mean the daemon met something it did not handle (a crash of a loop, caught
# so that the daemon goes on, but a bug all the same).
CRASH_EVENTS = frozenset(
    {
        "poll_crashed",
        "dispatch_pass_failed",
        "scheduled_action_failed",
        "sink_crashed",
        "housekeeping_failed",
    }
)


class CountingSimulator(Simulator):
    """The real simulator, counting each fault it serves by mode (the figures of a mix)."""

    def __init__(self, *, speed: float, seed: int | None) -> None:
        super().__init__(speed=speed, seed=seed)
        self.faults_served: Counter[str] = Counter()

    def take_fault(self, route: Route) -> Fault | None:
        fault = super().take_fault(route)
        if fault is not None:
            self.faults_served[fault.mode] += 1
        return fault


@dataclass
class Peers:
    sim: RunningSimulator
    counting: CountingSimulator
    receiver: Receiver
    receiver_url: str
    secret: str


@asynccontextmanager
async def peers(*, seed: int, speed: float = SPEED) -> AsyncIterator[Peers]:
    """A simulator and a receiver on loopback for the block."""
    secret = generate_secret()
    receiver = Receiver(secret)
    sim = CountingSimulator(speed=speed, seed=seed)
    async with (
        serve_app(receiver.app) as receiver_url,
        serve_app(create_app(sim, DEFAULT_API_KEY)) as base_url,
    ):
        running = RunningSimulator(base_url=base_url, api_key=DEFAULT_API_KEY, sim=sim)
        yield Peers(running, sim, receiver, receiver_url, secret)


def watcher_config(
    p: Peers,
    *,
    state_url: str,
    interval: float = 0.5,
    timeout: float = 2.0,
    max_retries: int = 2,
    delivery: dict[str, Any] | None = None,
    http_port: int | None = None,
) -> dict[str, Any]:
    """One fine-tuning source polled every ``interval`` real seconds (30 simulated seconds
    at the suite's speed: the default interval) and one webhook sink."""
    polled = source(
        p.sim,
        interval=f"{interval * 1000:g}ms",
        jitter=f"{interval * 100:g}ms",
        timeout=f"{timeout * 1000:g}ms",
        max_retries=max_retries,
    )
    return config(
        state_url,
        sources=[polled],
        sinks=[webhook(f"{p.receiver_url}/hooks", p.secret, timeout="5s")],
        http={"listen": f"127.0.0.1:{http_port}"} if http_port is not None else None,
        delivery=delivery or QUICK_DELIVERY,
        logging=JSON_LOGS,
    )


class Fleet:
    """``replicas`` watcher processes sharing one config (each in its own directory, for
    its logs), started, killed and stopped one by one."""

    def __init__(self, base: Path, content: dict[str, Any], replicas: int = 1) -> None:
        self.processes: list[WatcherProcess] = []
        for index in range(replicas):
            home = base / f"replica-{index}"
            if home.exists():
                shutil.rmtree(home)
            home.mkdir(parents=True)
            self.processes.append(WatcherProcess(write(home / "config.yaml", content)))
        self.kills = 0

    def start(self) -> None:
        for process in self.processes:
            if not process.alive():
                process.start()

    def kill(self, index: int) -> None:
        self.processes[index].kill()
        self.kills += 1

    def stop(self) -> list[int]:
        """SIGTERM each; their exit codes."""
        return [process.stop() for process in self.processes]

    def alive(self) -> bool:
        return all(process.alive() for process in self.processes)

    @property
    def starts(self) -> int:
        return sum(process.runs for process in self.processes)

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every run (a SIGKILL may leave a torn last line: skipped)."""
        out: list[dict[str, Any]] = []
        for process in self.processes:
            for path in sorted(process.config.parent.glob("watcher-*.err")):
                for line in path.read_text(errors="replace").splitlines():
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        out.append(event)
        return out

    def raw_output(self) -> str:
        return "".join(process.output() for process in self.processes)

    def crashes(self) -> list[dict[str, Any]]:
        """Log events of loops that met an exception they did not expect."""
        return [e for e in self.events() if e.get("event") in CRASH_EVENTS]

    def tracebacks(self) -> list[str]:
        """Tracebacks printed outside the JSON log (an uncaught exception kills the process)."""
        chunks = []
        for process in self.processes:
            for path in sorted(process.config.parent.glob("watcher-*.err")):
                text = path.read_text(errors="replace")
                chunks += [
                    line for line in text.splitlines() if line.startswith("Traceback (most recent")
                ]
        return chunks

    def baselined(self) -> bool:
        """A first poll was committed (the silent baseline is behind us)."""
        return any(e.get("event") == "poll_done" for e in self.events())


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """``GET /readyz``: the status code and body (0 and {} when nothing answers)."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(f"http://127.0.0.1:{port}/readyz")
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()
