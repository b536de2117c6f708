"""Alert rules: facts about what did (or did not) happen to a job. Pure: no I/O, no clock.

Two families:

- **on change** (``cost``, ``metric``, ``retry_storm``): evaluated when a poll brings news of
  a job, from the previous snapshot, the new one and the transitions the diff found; what
  they must remember (best validation loss so far, recent retry times) lives in the
  snapshot's ``marks``, bounded.
- **over time** (``stalled``, ``overrun``): evaluated on a schedule from persisted
  timestamps (``status_since``), so that they do not depend on a poll happening at the right
  moment. :func:`conditions` says which hold now; the alerting loop turns them into firing,
  repeated and resolved transitions.

Every alert fires once per job and condition: its id is derived from the rule, the job and
the condition's own key (the status and since when it holds).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher.config import (
    CostRuleConfig,
    MetricRuleConfig,
    OverrunRuleConfig,
    RetryStormRuleConfig,
    RuleConfig,
    StalledRuleConfig,
    TimeRuleConfig,
)
from watcher.model import types
from watcher.model.snapshot import Snapshot
from watcher.model.transitions import Transition, rfc3339, stable_id
from watcher.render.charts import valid_loss
from watcher.render.text import to_float


def applies(rule: RuleConfig, source: str) -> bool:
    return rule.sources is None or source in rule.sources


# --- on change ------------------------------------------------------------------------------


def on_change(
    rules: Sequence[RuleConfig],
    previous: Snapshot | None,
    snapshot: Snapshot,
    transitions: Sequence[Transition],
    *,
    prefix: str,
) -> tuple[dict[str, Any], list[Transition]]:
    """The snapshot's new ``marks`` and the alerts the change rules raise."""
    marks = dict(snapshot.marks)
    out: list[Transition] = []
    source, job_id = snapshot.source, snapshot.job_id
    checkpoints = [t for t in transitions if t.type.endswith(f".{types.CHECKPOINT}")]
    for rule in rules:
        if not applies(rule, source):
            continue
        if isinstance(rule, CostRuleConfig):
            metadata = snapshot.job.get("metadata")
            cost = to_float(metadata.get("cost")) if isinstance(metadata, Mapping) else None
            before = previous.job.get("metadata") if previous is not None else None
            was = to_float(before.get("cost")) if isinstance(before, Mapping) else None
            # Fires when the cost crosses the limit (a placeholder such as 0 may come first).
            if cost is not None and cost > rule.limit and (was is None or was <= rule.limit):
                currency = metadata.get("cost_currency") if isinstance(metadata, Mapping) else None
                out.append(
                    Transition(
                        id=stable_id(source, job_id, "rule", rule.key),
                        type=types.job_type(prefix, types.COST_EXCEEDED),
                        source=source,
                        job_id=job_id,
                        job=snapshot.job,
                        details={
                            "alert": {
                                "rule": rule.key,
                                "cost": cost,
                                "currency": currency,
                                "limit": rule.limit,
                            }
                        },
                    )
                )
        elif isinstance(rule, MetricRuleConfig):
            out += _metric(rule, snapshot, checkpoints, marks, prefix=prefix)
        elif isinstance(rule, RetryStormRuleConfig):
            out += _retry_storm(rule, snapshot, transitions, marks, prefix=prefix)
    return marks, out


def _metric(
    rule: MetricRuleConfig,
    snapshot: Snapshot,
    checkpoints: Sequence[Transition],
    marks: dict[str, Any],
    *,
    prefix: str,
) -> list[Transition]:
    out: list[Transition] = []
    best_key = f"{rule.key}.best_valid_loss"
    best = to_float(marks.get(best_key))
    for transition in checkpoints:  # in step order: the diff sorts them
        checkpoint = transition.details.get("checkpoint", {})
        metrics = checkpoint.get("metrics", {}) if isinstance(checkpoint, Mapping) else {}
        step = checkpoint.get("step_number")
        train = to_float(metrics.get("train_loss"))
        valid = valid_loss(metrics.get("valid_loss"))
        problem: tuple[str, dict[str, Any]] | None = None
        if rule.non_finite and train is not None and not math.isfinite(train):
            problem = ("train_loss_not_finite", {"train_loss": str(train)})
        # None: no validation at this step (the API's 0.0 placeholder), nothing to compare.
        elif valid is not None and math.isfinite(valid):
            if best is not None and valid > best * (1 + rule.valid_loss_rise / 100):
                rise = 100 * (valid - best) / best if best else math.inf
                problem = (
                    "valid_loss_rose",
                    {"valid_loss": valid, "best_valid_loss": best, "rise_percent": round(rise, 2)},
                )
            best = valid if best is None else min(best, valid)
        if problem is not None and not marks.get(f"{rule.key}.fired.{problem[0]}"):
            what, facts = problem
            marks[f"{rule.key}.fired.{what}"] = True  # once per job and condition
            out.append(
                Transition(
                    id=stable_id(snapshot.source, snapshot.job_id, "rule", rule.key, what),
                    type=types.job_type(prefix, types.METRIC_REGRESSED),
                    source=snapshot.source,
                    job_id=snapshot.job_id,
                    occurred_at=checkpoint.get("created_at"),
                    job=snapshot.job,
                    details={"alert": {"rule": rule.key, "condition": what, "step": step, **facts}},
                )
            )
    if best is not None:
        marks[best_key] = best
    return out


# --- retry storms ---------------------------------------------------------------------------

ACTIVITY_RETRYING = types.job_type(types.WORKFLOW_ACTIVITY, types.RETRYING)
# What a job's marks keep per rule: the retry times of at most this many activities (the
# most recent), and per activity at most this many distinct seconds inside the window (older
# ones fold into the next: a retry is never dropped, it may count a little longer).
STORM_ACTIVITIES = 64
STORM_SECONDS = 256
ACTIVITY_NAME_CHARS = 200


@dataclass
class _Storm:
    """One activity's retries inside the window, and the storm already reported (by its
    first retry's time) until a quiet ``within`` re-arms the rule."""

    seen: list[list[int]] = field(default_factory=list)  # [second, retries], ascending
    storm: int | None = None

    @classmethod
    def from_json(cls, raw: object) -> _Storm:
        """Tolerant: a mark of another shape (an older version's) starts afresh."""
        if not isinstance(raw, Mapping):
            return cls()
        seen = raw.get("seen")
        storm = raw.get("storm")
        pairs = [
            [int(p[0]), int(p[1])]
            for p in (seen if isinstance(seen, list) else [])
            if isinstance(p, list)
            and len(p) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in p)
            and p[1] > 0
        ]
        pairs.sort()
        ok = isinstance(storm, int) and not isinstance(storm, bool)
        return cls(pairs, storm if ok else None)

    def to_json(self) -> dict[str, Any]:
        return {"seen": [list(p) for p in self.seen], "storm": self.storm}

    @property
    def last(self) -> int:
        return self.seen[-1][0] if self.seen else 0

    def add(self, when: int, within: float) -> int:
        """Count a retry at ``when``; returns the retries inside the window now."""
        if self.storm is not None and self.seen and when - self.last >= within:
            self.storm = None  # a quiet window: the storm is over
        seconds = [p[0] for p in self.seen]
        at = bisect.bisect_left(seconds, when)
        if at < len(self.seen) and self.seen[at][0] == when:
            self.seen[at][1] += 1
        else:
            self.seen.insert(at, [when, 1])
        newest = self.last
        self.seen = [p for p in self.seen if newest - p[0] < within]
        while len(self.seen) > STORM_SECONDS:
            self.seen[1][1] += self.seen.pop(0)[1]
        return sum(p[1] for p in self.seen)


def _activity_name(transition: Transition) -> str:
    activity = transition.details.get("activity")
    name = activity.get("name") if isinstance(activity, Mapping) else None
    return name[:ACTIVITY_NAME_CHARS] if isinstance(name, str) else ""


def _retry_storm(
    rule: RetryStormRuleConfig,
    snapshot: Snapshot,
    transitions: Sequence[Transition],
    marks: dict[str, Any],
    *,
    prefix: str,
) -> list[Transition]:
    """``<prefix>.retry_storm`` once per activity and storm: more than ``rule.retries``
    ``workflow.activity.retrying`` within ``rule.within`` seconds (by their times), whatever
    batches they arrive in; the storm ends after a quiet ``within``."""
    retries = [t for t in transitions if t.type == ACTIVITY_RETRYING]
    if not retries:
        return []
    key = f"{rule.key}.retries"
    kept = marks.get(key)
    storms = {
        str(name): _Storm.from_json(raw)
        for name, raw in (kept.items() if isinstance(kept, Mapping) else ())
    }
    times: dict[str, list[int]] = {}
    for transition in retries:
        when = transition.occurred_at
        times.setdefault(_activity_name(transition), []).append(
            when if isinstance(when, int) else snapshot.modified_at
        )
    out: list[Transition] = []
    for name, whens in times.items():
        storm = storms.setdefault(name, _Storm())
        fired: list[dict[str, int]] = []  # the storms found now: first retry, when, how many
        for when in sorted(whens):
            count = storm.add(when, rule.within)
            if storm.storm is None and count > rule.retries:
                storm.storm = storm.seen[0][0]
                fired.append({"first": storm.storm, "at": when, "retries": count})
            elif fired and fired[-1]["first"] == storm.storm:
                fired[-1]["retries"] = max(fired[-1]["retries"], count)
        out += [
            Transition(
                id=stable_id(snapshot.source, snapshot.job_id, "rule", rule.key, name, f["first"]),
                type=types.job_type(prefix, types.RETRY_STORM),
                source=snapshot.source,
                job_id=snapshot.job_id,
                occurred_at=f["at"],
                job=snapshot.job,
                details={
                    "activity": {
                        "name": name,
                        "retries": f["retries"],
                        "within_seconds": rule.within,
                    },
                    "rule": rule.key,
                },
            )
            for f in fired
        ]
    recent = sorted(storms.items(), key=lambda item: (item[1].last, item[0]), reverse=True)
    marks[key] = {name: storm.to_json() for name, storm in recent[:STORM_ACTIVITIES]}
    return out


# --- over time ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A time rule that holds for a job now; ``key`` tells this spell from later ones."""

    rule: TimeRuleConfig
    key: tuple[str | int, ...]
    details: Mapping[str, Any]

    def alert_id(self, snapshot: Snapshot) -> str:
        return stable_id(snapshot.source, snapshot.job_id, "rule", self.rule.key, *self.key)


def expected_duration(snapshot: Snapshot) -> float | None:
    """How long the job is expected to run (``metadata.expected_duration_seconds``, seconds),
    or ``None`` when it does not say."""
    metadata = snapshot.job.get("metadata")
    expected = (
        to_float(metadata.get("expected_duration_seconds"))
        if isinstance(metadata, Mapping)
        else None
    )
    return expected if expected is not None and expected > 0 else None


def conditions(rules: Sequence[RuleConfig], snapshot: Snapshot, now: float) -> list[Condition]:
    """The time rules that hold for ``snapshot`` at ``now``."""
    out: list[Condition] = []
    if snapshot.terminal:
        return out
    held = now - snapshot.status_since
    for rule in rules:
        if not applies(rule, snapshot.source):
            continue
        if isinstance(rule, StalledRuleConfig):
            limit = rule.after.get(snapshot.status)
            if limit is not None and held > limit:
                out.append(
                    Condition(
                        rule,
                        (snapshot.status, snapshot.status_since),
                        {
                            "status": snapshot.status,
                            "since": rfc3339(snapshot.status_since),
                            "limit_seconds": limit,
                        },
                    )
                )
        elif isinstance(rule, OverrunRuleConfig) and snapshot.status == "RUNNING":
            expected = expected_duration(snapshot)
            if expected is not None and held > expected * rule.factor:
                out.append(
                    Condition(
                        rule,
                        ("RUNNING", snapshot.status_since),
                        {
                            "since": rfc3339(snapshot.status_since),
                            "expected_seconds": expected,
                            "factor": rule.factor,
                        },
                    )
                )
    return out
