"""Decoding API answers whatever their nesting: one item too deep costs only itself, on any
Python (the interpreters' recursion limits differ; these depths are past all of them)."""

from __future__ import annotations

import json
import math
import sys

import pytest

from watcher.sources.decoding import MAX_NESTING, MAX_VALUES, Refused, Undecodable, decode, shape


def deep(depth: int, kind: str = "list") -> str:
    opening, closing = ("[", "]") if kind == "list" else ('{"a":', "}")
    return opening * depth + "1" + closing * depth


def listing(*items: str, key: str = "data") -> str:
    return f'{{"object": "list", "total": {len(items)}, "{key}": [{", ".join(items)}]}}'


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 980, 1500, 100_000])
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_an_item_too_deep_becomes_a_placeholder_named_by_its_id(depth: int, kind: str) -> None:
    """The other items of the page decode; the deep one is an Undecodable with its id."""
    bad = f'{{"id": "job-2", "metadata": {deep(depth, kind)}}}'
    body = listing('{"id": "job-1"}', bad, '{"id": "job-3", "note": "a [ { \\" ,"}')

    decoded = decode(body.encode())

    assert 3 == decoded["total"]
    assert {"id": "job-1"} == decoded["data"][0]
    assert Undecodable(f"nested deeper than {MAX_NESTING} levels", "job-2") == decoded["data"][1]
    assert {"id": "job-3", "note": 'a [ { " ,'} == decoded["data"][2]


def test_workflow_runs_are_split_too() -> None:
    """``executions`` (the workflow runs listing) is an array of items as ``data`` is."""
    decoded = decode(listing('{"id": "r1"}', deep(2000), key="executions"))
    assert [{"id": "r1"}, Undecodable(f"nested deeper than {MAX_NESTING} levels")] == decoded[
        "executions"
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(deep(2000), id="a bare array"),
        pytest.param(f'{{"id": "j", "events": [{deep(2000)}]}}', id="a detail"),
        pytest.param(f'{{"meta": {deep(2000)}, "data": []}}', id="a listing's envelope"),
    ],
)
def test_an_answer_too_deep_outside_its_items_is_refused(body: str) -> None:
    """Nothing to skip but the whole answer: Refused (a ValueError), never RecursionError."""
    with pytest.raises(Refused, match="nested deeper"):
        decode(body)


def test_nesting_up_to_the_limit_decodes_from_a_deep_stack() -> None:
    """MAX_NESTING levels decode even with much of the recursion limit already used."""

    def nest(levels: int) -> object:
        return decode(deep(MAX_NESTING)) if levels == 0 else nest(levels - 1)

    used = sys.getrecursionlimit() // 3
    assert 1 == _innermost(nest(used))


def _innermost(value: object) -> object:
    while isinstance(value, list):
        value = value[0]
    return value


def test_too_many_values_are_refused() -> None:
    """A few MB of tiny values would take hundreds of MB decoded: refused whole."""
    with pytest.raises(Refused, match="values"):
        decode("[" + ",".join(["{}"] * (MAX_VALUES + 1)) + "]")


def test_not_json_is_a_value_error_and_nan_is_kept() -> None:
    """Malformed JSON raises ValueError as json.loads does; NaN decodes as Python's does."""
    with pytest.raises(json.JSONDecodeError):
        decode(b'{"data": [1, 2')
    assert math.isnan(decode(b'{"x": NaN}')["x"])


def test_shape_ignores_brackets_and_commas_in_strings() -> None:
    """Depth and value count come from the structure, not from text inside strings."""
    assert (2, 3) == shape(json.dumps({"a": ["[[[{{{,,,", 1]}))
