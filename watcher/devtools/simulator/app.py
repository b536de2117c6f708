"""The simulator's HTTP face: the fine-tuning, batch and Workflows APIs under ``/v1`` plus
the admin API.

``/v1`` answers like the real API (reference §2, §3, §9; batch reference §2): bearer auth,
FastAPI-style 422s, ``{"detail": ...}`` errors. Each ``/v1`` request is counted, then
checked in this order: the API key (401), retirement (410), the first queued fault matching
its route (see :mod:`watcher.devtools.simulator.admin`); only then does the engine advance
and answer.
Batch routes count as ``batch_list``/``batch_detail``; their cancel and DELETE as ``other``.
Every cancel (of any family) is also counted per job id: ``/_sim/stats`` ``cancels``.
The Workflows routes (:mod:`.workflows_app`) count as ``workflow_list``, ``workflow_detail``,
``workflow_stream``, ``workflow_events`` and ``workflow_action``; an unknown execution answers
404 ``{"detail", "code": "WF_1100"}``, an action on one that is not running 409 ``WF_1102``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watcher.devtools.simulator.admin import admin_routes
from watcher.devtools.simulator.batch import BATCH_ORDERS, BATCH_STATUSES, BatchOrder, SimBatch
from watcher.devtools.simulator.engine import (
    BatchJobNotFound,
    Conflict,
    ExecutionNotFound,
    Fault,
    JobNotFound,
    NotRunning,
    Simulator,
)
from watcher.devtools.simulator.engine import Route as RouteKind
from watcher.devtools.simulator.jobs import SimJob
from watcher.devtools.simulator.query import Answer, Invalid, ListQuery
from watcher.devtools.simulator.workflows_app import (
    EXECUTION_NOT_FOUND,
    NOT_RUNNING,
    workflow_routes,
)

Handler = Callable[[Request], Awaitable[Answer]]
NOT_FOUND = "No fine tuning job matches the given query."
BATCH_NOT_FOUND = "No batch job matches the given query."  # the real wording is unconfirmed
RETIRED = "This API has been retired"

_BAD_GATEWAY = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


def create_app(sim: Simulator, api_key: str) -> Starlette:
    """The ASGI app serving ``sim``; ``/v1`` routes require ``Bearer <api_key>``."""
    expected = f"Bearer {api_key}".encode()

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            f"Bearer {token.strip()}".encode(), expected
        )

    def v1(kind: RouteKind, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            sim.count_request(kind)
            sim.in_flight += 1
            try:
                return await _answer(sim, request, kind, handler, authorized)
            finally:
                sim.in_flight -= 1

        return endpoint

    async def list_jobs(request: Request) -> Answer:
        query = ListQuery(request)
        jobs = sim.list_jobs(
            model=query.params.get("model"),
            status=query.status(),
            created_after=query.timestamp("created_after"),
            created_before=query.timestamp("created_before"),
            created_by_me=query.boolean("created_by_me"),
            wandb_project=query.params.get("wandb_project"),
            wandb_name=query.params.get("wandb_name"),
            suffix=query.params.get("suffix"),
        )
        return query.page(jobs, SimJob.summary)

    async def get_job(request: Request) -> Answer:
        return 200, sim.get(request.path_params["job_id"]).detailed()

    async def cancel_job(request: Request) -> Answer:
        sim.count_cancel(request.path_params["job_id"])
        return 200, sim.cancel(request.path_params["job_id"]).detailed()

    async def start_job(request: Request) -> Answer:
        return 200, sim.start(request.path_params["job_id"]).detailed()

    async def list_batches(request: Request) -> Answer:
        # Unknown keys are ignored: the SDKs flatten a ``metadata`` filter into arbitrary
        # keys (batch reference §2), and whether the server reads them is unconfirmed.
        query = ListQuery(request)
        statuses = query.statuses("status", BATCH_STATUSES)
        order_by = query.choice("order_by", BATCH_ORDERS, "-created")
        created_after = query.timestamp("created_after")
        created_by_me = query.boolean("created_by_me")
        batches = sim.list_batches(
            model=query.params.get("model"),
            agent_id=query.params.get("agent_id"),
            statuses=statuses,
            created_after=created_after,
            created_by_me=created_by_me,
            order_by=cast(BatchOrder, order_by),
        )
        return query.page(batches, SimBatch.to_json)

    async def get_batch(request: Request) -> Answer:
        # ``inline`` is accepted and ignored: the simulator has no results to inline.
        return 200, sim.get_batch(request.path_params["job_id"]).to_json()

    async def cancel_batch(request: Request) -> Answer:
        sim.count_cancel(request.path_params["job_id"])
        return 200, sim.cancel_batch(request.path_params["job_id"]).to_json()

    async def delete_batch(request: Request) -> Answer:
        batch = sim.delete_batch(request.path_params["job_id"])
        return 200, {"id": batch.id, "object": "batch", "deleted": True}

    async def not_found(request: Request) -> Answer:
        return 404, {"detail": "Not Found"}

    base = "/v1/fine_tuning/jobs"
    batches = "/v1/batch/jobs"
    routes = [
        Route(base, v1("list", list_jobs), methods=["GET"]),
        Route(base + "/{job_id}", v1("detail", get_job), methods=["GET"]),
        Route(base + "/{job_id}/cancel", v1("other", cancel_job), methods=["POST"]),
        Route(base + "/{job_id}/start", v1("other", start_job), methods=["POST"]),
        Route(batches, v1("batch_list", list_batches), methods=["GET"]),
        Route(batches + "/{job_id}", v1("batch_detail", get_batch), methods=["GET"]),
        Route(batches + "/{job_id}", v1("other", delete_batch), methods=["DELETE"]),
        Route(batches + "/{job_id}/cancel", v1("other", cancel_batch), methods=["POST"]),
        *workflow_routes(sim, v1),
        Route("/v1/{rest:path}", v1("other", not_found), methods=_ALL_METHODS),
        *admin_routes(sim),
    ]
    return Starlette(routes=routes)


_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def _answer(
    sim: Simulator,
    request: Request,
    kind: RouteKind,
    handler: Handler,
    authorized: Callable[[Request], bool],
) -> Response:
    if not authorized(request):
        return JSONResponse(
            {"message": "Unauthorized", "request_id": secrets.token_hex(16)}, status_code=401
        )
    if sim.retired:
        return JSONResponse({"detail": RETIRED}, status_code=410)
    fault = sim.take_fault(kind)
    if fault is not None:
        if fault.mode == "slow":
            await anyio.sleep(fault.delay)
        elif fault.mode != "truncated":
            return _fault_response(fault, kind)
    sim.advance()
    try:
        status_code, body = await handler(request)
    except Invalid as exc:
        return JSONResponse({"detail": exc.errors}, status_code=422)
    except ExecutionNotFound:
        return JSONResponse(EXECUTION_NOT_FOUND, status_code=404)
    except NotRunning as exc:
        return JSONResponse({**NOT_RUNNING, "status": exc.status}, status_code=409)
    except BatchJobNotFound:
        return JSONResponse({"detail": BATCH_NOT_FOUND}, status_code=404)
    except JobNotFound:
        return JSONResponse({"detail": NOT_FOUND}, status_code=404)
    except Conflict as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    if isinstance(body, Response):  # a stream, or an answer without a body
        return body
    if fault is not None and fault.mode == "truncated" and status_code == 200:
        body = _truncate(body, "batch" if kind in ("batch_list", "batch_detail") else "job")
    return JSONResponse(body, status_code=status_code)


def _fault_response(fault: Fault, kind: RouteKind) -> Response:
    """The answer a queued fault gives instead of the real one."""
    headers = {}
    if fault.retry_after is not None and fault.mode in ("429", "503"):
        seconds = fault.retry_after
        headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    match fault.mode:
        case "429":
            body: dict[str, Any] = {
                "object": "error",
                "message": "Rate limit exceeded",
                "type": "rate_limited",
                "param": None,
                "code": "1300",
            }
            return JSONResponse(body, status_code=429, headers=headers)
        case "500":
            return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
        case "502":
            return Response(_BAD_GATEWAY, status_code=502, media_type="text/html")
        case "503":
            return JSONResponse(
                {"message": "Service temporarily unavailable"}, status_code=503, headers=headers
            )
        case "gone":
            return JSONResponse({"detail": RETIRED}, status_code=410)
        case _:  # malformed: a 200 whose JSON body stops short
            listing = kind in ("list", "batch_list")
            text = '{"object": "list", "total": 3, "data": [{"id": "' if listing else '{"id": "'
            return Response(text, status_code=200, media_type="application/json")


def _truncate(body: Any, kind: str) -> Any:
    """A list whose middle item lost its ``id`` (a lone job loses its own ``id``); a
    Workflows list or execution loses ``execution_id`` the same way."""
    if isinstance(body, dict) and isinstance(body.get("executions"), list):
        rows = list(body["executions"])
        if rows:
            middle = len(rows) // 2
            rows[middle] = {k: v for k, v in rows[middle].items() if k != "execution_id"}
        return {**body, "executions": rows}
    if isinstance(body, dict) and "execution_id" in body:
        return {k: v for k, v in body.items() if k != "execution_id"}
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        data = list(body["data"])
        if data:
            middle = len(data) // 2
            data[middle] = {k: v for k, v in data[middle].items() if k != "id"}
        else:
            data.append({"object": kind, "status": "RUNNING", "created_at": 0})
        return {**body, "data": data}
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k != "id"}
    return body
