"""The catalogue of transition types: every type string watcher sends is built here, and
the finite set of known ones (what metrics label as they are) is derived from the builders'
own parts, so that a new type is known the day it is added.

A job type is ``<family prefix>.<suffix>``: one suffix per status (its slug; an unknown
status keeps its own), the diff's facts, the families' facts, the rules' alerts, and the
time alerts with their ``.resolved``. Watcher's own types are ``watcher.*``.
"""

from __future__ import annotations

import re

from watcher.model.statuses import KNOWN_STATUSES

# --- job families --------------------------------------------------------------------------

FINE_TUNING_JOB = "fine_tuning.job"
BATCH_JOB = "batch.job"
WORKFLOW_EXECUTION = "workflow.execution"
# Facts about one activity of an execution (``workflow.activity.retrying``): routed like any
# job's, under the execution's job id.
WORKFLOW_ACTIVITY = "workflow.activity"
JOB_PREFIXES = (FINE_TUNING_JOB, BATCH_JOB, WORKFLOW_EXECUTION, WORKFLOW_ACTIVITY)

# What the diff reports besides status changes.
EVENT = "event"
CHECKPOINT = "checkpoint"
MODEL_READY = "model_ready"
# More facts about one job in one cycle than a cycle reports: the excess, counted
# (:mod:`watcher.detect.overflow`).
GROUPED = "grouped"
# What a family reports of its own (batch: :func:`watcher.sources.batch.batch_facts`).
PROGRESS = "progress"
ERRORS_RISING = "errors_rising"
COMPLETED_WITH_ERRORS = "completed_with_errors"
# Workflows (:mod:`watcher.sources.workflows`): an attempt failed and a workflow-level retry
# follows; the execution went on in a new run; an activity retries, or failed for good.
RETRYING = "retrying"
ACTIVITY_FAILED = "failed"
FAMILY_FACTS = frozenset({PROGRESS, ERRORS_RISING, COMPLETED_WITH_ERRORS, RETRYING})
# Alerts of the change rules, and of the time rules (named after the rule's ``kind``).
COST_EXCEEDED = "cost_exceeded"
METRIC_REGRESSED = "metric_regressed"
RETRY_STORM = "retry_storm"
TIME_ALERTS = ("stalled", "overrun")
RESOLVED = "resolved"

_SLUG = re.compile(r"[^a-z0-9]+")


def status_slug(status: str) -> str:
    """The lowercase, dotted-type-safe form of an API status (``PAUSED`` -> ``paused``)."""
    slug = _SLUG.sub("_", status.lower()).strip("_")[:64]
    return slug or "unknown"


def status_type(prefix: str, status: str) -> str:
    """``fine_tuning.job.failed``: a job of the family ``prefix`` entered ``status``."""
    return f"{prefix}.{status_slug(status)}"


def job_type(prefix: str, suffix: str) -> str:
    """``batch.job.progress``: a fact (or an alert) named ``suffix`` about a job."""
    return f"{prefix}.{suffix}"


def resolved(alert_type: str) -> str:
    """``fine_tuning.job.stalled.resolved``: the alert of type ``alert_type`` stopped holding."""
    return f"{alert_type}.{RESOLVED}"


# --- watcher's own -------------------------------------------------------------------------

SOURCE_RETIRED = "watcher.source.retired"
SOURCE_UNREACHABLE = "watcher.source.unreachable"
SOURCE_RECOVERED = "watcher.source.recovered"
SOURCE_DEGRADED = "watcher.source.degraded"  # it works, in a lesser way (streams refused)
DIGEST = "watcher.digest"
HEARTBEAT = "watcher.heartbeat"
TEST = "watcher.test"
# The state store refuses writes (disk full, read-only, database down): sent straight to the
# sinks, since it cannot go through the outbox.
STORE_UNWRITABLE = "watcher.store.unwritable"
# What people did from watcher (audited, routed like any transition): ``watcher.action.*``.
ACTION_ACKNOWLEDGED = "watcher.action.acknowledged"
ACTION_SILENCED = "watcher.action.silenced"
ACTION_SILENCE_EXPIRED = "watcher.action.silence_expired"
ACTION_CANCEL_REQUESTED = "watcher.action.cancel_requested"
ACTIONS = frozenset(
    {ACTION_ACKNOWLEDGED, ACTION_SILENCED, ACTION_SILENCE_EXPIRED, ACTION_CANCEL_REQUESTED}
)
WATCHER_PREFIX = "watcher"

# --- what is known -------------------------------------------------------------------------

# What follows a job prefix in a known type.
JOB_SUFFIXES = frozenset(
    {status_slug(s) for s in KNOWN_STATUSES}
    | {EVENT, CHECKPOINT, MODEL_READY, GROUPED}
    | FAMILY_FACTS
    | {COST_EXCEEDED, METRIC_REGRESSED, RETRY_STORM}
    | {f"{alert}{end}" for alert in TIME_ALERTS for end in ("", f".{RESOLVED}")}
)
WATCHER_TYPES = frozenset(
    {SOURCE_RETIRED, SOURCE_UNREACHABLE, SOURCE_RECOVERED, SOURCE_DEGRADED, DIGEST, HEARTBEAT}
    | {TEST, STORE_UNWRITABLE}
    | ACTIONS
)


def is_known(type_: str, prefixes: tuple[str, ...] = JOB_PREFIXES) -> bool:
    """Whether ``type_`` is in the catalogue (job types under one of ``prefixes``)."""
    if type_ in WATCHER_TYPES:
        return True
    return any(
        type_.startswith(prefix + ".") and type_[len(prefix) + 1 :] in JOB_SUFFIXES
        for prefix in prefixes
    )
