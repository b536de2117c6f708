"""Alert rules: facts about what did (or did not) happen to a job. Pure: no I/O, no clock.

Two families:

- **on change** (``cost``, ``metric``): evaluated when a poll brings news of a job, from the
  previous snapshot, the new one and the transitions the diff found; what they must remember
  (best validation loss so far) lives in the snapshot's ``marks``.
- **over time** (``stalled``, ``overrun``): evaluated on a schedule from persisted
  timestamps (``status_since``), so that they do not depend on a poll happening at the right
  moment. :func:`conditions` says which hold now; the alerting loop turns them into firing,
  repeated and resolved transitions.

Every alert fires once per job and condition: its id is derived from the rule, the job and
the condition's own key (the status and since when it holds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watcher.config import (
    CostRuleConfig,
    MetricRuleConfig,
    OverrunRuleConfig,
    RuleConfig,
    StalledRuleConfig,
    TimeRuleConfig,
)
from watcher.model import types
from watcher.model.snapshot import Snapshot
from watcher.model.transitions import Transition, rfc3339, stable_id
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
        valid = to_float(metrics.get("valid_loss"))
        problem: tuple[str, dict[str, Any]] | None = None
        if rule.non_finite and train is not None and not math.isfinite(train):
            problem = ("train_loss_not_finite", {"train_loss": str(train)})
        # 0.0 means "no validation at this step": never a loss to compare.
        elif valid is not None and valid != 0.0 and math.isfinite(valid):
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


# --- over time ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A time rule that holds for a job now; ``key`` tells this spell from later ones."""

    rule: TimeRuleConfig
    key: tuple[str | int, ...]
    details: Mapping[str, Any]

    def alert_id(self, snapshot: Snapshot) -> str:
        return stable_id(snapshot.source, snapshot.job_id, "rule", self.rule.key, *self.key)


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
            metadata = snapshot.job.get("metadata")
            expected = (
                to_float(metadata.get("expected_duration_seconds"))
                if isinstance(metadata, Mapping)
                else None
            )
            if expected is not None and expected > 0 and held > expected * rule.factor:
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
