"""Metrics with bounded labels in a registry of each daemon's own."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from prometheus_client import REGISTRY

from tests.unit.record.fakes import Clock
from watcher import __version__
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.app.metrics import MAX_REASONS, Metrics, code_label, status_label, type_label
from watcher.config import DeliveryConfig, validate_config
from watcher.deliver.dispatch import Dispatcher
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, simulator
from watcher.exceptions import DeliveryError, SourceUnavailable
from watcher.model.outbox import Envelope, Routed, StoreStatus
from watcher.model.secrets import Secret
from watcher.model.snapshot import Cursor
from watcher.model.transitions import Transition
from watcher.sources.mistral import ApiClient
from watcher.stores.sql import SqlStore


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# --- label values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("fine_tuning.job.failed", "fine_tuning.job.failed", id="status"),
        pytest.param("batch.job.timeout_exceeded", "batch.job.timeout_exceeded", id="batch"),
        pytest.param("fine_tuning.job.checkpoint", "fine_tuning.job.checkpoint", id="fact"),
        pytest.param("batch.job.stalled.resolved", "batch.job.stalled.resolved", id="alert"),
        pytest.param("fine_tuning.job.paused", "fine_tuning.job.other", id="unknown status"),
        pytest.param("batch.job.x" * 50, "batch.job.other", id="long garbage"),
        pytest.param("watcher.source.retired", "watcher.source.retired", id="source"),
        pytest.param("watcher.heartbeat", "watcher.heartbeat", id="heartbeat"),
        pytest.param("watcher.source.exploded", "watcher.other", id="unknown watcher"),
        pytest.param("agents.job.failed", "other", id="unknown prefix"),
    ],
)
def test_type_label(raw: str, expected: str) -> None:
    """Transition types keep a job prefix and a known suffix; the rest collapses."""
    assert expected == type_label(raw)


def test_status_and_code_labels_are_bounded() -> None:
    """Documented statuses and real HTTP codes pass; the rest is other; no answer is error."""
    assert ["RUNNING", "TIMEOUT_EXCEEDED", "other", "other"] == [
        status_label(s) for s in ("RUNNING", "TIMEOUT_EXCEEDED", "PAUSED", "running")
    ]
    assert ["200", "503", "other", "error"] == [code_label(c) for c in (200, 503, 999, None)]


# --- the registry --------------------------------------------------------------------------


def test_each_daemon_has_its_own_registry() -> None:
    """Two Metrics in one process neither clash nor share values, and stay out of the
    global registry."""
    first, second = Metrics(["ft"]), Metrics(["ft"])
    first.poll_done("ft", "ok", 0.1)
    assert (1.0, 0.0) == (
        value(first, "watcher_polls_total", source="ft", outcome="ok"),
        value(second, "watcher_polls_total", source="ft", outcome="ok"),
    )
    assert (
        REGISTRY.get_sample_value("watcher_polls_total", {"source": "ft", "outcome": "ok"}) is None
    )
    assert 1.0 == value(first, "watcher_build_info", version=__version__)


def test_polls_duration_and_last_success() -> None:
    """Every cycle counts by outcome; the duration skips skipped cycles; only ok moves the
    last-success time; an unexpected outcome counts as error."""
    clock = Clock(5000.0)
    metrics = Metrics(["ft"], clock=clock, process=False)
    metrics.poll_done("ft", "ok", 0.2)
    clock.now = 6000.0
    metrics.poll_done("ft", "error", 1.5)
    metrics.poll_done("ft", "skipped", 0.0)
    metrics.poll_done("ft", "surprise", 0.0)
    assert {"ok": 1.0, "error": 2.0, "skipped": 1.0, "retired": 0.0, "auth_error": 0.0} == {
        outcome: value(metrics, "watcher_polls_total", source="ft", outcome=outcome)
        for outcome in ("ok", "error", "skipped", "retired", "auth_error")
    }
    assert 3.0 == value(metrics, "watcher_poll_duration_seconds_count", source="ft")
    assert 5000.0 == value(metrics, "watcher_last_successful_poll_timestamp_seconds", source="ft")


def test_store_gauges_come_from_the_last_read() -> None:
    """Jobs by capped status for configured sources, the outbox and retired sources are
    rendered from the cached store read, ages computed at scrape time."""
    clock = Clock(10_000.0)
    metrics = Metrics(["ft", "batch"], clock=clock, process=False)
    assert value(metrics, "watcher_outbox_pending") is None  # nothing read yet
    metrics.refreshed(
        StoreStatus(
            jobs_by_source={
                "ft": {"RUNNING": 2, "PAUSED": 1, "\u202eWEIRD": 2, "SUCCESS": 4},
                "removed-source": {"RUNNING": 7},
            },
            cursors={"ft": Cursor(retired=True), "batch": Cursor()},
            pending=3,
            dead=1,
            oldest_pending_at=9_950.0,
        )
    )
    clock.now = 10_010.0
    assert {"RUNNING": 2.0, "SUCCESS": 4.0, "other": 3.0} == {
        s.labels["status"]: s.value
        for family in metrics.registry.collect()
        if family.name == "watcher_jobs"
        for s in family.samples
    }
    assert value(metrics, "watcher_jobs", source="removed-source", status="RUNNING") is None
    assert (3.0, 60.0, 1.0) == (
        value(metrics, "watcher_outbox_pending"),
        value(metrics, "watcher_outbox_oldest_pending_age_seconds"),
        value(metrics, "watcher_outbox_dead"),
    )
    assert (1.0, 0.0) == (
        value(metrics, "watcher_source_retired", source="ft"),
        value(metrics, "watcher_source_retired", source="batch"),
    )


class CountingSink:
    name = "slack"

    def __init__(self, reasons: int) -> None:
        self.final_errors: Counter[str] = Counter({f"reason_{i:02d}": 2 for i in range(reasons)})

    async def send(self, batch: Sequence[Envelope]) -> None:
        pass

    async def aclose(self) -> None:
        pass


def test_sink_final_errors_are_capped_per_sink() -> None:
    """A sink's final_errors become counters by reason; past MAX_REASONS, other."""
    sinks: dict[str, Any] = {"slack": CountingSink(MAX_REASONS + 3), "hooks": object()}
    metrics = Metrics(["ft"], sinks=sinks, process=False)
    samples = {
        s.labels["reason"]: s.value
        for family in metrics.registry.collect()
        if family.name == "watcher_sink_final_errors"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert (MAX_REASONS + 1, 2.0, 6.0) == (len(samples), samples["reason_00"], samples["other"])


# --- what the parts report -----------------------------------------------------------------


async def test_api_requests_count_codes_and_transport_errors() -> None:
    """Each request is counted by route and code; no answer at all is code error."""
    answers: Iterator[httpx.Response | Exception] = iter(
        [
            httpx.Response(503),
            httpx.Response(200, json={"data": []}),
            httpx.ConnectError("no"),
            httpx.ReadTimeout("slow"),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def no_sleep(_: float) -> None:
        pass

    metrics = Metrics(["ft"], process=False)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        api = ApiClient(
            source="ft",
            base_url="http://api.test",
            api_key=Secret("sk-test-key"),
            client=client,
            timeout=1.0,
            max_retries=1,
            sleep=no_sleep,
            observe=lambda route, status: metrics.api_request("ft", route, status),
        )
        assert {"data": []} == await api.get_json("/v1/x", {}, route="list")
        with pytest.raises(SourceUnavailable):
            await api.get_json("/v1/x/1", {}, route="detail")
    assert (1.0, 1.0, 0.0, 2.0) == tuple(
        value(metrics, "watcher_api_requests_total", source="ft", route=route, code=code) or 0.0
        for route, code in (
            ("list", "503"),
            ("list", "200"),
            ("detail", "200"),
            ("detail", "error"),
        )
    )


class FlakySink:
    def __init__(self, name: str, errors: dict[str, DeliveryError]) -> None:
        self.name = name
        self.errors = errors

    async def send(self, batch: Sequence[Envelope]) -> None:
        for envelope in batch:
            error = self.errors.get(envelope.transition.id)
            if error is not None:
                raise error

    async def aclose(self) -> None:
        pass


async def test_deliveries_count_attempts_and_final_outcomes(store: SqlStore) -> None:
    """Attempts count by result; delivered and dead count once each, when final."""
    clock, metrics = Clock(), Metrics(["ft"], process=False)
    sink = FlakySink(
        "hooks",
        {
            "t-final": DeliveryError("gone", retryable=False),
            "t-retry": DeliveryError("busy", retryable=True),
        },
    )
    routed = [
        Routed(Transition(id=i, type="fine_tuning.job.failed", source="ft", job_id=i), ["hooks"])
        for i in ("t-ok", "t-final", "t-retry")
    ]
    await store.commit("ft", Cursor(), [], routed, now=clock.now)
    dispatcher = Dispatcher(
        store,
        {"hooks": sink},
        DeliveryConfig(),
        clock=clock,
        rng=random.Random(1),
        metrics=metrics,
    )
    assert 3 == await dispatcher.run_once()
    attempts = {
        result: value(metrics, "watcher_delivery_attempts_total", sink="hooks", result=result)
        for result in ("ok", "retryable_error", "final_error")
    }
    finished = {
        outcome: value(metrics, "watcher_deliveries_total", sink="hooks", outcome=outcome)
        for outcome in ("delivered", "dead")
    }
    assert {"ok": 1.0, "retryable_error": 1.0, "final_error": 1.0} == attempts
    assert {"delivered": 1.0, "dead": 1.0} == finished


async def test_a_daemon_cycle_moves_the_counters(tmp_path: Path) -> None:
    """One cycle of the daemon against the simulator counts polls, requests and the
    transitions it recorded (not the silent baseline)."""
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as url, simulator() as sim:
        job = sim.sim.create(JobSpec(status="RUNNING", frozen=True))
        config = validate_config(
            {
                "sources": [
                    {
                        "name": "ft",
                        "kind": "mistral-fine-tuning",
                        "base_url": sim.base_url,
                        "api_key": sim.api_key,
                    }
                ],
                "state": {"url": f"sqlite:///{tmp_path}/state.db"},
                "sinks": [
                    {"name": "hooks", "kind": "webhook", "url": f"{url}/h", "secret": secret}
                ],
            },
            env={},
        )
        async with Watcher(config) as watcher:
            await watcher.once()
            sim.sim.set_status(job.id, "FAILED")
            await watcher.once()
            metrics = watcher.metrics
            assert 2.0 == value(metrics, "watcher_polls_total", source="ft", outcome="ok")
            assert 1.0 == value(metrics, "watcher_transitions_total", type="fine_tuning.job.failed")
            assert 1.0 == value(
                metrics, "watcher_deliveries_total", sink="hooks", outcome="delivered"
            )
            requests = value(
                metrics, "watcher_api_requests_total", source="ft", route="list", code="200"
            )
            assert requests is not None and requests >= 2


def test_silences_are_counted_and_gauged() -> None:
    """``watcher_silences_active`` from the last store read; silenced transitions counted."""
    metrics = Metrics(["ft"], process=False)
    assert 0.0 == value(metrics, "watcher_transitions_silenced_total")
    metrics.transitions_silenced(3)
    metrics.refreshed(StoreStatus(silences_active=2))
    assert (3.0, 2.0) == (
        value(metrics, "watcher_transitions_silenced_total"),
        value(metrics, "watcher_silences_active"),
    )
