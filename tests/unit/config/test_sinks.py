"""The sinks: section: URLs, webhook secrets and headers follow the sinks' own rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from .sample import refused


@pytest.mark.parametrize(
    ("edit", "path", "message"),
    [
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
            ("secret_file: {tmp}/whsec", "secret_file: {tmp}/whsec\n    headers: {Bad Header: x}"),
            "sinks[0].headers",
            "header name 'Bad Header' is invalid",
            id="bad header name",
        ),
    ],
)
def test_broken_sinks_name_the_field(
    tmp_path: Path, edit: tuple[str, str], path: str, message: str
) -> None:
    """A sink whose URL, secret or header the sink would refuse is refused at its field."""
    error = refused(tmp_path, edit)
    assert path == error.path
    assert message in error.message
