"""Workflows streams scaled out on PostgreSQL: three ``watcher run`` replicas on one database,
three workflows sources (one simulator each). Each source's streams are consumed by the
replica that owns it, and only by it; after that replica is SIGKILLed, another one takes
the source over and resumes its streams from the committed sequences (never from 0), and
nothing is lost."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.e2e.harness import (
    JSON_LOGS,
    QUICK_DELIVERY,
    WatcherProcess,
    config,
    source,
    webhook,
    write,
)
from tests.waiting import wait_until
from watcher.app.coordination.advisory import current_owners
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import RunningSimulator, simulator
from watcher.devtools.simulator.workflows import WorkflowSpec, WorkflowStep

pytestmark = pytest.mark.e2e

SOURCES = ("wf-0", "wf-1", "wf-2")
REPLICAS = ("r1", "r2", "r3")
EXECUTIONS = 2  # per source
RETRIES = 40  # activity retries per execution, one every 0.5 s
START = 8.0


def _steps() -> tuple[WorkflowStep, ...]:
    return (
        *(
            WorkflowStep(
                action="activity_retrying",
                after=START + 0.5 * n,
                activity="flaky",
                message=f"attempt {n}",
            )
            for n in range(RETRIES)
        ),
        WorkflowStep(action="fail", after=START + 0.5 * RETRIES + 1, message="gave up"),
    )


def _retries(receiver: Receiver) -> Counter[str]:
    """Distinct activity retries received per execution."""
    seen = {
        (r.id, str(r.data["job"]["id"]))
        for r in receiver.received
        if r.type == "workflow.activity.retrying" and isinstance(r.data, dict)
    }
    return Counter(job for _, job in seen)


async def test_streams_follow_ownership_and_resume_after_a_sigkill(
    tmp_path: Path, postgres_url: str
) -> None:
    secret = generate_secret()
    receiver = Receiver(secret)
    async with AsyncExitStack() as stack:
        hook = await stack.enter_async_context(serve_app(receiver.app))
        sims: dict[str, RunningSimulator] = {
            name: await stack.enter_async_context(simulator(speed=1.0)) for name in SOURCES
        }
        sources = [
            source(
                sim,
                name=name,
                kind="mistral-workflows",
                interval="30s",
                jitter="10ms",
                on_start="notify",
                timeout="2s",
                max_retries=1,
            )
            for name, sim in sims.items()
        ]
        replicas = {
            name: WatcherProcess(
                write(
                    tmp_path / name / "config.yaml",
                    config(
                        postgres_url,
                        sources=sources,
                        sinks=[webhook(f"{hook}/hooks", secret, timeout="2s")],
                        delivery=QUICK_DELIVERY,
                        logging=JSON_LOGS,
                    ),
                ),
                env={"WATCHER_REPLICA": name},
            )
            for name in REPLICAS
        }
        stack.callback(lambda: [r.kill() for r in replicas.values() if r.alive()])
        executions = {
            name: [
                sim.sim.create_execution(WorkflowSpec(workflow_name=name, steps=_steps()))
                for _ in range(EXECUTIONS)
            ]
            for name, sim in sims.items()
        }
        for replica in replicas.values():
            replica.start()

        async def shared() -> bool:
            owners = await current_owners(postgres_url, list(SOURCES))
            return all(owners.values()) and len(set(owners.values())) == len(REPLICAS)

        await wait_until(shared, within=60, what="the sources shared out", every=0.2)
        # Each source's streams: one per execution, opened by its owner alone.
        await wait_until(
            lambda: all(
                s.sim.stream_stats(connections=False)["open"] == EXECUTIONS for s in sims.values()
            ),
            within=30,
            what="one stream per execution",
        )
        await wait_until(
            lambda: min(_retries(receiver).values(), default=0) >= 5,
            within=START + 20,
            what="the first retries",
        )
        for sim in sims.values():  # never two consumers of one stream
            assert sim.sim.stream_stats(connections=False)["open"] == EXECUTIONS
        owners = await current_owners(postgres_url, list(SOURCES))
        victim = owners["wf-0"]
        assert victim is not None
        # From here on, a connection from 0 for a stream seen before is a replay.
        sims["wf-0"].sim.reset_stream_stats()
        replicas[victim].kill()

        async def taken_over() -> bool:
            now = await current_owners(postgres_url, ["wf-0"])
            return now["wf-0"] not in (None, victim)

        await wait_until(taken_over, within=30, what="another replica takes wf-0", every=0.2)
        failed = {
            e.execution_id for found in executions.values() for e in found
        }  # every execution ends failed
        await wait_until(
            lambda: (
                failed
                <= {
                    str(r.data["job"]["id"])
                    for r in receiver.received
                    if r.type == "workflow.execution.failed" and isinstance(r.data, dict)
                }
            ),
            within=START + 0.5 * RETRIES + 40,
            what="every execution's failure",
        )
        assert {job: RETRIES for job in failed} == dict(_retries(receiver))
        stats = sims["wf-0"].sim.stream_stats()
        assert stats["replays_from_zero"] == 0  # the takeover resumed where the victim was
        resumed = [c for c in stats["connections"] if c["start_seq"] > 1]
        assert len(resumed) >= EXECUTIONS, stats["connections"]
