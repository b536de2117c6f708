"""The schedule's parts: scheduled actions survive their errors, a source just taken is
polled at once, a lost source's poll stops at once, and another replica's source is not
polled here."""

from __future__ import annotations

from typing import Any

import anyio
from apscheduler.triggers.interval import IntervalTrigger

from watcher.app.coordination import SoleOwnership
from watcher.app.health import Progress
from watcher.app.scheduling import Polls, Schedule, _answer
from watcher.record.pipeline import CycleOutcome


class HangingPipeline:
    """A fake pipeline whose poll starts, tells, and never ends by itself."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.forgotten: list[str] = []

    def forget(self, name: str) -> None:
        self.forgotten.append(name)

    async def poll(self, name: str) -> CycleOutcome:
        self.started.set()
        await anyio.sleep_forever()
        return CycleOutcome("ok")


def polls(pipeline: Any, owned: list[str]) -> Polls:
    return Polls(pipeline, SoleOwnership(owned, replica="r1"), Progress())


async def test_a_lost_source_stops_its_poll_at_once() -> None:
    """When the source changes hands mid-poll, the poll ends as stale, and the pipeline
    reads the source from the store again at its next cycle here."""
    pipeline = HangingPipeline()
    running = polls(pipeline, ["ft"])
    outcomes: list[str] = []

    async def poll() -> None:
        outcomes.append((await running.poll("ft")).outcome)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await pipeline.started.wait()
            running.lost("ft")
    assert (["stale"], {}, ["ft"]) == (outcomes, running.running, pipeline.forgotten)


async def test_another_replicas_source_is_not_polled() -> None:
    """A source this replica does not own is on standby, and its poll never starts."""
    pipeline = HangingPipeline()
    with anyio.fail_after(5):
        outcome = await polls(pipeline, []).poll("ft")
    assert ("standby", False) == (outcome.outcome, pipeline.started.is_set())


async def test_a_source_just_taken_is_polled_now() -> None:
    """poll_now runs the source's poll at once, not at its next tick an hour away."""
    polled = anyio.Event()

    async def action() -> None:
        polled.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            schedule = Schedule(tg)
            schedule.on("poll:ft", action, IntervalTrigger(hours=1))
            schedule.start()
            schedule.poll_now("ft")
            await polled.wait()
            schedule.stop()
    assert True is polled.is_set()


async def test_a_failing_scheduled_action_does_not_stop_the_daemon() -> None:
    """An action that raises is logged; the next tick runs it again."""
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is locked")

    send, receive = anyio.create_memory_object_stream[None](2)
    with anyio.fail_after(5):
        async with send:
            send.send_nowait(None)
            send.send_nowait(None)
        await _answer(receive, flaky)
    assert 2 == calls
