"""Email keys and headers (issue 15, items 13 and 14): ids that differ only in invisible
characters or lone surrogates thread apart; every hostile shape gives a message whose
headers keep their limits and whose bytes are valid UTF-8."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.factories import sink_envelope
from tests.hostile_shapes import SHAPES
from watcher.sinks.email import compose, thread_root
from watcher.sinks.email.compose import MAX_SUBJECT

TWINS = ("job-1", "job\u200b-1", "job\u00a0-1", "job-1\ud800", "job-1\udc00", "job-1\ufeff")


def test_invisible_twins_thread_apart() -> None:
    roots = {thread_root(replace(sink_envelope().transition, job_id=j)) for j in TWINS}
    assert len(TWINS) == len(roots)
    assert all(root.isascii() and len(root) < 200 for root in roots)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_shape_gives_a_sendable_message(shape: str) -> None:
    job_fields, details = SHAPES[shape]
    base = sink_envelope()
    transition = replace(base.transition, job={**base.transition.job, **job_fields},
                         details={**base.transition.details, **details})  # fmt: skip
    message = compose([replace(base, transition=transition)], sender="w@x.example",
                      recipients=["o@x.example"])  # fmt: skip
    assert len(str(message["Subject"])) <= MAX_SUBJECT
    raw = message.as_bytes()
    raw.decode("utf-8")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))  # RFC 5322
