"""Field types: durations read as Prometheus-style strings or seconds, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import parse_duration

from .sample import refused


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("2d", 172800),
        (12, 12),
        ("1.5", 1.5),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    """Durations read as Prometheus-style strings or plain seconds."""
    assert seconds == parse_duration(text)


@pytest.mark.parametrize("text", ["", "abc", "5 parsecs", "1h-5m", "0s", True, None])
def test_bad_durations(text: object) -> None:
    """Everything else is refused."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("edit", "path", "message"),
    [
        pytest.param(
            ("interval: 30s", "interval: [30]"),
            "sources[0].interval",
            "invalid duration",
            id="wrong type",
        ),
        pytest.param(
            ("interval: 30s", "interval: 3 minutes"),
            "sources[0].interval",
            "invalid duration '3 minutes'",
            id="bad duration",
        ),
        pytest.param(
            ("interval: 30s", "interval: -5s"),
            "sources[0].interval",
            "invalid duration",
            id="negative duration",
        ),
        pytest.param(
            ("interval: 30s", "interval: 100000000d"),
            "sources[0].interval",
            "at most 3650d",
            id="absurd duration",
        ),
    ],
)
def test_broken_durations_name_the_field(
    tmp_path: Path, edit: tuple[str, str], path: str, message: str
) -> None:
    """A duration of the wrong type, sign, unit or size is refused at its field."""
    error = refused(tmp_path, edit)
    assert path == error.path
    assert message in error.message
