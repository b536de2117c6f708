"""``make screenshots``: PNGs of the status page's main pages for the README.

The daemon, the simulator and a webhook receiver run here on loopback; a few jobs train
(loss curves), one batch job runs, one job's webhook is refused (a dead letter) and one job
is silenced; then the system's Chromium (Playwright, ``executable_path``) takes ``/``, a
job's page, ``/deliveries`` and ``/silences``.

    .venv/bin/python -m tests.e2e.screenshots docs/screenshots
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
from playwright.async_api import async_playwright

from tests.e2e.browser import CANDIDATES, sandbox_flags
from tests.e2e.harness import QUICK_DELIVERY, config, free_port, source, webhook
from tests.waiting import wait_until
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.app.logging import configure
from watcher.config import validate_config
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, simulator

USER, PASSWORD = "ops", "screenshots-only"
WIDTH, HEIGHT = 1280, 860


def chromium_path() -> str:
    for name in (os.environ.get("WATCHER_CHROMIUM", ""), *CANDIDATES):
        found = shutil.which(name) if name else None
        if found:
            return found
    raise SystemExit("no Chromium: apt-get install chromium (or set WATCHER_CHROMIUM)")


async def shoot(out: Path) -> list[Path]:
    configure("warning", "json")
    secret = generate_secret()
    receiver = Receiver(secret)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        async with serve_app(receiver.app) as hooks, simulator() as sim:
            raw = config(
                Path(tmp),
                sources=[source(sim, interval="300ms", jitter="20ms", timeout="2s")],
                sinks=[webhook(f"{hooks}/hooks", secret)],
                http={
                    "listen": f"127.0.0.1:{port}",
                    "auth": {"username": USER, "password": PASSWORD},
                },
                delivery=QUICK_DELIVERY,
            )
            jobs = sim.sim
            stop = anyio.Event()
            async with (
                Watcher(validate_config(raw, env={})) as watcher,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(lambda: watcher.serve(until=stop))
                url = f"http://127.0.0.1:{port}"

                async def baseline_done() -> bool:
                    return (await watcher.store.load_cursor("ft")).baseline_done

                await wait_until(baseline_done, within=15)
                training = [
                    jobs.create(JobSpec(status="RUNNING", frozen=True, checkpoints=n, suffix=name))
                    for n, name in ((8, "support-bot"), (5, "summariser"), (12, "sql-helper"))
                ]
                jobs.create(JobSpec(status="QUEUED", frozen=True, suffix="nightly"))
                jobs.create(JobSpec(status="VALIDATING", frozen=True, suffix="legal-qa"))
                doomed = jobs.create(JobSpec(status="RUNNING", frozen=True, suffix="doomed"))
                jobs.create(JobSpec(status="SUCCESS", suffix="done-yesterday"))

                def arrived(job_id: str, status: str) -> bool:
                    return any(
                        r.accepted
                        and isinstance(r.data, dict)
                        and r.data.get("status") == status
                        and r.data["job"]["id"] == job_id
                        for r in receiver.received
                    )

                async def quiet() -> bool:
                    pending = await watcher.store.list_deliveries(state="pending", limit=1)
                    return arrived(doomed.id, "RUNNING") and not pending

                await wait_until(quiet, within=15)  # then the next webhook is the doomed one's
                receiver.fail_next(1, status=400)
                jobs.set_status(doomed.id, "FAILED")

                async def dead() -> bool:
                    return bool(await watcher.store.list_deliveries(state="dead", limit=1))

                await wait_until(dead, within=15)
                shots = await _pages(url, training[0].id, out)
                stop.set()
    return shots


async def _pages(url: str, job_id: str, out: Path) -> list[Path]:
    shots = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=sandbox_flags()
        )
        context = await browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT},
            http_credentials={"username": USER, "password": PASSWORD},
        )
        page = await context.new_page()
        await page.goto(f"{url}/login")  # signed in: the buttons show
        job_page = f"/jobs/ft/{job_id}"
        await page.goto(url + job_page)
        await page.select_option("select[name=span]", "1h")
        await page.fill("input[name=comment]", "known flaky dataset")
        await page.click("text=Silence this job")
        await page.wait_for_url(lambda u: "notice=" in u)
        for name, path in (
            ("jobs", "/"),
            ("job", job_page),
            ("deliveries", "/deliveries"),
            ("silences", "/silences"),
        ):
            await page.goto(url + path)
            target = out / f"{name}.png"
            await page.screenshot(path=str(target), full_page=True)
            shots.append(target)
        await browser.close()
    return shots


if __name__ == "__main__":
    where = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    where.mkdir(parents=True, exist_ok=True)
    for shot in anyio.run(shoot, where):
        print(shot)
