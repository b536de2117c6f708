"""The command line as a user meets it: exit codes, one-line config errors, no secrets."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.e2e.harness import CONSOLE, config, source, webhook, write
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import Fault, JobSpec, simulator

pytestmark = pytest.mark.e2e

API_KEY = "sk-TOPSECRET-api-key-0123456789"
URL_TOKEN = "urltoken-TOPSECRET-42"


def watcher(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


async def run_watcher(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a worker thread, so that in-process servers keep answering."""
    return await anyio.to_thread.run_sync(lambda: watcher(*args))


GOOD = config(
    None,
    sources=[source(base_url="http://127.0.0.1:9", api_key="${TEST_API_KEY}")],
    sinks=[
        {
            "name": "hooks",
            "kind": "webhook",
            "url": "https://example.com/h",
            "secret_file": "whsec.txt",
        }
    ],
    routes=[{"match": {"status": ["FAILED"]}, "sinks": ["hooks"]}],
)


def broken(path: Path, edit: str) -> Path:
    content = copy.deepcopy(GOOD)
    api, sink, route = content["sources"][0], content["sinks"][0], content["routes"][0]
    match edit:
        case "missing key":
            del api["api_key"]
        case "wrong type":
            api["page_size"] = "many"
        case "unknown sink in a route":
            route["sinks"] = ["hooks", "pagerduty"]
        case "bad duration":
            api["interval"] = "every minute"
        case "unreadable file":
            sink["secret_file"] = "/nonexistent/secret"
        case "undefined variable":
            api["api_key"] = "${SURELY_UNDEFINED_VARIABLE}"
    (path / "whsec.txt").write_text(generate_secret())
    return write(path / "config.yaml", content)


CASES = {
    "missing key": "sources[0].api_key",
    "wrong type": "sources[0].page_size",
    "unknown sink in a route": "routes[0].sinks[1]",
    "bad duration": "sources[0].interval",
    "unreadable file": "sinks[0].secret_file",
    "undefined variable": "sources[0].api_key",
}


@pytest.mark.parametrize("edit", list(CASES))
def test_broken_configs_exit_2_with_one_line(tmp_path: Path, edit: str) -> None:
    """check-config and run both refuse a broken config: exit 2, one line naming the field."""
    path = broken(tmp_path, edit)
    env = {"TEST_API_KEY": API_KEY, "PATH": "/usr/bin:/bin"}
    for command in ("check-config", "run", "once"):
        result = watcher(command, "-c", str(path), env=env)
        assert 2 == result.returncode, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert 1 == len(lines), result.stderr
        assert lines[0].startswith(f"watcher: config error: {CASES[edit]}: ")
        assert API_KEY not in result.stderr + result.stdout


def test_check_config_summary(tmp_path: Path) -> None:
    """A good config: exit 0 and a summary without secrets."""
    path = broken(tmp_path, "none")
    result = watcher(
        "check-config", "-c", str(path), env={"TEST_API_KEY": API_KEY, "PATH": "/usr/bin:/bin"}
    )
    assert 0 == result.returncode, result.stderr
    assert "ft: mistral-fine-tuning" in result.stdout
    secret = (tmp_path / "whsec.txt").read_text()
    assert API_KEY not in result.stdout
    assert secret not in result.stdout


def test_usage_errors_exit_2() -> None:
    """An unknown command or option is a usage error."""
    assert 2 == watcher("frobnicate").returncode
    assert 2 == watcher("run", "--bogus").returncode
    assert 0 == watcher("--help").returncode


async def test_no_secret_in_debug_logs(tmp_path: Path) -> None:
    """At debug level, through 429s, a 401, a rejecting webhook and a retired API, no API
    key, webhook secret or URL token appears in any output."""
    secret = generate_secret()
    receiver = Receiver(secret)
    receiver.fail_next(100, status=400)
    async with serve_app(receiver.app) as receiver_url, simulator(api_key=API_KEY) as sim:
        sim.sim.create(JobSpec(status="RUNNING", frozen=True, checkpoints=2))
        content = config(
            tmp_path,
            sources=[source(sim, on_start="notify", max_retries=1)],
            sinks=[webhook(f"{receiver_url}/h?token={URL_TOKEN}", secret), CONSOLE],
            logging={"level": "debug", "format": "json"},
        )
        path = write(tmp_path / "config.yaml", content)
        outputs = []
        sim.sim.add_fault(Fault(mode="429", retry_after=0.1, count=1, route="all"))
        outputs.append(await run_watcher("once", "-c", str(path)))
        outputs.append(await run_watcher("check-config", "-c", str(path)))
        outputs.append(await run_watcher("status", "-c", str(path)))
        sim.sim.retired = True
        outputs.append(await run_watcher("once", "-c", str(path)))
        content["sources"][0]["api_key"] = API_KEY + "-wrong"
        write(path, content)
        sim.sim.retired = False
        outputs.append(await run_watcher("once", "-c", str(path)))
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert "webhook_rejected" in text or "delivery_dead" in text  # the failures were logged
    assert "source_auth_failed" in text
    assert "source_retired" in text
    for leaked in (API_KEY, secret, secret.removeprefix("whsec_"), URL_TOKEN):
        assert leaked not in text
