"""A built-in simulator of Mistral's fine-tuning jobs, batch jobs and Workflows APIs, for
``watcher simulate``, the demo and end-to-end tests.

It speaks ``/v1/fine_tuning/jobs``, ``/v1/batch/jobs`` and ``/v1/workflows`` (runs,
executions, actions, the SSE event stream) as the references describe them (:mod:`.app`,
:mod:`.workflows_app`, :mod:`.workflows_stream`), moves jobs and executions through scripted
(:mod:`.scenario`, :mod:`.workflows_scenario`) or seeded-random (:mod:`.random_scenarios`)
lifecycles (:mod:`.engine`, :mod:`.workflows_engine`), and exposes an admin API under
``/_sim/`` (:mod:`.admin`, :mod:`.workflows_admin`) to create jobs and executions, force
statuses and progress, inject faults and read counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

import anyio
import anyio.abc

from watcher.app.httpserver import serve_app
from watcher.devtools.simulator.app import create_app
from watcher.devtools.simulator.batch import BATCH_STATUSES, BatchSpec, SimBatch
from watcher.devtools.simulator.engine import Clock, Fault, Simulator
from watcher.devtools.simulator.jobs import STATUSES, JobSpec, SimJob
from watcher.devtools.simulator.random_scenarios import (
    WORKFLOW_LIFECYCLES,
    random_batch_scenario,
    random_scenario,
    random_workflow_scenario,
)
from watcher.devtools.simulator.scenario import (
    Scenario,
    load_demo,
    load_full_demo,
    load_full_scenario,
    load_scenario,
    parse_full_scenario,
    parse_scenario,
)
from watcher.devtools.simulator.workflows import (
    ACTIONS,
    WORKFLOW_STATUSES,
    SimExecution,
    WorkflowSpec,
    WorkflowStep,
)

__all__ = [
    "ACTIONS",
    "BATCH_STATUSES",
    "DEFAULT_API_KEY",
    "STATUSES",
    "WORKFLOW_LIFECYCLES",
    "WORKFLOW_STATUSES",
    "BatchSpec",
    "Fault",
    "JobSpec",
    "RunningSimulator",
    "Scenario",
    "SimBatch",
    "SimExecution",
    "SimJob",
    "Simulator",
    "WorkflowSpec",
    "WorkflowStep",
    "create_app",
    "default_jobs",
    "format_banner",
    "load_demo",
    "load_full_demo",
    "load_full_scenario",
    "load_scenario",
    "parse_full_scenario",
    "parse_scenario",
    "random_batch_scenario",
    "random_scenario",
    "random_workflow_scenario",
    "run_simulator",
    "simulator",
]

# A visibly fake key: the simulator only listens on loopback by default.
DEFAULT_API_KEY = "sim-local-key"


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator being served: its URL, the key its ``/v1`` routes want, its engine."""

    base_url: str
    api_key: str
    sim: Simulator


def default_jobs(scenario: Path | None, seed: int | None) -> list[JobSpec]:
    """What ``watcher simulate`` plays: the file, else a seeded random scenario, else the demo."""
    if scenario is not None:
        return load_scenario(scenario)
    if seed is not None:
        return random_scenario(seed)
    return load_demo()


@asynccontextmanager
async def simulator(
    *,
    jobs: Iterable[JobSpec] = (),
    batches: Iterable[BatchSpec] = (),
    workflows: Iterable[WorkflowSpec] = (),
    speed: float = 1.0,
    seed: int | None = None,
    api_key: str = DEFAULT_API_KEY,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock | None = None,
) -> AsyncIterator[RunningSimulator]:
    """Serve a simulator on ``host:port`` (0: a free port) while the block runs.

    ``jobs``, ``batches`` and ``workflows`` are scheduled from the moment the server is up
    (their ``create_after`` counts from then). Open event streams end when the block
    exits, so they never hold the server's shutdown.
    """
    sim = (
        Simulator(speed=speed, seed=seed)
        if clock is None
        else Simulator(speed=speed, seed=seed, clock=clock)
    )
    async with serve_app(create_app(sim, api_key), host=host, port=port) as base_url:
        sim.schedule([*jobs, *batches, *workflows])
        try:
            yield RunningSimulator(base_url=base_url, api_key=api_key, sim=sim)
        finally:
            sim.close_all_streams()


class Serving(TypedDict):
    """Where and how ``watcher simulate`` serves (the options of :func:`simulator` it sets)."""

    host: str
    port: int
    speed: float
    seed: int | None
    api_key: str


async def run_simulator(
    *,
    scenario: Path | None,
    ready: Callable[[str], None] | None = None,
    **serving: Unpack[Serving],
) -> None:
    """Serve the simulator until cancelled; ``ready(base_url)`` is called once it listens.

    Raises :class:`ValueError` for a bad scenario file or speed, before listening. A
    scenario file's ``batches`` and ``workflows`` are played too; without one, a seed plays
    random jobs and workflows, else the demo (its jobs and workflows).
    """
    seed = serving["seed"]
    if scenario is not None:
        played = load_full_scenario(scenario)
    elif seed is not None:
        played = Scenario(
            jobs=tuple(random_scenario(seed)), workflows=tuple(random_workflow_scenario(seed))
        )
    else:
        played = load_full_demo()
    jobs, batches, workflows = played.jobs, played.batches, played.workflows
    stop = anyio.Event()

    async def serve(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        # Shielded so that cancellation reaches the server as a clean shutdown (which
        # closes its socket) rather than tearing it down mid-way.
        with anyio.CancelScope(shield=True):
            async with simulator(
                jobs=jobs, batches=batches, workflows=workflows, **serving
            ) as running:
                task_status.started()
                if ready is not None:
                    ready(running.base_url)
                await stop.wait()

    async with anyio.create_task_group() as tg:
        await tg.start(serve)
        try:
            await anyio.sleep_forever()
        finally:
            stop.set()


def format_banner(base_url: str, api_key: str) -> str:
    """What ``watcher simulate`` prints: where to point a watcher, and how to peek."""
    return "\n".join(
        [
            "Mistral fine-tuning, batch and Workflows API simulator",
            f"  base URL: {base_url}",
            f"  API key:  {api_key}",
            f"  try:      curl -H 'Authorization: Bearer {api_key}' {base_url}/v1/fine_tuning/jobs",
            f"            (batch jobs: {base_url}/v1/batch/jobs,"
            f" workflows: {base_url}/v1/workflows/runs)",
            f"  admin:    {base_url}/_sim/stats  {base_url}/_sim/log  {base_url}/_sim/jobs"
            f"  {base_url}/_sim/workflows",
        ]
    )
