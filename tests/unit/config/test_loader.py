"""Loading: defaults, ${VAR}, *_file secrets, and one clear error per broken file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import REPO
from watcher.config import load_config
from watcher.exceptions import ConfigError

from .sample import ENV, GOOD, SECRET, refused, write


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


@pytest.mark.parametrize(
    ("edit", "path", "message"),
    [
        pytest.param(
            ("api_key: ${MISTRAL_API_KEY}", ""),
            "sources[0].api_key",
            "required key is missing",
            id="missing key",
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
            ("kind: webhook", "kind: pager"),
            "sinks[0].kind",
            "unknown kind",
            id="unknown sink kind",
        ),
        pytest.param(
            ("    interval: 30s", "    interval: 30s\n    intervall: 5s"),
            "sources[0].intervall",
            "unknown key",
            id="typo in a key",
        ),
    ],
)
def test_broken_configs_name_the_field(
    tmp_path: Path, edit: tuple[str, str], path: str, message: str
) -> None:
    """Each broken config raises one ConfigError naming the field and the rule."""
    error = refused(tmp_path, edit)
    assert path == error.path
    assert message in error.message


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


def test_every_undefined_variable_is_told_at_once(tmp_path: Path) -> None:
    """Three missing variables: one run names the three, with their fields."""
    text = (
        GOOD.replace("${MISTRAL_API_KEY}", "${NOT_SET_ONE}") + "logging:\n  level: ${NOT_SET_TWO}\n"
    )
    text = text.replace("sqlite:///", "sqlite:///${NOT_SET_THREE}/")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    told = str(caught.value)
    for name in ("NOT_SET_ONE", "NOT_SET_TWO", "NOT_SET_THREE"):
        assert f"undefined environment variable {name}" in told
    assert "sources[0].api_key" == caught.value.path
    assert "logging.level: undefined environment variable NOT_SET_TWO" in told


def test_every_invalid_value_is_listed_whole(tmp_path: Path) -> None:
    """No "(and 2 more)": each problem on its own line, with its field."""
    text = GOOD.replace(
        "    interval: 30s", "    interval: never\n    page_size: 0\n    on_start: maybe"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=ENV)
    lines = str(caught.value).splitlines()
    assert 3 == len(lines), lines
    assert "more)" not in str(caught.value)
    assert {"sources[0].interval", "sources[0].page_size", "sources[0].on_start"} == {
        line.strip().split(":")[0] for line in lines
    }


@pytest.mark.parametrize(
    ("typo", "where", "meant"),
    [
        ("    intervall: 5s", "sources[0].intervall", "interval"),
        ("    api_key_fil: /x", "sources[0].api_key_fil", "api_key_file"),
        ("loging: {level: info}", "loging", "logging"),
        ("digest: {cron: '@daily', sinks: [hooks], timezon: UTC}", "digest.timezon", "timezone"),
    ],
)
def test_an_unknown_key_says_what_was_meant(
    tmp_path: Path, typo: str, where: str, meant: str
) -> None:
    if typo.startswith("    "):
        text = GOOD.replace("    interval: 30s", "    interval: 30s\n" + typo)
    else:
        text = GOOD + typo + "\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=ENV)
    assert where == caught.value.path
    assert f"unknown key (did you mean {meant!r}?)" == caught.value.message


def test_a_key_far_from_any_gets_no_guess(tmp_path: Path) -> None:
    text = GOOD.replace("    interval: 30s", "    interval: 30s\n    zzzqqq: 1")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=ENV)
    assert "unknown key" == caught.value.message
