"""JSON answers decoded whatever their nesting, with one bad item costing only itself.

Python's ``json`` decoder recurses: an answer nested a thousand levels deep (2 KB of
brackets) raises ``RecursionError``, at a depth that differs between Python 3.11, 3.12 and
3.13 and with how deep the caller's stack already is; and every recursive walk after it
(``repr``, comparisons, the store's serialization) has the same weakness. So the depth of an
answer is measured first, without recursion (:func:`shape`: the strings cut out by a
regular expression, then a running sum over the brackets left), and nothing deeper than
:data:`MAX_NESTING` is ever handed to the decoder.

A listing answer (an object with a ``data`` or ``executions`` array) deeper than that is
split without recursion into its envelope and its items (:func:`split_listing`); each item
is decoded on its own, and one too deep becomes an :class:`Undecodable` placeholder, which
the source skips as a malformed item (named by its ``id`` when that is its first key). Any
other answer too deep is refused whole (:class:`Refused`).

An answer with more than :data:`MAX_VALUES` values is refused whole too: decoded, a few MB
of tiny values (``[{},{},…]``) would take hundreds of MB.

``NaN`` and ``Infinity`` decode as Python's ``json`` does (the store's serialization
handles them, see :meth:`watcher.model.snapshot.Snapshot.to_json`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

# Levels of nesting decoded: far past any real answer (jobs nest 4 or 5 levels) and far
# within every recursion limit of the supported interpreters, whatever the stack holds.
MAX_NESTING = 512
# Values in one answer: a detail with 10,000 checkpoints holds about 150,000.
MAX_VALUES = 500_000

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.DOTALL)
_COLON = re.compile(r"\s*:")
# The arrays of items of a listing answer (``data``; ``executions`` for workflow runs).
ITEM_KEYS = frozenset({"data", "executions"})
_FIRST_ID = re.compile(r'\s*\{\s*"id"\s*:\s*("[^"\\]{0,255}")')


class Refused(ValueError):
    """An answer watcher does not decode (too deep, too many values): ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Undecodable:
    """An item of a listing left undecoded: why, and its id when one could be read."""

    reason: str
    id: str | None = None


def shape(text: str) -> tuple[int, int]:
    """How deep ``text`` nests and about how many values it holds (commas and brackets
    outside strings), counted without recursion."""
    bare = _STRING.sub("", text)
    brackets = _NOT_BRACKET.sub("", bare).encode("ascii")
    depth = max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
    return depth, bare.count(",") + brackets.count(b"[") + brackets.count(b"{")


def _text(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    return body.decode(json.detect_encoding(body), "surrogatepass")


def decode(body: bytes | str) -> Any:
    """The JSON value of ``body``; ``ValueError`` when it is not JSON, :class:`Refused`
    when it is too deep or too large to decode (a listing too deep only in some of its items
    gets them as :class:`Undecodable`)."""
    text = _text(body)
    if text.count("[") + text.count("{") <= MAX_NESTING and text.count(",") < MAX_VALUES:
        return json.loads(text)  # too few brackets to nest too deep: the common small answer
    depth, values = shape(text)
    if values > MAX_VALUES:
        raise Refused(f"holding over {MAX_VALUES} values")
    if depth <= MAX_NESTING:
        return json.loads(text)
    split = split_listing(text)
    if split is None:
        raise Refused(f"nested deeper than {MAX_NESTING} levels")
    envelope, name, items = split
    if shape(envelope)[0] > MAX_NESTING:
        raise Refused(f"nested deeper than {MAX_NESTING} levels")
    outer = json.loads(envelope)
    outer[name] = [_item(item) for item in items]
    return outer


def _item(text: str) -> Any:
    if shape(text)[0] <= MAX_NESTING:
        return json.loads(text)
    found = _FIRST_ID.match(text)
    job_id = None
    if found is not None:
        try:
            job_id = json.loads(found.group(1))
        except ValueError:
            job_id = None
    return Undecodable(f"nested deeper than {MAX_NESTING} levels", job_id)


def split_listing(text: str) -> tuple[str, str, list[str]] | None:
    """A listing's envelope (its array of items emptied), the name of that array (one of
    :data:`ITEM_KEYS`) and the texts of its items, found without recursion; ``None`` when
    ``text`` is no object with such an array at its top."""
    depth = 0
    key: str | None = None  # the last key read at the top level
    name = ""
    start = end = -1  # of the data array
    item_at = -1
    items: list[str] = []
    for token in _TOKEN.finditer(text):
        mark = token.group()[0]
        if mark == '"':
            if depth == 1 and start < 0 and _COLON.match(text, token.end()):
                key = json.loads(token.group())
            continue
        if mark in "[{":
            depth += 1
            if depth == 2 and mark == "[" and key in ITEM_KEYS and start < 0:
                name = str(key)
                start = token.start()
                item_at = token.end()
        elif mark in "]}":
            if depth == 2 and start >= 0 and end < 0:
                items.append(text[item_at : token.start()])
                end = token.end()
            depth -= 1
        elif depth == 2 and start >= 0 and end < 0:
            items.append(text[item_at : token.start()])
            item_at = token.end()
    if start < 0 or end < 0 or not text.lstrip().startswith("{"):
        return None
    if len(items) == 1 and not items[0].strip():
        items = []  # "data": []
    return text[:start] + "[]" + text[end:], name, items
