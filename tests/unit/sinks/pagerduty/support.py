"""What the PagerDuty sink's tests share: envelopes that page or resolve, the fake
PagerDuty wired to a sink, a sink over a mock transport."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from tests.factories import SINK_JOB_ID, sink_envelope
from tests.factories import sink_job as job
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.model.transitions import Transition
from watcher.sinks.pagerduty import PagerDutySink

NOW = 1_795_000_000.0
JOB_ID = SINK_JOB_ID
JOB_KEY = f"watcher/ft/{JOB_ID}"

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


def status(new: str, previous: str = "RUNNING", **overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "id": f"wt_{new.lower()}",
        "type": f"fine_tuning.job.{new.lower()}",
        "status": new,
        "previous_status": previous,
        "job": job(status=new),
    }
    return sink_envelope(detected_at=NOW, **(fields | overrides))


def alert(
    kind: str = "stalled", *, resolved: bool = False, since: str = "2026-11-18T08:00:00Z"
) -> Envelope:
    facts: dict[str, Any] = {"rule": kind, "status": "QUEUED", "since": since}
    if resolved:
        facts["resolved_after_seconds"] = 600
    transition = Transition(
        id=f"wt_{kind}_{since}_{resolved}",
        type=f"fine_tuning.job.{kind}" + (".resolved" if resolved else ""),
        source="ft",
        job_id=JOB_ID,
        occurred_at=1_794_999_500,
        job=job(status="QUEUED"),
        details={"alert": facts},
    )
    return Envelope(transition=transition, detected_at=NOW)


def other(type_: str, **overrides: Any) -> Envelope:
    fields: dict[str, Any] = {"id": "wt_other", "type": type_, "source": "ft", "job_id": JOB_ID}
    return Envelope(transition=Transition(**(fields | overrides)), detected_at=NOW)


@dataclass
class Wire:
    fake: FakePagerDuty
    url: str
    client: httpx.AsyncClient

    def sink(self, **kwargs: Any) -> PagerDutySink:
        # The sink's own deadline bounds every exchange (STYLE: every wait has a limit).
        settings: dict[str, Any] = {"routing_key": Secret(ROUTING_KEY), "timeout": 3.0}
        return PagerDutySink("oncall", client=self.client, url=self.url, **(settings | kwargs))


def mock_sink(handler: Handler, **kwargs: Any) -> PagerDutySink:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return PagerDutySink("oncall", client=client, routing_key=Secret(ROUTING_KEY), **kwargs)


def answering(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json=body, headers=headers)

    return handler
