"""PagerDuty sink: Events API v2 alerts that open on failures and close on recovery.

Which transitions page and which resolve:

- **trigger**: a status change to a failure (FAILED, FAILED_VALIDATION, TIMEOUT_EXCEEDED;
  Workflows FAILED, TIMED_OUT, TERMINATED; any case); ``workflow.execution.retry_storm``
  and ``workflow.activity.failed``; a time alert (``<prefix>.stalled``,
  ``<prefix>.overrun``, repeats included); ``watcher.source.unreachable`` and
  ``watcher.source.retired``;
- **resolve**: a status change to one of ``resolve_on`` (default SUCCESS, CANCELLED,
  COMPLETED, CANCELED: a job that ends well, or was cancelled on purpose, needs nobody any
  more; a list naming one family's word means the others' too);
  ``<prefix>.stalled.resolved``, ``<prefix>.overrun.resolved``; ``watcher.source.recovered``;
- everything else (a Workflows retry included: a retry storm pages for those) is accepted
  without a request.

The ``dedup_key`` is derived from the transition alone, so a restarted watcher resolves
what an earlier process triggered without remembering anything:

- ``watcher/{source}/{job_id}``: the job's status (failed, then succeeded or cancelled); for
  a Workflows execution (``job_id`` is the execution id) its failures, retry storms and
  activities failed for good too: one incident per execution;
- ``watcher/{source}/{job_id}/{rule}/{since}``: one time alert (one rule, one spell of a
  status). A separate key, so that a stall resolving when the job *fails* does not close
  the failure's alert, and a spell resolving late does not close the next spell's;
- ``watcher/{source}/source``: the source itself (unreachable or retired, then recovered).

A failed sub-workflow names its root in the summary and carries ``root_execution_id`` and
``parent_execution_id`` in ``custom_details``.

PagerDuty drops a resolve for a key with no open alert, so resolving a job that never
paged is harmless (it still costs one request against the integration's rate limit).

Answers (PagerDuty's documented retry table): 202 accepted; 400 final, with PagerDuty's
``message`` and ``errors``; 429 and 5xx retryable (``Retry-After`` honoured, 30 s at least
on 429 as PagerDuty advises); other 4xx and 3xx final; transport errors retryable. The
routing key travels only in the request body: it is never logged, and answers quoted in
errors are scrubbed of it.

The package: ``meaning`` (what a transition means: the decision, the summary), ``sink``
(:class:`PagerDutySink`: the event and its delivery). It may import :mod:`watcher.deliver`,
:mod:`watcher.render` and below; never another sink.
"""

from __future__ import annotations

from watcher.sinks.pagerduty.meaning import (
    DEFAULT_RESOLVE_ON,
    DEFAULT_SEVERITY,
    EVENTS_URL,
    Decision,
    decide,
    dedup_key,
    resolving,
    summary,
)
from watcher.sinks.pagerduty.sink import MAX_EVENT_BYTES, PagerDutySink

__all__ = [
    "DEFAULT_RESOLVE_ON",
    "DEFAULT_SEVERITY",
    "EVENTS_URL",
    "MAX_EVENT_BYTES",
    "Decision",
    "PagerDutySink",
    "decide",
    "dedup_key",
    "resolving",
    "summary",
]
