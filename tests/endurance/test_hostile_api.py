"""A hostile API against the real daemon (issue 15, items 2, 3, 7, 14): ``watcher run`` polls
a loopback API (tests/hostile_api.py) whose answers lie about ``total``, repeat pages, nest
one item thousands of levels deep, list an id twice with two contents and answer some
details with 200 MB (declared, chunked, or a gzip bomb). What the user must see: every other
job reported, a bounded number of requests per cycle, the paging problem said once in the
log and shown on ``/readyz``, and the daemon's peak memory far below the 256 Mi limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    JSON_LOGS,
    QUICK_DELIVERY,
    WatcherProcess,
    config,
    free_port,
    source,
    webhook,
    write,
)
from tests.hostile_api import KEY, HostileApi, jobs
from tests.waiting import wait_until
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret

from .rig import readyz

pytestmark = pytest.mark.endurance

HUGE = 200 * 1024 * 1024  # bytes of each hostile detail
PEAK_LIMIT_MIB = 200  # the daemon's VmHWM must stay under this (the pod's limit is 256 Mi)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@dataclass
class Run:
    api: HostileApi
    receiver: Receiver
    daemon: WatcherProcess
    http_port: int

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.daemon.config.parent.glob("watcher-*.err")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and (name is None or event.get("event") == name):
                    out.append(event)
        return out

    def reported(self) -> set[str]:
        return {
            r.data["job"]["id"]
            for r in self.receiver.received
            if r.accepted and isinstance(r.data, dict) and isinstance(r.data.get("job"), dict)
        }


@asynccontextmanager
async def daemon(api: HostileApi, home: Path, **options: Any) -> AsyncIterator[Run]:
    """``watcher run`` polling ``api`` every 500 ms (first sight reported), a webhook sink."""
    secret = generate_secret()
    receiver = Receiver(secret)
    http_port = free_port()
    async with serve_app(receiver.app) as receiver_url, serve_app(api.app()) as base_url:
        polled = source(
            name="ft",
            base_url=base_url,
            api_key=KEY,
            interval="500ms",
            jitter="50ms",
            timeout="5s",
            max_retries=0,
            on_start="notify",
            **options,
        )
        content = config(
            home,
            sources=[polled],
            sinks=[webhook(f"{receiver_url}/hooks", secret, timeout="5s")],
            http={"listen": f"127.0.0.1:{http_port}"},
            delivery=QUICK_DELIVERY,
            logging=JSON_LOGS,
        )
        process = WatcherProcess(write(home / "config.yaml", content))
        process.start()
        try:
            yield Run(api, receiver, process, http_port)
        finally:
            assert 0 == process.stop()


def listed_pages(api: HostileApi) -> list[int]:
    """The pages asked for, in order (a listing starts at page 0)."""
    return [int(page) for what, page in api.asked if what == "list"]


def detail_asks(api: HostileApi, job_id: str) -> int:
    return sum(1 for what, which in api.asked if what == "detail" and which == job_id)


async def test_hostile_answers_cost_only_their_jobs_and_little_memory(
    tmp_path: Path, figures: Callable[[dict[str, Any]], None]
) -> None:
    """12 jobs, pages of 5, ``total`` 3; one item 2,000 levels deep; one id listed twice
    with two contents; three details of 200 MB (Content-Length, chunked, gzip bomb). The 8
    other jobs are reported, each cycle asks for 3 pages, the paging problem is logged once
    and shown on a ready /readyz, each bad job is logged as skipped, and the daemon's peak
    memory stays under 200 MiB while it is served 200 MB answers cycle after cycle."""
    listed = jobs(12)
    other = {**listed[7], "status": "FAILED", "modified_at": listed[7]["modified_at"] + 1}
    bad = {"job-001", "job-004", "job-005", "job-009"}
    api = HostileApi(
        listed,
        total=lambda n: 3,
        deep={"job-004": 2000},
        conflicting={"job-007": other},
        huge={
            "job-001": (HUGE, "content-length"),
            "job-005": (HUGE, "chunked"),
            "job-009": (HUGE, "gzip-bomb"),
        },
    )
    async with daemon(api, tmp_path, page_size=5) as run:
        good = {j["id"] for j in listed} - bad
        await wait_until(
            lambda: good <= run.reported(),
            within=30,
            what="the good jobs reported",
            diagnose=lambda: (sorted(run.reported()), run.daemon.output()[-2000:]),
        )
        # Hostile details are asked again each cycle (their jobs stay unreported): a few
        # cycles of three 200 MB answers.
        await wait_until(
            lambda: min(detail_asks(api, j) for j in ("job-001", "job-005", "job-009")) >= 4,
            within=30,
            what="four rounds of hostile details",
        )
        peak = peak_rss_mib(run.daemon.proc.pid if run.daemon.proc else 0)
        status, body = await readyz(run.http_port)
        pages = listed_pages(api)
    figures({"peak RSS (VmHWM) MiB": round(peak, 1), "list requests per listing": 3})
    assert good == run.reported() - bad and not (run.reported() & bad)
    assert peak < PEAK_LIMIT_MIB, f"peak RSS {peak:.0f} MiB"
    # Every listing (this API ignores filters: each shows the 12 jobs) reads pages 0, 1, 2.
    assert {0, 1, 2} == set(pages) and pages.count(0) >= pages.count(2) >= pages.count(0) - 1
    assert 1 == len(run.events("api_paging_inconsistent"))
    assert 200 == status
    assert "paging is inconsistent: total 3 announced" in body["source_notices"]["ft"]
    skipped = {e["job_id"]: e["reason"] for e in run.events("malformed_job_skipped")}
    assert bad == set(skipped)
    assert "nested deeper than" in skipped["job-004"]
    assert "too large" in skipped["job-001"] and "Content-Length" in skipped["job-001"]
    assert "too large" in skipped["job-005"] and "too large" in skipped["job-009"]
    conflicts = run.events("conflicting_duplicate_ids")
    assert conflicts and {("ft", "job-007")} == {(e["source"], e["job_id"]) for e in conflicts}


@pytest.mark.parametrize(
    ("lie", "pages_per_listing"),
    [
        pytest.param({"total": lambda n: 100_000, "repeat_from": 1}, 2, id="huge total, repeat"),
        pytest.param({"total": lambda n: None, "repeat_from": 2}, 3, id="no total, repeat"),
    ],
)
async def test_a_looping_listing_costs_a_few_requests_per_cycle(
    tmp_path: Path,
    lie: dict[str, Callable[[int], int | None] | int],
    pages_per_listing: int,
    figures: Callable[[dict[str, Any]], None],
) -> None:
    """A listing that serves a page again for ever (with a huge total, or none) costs a
    page or two more than it holds, every cycle, not 100,000; said once, shown on /readyz."""
    api = HostileApi(jobs(30, "SUCCESS"), **lie)  # type: ignore[arg-type]
    async with daemon(api, tmp_path, page_size=10) as run:
        await wait_until(lambda: listed_pages(api).count(0) >= 6, within=30, what="six listings")
        status, body = await readyz(run.http_port)
        pages = listed_pages(api)
    figures({"list requests per listing": round(len(pages) / pages.count(0), 2)})
    assert set(range(pages_per_listing)) == set(pages), pages
    assert 1 == len(run.events("api_paging_inconsistent"))
    assert 200 == status
    assert "repeats the jobs of earlier pages" in body["source_notices"]["ft"]
