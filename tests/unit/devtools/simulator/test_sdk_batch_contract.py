"""The current official SDK (mistralai 3.7.0) against the simulator's batch jobs.

If the SDK parses every list page and every batch job the simulator serves, the simulator
speaks the real API's batch shapes. The venv pins mistralai 1.12.4 for the fine-tuning
contract, so 3.7.0 lives in ``.sdk3`` (``make sdk3``) and runs in a child process while the
simulator keeps serving in this one.

The child runs with ``-S``: 3.7.0's ``mistralai`` is a namespace package, and a regular
package of the same name anywhere on ``sys.path`` (the venv's 1.12.4) would win the import
whatever the order. The script checks where ``mistralai`` and its dependencies came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
import pytest

from tests import REPO
from watcher.devtools.simulator import (
    BATCH_STATUSES,
    BatchSpec,
    RunningSimulator,
    Simulator,
    random_batch_scenario,
    simulator,
)

SDK_VERSION = "3.7.0"
# `make sdk3` installs it for the interpreter of the venv (WATCHER_SDK3 names the directory
# when several interpreters are tested: its compiled parts are per interpreter).
SDK3 = REPO / os.environ.get("WATCHER_SDK3", ".sdk3")
KEY = "contract-key"
T0 = 1_800_000_000.0
OLD = 1_700_000_000
PAGE_SIZE = 7

# argv: base URL, API key, the .sdk3 directory. Prints one JSON object.
SCRIPT = r"""
import importlib.metadata
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

base_url, api_key, sdk3 = sys.argv[1:4]
sys.path[:] = [sdk3, *(p for p in sys.path if p and p != sdk3)]

import httpx2
import mistralai.client
import pydantic
from mistralai.client import Mistral, errors, models

root = Path(sdk3).resolve()
modules = {"mistralai": mistralai.client, "pydantic": pydantic, "httpx2": httpx2}
origins = {name: str(Path(module.__file__).resolve()) for name, module in modules.items()}
report = {
    "version": importlib.metadata.version("mistralai"),
    "module_version": mistralai.client._version.__version__,
    "foreign": sorted(n for n, f in origins.items() if not Path(f).is_relative_to(root)),
    "site_packages": [p for p in sys.path if "site-packages" in p],
}
if report["version"] != "3.7.0" or report["foreign"] or report["site_packages"]:
    print(json.dumps(report))
    sys.exit(0)

client = Mistral(api_key=api_key, server_url=base_url, timeout_ms=10_000)
jobs = client.batch.jobs


def list_all(**filters):
    # Pages until (page + 1) * page_size >= total; every page must agree on the total.
    items, totals, page = [], set(), 0
    while True:
        answer = jobs.list(page=page, page_size=7, **filters)
        assert isinstance(answer, models.ListBatchJobsResponse), type(answer)
        totals.add(answer.total)
        for job in answer.data or []:
            assert isinstance(job, models.BatchJob), type(job)
            items.append(job)
        page += 1
        if page * 7 >= answer.total:
            break
    assert len(totals) == 1, totals
    return totals.pop(), items


total, listed = list_all()
report.update(
    total=total,
    listed=len(listed),
    ids=sorted(job.id for job in listed),
    statuses=sorted({str(job.status) for job in listed}),
)
details = []
for job in listed:
    detail = jobs.get(job_id=job.id, inline=True)
    assert isinstance(detail, models.BatchJob)
    assert detail.completed_requests == detail.succeeded_requests + detail.failed_requests
    assert all(isinstance(error, models.BatchError) for error in detail.errors)
    details.append(detail)
report["details"] = len(details)
report["with_errors"] = sum(1 for d in details if d.errors)
report["with_metadata"] = sum(1 for d in details if d.metadata)
report["null_model"] = sum(1 for d in details if d.model is None)

known = ["QUEUED", "RUNNING", "SUCCESS", "FAILED", "TIMEOUT_EXCEEDED",
         "CANCELLATION_REQUESTED", "CANCELLED"]
by_status = {}
for status in known:
    count, items = list_all(status=[status])
    assert {str(job.status) for job in items} <= {status}, status
    by_status[status] = [count, len(items)]
report["by_status"] = by_status
count, items = list_all(status=known, order_by="created")
keys = [(job.created_at, job.id) for job in items]
report["all_known"] = [count, len(items), keys == sorted(keys)]
count, _ = list_all(metadata={"team": "ml", "run": "7"}, created_by_me=False)
report["metadata_filter_total"] = count
after = datetime.fromtimestamp(1_700_000_001, UTC)
count, _ = list_all(created_after=after)
report["created_after_total"] = count

running = next(job for job in details if job.status == "RUNNING")
report["cancelled"] = str(jobs.cancel(job_id=running.id).status)
deleted = jobs.delete(job_id=listed[-1].id)
assert isinstance(deleted, models.DeleteBatchJobResponse)
report["deleted"] = [deleted.id == listed[-1].id, deleted.object, deleted.deleted]
for name, call in (
    ("deleted_get", lambda: jobs.get(job_id=listed[-1].id)),
    ("unknown_status_filter", lambda: jobs.list(status=["PAUSED"])),
):
    try:
        call()
    except errors.SDKError as exc:
        report[name] = exc.status_code
print(json.dumps(report))
"""


def _check_sdk3() -> None:
    stamp = SDK3 / ".installed"
    dist = SDK3 / f"mistralai-{SDK_VERSION}.dist-info"
    if not stamp.is_file() or not dist.is_dir():
        pytest.fail(
            f"mistralai {SDK_VERSION} is not installed in {SDK3}: run `make sdk3` first",
            pytrace=False,
        )


def _create_mix(sim: Simulator, clock: list[float]) -> None:
    """Batch jobs in every known status and an unknown one, with counters, errors, metadata.

    Created in-process on a frozen clock: the admin API has its own tests, and nothing
    moves while the child pages through the lists.
    """
    variants: list[dict[str, Any]] = [
        {"metadata": {"team": "ml", "run": 7, "nested": {"a": [1, 2]}}},
        {"model": None, "agent_id": "ag_sim", "endpoint": "/v1/agents/completions"},
        {"failure_rate": 0.2, "errors": ("Request body is not valid JSON", "Too long")},
        {"total_while_queued": True, "total_requests": 20_000, "progress": 0.37},
        {"failure_rate": 1.0, "endpoint": "/v1/ocr", "model": "mistral-ocr-latest"},
    ]
    for status in (*BATCH_STATUSES, "PAUSED"):
        for number, variant in enumerate(variants):
            spec = BatchSpec(status=status, **variant)
            sim.create_batch(spec, created_at=OLD if number % 2 else None, log=False)
    # Jobs caught mid-life: scheduled at T0, seen a few seconds in.
    sim.schedule(random_batch_scenario(5, 20, start_within=2.0, step_gap=(1.0, 6.0)), start=T0)
    clock[0] = T0 + 6
    sim.advance()
    sim.create_batches(BatchSpec(status="SUCCESS"), 12)


@pytest.fixture
async def running() -> AsyncIterator[RunningSimulator]:
    now = [T0]
    async with simulator(api_key=KEY, seed=11, clock=lambda: now[0]) as served:
        _create_mix(served.sim, now)
        yield served


async def test_sdk3_parses_every_page_and_every_job(running: RunningSimulator) -> None:
    """mistralai 3.7.0 parses every list page and every batch job, and its filters work."""
    _check_sdk3()
    sim = running.sim
    expected = Counter(batch.status for batch in sim.batch_jobs.values())
    ids = sorted(sim.batch_jobs)
    recent = sum(1 for batch in sim.batch_jobs.values() if batch.created_at > OLD)
    command = [sys.executable, "-S", "-c", SCRIPT, running.base_url, KEY, str(SDK3)]
    run = partial(
        subprocess.run,
        command,
        env={**os.environ, "PYTHONPATH": str(SDK3)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    with anyio.fail_after(90):
        child = await anyio.to_thread.run_sync(run)
    assert 0 == child.returncode, child.stderr
    report = json.loads(child.stdout)
    assert (SDK_VERSION, SDK_VERSION, [], []) == (
        report["version"],
        report["module_version"],
        report["foreign"],
        report["site_packages"],
    )
    assert (len(ids), len(ids), len(ids), ids) == (
        report["total"],
        report["listed"],
        report["details"],
        report["ids"],
    )
    assert sorted({*BATCH_STATUSES, "PAUSED"}) == report["statuses"]
    assert {s: [expected[s], expected[s]] for s in BATCH_STATUSES} == report["by_status"]
    known = sum(expected[s] for s in BATCH_STATUSES)
    assert [known, known, True] == report["all_known"]
    assert len(ids) == report["metadata_filter_total"]
    assert recent == report["created_after_total"]
    assert report["with_errors"] > 0
    assert report["with_metadata"] > 0
    assert report["null_model"] > 0
    assert "CANCELLATION_REQUESTED" == report["cancelled"]
    assert [True, "batch", True] == report["deleted"]
    assert (404, 422) == (report["deleted_get"], report["unknown_status_filter"])
    assert len(ids) - 1 == len(sim.batch_jobs)
