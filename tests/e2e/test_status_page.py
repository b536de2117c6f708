"""The status page in a real browser (the system's Chromium driven by Playwright) against
the daemon and the simulator on loopback: jobs appear and change status without a reload, a
dead letter's Retry delivers it, a silence is added and expired, the buttons are guarded, API
text stays text, and ``chromium --dump-dom`` lists every followed job's full id."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from tests.e2e.browser import chromium, dump_dom, sandbox_flags
from tests.e2e.harness import QUICK_DELIVERY, config, free_port, source, webhook
from tests.waiting import wait_until
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import validate_config
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, RunningSimulator, simulator

pytestmark = pytest.mark.e2e

playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")

USER, PASSWORD = "ops", "correct-horse-battery"
HOSTILE = "<script>alert(1)</script>"


@dataclass
class Daemon:
    sim: RunningSimulator
    receiver: Receiver
    watcher: Watcher
    url: str


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """An in-process daemon polling the simulator every 200 ms, its page on loopback with
    basic auth, delivering to a webhook receiver."""
    chromium()  # skip early, before anything starts, when there is none
    secret = generate_secret()
    receiver = Receiver(secret)
    port = free_port()
    async with serve_app(receiver.app) as receiver_url, simulator() as sim:
        raw = config(
            tmp_path,
            sources=[source(sim, interval="200ms", jitter="20ms", timeout="2s", max_retries=0)],
            sinks=[webhook(f"{receiver_url}/hooks", secret)],
            http={"listen": f"127.0.0.1:{port}", "auth": {"username": USER, "password": PASSWORD}},
            delivery=QUICK_DELIVERY,
        )
        stop = anyio.Event()
        async with (
            Watcher(validate_config(raw, env={})) as watcher,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(lambda: watcher.serve(until=stop))
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as http:

                async def serving() -> bool:
                    try:
                        return (await http.get(f"{url}/healthz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_until(serving, within=10, what="the page to be served")

            async def baseline_done() -> bool:
                return (await watcher.store.load_cursor("ft")).baseline_done

            # Jobs the tests create from here on are news (the first poll is silent).
            await wait_until(baseline_done, within=10, what="the first poll")
            try:
                yield Daemon(sim, receiver, watcher, url)
            finally:
                stop.set()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=sandbox_flags()
        )
        try:
            yield launched
        finally:
            await launched.close()


async def test_jobs_appear_and_change_status_without_reload(daemon: Daemon, browser: Any) -> None:
    """A job the simulator runs is listed; its status change and a new job show up on the
    open page by themselves (the document is never reloaded)."""
    sim = daemon.sim.sim
    first = sim.create(JobSpec(status="RUNNING", frozen=True, checkpoints=3))
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(daemon.url + "/")
    row = page.locator(f'#followed tr[data-job-id="{first.id}"]')
    await row.wait_for(timeout=10_000)
    await page.evaluate("window.loadedOnce = true")
    assert "RUNNING" == await row.get_attribute("data-status")
    assert first.id == await row.locator("a.id").get_attribute("title")
    second = sim.create(JobSpec(status="QUEUED", frozen=True))
    sim.set_status(first.id, "SUCCESS")
    ended = page.locator(f'#recent tr[data-job-id="{first.id}"][data-status="SUCCESS"]')
    await ended.wait_for(timeout=10_000)
    await page.locator(f'#followed tr[data-job-id="{second.id}"]').wait_for(timeout=10_000)
    assert 0 == await page.locator(f'#followed tr[data-job-id="{first.id}"]').count()
    assert await page.evaluate("window.loadedOnce === true")  # the same document all along
    assert [] == dialogs


async def test_retry_of_a_dead_letter_delivers_it(daemon: Daemon, browser: Any) -> None:
    """A webhook refused with 400 is a dead letter on /deliveries; the signed-in operator's
    Retry puts it back and the receiver gets it."""
    sim = daemon.sim.sim
    job = sim.create(JobSpec(status="RUNNING", frozen=True))
    store = daemon.watcher.store

    def arrived(status: str) -> bool:
        return any(
            r.accepted and isinstance(r.data, dict) and r.data.get("status") == status
            for r in daemon.receiver.received
        )

    await wait_until(lambda: arrived("RUNNING"), within=10, what="the job's news to arrive")
    daemon.receiver.fail_next(1, status=400)
    sim.set_status(job.id, "FAILED")

    async def dead() -> bool:
        return bool(await store.list_deliveries(state="dead", limit=10))

    await wait_until(dead, within=10, what="a dead letter")
    context = await browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
    page = await context.new_page()
    await page.goto(daemon.url + "/deliveries")
    retry = page.locator("#dead button", has_text="Retry")
    await retry.click()
    await page.wait_for_url(lambda url: "/deliveries?notice=" in url)
    assert "queued again" in (await page.locator(".notice").inner_text())
    await wait_until(lambda: arrived("FAILED"), within=10, what="the retried webhook to arrive")
    await page.locator("#dead").wait_for(state="detached", timeout=10_000)
    await context.close()


async def test_posts_need_credentials_and_the_forms_token(daemon: Daemon) -> None:
    """Without credentials a POST is refused (401, with a basic-auth challenge); with them
    but without the form's CSRF token, or from another site, it is refused too (403)."""
    url = f"{daemon.url}/deliveries/retry"
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    async with httpx.AsyncClient() as http:
        bare = await http.post(url, data={"transition_id": "x"})
        assert 401 == bare.status_code
        assert bare.headers["www-authenticate"].startswith("Basic")
        wrong = await http.post(url, data={"transition_id": "x"}, auth=(USER, "nope-nope-nope"))
        assert 401 == wrong.status_code
        no_token = await http.post(
            url, data={"transition_id": "x"}, headers={"Authorization": auth}
        )
        assert 403 == no_token.status_code
        page = await http.get(f"{daemon.url}/deliveries")
        token = page.cookies["watcher_csrf"]
        cross = await http.post(
            url,
            data={"transition_id": "x", "csrf": token},
            headers={"Authorization": auth, "Origin": "https://evil.example"},
        )
        assert 403 == cross.status_code
        fine = await http.post(
            url, data={"transition_id": "x", "csrf": token}, headers={"Authorization": auth}
        )
        assert 303 == fine.status_code


async def test_hostile_suffix_is_shown_as_text(daemon: Daemon, browser: Any) -> None:
    """A job suffix of ``<script>alert(1)</script>`` is text on / and on the job's page: no
    script runs, no element is made of it; the headers forbid inline scripts and framing."""
    sim = daemon.sim.sim
    job = sim.create(JobSpec(status="RUNNING", frozen=True, suffix=HOSTILE))
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    answer = await page.goto(daemon.url + "/")
    assert answer is not None
    headers = await answer.all_headers()
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "DENY" == headers["x-frame-options"]
    assert "no-referrer" == headers["referrer-policy"]
    assert "nosniff" == headers["x-content-type-options"]
    row = page.locator(f'#followed tr[data-job-id="{job.id}"]')
    await row.wait_for(timeout=10_000)
    assert HOSTILE == await row.locator(".suffix").inner_text()
    await row.locator("a.id").click()
    await page.locator("dd.suffix").wait_for()
    assert HOSTILE == await page.locator("dd.suffix").inner_text()
    assert 0 == await page.locator("main script").count()
    assert [] == dialogs


async def test_dump_dom_lists_every_followed_job_in_full(daemon: Daemon) -> None:
    """The acceptance check: ``chromium --headless --dump-dom`` of / holds the full id of
    every job the simulator has in a non-terminal status."""
    sim = daemon.sim.sim
    for status in ("QUEUED", "VALIDATING", "RUNNING", "RUNNING"):
        sim.create(JobSpec(status=status, frozen=True))
    sim.create(JobSpec(status="SUCCESS"))
    active = {j.id for j in sim.jobs.values() if j.status not in {"SUCCESS", "FAILED", "CANCELLED"}}
    await wait_until(
        lambda: _all_followed(daemon, active), within=10, what="every job to be followed"
    )
    dom = await dump_dom(daemon.url + "/")
    assert [] == [job_id for job_id in active if f'data-job-id="{job_id}"' not in dom]
    assert [] == [job_id for job_id in active if f'title="{job_id}"' not in dom]


async def _all_followed(daemon: Daemon, ids: set[str]) -> bool:
    view = await daemon.watcher.store.overview(source=None, status=None, limit=50, recent=0)
    return ids <= {row.snapshot.job_id for row in view.followed}


async def test_silence_from_a_jobs_page_then_expire_it(daemon: Daemon, browser: Any) -> None:
    """The signed-in operator silences a job from its page (kept by the store through the
    actions, audited) and expires it on /silences."""
    job = daemon.sim.sim.create(JobSpec(status="RUNNING", frozen=True))
    context = await browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
    page = await context.new_page()
    await page.goto(daemon.url + "/")
    await page.locator(f'#followed tr[data-job-id="{job.id}"] a.id').click(timeout=10_000)
    await page.select_option("select[name=span]", "resolved")
    await page.fill("input[name=comment]", "known flaky")
    await page.click("text=Silence this job")
    await page.wait_for_url(lambda url: "notice=" in url)
    [silence] = await daemon.watcher.store.list_silences(include_ended=False)
    assert (("ft", job.id), "web:ops", "known flaky") == (
        silence.resolved,
        silence.created_by,
        silence.comment,
    )
    await page.goto(daemon.url + "/silences")
    await page.locator(f'tr[data-silence-id="{silence.id}"] button', has_text="Expire").click()
    await page.wait_for_url(lambda url: "expired" in url)
    assert [] == await daemon.watcher.store.list_silences(include_ended=False)
    await context.close()
