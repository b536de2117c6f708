"""Training curves for messages: a Unicode sparkline for text, a standalone SVG for HTML.

Pure functions, no I/O. Inputs come from a foreign API (a job's ``loss_curve`` as the diff
stores it, JSON-safe: ``NaN`` and infinities arrive as the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``), so every function tolerates missing, non-finite and
malformed values instead of raising, and the SVG escapes every text it shows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from watcher.render.text import finite, to_float

BLOCKS = "▁▂▃▄▅▆▇█"
FLAT = "▄"  # all values equal: a level line in the middle
GAP = "·"  # a value that cannot be drawn (NaN, inf, missing)
MAX_SPARK = 60

SERIES = ("train_loss", "valid_loss")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")

# Characters XML 1.0 forbids even when escaped (C0 controls but tab/LF/CR, surrogates, …).
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACES = re.compile(r"\s+")
_TITLE_CHARS = 120
_NAME_CHARS = 16
_LEGEND_STEP = 104.0  # pixels per legend entry: a short line and a 16-character name


def _thin(values: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` items, evenly spaced, the first and the last always kept."""
    count = len(values)
    if count <= limit:
        return list(values)
    return [values[round(i * (count - 1) / (limit - 1))] for i in range(limit)]


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled from the smallest (``▁``) to the largest (``█``).

    All-equal values give a level line of ``▄``; NaN, infinities and anything not a number
    give ``·``; more than 60 values are thinned evenly to 60 (first and last kept).
    """
    shown = _thin(values, MAX_SPARK)
    numbers = [finite(v) for v in shown]
    drawn = [n for n in numbers if n is not None]
    if not drawn:
        return GAP * len(shown)
    low, high = min(drawn), max(drawn)
    span = high - low
    top = len(BLOCKS) - 1
    out = []
    for number in numbers:
        if number is None:
            out.append(GAP)
        elif span == 0 or not math.isfinite(span):
            out.append(FLAT)
        else:
            out.append(BLOCKS[min(top, max(0, round((number - low) / span * top)))])
    return "".join(out)


def valid_loss(value: object) -> float | None:
    """A ``valid_loss`` as the API reports it, or ``None`` where there is none: missing, not a
    number, or the API's ``0.0`` placeholder ("no validation at this step"). The one place
    that knows the placeholder: rules, charts, Slack, email and the console ask here."""
    number = to_float(value)
    return None if number is None or number == 0.0 else number


def loss_series(curve: Sequence[Sequence[object]]) -> dict[str, list[tuple[float, float]]]:
    """``train_loss`` and ``valid_loss`` as ``(step, value)`` pairs sorted by step.

    ``curve`` holds ``[step, train_loss, valid_loss]`` rows. Missing values and the ``0.0``
    valid_loss placeholders ("no validation at this step") are skipped, as are rows without
    a finite step; NaN and infinite losses are kept (they are findings, not gaps).
    """
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in SERIES}
    if not isinstance(curve, Sequence) or isinstance(curve, str | bytes):
        return out
    for row in curve:
        if not isinstance(row, Sequence) or isinstance(row, str | bytes) or not row:
            continue
        step = to_float(row[0])
        if step is None or not math.isfinite(step):
            continue
        for index, name in enumerate(SERIES, start=1):
            raw = row[index] if len(row) > index else None
            value = valid_loss(raw) if name == "valid_loss" else to_float(raw)
            if value is None:
                continue
            out[name].append((step, value))
    for points in out.values():
        points.sort(key=lambda point: point[0])
    return out


def curve_summary(series: Sequence[tuple[float, float]]) -> dict[str, float | int | None]:
    """First, best (lowest; the earliest on a tie) and last finite values with their steps.

    Non-finite values take no part but are counted (``non_finite``), so that a curve ending
    in NaN does not pass for a healthy one; an empty series gives ``None`` values.
    """
    points = [(s, v) for s, v in series if finite(s) is not None and finite(v) is not None]
    summary: dict[str, float | int | None] = {
        "first": None,
        "first_step": None,
        "best": None,
        "best_step": None,
        "last": None,
        "last_step": None,
        "points": len(points),
        "non_finite": len(series) - len(points),
    }
    if not points:
        return summary
    first, last = points[0], points[-1]
    best = min(points, key=lambda point: point[1])  # min keeps the first of equal values
    for key, (step, value) in (("first", first), ("best", best), ("last", last)):
        summary[key] = value
        summary[f"{key}_step"] = step
    return summary


def _text(value: object, limit: int) -> str:
    """One line of XML-safe text of at most ``limit`` characters, escaped for a text node."""
    cleaned = _SPACES.sub(" ", _XML_INVALID.sub(" ", str(value))).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return escape(cleaned)


def _label(value: float) -> str:
    return f"{value:.4g}"


def _no_data(width: int, height: int, title: str | None) -> str:
    caption = _text(title, _TITLE_CHARS) if title else "no data"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{caption}</title>"
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#ffffff" '
        'stroke="#cccccc"/>'
        f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" '
        'font-family="sans-serif" font-size="12" fill="#666666">no data</text>'
        "</svg>"
    )


def svg_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    width: int = 480,
    height: int = 160,
    title: str | None = None,
    x_label: str | None = None,
    y_label: str | None = None,
) -> str:
    """A standalone SVG 1.1 document: axes, one polyline per non-empty series (distinct
    colours, a legend), min and max labels on both axes, and the axes' names when
    ``x_label`` / ``y_label`` are given.

    Non-finite points are left out; a series left empty draws nothing, and no drawable
    point at all gives a small "no data" picture. Every text shown is escaped and stripped
    of characters XML forbids; the document references nothing outside itself.
    """
    if width < 100 or height < 60:
        raise ValueError("svg_chart needs at least 100 x 60 pixels")
    drawable = {
        str(name): [
            (float(s), float(v))
            for s, v in points
            if finite(s) is not None and finite(v) is not None
        ]
        for name, points in series.items()
    }
    drawable = {name: points for name, points in drawable.items() if points}
    if not drawable:
        return _no_data(width, height, title)

    steps = [s for points in drawable.values() for s, _ in points]
    values = [v for points in drawable.values() for _, v in points]
    x_low, x_high = min(steps), max(steps)
    y_low, y_high = min(values), max(values)

    left, right = 52.0, 8.0
    top = 30.0 if title else 16.0
    bottom = 20.0
    plot_w = width - left - right
    plot_h = height - top - bottom

    def x_of(step: float) -> float:
        if x_high == x_low:
            return left + plot_w / 2
        return left + (step - x_low) / (x_high - x_low) * plot_w

    def y_of(value: float) -> float:
        if y_high == y_low:
            return top + plot_h / 2
        return top + (y_high - value) / (y_high - y_low) * plot_h

    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'font-family="sans-serif" font-size="10">',
        f"<title>{_text(title or ', '.join(drawable), _TITLE_CHARS)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    if title:
        parts.append(
            f'<text x="{left:.1f}" y="14" font-size="12" font-weight="bold" fill="#222222">'
            f"{_text(title, _TITLE_CHARS)}</text>"
        )
    x0, y0, x1, y1 = left, top + plot_h, left + plot_w, top
    parts.append(
        f'<g stroke="#888888" stroke-width="1" fill="none">'
        f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y0:.1f}"/>'
        f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x0:.1f}" y2="{y1:.1f}"/></g>'
    )
    parts.append(
        '<g fill="#444444">'
        f'<text x="{x0 - 4:.1f}" y="{y1 + 4:.1f}" text-anchor="end">{_label(y_high)}</text>'
        f'<text x="{x0 - 4:.1f}" y="{y0:.1f}" text-anchor="end">{_label(y_low)}</text>'
        f'<text x="{x0:.1f}" y="{y0 + 14:.1f}" text-anchor="start">{_label(x_low)}</text>'
        f'<text x="{x1:.1f}" y="{y0 + 14:.1f}" text-anchor="end">{_label(x_high)}</text>'
        "</g>"
    )
    if x_label:
        parts.append(
            f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 14:.1f}" text-anchor="middle" '
            f'fill="#666666">{_text(x_label, _NAME_CHARS)}</text>'
        )
    if y_label:
        middle = (y0 + y1) / 2
        parts.append(
            f'<text x="10" y="{middle:.1f}" text-anchor="middle" fill="#666666" '
            f'transform="rotate(-90 10 {middle:.1f})">{_text(y_label, _NAME_CHARS)}</text>'
        )
    legend_y = top - 6 if title else 11.0
    for index, (name, points) in enumerate(drawable.items()):
        colour = COLOURS[index % len(COLOURS)]
        coords = " ".join(f"{x_of(s):.1f},{y_of(v):.1f}" for s, v in points)
        parts.append(
            f'<polyline fill="none" stroke={quoteattr(colour)} stroke-width="1.5" '
            f'stroke-linejoin="round" points="{coords}"/>'
        )
        if len(points) == 1:  # a one-point polyline draws nothing: mark the point
            parts.append(
                f'<circle cx="{x_of(points[0][0]):.1f}" cy="{y_of(points[0][1]):.1f}" r="2" '
                f"fill={quoteattr(colour)}/>"
            )
        legend_x = max(left, x1 - _LEGEND_STEP * len(drawable)) + _LEGEND_STEP * index
        parts.append(
            f'<line x1="{legend_x:.1f}" y1="{legend_y - 3:.1f}" x2="{legend_x + 14:.1f}" '
            f'y2="{legend_y - 3:.1f}" stroke={quoteattr(colour)} stroke-width="2"/>'
            f'<text x="{legend_x + 18:.1f}" y="{legend_y:.1f}" fill="#222222">'
            f"{_text(name, _NAME_CHARS)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
