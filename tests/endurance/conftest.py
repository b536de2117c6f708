"""Fixtures of the endurance suite: the scale of this run and the figures each scenario
reports (printed at the end of the session, and written as JSON to
``$WATCHER_ENDURANCE_RESULTS`` when set)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .scale import Scale, current

_FIGURES: list[tuple[str, dict[str, Any]]] = []
RESULTS_ENV = "WATCHER_ENDURANCE_RESULTS"


@pytest.fixture(scope="session")
def scale() -> Scale:
    return current()


@pytest.fixture
def figures(request: pytest.FixtureRequest, scale: Scale) -> Callable[[dict[str, Any]], None]:
    """Record this test's figures (shown in the session summary)."""

    def record(values: dict[str, Any]) -> None:
        _FIGURES.append((request.node.nodeid, {"scale": scale.name, **values}))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("endurance figures")
    for nodeid, values in _FIGURES:
        terminalreporter.write_line(nodeid.split("::", 1)[-1])
        for key, value in values.items():
            terminalreporter.write_line(f"    {key:<34} {value}")
    target = os.environ.get(RESULTS_ENV)
    if target:
        Path(target).write_text(
            json.dumps([{"test": n, **v} for n, v in _FIGURES], indent=2, default=str) + "\n"
        )
