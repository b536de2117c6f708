"""The admin API under ``/_sim/``: tests and the demo drive the simulator through it.

No auth, but only loopback clients are served (403 otherwise). JSON in and out; a bad
request body answers 400 ``{"detail": "<field>: <problem>"}``, an unknown job 404.

=========================================  ==================================================
``GET  /_sim/stats``                       ``{"requests": {"list", "detail", "other",
                                           "total"}, "in_flight"}`` (``/v1`` requests only;
                                           ``batch_list``/``batch_detail`` too once the
                                           batch API is in use)
``POST /_sim/stats/reset``                 zero the counters; answers the stats
``GET  /_sim/jobs``                        ``{"jobs": [detailed...], "names": {name: id}}``
``POST /_sim/jobs``                        create (see :func:`_create_jobs`) → ``{"ids"}``
``DELETE /_sim/jobs``                      forget every job (batch jobs too) and the log
``GET  /_sim/jobs/{id}``                   one detailed job
``POST /_sim/jobs/{id}/status``            ``{"status", "steps"?, "checkpoints"?}``: apply now
``POST /_sim/jobs/{id}/checkpoint``        add the next checkpoint; answers the job
``GET  /_sim/batch/jobs``                  ``{"jobs": [batch...], "names": {name: id}}``
``POST /_sim/batch/jobs``                  create (see :func:`_create_batches`) → ``{"ids"}``
``GET  /_sim/batch/jobs/{id}``             one batch job
``POST /_sim/batch/jobs/{id}/status``      ``{"status", "steps"?}``: apply now
``POST /_sim/batch/jobs/{id}/progress``    ``{"completed"?, "failed"?}``: set the counters
``GET  /_sim/log``                         ``{"log": [{"job_id", "previous_status",
                                           "status", "at", "kind"}...]}`` in applied order;
                                           ``kind`` is ``fine_tuning`` or ``batch``
``GET|POST|DELETE /_sim/faults``           ``{"faults": [...]}``; POST queues one fault
                                           (``route``: list, detail, batch_list,
                                           batch_detail or all; ``rate``: the share of
                                           matching requests it hits, 1 by default)
``POST|DELETE /_sim/retire``               every ``/v1`` route answers 410 / normal again
=========================================  ==================================================
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watcher.devtools.simulator.engine import (
    FAULT_MODES,
    FAULT_ROUTES,
    Fault,
    FaultRoute,
    JobNotFound,
    Simulator,
)
from watcher.devtools.simulator.scenario import batch_spec, job_spec, steps_from

_SPEC_KEYS = frozenset(
    {
        "job_type", "model", "suffix", "status", "steps", "checkpoints", "auto_start",
        "events_order", "frozen", "created_by_me", "wandb_project", "wandb_name",
        "repository", "name",
    }
)  # fmt: skip
_CREATE_KEYS = _SPEC_KEYS | {"count", "created_at", "log"}
_BATCH_SPEC_KEYS = frozenset(
    {
        "name", "endpoint", "model", "agent_id", "metadata", "status", "steps",
        "total_requests", "failure_rate", "errors", "progress", "total_while_queued", "frozen",
        "created_by_me",
    }
)  # fmt: skip
_BATCH_CREATE_KEYS = _BATCH_SPEC_KEYS | {"count", "created_at", "log"}
MAX_BULK = 100_000


class _BadRequest(ValueError):
    """The admin request body is not usable; the message names the field."""


def admin_routes(sim: Simulator) -> list[Route]:
    """The ``/_sim/`` routes over ``sim``."""

    def admin(
        handler: Callable[[Request], Awaitable[Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not _is_loopback(request):
                return JSONResponse({"detail": "admin API is loopback only"}, status_code=403)
            sim.advance()
            try:
                return JSONResponse(await handler(request))
            except (_BadRequest, ValueError) as exc:
                return JSONResponse({"detail": str(exc)}, status_code=400)
            except JobNotFound as exc:
                return JSONResponse({"detail": f"no job {exc.args[0]!r}"}, status_code=404)

        return endpoint

    async def stats(request: Request) -> Any:
        return sim.stats()

    async def reset_stats(request: Request) -> Any:
        sim.reset_stats()
        return sim.stats()

    async def all_jobs(request: Request) -> Any:
        return {"jobs": [job.detailed() for job in sim.jobs.values()], "names": dict(sim.names)}

    async def create_jobs(request: Request) -> Any:
        return {"ids": _create_jobs(sim, await _body(request))}

    async def clear_jobs(request: Request) -> Any:
        sim.clear()
        return {"jobs": []}

    async def one_job(request: Request) -> Any:
        return sim.get(request.path_params["job_id"]).detailed()

    async def set_status(request: Request) -> Any:
        body = await _body(request)
        _only(body, {"status", "steps", "checkpoints"})
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise _BadRequest("status: must be a non-empty string")
        job = sim.set_status(
            request.path_params["job_id"],
            status,
            steps=steps_from(body.get("steps"), where="steps"),
            checkpoints=_count(body, "checkpoints", 0),
        )
        return job.detailed()

    async def add_checkpoint(request: Request) -> Any:
        return sim.add_checkpoint(request.path_params["job_id"]).detailed()

    async def all_batches(request: Request) -> Any:
        return {
            "jobs": [batch.to_json() for batch in sim.batch_jobs.values()],
            "names": dict(sim.batch_names),
        }

    async def create_batches(request: Request) -> Any:
        return {"ids": _create_batches(sim, await _body(request))}

    async def one_batch(request: Request) -> Any:
        return sim.get_batch(request.path_params["job_id"]).to_json()

    async def set_batch_status(request: Request) -> Any:
        body = await _body(request)
        _only(body, {"status", "steps"})
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise _BadRequest("status: must be a non-empty string")
        batch = sim.set_batch_status(
            request.path_params["job_id"],
            status,
            steps=steps_from(body.get("steps"), where="steps"),
        )
        return batch.to_json()

    async def set_batch_progress(request: Request) -> Any:
        body = await _body(request)
        _only(body, {"completed", "failed"})
        batch = sim.get_batch(request.path_params["job_id"])
        completed = _count(body, "completed", batch.completed_requests)
        failed = _count(body, "failed", batch.failed_requests) if "failed" in body else None
        return sim.set_batch_progress(batch.id, completed, failed).to_json()

    async def log(request: Request) -> Any:
        return {"log": list(sim.log)}

    async def faults(request: Request) -> Any:
        if request.method == "POST":
            sim.add_fault(_fault(await _body(request)))
        elif request.method == "DELETE":
            sim.faults.clear()
        return {"faults": [fault.to_json() for fault in sim.faults]}

    async def retire(request: Request) -> Any:
        sim.retired = request.method == "POST"
        return {"retired": sim.retired}

    return [
        Route("/_sim/stats", admin(stats), methods=["GET"]),
        Route("/_sim/stats/reset", admin(reset_stats), methods=["POST"]),
        Route("/_sim/jobs", admin(all_jobs), methods=["GET"]),
        Route("/_sim/jobs", admin(create_jobs), methods=["POST"]),
        Route("/_sim/jobs", admin(clear_jobs), methods=["DELETE"]),
        Route("/_sim/jobs/{job_id}", admin(one_job), methods=["GET"]),
        Route("/_sim/jobs/{job_id}/status", admin(set_status), methods=["POST"]),
        Route("/_sim/jobs/{job_id}/checkpoint", admin(add_checkpoint), methods=["POST"]),
        Route("/_sim/batch/jobs", admin(all_batches), methods=["GET"]),
        Route("/_sim/batch/jobs", admin(create_batches), methods=["POST"]),
        Route("/_sim/batch/jobs/{job_id}", admin(one_batch), methods=["GET"]),
        Route("/_sim/batch/jobs/{job_id}/status", admin(set_batch_status), methods=["POST"]),
        Route("/_sim/batch/jobs/{job_id}/progress", admin(set_batch_progress), methods=["POST"]),
        Route("/_sim/log", admin(log), methods=["GET"]),
        Route("/_sim/faults", admin(faults), methods=["GET", "POST", "DELETE"]),
        Route("/_sim/retire", admin(retire), methods=["POST", "DELETE"]),
    ]


def _create_jobs(sim: Simulator, body: dict[str, Any]) -> list[str]:
    """``POST /_sim/jobs``: ``count`` jobs alike, created now.

    Body keys (all optional): ``count`` (1), ``job_type``, ``model``, ``suffix``, ``status``
    (QUEUED; any string), ``steps`` ([[STATUS, seconds from now], ...]), ``checkpoints``,
    ``frozen``, ``auto_start``, ``events_order``, ``created_at`` (int Unix seconds),
    ``created_by_me``, ``wandb_project``, ``wandb_name``, ``repository`` ("owner/name"),
    ``name``, ``log`` (false: bulk jobs stay out of the applied log; default true for one job).
    """
    _only(body, _CREATE_KEYS)
    count, created_at, log = _bulk(body)
    spec = job_spec({k: v for k, v in body.items() if k in _SPEC_KEYS})
    if spec.name is not None and count > 1:
        raise _BadRequest("name: only for a single job (count 1)")
    if count == 1:
        return [sim.create(spec, created_at=created_at, log=log).id]
    return sim.create_many(spec, count, created_at=created_at, log=log)


def _create_batches(sim: Simulator, body: dict[str, Any]) -> list[str]:
    """``POST /_sim/batch/jobs``: ``count`` batch jobs alike, created now.

    Body keys (all optional): ``count`` (1), ``name``, ``status`` (QUEUED; any string),
    ``steps`` ([[STATUS, seconds from now], ...]), ``total_requests`` (100),
    ``failure_rate`` (0..1), ``errors`` (messages), ``progress`` (0..1, done at creation),
    ``total_while_queued``, ``frozen``, ``model`` (null sends null), ``agent_id``,
    ``endpoint``, ``metadata`` (object or null), ``created_by_me``, ``created_at`` (int
    Unix seconds), ``log`` (false: bulk jobs stay out of the applied log; default true for
    one job). See :class:`~watcher.simulator.batch.BatchSpec`.
    """
    _only(body, _BATCH_CREATE_KEYS)
    count, created_at, log = _bulk(body)
    spec = batch_spec({k: v for k, v in body.items() if k in _BATCH_SPEC_KEYS})
    if spec.name is not None and count > 1:
        raise _BadRequest("name: only for a single job (count 1)")
    if count == 1:
        return [sim.create_batch(spec, created_at=created_at, log=log).id]
    return sim.create_batches(spec, count, created_at=created_at, log=log)


def _bulk(body: dict[str, Any]) -> tuple[int, int | None, bool]:
    """The ``count``, ``created_at`` and ``log`` keys shared by both creation bodies."""
    count = _count(body, "count", 1)
    if not 1 <= count <= MAX_BULK:
        raise _BadRequest(f"count: must be between 1 and {MAX_BULK}")
    created_at = body.get("created_at")
    if created_at is not None and (isinstance(created_at, bool) or not isinstance(created_at, int)):
        raise _BadRequest("created_at: must be an integer (Unix seconds) or null")
    log = body.get("log", count == 1)
    if not isinstance(log, bool):
        raise _BadRequest("log: must be true or false")
    return count, created_at, log


def _fault(body: dict[str, Any]) -> Fault:
    _only(body, {"mode", "count", "retry_after", "delay", "route", "rate"})
    mode = body.get("mode")
    if not isinstance(mode, str) or mode not in FAULT_MODES:
        raise _BadRequest(f"mode: must be one of {', '.join(sorted(FAULT_MODES))}")
    count = body.get("count", 1)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise _BadRequest("count: must be a positive integer or null (until cleared)")
    route = body.get("route", "all")
    if route not in FAULT_ROUTES:
        raise _BadRequest(f"route: must be one of {', '.join(FAULT_ROUTES)}")
    retry_after = body.get("retry_after")
    if retry_after is not None:
        retry_after = _seconds(retry_after, "retry_after")
    rate = body.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise _BadRequest("rate: must be a number above 0 and at most 1")
    return Fault(
        mode=mode,
        count=count,
        retry_after=retry_after,
        delay=_seconds(body.get("delay", 1.0), "delay"),
        route=cast(FaultRoute, route),
        rate=float(rate),
    )


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _BadRequest("body: not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("body: must be a JSON object")
    return body


def _only(body: dict[str, Any], allowed: frozenset[str] | set[str]) -> None:
    for key in body:
        if key not in allowed:
            raise _BadRequest(f"{key}: unknown field")


def _count(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadRequest(f"{key}: must be a non-negative integer")
    return value


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _BadRequest(f"{key}: must be a number of seconds")
    if value < 0:
        raise _BadRequest(f"{key}: must not be negative")
    return float(value)


def _is_loopback(request: Request) -> bool:
    if request.client is None:
        return True  # not TCP (a Unix socket, or an in-process ASGI transport)
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return request.client.host in ("localhost", "testclient")
