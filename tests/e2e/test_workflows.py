"""Workflows executions end to end: the simulator (runs, executions, SSE streams), ``watcher
run`` as a process, a signature-checking receiver, all on loopback.

The poll interval is 30 s: what arrives sooner came by the event streams."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import WatcherProcess, config, source, webhook, write
from tests.waiting import wait_until
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import RunningSimulator, simulator
from watcher.devtools.simulator.workflows import WorkflowSpec, WorkflowStep

pytestmark = pytest.mark.e2e

START = 6.0  # seconds after creation the scripts begin: the executions are followed by then


def _step(action: str, after: float, **options: Any) -> WorkflowStep:
    return WorkflowStep(action=action, after=START + after, **options)


LIFECYCLES: dict[str, tuple[WorkflowStep, ...]] = {
    "completes": (_step("activity_started", 0, activity="a"), _step("complete", 1)),
    "fails_after_retries": (
        _step("activity_retrying", 0, activity="fetch", message="HTTP 503"),
        _step("activity_retrying", 0.5, activity="fetch", message="HTTP 503"),
        _step("activity_failed", 1, activity="fetch", message="HTTP 503"),
        _step("fail", 1.5, message="KeyError: 'customer'"),
    ),
    "retried_then_completes": (
        _step("fail", 0, message="flaky", retry=True),
        _step("complete", 2),
    ),
    "canceled": (_step("cancel", 1, reason="operator"),),
    "terminated": (_step("terminate", 1),),
    "timed_out": (_step("time_out", 1),),
    "continues_as_new": (_step("continue_as_new", 0.5), _step("complete", 2)),
}
EXPECTED: dict[str, list[str]] = {
    "completes": ["workflow.execution.running", "workflow.execution.completed"],
    "fails_after_retries": [
        "workflow.execution.running",
        "workflow.activity.retrying",
        "workflow.activity.retrying",
        "workflow.activity.failed",
        "workflow.execution.failed",
    ],
    "retried_then_completes": [
        "workflow.execution.running",
        "workflow.execution.retrying",
        "workflow.execution.completed",
    ],
    "canceled": ["workflow.execution.running", "workflow.execution.canceled"],
    "terminated": ["workflow.execution.running", "workflow.execution.terminated"],
    "timed_out": ["workflow.execution.running", "workflow.execution.timed_out"],
    "continues_as_new": [
        "workflow.execution.running",
        "workflow.execution.continued_as_new",
        "workflow.execution.completed",
    ],
}
POLLED_ONLY = {"terminated", "timed_out"}  # no stream event announces these ends
COPIES = 5  # of each lifecycle: 35 executions, and a parent with a failing child


def _by_job(receiver: Receiver) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in receiver.received:
        if isinstance(r.data, dict) and isinstance(r.data.get("job"), dict):
            out.setdefault(str(r.data["job"].get("id")), []).append(r)
    return out


def _one_id_per_change(receiver: Receiver) -> None:
    """A change delivered twice (at least once) keeps its id: never one change under two."""
    ids: dict[str, set[str | None]] = {}
    for r in receiver.received:
        data = {k: v for k, v in r.data.items() if k != "job"} if isinstance(r.data, dict) else {}
        key = json.dumps([r.type, (r.data or {}).get("job", {}).get("id"), data], sort_keys=True)
        ids.setdefault(key, set()).add(r.id)
    assert [] == [k for k, found in ids.items() if len(found) > 1]


def _workflows(sim: RunningSimulator, **options: Any) -> dict[str, Any]:
    return source(
        sim, name="wf", kind="mistral-workflows", interval="30s", jitter="10ms", **options
    )


async def test_every_lifecycle_arrives_once_in_order_most_within_a_second(tmp_path: Path) -> None:
    """Each lifecycle's changes arrive exactly once per webhook-id, in order, nothing
    spurious; the streamed ones about a second after the event although the interval is
    30 s; TERMINATED and TIMED_OUT arrive although no event announces them."""
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as url, simulator(speed=1.0) as sim:
        path = write(
            tmp_path / "config.yaml",
            config(
                tmp_path,
                sources=[_workflows(sim, on_start="notify")],
                sinks=[webhook(f"{url}/h", secret)],
                delivery={"initial_backoff": "200ms"},
            ),
        )
        copies = {
            f"{name}-{n}": name for name in LIFECYCLES for n in range(COPIES)
        }  # fmt: skip
        ids = {
            key: sim.sim.create_execution(
                WorkflowSpec(name=key, workflow_name=f"wf-{name}", steps=LIFECYCLES[name])
            ).execution_id
            for key, name in copies.items()
        }
        # A sub-workflow that fails under a parent that goes on: found on the root's stream.
        parent = sim.sim.create_execution(
            WorkflowSpec(name="parent", workflow_name="orchestrator", steps=(_step("complete", 4),))
        )
        child = sim.sim.create_execution(
            WorkflowSpec(
                workflow_name="child-task",
                parent="parent",
                steps=(_step("fail", 1, message="child broke"),),
            )
        )
        watcher = WatcherProcess(path)
        watcher.start()
        try:

            def done() -> bool:
                got = _by_job(receiver)
                return all(len(got.get(ids[k], [])) >= len(EXPECTED[n]) for k, n in copies.items())

            await wait_until(done, within=START + 25, what="every lifecycle's transitions")
            await wait_until(
                lambda: len(_by_job(receiver).get(parent.execution_id, [])) >= 2,
                within=10,
                what="the parent's completion",
            )
            got = _by_job(receiver)
            assert all(r.valid for r in receiver.received)
            for key, name in copies.items():
                assert [r.type for r in got[ids[key]]] == EXPECTED[name], key
            failed_child = got[child.execution_id][-1]
            assert "workflow.execution.failed" == failed_child.type
            assert parent.execution_id == failed_child.data["job"]["root_execution_id"]
            assert parent.execution_id == failed_child.data["job"]["parent_execution_id"]
            assert "child broke" == failed_child.data["failure"]["message"]
            counts = Counter(r.id for r in receiver.received)
            assert [] == [i for i, n in counts.items() if n > 1]
            streamed = set(LIFECYCLES) - POLLED_ONLY
            # Streamed ends arrive about a second after their event, not at the next poll.
            for key, name in copies.items():
                if name not in streamed:
                    continue
                job_id = ids[key]
                ended = max(e.at for e in sim.sim.workflow_events if e.execution_id == job_id)
                late = got[job_id][-1].received_at - ended
                assert late < 2.0, (key, late)
            failed = got[ids["fails_after_retries-0"]][-1]
            assert failed.data["failure"]["message"] == "KeyError: 'customer'"
            assert got[ids["fails_after_retries-0"]][1].data["activity"]["name"] == "fetch"
        finally:
            output = watcher.output()
            watcher.stop()
        assert "Traceback" not in output


async def test_stream_faults_and_a_sigkill_lose_nothing_and_never_replay_from_zero(
    tmp_path: Path,
) -> None:
    """Idle closes, error frames, a stream outage while the API answers, and a SIGKILL
    mid-stream: every activity retry arrives once, the executions' ends arrive, and each
    stream resumes from its committed sequence (the simulator saw no replay from 0)."""
    secret = generate_secret()
    receiver = Receiver(secret)
    retries = 24
    async with serve_app(receiver.app) as url, simulator(speed=1.0) as sim:
        path = write(
            tmp_path / "config.yaml",
            config(
                tmp_path,
                sources=[_workflows(sim, on_start="notify")],
                sinks=[webhook(f"{url}/h", secret)],
                delivery={"initial_backoff": "200ms"},
            ),
        )
        steps = (
            *(
                _step("activity_retrying", 0.5 * i, activity="flaky", message=f"attempt {i}")
                for i in range(retries)
            ),
            _step("fail", 0.5 * retries, message="gave up"),
        )
        ids = [
            sim.sim.create_execution(WorkflowSpec(workflow_name="chaos", steps=steps)).execution_id
            for _ in range(3)
        ]
        watcher = WatcherProcess(path)
        watcher.start()
        try:

            def retried() -> int:
                return sum(1 for r in receiver.received if r.type == "workflow.activity.retrying")

            await wait_until(lambda: retried() >= 3, within=START + 10, what="first retries")
            sim.sim.set_idle_close(2.0)
            await wait_until(lambda: retried() >= 12, within=15, what="retries under idle closes")
            sim.sim.inject_stream_error()
            watcher.kill()
            watcher = WatcherProcess(path)
            watcher.start()
            sim.sim.start_outage(3.0)
            await wait_until(
                lambda: (
                    sum(1 for r in receiver.received if r.type == "workflow.execution.failed")
                    == len(ids)
                ),
                within=40,
                what="every execution's failure",
            )
            got = _by_job(receiver)
            for job_id in ids:
                kinds = Counter(t for _, t in {(r.id, r.type) for r in got[job_id]})
                assert kinds["workflow.activity.retrying"] == retries, kinds
            _one_id_per_change(receiver)
            streams = sim.sim.stream_stats(connections=False)
            assert streams["opened"] > len(ids)  # they did reconnect
            assert streams["replays_from_zero"] == 0
        finally:
            output = watcher.output()
            watcher.stop()
        assert "Traceback" not in output


async def test_an_execution_that_ends_between_two_polls_still_says_what_happened(
    tmp_path: Path,
) -> None:
    """Started and failed between two polls, never streamed: its activity retries and its
    failure's message still arrive (read once from the events list), each once."""
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as url, simulator(speed=1.0) as sim:
        path = write(
            tmp_path / "config.yaml",
            config(
                tmp_path,
                sources=[
                    source(sim, name="wf", kind="mistral-workflows", interval="4s", jitter="10ms")
                ],
                sinks=[webhook(f"{url}/h", secret)],
                delivery={"initial_backoff": "200ms"},
            ),
        )
        watcher = WatcherProcess(path)
        watcher.start()
        try:
            await wait_until(
                lambda: sim.sim.stats()["requests"].get("workflow_list", 0) >= 1,
                within=15,
                what="the first poll",
            )
            quick = sim.sim.create_execution(
                WorkflowSpec(
                    workflow_name="quick",
                    steps=(
                        WorkflowStep(action="activity_retrying", after=0.1, activity="io"),
                        WorkflowStep(action="activity_retrying", after=0.2, activity="io"),
                        WorkflowStep(action="fail", after=0.3, message="quick failure"),
                    ),
                )
            )
            await wait_until(
                lambda: len(_by_job(receiver).get(quick.execution_id, [])) >= 3,
                within=15,
                what="the quick execution's news",
            )
            got = _by_job(receiver)[quick.execution_id]
            assert [
                "workflow.activity.retrying",
                "workflow.activity.retrying",
                "workflow.execution.failed",
            ] == [r.type for r in got]
            assert "quick failure" == got[-1].data["failure"]["message"]
            assert sim.sim.stats()["requests"]["workflow_events"] >= 1
        finally:
            output = watcher.output()
            watcher.stop()
        assert "Traceback" not in output
