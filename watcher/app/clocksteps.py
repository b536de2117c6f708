"""Wall-clock steps (an NTP correction, a VM resumed, an operator's ``date -s``), seen by
comparing the wall clock with the monotonic one.

APScheduler 3 keeps each job's next run as a wall time: after a step back of an hour every
job would wait an hour (polling stops, ``/readyz`` would not notice), after a step forward
every job is overdue at once. :class:`ClockSteps` notices a step within a second and the
schedule then puts each job's next run back on its trigger as of the new wall time
(:meth:`watcher.app.scheduling.Schedule.realign`): no stop, no burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

STEP = 1.0  # seconds of disagreement between the two clocks that count as a step
CHECK_EVERY = 1.0  # seconds between checks


class ClockSteps:
    """Remembers how far the wall clock is from the monotonic one, and says when that
    distance jumps."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self.offset = wall() - monotonic()
        self.steps = 0

    def check(self) -> float | None:
        """The step (seconds, negative: back) since the last check, or ``None``. Slewing
        (NTP's gradual correction) stays under :data:`STEP` between two checks."""
        offset = self.wall() - self.monotonic()
        step = offset - self.offset
        self.offset = offset
        if abs(step) < STEP:
            return None
        self.steps += 1
        log.warning(
            "clock_stepped",
            seconds=round(step, 3),
            hint="the schedule follows the new wall time; ages are measured on the monotonic clock",
        )
        return step
