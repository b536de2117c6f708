"""A scriptable hostile fine-tuning API on loopback (issue 15, items 2, 3, 7, 14): real HTTP,
served by the daemon's own server helper, whose answers lie in the ways a foreign API can.

- ``total``: the truth, smaller, huge, or missing (:attr:`HostileApi.total`);
- pages: served as asked, a page repeated from some page on (:attr:`repeat_from`), or endless
  full pages of new jobs (:attr:`endless`);
- items: one nested thousands of levels deep (:attr:`deep`), an id listed twice on its page
  with another content (:attr:`conflicting`);
- details: huge answers, with or without ``Content-Length``, or a gzip bomb (:attr:`huge`).

It counts what it was asked (:attr:`asked`: ``("list", page)`` or ``("detail", id)``).
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.factories import T0, raw_job

PATH = "/v1/fine_tuning/jobs"
KEY = "sk-hostile-key-123"
CHUNK = 256 * 1024

Huge = Literal["content-length", "chunked", "gzip-bomb"]


def jobs(count: int, status: str = "RUNNING", *, prefix: str = "job") -> list[dict[str, Any]]:
    """``count`` raw fine-tuning jobs, newest first (``job-000`` the newest)."""
    return [
        raw_job(f"{prefix}-{i:03d}", status, created_at=T0 - i, events=[("QUEUED", T0 - i)])
        for i in range(count)
    ]


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in ("events", "checkpoints")}


@dataclass
class HostileApi:
    jobs: list[dict[str, Any]]
    # The total announced, from the true count (None: no total at all).
    total: Callable[[int], int | None] = lambda n: n
    repeat_from: int | None = None  # from this page on, the page before it again
    endless: bool = False  # every page full, of new jobs, for ever
    deep: dict[str, int] = field(default_factory=dict)  # job id -> nesting of its metadata
    conflicting: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> other copy
    huge: dict[str, tuple[int, Huge]] = field(default_factory=dict)  # id -> detail size, how
    asked: list[tuple[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(PATH, self._list),
                Route(PATH + "/{job_id}", self._detail),
            ]
        )

    def lists(self) -> int:
        return sum(1 for what, _ in self.asked if what == "list")

    def _item(self, job: dict[str, Any], *, detailed: bool = False) -> str:
        shown = job if detailed else _summary(job)
        depth = self.deep.get(job["id"])
        if depth is None:
            return json.dumps(shown)
        text = json.dumps({**shown, "metadata": "\0deep\0"})
        return text.replace('"\\u0000deep\\u0000"', "[" * depth + "1" + "]" * depth)

    def _page_jobs(self, page: int, size: int) -> list[dict[str, Any]]:
        if self.endless:
            start = page * size
            return jobs(size, "SUCCESS", prefix=f"endless-{start}")
        if self.repeat_from is not None and page >= self.repeat_from:
            page = self.repeat_from - 1
        return self.jobs[page * size : (page + 1) * size]

    async def _list(self, request: Request) -> Response:
        page = int(request.query_params.get("page", "0"))
        size = int(request.query_params.get("page_size", "100"))
        self.asked.append(("list", page))
        shown = self._page_jobs(page, size)
        items = []
        for job in shown:
            items.append(self._item(job))
            other = self.conflicting.get(job["id"])
            if other is not None:
                items.append(json.dumps(_summary(other)))
        total = None if self.endless else self.total(len(self.jobs))
        head = '{"object": "list", ' + (f'"total": {total}, ' if total is not None else "")
        body = head + '"data": [' + ", ".join(items) + "]}"
        return Response(body, media_type="application/json")

    async def _detail(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        self.asked.append(("detail", job_id))
        if job_id in self.huge:
            return _huge(job_id, *self.huge[job_id])
        job = next((j for j in self.jobs if j["id"] == job_id), None)
        if job is None and self.endless:
            job = raw_job(job_id, "SUCCESS", created_at=T0, events=[("QUEUED", T0)])
        if job is None:
            return Response('{"detail": "not found"}', 404, media_type="application/json")
        return Response(self._item(job, detailed=True), media_type="application/json")


@functools.cache
def _bomb(size: int) -> bytes:
    """``size`` spaces, gzipped (about a thousandth of it), made without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b" " * CHUNK
    out = [packer.compress(block) for _ in range(size // CHUNK)]
    return b"".join([*out, packer.flush()])


def _huge(job_id: str, size: int, how: Huge) -> Response:
    """A detail answer of ``size`` bytes (a JSON object padded with spaces)."""
    head = f'{{"id": {json.dumps(job_id)}, "pad": "'.encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        sent = len(head)
        while sent < size - 2:
            step = min(CHUNK, size - 2 - sent)
            yield b"x" * step
            sent += step
        yield b'"}'

    if how == "gzip-bomb":
        bomb = _bomb(size)
        headers = {"content-encoding": "gzip", "content-length": str(len(bomb))}
        return Response(bomb, media_type="application/json", headers=headers)
    headers = {"content-length": str(size)} if how == "content-length" else {}
    return StreamingResponse(body(), media_type="application/json", headers=headers)
