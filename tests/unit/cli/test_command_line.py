"""The command line as a user and a script meet it (issue 17, items 5 to 9): JSON output,
completion, a closed pipe, errors on stderr with exit 2, the log level, standard cron in
check-config, render's samples and HTML, ``watcher receive``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import CONSOLE, config, source, write
from tests.unit.cli.test_views import prepare
from watcher.__main__ import main

WATCHER = [sys.executable, "-m", "watcher"]


def watcher(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WATCHER, *args],
        env={**os.environ, "COLUMNS": "400", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_and_deliveries_as_json(tmp_path: Path) -> None:
    """``-o json``: one document a script can read, foreign text escaped (ASCII only)."""
    cfg = prepare(tmp_path, last_poll_ago=620)
    status = watcher("status", "-c", cfg, "-o", "json")
    assert status.returncode == 0, status.stderr
    assert status.stdout.isascii()
    document = json.loads(status.stdout)
    (ft,) = document["sources"]
    assert ("ft", "mistral-fine-tuning", 1.0) == (ft["name"], ft["kind"], ft["interval_seconds"])
    assert ft["state"].startswith("stale: no poll for 6")
    assert 600 < ft["last_poll_age_seconds"] < 700 and ft["last_poll_at"].endswith("Z")
    assert [1] == list(ft["jobs_by_status"].values())
    assert {"pending": 1, "dead": 0, "delivered": 0, "silenced": 0} == {
        k: v for k, v in document["deliveries"].items() if k != "oldest_pending_age_seconds"
    }
    assert [] == document["silences"]
    deliveries = watcher("deliveries", "-c", cfg, "-o", "json")
    assert deliveries.returncode == 0, deliveries.stderr
    assert deliveries.stdout.isascii()
    (row,) = json.loads(deliveries.stdout)
    assert ("t-hostile", "console", "pending") == (row["transition_id"], row["sink"], row["state"])
    assert row["last_error"].startswith("HTTP 500: [/bold]")


def test_all_dead_without_retry_is_refused(tmp_path: Path) -> None:
    cfg = prepare(tmp_path, last_poll_ago=0)
    done = watcher("deliveries", "-c", cfg, "--all-dead")
    assert 2 == done.returncode
    assert "--all-dead goes with retry" in done.stderr and "" == done.stdout


def good_config(tmp_path: Path, **extra: object) -> str:
    content = config(
        tmp_path,
        sources=[source(base_url="http://127.0.0.1:9", api_key="k")],
        sinks=[CONSOLE, {"name": "hooks", "kind": "webhook", "url": "http://127.0.0.1:9/h"}],
        **extra,  # type: ignore[arg-type]
    )
    return str(write(tmp_path / "watcher.yaml", content))


def test_routes_explain_says_the_file_is_missing(tmp_path: Path) -> None:
    done = watcher("routes", "-c", good_config(tmp_path), "explain", "MISSING.json")
    assert 2 == done.returncode
    assert "'MISSING.json' does not exist" in done.stderr and "Traceback" not in done.stderr


def test_test_sink_failure_goes_to_stderr(tmp_path: Path) -> None:
    done = watcher("test-sink", "-c", good_config(tmp_path), "hooks")  # nothing listens
    assert 1 == done.returncode
    assert "refused the test message" in done.stderr
    assert "refused" not in done.stdout


@pytest.mark.parametrize("level", ["loud"])
def test_an_invalid_log_level_exits_2(tmp_path: Path, level: str) -> None:
    done = watcher("check-config", "-c", good_config(tmp_path), WATCHER_LOG_LEVEL=level)
    assert 2 == done.returncode
    assert f"WATCHER_LOG_LEVEL={level!r} is not a level" in done.stderr


@pytest.mark.parametrize("cron", ["0 9 * * 1-5", "@daily"])
def test_check_config_accepts_standard_cron(tmp_path: Path, cron: str) -> None:
    digest = {"cron": cron, "timezone": "Europe/Paris", "sinks": ["console"]}
    done = watcher("check-config", "-c", good_config(tmp_path, digest=digest))
    assert 0 == done.returncode, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("digest:"))
    hour = "09:00" if cron.startswith("0 9") else "00:00"
    assert 3 == line.count(f" {hour} CE"), line  # CET or CEST: local times


def test_every_problem_of_a_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "sources: [{name: b, kind: mistral-batch, api_key: '${NO_SUCH_A}', intervall: 5s}]\n"
        "sinks: [{name: h, kind: webhook, url: '${NO_SUCH_B}'}]\n"
    )
    done = watcher("check-config", "-c", str(path))
    assert 2 == done.returncode
    assert "NO_SUCH_A" in done.stderr and "NO_SUCH_B" in done.stderr
    fixed = watcher("check-config", "-c", str(path), NO_SUCH_A="k", NO_SUCH_B="http://h.example")
    assert "sources[0].intervall: unknown key (did you mean 'interval'?)" in fixed.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``watcher schema config | head -1``: the reader is gone (here before the first
    write, so that it is certain), and every kind of command ends without a traceback:
    exit 141 (128 + SIGPIPE), as a shell reports for a tool its reader left."""
    status_config = prepare(tmp_path, last_poll_ago=0)
    commands = [
        ["schema", "config"],  # no config
        ["completion", "bash"],  # the parser's own
        ["check-config", "-c", good_config(tmp_path / "c")],  # prints a config
        ["status", "-c", status_config],  # async, through the store
        ["deliveries", "-c", status_config, "-o", "json"],
    ]
    for command in commands:
        read, write_end = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(
                [*WATCHER, *command], stdout=write_end, stderr=subprocess.PIPE, text=True,
                timeout=60, check=False, env={**os.environ, "COLUMNS": "400"},
            )  # fmt: skip
        finally:
            os.close(write_end)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert 141 == done.returncode, (command, done.stderr)


def test_bash_completion_knows_commands_options_and_choices(tmp_path: Path) -> None:
    script = watcher("completion", "bash")
    assert 0 == script.returncode
    (tmp_path / "c.sh").write_text(script.stdout)
    probe = f"""source {tmp_path / "c.sh"}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); COMPREPLY=(); _watcher;
      echo "${{COMPREPLY[*]}}"; }}
t watcher st
t watcher status -o ''
t watcher silence ''
t watcher -c x deliveries --state d
t watcher schema ''
t watcher render --
"""
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    lines = done.stdout.splitlines()
    assert ["status", "table json", "add list expire", "delivered dead", "config events"] == (
        lines[:5]
    ), done.stderr
    assert {"--sink", "--sample", "--format", "--out"} <= set(lines[5].split())
    zsh = watcher("completion", "zsh")
    assert zsh.stdout.startswith("#compdef watcher") and "bashcompinit" in zsh.stdout


def test_render_samples_are_realistic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In process (``main`` as the command calls it): six renders cost a second, not six."""

    def render(*args: str) -> tuple[int, str, str]:
        code = main(["render", "-c", path, *args])
        out, err = capsys.readouterr()
        return code, out, err

    cfg = config(
        tmp_path,
        sources=[source(base_url="http://127.0.0.1:9", api_key="k")],
        sinks=[
            {"name": "slack", "kind": "slack", "webhook_url": "https://hooks.slack.com/x",
             "templates": {"text": "{{ t.type }}"}},
            {"name": "mail", "kind": "email", "host": "smtp.example.com",
             "from": "w@example.com", "to": ["a@example.com"]},
        ],
    )  # fmt: skip
    path = str(write(tmp_path / "watcher.yaml", cfg))
    code, running, err = render("--sink", "slack", "--sample", "running")
    assert 0 == code, err
    assert "--- text (template) ---\nfine_tuning.job.running" in running
    assert "without the text template" in running  # the built-in card too
    assert "Loss: train" in running  # the loss curve
    assert "https://app.slack.com/block-kit-builder#" in running
    _, success, _ = render("--sink", "slack", "--sample", "success")
    assert "*Fine-tuned model*" in success and "ft:open-mistral-7b:" in success
    _, stalled, _ = render("--sink", "slack", "--sample", "stalled")
    assert "*Status*\\nQUEUED" in stalled and "status QUEUED" in stalled
    _, timeout, _ = render("--sink", "slack", "--sample", "timeout")
    assert "on *batch*" in timeout and "*Requests*" in timeout
    assert "*Suffix*" not in timeout  # a batch job, not a fine-tuning one
    html = tmp_path / "mail.html"
    code, _, err = render("--sink", "mail", "--sample", "success", "--format", "html",
                          "-o", str(html))  # fmt: skip
    assert 0 == code, err
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page  # with its loss chart
    code, _, err = render("--sink", "slack", "--format", "html")
    assert 2 == code and "is for an email sink" in err


def test_receive_serves_a_receiver() -> None:
    with subprocess.Popen(
        [*WATCHER, "receive", "--port", "0"], stdout=subprocess.PIPE, text=True
    ) as receiver:
        try:
            assert receiver.stdout is not None
            announced = json.loads(receiver.stdout.readline())
            assert announced["url"].startswith("http://127.0.0.1:")
            assert announced["secret"].startswith("whsec_")
        finally:
            receiver.terminate()
