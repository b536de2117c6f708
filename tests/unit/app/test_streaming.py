"""Streams run while this replica owns their source, and stop the moment it does not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from tests.waiting import wait_until
from watcher.app import streaming
from watcher.app.streaming import Streaming
from watcher.model.snapshot import Cursor


class Following:
    """A source that follows streams: what it was given, and how often it ran."""

    def __init__(self, crash: bool = False) -> None:
        self.starts = 0
        self.stops = 0
        self.crash = crash
        self.cursors: list[Cursor] = []
        self.open = 3

    async def follow(
        self, load_cursor: Callable[[], Awaitable[Cursor]], nudge: Callable[[], None]
    ) -> None:
        self.starts += 1
        self.cursors.append(await load_cursor())
        nudge()
        if self.crash:
            raise RuntimeError("a bug")
        try:
            await anyio.sleep_forever()
        finally:
            self.stops += 1

    def streams_open(self) -> int:
        return self.open


class Polling:
    """A source without streams."""

    name = "ft"


class Owned:
    def __init__(self) -> None:
        self.owned: dict[str, float] = {}


class Cursors:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def load_cursor(self, source: str) -> Cursor:
        self.asked.append(source)
        return Cursor(streams={"exec-1": 41})


class Gauge:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def streams_open(self, source: str, count: int) -> None:
        self.values[source] = count


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "RECONCILE_EVERY", 0.01)


async def test_streams_follow_ownership() -> None:
    wf, owned, cursors, gauge, nudged = Following(), Owned(), Cursors(), Gauge(), []
    runner = Streaming({"wf": wf, "ft": Polling()}, owned, cursors, nudged.append, metrics=gauge)
    assert ["wf"] == list(runner.followers)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        await anyio.sleep(0.05)
        assert (0, {"wf": 0}) == (wf.starts, gauge.values)  # not ours: no stream
        owned.owned["wf"] = 1.0
        await wait_until(lambda: wf.starts == 1, what="the streams")
        assert ["wf"] == nudged and ["wf"] == cursors.asked
        assert {"exec-1": 41} == wf.cursors[0].streams
        await wait_until(lambda: gauge.values == {"wf": 3}, what="the gauge")
        del owned.owned["wf"]  # another replica took it
        await wait_until(lambda: wf.stops == 1, what="the streams to stop")
        await wait_until(lambda: gauge.values == {"wf": 0}, what="the gauge")
        owned.owned["wf"] = 2.0
        await wait_until(lambda: wf.starts == 2, what="the streams again")
        tg.cancel_scope.cancel()
    assert 2 == wf.stops


async def test_a_crash_is_contained_and_the_streams_start_again() -> None:
    wf, owned = Following(crash=True), Owned()
    owned.owned["wf"] = 1.0
    runner = Streaming({"wf": wf}, owned, Cursors(), lambda name: None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        await wait_until(lambda: wf.starts >= 2, what="a restart after the crash")
        tg.cancel_scope.cancel()


async def test_no_following_source_no_task() -> None:
    runner = Streaming({"ft": Polling()}, Owned(), Cursors(), lambda name: None)
    with anyio.fail_after(1):
        await runner.run()
