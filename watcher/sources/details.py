"""Details fetched side by side: a few at a time, and all or nothing for the cycle."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import anyio

from watcher.exceptions import SourceError
from watcher.model.jobs import Job

# Details in flight at once per source (their answers share the process's byte budget:
# watcher.sources.answers).
DETAIL_CONCURRENCY = 4


async def fetch_all(
    detail: Callable[[str], Awaitable[Job | None]], job_ids: Iterable[str], out: dict[str, Job]
) -> None:
    """``detail(job_id)`` of each of ``job_ids`` into ``out`` (``None``: skipped); the first
    source error stops the other fetches and is raised."""
    limiter = anyio.CapacityLimiter(DETAIL_CONCURRENCY)
    failures: list[SourceError] = []

    async def fetch(job_id: str, scope: anyio.CancelScope) -> None:
        try:
            async with limiter:
                job = await detail(job_id)
        except SourceError as exc:
            failures.append(exc)
            scope.cancel()
            return
        if job is not None:
            out[job_id] = job

    async with anyio.create_task_group() as tg:
        for job_id in job_ids:
            tg.start_soon(fetch, job_id, tg.cancel_scope)
    if failures:
        raise failures[0]
