"""The status page's app over a real SQLite store, through httpx's ASGI transport: what each
page shows, the headers, and who may press its buttons (the browser tests prove the same
through Chromium against the daemon)."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import pytest

from tests.factories import transition
from watcher.app.actions import Done
from watcher.app.web import StatusPage
from watcher.config import validate_config
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor, Snapshot
from watcher.stores.sql import SqlStore

TOKEN = "a-long-enough-token"
HOSTILE = "<script>alert(1)</script>"


@dataclass
class FakeActions:
    """Records what the page asked (the actions themselves have their own tests)."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def silence(
        self,
        matchers: Mapping[str, str],
        *,
        by: str,
        comment: str,
        until: float | None = None,
        resolved: tuple[str, str] | None = None,
    ) -> Done:
        self.calls.append(("silence", (dict(matchers), by, comment, until, resolved)))
        return Done(True, "silenced it", "s1")

    async def expire(self, silence_id: str, *, by: str) -> Done:
        self.calls.append(("expire", (silence_id, by)))
        return Done(True, f"silence {silence_id} expired", silence_id)

    async def acknowledge(self, job_id: str, *, by: str, source: str | None = None) -> Done:
        raise NotImplementedError

    async def cancel(self, source: str, job_id: str, *, by: str) -> Done:
        raise NotImplementedError


@dataclass
class Site:
    http: httpx.AsyncClient
    actions: FakeActions
    store: SqlStore

    async def token(self) -> str:
        """The CSRF cookie a first visit sets (the forms carry the same)."""
        await self.http.get("/")
        return self.http.cookies["watcher_csrf"]


def _config(auth: dict[str, Any] | None) -> Any:
    http: dict[str, Any] = {"listen": "127.0.0.1:9464"}
    if auth is not None:
        http["auth"] = auth
    raw = {
        "sources": [{"name": "ft", "kind": "mistral-fine-tuning", "api_key": "k" * 20}],
        "sinks": [{"name": "console", "kind": "console"}],
        "http": http,
    }
    return validate_config(raw, env={})


@pytest.fixture
async def site(store: SqlStore, request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    auth = getattr(request, "param", {"token": TOKEN})
    actions = FakeActions()
    page = StatusPage(_config(auth), store, actions, clock=lambda: 1_800_000_000.0)
    transport = httpx.ASGITransport(app=page.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://page.test") as http:
        yield Site(http, actions, store)


def job(job_id: str, status: str, **extra: Any) -> Snapshot:
    return Snapshot(
        source="ft",
        job_id=job_id,
        status=status,
        created_at=1_799_990_000,
        modified_at=1_799_999_000,
        status_since=1_799_999_000,
        terminal=status == "SUCCESS",
        job={"id": job_id, "status": status, **extra},
    )


async def _dead_letter(store: SqlStore) -> None:
    await store.enqueue([Routed(transition(1, "j1"), ["console"])], now=1.0)
    [due] = await store.pending(now=1.0, limit=5)
    await store.failed(due.seq, "console", now=2.0, error=f"HTTP 400 {HOSTILE}", retry_at=None)


async def test_every_page_sends_the_security_headers(site: Site) -> None:
    for path in ("/", "/deliveries", "/silences", "/jobs/ft/nope", "/static/page.js", "/nope"):
        answer = await site.http.get(path)
        assert "script-src 'self'" in answer.headers["content-security-policy"], path
        assert "unsafe-inline" not in answer.headers["content-security-policy"]
        assert "DENY" == answer.headers["x-frame-options"]
        assert "no-referrer" == answer.headers["referrer-policy"]
        assert "nosniff" == answer.headers["x-content-type-options"]
    assert 404 == (await site.http.get("/jobs/ft/nope")).status_code
    assert 404 == (await site.http.get("/static/../pages.py")).status_code


async def test_jobs_page_escapes_api_text_and_keeps_full_ids(site: Site) -> None:
    long_id = "ftjob-" + "0123456789abcdef" * 2
    curve = [[1, 2.5, 0.0], [2, 2.0, 1.9], [3, 1.5, 0.0]]
    running = job(long_id, "RUNNING", suffix=HOSTILE, loss_curve=curve)
    await site.store.commit("ft", Cursor(baseline_done=True), [running], [], now=5.0)
    body = (await site.http.get("/")).text
    assert HOSTILE not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert f'data-job-id="{long_id}"' in body and f'title="{long_id}"' in body
    assert "<svg" in body and ">step</text>" in body and ">loss</text>" in body
    assert "valid_loss" in body  # the one real validation point is drawn
    fragment = (await site.http.get("/", headers={"X-Fragment": "1"})).text
    assert "<html" not in fragment and long_id in fragment
    filtered = (await site.http.get("/", params={"status": "QUEUED"})).text
    assert long_id not in filtered


@pytest.mark.parametrize("site", [None], indirect=True)
async def test_without_auth_no_button_and_posts_are_forbidden(site: Site) -> None:
    await _dead_letter(site.store)
    page = (await site.http.get("/deliveries")).text
    assert "Retry" not in page and "read-only" in page
    assert HOSTILE not in page
    token = await site.token()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answer = await site.http.post(
        "/deliveries/retry", data={"transition_id": "t1", "csrf": token}, headers=bearer
    )
    assert 403 == answer.status_code
    assert 1 == len(await site.store.list_deliveries(state="dead", limit=5))


async def test_retry_with_the_token_and_the_forms_token(site: Site) -> None:
    await _dead_letter(site.store)
    assert "Retry" in (await site.http.get("/deliveries")).text
    token = await site.token()
    form = {"transition_id": "t1", "csrf": token}
    assert 401 == (await site.http.post("/deliveries/retry", data=form)).status_code
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    cross = {"Authorization": f"Basic {basic}", "Sec-Fetch-Site": "cross-site"}
    assert 403 == (await site.http.post("/deliveries/retry", data=form, headers=cross)).status_code
    bad = {"Authorization": f"Bearer {TOKEN}"}
    stale = {"transition_id": "t1", "csrf": "x" * 43}
    assert 403 == (await site.http.post("/deliveries/retry", data=stale, headers=bad)).status_code
    assert 1 == len(await site.store.list_deliveries(state="dead", limit=5))
    answer = await site.http.post("/deliveries/retry", data=form, headers=bad)
    assert 303 == answer.status_code
    assert "queued+again" in answer.headers["location"]
    assert [] == await site.store.list_deliveries(state="dead", limit=5)


@pytest.mark.parametrize("site", [{"username": "ops", "password": "p" * 12}], indirect=True)
async def test_silence_and_expire_go_through_the_actions(site: Site) -> None:
    token = await site.token()
    ops = ("ops", "p" * 12)
    form = {"csrf": token, "source": "ft", "job_id": "j/1", "span": "1h", "comment": "noisy"}
    answer = await site.http.post("/silences", data=form, auth=ops)
    assert 303 == answer.status_code
    assert answer.headers["location"].startswith("/jobs/ft/j%2F1?notice=")
    until = 1_800_000_000.0 + 3600
    assert ("silence", ({"source": "ft", "job_id": "j/1"}, "web:ops", "noisy", until, None)) == (
        site.actions.calls[0]
    )
    resolved = {**form, "span": "resolved"}
    await site.http.post("/silences", data=resolved, auth=ops)
    assert ("ft", "j/1") == site.actions.calls[1][1][4]
    unknown = {**form, "source": "other"}
    assert 400 == (await site.http.post("/silences", data=unknown, auth=ops)).status_code
    expire = await site.http.post("/silences/s1/expire", data={"csrf": token}, auth=ops)
    assert 303 == expire.status_code
    assert ("expire", ("s1", "web:ops")) == site.actions.calls[-1]
    wrong = await site.http.post("/silences/s1/expire", data={"csrf": token}, auth=("ops", "x"))
    assert 401 == wrong.status_code


async def test_every_followed_job_is_on_some_page(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past one page of followed jobs, links lead through the rest (the filters kept); each
    job is on exactly one page; a page past the end, or a page number that is not one, says
    so instead of failing."""
    monkeypatch.setattr("watcher.app.web.pages.FOLLOWED_LIMIT", 4)
    jobs = [job(f"run-{n:02}", "RUNNING") for n in range(10)]
    for n, one in enumerate(jobs):
        await site.store.commit("ft", Cursor(baseline_done=True), [one], [], now=float(n))
    await site.store.commit("ft", Cursor(), [job("queued-1", "QUEUED")], [], now=20.0)
    seen: list[str] = []
    link: str | None = "/?status=RUNNING"
    pages = 0
    while link is not None:
        body = (await site.http.get(link.replace("&amp;", "&"))).text
        pages += 1
        seen += re.findall(r'data-job-id="([^"]+)"', body)
        found = re.search(r'<a rel="next" href="([^"]+)"', body)
        link = found.group(1) if found else None
    assert 3 == pages
    assert sorted(one.job_id for one in jobs) == sorted(seen)
    assert "(9\u201310 of 10)" in body and "page 3 of 3" in body
    past = (await site.http.get("/", params={"status": "RUNNING", "page": "9"})).text
    assert "No job on page 9: there are 3 pages." in past
    assert 'href="/?status=RUNNING&amp;page=3"' in past  # back to the last page
    for nonsense in ("0", "-1", "x", "99999999999999999999", "\u0661"):
        answer = await site.http.get("/", params={"page": nonsense})
        assert 200 == answer.status_code, nonsense
    assert "queued-1" in (await site.http.get("/", params={"page": "0"})).text


async def test_a_notice_is_text(site: Site) -> None:
    body = (await site.http.get("/silences", params={"notice": HOSTILE})).text
    assert HOSTILE not in body and "&lt;script&gt;" in body


async def test_sources_show_requests_against_budget_and_jobs_their_expected_time(
    store: SqlStore,
) -> None:
    """The sources table says the API requests of the last minute against the source's
    budget; a running job with an expected duration says it, and overrun past the rule's
    factor."""
    raw = {
        "sources": [
            {"name": "ft", "kind": "mistral-fine-tuning", "api_key": "k" * 20,
             "max_requests_per_minute": 60}
        ],
        "sinks": [{"name": "console", "kind": "console"}],
        "rules": [{"kind": "overrun", "factor": 1.5}],
        "http": {"listen": "127.0.0.1:9464"},
    }  # fmt: skip
    now = 1_800_000_000.0
    late = job("late-1", "RUNNING", metadata={"expected_duration_seconds": 300})
    fine = job("fine-1", "RUNNING", metadata={"expected_duration_seconds": 7200})
    await store.commit("ft", Cursor(baseline_done=True), [late, fine], [], now=now)
    page = StatusPage(
        validate_config(raw, env={}), store, FakeActions(), clock=lambda: now,
        requests=lambda source: 17 if source == "ft" else 0,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=page.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://page.test") as http:
        body = (await http.get("/")).text
        one = await http.get("/jobs/ft/late-1")  # a job without suffix or model
    assert one.status_code == 200 and "late-1" in one.text
    assert '<td class="rate">17 / 60</td>' in body
    rows = {line for line in body.splitlines() if 'class="expected"' in line}
    assert any("overrun" in line for line in rows)  # 1,000 s into an expected 300 s
    assert any("expected 2h" in line and "overrun" not in line for line in rows)
