"""One fake Slack per test module, reset for every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2 as httpx
import pytest

from tests.fakes.slack import FakeSlack
from tests.unit.sinks.slack.support import CHANNEL, TOKEN, Clock, Slack
from watcher.app.httpserver import serve_app


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope, so that one fake Slack serves every test of the module.
    return "asyncio"


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[FakeSlack, str, httpx.AsyncClient]]:
    fake = FakeSlack(token=TOKEN, channels=[CHANNEL])
    async with serve_app(fake.app) as url, httpx.AsyncClient() as client:
        yield fake, url, client


@pytest.fixture
def slack(server: tuple[FakeSlack, str, httpx.AsyncClient]) -> Slack:
    fake, url, client = server
    clock = Clock()
    fake.reset(clock=clock)
    return Slack(fake, url, clock, client)
