"""The endurance suite's one knob: ``WATCHER_ENDURANCE=long`` runs the issue's full figures
(``make endurance``), anything else a short version of every scenario (``make test``).

Time is simulated: the simulator plays its scripts :data:`SPEED` times faster than real
time and every duration watcher is given (poll interval, backoffs, max age, Retry-After) is
divided by the same factor, so "30 simulated minutes" of a watcher polling every 30 s take
30 real seconds and the same number of poll cycles.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "WATCHER_ENDURANCE"
SPEED = 60.0  # one real second is one simulated minute
MINUTE = 60.0  # simulated seconds


def real(simulated_seconds: float) -> float:
    """Real seconds for a span of simulated time."""
    return simulated_seconds / SPEED


@dataclass(frozen=True)
class Scale:
    """How much of each scenario one run plays."""

    name: str
    kills: int  # kill storm: SIGKILLs
    transitions: int  # kill storm: status changes the simulator applies
    fault_minutes: float  # fault mix: simulated minutes under faults
    outage_minutes: float  # sink outage: simulated minutes with the receiver down
    read_only_minutes: float  # disk trouble: simulated minutes with the database read-only
    fuzz_examples: int  # fuzz: hypothesis examples per property


SHORT = Scale(
    "short",
    kills=5,
    transitions=50,
    fault_minutes=5,
    outage_minutes=3,
    read_only_minutes=3,
    fuzz_examples=60,
)
LONG = Scale(
    "long",
    kills=50,
    transitions=500,
    fault_minutes=30,
    outage_minutes=10,
    read_only_minutes=10,
    fuzz_examples=1500,
)


def current() -> Scale:
    """The scale ``WATCHER_ENDURANCE`` asks for (``short`` when unset)."""
    wanted = os.environ.get(ENV, "short").strip().lower() or "short"
    scales = {scale.name: scale for scale in (SHORT, LONG)}
    if wanted not in scales:
        raise ValueError(f"{ENV} must be one of {', '.join(scales)}, not {wanted!r}")
    return scales[wanted]
