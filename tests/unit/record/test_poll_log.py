"""``poll_done`` speaks at info only when a cycle found something (a transition, the
baseline, a malformed item); a quiet cycle is debug (issue 17, item 9: 60 lines hid 22
transitions in 8 s of the demo)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog

from tests.factories import job
from tests.unit.record.fakes import ft_config
from watcher.abc import PollContext, PollResult
from watcher.config import RouteConfig
from watcher.detect.routing import Router
from watcher.model.jobs import Job
from watcher.record.pipeline import Pipeline
from watcher.record.recorder import Recorder
from watcher.sources.fine_tuning import KIND
from watcher.stores.sql import SqlStore


class Listing:
    name, kind, interval = "ft", KIND, 1.0

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def poll(self, ctx: PollContext) -> PollResult:
        # As a real source: the cursor it returns has the baseline behind it.
        return PollResult(jobs=list(self.jobs), cursor=replace(ctx.cursor, baseline_done=True))

    async def aclose(self) -> None:
        pass


async def test_quiet_cycles_are_debug(sqlite: SqlStore) -> None:
    source = Listing()
    recorder = Recorder(sqlite, Router([RouteConfig(sinks=["hooks"])]))
    pipeline = Pipeline(recorder, {"ft": (source, ft_config())}, clock=lambda: 5000.0)

    async def levels() -> list[tuple[str, Any]]:
        with structlog.testing.capture_logs() as logs:
            await pipeline.poll("ft")
        return [(e["log_level"], e.get("transitions")) for e in logs if e["event"] == "poll_done"]

    source.jobs = [job("a", "RUNNING")]
    assert [("info", 0)] == await levels()  # the baseline
    assert [("debug", 0)] == await levels()  # nothing new
    source.jobs = [job("a", "FAILED", modified_at=4000)]
    assert [("info", 1)] == await levels()  # a transition
    assert [("debug", 0)] == await levels()
