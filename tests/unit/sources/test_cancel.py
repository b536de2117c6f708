"""Cancelling a job through each family's route (httpx.MockTransport): the API's answers in
words, hostile ids kept inside their path segment, hostile bodies cleaned, and a POST sent
again only when the API cannot have applied it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import pytest

from tests.unit.sources import workflow_fakes
from tests.unit.sources.fake_api import KEY
from tests.unit.sources.fake_api import config as ft_config
from tests.unit.sources.workflow_fakes import KEY as WF_KEY
from watcher.abc import CancelAnswer, Cancels
from watcher.config import BatchSourceConfig
from watcher.model.secrets import Secret
from watcher.sources import build_source
from watcher.sources.batch import BatchSource
from watcher.sources.fine_tuning import FineTuningSource
from watcher.sources.workflows import WorkflowsSource

Answer = httpx.Response | Exception


class Api:
    """Answers the queued responses (or raises the queued errors) in order, logging each
    request's method and raw path."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[str, str]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] in (f"Bearer {KEY}", f"Bearer {WF_KEY}")
        self.seen.append((request.method, request.url.raw_path.decode()))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


async def no_sleep(seconds: float) -> None:
    pass


def fine_tuning(api: Api) -> FineTuningSource:
    return FineTuningSource(ft_config(), api.client(), sleep=no_sleep)


async def cancel(api: Api, job_id: str = "j1") -> CancelAnswer:
    return await fine_tuning(api).cancel(job_id)


def job(status: str) -> dict[str, Any]:
    return {"id": "j1", "object": "job", "status": status, "created_at": 1, "modified_at": 2}


async def test_accepted_reports_the_status_the_api_now_gives() -> None:
    api = Api(httpx.Response(200, json=job("CANCELLATION_REQUESTED")))
    answer = await cancel(api)
    assert (True, "requested", "CANCELLATION_REQUESTED") == (
        answer.ok,
        answer.outcome,
        answer.status,
    )
    assert "CANCELLATION_REQUESTED" in answer.message
    assert [("POST", "/v1/fine_tuning/jobs/j1/cancel")] == api.seen


@pytest.mark.parametrize(
    ("job_id", "path"),
    [
        ("../x", "/v1/fine_tuning/jobs/..%2Fx/cancel"),
        ("a/b?c", "/v1/fine_tuning/jobs/a%2Fb%3Fc/cancel"),
        ("a#b c", "/v1/fine_tuning/jobs/a%23b%20c/cancel"),
    ],
)
async def test_a_hostile_id_stays_inside_its_path_segment(job_id: str, path: str) -> None:
    api = Api(httpx.Response(404, json={"detail": "No fine tuning job matches"}))
    answer = await cancel(api, job_id)
    assert [("POST", path)] == api.seen
    assert (False, "not_found") == (answer.ok, answer.outcome)


@pytest.mark.parametrize("job_id", ["bad\nid", "a\x1b[31mb", "", "..", "x" * 300, "a\u202eb"])
async def test_an_id_that_cannot_name_a_job_is_refused_without_a_request(job_id: str) -> None:
    api = Api()
    answer = await cancel(api, job_id)
    assert (False, "invalid_id", []) == (answer.ok, answer.outcome, api.seen)
    assert "\x1b" not in answer.message and "\n" not in answer.message


async def test_not_found_names_the_job_and_the_source() -> None:
    answer = await cancel(Api(httpx.Response(404, json={"detail": "No fine tuning job"})))
    assert "no job j1 on source ft" == answer.message


async def test_a_conflict_quotes_the_apis_message_cleaned_and_scrubbed() -> None:
    hostile = f"\x1b]0;pwned\x07Job is \x1b[31mSUCCESS\x1b[0m\nand cannot be cancelled {KEY}"
    answer = await cancel(Api(httpx.Response(409, json={"detail": hostile})))
    assert (False, "conflict") == (answer.ok, answer.outcome)
    assert answer.message.startswith("job j1 on source ft cannot be cancelled (")
    assert "SUCCESS" in answer.message and "<redacted>" in answer.message
    assert KEY not in answer.message and "\x1b" not in answer.message
    assert "\n" not in answer.message and "pwned" not in answer.message


async def test_a_huge_html_error_body_is_cut_short() -> None:
    body = "<html>" + "A" * 100_000 + "</html>"
    answer = await cancel(Api(httpx.Response(409, text=body)))
    assert len(answer.message) < 300


@pytest.mark.parametrize(
    ("status", "outcome", "words"),
    [(401, "key_refused", "key was refused"), (403, "key_refused", "key was refused"),
     (410, "retired", "retired")],
)  # fmt: skip
async def test_refusals_of_the_key_and_a_retired_api(status: int, outcome: str, words: str) -> None:
    api = Api(httpx.Response(status, json={"detail": "nope"}))
    answer = await cancel(api)
    assert (False, outcome, 1) == (answer.ok, answer.outcome, len(api.seen))
    assert words in answer.message


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"detail": "An error occurred"}),
        httpx.Response(502, text="bad gateway"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("connection dropped"),
    ],
)
async def test_a_post_that_may_have_been_applied_is_not_sent_again(failure: Answer) -> None:
    api = Api(failure, httpx.Response(200, json=job("CANCELLED")))
    answer = await cancel(api)
    assert (False, "failed", 1) == (answer.ok, answer.outcome, len(api.seen))
    assert "may have been applied" in answer.message


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(429, json={"message": "Rate limit exceeded"}, headers={"Retry-After": "0"}),
        httpx.Response(503, json={"message": "Service temporarily unavailable"}),
        httpx.ConnectError("refused"),
    ],
)
async def test_a_post_refused_before_processing_is_sent_again(first: Answer) -> None:
    api = Api(first, httpx.Response(200, json=job("CANCELLATION_REQUESTED")))
    answer = await cancel(api)
    assert (True, 2) == (answer.ok, len(api.seen))


async def test_retries_give_up_with_a_clear_failure() -> None:
    api = Api(*[httpx.Response(503, json={"message": "busy"}) for _ in range(10)])
    answer = await cancel(api)
    assert (False, "failed") == (answer.ok, answer.outcome)
    assert "HTTP 503" in answer.message


async def test_batch_uses_its_own_route() -> None:
    api = Api(httpx.Response(200, json={"id": "b1", "status": "CANCELLATION_REQUESTED"}))
    settings = BatchSourceConfig(
        name="b", kind="mistral-batch", base_url="http://api.test", api_key=Secret(KEY)
    )
    answer = await BatchSource(settings, api.client()).cancel("b1")
    assert [("POST", "/v1/batch/jobs/b1/cancel")] == api.seen
    assert (True, "CANCELLATION_REQUESTED") == (answer.ok, answer.status)


async def test_workflows_204_is_followed_by_one_read_of_the_execution() -> None:
    execution = workflow_fakes.execution("e1", status="CANCELED")
    api = Api(httpx.Response(204), httpx.Response(200, json=execution))
    settings = workflow_fakes.config()
    answer = await WorkflowsSource(settings, api.client()).cancel("e1")
    assert [
        ("POST", "/v1/workflows/executions/e1/cancel"),
        ("GET", "/v1/workflows/executions/e1"),
    ] == api.seen
    assert (True, "CANCELED") == (answer.ok, answer.status)


async def test_workflows_conflict_quotes_the_code_free_detail() -> None:
    body = {"detail": "Workflow not running", "code": "WF_1102", "status": "COMPLETED"}
    api = Api(httpx.Response(409, json=body))
    answer = await WorkflowsSource(workflow_fakes.config(), api.client()).cancel("e1")
    assert "job e1 on source wf cannot be cancelled (Workflow not running)" == answer.message


@pytest.mark.parametrize("budget", [None, 60])
def test_every_built_source_cancels(budget: int | None) -> None:
    """Budgeted or not, each family's source has the ability."""
    client = httpx.AsyncClient()
    built: list[Callable[[], object]] = [
        lambda: build_source(ft_config(max_requests_per_minute=budget), client),
        lambda: build_source(workflow_fakes.config(max_requests_per_minute=budget), client),
    ]
    assert all(isinstance(make(), Cancels) for make in built)
