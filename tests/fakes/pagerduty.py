"""A stand-in for PagerDuty's Events API v2 (``/v2/enqueue``) that validates like the real one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.strict import strict_json

ROUTING_KEY = "R0ut1ngK3yS3cr3t0000000000000042"
MAX_BODY = 512 * 1024  # PagerDuty refuses bigger events
SEVERITIES = {"critical", "error", "warning", "info"}


@dataclass
class FakePagerDuty:
    """A stand-in for events.pagerduty.com/v2/enqueue that validates like the real one."""

    events: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    answer: tuple[int, dict[str, Any], dict[str, str]] | None = None  # forced answer

    def problems(self, event: Any) -> list[str]:
        if not isinstance(event, dict):
            return ["Event object is not an object"]
        errors = []
        if event.get("routing_key") != ROUTING_KEY:
            errors.append("Invalid routing key")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append(
                "'event_action' is invalid (must be one of trigger, acknowledge, resolve)"
            )
        key = event.get("dedup_key")
        if not isinstance(key, str) or not key or len(key) > 255:
            errors.append("'dedup_key' is required and must be at most 255 characters")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return [*errors, "'payload' is missing or not an object"]
            for name in ("summary", "source", "severity"):
                if not isinstance(payload.get(name), str) or not payload[name]:
                    errors.append(f"'payload.{name}' is missing or blank")
            if len(str(payload.get("summary", ""))) > 1024:
                errors.append("'payload.summary' is longer than 1024 characters")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' is invalid")
        return errors

    async def enqueue(self, request: Request) -> JSONResponse:
        self.requests += 1
        if self.answer is not None:
            code, body, headers = self.answer
            return JSONResponse(body, status_code=code, headers=headers)
        if request.headers.get("content-type") != "application/json":
            return JSONResponse({"status": "invalid event", "message": "Bad content type"}, 400)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"status": "invalid event", "message": "Event too large"}, 400)
        try:
            event = strict_json(body)  # strict, as PagerDuty is
        except ValueError:
            return JSONResponse({"status": "invalid event", "message": "Invalid JSON"}, 400)
        errors = self.problems(event)
        if errors:
            body = {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }
            return JSONResponse(body, 400)
        self.events.append(event)
        body = {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]}
        return JSONResponse(body, 202)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v2/enqueue", self.enqueue, methods=["POST"])])

    def actions(self) -> list[tuple[str, str]]:
        return [(e["event_action"], e["dedup_key"]) for e in self.events]
