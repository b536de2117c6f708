"""``watcher ack`` and ``watcher cancel`` refusing what they cannot do, before any request:
usage errors exit 2 with one clean line, a job with no open alert exits 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from watcher.__main__ import main


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    content = {
        "sources": [{"name": "ft", "kind": "mistral-fine-tuning", "api_key": "sk-x",
                     "base_url": "http://127.0.0.1:9", "max_retries": 0}],
        "sinks": [{"name": "c", "kind": "console"}],
        "state": {"url": f"sqlite:///{tmp_path}/state.db"},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(content))
    return str(path)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["ack", "j\x1b[2J1"], "control characters"),
        (["ack", "j1", "--source", "nope"], "unknown source 'nope'"),
        (["ack", "j1", "--by", "\x1b[0m"], "--by must name someone"),
        (["cancel", "ft", ".."], "not an id"),
        (["cancel", "nope", "j1"], "the config has: ft"),
    ],
)
def test_usage_errors_exit_2_with_a_clean_line(
    cfg: str, args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main([args[0], "-c", cfg, *args[1:]])
    err = capsys.readouterr().err
    assert words in err and "\x1b" not in err


def test_ack_of_a_job_without_alert_exits_1(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert 1 == main(["ack", "-c", cfg, "j1", "--by", "al"])
    assert "watcher: job j1 has no open alert to acknowledge" in capsys.readouterr().err


def test_cancel_when_the_api_is_unreachable_exits_1(
    cfg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 1 == main(["cancel", "-c", cfg, "ft", "j1"])
    assert "cancel of j1 failed" in capsys.readouterr().err
