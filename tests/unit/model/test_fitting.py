"""Bodies that fit (issue 15, item 13): every shape trimmed to its budget, field by field,
the identity kept, strings still strings, valid UTF-8 always."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.factories import sink_job
from tests.hostile_shapes import SHAPES
from watcher.model.fitting import encode, encode_safe, fit
from watcher.model.transitions import Transition

BUDGETS = (500_000, 64 * 1024, 4096)


def data_of(job: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "ft",
        "job": sink_job(**job),
        "status": "FAILED",
        "previous_status": "RUNNING",
        "occurred_at": "2026-11-18T08:00:00Z",
        **details,
    }


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_shape_fits_and_keeps_what_identifies_the_job(shape: str, budget: int) -> None:
    data = data_of(*SHAPES[shape])
    fitted, trimmed = fit(data, budget)
    body = encode(fitted)

    assert len(body) <= budget
    assert trimmed == (len(encode(data)) > budget)
    body.decode("utf-8")  # strict
    back = json.loads(body)
    assert ("ft", "FAILED", "RUNNING") == (back["source"], back["status"], back["previous_status"])
    assert data["job"]["id"] == back["job"]["id"]
    assert data["job"]["created_at"] == back["job"]["created_at"]
    job = json.loads(encode(data["job"]))
    for key, value in back["job"].items():  # what is kept keeps its type
        assert type(value) is type(job[key])


def test_a_small_payload_is_left_alone() -> None:
    data = data_of({}, {"reason": "x"})
    assert (json.loads(encode(data)), False) == fit(data, 4096)


def test_long_strings_are_cut_with_an_ellipsis_not_dropped() -> None:
    fitted, _ = fit(data_of({"suffix": "s" * 600_000}, {}), 500_000)
    suffix = fitted["job"]["suffix"]
    assert suffix.startswith("s" * 1000) and suffix.endswith("\u2026")


def test_lone_surrogates_never_reach_the_bytes() -> None:
    body = encode({"k\udc00": ["a\ud800b"], "v": "\udbff"})
    assert {"k\ufffd": ["a\ufffdb"], "v": "\ufffd"} == json.loads(body.decode("utf-8"))
    assert b"\\ud" not in body


def test_non_finite_numbers_are_strings() -> None:
    assert b'{"a":"NaN","b":"Infinity"}' == encode({"a": float("nan"), "b": float("inf")})


def test_identity_keys_survive_thousands_of_other_keys() -> None:
    wide = {f"noise{i}": i for i in range(10_000)} | {"status": "FAILED", "source": "ft"}
    fitted, _ = fit(wide, 4096)
    assert ("FAILED", "ft") == (fitted["status"], fitted["source"])


def test_a_value_said_safe_still_encodes_to_valid_json() -> None:
    """encode_safe trusts its caller not to have left NaN or a lone surrogate, and still
    never sends invalid JSON when one was left after all."""
    body = encode_safe({"a": float("nan"), "b": [float("-inf")], "c": "x\ud800"})
    assert {"a": "NaN", "b": ["-Infinity"], "c": "x\ufffd"} == json.loads(body)


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"in": value}
    return value


STORED_SHAPES = {
    **SHAPES,
    "non-finite metrics": (
        {"metadata": {"loss": float("nan"), "curve": [float("inf"), 1.0]}},
        {"checkpoint": {"metrics": {"valid_loss": float("-inf")}}},
    ),
    "nested past the depth kept": ({"metadata": _nested(200)}, {"extra": _nested(100)}),
}


@pytest.mark.parametrize("shape", STORED_SHAPES, ids=str)
def test_a_transition_read_back_from_the_store_is_sent_as_the_original(shape: str) -> None:
    """A transition the store gives back (``from_json(safe=True)``: its data is not walked
    again) makes the very body that walking it again would make, whatever the API sent;
    and but for how deep a too-deep detail is cut, the body of the transition as detected."""
    job, details = STORED_SHAPES[shape]
    sent = Transition(
        id="wt_1",
        type="fine_tuning.job.failed",
        source="ft",
        job_id=str(job.get("id", "j")),
        status="FAILED",
        previous_status="RUNNING",
        occurred_at=1_780_000_000,
        job=sink_job(**job),
        details=details,
    )
    stored = json.loads(json.dumps(sent.to_json()))
    body = encode_safe(Transition.from_json(stored, safe=True).payload(1.0))
    assert encode_safe(Transition.from_json(stored).payload(1.0)) == body
    if shape != "nested past the depth kept":
        assert encode(sent.payload(1.0)) == body
    json.loads(body.decode("utf-8"))
