"""The pipeline around a source that records its cycle in parts (PollContext.flush): every
part is committed under the version guard, the first good part ends a failure spell, and a
cycle that fails after a part keeps what was recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from tests.factories import job
from tests.unit.record.fakes import Clock, Counted, ft_config
from watcher.abc import PollContext, PollResult
from watcher.config import RouteConfig
from watcher.detect.routing import Router
from watcher.exceptions import SourceAuthError, SourceRetired, SourceUnavailable
from watcher.model.jobs import Job
from watcher.model.snapshot import Cursor
from watcher.record.pipeline import Pipeline
from watcher.record.recorder import Recorder
from watcher.sources.fine_tuning import KIND
from watcher.stores.sql import SqlStore


class PartsSource:
    """Flushes each of ``parts`` with the cursor as the cycle found it, then returns
    ``last`` (or fails, when ``fail`` is set)."""

    name = "ft"
    kind = KIND
    interval = 1.0

    def __init__(self, parts: Sequence[Sequence[Job]], last: Sequence[Job], fail: bool) -> None:
        self.parts, self.last, self.fail = parts, last, fail

    async def poll(self, ctx: PollContext) -> PollResult:
        assert ctx.flush is not None
        for part in self.parts:
            await ctx.flush(part, ctx.cursor)
        if self.fail:
            raise SourceUnavailable("ft", "HTTP 503 from list")
        return PollResult(jobs=list(self.last), cursor=ctx.cursor)

    async def aclose(self) -> None:
        pass


def pipeline(store: SqlStore, source: PartsSource) -> Pipeline:
    recorder = Recorder(store, Router([RouteConfig(sinks=["hooks"])]))
    return Pipeline(recorder, {"ft": (source, ft_config())}, clock=lambda: 5000.0)


@pytest.mark.parametrize("fail", [False, True], ids=["cycle-ends-well", "cycle-fails-after"])
async def test_a_cycle_in_parts_ends_the_failure_spell(store: SqlStore, fail: bool) -> None:
    down = Cursor(baseline_done=True, watermark=1, failing_since=1000.0, unreachable=True)
    await store.commit("ft", down, [], [], now=1000.0, polled=False)
    source = PartsSource(
        [[job("a", "RUNNING")], [job("b", "FAILED")]], [job("c", "QUEUED")], fail=fail
    )
    outcome = await pipeline(store, source).poll("ft")
    assert ("error" if fail else "ok") == outcome.outcome
    cursor = await store.load_cursor("ft")
    # The parts were recorded, and the source counts as recovered from the first of them;
    # a failure after them starts a new spell (not the old one, already reported).
    recorded = await store.get_snapshots("ft", ["a", "b", "c"])
    assert (["a", "b"] if fail else ["a", "b", "c"]) == sorted(recorded)
    assert not cursor.unreachable
    assert (5000.0 if fail else None) == cursor.failing_since
    types = [r.type for r in await store.list_deliveries(state=None, limit=50)]
    assert 1 == types.count("watcher.source.recovered")


# --- one source's cycles, scripted ---------------------------------------------------------


class ScriptedSource:
    """Answers each poll with the next of ``answers``: jobs to report, or an error."""

    name = "ft"
    kind = KIND
    interval = 1.0

    def __init__(self, *answers: Sequence[Job] | Exception) -> None:
        self.answers = list(answers)

    async def poll(self, ctx: PollContext) -> PollResult:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return PollResult(jobs=list(answer), cursor=replace(ctx.cursor, baseline_done=True))

    async def aclose(self) -> None:
        pass


def scripted(
    store: SqlStore, source: ScriptedSource, clock: Clock, **options: Any
) -> tuple[Pipeline, Counted]:
    polls = Counted()
    recorder = Recorder(store, Router([RouteConfig(sinks=["hooks"])]), metrics=polls)
    sources = {"ft": (source, ft_config(**options))}
    return Pipeline(recorder, sources, clock=clock, metrics=polls), polls


async def test_the_first_cycle_is_a_silent_baseline(sqlite: SqlStore) -> None:
    """The first cycle records the jobs it finds and reports none of them; the next one
    reports what changed since."""
    source = ScriptedSource([job("a", "RUNNING")], [job("a", "FAILED")])
    pipeline, polls = scripted(sqlite, source, Clock(5000.0))
    first = await pipeline.poll("ft")
    second = await pipeline.poll("ft")
    assert (1, 0) == (first.jobs, first.transitions)
    assert (1, ["fine_tuning.job.failed"]) == (second.transitions, polls.types)
    assert ["ok", "ok"] == polls.outcomes
    assert {"ft": 5000.0} == pipeline.last_ok


async def test_on_start_notify_reports_the_first_cycle(sqlite: SqlStore) -> None:
    """With ``on_start: notify`` the jobs found first are reported."""
    pipeline, polls = scripted(
        sqlite, ScriptedSource([job("a", "RUNNING")]), Clock(5000.0), on_start="notify"
    )
    await pipeline.poll("ft")
    assert ["fine_tuning.job.running"] == polls.types


async def test_a_retired_source_is_reported_once_then_tried_rarely(sqlite: SqlStore) -> None:
    """410 Gone is reported once; the source is then skipped until ``retired_interval``
    has passed, and a retired source counts as polled fine."""
    gone = SourceRetired("ft", "list")
    clock = Clock(5000.0)
    pipeline, polls = scripted(sqlite, ScriptedSource(gone, gone), clock, retired_interval="1h")
    await pipeline.poll("ft")
    await pipeline.poll("ft")
    clock.now += 3600
    await pipeline.poll("ft")
    assert ["retired", "skipped", "retired"] == polls.outcomes
    assert ["watcher.source.retired"] == polls.types
    assert {"ft": 8600.0} == pipeline.last_ok


async def test_a_failing_source_is_reported_unreachable_once(sqlite: SqlStore) -> None:
    """Failures are remembered from the first; past ``unreachable_after`` the outage is
    reported once, however long it lasts."""
    down = SourceUnavailable("ft", "HTTP 503 from list")
    clock = Clock(5000.0)
    source = ScriptedSource(down, down, down)
    pipeline, polls = scripted(sqlite, source, clock, unreachable_after="60s")
    for _ in range(3):
        await pipeline.poll("ft")
        clock.now += 60
    cursor = await sqlite.load_cursor("ft")
    assert (5000.0, True) == (cursor.failing_since, cursor.unreachable)
    assert (["error"] * 3, ["watcher.source.unreachable"]) == (polls.outcomes, polls.types)
    assert {} == pipeline.last_ok


async def test_an_auth_failure_is_its_own_outcome(sqlite: SqlStore) -> None:
    """A refused API key ends the cycle as auth_error, starting a failure spell."""
    pipeline, _ = scripted(sqlite, ScriptedSource(SourceAuthError("ft", 401)), Clock(5000.0))
    assert "auth_error" == (await pipeline.poll("ft")).outcome
    assert 5000.0 == (await sqlite.load_cursor("ft")).failing_since


async def test_a_cycle_another_replica_overtook_is_discarded(sqlite: SqlStore) -> None:
    """If the source was committed meanwhile, the cycle ends as stale, recording nothing."""

    class Overtaken(ScriptedSource):
        async def poll(self, ctx: PollContext) -> PollResult:
            await sqlite.commit("ft", Cursor(watermark=9), [], [], now=1.0)  # the other one
            return await super().poll(ctx)

    pipeline, _ = scripted(sqlite, Overtaken([job("a", "RUNNING")]), Clock(5000.0))
    assert "stale" == (await pipeline.poll("ft")).outcome
    assert ({}, 9) == (
        await sqlite.active_snapshots("ft"),
        (await sqlite.load_cursor("ft")).watermark,
    )


async def test_a_store_failure_is_an_error_not_a_crash(
    sqlite: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store failing mid-cycle ends the cycle as error; the next one runs."""
    pipeline, _ = scripted(sqlite, ScriptedSource([], []), Clock(5000.0))

    async def broken(*args: Any, **kwargs: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(sqlite, "commit", broken)
    first = await pipeline.poll("ft")
    monkeypatch.undo()
    assert ("error", "ok") == (first.outcome, (await pipeline.poll("ft")).outcome)


async def test_a_job_the_store_refuses_is_skipped_and_the_others_recorded(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One job whose values the database refuses (a DataError from PostgreSQL, say) no
    longer blinds its source (issue 15, item 1): the store says RecordRefused, the cycle
    records the jobs one by one, skips the refused one and commits its cursor."""
    import sqlalchemy as sa

    from watcher.stores.sql import snapshots as sql_snapshots

    source = ScriptedSource(
        [job("a", "RUNNING"), job("b", "RUNNING")],
        [job("a", "FAILED"), job("bad", "FAILED"), job("b", "FAILED")],
    )
    pipeline, polls = scripted(store, source, Clock(5000.0))
    await pipeline.poll("ft")  # the baseline
    real = sql_snapshots.SqlSnapshots.commit

    async def refusing(self: Any, source: str, cursor: Cursor, snapshots: Any, *a: Any, **k: Any):  # type: ignore[no-untyped-def]
        if any(s.job_id == "bad" for s in snapshots):
            async with self._writing():
                raise sa.exc.DataError("INSERT …", {}, ValueError("invalid value for column"))
        return await real(self, source, cursor, snapshots, *a, **k)

    monkeypatch.setattr(sql_snapshots.SqlSnapshots, "commit", refusing)
    outcome = await pipeline.poll("ft")
    assert "ok" == outcome.outcome
    assert ["fine_tuning.job.failed", "fine_tuning.job.failed"] == polls.types
    known = await store.get_snapshots("ft", ["a", "b", "bad"])
    assert {"a", "b"} == set(known) and all(s.status == "FAILED" for s in known.values())
    assert store.write_error is None  # the store was never said to be failing
