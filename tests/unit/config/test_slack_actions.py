"""Slack interactivity in the config: the signing secret and app token (as ``*_file`` too),
who may act, and clear refusals; ``check-config`` shows none of the secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import SlackSinkConfig, summary
from watcher.exceptions import ConfigError

from .sample import GOOD, load

BOT = """
  - name: slack
    kind: slack
    token: xoxb-bot-t0ken-secret
    channel: C-ALERTS
"""
SIGNING = "s1gning-secret-value"
APP = "xapp-1-A0-app-t0ken-secret"


def config_with(tmp_path: Path, extra: str, sink: str = BOT) -> str:
    return GOOD.replace("sinks:\n", "sinks:" + sink.rstrip("\n") + extra + "\n", 1)


def test_secrets_from_files_and_who_may_act(tmp_path: Path) -> None:
    (tmp_path / "signing").write_text(SIGNING + "\n")
    (tmp_path / "app").write_text(APP + "\n")
    extra = """
    signing_secret_file: {tmp}/signing
    app_token_file: {tmp}/app
    actions:
      allowed_users: [U0123ABC, U0456DEF]
      allowed_channels: C-ALERTS
      cancel: true"""
    config = load(tmp_path, config_with(tmp_path, extra))
    sink = config.sinks[0]
    assert isinstance(sink, SlackSinkConfig) and sink.interactive
    assert sink.signing_secret is not None and SIGNING == sink.signing_secret.get()
    assert sink.app_token is not None and APP == sink.app_token.get()
    assert sink.actions is not None
    assert (["U0123ABC", "U0456DEF"], ["C-ALERTS"], True) == (
        sink.actions.allowed_users,
        sink.actions.allowed_channels,
        sink.actions.cancel,
    )
    shown = summary(config)
    assert "slack: slack (buttons via /slack/actions + socket mode, cancel on)" in shown
    for secret in (SIGNING, APP, "xoxb-bot-t0ken-secret"):
        assert secret not in shown and secret not in repr(config)


def test_cancel_is_off_by_default_and_no_buttons_without_a_way_in(tmp_path: Path) -> None:
    plain = load(tmp_path, config_with(tmp_path, ""))
    sink = plain.sinks[0]
    assert isinstance(sink, SlackSinkConfig) and not sink.interactive
    signed = load(tmp_path, config_with(tmp_path, f"\n    signing_secret: {SIGNING}"))
    sink = signed.sinks[0]
    assert isinstance(sink, SlackSinkConfig) and sink.interactive and sink.actions is None
    assert "cancel off" in summary(signed)


WEBHOOK = """
  - name: slack
    kind: slack
    webhook_url: https://hooks.slack.com/services/T0/B0/x
"""


@pytest.mark.parametrize(
    ("sink", "extra", "message"),
    [
        (BOT, "\n    app_token: xoxb-not-an-app-token", "starts with xapp-"),
        (WEBHOOK, f"\n    signing_secret: {SIGNING}", "needs bot mode"),
        (WEBHOOK, "\n    actions: {cancel: true}", "needs bot mode"),
        (BOT, "\n    actions: {cancel: true}", "give a signing_secret or an app_token"),
        (
            BOT,
            f"\n    signing_secret: {SIGNING}\n    actions: {{allowed_users: ['U1 <!x>']}}",
            "not a Slack id",
        ),
    ],
    ids=["app-token-prefix", "webhook-signing", "webhook-actions", "actions-no-way-in", "bad-id"],
)
def test_refusals_are_clear_and_secret_free(
    tmp_path: Path, sink: str, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, config_with(tmp_path, extra, sink))
    assert message in str(caught.value)
    assert caught.value.path.startswith("sinks[0]")
    for secret in (SIGNING, "xoxb-not-an-app-token", "xoxb-bot-t0ken-secret"):
        assert secret not in str(caught.value)
