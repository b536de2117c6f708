"""The fake PagerDuty on loopback, one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2 as httpx
import pytest

from tests.fakes.pagerduty import FakePagerDuty
from tests.unit.sinks.pagerduty.support import Wire
from watcher.app.httpserver import serve_app


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    fake = FakePagerDuty()
    async with serve_app(fake.app()) as base, httpx.AsyncClient() as client:
        yield Wire(fake, f"{base}/v2/enqueue", client)
