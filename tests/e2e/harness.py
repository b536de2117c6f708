"""Real peers on loopback for end-to-end tests: the simulator and the receiver served in the
test's event loop, and ``watcher`` itself as a separate process that can be SIGKILLed; the
one builder of their config files (:func:`config`, :func:`source`, :func:`webhook`), and a
clock the in-process daemon's deadlines read, which a test skips ahead instead of sleeping."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from watcher.app.daemon import Watcher
from watcher.devtools.receiver import Received, Receiver
from watcher.devtools.simulator import RunningSimulator

TERMINAL = {"SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"}


QUICK_SOURCE: dict[str, Any] = {
    "interval": "500ms",
    "jitter": "50ms",
    "timeout": "2s",
    "max_retries": 2,
}
QUICK_DELIVERY: dict[str, Any] = {"initial_backoff": "200ms", "max_backoff": "1s"}
JSON_LOGS: dict[str, Any] = {"level": "info", "format": "json"}
CONSOLE: dict[str, Any] = {"name": "console", "kind": "console"}


def source(
    sim: RunningSimulator | None = None,
    *,
    name: str = "ft",
    kind: str = "mistral-fine-tuning",
    **options: Any,
) -> dict[str, Any]:
    """One source of the config, pointed at ``sim`` unless ``options`` say where."""
    at = {"base_url": sim.base_url, "api_key": sim.api_key} if sim is not None else {}
    return {"name": name, "kind": kind, **at, **options}


def webhook(url: str, secret: str, *, name: str = "hooks", **options: Any) -> dict[str, Any]:
    """One webhook sink of the config."""
    return {"name": name, "kind": "webhook", "url": url, "secret": secret, **options}


def config(
    state: Path | str | None,
    *,
    sources: list[dict[str, Any]],
    sinks: list[dict[str, Any]],
    routes: list[dict[str, Any]] | None = None,
    rules: list[dict[str, Any]] | None = None,
    http: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """The content of a config file: ``state`` is the directory of a SQLite ``state.db`` or
    a database URL; ``routes``, ``rules``, ``http`` and any other section (``delivery``,
    ``logging``, ``digest``…) appear only when given."""
    out: dict[str, Any] = {"sources": sources}
    if state is not None:
        url = state if isinstance(state, str) else f"sqlite:///{state}/state.db"
        out["state"] = {"url": url}
    out["sinks"] = sinks
    optional = {"routes": routes, "rules": rules, "http": http, **sections}
    out.update({key: value for key, value in optional.items() if value is not None})
    return out


def write(path: Path, content: dict[str, Any]) -> Path:
    """``content`` as the YAML file ``path`` (its directory made if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content))
    return path


def write_config(
    path: Path,
    sim: RunningSimulator,
    receiver_url: str,
    secret: str,
    *,
    interval: str = "500ms",
    level: str = "info",
    http: dict[str, Any] | None = None,
    **options: Any,
) -> Path:
    """A ``watcher run`` process's config beside its state: one quick source, one webhook
    sink at ``receiver_url``/hooks, short backoffs, JSON logs."""
    quick = {**QUICK_SOURCE, "interval": interval, **options}
    return write(
        path,
        config(
            path.parent,
            sources=[source(sim, **quick)],
            sinks=[webhook(f"{receiver_url}/hooks", secret, timeout="5s")],
            http=http,
            delivery=QUICK_DELIVERY,
            logging={**JSON_LOGS, "level": level},
        ),
    )


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m watcher ARGS`` as a user runs it: its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def free_port() -> int:
    """A loopback TCP port nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SkippingClock:
    """The wall clock plus the time a test skipped: the daemon's deadlines (stalled,
    overrun, unreachable_after) see the time pass without the test sleeping through it.
    Skipping only moves forward, so whatever was stamped earlier stays in the past."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.time() + self.skipped

    def skip(self, seconds: float) -> None:
        self.skipped += seconds


def on_clock(watcher: Watcher, clock: SkippingClock) -> Watcher:
    """``watcher`` (entered) with its cycles, time rules and deliveries all reading ``clock``
    (one clock for the three, so a delivery committed at a skipped time is due at once)."""
    watcher.pipeline.clock = clock
    watcher.alerting.clock = clock
    watcher.dispatcher.clock = clock
    return watcher


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
