"""``watcher status`` and ``watcher deliveries`` against hostile API text (issue 15, items 12
and 15): rich markup is shown, not interpreted; escape, bidi and C1 characters never reach
the terminal; a source nobody polls any more is not "ok"; retrying an unknown transition
is an error."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from tests.e2e.harness import CONSOLE, cli, config, source, write
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.transitions import Transition
from watcher.stores import open_store

HOSTILE = "[/bold][link=https://evil.example]x[/link]\x1b]8;;https://evil\x07\u202etxt\x9b2J"


def watcher(*args: str) -> subprocess.CompletedProcess[str]:
    return cli(*args, env={**os.environ, "COLUMNS": "400"})  # one table row per line


def prepare(tmp_path: Path, *, last_poll_ago: float, interval: str = "1s") -> str:
    content = config(
        tmp_path,
        sources=[source(base_url="http://127.0.0.1:9", api_key="k", interval=interval)],
        sinks=[CONSOLE],
        logging={"level": "warning", "format": "json"},
    )
    path = write(tmp_path / "watcher.yaml", content)
    url = content["state"]["url"]

    async def fill() -> None:
        store = open_store(url)
        await store.open()
        try:
            now = time.time() - last_poll_ago
            snapshot = Snapshot(
                source="ft", job_id=f"job{HOSTILE}", status=HOSTILE, created_at=1,
                modified_at=1, status_since=1, terminal=False, job={},
            )  # fmt: skip
            transition = Transition(
                id="t-hostile", type=f"fine_tuning.job.{HOSTILE}", source="ft",
                job_id=f"job{HOSTILE}", status=HOSTILE,
            )  # fmt: skip
            await store.commit(
                "ft", Cursor(baseline_done=True), [snapshot], [Routed(transition, ["console"])],
                now=now,
            )  # fmt: skip
        finally:
            await store.aclose()

    anyio.run(fill)
    db = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(db)) as conn, conn:  # a sink's hostile error text too
        conn.execute("UPDATE deliveries SET last_error = ?", (f"HTTP 500: {HOSTILE}",))
    return str(path)


def assert_safe(text: str) -> None:
    for bad in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert bad not in text, repr(bad)


def test_status_shows_markup_as_text_and_says_a_source_is_stale(tmp_path: Path) -> None:
    cfg = prepare(tmp_path, last_poll_ago=620)
    done = watcher("status", "-c", cfg)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert_safe(done.stdout)
    assert "[/bold][link=https://evil.example]" in done.stdout  # as text, cut to 40
    assert "stale: no poll for 6" in done.stdout  # 620 s with a 1 s interval: not ok


def test_status_is_ok_for_a_source_polled_just_now(tmp_path: Path) -> None:
    cfg = prepare(tmp_path, last_poll_ago=0, interval="60s")  # a slow machine: room to spare
    done = watcher("status", "-c", cfg)
    assert done.returncode == 0, done.stderr
    assert " ok " in done.stdout and "stale" not in done.stdout


def test_deliveries_print_no_control_characters(tmp_path: Path) -> None:
    cfg = prepare(tmp_path, last_poll_ago=0)
    done = watcher("deliveries", "-c", cfg)
    assert done.returncode == 0, done.stderr
    assert_safe(done.stdout)
    assert "t-hostile" in done.stdout and "HTTP 500: [/bold]" in done.stdout


@pytest.mark.parametrize("ident", ["no-such-transition", "t-hostile"])
def test_retrying_a_transition_without_dead_deliveries_is_an_error(
    tmp_path: Path, ident: str
) -> None:
    cfg = prepare(tmp_path, last_poll_ago=0)
    done = watcher("deliveries", "-c", cfg, "retry", ident)
    assert done.returncode == 1
    assert "no dead delivery of transition" in done.stderr
    everything = watcher("deliveries", "-c", cfg, "retry", "--all-dead")
    assert everything.returncode == 0 and "0 dead deliveries" in everything.stdout
