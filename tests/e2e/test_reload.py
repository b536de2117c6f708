"""SIGHUP: a good config replaces sinks and routes without losing pending deliveries; a bad
one is refused and the old config goes on; systemd hears RELOADING then READY."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import JSON_LOGS, WatcherProcess, config, source, webhook, write
from tests.e2e.test_health_metrics import NotifySocket
from tests.waiting import wait_until
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, RunningSimulator, simulator

pytestmark = pytest.mark.e2e


def config_for(tmp_path: Path, sim: RunningSimulator, hook: str, secret: str) -> dict[str, Any]:
    return config(
        tmp_path,
        sources=[source(sim, interval="300ms", jitter="30ms", track_checkpoints=False)],
        sinks=[webhook(hook, secret, timeout="2s")],
        delivery={"initial_backoff": "200ms", "max_backoff": "500ms"},
        logging=JSON_LOGS,
    )


async def test_reload_good_and_bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery pending for a dead receiver reaches the new URL after a reload; a broken
    config is refused while the daemon keeps delivering; RELOADING=1 precedes READY=1."""
    secret = generate_secret()
    old, new = Receiver(secret), Receiver(secret)
    old.set_down(True)
    notify = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", notify.name)
    path = tmp_path / "config.yaml"
    try:
        async with serve_app(old.app) as old_url, serve_app(new.app) as new_url, \
                simulator() as sim:  # fmt: skip
            job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
            write(path, config_for(tmp_path, sim, f"{old_url}/h", secret))
            watcher = WatcherProcess(path)
            watcher.start()
            try:
                await wait_until(lambda: notify.first("READY=1") >= 0, within=20, what="READY=1")
                # A second listing means the first (the silent baseline) is committed: the
                # change below is news, not part of the baseline.
                await wait_until(
                    lambda: sim.sim.stats()["requests"]["list"] >= 2, within=20, what="the baseline"
                )
                sim.sim.set_status(job.id, "RUNNING")
                await wait_until(
                    lambda: any(r.status == 503 for r in old.received),
                    within=20,
                    what="the delivery to fail against the dead receiver",
                )
                write(path, config_for(tmp_path, sim, f"{new_url}/h", secret))
                watcher.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                await wait_until(
                    lambda: any(r.type == "fine_tuning.job.running" for r in new.accepted()),
                    within=20,
                    what="the pending delivery at the new URL",
                )
                lines = notify.drain()
                reloading = notify.first("RELOADING=1")
                assert 0 <= reloading
                assert any(line == "READY=1" for line in lines[reloading:])

                path.write_text("sources: [\n")  # broken
                watcher.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                await wait_until(
                    lambda: "reload_refused" in watcher.output(),
                    within=20,
                    what="the refusal in the log",
                )
                sim.sim.set_status(job.id, "FAILED")
                await wait_until(
                    lambda: any(r.type == "fine_tuning.job.failed" for r in new.accepted()),
                    within=20,
                    what="delivery to go on with the old config",
                )
                assert watcher.alive()
                assert 0 == watcher.stop()
            finally:
                if watcher.alive():
                    watcher.kill()
        assert "STOPPING=1" in notify.drain()
    finally:
        notify.close()
    assert ["fine_tuning.job.running", "fine_tuning.job.failed"] == [r.type for r in new.accepted()]


@pytest.mark.parametrize(
    "breakage",
    ["port-in-use", "state-path-under-a-file", "database-out-of-reach"],
)
async def test_a_reload_that_cannot_be_applied_keeps_the_running_config(
    tmp_path: Path, breakage: str
) -> None:
    """A config that validates but cannot be applied (issue 15, item 9) is found out before
    the running daemon is torn down: it goes on polling and delivering, says why in the log,
    on /readyz and in watcher_config_last_reload_successful; a good reload after it works."""
    import socket

    import httpx2 as httpx

    from tests.e2e.harness import free_port

    secret = generate_secret()
    receiver = Receiver(secret)
    path = tmp_path / "config.yaml"
    port = free_port()
    blocker = socket.socket()
    async with serve_app(receiver.app) as hook, simulator() as sim:
        job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        good = config_for(tmp_path, sim, f"{hook}/h", secret)
        good["http"] = {"listen": f"127.0.0.1:{port}"}
        write(path, good)
        watcher = WatcherProcess(path)
        watcher.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

                async def ready() -> dict[str, Any]:
                    return dict((await http.get("/readyz")).json())

                await wait_until(
                    lambda: sim.sim.stats()["requests"]["list"] >= 2, within=20, what="baseline"
                )
                bad = dict(good)
                if breakage == "port-in-use":
                    other = free_port()
                    blocker.bind(("127.0.0.1", other))
                    blocker.listen(1)
                    bad["http"] = {"listen": f"127.0.0.1:{other}"}
                elif breakage == "state-path-under-a-file":
                    (tmp_path / "plain-file").write_text("x")
                    bad["state"] = {"url": f"sqlite:///{tmp_path}/plain-file/state.db"}
                else:
                    bad["state"] = {"url": "postgresql://watcher@127.0.0.1:1/watcher"}
                write(path, bad)
                watcher.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                await wait_until(
                    lambda: "reload_failed" in watcher.output(), within=40, what="reload_failed"
                )
                sim.sim.set_status(job.id, "RUNNING")  # the old config still polls and sends
                await wait_until(
                    lambda: any(r.type == "fine_tuning.job.running" for r in receiver.accepted()),
                    within=20,
                    what="delivery with the running config",
                )
                body = await ready()
                assert body["status"] == "ok" and "reload_failed" in body
                metrics = (await http.get("/metrics")).text
                assert "watcher_config_last_reload_successful 0.0" in metrics
                write(path, good)  # and a good reload after it is applied
                watcher.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                await wait_until(
                    lambda: watcher.output().count('"reloaded"') >= 1, within=30, what="reloaded"
                )
                await wait_until(lambda: _answers(port), within=20, what="the listener again")
                metrics = (await http.get("/metrics")).text
                assert "watcher_config_last_reload_successful 1.0" in metrics
                assert "reload_failed" not in await ready()
            assert watcher.alive()
            assert 0 == watcher.stop()
        finally:
            blocker.close()
            if watcher.alive():
                watcher.kill()


def _answers(port: int) -> bool:
    import httpx2 as httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
