"""``watcher silence`` as a user meets it: every bad input one line on stderr and exit 2,
an unknown id on expire exit 1, the id as the last line of ``add``'s stdout, list and
expire over a real SQLite store, silences in ``watcher status``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.e2e.harness import CONSOLE, config, source, write
from watcher.__main__ import main
from watcher.cli.silences import Refused, end_of, matchers_of

NOW = 1_795_000_000.0


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` configures process-wide logging onto the captured stderr: put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    content = config(
        tmp_path,
        sources=[source(base_url="http://127.0.0.1:9", api_key="k")],
        sinks=[CONSOLE],
        logging={"level": "warning", "format": "json"},
    )
    return str(write(tmp_path / "watcher.yaml", content))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--match", "colour=red", "--for", "1h"], "unknown key 'colour' (valid: type, status"),
        (["--match", "job_id", "--for", "1h"], "expected KEY=VALUE"),
        (["--match", "job_id=", "--for", "1h"], "must be printable text, not empty"),
        (["--match", "job_id=a", "--match", "job_id=b", "--for", "1h"], "job_id given twice"),
        (["--for", "1h"], "matches everything"),
        (["--match", "source=*", "--for", "1h"], "matches everything"),
        (["--match", "job_id=a", "--for", "soon"], "--for: invalid duration"),
        (["--match", "job_id=a", "--for", "0s"], "--for: duration must be positive"),
        (["--match", "job_id=a", "--until", "tomorrow"], "not an RFC 3339 time"),
        (["--match", "job_id=a", "--until", "2999-01-01T00:00:00"], "a zone"),
        (["--match", "job_id=a", "--until", "2000-01-01T00:00:00Z"], "is in the past"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], cfg: str, args: list[str], said: str
) -> None:
    code, out, err = run(capsys, "silence", "add", "-c", cfg, *args, "--comment", "why")
    assert (2, "") == (code, out)
    assert said in err
    assert 1 == len(err.strip().splitlines()), err


def test_argparse_refuses_both_ends_or_none(capsys: pytest.CaptureFixture[str], cfg: str) -> None:
    both = ["--for", "1h", "--until", "2999-01-01T00:00:00Z"]
    assert 2 == run(capsys, "silence", "add", "-c", cfg, "--comment", "c", *both)[0]
    code, _, err = run(capsys, "silence", "add", "-c", cfg, "--comment", "c", "--match", "job_id=a")
    assert 2 == code and "say when it ends" in err


def test_the_span() -> None:
    assert NOW + 7200 == end_of("2h", None, NOW)
    assert 4102444800.0 == end_of(None, "2100-01-01T01:00:00+01:00", NOW)
    with pytest.raises(Refused):
        end_of(None, "2100-01-01", NOW)  # a date alone has no zone
    assert {"job_id": "*"} == matchers_of(["job_id=*"], everything=True)


def test_add_list_expire_and_status(capsys: pytest.CaptureFixture[str], cfg: str) -> None:
    code, out, err = run(
        capsys,
        "silence", "add", "-c", cfg, "--match", "job_id=ftjob-*", "--match", "source=ft",
        "--for", "2h", "--comment", "noisy \x1b[31mretries", "--by", "ana",
    )  # fmt: skip
    assert 0 == code, err
    silence_id = out.strip().splitlines()[-1]
    assert silence_id.startswith("sil-") and len(silence_id) == 20

    code, out, _ = run(capsys, "silence", "list", "-c", cfg)
    assert 0 == code
    assert silence_id in out and "job_id=ftjob-*" in out and "ana" in out
    assert "\x1b" not in out and "noisy retries" in out
    code, out, _ = run(capsys, "silence", "list", "-c", cfg, "-o", "json")
    (listed,) = json.loads(out)
    assert (silence_id, {"job_id": "ftjob-*", "source": "ft"}) == (listed["id"], listed["matchers"])

    code, out, _ = run(capsys, "status", "-c", cfg)
    assert 0 == code and "silences in force" in out and silence_id in out

    code, out, err = run(capsys, "silence", "expire", "-c", cfg, silence_id, "--by", "bo")
    assert (0, "") == (code, err)
    assert f"silence {silence_id} expired" in out
    code, out, err = run(capsys, "silence", "expire", "-c", cfg, silence_id)
    assert 1 == code and f"no active silence {silence_id}" in err
    assert "no silence in force" in run(capsys, "silence", "list", "-c", cfg)[1]
    code, out, _ = run(capsys, "silence", "list", "-c", cfg, "--all", "-o", "json")
    (ended,) = json.loads(out)
    assert ("bo", "expired") == (ended["ended_by"], ended["end_reason"])

    code, out, err = run(
        capsys, "silence", "add", "-c", cfg, "--until-resolved", "ft", "ftjob-9", "--comment", "x"
    )
    assert 0 == code, err
    code, out, _ = run(capsys, "silence", "list", "-c", cfg, "-o", "json")
    (bound,) = json.loads(out)
    assert ({"source": "ft", "job_id": "ftjob-9"}, ["ft", "ftjob-9"], None) == (
        bound["matchers"],
        bound["until_resolved"],
        bound["ends_at"],
    )
    code, out, _ = run(capsys, "deliveries", "-c", cfg, "--state", "silenced")
    assert (0, "no deliveries") == (code, out.strip())
