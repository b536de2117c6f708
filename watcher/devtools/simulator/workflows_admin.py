"""The admin API's Workflows routes under ``/_sim/workflows`` (served by :mod:`.admin`, with
its conventions: loopback only, JSON in and out, 400 ``{"detail": "<field>: <problem>"}``
for a bad body, 404 for an unknown execution, 409 for an action on one that is not running).

``{execution_id}`` also accepts an execution's scenario ``name``. An execution is shown as
the API's detail plus ``name`` and ``runs`` ([{run_id, attempt, status, start_time,
end_time, continued_run_id}...]). Every action is effective at once.

===============================================  =========================================
``GET    /_sim/workflows``                       ``{"executions": [...], "names": {name:
                                                 execution_id}}``
``POST   /_sim/workflows``                       create one (see :func:`_create`) → it
``DELETE /_sim/workflows``                       forget every execution and its events
                                                 (broker sequences go on)
``GET    /_sim/workflows/events``                ``{"events": [StreamEventSsePayload...]}``,
                                                 ``?start_seq=N`` from N on
``GET    /_sim/workflows/streams``               ``{"opened", "open", "events_sent",
                                                 "replays_from_zero", "connections": [{id,
                                                 filter, start_seq, requested_start_seq,
                                                 last_event_id, events_sent, next_seq, open,
                                                 closed_by}...], "faults"}``
``POST   /_sim/workflows/streams/reset``         zero the stream counters (also done by
                                                 ``POST /_sim/stats/reset``)
``POST   /_sim/workflows/streams/idle-close``    ``{"after": N|null}``: the server closes
                                                 each open stream N s after it opened (or
                                                 after this call); null stops it
``POST   /_sim/workflows/streams/error``         ``{"error"?, "reason"?, "close"?: true}``:
                                                 open streams send ``event: error`` with
                                                 ``data: {"error", "reason"}`` (defaults: a
                                                 message and ``stream_error``), then close
                                                 → ``{"streams": n}``
``POST   /_sim/workflows/streams/outage``        ``{"seconds": D}``: for D s open streams
                                                 close and new ones answer 503 (the JSON
                                                 routes still answer)
``POST   /_sim/workflows/streams/refuse``        ``{"status": 4xx|null, "count"?: n|null}``:
                                                 new streams answer that status (n times,
                                                 null: until cleared)
``POST   /_sim/workflows/streams/ping``          ``{"interval": s}``: seconds between
                                                 keep-alive ``: ping`` lines (15 by default)
``DELETE /_sim/workflows/streams/faults``        clear idle-close, outage and refuse
``GET    /_sim/workflows/{execution_id}``        one execution
``POST   /_sim/workflows/{execution_id}/ACTION`` ACTION one of ``activity_started``,
                                                 ``activity_retrying``, ``activity_completed``,
                                                 ``activity_failed``, ``fail``, ``complete``,
                                                 ``cancel``, ``terminate``, ``time_out``,
                                                 ``continue_as_new``; body: its params
                                                 (``activity``, ``message``, ``retry`` (fail:
                                                 a workflow-level retry), ``result``,
                                                 ``reason``, ``input``) → the execution
===============================================  =========================================

Stream fault times are real seconds (unscaled), like the ``slow`` fault's delay.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from watcher.devtools.simulator.bodies import json_body, only
from watcher.devtools.simulator.engine import Simulator
from watcher.devtools.simulator.workflows import ACTIONS, admin_json
from watcher.devtools.simulator.workflows_scenario import WORKFLOW_FIELDS, step_with, workflow_spec
from watcher.devtools.simulator.workflows_streams import STREAM_ERROR, STREAM_ERROR_REASON

Handler = Callable[[Simulator, Request], Awaitable[Any]]

# The admin API creates executions now: ``create_after`` has no meaning there.
_CREATE_KEYS = (WORKFLOW_FIELDS - {"create_after"}) | {"parent_execution_id"}


async def _all(sim: Simulator, request: Request) -> Any:
    return {
        "executions": [admin_json(e) for e in sim.executions.values()],
        "names": dict(sim.workflow_names),
    }


async def _create(sim: Simulator, request: Request) -> Any:
    """``POST /_sim/workflows``: one execution, RUNNING from now.

    Body keys (all optional): ``workflow_name``, ``deployment_name`` (null sends null),
    ``execution_id`` (drawn when absent; an existing one is a 409), ``parent_execution_id``
    (or ``parent``: an execution id or scenario name; makes a sub-workflow), ``user_id``,
    ``input`` (object), ``name``, ``steps`` (a script, seconds from now: see
    :mod:`.workflows_scenario`).
    """
    body = await json_body(request)
    only(body, _CREATE_KEYS)
    if "parent_execution_id" in body:
        if "parent" in body:
            raise ValueError("parent_execution_id: give it or parent, not both")
        body["parent"] = body.pop("parent_execution_id")
    return admin_json(sim.create_execution(workflow_spec(body)))


async def _clear(sim: Simulator, request: Request) -> Any:
    sim.clear_workflows()
    return {"executions": []}


async def _events(sim: Simulator, request: Request) -> Any:
    raw = request.query_params.get("start_seq", "0")
    try:
        start = int(raw)
    except ValueError:
        raise ValueError("start_seq: must be an integer") from None
    return {"events": [e.payload() for e in sim.events_from(start, lambda e: True)]}


async def _streams(sim: Simulator, request: Request) -> Any:
    return sim.stream_stats()


async def _reset_streams(sim: Simulator, request: Request) -> Any:
    sim.reset_stream_stats()
    return sim.stream_stats()


async def _idle_close(sim: Simulator, request: Request) -> Any:
    body = await json_body(request)
    only(body, {"after"})
    after = body.get("after")
    sim.set_idle_close(None if after is None else _seconds(after, "after", positive=True))
    return sim.stream_stats()


async def _error(sim: Simulator, request: Request) -> Any:
    body = await json_body(request)
    only(body, {"error", "reason", "close"})
    error, reason = body.get("error", STREAM_ERROR), body.get("reason", STREAM_ERROR_REASON)
    close = body.get("close", True)
    if not isinstance(error, str) or not isinstance(reason, str):
        raise ValueError("error, reason: must be strings")
    if not isinstance(close, bool):
        raise ValueError("close: must be true or false")
    return {"streams": sim.inject_stream_error(error, reason, close=close)}


async def _outage(sim: Simulator, request: Request) -> Any:
    body = await json_body(request)
    only(body, {"seconds"})
    sim.start_outage(_seconds(body.get("seconds"), "seconds", positive=True))
    return sim.stream_stats()


async def _refuse(sim: Simulator, request: Request) -> Any:
    body = await json_body(request)
    only(body, {"status", "count"})
    status, count = body.get("status"), body.get("count")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 499
    ):
        raise ValueError("status: must be a 4xx status code or null")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError("count: must be a positive integer or null (until cleared)")
    sim.refuse_streams(status, count)
    return sim.stream_stats()


async def _ping(sim: Simulator, request: Request) -> Any:
    body = await json_body(request)
    only(body, {"interval"})
    sim.set_ping_interval(_seconds(body.get("interval"), "interval", positive=True))
    return sim.stream_stats()


async def _clear_faults(sim: Simulator, request: Request) -> Any:
    sim.clear_stream_faults()
    return sim.stream_stats()


async def _one(sim: Simulator, request: Request) -> Any:
    return admin_json(sim.get_execution(_execution_id(sim, request)))


async def _act(sim: Simulator, request: Request) -> Any:
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise ValueError(f"action: must be one of {', '.join(ACTIONS)}")
    step = step_with(action, await json_body(request), where="")
    return admin_json(sim.act(_execution_id(sim, request), step))


WORKFLOW_TABLE: tuple[tuple[str, tuple[str, ...], Handler], ...] = (
    ("/_sim/workflows", ("GET",), _all),
    ("/_sim/workflows", ("POST",), _create),
    ("/_sim/workflows", ("DELETE",), _clear),
    ("/_sim/workflows/events", ("GET",), _events),
    ("/_sim/workflows/streams", ("GET",), _streams),
    ("/_sim/workflows/streams/reset", ("POST",), _reset_streams),
    ("/_sim/workflows/streams/idle-close", ("POST",), _idle_close),
    ("/_sim/workflows/streams/error", ("POST",), _error),
    ("/_sim/workflows/streams/outage", ("POST",), _outage),
    ("/_sim/workflows/streams/refuse", ("POST",), _refuse),
    ("/_sim/workflows/streams/ping", ("POST",), _ping),
    ("/_sim/workflows/streams/faults", ("DELETE",), _clear_faults),
    ("/_sim/workflows/{execution_id}", ("GET",), _one),
    ("/_sim/workflows/{execution_id}/{action}", ("POST",), _act),
)


def _execution_id(sim: Simulator, request: Request) -> str:
    given: str = request.path_params["execution_id"]
    return sim.workflow_names.get(given, given)


def _seconds(value: Any, key: str, *, positive: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{key}: must be a non-negative number of seconds")
    if positive and value <= 0:
        raise ValueError(f"{key}: must be a positive number of seconds")
    return float(value)
