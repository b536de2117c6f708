"""Hostile payload shapes for the sinks' size limits (issue 15, item 13): long strings in
every field, deep and wide metadata, long lists, long keys, multi-byte text, lone
surrogates. Each shape is (job fields, transition details) to lay over a normal job."""

from __future__ import annotations

from typing import Any

BIG = 600_000  # characters: over PagerDuty's 512 KB on its own
JOB_TEXT_FIELDS = ("model", "suffix", "fine_tuned_model", "job_type", "status")


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "z" * 5000}
    for level in range(levels):
        value = {f"level{level}": value, "pad": "p" * 5000}
    return value


Shape = tuple[dict[str, Any], dict[str, Any]]

SHAPES: dict[str, Shape] = {
    "long suffix": ({"suffix": "s" * BIG}, {}),
    "every job field long": ({k: k[0] * 150_000 for k in JOB_TEXT_FIELDS}, {}),
    "one huge metadata value": ({"metadata": {"notes": "n" * BIG}}, {}),
    "thousands of metadata keys": ({"metadata": {f"key{i}": "v" * 40 for i in range(30_000)}}, {}),
    "long metadata keys": ({"metadata": {f"{i}" + "k" * 100_000: i for i in range(8)}}, {}),
    "deep metadata": ({"metadata": _deep(60)}, {}),
    "long list": ({"errors": [{"message": "e" * 100, "count": i} for i in range(20_000)]}, {}),
    "multi-byte text": ({"suffix": "\U0001f600" * 200_000}, {}),
    "lone surrogates": (
        {"suffix": "bad\ud800" * 1000, "metadata": {"k\udc00": ["\udbff" * 100_000]}},
        {"reason": "\udfff"},
    ),
    "huge failure in details": ({}, {"failure": {"message": "E" * BIG}, "attempt": 2}),
    "huge alert in details": ({}, {"alert": {"rule": "r" * BIG, "since": "s" * BIG}}),
    "long lists of lists": ({"loss_curve": [[i, 0.5, 0.6] for i in range(40_000)]}, {}),
}
