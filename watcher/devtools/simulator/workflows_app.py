"""The Workflows routes under ``/v1/workflows`` (workflows reference §2 to §4, §7, §8).

=============================================================  ===========================
``GET  /v1/workflows/runs``                                    ``workflow_list``: one row
                                                               per execution (its latest
                                                               run), cursor pages
``GET  /v1/workflows/runs/{run_id}``                           ``workflow_detail``
``GET  /v1/workflows/executions/{execution_id}``               ``workflow_detail``
``POST /v1/workflows/executions/{execution_id}/cancel``        ``workflow_action``: 204
``POST /v1/workflows/executions/{execution_id}/terminate``     ``workflow_action``: 204
``POST /v1/workflows/executions/cancel`` | ``/terminate``      ``workflow_action``: batch
``GET  /v1/workflows/events/stream``                           ``workflow_stream`` (SSE,
                                                               :mod:`.workflows_stream`)
``GET  /v1/workflows/events/list``                             ``workflow_events``
=============================================================  ===========================

Listing: ``sort_by`` start_time (the default) or end_time (running executions count as
ending last), ``order`` desc by default, ties broken by ``execution_id``. The page token is a
keyset cursor (the last row's sort value and id), so rows added meanwhile are neither
skipped nor repeated; a token that does not decode, or that another sort made, is a 422.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from watcher.devtools.simulator.engine import ExecutionNotFound, NotRunning, Simulator
from watcher.devtools.simulator.engine import Route as RouteKind
from watcher.devtools.simulator.query import Answer, ListQuery
from watcher.devtools.simulator.workflows import SimExecution, execution_json
from watcher.devtools.simulator.workflows_stream import stream_events
from watcher.model.statuses import WORKFLOW_STATUSES

Handler = Callable[[Request], Awaitable[Answer]]
Wrap = Callable[[RouteKind, Handler], Callable[[Request], Awaitable[Response]]]

EXECUTION_NOT_FOUND = {"detail": "Workflow execution not found", "code": "WF_1100"}
NOT_RUNNING = {"detail": "Workflow not running", "code": "WF_1102"}
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DEFAULT_EVENTS_LIMIT = 100
MAX_BATCH = 100
_SORTS = ("start_time", "end_time")
_ORDERS = ("asc", "desc")
_INVALID_TOKEN = "Invalid page token"  # noqa: S105 (a message, not a secret)


def workflow_routes(sim: Simulator, v1: Wrap) -> list[Route]:
    """The ``/v1/workflows`` routes over ``sim``, each wrapped by ``v1`` (auth, faults,
    counting under its route kind)."""

    async def list_runs(request: Request) -> Answer:
        return 200, _list_runs(sim, ListQuery(request))

    async def get_execution(request: Request) -> Answer:
        execution = sim.get_execution(request.path_params["execution_id"])
        return 200, execution_json(execution, with_result=True)

    async def get_run(request: Request) -> Answer:
        execution, run = sim.get_run(request.path_params["run_id"])
        return 200, execution_json(execution, run, with_result=True)

    async def cancel(request: Request) -> Answer:
        sim.count_cancel(request.path_params["execution_id"])
        sim.cancel_execution(request.path_params["execution_id"])
        return 204, Response(status_code=204)

    async def terminate(request: Request) -> Answer:
        sim.terminate_execution(request.path_params["execution_id"])
        return 204, Response(status_code=204)

    async def batch_cancel(request: Request) -> Answer:
        return await _batch(request, sim.cancel_execution)

    async def batch_terminate(request: Request) -> Answer:
        return await _batch(request, sim.terminate_execution)

    async def stream(request: Request) -> Answer:
        return stream_events(sim, request)

    async def list_events(request: Request) -> Answer:
        return 200, _list_events(sim, ListQuery(request))

    base = "/v1/workflows"
    one = base + "/executions/{execution_id}"
    table: tuple[tuple[str, str, RouteKind, Handler], ...] = (
        ("GET", base + "/runs", "workflow_list", list_runs),
        ("GET", base + "/runs/{run_id}", "workflow_detail", get_run),
        ("POST", base + "/executions/cancel", "workflow_action", batch_cancel),
        ("POST", base + "/executions/terminate", "workflow_action", batch_terminate),
        ("GET", one, "workflow_detail", get_execution),
        ("POST", one + "/cancel", "workflow_action", cancel),
        ("POST", one + "/terminate", "workflow_action", terminate),
        ("GET", base + "/events/stream", "workflow_stream", stream),
        ("GET", base + "/events/list", "workflow_events", list_events),
    )
    return [Route(path, v1(kind, handler), methods=[verb]) for verb, path, kind, handler in table]


def _list_runs(sim: Simulator, query: ListQuery) -> dict[str, Any]:
    params = query.params
    statuses = query.statuses("status", WORKFLOW_STATUSES)
    sort_by = query.choice("sort_by", _SORTS, "start_time")
    order = query.choice("order", _ORDERS, "desc")
    size = query.integer("page_size", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    bounds = {
        name: query.timestamp(name)
        for name in ("start_time_after", "start_time_before", "end_time_after", "end_time_before")
    }
    token = params.get("next_page_token")
    after = None if token is None else _decode_token(token, sort_by, order)
    if token is not None and after is None:
        query.invalid("next_page_token", _INVALID_TOKEN, token)
    query.raise_errors()
    rows = sim.list_executions(
        workflow_identifier=params.get("workflow_identifier"),
        root_execution_id=params.get("root_execution_id"),
        statuses=statuses,
        deployment_name=params.get("deployment_name"),
        user_id=params.get("user_id"),
        start_after=bounds["start_time_after"],
        start_before=bounds["start_time_before"],
        end_after=bounds["end_time_after"],
        end_before=bounds["end_time_before"],
    )
    keyed = sorted(((_sort_value(row, sort_by), row.execution_id), row) for row in rows)
    if order == "desc":
        keyed.reverse()
    if after is not None:
        keyed = [(k, row) for k, row in keyed if (k > after if order == "asc" else k < after)]
    page = keyed[:size]
    more = len(keyed) > size
    return {
        "executions": [execution_json(row, with_result=False) for _, row in page],
        "next_page_token": _encode_token(page[-1][0], sort_by, order) if more else None,
    }


def _sort_value(execution: SimExecution, sort_by: str) -> float:
    run = execution.run
    if sort_by == "end_time":
        return math.inf if run.end is None else run.end
    return run.start


def _encode_token(key: tuple[float, str], sort_by: str, order: str) -> str:
    value, execution_id = key
    raw = {"v": None if math.isinf(value) else value, "i": execution_id, "s": sort_by, "o": order}
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def _decode_token(token: str, sort_by: str, order: str) -> tuple[float, str] | None:
    """The keyset position a token stands for, or None if it is not one of ours for this
    sort."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(raw, dict) or raw.get("s") != sort_by or raw.get("o") != order:
        return None
    value, execution_id = raw.get("v"), raw.get("i")
    if not isinstance(execution_id, str):
        return None
    if value is None:
        return math.inf, execution_id
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value), execution_id


def _list_events(sim: Simulator, query: ListQuery) -> dict[str, Any]:
    """``GET /v1/workflows/events/list`` (§7.9): events in broker order; ``next_cursor``
    is null once no further event exists yet."""
    params = query.params
    limit = query.integer("limit", DEFAULT_EVENTS_LIMIT, minimum=1, maximum=MAX_PAGE_SIZE)
    cursor = params.get("cursor")
    start = 0
    if cursor is not None:
        try:
            start = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        except (ValueError, binascii.Error):
            query.invalid("cursor", "Invalid cursor", cursor)
    query.raise_errors()
    root = params.get("root_workflow_exec_id")
    execution_id = params.get("workflow_exec_id")
    run_id = params.get("workflow_run_id")
    events = sim.events_from(
        start,
        lambda e: (
            root in (None, e.root_execution_id)
            and execution_id in (None, e.execution_id)
            and run_id in (None, e.run_id)
        ),
        limit + 1,
    )
    page = events[:limit]
    more = len(events) > limit
    next_cursor = None
    if more:
        next_cursor = base64.urlsafe_b64encode(str(page[-1].seq + 1).encode()).decode()
    return {"events": [e.data for e in page], "next_cursor": next_cursor}


async def _batch(request: Request, act: Callable[[str], object]) -> Answer:
    """``POST /v1/workflows/executions/cancel|terminate`` with ``{"execution_ids": [...]}``."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    ids = body.get("execution_ids") if isinstance(body, dict) else None
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_BATCH
        or not all(isinstance(i, str) for i in ids)
    ):
        error = {
            "type": "value_error",
            "loc": ["body", "execution_ids"],
            "msg": f"execution_ids must list 1 to {MAX_BATCH} execution ids",
            "input": ids,
        }
        return 422, {"detail": [error]}
    results: dict[str, dict[str, Any]] = {}
    for execution_id in ids:
        try:
            act(execution_id)
        except ExecutionNotFound:
            results[execution_id] = {"status": "failure", "error": EXECUTION_NOT_FOUND["detail"]}
        except NotRunning:
            results[execution_id] = {"status": "failure", "error": NOT_RUNNING["detail"]}
        else:
            results[execution_id] = {"status": "success", "error": None}
    return 200, {"results": results}
