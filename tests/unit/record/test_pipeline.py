"""The pipeline around a source that records its cycle in parts (PollContext.flush): every
part is committed under the version guard, the first good part ends a failure spell, and a
cycle that fails after a part keeps what was recorded."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.factories import job
from watcher.abc import Cursor, PollContext, PollResult
from watcher.config import RouteConfig, validate_config
from watcher.detect.routing import Router
from watcher.exceptions import SourceUnavailable
from watcher.model.jobs import Job
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
    config = validate_config(
        {"sources": [{"name": "ft", "kind": "mistral-fine-tuning", "api_key": "k"}],
         "sinks": [{"name": "hooks", "kind": "console"}]},
        env={},
    )  # fmt: skip
    router = Router([RouteConfig(sinks=["hooks"])])
    recorder = Recorder(store, router)
    return Pipeline(recorder, {"ft": (source, config.sources[0])}, clock=lambda: 5000.0)


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
