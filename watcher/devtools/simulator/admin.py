"""The admin API under ``/_sim/``: tests and the demo drive the simulator through it.

No auth, but only loopback clients are served (403 otherwise). JSON in and out; a bad
request body answers 400 ``{"detail": "<field>: <problem>"}``, an unknown job 404.

=========================================  ==================================================
``GET  /_sim/stats``                       ``{"requests": {"list", "detail", "other",
                                           "total"}, "in_flight"}`` (``/v1`` requests only;
                                           ``batch_list``/``batch_detail`` too once the
                                           batch API is in use)
``GET  /_sim/cancels``                     ``{"cancels": {job id: n}}``: cancel requests
                                           per job, any family, whatever the answer
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
                                           batch_detail, workflow_list, workflow_detail,
                                           workflow_stream, workflow_events,
                                           workflow_action or all; ``rate``: the share of
                                           matching requests it hits, 1 by default)
``POST|DELETE /_sim/retire``               every ``/v1`` route answers 410 / normal again
``… /_sim/workflows…``                     workflow executions, their actions, stream
                                           counters and stream faults: see
                                           :mod:`watcher.devtools.simulator.workflows_admin`
=========================================  ==================================================

``/_sim/stats`` also shows the ``workflow_*`` request kinds and a ``workflow_streams``
summary (``opened``, ``open``, ``events_sent``, ``replays_from_zero``) once the Workflows
API is in use; ``/_sim/stats/reset`` zeroes those too. ``DELETE /_sim/jobs`` forgets the
workflow executions as well.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watcher.devtools.simulator.batch import BatchSpec
from watcher.devtools.simulator.bodies import BadRequest, json_body, only
from watcher.devtools.simulator.engine import (
    FAULT_MODES,
    FAULT_ROUTES,
    Conflict,
    Fault,
    FaultRoute,
    JobNotFound,
    Simulator,
)
from watcher.devtools.simulator.jobs import JobSpec
from watcher.devtools.simulator.scenario import (
    BATCH_FIELDS,
    JOB_FIELDS,
    batch_spec,
    job_spec,
    seconds_from,
    steps_from,
)
from watcher.devtools.simulator.workflows_admin import WORKFLOW_TABLE

# The admin API creates jobs now: a spec's ``create_after`` has no meaning there.
_SPEC_KEYS = JOB_FIELDS - {"create_after"}
_BATCH_SPEC_KEYS = BATCH_FIELDS - {"create_after"}
_BULK_KEYS = frozenset({"count", "created_at", "log"})
MAX_BULK = 100_000


_Spec = TypeVar("_Spec", JobSpec, BatchSpec)


_BadRequest = BadRequest


Handler = Callable[[Simulator, Request], Awaitable[Any]]


def admin_routes(sim: Simulator) -> list[Route]:
    """The ``/_sim/`` routes over ``sim``."""
    return [
        Route(path, _admin(sim, handler), methods=list(methods))
        for path, methods, handler in (*_TABLE, *WORKFLOW_TABLE)
    ]


def _admin(sim: Simulator, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` for loopback clients only, after the simulator caught up with time; its
    answer as JSON, a bad body 400, an unknown job 404, a conflict (an action on an
    execution that is not running) 409."""

    async def endpoint(request: Request) -> Response:
        if not _is_loopback(request):
            return JSONResponse({"detail": "admin API is loopback only"}, status_code=403)
        sim.advance()
        try:
            return JSONResponse(await handler(sim, request))
        except Conflict as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        except (_BadRequest, ValueError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        except JobNotFound as exc:
            return JSONResponse({"detail": f"no job {exc.args[0]!r}"}, status_code=404)

    return endpoint


async def _stats(sim: Simulator, request: Request) -> Any:
    return sim.stats()


async def _reset_stats(sim: Simulator, request: Request) -> Any:
    sim.reset_stats()
    return sim.stats()


async def _cancels(sim: Simulator, request: Request) -> Any:
    return {"cancels": dict(sim.cancels)}


async def _all_jobs(sim: Simulator, request: Request) -> Any:
    return {"jobs": [job.detailed() for job in sim.jobs.values()], "names": dict(sim.names)}


async def _post_jobs(sim: Simulator, request: Request) -> Any:
    return {"ids": _create_jobs(sim, await json_body(request))}


async def _clear_jobs(sim: Simulator, request: Request) -> Any:
    sim.clear()
    return {"jobs": []}


async def _one_job(sim: Simulator, request: Request) -> Any:
    return sim.get(request.path_params["job_id"]).detailed()


async def _set_status(sim: Simulator, request: Request) -> Any:
    body = await json_body(request)
    only(body, {"status", "steps", "checkpoints"})
    job = sim.set_status(
        request.path_params["job_id"],
        _status(body),
        steps=steps_from(body.get("steps"), where="steps"),
        checkpoints=_count(body, "checkpoints", 0),
    )
    return job.detailed()


async def _add_checkpoint(sim: Simulator, request: Request) -> Any:
    return sim.add_checkpoint(request.path_params["job_id"]).detailed()


async def _all_batches(sim: Simulator, request: Request) -> Any:
    return {
        "jobs": [batch.to_json() for batch in sim.batch_jobs.values()],
        "names": dict(sim.batch_names),
    }


async def _post_batches(sim: Simulator, request: Request) -> Any:
    return {"ids": _create_batches(sim, await json_body(request))}


async def _one_batch(sim: Simulator, request: Request) -> Any:
    return sim.get_batch(request.path_params["job_id"]).to_json()


async def _set_batch_status(sim: Simulator, request: Request) -> Any:
    body = await json_body(request)
    only(body, {"status", "steps"})
    batch = sim.set_batch_status(
        request.path_params["job_id"],
        _status(body),
        steps=steps_from(body.get("steps"), where="steps"),
    )
    return batch.to_json()


async def _set_batch_progress(sim: Simulator, request: Request) -> Any:
    body = await json_body(request)
    only(body, {"completed", "failed"})
    batch = sim.get_batch(request.path_params["job_id"])
    completed = _count(body, "completed", batch.completed_requests)
    failed = _count(body, "failed", batch.failed_requests) if "failed" in body else None
    return sim.set_batch_progress(batch.id, completed, failed).to_json()


async def _log(sim: Simulator, request: Request) -> Any:
    return {"log": list(sim.log)}


async def _faults(sim: Simulator, request: Request) -> Any:
    if request.method == "POST":
        sim.add_fault(_fault(await json_body(request)))
    elif request.method == "DELETE":
        sim.faults.clear()
    return {"faults": [fault.to_json() for fault in sim.faults]}


async def _retire(sim: Simulator, request: Request) -> Any:
    sim.retired = request.method == "POST"
    return {"retired": sim.retired}


_TABLE: tuple[tuple[str, tuple[str, ...], Handler], ...] = (
    ("/_sim/stats", ("GET",), _stats),
    ("/_sim/stats/reset", ("POST",), _reset_stats),
    ("/_sim/cancels", ("GET",), _cancels),
    ("/_sim/jobs", ("GET",), _all_jobs),
    ("/_sim/jobs", ("POST",), _post_jobs),
    ("/_sim/jobs", ("DELETE",), _clear_jobs),
    ("/_sim/jobs/{job_id}", ("GET",), _one_job),
    ("/_sim/jobs/{job_id}/status", ("POST",), _set_status),
    ("/_sim/jobs/{job_id}/checkpoint", ("POST",), _add_checkpoint),
    ("/_sim/batch/jobs", ("GET",), _all_batches),
    ("/_sim/batch/jobs", ("POST",), _post_batches),
    ("/_sim/batch/jobs/{job_id}", ("GET",), _one_batch),
    ("/_sim/batch/jobs/{job_id}/status", ("POST",), _set_batch_status),
    ("/_sim/batch/jobs/{job_id}/progress", ("POST",), _set_batch_progress),
    ("/_sim/log", ("GET",), _log),
    ("/_sim/faults", ("GET", "POST", "DELETE"), _faults),
    ("/_sim/retire", ("POST", "DELETE"), _retire),
)


def _create_jobs(sim: Simulator, body: dict[str, Any]) -> list[str]:
    """``POST /_sim/jobs``: ``count`` jobs alike, created now.

    Body keys (all optional): ``count`` (1), ``job_type``, ``model``, ``suffix``, ``status``
    (QUEUED; any string), ``steps`` ([[STATUS, seconds from now], ...]), ``checkpoints``,
    ``frozen``, ``auto_start``, ``events_order``, ``created_at`` (int Unix seconds),
    ``created_by_me``, ``wandb_project``, ``wandb_name``, ``repository`` ("owner/name"),
    ``name``, ``log`` (false: bulk jobs stay out of the applied log; default true for one job).
    """
    spec, count, created_at, log = _creation(body, _SPEC_KEYS, job_spec)
    return sim.create_many(spec, count, created_at=created_at, log=log)


def _create_batches(sim: Simulator, body: dict[str, Any]) -> list[str]:
    """``POST /_sim/batch/jobs``: ``count`` batch jobs alike, created now.

    Body keys (all optional): ``count`` (1), ``name``, ``status`` (QUEUED; any string),
    ``steps`` ([[STATUS, seconds from now], ...]), ``total_requests`` (100),
    ``failure_rate`` (0..1), ``errors`` (messages), ``progress`` (0..1, done at creation),
    ``total_while_queued``, ``frozen``, ``model`` (null sends null), ``agent_id``,
    ``endpoint``, ``metadata`` (object or null), ``created_by_me``, ``created_at`` (int
    Unix seconds), ``log`` (false: bulk jobs stay out of the applied log; default true for
    one job). See :class:`~watcher.devtools.simulator.batch.BatchSpec`.
    """
    spec, count, created_at, log = _creation(body, _BATCH_SPEC_KEYS, batch_spec)
    return sim.create_batches(spec, count, created_at=created_at, log=log)


def _creation(
    body: dict[str, Any], spec_keys: frozenset[str], parse: Callable[[dict[str, Any]], _Spec]
) -> tuple[_Spec, int, int | None, bool]:
    """The spec of a creation body, and how many jobs alike to create, when and logged how."""
    only(body, spec_keys | _BULK_KEYS)
    count, created_at, log = _bulk(body)
    spec = parse({k: v for k, v in body.items() if k in spec_keys})
    if spec.name is not None and count > 1:
        raise _BadRequest("name: only for a single job (count 1)")
    return spec, count, created_at, log


def _status(body: dict[str, Any]) -> str:
    status = body.get("status")
    if not isinstance(status, str) or not status:
        raise _BadRequest("status: must be a non-empty string")
    return status


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
    only(body, {"mode", "count", "retry_after", "delay", "route", "rate"})
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
        retry_after = seconds_from(retry_after, "retry_after")
    rate = body.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise _BadRequest("rate: must be a number above 0 and at most 1")
    return Fault(
        mode=mode,
        count=count,
        retry_after=retry_after,
        delay=seconds_from(body.get("delay", 1.0), "delay"),
        route=cast(FaultRoute, route),
        rate=float(rate),
    )


def _count(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadRequest(f"{key}: must be a non-negative integer")
    return value


def _is_loopback(request: Request) -> bool:
    if request.client is None:
        return True  # not TCP (a Unix socket, or an in-process ASGI transport)
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return request.client.host in ("localhost", "testclient")
