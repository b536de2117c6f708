"""Stopping: the commit in progress finishes; the daemon does not linger."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.harness import CONSOLE, config, source
from watcher.app.daemon import Watcher
from watcher.config import validate_config
from watcher.devtools.simulator import JobSpec, simulator

pytestmark = pytest.mark.e2e


async def test_stop_lets_the_running_commit_finish(tmp_path: Path) -> None:
    """A stop requested while a cycle commits waits for that commit; then serve returns."""
    async with simulator() as sim:
        sim.sim.create(JobSpec(status="RUNNING", frozen=True))
        raw = config(tmp_path, sources=[source(sim)], sinks=[CONSOLE])
        committing, committed = anyio.Event(), anyio.Event()
        async with Watcher(validate_config(raw, env={})) as watcher:
            real = watcher.store.commit

            async def slow_commit(*args: Any, **kwargs: Any) -> int:
                committing.set()
                await anyio.sleep(1.0)  # cancellation would land here if unshielded
                result = await real(*args, **kwargs)
                committed.set()
                return result

            watcher.store.commit = slow_commit  # type: ignore[method-assign]
            stop = anyio.Event()
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: watcher.serve(until=stop))
                    await committing.wait()
                    stopped_at = time.monotonic()
                    stop.set()
            assert committed.is_set()
            assert time.monotonic() - stopped_at < 5
            cursor = await watcher.store.load_cursor("ft")
            assert cursor.baseline_done
            assert 1 == len(await watcher.store.active_snapshots("ft"))
