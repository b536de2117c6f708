"""Bodies that fit: every outgoing JSON body as valid UTF-8, trimmed to a receiver's size
limit field by field, never dropped.

A receiver has a limit (PagerDuty refuses events over 512 KB, a webhook receiver its own
``max_body``) and an API may send a 600 KB suffix, thousands of metadata keys or a list of
100,000 errors. :func:`fit` walks the value with smaller and smaller caps (characters per
string, items per list, keys per object, depth) until its encoding fits: strings stay
strings (cut with "…"), objects stay objects, lists stay lists, so a receiver's schema
still holds. The keys that say what happened (:data:`IDENTITY`: source, status, the job's
id, its times…) are kept whatever the cap on keys; when even the smallest caps do not fit,
only those keys are kept (a skeleton), and as a last resort the source and the job's id.

:func:`encode` is the one encoder of outgoing bodies: compact JSON, UTF-8, lone surrogates
(which no UTF-8 receiver can read) replaced by U+FFFD, non-finite floats as strings.

Pure, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from watcher.model.transitions import json_safe, valid_text

ELLIPSIS = "\u2026"

# What identifies a fact and its job, in any family: kept whatever the cap on keys.
IDENTITY = (
    "source", "type", "status", "previous_status", "occurred_at", "transition_id", "job",
    "id", "created_at", "modified_at", "workflow_name", "deployment_name", "run_id",
    "parent_execution_id", "root_execution_id", "model", "suffix", "fine_tuned_model",
    "job_type", "endpoint", "attempt", "failure", "message", "rule", "reason", "since",
)  # fmt: skip
_IDENTITY = frozenset(IDENTITY)


class Caps(NamedTuple):
    """One round of trimming: characters per string, items per list, keys per object (on
    top of the identity keys), levels of nesting kept."""

    chars: int
    items: int
    keys: int
    depth: int


ROUNDS = (
    Caps(16_384, 1000, 1000, 32),
    Caps(4096, 200, 200, 16),
    Caps(1024, 50, 50, 10),
    Caps(256, 20, 20, 6),
    Caps(96, 5, 5, 4),
)
SKELETON = Caps(128, 0, 0, 3)  # identity keys only, no lists
BARE = Caps(128, 0, 0, 2)


def encode(value: Any) -> bytes:
    """``value`` as compact JSON in valid UTF-8 (lone surrogates replaced by U+FFFD, NaN
    and infinities as strings, anything else through ``str``)."""
    return _encode_safe(json_safe(value))


def encode_safe(value: Any) -> bytes:
    """:func:`encode` of a value already through :func:`json_safe` (not walked again)."""
    return _encode_safe(value)


def _encode_safe(value: Any) -> bytes:
    """:func:`encode` of a value already through :func:`json_safe`; should a non-finite
    float be left in it after all (a row written before they were made safe), it is
    walked then, never sent as invalid JSON."""
    try:
        text = _COMPACT.encode(value)
    except ValueError:
        text = _COMPACT.encode(json_safe(value))
    return valid_text(text).encode("utf-8")


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one "…" when it was longer."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def trim(value: Any, caps: Caps, *, identity_only: bool = False, depth: int = 0) -> Any:
    """``value`` within ``caps``: long strings cut, lists and objects shortened (identity
    keys first), structures nested beyond ``caps.depth`` left out of their parent."""
    if isinstance(value, str):
        return cut(value, caps.chars)
    if isinstance(value, Mapping):
        keys = [k for k in value if str(k) in _IDENTITY]
        if not identity_only:
            keys += [k for k in value if str(k) not in _IDENTITY][: caps.keys]
        chosen = set(keys)
        out: dict[str, Any] = {}
        for key in value:  # the object's own order
            if key not in chosen or (_nested(value[key]) and depth + 1 >= caps.depth):
                continue
            out[cut(str(key), caps.chars)] = trim(
                value[key], caps, identity_only=identity_only, depth=depth + 1
            )
        return out
    if isinstance(value, list | tuple):
        if depth + 1 >= caps.depth:
            return []
        return [
            trim(item, caps, identity_only=identity_only, depth=depth + 1)
            for item in value[: caps.items]
            if not (_nested(item) and depth + 2 >= caps.depth)
        ]
    return value


def _nested(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple)


def fit(value: Mapping[str, Any], budget: int) -> tuple[dict[str, Any], bool]:
    """``value`` trimmed until its :func:`encode` takes at most ``budget`` bytes, and
    whether it had to be trimmed. Never drops it: the identity keys are the last to go."""
    safe: dict[str, Any] = json_safe(dict(value))
    if len(_encode_safe(safe)) <= budget:
        return safe, False
    for caps in ROUNDS:
        trimmed: dict[str, Any] = trim(safe, caps)
        if len(_encode_safe(trimmed)) <= budget:
            return trimmed, True
    skeleton: dict[str, Any] = trim(safe, SKELETON, identity_only=True)
    if len(_encode_safe(skeleton)) <= budget:
        return skeleton, True
    return bare(safe), True


def bare(value: Mapping[str, Any]) -> dict[str, Any]:
    """The last resort: ``source`` and the job's ``id`` (and ``status``), each cut to 128
    characters: always a few hundred bytes."""
    out: dict[str, Any] = {}
    for key in ("source", "type", "status"):
        if isinstance(value.get(key), str):
            out[key] = cut(value[key], BARE.chars)
    job = value.get("job")
    if isinstance(job, Mapping):
        out["job"] = {
            k: cut(v, BARE.chars) if isinstance(v, str) else v
            for k, v in job.items()
            if k in ("id", "status", "created_at", "modified_at", "workflow_name")
            and isinstance(v, str | int | float | bool)
        }
    return out
