"""A good config file to start from, and one way to load it with one edit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from watcher.config import Config, load_config
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
    """``text`` as ``config.yaml`` in ``tmp_path``, beside the webhook secret file it names."""
    (tmp_path / "whsec").write_text(SECRET + "\n")
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).replace("{tmp}", str(tmp_path)))
    return path


def load(tmp_path: Path, text: str = GOOD) -> Config:
    """The config written from ``text`` into ``tmp_path``, loaded with :data:`ENV`."""
    return load_config(write(tmp_path, text), env=ENV)


def refused(tmp_path: Path, edit: tuple[str, str]) -> ConfigError:
    """The one error :data:`GOOD` with ``edit`` (old, new) applied raises; secret-free."""
    old, new = edit
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, GOOD.replace(old, new, 1))
    assert "\n" not in str(caught.value)
    assert "sk-very-secret-key" not in str(caught.value)
    return caught.value
