"""Text hygiene for everything a foreign API sent: the one place values become shown text.

Every sink shows values that come from a foreign API (job ids, suffixes, models, error
messages, response bodies) and treats them as hostile: one line of printable text, capped,
with nothing that can recolour a terminal, fake a line, add a mail header or reorder the
text. Numbers are shown and parsed here too, so that every sink says ``NaN`` the same way.

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata

ELLIPSIS = "\u2026"

# ESC/CSI sequences (7- and 8-bit), OSC strings and two-character ESC sequences.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[@-Z\\-_]?"
)
_SPACES = re.compile(r"\s+")


def clean(value: object, limit: int | None = 80, *, mark: str = "") -> str:
    """``value`` (any object, through ``str``) as one line of printable text.

    Terminal escape sequences are removed whole; whitespace of any kind (line breaks, tabs,
    Unicode separators) becomes one space; every other control, format (bidi overrides,
    zero-width marks), surrogate, private-use or unassigned character is replaced by
    ``mark`` (``""``: dropped; ``" "``: a word break; ``"?"``: visibly there). The result is
    stripped and, past ``limit`` characters (``None``: no cap), cut with "…".
    """
    out = []
    for ch in _ESCAPES.sub("", str(value)):
        if ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch)[0] == "C":
            out.append(mark)
        else:
            out.append(ch)
    text = _SPACES.sub(" ", "".join(out)).strip()
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + ELLIPSIS
    return text


def exact(value: str, *, reserved: str = "") -> str:
    """``value`` as a key part that tells it apart from every other value: itself when it
    is plain text (what :func:`clean` leaves unchanged, without ``~`` or a ``reserved``
    separator), else its cleaned form with ``~`` and a hash of the exact value.

    Ids that differ only in invisible characters (a zero-width space, a bidi mark, NBSP
    for a space, a lone surrogate) are shown alike but are different jobs: their keys (an
    alert's ``dedup_key``, a thread's) must differ, or one job's success closes another's
    incident. Plain ids keep the key they always had."""
    if clean(value, None) == value and "~" not in value and not set(reserved) & set(value):
        return value
    raw = value.encode("utf-8", errors="surrogatepass")
    shown = clean(value, 64, mark=" ").replace("~", "-")
    for separator in reserved:
        shown = shown.replace(separator, "-")
    return f"{shown}~{hashlib.sha256(raw).hexdigest()[:16]}"


def finite(value: object) -> float | None:
    """``value`` as a float when it is a finite JSON number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def to_float(value: object) -> float | None:
    """``value`` parsed as a float: a number (not a bool) or a numeric string, the
    JSON-safe ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` included; else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def number(value: object, limit: int = 24) -> str:
    """A value shown as a number: ``42``, ``0.1235`` (4 significant digits), ``NaN``,
    ``inf``, ``-inf``, ``true``; ``-`` for ``None``; anything else cleaned to ``limit``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return f"{value:.4g}"
    return clean(value, limit)


def duration(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``12s``: the two largest units, whole seconds
    (rounded down), never negative."""
    total = int(max(0.0, seconds)) if math.isfinite(seconds) else 0
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
