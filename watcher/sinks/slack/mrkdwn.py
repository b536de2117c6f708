"""Slack's mrkdwn for hostile values: cleaned (:func:`watcher.render.text.clean`), the three
control characters escaped, cut to Slack's limits with "…" never inside an entity or a link."""

from __future__ import annotations

from watcher.render import text
from watcher.render.text import ELLIPSIS

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_FIELDS = 10
MAX_FIELD = 2000
MAX_TEXT = 4000
MAX_CONTEXT = 2000
# The grouped list's share of Slack's 40,000-character ceiling for a whole message (the
# "… and N more" marker, header and context come on top).
MAX_LIST = 33_000
ARROW = "\u2192"


def clean(value: object, limit: int = 80) -> str:
    """``value`` as one line of at most ``limit`` characters (unescaped); invisible
    characters are dropped."""
    return text.clean(value, limit)


def escape(text: str) -> str:
    """Slack's three control characters as entities: ``<!channel>`` becomes inert text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe(value: object, limit: int = 80) -> str:
    return escape(clean(value, limit))


def code(value: object, limit: int = 80) -> str:
    return "`" + escape(clean(value, limit).replace("`", "'")) + "`"


def fit(text: str, limit: int) -> str:
    """``text`` (already escaped mrkdwn) cut to ``limit`` characters with "…", never inside
    an entity (``&amp;``) or one of our own ``<url|label>`` links."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")  # every "<" left is one of ours: values were escaped
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut + ELLIPSIS


def multiline(text: str, limit: int) -> str:
    """A user template's output: lines kept, each cleaned and escaped, the whole fitted."""
    lines = [escape(clean(line, limit)) for line in text.splitlines()]
    return fit("\n".join(lines).strip("\n"), limit)


def number(value: object) -> str:
    """:func:`watcher.render.text.number`, escaped."""
    return escape(text.number(value))
