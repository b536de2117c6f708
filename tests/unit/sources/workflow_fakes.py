"""Builders and fakes for the Workflows source's tests: raw executions and stream frames
shaped as the workflows reference shows them (§3, §7.7), an in-memory
``/v1/workflows/runs`` + ``/v1/workflows/executions/{id}`` (httpx.MockTransport), and a
harness that polls the source and diffs what it returns as the pipeline does."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx2 as httpx

from watcher.abc import PollContext, PollResult
from watcher.config import WorkflowsSourceConfig
from watcher.detect.diff import diff
from watcher.model.secrets import Secret
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.transitions import Transition
from watcher.sources.workflows import WorkflowsSource

KEY = "sk-wf-key-123"
RUNS = "/v1/workflows/runs"
DETAIL = "/v1/workflows/executions/"
# 2026-08-01T10:25:07Z, the start of the reference's example execution.
T = int(datetime(2026, 8, 1, 10, 25, 7, tzinfo=UTC).timestamp())


def iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def execution(
    execution_id: str = "exec-1",
    status: str | None = "RUNNING",
    *,
    started: int = T,
    ended: int | None = None,
    run_id: str | None = "run-1",
    workflow: str = "support-workflow",
    deployment: str | None = "prod",
    root: str | None = None,
    parent: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``WorkflowExecutionWithoutResultResponse`` (every documented field)."""
    return {
        "workflow_name": workflow,
        "workflow_id": "5f0c6a0e-2f7b-4c52-9d1e-3c2b1f9e8a11",
        "deployment_name": deployment,
        "execution_id": execution_id,
        "parent_execution_id": parent,
        "root_execution_id": root or execution_id,
        "run_id": run_id,
        "user_id": "u_123",
        "status": status,
        "start_time": iso(started),
        "end_time": None if ended is None else iso(ended),
        "total_duration_ms": None if ended is None else (ended - started) * 1000,
        **extra,
    }


def frame(
    sequence: int,
    event_type: str,
    *,
    job_id: str = "exec-1",
    root: str | None = None,
    run_id: str | None = "run-1",
    event_id: str | None = None,
    at: int | str | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    """A ``StreamEventSsePayload`` (reference §7.7), as a dict."""
    root = root or job_id
    data: dict[str, Any] = {
        "event_id": event_id or f"evt-{sequence}",
        "event_timestamp": (T + 60 + sequence) * 1_000_000_000 if at is None else at,
        "event_type": event_type,
        "workflow_name": "support-workflow",
        "workflow_exec_id": job_id,
        "workflow_run_id": run_id,
        "root_workflow_exec_id": root,
        "parent_workflow_exec_id": None if root == job_id else root,
        "continued_run_id": None,
        "first_execution_run_id": run_id,
        "schedule_id": None,
        "attributes": {"task_id": "t1", **attributes},
    }
    return {
        "stream": "__workflow__",
        "timestamp": iso(T + 60 + sequence),
        "broker_sequence": sequence,
        "metadata": {},
        "workflow_context": {
            "namespace": "ws_123",
            "workflow_name": "support-workflow",
            "workflow_exec_id": job_id,
            "parent_workflow_exec_id": data["parent_workflow_exec_id"],
            "root_workflow_exec_id": root,
        },
        "data": data,
    }


def frame_text(sequence: int, event_type: str, **kwargs: Any) -> str:
    return json.dumps(frame(sequence, event_type, **kwargs))


def config(**overrides: Any) -> WorkflowsSourceConfig:
    fields: dict[str, Any] = {
        "name": "wf",
        "kind": "mistral-workflows",
        "base_url": "http://api.test",
        "api_key": Secret(KEY),
        "page_size": 50,
        **overrides,
    }
    return WorkflowsSourceConfig(**fields)


def _started(raw: Mapping[str, Any]) -> datetime | None:
    """When a stored execution started (``None``: unreadable, listed whatever the bound)."""
    try:
        return datetime.fromisoformat(raw["start_time"])
    except (TypeError, ValueError):
        return None


class RunsApi:
    """The executions as the API holds them (by id), and what it was asked."""

    def __init__(self, *executions: dict[str, Any]) -> None:
        self.executions = {e["execution_id"]: e for e in executions}
        self.queries: list[httpx.QueryParams] = []
        self.details: list[str] = []
        self.loop_token: list[str] | None = None  # tokens answered in turn, forever

    @property
    def requests(self) -> int:
        return len(self.queries) + len(self.details)

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert f"Bearer {KEY}" == request.headers["authorization"]
        path = request.url.path
        if path.startswith(DETAIL):
            job_id = unquote(request.url.raw_path.decode().split("?")[0].rsplit("/", 1)[1])
            self.details.append(job_id)
            found = self.executions.get(job_id)
            if found is None:
                return httpx.Response(404, json={"detail": "not found", "code": "WF_1100"})
            return httpx.Response(200, json={**found, "result": None})
        assert path == RUNS, path
        params = request.url.params
        self.queries.append(params)
        items = sorted(self.executions.values(), key=lambda e: str(e["start_time"]), reverse=True)
        if statuses := params.get_list("status"):
            items = [e for e in items if e["status"] in statuses]
        if "start_time_after" in params:
            bound = datetime.fromisoformat(params["start_time_after"])
            items = [e for e in items if (at := _started(e)) is None or at >= bound]
        if "workflow_identifier" in params:
            items = [e for e in items if e["workflow_name"] == params["workflow_identifier"]]
        if "deployment_name" in params:
            items = [e for e in items if e["deployment_name"] == params["deployment_name"]]
        size = int(params["page_size"])
        if self.loop_token is not None:
            token = self.loop_token[(len(self.queries) - 1) % len(self.loop_token)]
            return httpx.Response(200, json={"executions": items[:size], "next_page_token": token})
        offset = int(params.get("next_page_token") or 0)
        chunk = items[offset : offset + size]
        more = offset + size < len(items)
        return httpx.Response(
            200,
            json={"executions": chunk, "next_page_token": str(offset + size) if more else None},
        )


class Harness:
    """A Workflows source polled as the pipeline polls it: each job it returns is diffed
    against the snapshot last recorded; transitions after the first (silent) cycle are
    kept in ``reported``."""

    def __init__(self, api: RunsApi, **overrides: Any) -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(api.handler))
        self.api = api
        self.src = WorkflowsSource(config(**overrides), client)
        self.snapshots: dict[str, Snapshot] = {}
        self.cursor = Cursor()
        self.now = float(T + 3600)
        self.reported: list[Transition] = []
        self.results: list[PollResult] = []

    async def lookup(self, ids: Sequence[str]) -> Mapping[str, Snapshot]:
        return {i: self.snapshots[i] for i in ids if i in self.snapshots}

    async def poll(self, *, after: float = 30.0) -> PollResult:
        """One cycle at ``now``; the clock then moves on by ``after`` seconds."""
        active = {k: v for k, v in self.snapshots.items() if not v.terminal}
        baseline = not self.cursor.baseline_done
        ctx = PollContext(self.cursor, active, self.now, self.lookup)
        result = await self.src.poll(ctx)
        for job in result.jobs:
            self.snapshots[job.id], out = diff(
                self.snapshots.get(job.id), job, source="wf", kind=self.src.kind
            )
            if not baseline:
                self.reported.extend(out)
        self.cursor = result.cursor
        self.results.append(result)
        self.now += after
        return result

    def types(self) -> list[str]:
        return [t.type for t in self.reported]
