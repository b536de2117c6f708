"""The current official SDK (mistralai 3.7.0) against the simulator's Workflows API.

If the SDK parses every list page, every execution and run, every stream frame (with its
own models, the event union resolved to the class its ``event_type`` names) and every events
page the simulator serves, and its cancel/terminate calls work, the simulator speaks the real
API's Workflows shapes. As in test_sdk_batch_contract.py, 3.7.0 lives in ``.sdk3`` and runs
in a child process (``-S``, see there) while the simulator serves in this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial

import anyio
import pytest

from tests import REPO
from watcher.devtools.simulator import (
    RunningSimulator,
    Simulator,
    WorkflowSpec,
    WorkflowStep,
    random_workflow_scenario,
    simulator,
)
from watcher.model.statuses import WORKFLOW_TERMINAL

SDK_VERSION = "3.7.0"
# `make sdk3` installs it for the interpreter of the venv (WATCHER_SDK3 names the directory
# when several interpreters are tested: its compiled parts are per interpreter).
SDK3 = REPO / os.environ.get("WATCHER_SDK3", ".sdk3")
KEY = "contract-key"
T0 = 1_800_000_000.0

# argv: base URL, API key, the .sdk3 directory, the running root, the two to act on.
SCRIPT = r"""
import importlib.metadata
import json
import re
import sys
import urllib.request
from pathlib import Path

base_url, api_key, sdk3, live_root, to_cancel, to_terminate = sys.argv[1:7]
sys.path[:] = [sdk3, *(p for p in sys.path if p and p != sdk3)]

import httpx2
import mistralai.client
import pydantic
from mistralai.client import Mistral, errors, models
from mistralai.extra.exceptions import StreamDisconnectedError

root = Path(sdk3).resolve()
modules = {"mistralai": mistralai.client, "pydantic": pydantic, "httpx2": httpx2}
origins = {name: str(Path(module.__file__).resolve()) for name, module in modules.items()}
report = {
    "version": importlib.metadata.version("mistralai"),
    "foreign": sorted(n for n, f in origins.items() if not Path(f).is_relative_to(root)),
    "site_packages": [p for p in sys.path if "site-packages" in p],
}
if report["version"] != "3.7.0" or report["foreign"] or report["site_packages"]:
    print(json.dumps(report))
    sys.exit(0)

client = Mistral(api_key=api_key, server_url=base_url, timeout_ms=10_000)
wf = client.workflows


def class_for(event_type):
    # WORKFLOW_EXECUTION_CONTINUED_AS_NEW -> WorkflowExecutionContinuedAsNewResponse
    return "".join(word.capitalize() for word in event_type.split("_")) + "Response"


def list_all(**filters):
    items, pages = [], 0
    answer = wf.runs.list_runs(page_size=7, **filters)
    while answer is not None:
        assert isinstance(answer.result, models.WorkflowExecutionListResponse)
        for item in answer.result.executions:
            assert isinstance(item, models.WorkflowExecutionWithoutResultResponse), type(item)
            items.append(item)
        pages += 1
        answer = answer.next()
    return items, pages


listed, pages = list_all()
report.update(
    listed=len(listed),
    pages=pages,
    ids=sorted(item.execution_id for item in listed),
    statuses=sorted({str(item.status) for item in listed}),
)
failed, _ = list_all(status=["FAILED", "TERMINATED"])
report["failed_or_terminated"] = sorted(item.execution_id for item in failed)
details = 0
for item in listed:
    detail = wf.executions.get_workflow_execution(execution_id=item.execution_id)
    assert isinstance(detail, models.WorkflowExecutionResponse)
    assert (detail.run_id, detail.status) == (item.run_id, item.status)
    run = wf.runs.get_run(run_id=item.run_id)
    assert isinstance(run, models.WorkflowExecutionResponse)
    assert run.execution_id == item.execution_id
    details += 1
report["details"] = details

frames, types, mismatched = 0, {}, []
roots = sorted({i.root_execution_id for i in listed if str(i.status) in {
    "COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT"}} - {live_root})
for root_id in roots:
    last = 0
    with wf.events.get_stream_events(root_workflow_exec_id=root_id) as stream:
        for message in stream:
            assert isinstance(message, models.GetStreamEventsV1WorkflowsEventsStreamGetResponseBody)
            payload = message.data
            assert isinstance(payload, models.StreamEventSsePayload), type(payload)
            assert payload.broker_sequence > last and message.id == str(payload.broker_sequence)
            last = payload.broker_sequence
            assert payload.workflow_context.root_workflow_exec_id == root_id
            event_type = payload.data.event_type
            if type(payload.data).__name__ != class_for(event_type):
                mismatched.append([event_type, type(payload.data).__name__])
            types[event_type] = types.get(event_type, 0) + 1
            frames += 1
report.update(stream_roots=len(roots), frames=frames, types=types, mismatched=mismatched)

# A running tree: its events so far (the error is asked for after the third, once the
# replay is on its way), then an injected error frame, which 3.7.0 raises.
seen_live, error = 0, None
try:
    with wf.events.get_stream_events(root_workflow_exec_id=live_root, start_seq=0) as stream:
        for message in stream:
            assert isinstance(message.data, models.StreamEventSsePayload)
            seen_live += 1
            if seen_live == 3:
                request = urllib.request.Request(
                    base_url + "/_sim/workflows/streams/error", data=b"{}", method="POST")
                urllib.request.urlopen(request, timeout=10).read()
except StreamDisconnectedError as exc:
    error = [exc.reason, exc.error]
report["live_frames"] = seen_live
report["error_frame"] = error

page = wf.events.get_workflow_events(root_workflow_exec_id=live_root, limit=2)
assert isinstance(page, models.ListWorkflowEventResponse)
report["events_page"] = [len(page.events), page.next_cursor is not None]

wf.executions.cancel_workflow_execution(execution_id=to_cancel)
wf.executions.terminate_workflow_execution(execution_id=to_terminate)
report["after_actions"] = [
    str(wf.executions.get_workflow_execution(execution_id=to_cancel).status),
    str(wf.executions.get_workflow_execution(execution_id=to_terminate).status),
]
for name, call in (
    ("cancel_again", lambda: wf.executions.cancel_workflow_execution(execution_id=to_cancel)),
    ("unknown_get", lambda: wf.executions.get_workflow_execution(execution_id="nope")),
    ("no_filter_stream", lambda: wf.events.get_stream_events()),
    ("unknown_status", lambda: wf.runs.list_runs(status="PAUSED")),
):
    try:
        call()
    except errors.SDKError as exc:
        report[name] = exc.status_code
    except errors.HTTPValidationError as exc:
        report[name] = exc.raw_response.status_code
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
    """Every lifecycle ended (random scenario, twice over), a running tree, two running
    executions to act on; created on a frozen clock, so nothing moves while the child reads."""
    sim.schedule(random_workflow_scenario(5, 16, start_within=5.0), start=T0)
    clock[0] = T0 + 900
    sim.advance()
    live = sim.create_execution(WorkflowSpec(execution_id="live-root", workflow_name="live"))
    sim.create_execution(WorkflowSpec(execution_id="live-kid", parent="live-root"))
    sim.act("live-kid", WorkflowStep(action="activity_retrying", message="slow"))
    sim.act(live.execution_id, WorkflowStep(action="activity_started"))
    for execution_id in ("to-cancel", "to-terminate"):
        sim.create_execution(WorkflowSpec(execution_id=execution_id, deployment_name=None))


@pytest.fixture
async def running() -> AsyncIterator[RunningSimulator]:
    now = [T0]
    async with simulator(api_key=KEY, seed=11, clock=lambda: now[0]) as served:
        _create_mix(served.sim, now)
        yield served


async def test_sdk3_parses_every_page_execution_and_frame(running: RunningSimulator) -> None:
    _check_sdk3()
    sim = running.sim
    ids = sorted(sim.executions)
    ended_roots = {
        e.execution_id
        for e in sim.executions.values()
        if e.status in WORKFLOW_TERMINAL and e.parent_execution_id is None
    }
    expected_frames = sum(1 for e in sim.workflow_events if e.root_execution_id in ended_roots)
    expected_failed = sorted(
        e.execution_id for e in sim.executions.values() if e.status in ("FAILED", "TERMINATED")
    )
    command = [
        sys.executable,
        "-S",
        "-c",
        SCRIPT,
        running.base_url,
        KEY,
        str(SDK3),
        "live-root",
        "to-cancel",
        "to-terminate",
    ]
    run = partial(
        subprocess.run,
        command,
        env={**os.environ, "PYTHONPATH": str(SDK3)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    with anyio.fail_after(120):
        child = await anyio.to_thread.run_sync(run)
    assert 0 == child.returncode, child.stderr
    report = json.loads(child.stdout)
    assert (SDK_VERSION, [], []) == (report["version"], report["foreign"], report["site_packages"])
    assert (len(ids), ids, len(ids)) == (report["listed"], report["ids"], report["details"])
    assert report["pages"] == -(-len(ids) // 7)
    assert {"COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT", "RUNNING"} == set(
        report["statuses"]
    )
    assert expected_failed == report["failed_or_terminated"]
    assert [] == report["mismatched"]
    assert expected_frames == report["frames"]
    assert {
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_EXECUTION_COMPLETED",
        "WORKFLOW_EXECUTION_FAILED",
        "WORKFLOW_EXECUTION_CANCELED",
        "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
        "ACTIVITY_TASK_STARTED",
        "ACTIVITY_TASK_RETRYING",
        "ACTIVITY_TASK_COMPLETED",
        "ACTIVITY_TASK_FAILED",
    } == set(report["types"])
    live = sum(1 for e in sim.workflow_events if e.root_execution_id == "live-root")
    assert (live, ["stream_error", "Stream failed (simulated)"]) == (
        report["live_frames"],
        report["error_frame"],
    )
    assert [2, True] == report["events_page"]
    assert ["CANCELED", "TERMINATED"] == report["after_actions"]
    assert (409, 404, 422, 422) == (
        report["cancel_again"],
        report["unknown_get"],
        report["no_filter_stream"],
        report["unknown_status"],
    )
