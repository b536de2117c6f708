"""A command that cannot run says why in one line, exit 1 (2 for bad arguments), never a
traceback (issue 15, item 17): a busy port, a bad --port or --speed, a state path that
cannot be created, a database out of reach. A bug still gets its traceback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import CONSOLE, cli, config, source, write
from watcher.cli.failures import one_line
from watcher.exceptions import SourceUnavailable


def watcher(*args: str) -> subprocess.CompletedProcess[str]:
    return cli(*args)


def cfg(tmp_path: Path, **parts: object) -> str:
    content = config(
        tmp_path,
        sources=[source(base_url="http://127.0.0.1:9", api_key="k")],
        sinks=[CONSOLE],
        logging={"level": "error", "format": "json"},
        **parts,
    )
    return str(write(tmp_path / "watcher.yaml", content))


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and says in lines[0], done.stderr


def test_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = watcher("run", "-c", cfg(tmp_path, http={"listen": f"127.0.0.1:{port}"}))
        assert_one_line(done, 1, "Address already in use")
        done = watcher("simulate", "--port", str(port))
        assert_one_line(done, 1, "Address already in use")


@pytest.mark.parametrize(
    ("args", "says"),
    [(["--port", "99999"], "not a TCP port"), (["--speed", "0"], "must be above 0")],
)
def test_bad_simulator_arguments(args: list[str], says: str) -> None:
    assert_one_line(watcher("simulate", *args), 2, says)


def test_a_state_path_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    state = {"url": f"sqlite:///{tmp_path}/a-file/state.db"}
    content = config(
        tmp_path,
        sources=[source(base_url="http://127.0.0.1:9", api_key="k")],
        sinks=[CONSOLE],
        logging={"level": "error", "format": "json"},
    )
    content["state"] = state
    path = write(tmp_path / "watcher.yaml", content)
    assert_one_line(watcher("once", "-c", str(path)), 1, "a-file")


def test_a_database_out_of_reach(tmp_path: Path) -> None:
    content = config(
        tmp_path,
        sources=[source(base_url="http://127.0.0.1:9", api_key="k")],
        sinks=[CONSOLE],
        logging={"level": "error", "format": "json"},
    )
    content["state"] = {"url": "postgresql://watcher@127.0.0.1:1/watcher"}
    path = write(tmp_path / "watcher.yaml", content)
    assert_one_line(watcher("status", "-c", str(path)), 1, "127.0.0.1")


def test_grouped_errors_are_told_by_their_leaves_and_bugs_are_not() -> None:
    group = ExceptionGroup("tasks", [SourceUnavailable("ft", "HTTP 503"), OSError("disk full")])
    said = one_line(group)
    assert said is not None and "disk full" in said
    assert one_line(ExceptionGroup("tasks", [KeyError("x")])) is None
    assert one_line(AttributeError("a bug")) is None
