"""Receiver: verifies Standard Webhooks signatures, records everything, misbehaves on demand."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import httpx2 as httpx
import pytest
import standardwebhooks

from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import SECRET_ENV, Receiver, generate_secret, run_receiver

SECRET = "whsec_" + base64.b64encode(b"receiver-test-secret-024").decode()
PAYLOAD = {"type": "fine_tuning.job.failed", "timestamp": "2026-11-27T03:04:05Z", "data": {}}


def signed(
    msg_id: str = "wt_1",
    payload: object = PAYLOAD,
    *,
    secret: str = SECRET,
    at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A body and the Standard Webhooks headers that sign it."""
    body = json.dumps(payload, separators=(",", ":"))
    moment = at or datetime.now(tz=UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, moment, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }
    return body.encode(), headers


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(SECRET)


@pytest.fixture
async def client(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    """A client calling the app in-process (the socket path is covered by run_receiver)."""
    transport = httpx.ASGITransport(app=receiver.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as http:
        yield http


async def post(client: httpx.AsyncClient, msg_id: str = "wt_1") -> httpx.Response:
    body, headers = signed(msg_id)
    return await client.post("/hook", content=body, headers=headers)


async def test_valid_signature_is_accepted_and_recorded(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    """A correctly signed webhook gets 200 and is recorded as valid with its type and data."""
    response = await post(client, "wt_ok")

    expected: tuple[int, list[tuple[object, ...]]] = (
        200,
        [("wt_ok", "fine_tuning.job.failed", {}, True, None, 200, "/hook", True)],
    )
    assert expected == (
        response.status_code,
        [
            (r.id, r.type, r.data, r.valid, r.error, r.status, r.path, r.accepted)
            for r in receiver.received
        ],
    )


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        pytest.param(
            lambda b, h: (
                b,
                h | {"webhook-signature": signed(secret=generate_secret())[1]["webhook-signature"]},
            ),
            "No matching signature",
            id="other secret",
        ),
        pytest.param(lambda b, h: (b + b" ", h), "No matching signature", id="body changed"),
        pytest.param(
            lambda b, h: (b, {k: v for k, v in h.items() if k != "webhook-signature"}),
            "Missing required headers",
            id="no signature",
        ),
        pytest.param(
            lambda b, h: signed(at=datetime.now(tz=UTC) - timedelta(hours=1)),
            "too old",
            id="replayed",
        ),
        pytest.param(
            lambda b, h: (b, h | {"webhook-signature": "garbage"}),
            "ValueError",
            id="malformed header",
        ),
    ],
)
async def test_invalid_signature_is_rejected_and_recorded(
    receiver: Receiver, client: httpx.AsyncClient, tamper: object, error: str
) -> None:
    """A bad, missing or stale signature gets 401 and is recorded with valid=False."""
    body, headers = tamper(*signed())  # type: ignore[operator]
    response = await client.post("/hook", content=body, headers=headers)

    expected = (401, [(False, 401)])
    assert expected == (response.status_code, [(r.valid, r.status) for r in receiver.received])
    assert error in (receiver.received[0].error or "")


async def test_fail_next(receiver: Receiver, client: httpx.AsyncClient) -> None:
    """fail_next(n) answers the next n webhooks with the status and Retry-After, then 200."""
    receiver.fail_next(2, status=429, retry_after=7)
    answers = [await post(client, f"wt_{i}") for i in range(3)]

    expected = [(429, "7", 429), (429, "7", 429), (200, None, 200)]
    assert expected == [
        (answer.status_code, answer.headers.get("retry-after"), record.status)
        for answer, record in zip(answers, receiver.received, strict=True)
    ]
    expected_accepted = ["wt_2"]
    assert expected_accepted == [r.id for r in receiver.accepted()]


async def test_down_answers_503_until_up(receiver: Receiver, client: httpx.AsyncClient) -> None:
    """While down every webhook gets 503 (and is recorded); once up they are accepted."""
    receiver.set_down(True)
    down = await post(client, "wt_1")
    receiver.set_down(False)
    up = await post(client, "wt_1")

    expected = ([503, 200], {"wt_1": [503, 200]})
    assert expected == (
        [down.status_code, up.status_code],
        {k: [r.status for r in v] for k, v in receiver.by_id().items()},
    )


async def test_delay_holds_requests_in_flight(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    """With a delay, a request is recorded on arrival, counted in flight, then answered."""
    receiver.set_delay(0.3)
    arrived = receiver.arrived
    answers: list[int] = []

    async def send() -> None:
        answers.append((await post(client, "wt_slow")).status_code)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await arrived.wait()
            await receiver.wait_in_flight(1, timeout=5)
            held = (receiver.in_flight, receiver.received[0].status, list(answers))

    expected: tuple[object, ...] = ((1, None, []), (0, 200, [200]))
    assert expected == (held, (receiver.in_flight, receiver.received[0].status, answers))


async def test_sender_leaving_mid_hold_leaves_an_unanswered_record() -> None:
    """A sender that gives up while its request is held leaves a record with no answer."""
    receiver = Receiver(SECRET)
    receiver.set_delay(30)
    with anyio.fail_after(10):
        async with serve_app(receiver.app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=0.3) as http:
                with pytest.raises(httpx.ReadTimeout):
                    await post(http, "wt_cut")
            await receiver.wait_for(lambda _: receiver.in_flight == 0, timeout=5)

    expected = [("wt_cut", True, None, False)]
    assert expected == [(r.id, r.valid, r.status, r.accepted) for r in receiver.received]


async def test_wait_for_returns_when_predicate_holds(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    """wait_for wakes up as webhooks arrive and returns the records once the predicate holds."""
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(partial(post, client, f"wt_{i}"))
        got = await receiver.wait_for(
            lambda items: sum(r.status == 200 for r in items) == 3, timeout=5
        )

    expected = ["wt_0", "wt_1", "wt_2"]
    assert expected == sorted(r.id or "" for r in got)


async def test_wait_for_times_out(receiver: Receiver) -> None:
    """wait_for raises TimeoutError when nothing matching arrives in time."""
    with pytest.raises(TimeoutError):
        await receiver.wait_for(lambda items: bool(items), timeout=0.05)


async def test_admin_endpoints(receiver: Receiver, client: httpx.AsyncClient) -> None:
    """Another process can steer the receiver with POST /_control and read GET /_received."""
    control = await client.post("/_control", json={"down": True, "delay": 0, "fail_next": 0})
    answers = [control.status_code, control.json()["down"]]
    answers.append((await post(client, "wt_down")).status_code)
    await client.post("/_control", json={"down": False, "fail_next": 1, "status": 500})
    answers.append((await post(client, "wt_fail")).status_code)
    answers.append((await post(client, "wt_ok")).status_code)

    listed = (await client.get("/_received")).json()
    expected = [
        ("wt_down", "fine_tuning.job.failed", True, None, 503),
        ("wt_fail", "fine_tuning.job.failed", True, None, 500),
        ("wt_ok", "fine_tuning.job.failed", True, None, 200),
    ]
    assert expected == [(r["id"], r["type"], r["valid"], r["error"], r["status"]) for r in listed]
    expected_answers = [200, True, 503, 500, 200]
    assert expected_answers == answers
    assert {"id", "type", "data", "valid", "error", "received_at"} <= set(listed[0])

    cleared = await client.post("/_control", json={"clear": True})
    expected_after_clear: tuple[int, list[object]] = (0, [])
    assert expected_after_clear == (
        cleared.json()["received"],
        (await client.get("/_received")).json(),
    )


@pytest.mark.parametrize(
    "wish",
    [b"not json", b"[1]", b'{"down": "yes"}', b'{"delay": -1}', b'{"fail_next": 1, "status": 99}'],
)
async def test_control_rejects_bad_requests(client: httpx.AsyncClient, wish: bytes) -> None:
    """A malformed /_control request is a 400 and changes nothing."""
    response = await client.post("/_control", content=wish)
    state = (await client.get("/_control")).json()

    expected = (400, False, 0.0, 0)
    assert expected == (response.status_code, state["down"], state["delay"], state["fail_next"])


async def test_run_receiver_serves_until_cancelled() -> None:
    """run_receiver reports its URL, accepts signed webhooks and stops when cancelled."""
    seen: list[str] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            url = await tg.start(partial(run_receiver, secret=SECRET, port=0, ready=seen.append))
            async with httpx.AsyncClient(base_url=url) as http:
                response = await post(http, "wt_run")
                listed = (await http.get("/_received")).json()
            tg.cancel_scope.cancel()

    expected = ([url], 200, ["wt_run"])
    assert expected == (seen, response.status_code, [r["id"] for r in listed])


def test_generate_secret() -> None:
    """Fresh secrets are whsec_ + base64 of 24 random bytes, usable by standardwebhooks."""
    first, second = generate_secret(), generate_secret()

    assert first != second
    assert first.startswith("whsec_")
    expected = 24
    assert expected == len(base64.b64decode(first.removeprefix("whsec_"), validate=True))
    body, headers = signed(secret=first)
    assert PAYLOAD == standardwebhooks.Webhook(first).verify(body, headers)


@pytest.mark.e2e
def test_runs_as_a_separate_process() -> None:
    """``python -m watcher.devtools.receiver`` announces its URL, answers HTTP and stops on
    SIGTERM."""
    env = os.environ | {SECRET_ENV: SECRET}
    with subprocess.Popen(
        [sys.executable, "-m", "watcher.devtools.receiver", "--port", "0"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            announced = json.loads(process.stdout.readline())
            state = httpx.post(f"{announced['url']}/_control", json={"down": True}, timeout=5)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)
        finally:
            process.kill()

    expected = ({"url"}, True, 0)
    assert expected == (set(announced), state.json()["down"], code)
