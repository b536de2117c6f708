"""Signals: SIGTERM/SIGINT stop; SIGHUP brings a valid new config, and a bad one is
refused while the running config goes on."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from structlog.testing import capture_logs

from watcher.app.reload import next_config
from watcher.app.sdnotify import Notifier

GOOD = """\
sources:
  - {name: ft, kind: mistral-fine-tuning, api_key: k}
sinks:
  - {name: console, kind: console}
"""


async def arriving(*signums: int) -> AsyncIterator[int]:
    for signum in signums:
        yield signum


async def test_a_stop_signal_ends_the_serve() -> None:
    """SIGTERM is an instruction to stop: no new config."""
    with anyio.fail_after(5):
        assert None is await next_config(arriving(signal.SIGTERM), None, Notifier(env={}))


async def test_a_bad_config_is_refused_and_a_good_one_taken(tmp_path: Path) -> None:
    """A SIGHUP on an invalid file is logged and changes nothing; the next SIGHUP, on a
    valid file, returns the new config."""
    path = tmp_path / "config.yaml"
    path.write_text("sources: [oops]\n")

    async def signals() -> AsyncIterator[int]:
        yield signal.SIGHUP
        path.write_text(GOOD)  # the operator mends the file
        yield signal.SIGHUP

    with capture_logs() as logs, anyio.fail_after(5):
        new = await next_config(signals(), path, Notifier(env={}))
    assert new is not None
    assert ["ft"] == [s.name for s in new.sources]
    assert ["reload_refused", "reloading"] == [e["event"] for e in logs]


async def test_a_reload_without_a_file_is_not_supported() -> None:
    """Without a config file to re-read, SIGHUP is logged and ignored."""
    with capture_logs() as logs, anyio.fail_after(5):
        stop = await next_config(arriving(signal.SIGHUP, signal.SIGINT), None, Notifier(env={}))
    assert (None, ["reload_not_supported", "stopping"]) == (stop, [e["event"] for e in logs])
