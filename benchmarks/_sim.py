"""Start ``watcher simulate`` as its own process (so that its CPU is not ours)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2 as httpx


@contextmanager
def simulator_process(api_key: str = "bench-key") -> Iterator[str]:
    """Yields the base URL of a fresh simulator with no jobs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher", "simulate", "--port", "0", "--api-key", api_key],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            found = re.search(r"base URL: (\S+)", line)
            url = found.group(1) if found else None
        if url is None:
            raise RuntimeError("the simulator did not start")
        httpx.delete(f"{url}/_sim/jobs").raise_for_status()  # no demo jobs
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
