"""Config loading: defaults, ${VAR}, *_file secrets, and one clear error per broken file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests import REPO
from watcher.config import load_config, parse_duration, summary
from watcher.exceptions import ConfigError

GOOD = """
sources:
  - name: ft
    kind: mistral-fine-tuning
    base_url: http://127.0.0.1:8765
    api_key: ${MISTRAL_API_KEY}
    interval: 30s
state:
  url: sqlite:///{tmp}/state.db
sinks:
  - name: hooks
    kind: webhook
    url: https://hooks.example.com/mistral?token=abc
    secret_file: {tmp}/whsec
  - name: console
    kind: console
routes:
  - match: {status: [FAILED, CANCELLATION_REQUESTED]}
    sinks: [hooks, console]
  - match: {type: fine_tuning.job.checkpoint}
    sinks: console
    continue: false
"""

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {"MISTRAL_API_KEY": "sk-very-secret-key"}


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "whsec").write_text(SECRET + "\n")
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).replace("{tmp}", str(tmp_path)))
    return path


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    """A good file loads; defaults apply; secrets come from ${VAR} and *_file."""
    config = load_config(write(tmp_path, GOOD), env=ENV)
    source = config.sources[0]
    assert 30.0 == source.interval
    assert "sk-very-secret-key" == source.api_key.get()
    assert "baseline" == source.on_start
    assert 3600.0 == source.resync_interval
    hooks = config.sinks[0]
    assert hooks.kind == "webhook" and hooks.secret is not None
    assert SECRET == hooks.secret.get()
    assert ["FAILED", "CANCELLATION_REQUESTED"] == config.routes[0].match.status  # type: ignore[index]
    assert config.routes[1].continue_ is False  # type: ignore[index]


def test_summary_shows_no_secret(tmp_path: Path) -> None:
    """The check-config summary names sources, sinks and routes, never a secret."""
    config = load_config(write(tmp_path, GOOD), env=ENV)
    text = summary(config) + repr(config) + str(config.model_dump())
    assert "ft" in text and "hooks" in text
    for secret in ("sk-very-secret-key", SECRET, "token=abc"):
        assert secret not in text


def test_absent_routes_send_everything_everywhere(tmp_path: Path) -> None:
    """Without a routes key, one implicit route reaches every sink."""
    text = GOOD.split("routes:")[0]
    config = load_config(write(tmp_path, text), env=ENV)
    assert [["hooks", "console"]] == [r.sinks for r in config.effective_routes]


BROKEN = [
    pytest.param(
        ("api_key: ${MISTRAL_API_KEY}", ""),
        "sources[0].api_key",
        "required key is missing",
        id="missing key",
    ),
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
        ("sinks: [hooks, console]", "sinks: [hooks, pager]"),
        "routes[0].sinks[1]",
        "unknown sink 'pager'",
        id="unknown sink in a route",
    ),
    pytest.param(
        ("secret_file: {tmp}/whsec", "secret_file: /nonexistent/whsec"),
        "sinks[0].secret_file",
        "cannot read /nonexistent/whsec",
        id="unreadable file",
    ),
    pytest.param(
        ("${MISTRAL_API_KEY}", "${NOT_DEFINED_ANYWHERE}"),
        "sources[0].api_key",
        "undefined environment variable NOT_DEFINED_ANYWHERE",
        id="undefined var",
    ),
    pytest.param(
        ("kind: webhook", "kind: pager"), "sinks[0].kind", "unknown kind", id="unknown sink kind"
    ),
    pytest.param(
        ("    interval: 30s", "    interval: 30s\n    intervall: 5s"),
        "sources[0].intervall",
        "unknown key",
        id="typo in a key",
    ),
    pytest.param(
        ("url: https://hooks", "url: ftp://hooks"),
        "sinks[0].url",
        "http:// or https://",
        id="bad url",
    ),
    pytest.param(
        ("secret_file: {tmp}/whsec", "secret: not-a-whsec"),
        "sinks[0].secret",
        "must start with 'whsec_'",
        id="bad webhook secret",
    ),
    pytest.param(
        ("url: https://hooks", "url: https://hooks.example.com:99999"),
        "sinks[0].url",
        "http:// or https://",
        id="port out of range",
    ),
    pytest.param(
        ("base_url: http://127.0.0.1:8765", "base_url: http://127.0.0.1:99999"),
        "sources[0].base_url",
        "http:// or https://",
        id="source port out of range",
    ),
    pytest.param(
        ("secret_file: {tmp}/whsec", "secret_file: {tmp}/whsec\n    headers: {Bad Header: x}"),
        "sinks[0].headers",
        "header name 'Bad Header' is invalid",
        id="bad header name",
    ),
    pytest.param(
        ("interval: 30s", "interval: 100000000d"),
        "sources[0].interval",
        "at most 3650d",
        id="absurd duration",
    ),
    pytest.param(
        ("name: console", "name: hooks"),
        "sinks[1].name",
        "duplicate sink name",
        id="duplicate sink",
    ),
    pytest.param(
        ("url: sqlite:///", "url: mysql:///"),
        "state.url",
        "must be sqlite",
        id="unsupported state url",
    ),
]


@pytest.mark.parametrize(("edit", "path", "message"), BROKEN)
def test_broken_configs_name_the_field(
    tmp_path: Path, edit: tuple[str, str], path: str, message: str
) -> None:
    """Each broken config raises one ConfigError naming the field and the rule."""
    old, new = edit
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, GOOD.replace(old, new, 1)), env=ENV)
    assert path == caught.value.path
    assert message in caught.value.message
    assert "\n" not in str(caught.value)
    assert "sk-very-secret-key" not in str(caught.value)


def test_not_a_mapping(tmp_path: Path) -> None:
    """A file that is not a mapping, or not YAML, is one clear error."""
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(path)
    path.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_secret_and_file_both_given(tmp_path: Path) -> None:
    """Giving a secret and its *_file variant at once is refused."""
    text = GOOD.replace(
        "secret_file: {tmp}/whsec", "secret_file: {tmp}/whsec\n    secret: " + SECRET
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=ENV)
    assert "sinks[0].secret_file" == caught.value.path


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


def test_example_config_is_valid(tmp_path: Path) -> None:
    """The documented example in config/ loads (with its variables defined)."""
    example = REPO / "config" / "watcher.example.yaml"
    env = {
        "MISTRAL_API_KEY": "k",
        "WEBHOOK_SECRET": SECRET,
        "STATE_DIR": str(tmp_path),
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
        "PAGERDUTY_ROUTING_KEY": "R0123456789",
    }
    (tmp_path / "smtp_password").write_text("hunter2\n")
    config = load_config(example, env=env)
    assert config.sources


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
            "digest: {cron: '0 9 * * 1-5', sinks: [console]}",
            "digest.cron",
            "names",
            id="numeric weekdays",
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
