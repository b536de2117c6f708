"""``watcher run`` as systemd and Prometheus see it: sd_notify messages on a socket the test
owns, ``/healthz``, ``/readyz`` and ``/metrics`` on loopback, against the simulator."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import WatcherProcess, free_port, write_config
from tests.waiting import wait_until
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import Fault, JobSpec, RunningSimulator, simulator

pytestmark = pytest.mark.e2e


class NotifySocket:
    """A datagram socket in the abstract namespace standing in for systemd's."""

    def __init__(self) -> None:
        self.name = f"@watcher-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.setblocking(False)
        self.lines: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                message = self.sock.recv(65536)
            except BlockingIOError:
                return self.lines
            self.lines.extend(message.decode().split("\n"))

    def first(self, prefix: str) -> int:
        """Index of the first line starting with ``prefix`` (-1: none yet)."""
        return next((i for i, line in enumerate(self.drain()) if line.startswith(prefix)), -1)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Daemon:
    sim: RunningSimulator
    watcher: WatcherProcess
    notify: NotifySocket
    url: str
    http: httpx.AsyncClient

    async def metric(self, name: str, **labels: str) -> float:
        """The value of the sample ``name`` with ``labels`` (0 when absent)."""
        text = (await self.http.get(f"{self.url}/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return float(sample.value)
        return 0.0

    async def probe(self, path: str) -> tuple[int, Any]:
        answer = await self.http.get(f"{self.url}{path}")
        return answer.status_code, answer.json()


# The daemon is another process: each look may be an HTTP scrape, ten a second is plenty.
PATIENCE: dict[str, Any] = {"within": 15, "every": 0.1}


@pytest.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    secret = generate_secret()
    receiver = Receiver(secret)
    notify = NotifySocket()
    port = free_port()
    monkeypatch.setenv("NOTIFY_SOCKET", notify.name)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    async with (
        serve_app(receiver.app) as receiver_url,
        simulator() as sim,
        httpx.AsyncClient(timeout=5) as http,
    ):
        path = write_config(
            tmp_path / "config.yaml",
            sim,
            receiver_url,
            secret,
            interval="300ms",
            timeout="1s",
            max_retries=0,
            http={"listen": f"127.0.0.1:{port}"},
        )
        watcher = WatcherProcess(path)
        try:
            yield Daemon(sim, watcher, notify, f"http://127.0.0.1:{port}", http)
        finally:
            if watcher.alive():
                watcher.stop()
            notify.close()


async def test_notify_sequence_and_counters_follow_the_jobs(daemon: Daemon) -> None:
    """systemd hears READY=1, STATUS=, WATCHDOG=1 and, after SIGTERM, STOPPING=1, in that
    order, while the poll, transition and delivery counters move with the simulator's jobs."""
    sim = daemon.sim.sim
    job = sim.create(JobSpec(status="RUNNING", frozen=True))
    other = sim.create(JobSpec(status="RUNNING", frozen=True))
    daemon.watcher.start()

    async def ready_sent() -> bool:
        return daemon.notify.first("READY=1") >= 0

    await wait_until(ready_sent, what="READY=1", **PATIENCE)

    async def polled() -> bool:
        return await daemon.metric("watcher_polls_total", source="ft", outcome="ok") >= 2

    await wait_until(polled, what="two good polls", **PATIENCE)
    assert 0 == await daemon.metric("watcher_transitions_total")  # the baseline is silent

    async def tracked() -> bool:  # the store's gauges are read every second
        return await daemon.metric("watcher_jobs", source="ft", status="RUNNING") == 2

    await wait_until(tracked, what="the jobs gauge to show the baseline", **PATIENCE)

    sim.set_status(job.id, "FAILED")
    sim.set_status(other.id, "PAUSED")  # undocumented: a bounded label, not a new one

    async def counted() -> bool:
        failed = await daemon.metric("watcher_transitions_total", type="fine_tuning.job.failed")
        paused = await daemon.metric("watcher_transitions_total", type="fine_tuning.job.other")
        delivered = await daemon.metric(
            "watcher_deliveries_total", sink="hooks", outcome="delivered"
        )
        return (failed, paused, delivered) == (1, 1, 2)

    await wait_until(counted, what="the failed and paused transitions, delivered", **PATIENCE)

    async def gauged() -> bool:
        return await daemon.metric("watcher_jobs", source="ft", status="other") == 1

    await wait_until(
        gauged, what="the jobs gauge to show the undocumented status as other", **PATIENCE
    )
    assert 1 == await daemon.metric("watcher_jobs", source="ft", status="FAILED")
    assert 2 == await daemon.metric("watcher_delivery_attempts_total", sink="hooks", result="ok")
    assert 0 < await daemon.metric("watcher_api_requests_total", route="list", code="200")
    assert 1 == await daemon.metric("watcher_build_info")
    assert 0 < await daemon.metric("watcher_last_successful_poll_timestamp_seconds", source="ft")

    async def petted() -> bool:
        return daemon.notify.first("WATCHDOG=1") >= 0

    await wait_until(petted, what="WATCHDOG=1", **PATIENCE)
    assert 0 == daemon.watcher.stop()
    lines = daemon.notify.drain()
    firsts = [daemon.notify.first(p) for p in ("READY=1", "STATUS=", "WATCHDOG=1", "STOPPING=1")]
    assert sorted(firsts) == firsts
    assert -1 not in firsts
    after = lines[firsts[3] :]
    assert [] == [line for line in after if not line.startswith(("STOPPING=1", "STATUS="))]
    assert "READY=1" == lines[0]


async def test_readyz_follows_the_source_and_healthz_the_loop(daemon: Daemon) -> None:
    """/readyz is 200, then 503 naming the source while the API answers 503 to every poll,
    then 200 again; /healthz stays 200 throughout: a failing API is no reason to restart."""
    daemon.sim.sim.create(JobSpec(status="RUNNING", frozen=True))
    daemon.watcher.start()

    async def answers(path: str, code: int) -> bool:
        try:
            return code == (await daemon.probe(path))[0]
        except httpx.TransportError:
            return False  # not listening yet

    await wait_until(lambda: answers("/readyz", 200), what="ready", **PATIENCE)
    status, body = await daemon.probe("/healthz")
    assert (200, "ok") == (status, body["status"])

    daemon.sim.sim.add_fault(Fault(mode="503", count=None, route="all"))
    await wait_until(
        lambda: answers("/readyz", 503), what="not ready while the API fails", **PATIENCE
    )
    status, body = await daemon.probe("/readyz")
    assert (503, ["source:ft"]) == (status, body["failed"])
    assert body["checks"]["source:ft"].startswith("last successful poll")
    assert {"config": "ok", "store": "ok"} == {k: body["checks"][k] for k in ("config", "store")}

    async def failed_thrice() -> bool:
        return await daemon.metric("watcher_polls_total", source="ft", outcome="error") >= 3

    await wait_until(failed_thrice, what="three failed polls counted", **PATIENCE)
    assert 0 < await daemon.metric("watcher_api_requests_total", code="503")
    assert 200 == (await daemon.probe("/healthz"))[0]

    daemon.sim.sim.faults.clear()
    await wait_until(
        lambda: answers("/readyz", 200), what="ready again once the API answers", **PATIENCE
    )
    assert 200 == (await daemon.probe("/healthz"))[0]
    assert 0 == daemon.watcher.stop()


async def test_a_taken_port_fails_the_start_clearly(daemon: Daemon) -> None:
    """With http.listen already in use, the daemon exits 1 at start, says which address and
    why, and never tells systemd it is ready."""
    host, port = daemon.url.removeprefix("http://").split(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        daemon.watcher.start()

        async def exited() -> bool:
            return not daemon.watcher.alive()

        await wait_until(exited, what="the daemon to exit", **PATIENCE)
    assert 1 == daemon.watcher.stop()
    output = daemon.watcher.output()
    assert "http_listen_failed" in output
    assert f"127.0.0.1:{port}" in output
    assert "in use" in output
    assert -1 == daemon.notify.first("READY=1")
