"""The routes section: match keys, including those of Workflows executions."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import MatchConfig

from .sample import GOOD, load, refused

WORKFLOW_KEYS = ("workflow", "deployment", "root_execution_id", "parent_execution_id", "activity")


def test_workflow_match_keys_load(tmp_path: Path) -> None:
    """A route may match on workflow, deployment, execution ids and activity; a single
    value is a list of one."""
    route = """  - match:
      workflow: ["support-*", billing]
      deployment: prod
      root_execution_id: [019b2bd7-96e7-7219-8c0b-45a73da50088]
      parent_execution_id: ["*"]
      activity: [charge_card]
      type: ["workflow.*"]
    sinks: [hooks]
"""
    config = load(tmp_path, GOOD.replace("routes:\n", "routes:\n" + route, 1))
    match = config.routes[0].match if config.routes else None
    assert match is not None
    assert ["support-*", "billing"] == match.workflow
    assert ["prod"] == match.deployment
    assert ["019b2bd7-96e7-7219-8c0b-45a73da50088"] == match.root_execution_id
    assert ["*"] == match.parent_execution_id
    assert ["charge_card"] == match.activity


def test_an_unknown_match_key_is_refused(tmp_path: Path) -> None:
    """A misspelt key (workflows for workflow) is an error at its path, not a route that
    matches everything."""
    error = refused(tmp_path, ("match: {status:", "match: {workflows: [x], status:"))
    assert "routes[0].match.workflows" == error.path


@pytest.mark.parametrize("key", WORKFLOW_KEYS)
def test_schema_lists_the_workflow_keys(key: str) -> None:
    """The config's JSON Schema (generated from the models) knows each new key."""
    assert key in MatchConfig.model_json_schema()["properties"]
