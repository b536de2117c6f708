"""What Slack refuses in a message payload, for the fake Slack: Block Kit's limits and
shapes, with Slack's own error strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELDS = 10
MAX_FIELD = 2000
MAX_TEXT = 4000
MAX_CONTEXT_ELEMENTS = 10
_BLOCK_TYPES = frozenset(
    {"header", "section", "context", "divider", "actions", "image", "rich_text", "input", "file"}
)


class PayloadError(ValueError):
    """A payload Slack would refuse; ``str()`` is Slack's error string."""


def _text_of(obj: Any, *, limit: int, plain_only: bool = False) -> str:
    if not isinstance(obj, Mapping) or obj.get("type") not in ("plain_text", "mrkdwn"):
        raise PayloadError("invalid_blocks")
    if plain_only and obj.get("type") != "plain_text":
        raise PayloadError("invalid_blocks")
    text = obj.get("text")
    if not isinstance(text, str) or not text or len(text) > limit:
        raise PayloadError("invalid_blocks")
    return text


def validate(payload: Any) -> None:
    """Raise :class:`PayloadError` (Slack's string) if Slack would refuse ``payload``."""
    if not isinstance(payload, Mapping):
        raise PayloadError("invalid_payload")
    text = payload.get("text")
    blocks = payload.get("blocks")
    if text is not None and not isinstance(text, str):
        raise PayloadError("invalid_payload")
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
            raise PayloadError("invalid_blocks")
        for block in blocks:
            _validate_block(block)
    if not (text and text.strip()) and not blocks:
        raise PayloadError("no_text")
    if text is not None and len(text) > MAX_TEXT:
        raise PayloadError("msg_too_long")


def _validate_block(block: Any) -> None:
    if not isinstance(block, Mapping) or block.get("type") not in _BLOCK_TYPES:
        raise PayloadError("invalid_blocks")
    kind = block["type"]
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > 255):
        raise PayloadError("invalid_blocks")
    if kind == "header":
        _text_of(block.get("text"), limit=MAX_HEADER, plain_only=True)
    elif kind == "section":
        fields = block.get("fields")
        if "text" in block:
            _text_of(block["text"], limit=MAX_SECTION)
        if fields is not None:
            if not isinstance(fields, list) or not fields or len(fields) > MAX_FIELDS:
                raise PayloadError("invalid_blocks")
            for item in fields:
                _text_of(item, limit=MAX_FIELD)
        if "text" not in block and fields is None:
            raise PayloadError("invalid_blocks")
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
            raise PayloadError("invalid_blocks")
        for element in elements:
            if isinstance(element, Mapping) and element.get("type") == "image":
                continue
            _text_of(element, limit=MAX_SECTION)
