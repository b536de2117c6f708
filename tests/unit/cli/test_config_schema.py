"""``watcher schema config`` describes the file as users write it: every shipped config
validates against it (``*_file`` secrets, ``${VAR}`` values), the published copy under
``config/`` is up to date, and the examples point editors at it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests import REPO
from watcher.cli.schema import config_schema

SCHEMA_FILE = REPO / "config" / "watcher.schema.json"
SHIPPED = sorted([*REPO.glob("config/*.yaml"), *REPO.glob("deploy/**/config.yaml")], key=str)


def readme_minimal() -> Any:
    """The README's "A minimal config" block."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"A minimal config:\s*```yaml\n(.*?)```", text, re.S)
    assert found is not None, "the README lost its minimal config"
    return yaml.safe_load(found.group(1))


def errors(document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(config_schema())
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(document)
    ]


def test_the_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(config_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_validates(path: Path) -> None:
    assert len(SHIPPED) >= 4  # the example and the three deployments
    assert [] == errors(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_the_readme_minimal_config_validates() -> None:
    assert [] == errors(readme_minimal())


BASE: dict[str, Any] = {
    "sources": [{"name": "b", "kind": "mistral-batch", "api_key": "k"}],
    "sinks": [{"name": "hooks", "kind": "webhook", "url": "https://h.example/x"}],
}


def with_source(**fields: Any) -> dict[str, Any]:
    source = {"name": "b", "kind": "mistral-batch", **fields}
    return {**BASE, "sources": [{k: v for k, v in source.items() if v is not None}]}


def test_a_secret_or_its_file_one_of_them() -> None:
    assert [] == errors(with_source(api_key="k"))
    assert [] == errors(with_source(api_key_file="/run/secrets/key"))
    assert errors(with_source())  # neither: the key is required
    assert errors(with_source(api_key="k", api_key_file="/run/secrets/key"))  # both
    assert errors(with_source(api_key_file=""))
    sink = {"name": "s", "kind": "slack", "webhook_url_file": "/run/secrets/slack"}
    assert [] == errors({**BASE, "sinks": [sink]})


def test_a_variable_stands_for_any_value_but_a_typo_does_not() -> None:
    assert [] == errors(with_source(api_key="k", page_size="${PAGE_SIZE}"))
    assert [] == errors(with_source(api_key="k", on_start="${ON_START}"))
    assert errors(with_source(api_key="k", page_size="fifty"))
    assert errors(with_source(api_key="k", on_start="sometimes"))
    assert errors(with_source(api_key="k", intervall="5s"))
    assert errors({**BASE, "sinks": [{"name": "c", "kind": "${KIND}"}]})  # kind chooses


def test_the_published_schema_is_up_to_date() -> None:
    """``config/watcher.schema.json`` is ``watcher schema config``'s output; regenerate it
    with ``watcher schema config > config/watcher.schema.json``."""
    published = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert config_schema() == published


@pytest.mark.parametrize("path", sorted(REPO.glob("config/*.yaml")), ids=lambda p: p.name)
def test_the_examples_name_the_schema_for_editors(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert "# yaml-language-server: $schema=./watcher.schema.json" == first
    assert (path.parent / "watcher.schema.json").is_file()
