"""The rules:, digest: and heartbeat: sections: every kind loads, every mistake names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import load_config
from watcher.exceptions import ConfigError

from .sample import ENV, GOOD, write


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        pytest.param(
            "digest: {cron: 'every morning', sinks: [console]}",
            "digest.cron",
            "not a crontab expression",
            id="bad cron",
        ),
        pytest.param(
            "digest: {cron: '0 9 * * 1-8', sinks: [console]}",
            "digest.cron",
            "not a crontab expression",
            id="weekday out of range",
        ),
        pytest.param(
            "digest: {cron: '0 9 * * *', period: 30d, sinks: [console]}",
            "digest.period",
            "retention",
            id="digest longer than retention",
        ),
        pytest.param(
            "digest: {cron: '0 9 * * *', timezone: Mars/Olympus, sinks: [console]}",
            "digest.timezone",
            "unknown time zone",
            id="bad zone",
        ),
        pytest.param(
            "digest: {cron: '0 9 * * *', sinks: [pager]}",
            "digest.sinks[0]",
            "unknown sink 'pager'",
            id="digest to an unknown sink",
        ),
        pytest.param(
            "rules: [{kind: stalled, after: {QUEUED: soon}}]",
            "rules[0].after.QUEUED",
            "invalid duration",
            id="bad stall limit",
        ),
        pytest.param(
            "rules: [{kind: cost, limit: 5}, {kind: cost, limit: 9}]",
            "rules[1].name",
            "name them",
            id="two unnamed rules of a kind",
        ),
        pytest.param(
            "rules: [{kind: metric, sources: [nope]}]",
            "rules[0].sources[0]",
            "unknown source 'nope'",
            id="rule for an unknown source",
        ),
        pytest.param(
            "rules: [{kind: sixth-sense}]", "rules[0].kind", "unknown kind", id="unknown rule kind"
        ),
    ],
)
def test_broken_rules_and_digest(tmp_path: Path, extra: str, path: str, message: str) -> None:
    """Rules, digest and heartbeat mistakes name their field."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, GOOD + extra + "\n"), env=ENV)
    assert path == caught.value.path
    assert message in caught.value.message


def test_rules_digest_heartbeat_load(tmp_path: Path) -> None:
    """A config with every rule kind, a digest and a heartbeat loads."""
    extra = """rules:
  - {kind: stalled, after: {QUEUED: 2h, validating: 30m}, repeat_interval: 1h}
  - {kind: overrun, factor: 2}
  - {kind: cost, limit: 100}
  - {kind: metric, valid_loss_rise: 15}
digest: {cron: "0 9 * * MON-FRI", timezone: Europe/Paris, sinks: [console]}
heartbeat: {interval: 1m}
"""
    config = load_config(write(tmp_path, GOOD + extra), env=ENV)
    assert ["stalled", "overrun", "cost", "metric"] == [r.key for r in config.rules]
    stalled = config.rules[0]
    assert {"QUEUED": 7200.0, "VALIDATING": 1800.0} == stalled.after  # type: ignore[union-attr]
    assert config.heartbeat is not None and 60 == config.heartbeat.interval
