"""Clients that hold the daemon's ``http.listen`` port with half-sent requests (issue 15,
item 8): with the file descriptor limit of a service (1,024) and 2,000 such connections, the
daemon keeps polling and delivering, raises no false ``source.unreachable``, holds a bounded
number of descriptors, closes the slow connections after the request deadline and answers
/healthz again."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest

from tests.e2e.harness import JSON_LOGS, WatcherProcess, config, free_port, source, webhook, write
from tests.waiting import wait_until
from watcher.app.httpserver import ACCEPT_BATCH, MAX_CONNECTIONS, REQUEST_TIMEOUT, serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, simulator

pytestmark = pytest.mark.e2e

SLOW = 2_000
PARTIAL = b"GET /metrics HTTP/1.1\r\nHost: watcher\r\nX-Slow: "  # never finished


def open_slow(port: int, count: int, within: float = 3.0) -> list[socket.socket]:
    """``count`` connections (opened at once, non-blocking) that each send half a request
    and then hold; those the server did not take within ``within`` seconds are dropped."""
    import selectors

    pending: dict[socket.socket, None] = {}
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        pending[s] = None
    held: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        for s in pending:
            selector.register(s, selectors.EVENT_WRITE)
        deadline = time.monotonic() + within
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                selector.unregister(s)
                del pending[s]
                try:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        s.send(PARTIAL)
                        held.append(s)
                        continue
                except OSError:
                    pass
                s.close()
    for s in pending:
        s.close()
    return held


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) not found")
async def test_a_slowloris_does_not_starve_the_daemon(tmp_path: Path) -> None:
    secret = generate_secret()
    receiver = Receiver(secret)
    port = free_port()
    async with serve_app(receiver.app) as hook, simulator() as sim:
        job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        raw = config(
            tmp_path,
            sources=[
                source(sim, interval="300ms", track_checkpoints=False, unreachable_after="2s")
            ],
            sinks=[webhook(f"{hook}/h", secret, timeout="2s")],
            http={"listen": f"127.0.0.1:{port}"},
            logging=JSON_LOGS,
        )
        path = write(tmp_path / "config.yaml", raw)
        watcher = WatcherProcess(path)
        watcher.start()
        assert watcher.proc is not None
        limit = ["prlimit", f"--pid={watcher.proc.pid}", "--nofile=1024:1024"]
        await anyio.run_process(limit)
        held: list[socket.socket] = []
        try:
            await wait_until(
                lambda: sim.sim.stats()["requests"]["list"] >= 2, within=20, what="the baseline"
            )
            before = sim.sim.stats()["requests"]["list"]
            held = await anyio.to_thread.run_sync(open_slow, port, SLOW)
            peak = 0
            for _ in range(20):  # the burst is being accepted: sample it
                peak = max(peak, descriptors(watcher.proc.pid))
                await anyio.sleep(0.05)
            # Held: the cap, a batch being accepted, the daemon's own: never the limit.
            assert peak < MAX_CONNECTIONS + ACCEPT_BATCH + 150
            sim.sim.set_status(job.id, "RUNNING")  # news while the port is flooded
            await wait_until(
                lambda: any(r.type == "fine_tuning.job.running" for r in receiver.accepted()),
                within=20,
                what="delivery during the flood",
            )
            assert sim.sim.stats()["requests"]["list"] > before + 3  # polling went on
            started = time.monotonic()
            # The slow ones are closed by the daemon after the request deadline.
            await anyio.sleep(REQUEST_TIMEOUT + 1)
            closed = sum(1 for s in held if _closed_by_peer(s))
            assert closed == len(held)
            async with httpx.AsyncClient() as http:
                answer = await http.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert answer.status_code == 200
            assert time.monotonic() - started < REQUEST_TIMEOUT + 10
            assert not [r for r in receiver.accepted() if r.type == "watcher.source.unreachable"]
            assert descriptors(watcher.proc.pid) < 100
            print(
                f"\nslowloris: {SLOW} connections, peak descriptors {peak}, cap {MAX_CONNECTIONS}"
            )
            assert 0 == watcher.stop()
        finally:
            for s in held:
                s.close()
            if watcher.alive():
                watcher.kill()


def _closed_by_peer(s: socket.socket) -> bool:
    s.settimeout(0.5)
    try:
        return s.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except OSError:
        return False
