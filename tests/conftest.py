from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # APScheduler 3's AsyncIOScheduler and uvicorn need asyncio.
    return "asyncio"
