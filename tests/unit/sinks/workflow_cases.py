"""Workflows transitions as sinks receive them, for every sink's tests: the samples of
:mod:`watcher.render.workflow_samples`, and the same with hostile values everywhere."""

from __future__ import annotations

import dataclasses
from typing import Any

from watcher.model.outbox import Envelope
from watcher.render.workflow_samples import SAMPLES

DETECTED = 1785579975.0
# Every kind of news an execution gives, by sample name.
KINDS = tuple(SAMPLES)
# Markup of every medium, a mention, a terminal escape, a bidi override, a NUL, and 10 kB.
HOSTILE = "<script>x</script> <!channel> *bold* _it_ `tick` \x1b[31mred\u202e\x00 " + "A" * 10_000


def workflow(name: str, *, job: dict[str, Any] | None = None, **fields: Any) -> Envelope:
    """The sample ``name`` as an envelope; ``job`` updates its job, ``fields`` replace
    transition fields (``details``, ``source``, …)."""
    sample = SAMPLES[name]
    changed = dataclasses.replace(sample, **fields)
    if job is not None:
        changed = dataclasses.replace(changed, job={**changed.job, **job})
    return Envelope(transition=changed, detected_at=DETECTED)


def hostile(name: str) -> Envelope:
    """The sample ``name`` with every foreign text hostile: names, ids, the failure."""
    sample = SAMPLES[name]
    details = dict(sample.details)
    if "failure" in details:
        details["failure"] = {"message": HOSTILE}
    if "activity" in details:
        activity = dict(details["activity"])
        activity["name"] = HOSTILE
        if "failure" in activity:
            activity["failure"] = {"message": HOSTILE}
        details["activity"] = activity
    job = {
        "workflow_name": HOSTILE,
        "deployment_name": HOSTILE,
        "parent_execution_id": HOSTILE,
        "root_execution_id": HOSTILE + "root",
        "run_id": HOSTILE,
    }
    return workflow(name, job=job, details=details)
