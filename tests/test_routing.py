"""Routing: AND across keys, OR across values, globs, union of sinks, continue: false."""

from __future__ import annotations

import pytest

from watcher.config import MatchConfig, RouteConfig
from watcher.routing import Router
from watcher.transitions import Transition


def t(
    type_: str = "fine_tuning.job.failed", status: str | None = "FAILED", source: str = "ft"
) -> Transition:
    return Transition(id="x", type=type_, source=source, job_id="j", status=status)


def route(sinks: list[str], stop: bool = False, **match: list[str]) -> RouteConfig:
    return RouteConfig(match=MatchConfig(**match), sinks=sinks, continue_=not stop)


@pytest.mark.parametrize(
    ("routes", "transition", "expected"),
    [
        pytest.param([route(["a"])], t(), ["a"], id="empty match matches everything"),
        pytest.param([route(["a"], status=["FAILED", "CANCELLED"])], t(), ["a"], id="OR"),
        pytest.param([route(["a"], status=["FAILED"], source=["other"])], t(), [], id="AND"),
        pytest.param([route(["a"], type=["fine_tuning.job.*"])], t(), ["a"], id="glob"),
        pytest.param(
            [route(["a"], status=["FAILED"])],
            t("fine_tuning.job.checkpoint", None),
            [],
            id="status key never matches a transition without status",
        ),
        pytest.param(
            [route(["a", "b"]), route(["b", "c"])], t(), ["a", "b", "c"], id="union, each sink once"
        ),
        pytest.param(
            [route(["a"], stop=True), route(["b"])], t(), ["a"], id="continue false stops"
        ),
        pytest.param(
            [route(["a"], stop=True, status=["RUNNING"]), route(["b"])],
            t(),
            ["b"],
            id="continue false only when it matches",
        ),
        pytest.param([], t(), [], id="no routes: recorded, sent nowhere"),
    ],
)
def test_sinks_for(routes: list[RouteConfig], transition: Transition, expected: list[str]) -> None:
    """The sinks a transition reaches follow DESIGN.md's routing rules."""
    assert expected == Router(routes).sinks_for(transition)


def test_explain_names_the_routes() -> None:
    """explain() returns the index of every route that applies."""
    router = Router(
        [route(["a"], status=["RUNNING"]), route(["b"]), route(["c"], stop=True), route(["d"])]
    )
    assert [1, 2] == [i for i, _ in router.explain(t())]
