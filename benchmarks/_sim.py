"""The peers the benchmarks start as processes of their own (so that their CPU is not ours):
``watcher simulate``, and servers that print their base URL as a JSON line (the
signature-checking receiver, the minimal one)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2 as httpx

from watcher.devtools.receiver import SECRET_ENV


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


@contextmanager
def serving(command: list[str], env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``command`` in its own process, which prints ``{"url": …}`` first; yields that base
    URL and the process id, and stops it afterwards."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    try:
        assert proc.stdout is not None
        url: str = json.loads(proc.stdout.readline())["url"]
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def receiver_process(secret: str) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """``python -m watcher.devtools.receiver`` (it checks each webhook's signature)."""
    command = [sys.executable, "-m", "watcher.devtools.receiver", "--port", "0"]
    return serving(command, {SECRET_ENV: secret})
