"""The status page's routes: ``/`` (sources and jobs), ``/jobs/{source}/{job_id}``,
``/deliveries``, ``/silences``, their buttons (POST, guarded by :mod:`.security`) and the two
static files. Server-rendered Jinja2 (autoescape on); ``static/page.js`` refreshes the
``<main>`` of a page every few seconds from the same URL (``X-Fragment: 1`` answers only
that part).

One store call per page (:class:`watcher.abc.PageViews`), each bounded: a page with 10,000
tracked jobs costs a few small queries, and never a query per row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from watcher.abc import Ownership, Store
from watcher.app.actions import ActionHandler
from watcher.app.web import views
from watcher.app.web.security import CSRF_COOKIE, CSRF_FIELD, REALM, Guard, SecurityHeaders
from watcher.config import Config, OverrunRuleConfig
from watcher.model.statuses import KNOWN_STATUSES
from watcher.render.text import clean

log = structlog.get_logger(__name__)

FOLLOWED_LIMIT = 200  # followed jobs per page of /, latest changed first (?page=N for more)
RECENT_LIMIT = 20  # terminal jobs on /
HISTORY_LIMIT = 100  # transitions on a job's page
DELIVERY_LIMIT = 100  # of each state on /deliveries
REFRESH_MS = 3000
STATIC = {"page.js": "text/javascript", "page.css": "text/css"}
FORM_BYTES = 8192  # the page's forms are a few short fields
SILENCE_SPANS = {"1h": 3600.0, "4h": 4 * 3600.0, "24h": 86400.0, "resolved": None}


class StatusPage:
    """The page over the store (reads), the actions (its buttons) and the config."""

    def __init__(
        self,
        config: Config,
        store: Store,
        actions: ActionHandler,
        ownership: Ownership | None = None,
        *,
        clock: Callable[[], float] = time.time,
        requests: Callable[[str], int] | None = None,
    ) -> None:
        self.config = config
        # API requests of the last minute, by source (this process: its polls only).
        self.requests = requests or (lambda source: 0)
        self.budgets = {s.name: s.max_requests_per_minute for s in config.sources}
        overruns = [r.factor for r in config.rules if isinstance(r, OverrunRuleConfig)]
        self.overrun_factor = min(overruns) if overruns else None
        self.store = store
        self.actions = actions
        self.ownership = ownership
        self.clock = clock
        self.guard = Guard(config.http.auth if config.http is not None else None)
        self.kinds = {s.name: s.kind for s in config.sources}
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("watcher.app.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(ago=views.ago, when=views.when, short=views.short)
        self.env.filters["path"] = lambda value: quote(str(value), safe="")
        self.env.globals.update(progress=views.progress, loss_chart=views.loss_chart)
        files = resources.files("watcher.app.web") / "static"
        self.static = {name: (files / name).read_bytes() for name in STATIC}

    # --- the app -----------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self._index, methods=["GET"]),
                Route("/jobs/{source}/{job_id:path}", self._job, methods=["GET"]),
                Route("/deliveries", self._deliveries, methods=["GET"]),
                Route("/deliveries/retry", self._retry, methods=["POST"]),
                Route("/silences", self._silences, methods=["GET"]),
                Route("/silences", self._silence, methods=["POST"]),
                Route("/silences/{silence_id}/expire", self._expire, methods=["POST"]),
                Route("/login", self._login, methods=["GET"]),
                Route("/static/{name}", self._static, methods=["GET"]),
            ],
            middleware=[Middleware(SecurityHeaders)],
        )

    def routes(self) -> list[BaseRoute]:
        """Served beside the probes: everything they do not answer comes here."""
        return [Mount("", app=self.app())]

    def _render(self, request: Request, template: str, **context: Any) -> Response:
        token, fresh = self.guard.csrf_token(request)
        fragment = request.headers.get("x-fragment") == "1"
        body = self.env.get_template(template).render(
            fragment=fragment,
            csrf=token,
            csrf_field=CSRF_FIELD,
            buttons=self.guard.enabled,
            user=self.guard.who(request),
            now=self.clock(),
            refresh=REFRESH_MS,
            notice=clean(request.query_params.get("notice", ""), 200),
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(body, headers={"Cache-Control": "no-store"})
        if fresh:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    # --- pages ---------------------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        source = request.query_params.get("source") or None
        status = request.query_params.get("status") or None
        number = views.page_number(request.query_params.get("page"))
        pager = views.Pager(number, FOLLOWED_LIMIT, total=0)
        view = await self.store.overview(
            source=source,
            status=status,
            limit=pager.size,
            recent=RECENT_LIMIT,
            offset=pager.offset,
        )
        pager = replace(pager, total=view.followed_total)
        filters = {k: v for k, v in (("source", source), ("status", status)) if v}
        now = self.clock()
        owners: Mapping[str, str | None] = self.ownership.owners() if self.ownership else {}
        sources = [
            views.source_health(
                s.name,
                s.kind,
                view.cursors.get(s.name),
                view.last_poll_at.get(s.name),
                clean(owners.get(s.name) or "—") if self.ownership else "this process",
                now,
            )
            for s in self.config.sources
        ]
        rates = {
            s.name: views.requests(self.requests(s.name), self.budgets.get(s.name))
            for s in self.config.sources
        }
        return self._render(
            request,
            "index.html",
            sources=sources,
            rates=rates,
            expectation=lambda snapshot: views.expectation(snapshot, now, self.overrun_factor),
            view=view,
            kinds=self.kinds,
            source=source,
            status=status,
            statuses=sorted(KNOWN_STATUSES),
            pager=pager,
            page_link=lambda n: "/?" + urlencode({**filters, "page": n}),
        )

    async def _job(self, request: Request) -> Response:
        source = request.path_params["source"]
        job_id = request.path_params["job_id"]
        history = await self.store.job_history(source, job_id, limit=HISTORY_LIMIT)
        silences = [
            s
            for s in await self.store.list_silences(include_ended=False)
            if s.resolved == (source, job_id) or s.matchers.get("job_id") == job_id
        ]
        status = 200 if history.job is not None or history.transitions else 404
        response = self._render(
            request,
            "job.html",
            source=source,
            job_id=job_id,
            history=history,
            silences=silences,
            spans=list(SILENCE_SPANS),
        )
        response.status_code = status
        return response

    async def _deliveries(self, request: Request) -> Response:
        view = await self.store.deliveries_view(limit=DELIVERY_LIMIT)
        return self._render(request, "deliveries.html", view=view)

    async def _silences(self, request: Request) -> Response:
        found = await self.store.list_silences(include_ended=True)
        return self._render(request, "silences.html", silences=found[:DELIVERY_LIMIT])

    async def _login(self, request: Request) -> Response:
        """Makes the browser ask for the credentials (basic auth), then back to ``/``."""
        if not self.guard.enabled:
            return self._refused(403, "the page is read-only: http.auth is not configured")
        if self.guard.who(request) is None:
            return self._refused(401, "sign in to change things from the page")
        return RedirectResponse("/", status_code=303)

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static:
            return Response("not found\n", status_code=404, media_type="text/plain")
        headers = {"Cache-Control": "max-age=300"}
        return Response(self.static[name], media_type=STATIC[name], headers=headers)

    # --- buttons ---------------------------------------------------------------------------

    @staticmethod
    def _refused(status: int, reason: str) -> Response:
        headers = {"WWW-Authenticate": REALM} if status == 401 else {}
        return Response(f"{reason}\n", status_code=status, media_type="text/plain", headers=headers)

    async def _form(self, request: Request) -> tuple[dict[str, str], str | Response]:
        """The POST's fields and who sent it, or the refusal to answer."""
        fields = await _urlencoded(request)
        refusal = self.guard.refuse(request, fields.get(CSRF_FIELD))
        if refusal is not None:
            log.warning(
                "page_action_refused",
                path=request.url.path,
                status=refusal.status,
                reason=refusal.reason,
            )
            return fields, self._refused(refusal.status, refusal.reason)
        who = self.guard.who(request)
        return fields, f"web:{who}"

    @staticmethod
    def _back(to: str, notice: str) -> Response:
        return RedirectResponse(f"{to}?{urlencode({'notice': notice})}", status_code=303)

    async def _retry(self, request: Request) -> Response:
        fields, who = await self._form(request)
        if isinstance(who, Response):
            return who
        transition_id = fields.get("transition_id", "")
        if not transition_id:
            return self._refused(400, "which transition? (transition_id)")
        count = await self.store.retry_dead(transition_id, now=self.clock())
        log.info("page_retry", by=who, transition_id=transition_id, deliveries=count)
        shown = clean(transition_id, 80)
        return self._back("/deliveries", f"{count} dead delivery(ies) of {shown} queued again")

    async def _silence(self, request: Request) -> Response:
        fields, who = await self._form(request)
        if isinstance(who, Response):
            return who
        source, job_id = fields.get("source", ""), fields.get("job_id", "")
        span = fields.get("span", "")
        if source not in self.kinds or not job_id or span not in SILENCE_SPANS:
            return self._refused(400, "a silence needs a known source, a job id and a span")
        seconds = SILENCE_SPANS[span]
        done = await self.actions.silence(
            {"source": source, "job_id": job_id},
            by=who,
            comment=fields.get("comment", "")[:500] or "from the status page",
            until=self.clock() + seconds if seconds is not None else None,
            resolved=(source, job_id) if seconds is None else None,
        )
        return self._back(f"/jobs/{quote(source, safe='')}/{quote(job_id, safe='')}", done.message)

    async def _expire(self, request: Request) -> Response:
        _, who = await self._form(request)
        if isinstance(who, Response):
            return who
        done = await self.actions.expire(request.path_params["silence_id"], by=who)
        return self._back("/silences", done.message)


async def _urlencoded(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what the page's forms send) of at
    most :data:`FORM_BYTES`, first value of each field; anything else reads as no field."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES:
            return {}
    fields: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", errors="replace"), max_num_fields=20):
        fields.setdefault(key, value)
    return fields
