"""Job statuses per family, in one place: what the APIs document (references §5) and the
one status watcher adds of its own (:data:`DELETED`).

The APIs' terminal sets and watcher's differ on purpose: a job the API answers 404 for
ends as :data:`DELETED`, a word the APIs never send. The simulator speaks for the API and
uses the API's sets; sources, stores and metrics use watcher's (``*_ENDS``).
"""

from __future__ import annotations

DELETED = "DELETED"  # watcher's own status for a job the API answers 404 for

# --- /v1/fine_tuning/jobs (fine-tuning reference §5) -------------------------------------

# The enum every shape and the ``status`` filter share.
FINE_TUNING_STATUSES = (
    "QUEUED",
    "STARTED",
    "VALIDATING",
    "VALIDATED",
    "RUNNING",
    "FAILED_VALIDATION",
    "FAILED",
    "SUCCESS",
    "CANCELLED",
    "CANCELLATION_REQUESTED",
)
# Inferred from names and observed runs (the API does not document it).
FINE_TUNING_TERMINAL = frozenset({"SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"})
# Not terminal, and not moving either: with ``auto_start=false`` a job waits here for /start.
FINE_TUNING_PARKED = frozenset({"VALIDATED"})
FINE_TUNING_ACTIVE = frozenset(FINE_TUNING_STATUSES) - FINE_TUNING_TERMINAL - FINE_TUNING_PARKED
# What watcher stops following: the API's terminal statuses and its own DELETED.
FINE_TUNING_ENDS = FINE_TUNING_TERMINAL | {DELETED}

# --- /v1/batch/jobs (batch reference §5) -------------------------------------------------

# Unchanged since 2024-11.
BATCH_STATUSES = (
    "QUEUED",
    "RUNNING",
    "SUCCESS",
    "FAILED",
    "TIMEOUT_EXCEEDED",
    "CANCELLATION_REQUESTED",
    "CANCELLED",
)
# The SDK's (``RUNNING_STATUSES`` is the rest); CANCELLATION_REQUESTED is not terminal.
BATCH_TERMINAL = frozenset({"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"})
BATCH_ACTIVE = frozenset({"QUEUED", "RUNNING", "CANCELLATION_REQUESTED"})
BATCH_ENDS = BATCH_TERMINAL | {DELETED}

# --- /v1/workflows/runs, executions (workflows reference §6) ------------------------------

# ``WorkflowExecutionStatus``; RETRYING_AFTER_ERROR is deprecated ("no longer returned") but
# documented, so it is kept. New values are kept raw by the parser.
WORKFLOW_STATUSES = (
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELED",
    "TERMINATED",
    "TIMED_OUT",
    "CONTINUED_AS_NEW",
    "RETRYING_AFTER_ERROR",
)
# Terminal for one run (the API's "run-terminal" set).
WORKFLOW_RUN_TERMINAL = frozenset(
    {"COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT", "CONTINUED_AS_NEW"}
)
# Over for the execution: CONTINUED_AS_NEW only hands over to a new run of it.
WORKFLOW_TERMINAL = WORKFLOW_RUN_TERMINAL - {"CONTINUED_AS_NEW"}
WORKFLOW_ACTIVE = frozenset({"RUNNING", "RETRYING_AFTER_ERROR"})
WORKFLOW_ENDS = WORKFLOW_TERMINAL | {DELETED}
# The statuses no stream event announces (reference §6, §10.2): only a GET or a listing
# tells of them.
WORKFLOW_SILENT = frozenset({"TERMINATED", "TIMED_OUT"})

# --- across families ---------------------------------------------------------------------

# Every status a job can be in that watcher knows of (metrics label them, the rest is other).
KNOWN_STATUSES = frozenset({*FINE_TUNING_STATUSES, *BATCH_STATUSES, *WORKFLOW_STATUSES, DELETED})
# How a terminal status ended, whichever the family.
SUCCEEDED = frozenset({"SUCCESS", "COMPLETED"})
FAILED = frozenset({"FAILED", "FAILED_VALIDATION", "TIMEOUT_EXCEEDED", "TIMED_OUT", "TERMINATED"})
CANCELLED = frozenset({"CANCELLED", "CANCELED"})
