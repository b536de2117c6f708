"""Real peers on loopback for end-to-end tests: the simulator and the receiver served in the
test's event loop, and ``watcher`` itself as a separate process that can be SIGKILLed."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import yaml

from watcher.devtools.receiver import Received, Receiver
from watcher.devtools.simulator import RunningSimulator

TERMINAL = {"SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"}


def write_config(
    path: Path,
    sim: RunningSimulator,
    receiver_url: str,
    secret: str,
    *,
    interval: str = "500ms",
    level: str = "info",
    **source: Any,
) -> Path:
    config = {
        "sources": [
            {
                "name": "ft",
                "kind": "mistral-fine-tuning",
                "base_url": sim.base_url,
                "api_key": sim.api_key,
                "interval": interval,
                "jitter": "50ms",
                "timeout": "2s",
                "max_retries": 2,
                **source,
            }
        ],
        "state": {"url": f"sqlite:///{path.parent}/state.db"},
        "sinks": [
            {
                "name": "hooks",
                "kind": "webhook",
                "url": f"{receiver_url}/hooks",
                "secret": secret,
                "timeout": "5s",
            }
        ],
        "delivery": {"initial_backoff": "200ms", "max_backoff": "1s"},
        "logging": {"level": level, "format": "json"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


class WatcherProcess:
    """``python -m watcher run -c CONFIG`` with its output in files."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._files: list[Any] = []

    def start(self, command: str = "run") -> None:
        self.runs += 1
        out = self.config.parent / f"watcher-{self.runs}.out"
        err = self.config.parent / f"watcher-{self.runs}.err"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self._close_files()
        self._files = [out.open("wb"), err.open("wb")]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", command, "-c", str(self.config)],
            stdout=self._files[0],
            stderr=self._files[1],
            env=env,
        )

    def _close_files(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_files()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        self._close_files()
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.config.parent.glob("watcher-*.*"))
        )


def status_keys(
    log: list[dict[str, Any]], kind: str = "fine_tuning"
) -> Counter[tuple[str, str | None, str]]:
    """The status changes the simulator applied to jobs of ``kind``, as (job, previous,
    status)."""
    return Counter(
        (e["job_id"], e["previous_status"], e["status"])
        for e in log
        if e.get("kind", "fine_tuning") == kind
    )


def received_keys(received: list[Received]) -> dict[tuple[str, str | None, str], set[str]]:
    """Accepted status-change webhooks: (job, previous, status) -> the webhook-ids used."""
    out: dict[tuple[str, str | None, str], set[str]] = {}
    for r in received:
        if r.accepted and isinstance(r.data, dict) and r.data.get("status") and r.id:
            key = (r.data["job"]["id"], r.data["previous_status"], r.data["status"])
            out.setdefault(key, set()).add(r.id)
    return out


def all_arrived(sim: RunningSimulator, receiver: Receiver, kind: str = "fine_tuning") -> bool:
    wanted = status_keys(sim.sim.log, kind)
    got = received_keys(receiver.received)
    return all(key in got for key in wanted)


def settled(sim: RunningSimulator, expected_jobs: int) -> bool:
    jobs = sim.sim.jobs.values()
    return len(jobs) >= expected_jobs and all(j.status in TERMINAL for j in jobs)


async def wait_until(
    check: Callable[[], bool],
    within: float,
    what: str,
    diagnose: Callable[[], object] | None = None,
) -> None:
    """Until ``check()`` holds; the peers change state in other processes and tasks, so
    polling is the honest way to watch them."""
    with anyio.move_on_after(within):
        while not check():  # noqa: ASYNC110 (state of other processes: nothing to await)
            await anyio.sleep(0.1)
        return
    detail = f": {diagnose()}" if diagnose else ""
    raise AssertionError(f"timed out after {within}s waiting for {what}{detail}")


def progress(sim: RunningSimulator, receiver: Receiver) -> str:
    """What is still missing, for a failing wait."""
    wanted = status_keys(sim.sim.log)
    got = received_keys(receiver.received)
    statuses = sorted(j.status for j in sim.sim.jobs.values())
    return (
        f"jobs {statuses}; missing {[k for k in wanted if k not in got]}; "
        f"received {len(receiver.received)}"
    )


def assert_exactly_the_applied_changes(
    sim: RunningSimulator, receiver: Receiver, kind: str = "fine_tuning"
) -> None:
    """Every applied status change arrived, under one webhook-id; nothing else arrived."""
    wanted = status_keys(sim.sim.log, kind)
    got = received_keys(receiver.received)
    missing = [k for k in wanted if k not in got]
    spurious = [k for k in got if k not in wanted]
    two_ids = {k: ids for k, ids in got.items() if len(ids) != wanted.get(k, 1)}
    assert [] == missing
    assert [] == spurious
    assert {} == two_ids
    assert all(r.valid for r in receiver.received)


def assert_in_order_per_job(receiver: Receiver) -> None:
    """Per job, the accepted status changes chain: each previous_status is the one before."""
    chains: dict[str, list[tuple[str | None, str]]] = {}
    seen_ids: set[str] = set()
    for r in receiver.received:
        if not (r.accepted and r.id and isinstance(r.data, dict) and r.data.get("status")):
            continue
        if r.id in seen_ids:
            continue  # a re-delivery (same webhook-id) is not a new step
        seen_ids.add(r.id)
        chains.setdefault(r.data["job"]["id"], []).append(
            (r.data["previous_status"], r.data["status"])
        )
    for job_id, chain in chains.items():
        assert chain[0][0] is None, job_id
        for (_, before), (previous, _) in itertools.pairwise(chain):
            assert before == previous, (job_id, chain)
