"""Cancel one job through its family's route (``POST <detail path>/cancel``): what every
source shares, and the API's answers in words (:class:`~watcher.abc.CancelAnswer`).

200/202 mean the request was taken (with the job as it now is, whose status is reported);
204 (Workflows) says nothing of the job, which is read once to report its status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from watcher.abc import CancelAnswer
from watcher.exceptions import SourceAuthError, SourceError, SourceRetired
from watcher.model.jobs import Job, job_id_problem
from watcher.render.text import clean
from watcher.sources.mistral import ApiClient

ROUTE = "cancel"


async def cancel_job(
    api: ApiClient,
    path: str,
    job_id: str,
    *,
    detail: Callable[[str], Awaitable[Job | None]],
) -> CancelAnswer:
    """Ask ``api`` to cancel ``job_id`` at ``path`` (the id in it quoted); ``detail``
    reads the job when the answer does not say its status."""
    source = clean(api.source)
    shown = clean(job_id)
    problem = job_id_problem(job_id)
    if problem is not None:
        return CancelAnswer(False, f"cannot cancel {shown!r}: {problem}", "invalid_id")
    try:
        posted = await api.post_json(path, route=ROUTE)
    except SourceAuthError as exc:
        said = f"source {source}: the API key was refused ({exc.status_code}), nothing cancelled"
        return CancelAnswer(False, said, "key_refused")
    except SourceRetired:
        return CancelAnswer(False, f"source {source}: the API is retired (410 Gone)", "retired")
    except SourceError as exc:
        return CancelAnswer(False, f"cancel of {shown} failed: {clean(exc, 300)}", "failed")
    said_why = f" ({posted.detail})" if posted.detail else ""
    if posted.status == 404:
        return CancelAnswer(False, f"no job {shown} on source {source}", "not_found")
    if posted.status == 409:
        said = f"job {shown} on source {source} cannot be cancelled{said_why}"
        return CancelAnswer(False, said, "conflict")
    if not 200 <= posted.status < 300:
        said = f"cancel of {shown} on source {source} refused: HTTP {posted.status}{said_why}"
        return CancelAnswer(False, said, "failed")
    status = posted.body.get("status") if isinstance(posted.body, dict) else None
    if not isinstance(status, str):
        try:
            job = await detail(job_id)
        except SourceError:
            job = None
        status = job.status if job is not None else None
    said = f"cancel requested for job {shown} on source {source}"
    if status:
        status = clean(status, 40)
        said += f": it is now {status}"
    return CancelAnswer(True, said, "requested", status or None)
