"""Operator commands: routes explain, render, test-sink, deliveries (list and retry)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.harness import CONSOLE, cli, config, source, webhook, write
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, simulator

pytestmark = pytest.mark.e2e

SECRET = generate_secret()


def watcher(*args: str) -> subprocess.CompletedProcess[str]:
    return cli(*args)


async def run(*args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: watcher(*args))


def write_operator(tmp_path: Path, **overrides: Any) -> Path:
    """A config with a nothing-listening source, a webhook and a console, and three routes
    (the second stops routing), unless ``overrides`` replace them."""
    parts: dict[str, Any] = {
        "sources": [source(base_url="http://127.0.0.1:9", api_key="k")],
        "sinks": [webhook("http://127.0.0.1:9/h", SECRET), CONSOLE],
        "routes": [
            {"match": {"status": ["FAILED"]}, "sinks": ["hooks"]},
            {"match": {"type": ["fine_tuning.job.*"]}, "sinks": ["console"], "continue": False},
            {"sinks": ["hooks"]},
        ],
        **overrides,
    }
    return write(tmp_path / "config.yaml", config(tmp_path, **parts))


def test_routes_explain(tmp_path: Path) -> None:
    """routes explain names each route's verdict and the final sinks."""
    path = write_operator(tmp_path)
    payload = {
        "type": "fine_tuning.job.failed",
        "timestamp": "2026-11-27T00:00:00Z",
        "data": {
            "source": "ft",
            "status": "FAILED",
            "previous_status": "RUNNING",
            "job": {"id": "j1", "model": "m"},
        },
    }
    result = watcher("routes", "-c", str(path), "explain", json.dumps(payload))
    assert 0 == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert "route 0 -> hooks: matches" == lines[1].strip()
    assert "route 1 -> console: matches; continue: false, routing stops here" == lines[2].strip()
    assert "routes 2..2: not considered" == lines[3].strip()
    assert "sinks: hooks, console" == lines[4]
    queued = {**payload, "type": "watcher.source.retired", "data": {"source": "ft"}}
    result = watcher("routes", "-c", str(path), "explain", json.dumps(queued))
    assert "no match (status: the transition has none" in result.stdout
    assert 2 == watcher("routes", "-c", str(path), "explain", "{not json").returncode


def test_render_prints_without_sending(tmp_path: Path) -> None:
    """render shows a sink's message for a sample; a template override shows too."""
    path = write_operator(
        tmp_path,
        sinks=[
            {
                "name": "console",
                "kind": "console",
                "templates": {"text": "{{ count }} x {{ t.status }} on {{ t.source }}"},
            },
        ],
        routes=None,
    )
    result = watcher("render", "-c", str(path), "--sink", "console", "--sample", "failed")
    assert 0 == result.returncode, result.stderr
    assert "1 x FAILED on ft" in result.stdout
    assert 2 == watcher("render", "-c", str(path), "--sink", "nope").returncode


def test_broken_template_is_a_config_error(tmp_path: Path) -> None:
    """check-config rejects a template that does not parse or render, naming sink and line."""
    path = write_operator(
        tmp_path,
        sinks=[
            {"name": "console", "kind": "console", "templates": {"text": "ok\n{{ t.status "}},
        ],
        routes=None,
    )
    result = watcher("check-config", "-c", str(path))
    assert 2 == result.returncode
    assert "sinks[0]: sink 'console': text template, line 2" in result.stderr
    path = write_operator(
        tmp_path,
        sinks=[
            {"name": "console", "kind": "console", "templates": {"text": "{{ t.no_such_key }}"}},
        ],
        routes=None,
    )
    result = watcher("check-config", "-c", str(path))
    assert 2 == result.returncode
    assert "no_such_key" in result.stderr


async def test_dead_letters_listed_and_retried(tmp_path: Path) -> None:
    """A sink answering 400 dead-letters with the reason; deliveries retry sends it again
    once fixed; test-sink reports the sink's answer."""
    receiver = Receiver(SECRET)
    async with serve_app(receiver.app) as url, simulator() as sim:
        path = write_operator(
            tmp_path,
            sources=[source(sim, on_start="notify")],
            sinks=[webhook(f"{url}/h", SECRET)],
            routes=None,
        )
        sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        receiver.fail_next(100, status=400)
        assert 0 == (await run("once", "-c", str(path))).returncode
        dead = await run("deliveries", "-c", str(path), "--state", "dead")
        assert "hooks" in dead.stdout and "HTTP 400" in dead.stdout
        status = await run("status", "-c", str(path))
        assert "0 pending, 1 dead, 0 delivered" in status.stdout
        assert "QUEUED 1" in status.stdout
        assert 1 == (await run("test-sink", "-c", str(path), "hooks")).returncode
        receiver.fail_next(0)
        test = await run("test-sink", "-c", str(path), "hooks")
        assert (0, "sink 'hooks' accepted the test message") == (
            test.returncode,
            test.stdout.strip(),
        )
        retried = await run("deliveries", "-c", str(path), "retry", "--all-dead")
        assert "1 dead deliveries back in the queue" == retried.stdout.strip()
        assert 0 == (await run("once", "-c", str(path))).returncode
        listed = await run("deliveries", "-c", str(path))
    assert "delivered" in listed.stdout and "dead" not in listed.stdout
    types = [r.type for r in receiver.accepted()]
    assert ["watcher.test", "fine_tuning.job.queued"] == types


def test_routes_explain_reads_an_activity_from_a_webhook_payload(tmp_path: Path) -> None:
    """A route on ``activity`` (a key of the payload's data, not of its job) is explained as
    the daemon would route it."""
    path = write_operator(
        tmp_path, routes=[{"match": {"activity": ["charge_*"]}, "sinks": ["hooks"]}]
    )
    payload = {
        "type": "workflow.activity.retrying",
        "timestamp": "2026-11-27T00:00:00Z",
        "data": {
            "source": "ft",
            "job": {"id": "exec-1", "workflow_name": "billing"},
            "activity": {"name": "charge_card", "attempt": 2, "failure": {"message": "503"}},
        },
    }
    result = watcher("routes", "-c", str(path), "explain", json.dumps(payload))
    assert 0 == result.returncode, result.stderr
    assert "route 0 -> hooks: matches" == result.stdout.splitlines()[1].strip()
    other = {**payload, "data": {**payload["data"], "activity": {"name": "fetch"}}}
    result = watcher("routes", "-c", str(path), "explain", json.dumps(other))
    assert "no match" in result.stdout.splitlines()[1]


def test_test_sink_to_pagerduty_on_a_closed_port_fails(tmp_path: Path) -> None:
    """Nothing listens: test-sink must say the sink refused, exit 1 (it used to report
    "accepted" without a request)."""
    pagerduty = {
        "name": "pd",
        "kind": "pagerduty",
        "routing_key": "R" * 32,
        "url": "http://127.0.0.1:9/v2/enqueue",
    }
    path = write_operator(tmp_path, sinks=[pagerduty], routes=None)
    result = watcher("test-sink", "-c", str(path), "pd")
    assert 1 == result.returncode
    assert "refused the test message" in result.stderr
    assert "connection refused by 127.0.0.1:9" in result.stderr
    assert "" == result.stdout
    assert "R" * 32 not in result.stdout + result.stderr
