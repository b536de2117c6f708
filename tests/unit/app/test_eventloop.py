"""The event loop watcher's processes run on: uvloop where installed, asyncio's own when
WATCHER_EVENT_LOOP says so."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from watcher.app import eventloop


async def loop_module(tag: str) -> tuple[str, str]:
    return tag, type(asyncio.get_running_loop()).__module__


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.CHOICE, raising=False)
    assert ("x", "uvloop") == eventloop.run(loop_module, "x")


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "])
def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(eventloop.CHOICE, value)
    assert ("y", "asyncio.unix_events") == eventloop.run(loop_module, "y")


def test_no_command_imports_uvloop_before_a_loop_starts() -> None:
    """``watcher --help`` (and any command that runs no loop) does not load uvloop."""
    code = "import sys, watcher.cli.commands; print('uvloop' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "False" == done.stdout.strip()
