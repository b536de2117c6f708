"""The system's Chromium for the status page's tests: Playwright drives it through
``executable_path`` (Playwright's own browsers are never downloaded), and the acceptance
check runs it headless with ``--dump-dom``. Where no Chromium can be had the tests skip
saying how to get one (``make test`` installs Debian's ``chromium`` when it can)."""

from __future__ import annotations

import os
import shutil

import anyio
import pytest

CHROMIUM_ENV = "WATCHER_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    """The path of a Chromium, or the test is skipped (with how to get one)."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        if not os.access(given, os.X_OK):
            pytest.skip(f"{CHROMIUM_ENV}={given} is not an executable")
        return given
    for name in CANDIDATES:
        found = shutil.which(name)
        if found is not None:
            return found
    pytest.skip(
        "no Chromium for the status page's browser tests: `apt-get install chromium` "
        f"(make test does it as root) or set {CHROMIUM_ENV} to a Chromium or Chrome binary"
    )


def sandbox_flags() -> list[str]:
    """Chromium refuses to run its sandbox as root (containers, CI): off there only."""
    return ["--no-sandbox"] if os.geteuid() == 0 else []


async def dump_dom(url: str) -> str:
    """``chromium --headless --dump-dom URL``: the DOM after the page loaded."""
    command = [chromium(), "--headless", *sandbox_flags(), "--disable-gpu", "--dump-dom", url]
    with anyio.fail_after(30):
        done = await anyio.run_process(command, check=False)
    assert 0 == done.returncode, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode()
