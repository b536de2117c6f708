"""What the simulator's HTTP side counts and breaks: request counters per route, and the
queued faults (429, 5xx, slow, malformed, gone, truncated) the next requests will meet."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

Route = Literal[
    "list",
    "detail",
    "other",
    "batch_list",
    "batch_detail",
    "workflow_list",
    "workflow_detail",
    "workflow_stream",
    "workflow_events",
    "workflow_action",
]
FaultRoute = Literal[
    "list",
    "detail",
    "batch_list",
    "batch_detail",
    "workflow_list",
    "workflow_detail",
    "workflow_stream",
    "workflow_events",
    "workflow_action",
    "all",
]

FAULT_MODES = frozenset({"429", "500", "502", "503", "slow", "malformed", "gone", "truncated"})
_BATCH_ROUTES: tuple[Route, ...] = ("batch_list", "batch_detail")
_WORKFLOW_ROUTES: tuple[Route, ...] = (
    "workflow_list",
    "workflow_detail",
    "workflow_stream",
    "workflow_events",
    "workflow_action",
)
_ROUTES: tuple[Route, ...] = ("list", "detail", "other", *_BATCH_ROUTES, *_WORKFLOW_ROUTES)
FAULT_ROUTES: tuple[FaultRoute, ...] = (
    "list",
    "detail",
    "batch_list",
    "batch_detail",
    "workflow_list",
    "workflow_detail",
    "workflow_stream",
    "workflow_events",
    "workflow_action",
    "all",
)


@dataclass(kw_only=True)
class Fault:
    """One queued fault; ``count`` None means until cleared.

    ``rate`` below 1 makes it hit only that share of the matching requests (a fault mix for
    endurance runs: ``rate=0.1`` is 10 % of them); see :meth:`Simulator.take_fault`.
    """

    mode: str
    count: int | None = 1
    retry_after: float | None = None
    delay: float = 1.0
    route: FaultRoute = "all"
    rate: float = 1.0

    def matches(self, route: Route) -> bool:
        return self.route == "all" or self.route == route

    def to_json(self) -> dict[str, Any]:
        shown = {
            "mode": self.mode,
            "count": self.count,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "route": self.route,
        }
        return shown if self.rate == 1.0 else {**shown, "rate": self.rate}


class Traffic:
    """Request counters, requests in flight, queued faults and the retired (410) switch."""

    requests: dict[Route, int]
    cancels: dict[str, int]  # job or execution id -> cancel requests that reached it
    in_flight: int
    faults: list[Fault]
    retired: bool
    _fault_draws: random.Random
    _batch_used: bool  # set by the batch engine too: a batch job exists
    _workflow_used: bool  # set by the workflow engine too: an execution exists

    def _start_traffic(self, seed: int | None) -> None:
        self.requests = dict.fromkeys(_ROUTES, 0)
        self.cancels = {}
        self.in_flight = 0
        self.faults = []
        self._fault_draws = random.Random(seed)  # apart: a fault mix leaves job ids alone
        self.retired = False
        self._batch_used = False  # shows the batch request counters in stats()
        self._workflow_used = False  # shows the workflow request counters in stats()

    def count_request(self, route: Route) -> None:
        self.requests[route] += 1
        if route in _BATCH_ROUTES:
            self._batch_used = True
        elif route in _WORKFLOW_ROUTES:
            self._workflow_used = True

    def count_cancel(self, job_id: str) -> None:
        """A cancel request for ``job_id`` (any family) got past auth and faults, whatever
        the answer (``GET /_sim/cancels``; zeroed with the request counters)."""
        self.cancels[job_id] = self.cancels.get(job_id, 0) + 1

    def stats(self) -> dict[str, Any]:
        """Request counters; ``total`` counts every ``/v1`` request.

        ``batch_list`` and ``batch_detail`` appear once the batch API is in use (a batch
        job was created or a batch route requested), the ``workflow_*`` kinds once the
        Workflows API is, so the fine-tuning-only shape stays.
        """
        shown = {
            route: count
            for route, count in self.requests.items()
            if (self._batch_used or route not in _BATCH_ROUTES)
            and (self._workflow_used or route not in _WORKFLOW_ROUTES)
        }
        return {
            "requests": {**shown, "total": sum(self.requests.values())},
            "in_flight": self.in_flight,
        }

    def reset_stats(self) -> None:
        self.requests = dict.fromkeys(_ROUTES, 0)
        self.cancels = {}

    def add_fault(self, fault: Fault) -> None:
        if fault.mode not in FAULT_MODES:
            raise ValueError(f"mode: unknown fault mode {fault.mode!r}")
        if not 0.0 < fault.rate <= 1.0:
            raise ValueError(f"rate: must be above 0 and at most 1, not {fault.rate!r}")
        self.faults.append(fault)

    def take_fault(self, route: Route) -> Fault | None:
        """Consume the first queued fault that applies to ``route``.

        The faults with a ``rate`` below 1 share one draw per request, each taking its own
        slice of it: rates 0.10 and 0.05 hit 10 % and 5 % of the requests, never the same
        one (independent draws would skew the mix).
        """
        draw = self._fault_draws.random()
        for index, fault in enumerate(self.faults):
            if fault.matches(route):
                if fault.rate < 1.0 and draw >= fault.rate:
                    draw -= fault.rate
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        del self.faults[index]
                return fault
        return None
