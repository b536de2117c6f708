"""Verifying, reading and authorising a click on a card's button (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.slack_interactive import interaction, sign, signed
from watcher.model.secrets import Secret
from watcher.sinks.slack.card import CANCEL, SILENCE_HOUR, read_value, value_of
from watcher.sinks.slack.interaction import (
    MAX_BODY,
    Click,
    Gate,
    Rejected,
    Verifier,
    allowed_response_url,
    parse_form,
    parse_payload,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_800_000_000.0
VALUE = value_of("ft", "job-1")
assert VALUE is not None


def verifier(*secrets: str) -> Verifier:
    return Verifier([Secret(s) for s in secrets or (SECRET,)], clock=lambda: NOW)


def request(
    payload: dict[str, Any] | None = None, *, secret: str = SECRET, at: float = NOW
) -> tuple[bytes, dict[str, str]]:
    return signed(payload or interaction(SILENCE_HOUR, VALUE), secret, timestamp=at)


def test_a_signed_request_passes_and_names_the_secret_that_signed_it() -> None:
    body, headers = request(secret="other-secret")
    assert 1 == verifier(SECRET, "other-secret").verify(body, headers)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param(
            lambda b, h: (
                b,
                h | {"x-slack-signature": sign("wrong", h["x-slack-request-timestamp"], b)},
            ),
            "bad_signature",
            id="other-secret",
        ),
        pytest.param(lambda b, h: (b + b"&x=1", h), "bad_signature", id="body-changed"),
        pytest.param(lambda b, h: (b, {}), "unsigned", id="no-headers"),
        pytest.param(lambda b, h: (b, h | {"x-slack-signature": "v0=zz"}), "unsigned", id="junk"),
        pytest.param(
            lambda b, h: (b, h | {"x-slack-request-timestamp": "\uff11\uff12\uff13"}),
            "unsigned",
            id="digits",
        ),
    ],
)
def test_anything_but_slack_signature_is_401(change: Any, why: str) -> None:
    body, headers = change(*request())
    with pytest.raises(Rejected) as caught:
        verifier().verify(body, headers)
    assert (401, why) == (caught.value.status, caught.value.why)


@pytest.mark.parametrize("offset", [-360.0, 360.0], ids=["6-minutes-old", "6-minutes-ahead"])
def test_a_timestamp_off_by_more_than_5_minutes_is_401(offset: float) -> None:
    body, headers = request(at=NOW + offset)
    with pytest.raises(Rejected) as caught:
        verifier().verify(body, headers)
    assert "stale_timestamp" == caught.value.why
    body, headers = request(at=NOW - 290)
    verifier().verify(body, headers)  # within the window: fine


def test_a_replayed_request_is_401() -> None:
    check = verifier()
    body, headers = request()
    check.verify(body, headers)
    with pytest.raises(Rejected) as caught:
        check.verify(body, headers)
    assert "replayed" == caught.value.why


def test_a_form_becomes_a_click() -> None:
    body, _ = request(interaction(CANCEL, VALUE, user="U1", username="ali ce<!>", channel="C9"))
    click = parse_form(body)
    assert (
        Click(
            action=CANCEL,
            source="ft",
            job_id="job-1",
            user_id="U1",
            user_name="ali ce<!>",
            channel_id="C9",
            response_url="https://hooks.slack.com/actions/T0/1/x",
        )
        == click
    )
    assert "slack:ali_ce" == click.by


def _hostile() -> list[Any]:
    good = interaction(SILENCE_HOUR, VALUE)
    return [
        b"payload=%7Bnope",
        b"nothing=1",
        b"payload=1&payload=2",
        b"\xff\xfe",
        b"payload=" + b"[" * 20_000 + b"]" * 20_000,
        good | {"type": "view_submission"},
        good | {"actions": []},
        good | {"actions": [good["actions"][0] | {"action_id": "delete_everything"}]},
        good | {"actions": [good["actions"][0] | {"value": '{"source":"ft"}'}]},
        good | {"actions": [good["actions"][0] | {"value": "x" * 3000}]},
        good | {"actions": [good["actions"][0] | {"value": 7}]},
        good | {"user": {"id": "U1\n<!channel>"}},
        good | {"user": "U1"},
        good | {"channel": {"id": "C 1"}},
    ]


@pytest.mark.parametrize("payload", _hostile())
def test_hostile_payloads_are_400(payload: Any) -> None:
    body = payload if isinstance(payload, bytes) else request(payload)[0]
    with pytest.raises(Rejected) as caught:
        parse_form(body)
    assert 400 == caught.value.status


def test_an_oversized_body_is_refused_before_reading() -> None:
    with pytest.raises(Rejected) as caught:
        parse_form(b"payload=" + b"a" * MAX_BODY)
    assert 413 == caught.value.status


def test_button_values_round_trip_and_refuse_what_is_not_ours() -> None:
    assert ("ft", "job-1") == read_value(VALUE)
    assert value_of("ft", "j" * 3000) is None
    for bad in ("", "[]", '{"source":"ft","job_id":"a","x":1}', '{"source":"","job_id":"a"}',
                '{"source":"ft","job_id":"a\\u0000"}', None):  # fmt: skip
        assert read_value(bad) is None


def click(action: str = SILENCE_HOUR, value: str | None = VALUE) -> Click:
    return parse_payload(interaction(action, value or "", user="U1", channel="C1"))


@pytest.mark.parametrize(
    ("gate", "pressed", "why"),
    [
        (Gate({"ft"}), click(), None),
        (Gate({"ft"}, allowed_users={"U2"}), click(), "user_not_allowed"),
        (Gate({"ft"}, allowed_users={"U1"}), click(), None),
        (Gate({"ft"}, allowed_channels={"C2"}), click(), "channel_not_allowed"),
        (Gate({"ft"}), click(CANCEL), "cancel_disabled"),
        (Gate({"ft"}, cancel=True), click(CANCEL), None),
        (Gate({"batch"}), click(), "unknown_source"),
        (Gate({"ft"}), click(value=value_of("other", "job-1")), "unknown_source"),
    ],
)
def test_the_gate(gate: Gate, pressed: Click, why: str | None) -> None:
    refused = gate.refusal(pressed)
    assert why == (refused[0] if refused else None)
    if refused:
        assert refused[1] and "U1" not in refused[1]


def test_only_slack_or_the_configured_api_host_get_answers() -> None:
    api = "http://127.0.0.1:5000/api"
    assert allowed_response_url("https://hooks.slack.com/actions/T/1/x", api)
    assert allowed_response_url("http://127.0.0.1:5000/actions/1", api)
    for url in ("http://hooks.slack.com/a", "https://evil.example/a", "http://127.0.0.1:6000/a",
                "https://hooks.slack.com.evil.example/a", None, "http://[::1/"):  # fmt: skip
        assert not allowed_response_url(url, api)
