"""The event streams of the Workflows source: :class:`Hints` (what the streams said until a
commit covers it) and :class:`Follower` against a real loopback SSE server (a Starlette app
served by uvicorn), workflows reference §7.3, §7.8."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from tests.unit.sources.workflow_fakes import KEY, frame, frame_text
from tests.waiting import wait_until
from watcher.app.httpserver import serve_app
from watcher.model.jobs import StreamEvent
from watcher.model.secrets import Secret
from watcher.model.snapshot import Cursor
from watcher.sources import streams
from watcher.sources.mistral import ApiClient
from watcher.sources.streams import MAX_PENDING, STREAM_PATH, Follower, Hints
from watcher.sources.workflow_jobs import parse_frame

ROOT = "exec-1"


def ev(sequence: int, type_: str = "ACTIVITY_TASK_RETRYING", job_id: str = ROOT) -> StreamEvent:
    parsed = parse_frame(json.dumps(frame(sequence, type_, job_id=job_id, root=ROOT)))
    assert parsed is not None
    return parsed


# --- Hints -----------------------------------------------------------------------------


def test_hints_keep_what_a_poll_should_confirm() -> None:
    hints = Hints()
    assert hints.add(ROOT, ev(3, "WORKFLOW_EXECUTION_COMPLETED", "child-1"))
    assert hints.add(ROOT, ev(1))
    assert not hints.add(ROOT, ev(2, "ACTIVITY_TASK_STARTED"))  # no news
    assert not hints.add(ROOT, ev(4, "CUSTOM_TASK_IN_PROGRESS"))
    taken = hints.take({})
    assert {ROOT: [1], "child-1": [3]} == {
        job: [e.sequence for e in events] for job, events in taken.events.items()
    }
    # The position covers the events that were no news too.
    assert {ROOT: 4} == taken.positions
    assert set() == taken.checks


def test_hints_are_forgotten_once_committed() -> None:
    hints = Hints()
    for sequence in (5, 6, 7):
        hints.add(ROOT, ev(sequence))
    taken = hints.take({ROOT: 4})  # a cycle takes them; its commit fails
    assert [5, 6, 7] == [e.sequence for e in taken.events[ROOT]]
    again = hints.take({ROOT: 6})  # a commit reached 6
    assert [7] == [e.sequence for e in again.events[ROOT]]
    assert {ROOT: 7} == again.positions
    done = hints.take({ROOT: 7})
    assert {} == done.events and {} == done.positions
    assert [] == hints.take({}).events.get(ROOT, [])  # forgotten, even if asked again


def test_hints_events_come_oldest_first() -> None:
    hints = Hints()
    for sequence in (9, 2, 5):
        hints.add(ROOT, ev(sequence))
    assert [2, 5, 9] == [e.sequence for e in hints.take({}).events[ROOT]]


@pytest.mark.parametrize(
    ("received", "committed", "resume"),
    [
        (None, None, 0),  # never streamed, nothing committed: from the start
        (None, 41, 42),  # a restart, or a takeover: after the committed position
        (50, 41, 51),  # this process already holds 42..50
        (30, 41, 42),  # another replica committed further
    ],
)
def test_hints_resume_at(received: int | None, committed: int | None, resume: int) -> None:
    hints = Hints()
    if received is not None:
        hints.add(ROOT, ev(received))
    assert resume == hints.resume_at(ROOT, committed)
    assert (committed if committed is not None else -1) + 1 == hints.resume_at("other", committed)


def test_hints_flood_keeps_the_newest() -> None:
    hints = Hints()
    for sequence in range(MAX_PENDING + 10):
        hints.add(ROOT, ev(sequence))
    assert 10 == hints.dropped
    taken = hints.take({})
    kept = [e.sequence for e in taken.events[ROOT]]
    assert MAX_PENDING == len(kept)
    assert (10, MAX_PENDING + 9) == (kept[0], kept[-1])
    assert {ROOT: MAX_PENDING + 9} == taken.positions


def test_hints_checks_are_taken_once() -> None:
    hints = Hints()
    hints.check(ROOT)
    hints.check(ROOT)
    assert {ROOT} == hints.take({}).checks
    assert set() == hints.take({}).checks


def test_hints_forget_roots_no_longer_followed() -> None:
    hints = Hints()
    hints.add(ROOT, ev(8))
    hints.add("exec-2", ev(9, job_id="exec-2"))
    hints.forget([ROOT])
    assert ["exec-2"] == list(hints.take({}).events)
    assert 0 == hints.resume_at(ROOT, None)


# --- Follower against a loopback SSE server --------------------------------------------


@dataclass
class Answer:
    """One connection's answer: a status and body (a refusal), or SSE ``chunks`` then
    ``then``: "close" the stream, or "hang" (send nothing more)."""

    chunks: list[str] = field(default_factory=list)
    then: str = "hang"
    status: int = 200
    body: Any = None
    gap: float = 0.0  # seconds between chunks


@dataclass
class StreamServer:
    """``GET /v1/workflows/events/stream``: each connection gets the next answer (the
    last one is repeated)."""

    answers: list[Answer] = field(default_factory=list)
    asked: list[dict[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    others: dict[str, list[Answer]] = field(default_factory=dict)  # roots other than ROOT

    async def endpoint(self, request: Request) -> Response:
        self.asked.append(dict(request.query_params))
        self.headers.append(dict(request.headers))
        answers = self.others.get(request.query_params["root_workflow_exec_id"], self.answers)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer.status != 200:
            return JSONResponse(answer.body, status_code=answer.status)

        async def body() -> AsyncIterator[str]:
            for chunk in answer.chunks:
                yield chunk
                if answer.gap:
                    await anyio.sleep(answer.gap)
            if answer.then == "hang":
                await anyio.sleep(3600)

        return StreamingResponse(body(), media_type="text/event-stream")

    def starts(self) -> list[int]:
        return [int(q["start_seq"]) for q in self.asked]


def sse(sequence: int, type_: str = "ACTIVITY_TASK_RETRYING", **kwargs: Any) -> str:
    return f"id: {sequence}\ndata: {frame_text(sequence, type_, **kwargs)}\n\n"


@dataclass
class Run:
    follower: Follower
    hints: Hints
    server: StreamServer
    delays: list[float]
    nudges: list[int]


@pytest.fixture(autouse=True)
def _quick_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "RECONCILE_EVERY", 0.01)


class Following:
    """Runs a Follower of ``ROOT`` against a fresh server while the block runs."""

    def __init__(self, answers: list[Answer], *, committed: int | None = None,
                 idle: float = 5.0, max_streams: int = 10) -> None:  # fmt: skip
        self.server = StreamServer(answers)
        self.committed = committed
        self.idle = idle
        self.max_streams = max_streams

    async def __aenter__(self) -> Run:
        self._stack = serve_app(Starlette(routes=[Route(STREAM_PATH, self.server.endpoint)]))
        url = await self._stack.__aenter__()
        self._client = httpx.AsyncClient()
        api = ApiClient(source="wf", base_url=url, api_key=Secret(KEY), client=self._client,
                        timeout=5.0, max_retries=0)  # fmt: skip
        delays: list[float] = []

        async def sleep(seconds: float) -> None:
            delays.append(seconds)
            await anyio.sleep(0.001)

        hints = Hints()
        follower = Follower(api, hints, max_streams=self.max_streams, idle_timeout=self.idle,
                            sleep=sleep)  # fmt: skip
        follower.follow([ROOT])
        nudges: list[int] = []

        async def load_cursor() -> Cursor:
            return Cursor(streams={} if self.committed is None else {ROOT: self.committed})

        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(follower.run, load_cursor, lambda: nudges.append(1))
        return Run(follower, hints, self.server, delays, nudges)

    async def __aexit__(self, *exc: object) -> None:
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._client.aclose()
        await self._stack.__aexit__(None, None, None)


def pending(hints: Hints) -> list[int]:
    """The sequences the streams said and no commit covered (a look that takes nothing:
    nothing is committed)."""
    state = hints.roots.get(ROOT)
    return sorted(state.events) if state is not None else []


async def test_frames_reach_the_hints_and_wake_a_poll() -> None:
    answer = Answer([
        ": keep-alive\n\n",
        "retry: 2500\n\n",
        sse(42, activity_name="fetch"),
        sse(43, "ACTIVITY_TASK_STARTED"),  # no news: moves the position only
        "event: message\nid: 44\ndata: " + frame_text(44, "WORKFLOW_EXECUTION_STARTED") + "\n\n",
        ": ping\n\n",
    ])  # fmt: skip
    async with Following([answer], committed=41) as run:
        await wait_until(lambda: 44 in pending(run.hints), what="the frames")
        assert run.follower.open == {ROOT}
        assert 1 == len(run.server.asked)
        query = run.server.asked[0]
        assert {"root_workflow_exec_id": ROOT, "start_seq": "42"} == query
        headers = run.server.headers[0]
        assert f"Bearer {KEY}" == headers["authorization"]
        assert "text/event-stream" == headers["accept"]
        assert [42, 44] == pending(run.hints)
        assert len(run.nudges) >= 1
        assert run.follower.problem is None
        taken = run.hints.take({ROOT: 41})
        assert {ROOT: 44} == taken.positions


async def test_a_closed_stream_resumes_after_what_it_received() -> None:
    """The server closes (a gateway, the end of the workflow): the stream reconnects after
    the ``retry`` the server asked for, from the position after the last event received,
    and a poll is asked to confirm what became of the execution."""
    first = Answer(["retry: 250\n\n", sse(42), sse(43)], then="close")
    second = Answer([sse(44)])
    async with Following([first, second], committed=41) as run:
        await wait_until(lambda: 44 in pending(run.hints), what="the resumed stream")
        assert [42, 44] == run.server.starts()
        assert 0.25 == run.delays[0]
        taken = run.hints.take({ROOT: 41})
        assert {ROOT} == taken.checks
        assert [42, 43, 44] == [e.sequence for e in taken.events[ROOT]]


async def test_a_restart_resumes_at_the_committed_position() -> None:
    """Nothing held in memory (a restart, a takeover): the committed position + 1."""
    async with Following([Answer([sse(100)])], committed=99) as run:
        await wait_until(lambda: bool(run.server.asked), what="a connection")
        assert [100] == run.server.starts()


async def test_an_error_frame_reconnects() -> None:
    error = 'event: error\ndata: {"error": "stream_failed", "reason": "broker"}\n\n'
    first = Answer([sse(5), error, sse(6)])  # what follows an error frame is not read
    async with Following([first, Answer([sse(6)])], committed=4) as run:
        await wait_until(lambda: 6 in pending(run.hints), what="the reconnection")
        assert [5, 6] == run.server.starts()
        assert run.hints.take({ROOT: 4}).checks == {ROOT}


async def test_a_refused_stream_is_held_back_and_said_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 422 (a filter refused): polling alone goes on for that root; the problem is said
    once, however often the stream is refused again."""
    monkeypatch.setattr(streams, "REFUSED_HOLD", 0.3)
    refusal = Answer(status=422, body={"detail": [{"loc": ["query"], "msg": "need a filter"}]})
    with capture_logs() as logs:
        async with Following([refusal]) as run:
            await wait_until(lambda: run.follower.problem is not None, what="the refusal")
            assert ROOT in run.follower.refused
            assert "422" in (run.follower.problem or "")
            assert "need a filter" in (run.follower.problem or "")
            await anyio.sleep(0.15)
            assert 1 == len(run.server.asked)  # held back, not hammered
            await wait_until(lambda: len(run.server.asked) >= 2, what="a retry after the hold")
            assert run.follower.open == set()
            assert [] == run.delays  # no backoff loop: the hold is the wait
    degraded = [e for e in logs if e["event"] == "streams_degraded"]
    assert 1 == len(degraded)


async def test_an_unavailable_stream_backs_off_then_reports() -> None:
    """503s are retried with a growing backoff; after a few in a row the source is
    degraded, until a stream opens again."""
    unavailable = Answer(status=503, body={"detail": "An error occurred"})
    answers = [unavailable] * streams.FAILURES_TO_REPORT + [Answer([sse(1)])]
    async with Following(answers, committed=0) as run:
        await wait_until(
            lambda: len(run.server.asked) >= streams.FAILURES_TO_REPORT,
            what="the retries",
        )
        await wait_until(lambda: 1 in pending(run.hints), what="the stream at last")
        assert run.follower.problem is None  # recovered
        assert run.follower.open == {ROOT}
    delays = run.delays[: streams.FAILURES_TO_REPORT]
    for attempt, delay in enumerate(delays):
        assert 0.25 * 2**attempt <= delay <= 0.5 * 2**attempt, (attempt, delays)


async def test_failing_streams_degrade_the_source() -> None:
    unavailable = Answer(status=503, body={"detail": "An error occurred"})
    async with Following([unavailable]) as run:
        await wait_until(lambda: run.follower.problem is not None, what="degraded")
        assert len(run.server.asked) >= streams.FAILURES_TO_REPORT
        assert "503" in (run.follower.problem or "")


async def test_an_idle_stream_reconnects_and_asks_for_a_check() -> None:
    """Nothing for ``idle_timeout`` (no keep-alive either): reconnect, and have a poll
    confirm the execution (TERMINATED and TIMED_OUT send no event)."""
    async with Following([Answer([sse(7)]), Answer([sse(8)])], committed=6, idle=0.3) as run:
        await wait_until(lambda: 8 in pending(run.hints), what="the reconnection")
        assert [7, 8] == run.server.starts()
        assert {ROOT} == run.hints.take({ROOT: 6}).checks
        assert run.follower.problem is None


async def test_keep_alives_keep_an_idle_stream_open() -> None:
    pings = Answer([sse(7)] + [": keep-alive\n\n"] * 8, gap=0.1)
    async with Following([pings], committed=6, idle=0.3) as run:
        await wait_until(lambda: 7 in pending(run.hints), what="the stream")
        await anyio.sleep(0.6)
        assert 1 == len(run.server.asked)


async def test_unreadable_frames_are_skipped() -> None:
    answer = Answer(["data: {not json\n\n", "data: [1, 2]\n\n", sse(3)])
    async with Following([answer], committed=0) as run:
        await wait_until(lambda: 3 in pending(run.hints), what="the good frame")
        assert run.follower.problem is None
        assert 1 == len(run.server.asked)


async def test_streams_beyond_max_streams_are_left_to_polling() -> None:
    async with Following([Answer([])], max_streams=1) as run:
        run.follower.follow([ROOT, "exec-2", "exec-3"])
        await wait_until(lambda: bool(run.server.asked), what="a connection")
        await anyio.sleep(0.1)
        assert [ROOT] == [q["root_workflow_exec_id"] for q in run.server.asked]
        run.follower.follow(["exec-2"])  # the first one ended: its stream makes room
        await wait_until(lambda: len(run.server.asked) >= 2, what="the next root")
        assert "exec-2" == run.server.asked[1]["root_workflow_exec_id"]


async def test_degraded_streams_recover_when_one_opens() -> None:
    unavailable = Answer(status=503, body={"detail": "An error occurred"})
    answers = [unavailable] * (streams.FAILURES_TO_REPORT + 1) + [Answer([sse(1)])]
    with capture_logs() as logs:
        async with Following(answers, committed=0) as run:
            await wait_until(lambda: 1 in pending(run.hints), what="the stream at last")
            assert run.follower.problem is None
    said = [e["event"] for e in logs if e["event"].startswith("streams_")]
    assert ["streams_degraded", "streams_recovered"] == said


async def test_one_error_frame_then_a_good_stream_does_not_degrade() -> None:
    error = 'event: error\ndata: {"error": "stream_failed", "reason": "broker"}\n\n'
    with capture_logs() as logs:
        async with Following([Answer([error], then="close"), Answer([sse(6)])], committed=5) as run:
            await wait_until(lambda: 6 in pending(run.hints), what="the reconnection")
    assert [] == [e for e in logs if e["event"] == "streams_degraded"]


async def test_error_frames_in_a_row_degrade() -> None:
    error = 'event: error\ndata: {"error": "stream_failed", "reason": "broker"}\n\n'
    async with Following([Answer([error], then="close")], committed=5) as run:
        await wait_until(
            lambda: len(run.server.asked) > streams.FAILURES_TO_REPORT, what="reconnections"
        )
        assert "stream_failed" in (run.follower.problem or "")


async def test_a_refusal_stays_reported_while_other_streams_reconnect() -> None:
    refusal = Answer(status=422, body={"detail": [{"msg": "refused"}]})
    following = Following([refusal])
    # exec-2's stream is closed by the server after one event, and reconnects.
    following.server.others["exec-2"] = [Answer([sse(1, job_id="exec-2", root="exec-2")],
                                                then="close")]  # fmt: skip
    async with following as run:
        run.follower.follow([ROOT, "exec-2"])
        await wait_until(lambda: ROOT in run.follower.refused, what="the refusal")
        await wait_until(
            lambda: sum(q["root_workflow_exec_id"] == "exec-2" for q in run.server.asked) >= 3,
            what="exec-2 reconnecting",
        )
        assert ROOT in run.follower.refused  # still left to polling
        assert run.follower.problem is not None


async def test_an_event_that_never_ends_is_cut_off_and_left_to_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hostile stream sends one event's data without end: it is cut off past the cap
    (memory stays bounded), the root is held back like a refused one and the source says
    so once; the events before it were taken."""
    monkeypatch.setattr(streams, "MAX_EVENT_BYTES", 256 * 1024)
    endless = Answer([sse(7), "data: " + "x" * 65536] + ["x" * 65536] * 64, then="hang")
    with capture_logs() as logs:
        async with Following([endless], committed=6) as run:
            await wait_until(lambda: run.follower.problem is not None, what="the cut-off")
            assert 7 in pending(run.hints)
            assert ROOT in run.follower.refused
            assert "larger than" in (run.follower.problem or "")
            await anyio.sleep(0.1)
            assert 1 == len(run.server.asked)
    assert 1 == len([e for e in logs if e["event"] == "streams_degraded"])
