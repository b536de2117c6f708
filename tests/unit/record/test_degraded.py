"""``watcher.source.degraded``: a source that works in a lesser way (its event streams
refused or failing) is reported once per spell, recorded with the cycle's cursor."""

from __future__ import annotations

from dataclasses import replace

import httpx2 as httpx

from tests.unit.record.fakes import Clock, Counted
from tests.unit.sources.workflow_fakes import RunsApi, T, config, execution
from watcher.abc import PollContext, PollResult, Source
from watcher.config import RouteConfig
from watcher.detect.routing import Router
from watcher.exceptions import SourceUnavailable
from watcher.model import types
from watcher.model.snapshot import JobKind
from watcher.record.pipeline import Pipeline
from watcher.record.recorder import Recorder
from watcher.sources.workflows import WorkflowsSource
from watcher.stores.sql import SqlStore

REFUSED = "the event stream was refused: HTTP 422 from the event stream: need a filter"


class Degrading:
    """Answers each cycle with the next ``degraded`` value (or raises it)."""

    name = "wf"
    kind = JobKind(types.WORKFLOW_EXECUTION, frozenset({"COMPLETED"}))
    interval = 30.0

    def __init__(self, *answers: str | Exception | None) -> None:
        self.answers = list(answers)

    async def poll(self, ctx: PollContext) -> PollResult:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return PollResult(jobs=[], cursor=replace(ctx.cursor, baseline_done=True), degraded=answer)

    async def aclose(self) -> None:
        pass


def pipeline(store: SqlStore, source: Source, clock: Clock) -> tuple[Pipeline, Counted]:
    counted = Counted()
    recorder = Recorder(store, Router([RouteConfig(sinks=["hooks"])]), metrics=counted)
    sources = {"wf": (source, config())}
    return Pipeline(recorder, sources, clock=clock, metrics=counted), counted


async def test_degraded_once_per_spell(sqlite: SqlStore) -> None:
    clock = Clock(5000.0)
    source = Degrading(None, REFUSED, REFUSED, SourceUnavailable("wf", "HTTP 503"), REFUSED,
                       None, "event streams keep failing")  # fmt: skip
    run, counted = pipeline(sqlite, source, clock)
    since = []
    for _ in range(7):
        await run.poll("wf")
        since.append((await sqlite.load_cursor("wf")).degraded_since)
        clock.now += 30
    # A failed cycle (the API down) neither ends the spell nor starts another.
    assert [None, 5030.0, 5030.0, 5030.0, 5030.0, None, 5180.0] == since
    assert ["ok", "ok", "ok", "error", "ok", "ok", "ok"] == counted.outcomes
    assert [types.SOURCE_DEGRADED] * 2 == counted.types
    rows = await sqlite.list_deliveries(state=None, limit=50)
    assert 2 == len({r.transition_id for r in rows if r.type == types.SOURCE_DEGRADED})


async def test_degraded_is_said_even_during_the_silent_baseline(sqlite: SqlStore) -> None:
    run, counted = pipeline(sqlite, Degrading(REFUSED), Clock(5000.0))
    await run.poll("wf")
    assert [types.SOURCE_DEGRADED] == counted.types


async def test_a_workflows_source_with_refused_streams_is_degraded_once(
    sqlite: SqlStore,
) -> None:
    """The user's side of the source's ``degraded``: whole cycles, and the hinted cycles
    that streams wake in between (here with nothing to say), make one spell."""
    api = RunsApi(execution("exec-1"))
    source = WorkflowsSource(
        config(), httpx.AsyncClient(transport=httpx.MockTransport(api.handler))
    )
    clock = Clock(float(T + 3600))
    run, counted = pipeline(sqlite, source, clock)
    source.follower.problem = REFUSED  # what a refused stream leaves (see the streams' tests)
    await run.poll("wf")  # whole
    clock.now += 30
    await run.poll("wf")  # whole
    assert [types.SOURCE_DEGRADED] == counted.types


async def test_hinted_cycles_do_not_end_a_degraded_spell(sqlite: SqlStore) -> None:
    api = RunsApi(execution("exec-1"))
    source = WorkflowsSource(
        config(), httpx.AsyncClient(transport=httpx.MockTransport(api.handler))
    )
    clock = Clock(float(T + 3600))
    run, counted = pipeline(sqlite, source, clock)
    source.follower.problem = REFUSED
    await run.poll("wf")  # whole
    clock.now += 1
    await run.poll("wf")  # hinted, woken by a stream that ended: nothing to take
    clock.now += 30
    await run.poll("wf")  # whole
    assert [types.SOURCE_DEGRADED] == counted.types
