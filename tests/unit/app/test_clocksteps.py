"""A step of the wall clock neither stops nor bursts the schedule (issue 15, item 5).

APScheduler keeps next runs as wall times; the tests put a job in the state a step leaves
it in (next run an hour away after a step back, an hour overdue after a step forward) and
step the schedule's injected wall clock: the job runs again within its interval, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from apscheduler.triggers.interval import IntervalTrigger

from watcher.app.clocksteps import STEP, ClockSteps
from watcher.app.scheduling import Schedule


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 1_000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def test_a_step_is_told_from_slewing_and_from_time_passing() -> None:
    clocks = Clocks()
    steps = ClockSteps(wall=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    clocks.advance(30)
    assert steps.check() is None  # time passing moves both clocks
    clocks.wall += STEP / 2  # NTP slewing: small
    assert steps.check() is None
    clocks.wall -= 3600
    assert steps.check() == pytest.approx(-3600)
    assert steps.check() is None  # said once
    clocks.wall += 7200
    assert steps.check() == pytest.approx(7200)
    assert steps.steps == 2


@pytest.mark.parametrize("shift", [timedelta(hours=1), -timedelta(hours=1)], ids=["back", "fwd"])
async def test_after_a_step_the_schedule_runs_on_within_its_interval(shift: timedelta) -> None:
    clocks = Clocks()
    runs: list[float] = []
    first = anyio.Event()

    async def poll() -> None:
        runs.append(anyio.current_time())
        first.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            steps = ClockSteps(wall=lambda: clocks.wall, monotonic=lambda: clocks.mono)
            schedule = Schedule(tg, clock=steps)
            schedule.on("poll:ft", poll, IntervalTrigger(seconds=1), grace=1)
            schedule.start()
            # What a step leaves behind: the next run a whole hour away (step back), or an
            # hour overdue (step forward).
            job = schedule.scheduler.get_job("poll:ft")
            job.modify(next_run_time=datetime.now(UTC) + shift)
            clocks.wall -= shift.total_seconds()
            started = anyio.current_time()
            await first.wait()
            assert anyio.current_time() - started < 2.5  # within the interval (+ one check)
            await anyio.sleep(2.1)
            schedule.stop()
    assert 1 == steps.steps
    # No burst: about one run per 1 s interval since the step (the overdue hour is not
    # caught up), and no stop.
    assert 2 <= len(runs) <= 4
