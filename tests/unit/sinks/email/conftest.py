"""Fixtures of the email sink's tests: a private CA and its server certificate, and the
chart module present, faked or missing."""

from __future__ import annotations

import ssl
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def no_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "watcher.render.charts", None)  # import raises ImportError


@pytest.fixture
def fake_charts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    module = types.ModuleType("watcher.render.charts")

    def svg_chart(series: Any) -> str:
        calls.append(series)
        return '<svg xmlns="http://www.w3.org/2000/svg" id="loss"></svg>'

    def sparkline(values: Sequence[float]) -> str:
        return "\u2587\u2585\u2582"

    module.svg_chart = svg_chart  # type: ignore[attr-defined]
    module.sparkline = sparkline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "watcher.render.charts", module)
    return calls
