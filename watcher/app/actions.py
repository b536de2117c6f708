"""What people do from watcher: silence, expire a silence, acknowledge, cancel a job.

One home for every way in (the command line, Slack's buttons): :class:`Actions` checks the
request, does it (the store, the job's API), audits it (logged with who and what, and
recorded as a ``watcher.action.*`` transition routed like any other) and answers in words
for the person who asked (:class:`Done`). Callers never touch the store for an action.

:class:`ActionHandler` is the Protocol the inbound side (Slack) is written against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from watcher.abc import Cancels, Source, Store
from watcher.detect.silencing import MATCH_KEYS
from watcher.model import types
from watcher.model.jobs import job_id_problem
from watcher.model.outbox import AlertState
from watcher.model.silences import Silence, new_silence_id
from watcher.model.transitions import Transition, action_taken
from watcher.record.recorder import Recorder
from watcher.record.silences import audit, describe, logged
from watcher.render.text import clean

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Done:
    """What an action did, in plain words for the person who asked (a CLI line, a Slack
    ephemeral message): never a secret, API text already cleaned."""

    ok: bool
    message: str
    ref: str | None = None  # what was made (a silence's id), when something was


class ActionHandler(Protocol):
    """The actions, as the inbound side (Slack interactivity) calls them."""

    async def silence(
        self,
        matchers: Mapping[str, str],
        *,
        by: str,
        comment: str,
        until: float | None = None,
        resolved: tuple[str, str] | None = None,
    ) -> Done:
        """A silence of what ``matchers`` match (route match keys and ``job_id``, globs),
        ending at ``until`` (wall time) and/or when the job ``resolved`` = (source, job id)
        ends or its alert resolves, whichever comes first; one of the two is required."""
        ...

    async def expire(self, silence_id: str, *, by: str) -> Done:
        """End a silence now."""
        ...

    async def acknowledge(self, job_id: str, *, by: str, source: str | None = None) -> Done:
        """Acknowledge the job's open alerts: no more repeats until they resolve, and the
        PagerDuty incident acknowledged."""
        ...

    async def cancel(self, source: str, job_id: str, *, by: str) -> Done:
        """Ask the source's API to cancel the job."""
        ...


class Actions:
    """:class:`ActionHandler` over the store, the recorder (audit transitions) and the
    built sources (for cancel)."""

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        sources: Mapping[str, Source],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.sources = dict(sources)
        self.clock = clock

    async def silence(
        self,
        matchers: Mapping[str, str],
        *,
        by: str,
        comment: str,
        until: float | None = None,
        resolved: tuple[str, str] | None = None,
    ) -> Done:
        """Checks the keys and the span (the caller checks what a person may silence: a
        silence of everything, or no one), keeps the silence, audits it. Bound to a job
        (``resolved``) without matchers, it matches that job."""
        now = self.clock()
        if not matchers and resolved is not None:
            matchers = {"source": resolved[0], "job_id": resolved[1]}
        unknown = sorted(set(matchers) - set(MATCH_KEYS))
        if unknown:
            keys = ", ".join(clean(k, 40) for k in unknown)
            return Done(False, f"unknown match key {keys} (valid: {', '.join(MATCH_KEYS)})")
        if until is None and resolved is None:
            return Done(False, "a silence needs an end: a time, or until its job resolves")
        if until is not None and until <= now:
            return Done(False, "the silence would end in the past")
        silence = Silence(
            id=new_silence_id(),
            matchers=dict(matchers),
            starts_at=now,
            ends_at=until,
            comment=comment,
            created_by=by,
            created_at=now,
            resolved=resolved,
        )
        await self.store.add_silence(silence)
        self.recorder.silences.forget()
        logged("silence_added", silence, by=by, ends_at=until, resolved=resolved is not None)
        await self._audit([audit(silence, types.ACTION_SILENCED, by=by, at=now)], now)
        return Done(True, f"silenced {describe(silence.matchers)}", silence.id)

    async def expire(self, silence_id: str, *, by: str) -> Done:
        now = self.clock()
        ended = await self.store.expire_silence(silence_id, now=now, by=by, reason="expired")
        if ended is None:
            return Done(False, f"no active silence {clean(silence_id, 80)}")
        self.recorder.silences.forget()
        logged("silence_expired", ended, by=by, reason="expired")
        transition = audit(ended, types.ACTION_SILENCE_EXPIRED, by=by, at=now, reason="expired")
        await self._audit([transition], now)
        return Done(True, f"silence {ended.id} expired", ended.id)

    async def acknowledge(self, job_id: str, *, by: str, source: str | None = None) -> Done:
        shown = clean(job_id)
        problem = job_id_problem(job_id)
        if problem is not None:
            return Done(False, f"cannot acknowledge {shown!r}: {problem}")
        now = self.clock()
        acked = await self.store.acknowledge_alerts(job_id, source=source, by=by, now=now)
        where = f" on source {clean(source)}" if source is not None else ""
        if not acked:
            log.info("job_acknowledged", by=by, source=source, job_id=job_id, outcome="no_alert")
            return Done(False, f"job {shown}{where} has no open alert to acknowledge")
        by_source: dict[str, list[AlertState]] = {}
        for alert in acked:
            by_source.setdefault(alert.source, []).append(alert)
        audits = [
            action_taken(
                types.ACTION_ACKNOWLEDGED,
                name,
                job_id,
                by=by,
                at=now,
                key=f"{now:.6f}",
                alerts=[_alert_facts(a) for a in alerts],
            )
            for name, alerts in by_source.items()
        ]
        await self._audit(audits, now)
        for name, alerts in by_source.items():
            log.info(
                "job_acknowledged",
                by=by,
                source=name,
                job_id=job_id,
                outcome="acknowledged",
                rules=[a.rule for a in alerts],
            )
        rules = ", ".join(sorted({clean(a.rule) for a in acked}))
        said = f"acknowledged {len(acked)} open alert(s) of job {shown}{where} ({rules})"
        return Done(True, said + ": no more repeats until they resolve")

    async def cancel(self, source: str, job_id: str, *, by: str) -> Done:
        built = self.sources.get(source)
        if built is None:
            return Done(False, f"no source {clean(source)!r} in the config")
        if not isinstance(built, Cancels):
            return Done(False, f"source {clean(source)} cannot cancel jobs")
        problem = job_id_problem(job_id)
        if problem is not None:
            return Done(False, f"cannot cancel {clean(job_id)!r}: {problem}")
        answer = await built.cancel(job_id)
        now = self.clock()
        requested = action_taken(
            types.ACTION_CANCEL_REQUESTED,
            source,
            job_id,
            by=by,
            at=now,
            key=f"{now:.6f}",
            ok=answer.ok,
            outcome=answer.outcome,
            status=answer.status,
            message=answer.message,
        )
        await self._audit([requested], now)
        log.info(
            "job_cancel_requested",
            by=by,
            source=source,
            job_id=job_id,
            outcome=answer.outcome,
            status=answer.status,
        )
        return Done(answer.ok, answer.message)

    async def _audit(self, audits: Sequence[Transition], now: float) -> None:
        """Record the audit transitions, each with the job as last seen when the store
        knows it, else its id alone (so that a receiver sees what was acted on)."""
        shown: list[Transition] = []
        for item in audits:
            if item.job_id is not None:
                known = await self.store.get_snapshots(item.source, [item.job_id])
                snapshot = known.get(item.job_id)
                job = snapshot.job if snapshot is not None else {"id": item.job_id}
                item = replace(item, job=job)
            shown.append(item)
        await self.recorder.outbox(shown, now=now)


def _alert_facts(alert: AlertState) -> dict[str, Any]:
    """What an acknowledgement says of each alert: enough for a sink to name its incident
    (PagerDuty's ``dedup_key`` is made of the rule and the spell's ``since``)."""
    facts: dict[str, Any] = {"rule": alert.rule, "type": alert.data.get("type")}
    if alert.data.get("since"):
        facts["since"] = alert.data["since"]
    return facts
