"""render.text: the one hygiene of shown values, numbers and durations, against hostile input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.render.text import clean, duration, finite, number, to_float

HOSTILE = [
    "\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b", "\u200b", "\u200f", "\u2028", "\u2029",
    "\u202e", "\u2066", "\ufeff", "\ud800", "\ue000",
]  # fmt: skip


@pytest.mark.parametrize("char", HOSTILE)
@pytest.mark.parametrize("mark", ["", " ", "?"])
def test_clean_lets_no_control_or_format_character_through(char: str, mark: str) -> None:
    """C0, C1, DEL, bidi overrides, zero-width marks, separators and surrogates never pass."""
    cleaned = clean(f"a{char}\nb", mark=mark)  # the line break ends a would-be sequence

    assert char not in cleaned
    assert ("a", "b") == (cleaned[0], cleaned[-1])


@pytest.mark.parametrize(
    ("mark", "expected"),
    [
        pytest.param("", "ab", id="dropped"),
        pytest.param(" ", "a b", id="word break"),
        pytest.param("?", "a?b", id="visible"),
    ],
)
def test_clean_mark_replaces_an_invisible_character(mark: str, expected: str) -> None:
    """``mark`` says what becomes of a format character: dropped, a space, or visible."""
    assert expected == clean("a\u202eb", mark=mark)


def test_clean_removes_terminal_escape_sequences_whole() -> None:
    """CSI and OSC sequences go entirely, not just their ESC."""
    expected = "RED plain title"
    assert expected == clean("\x1b[31mRED\x1b[0m plain \x1b]0;title\x07title")


def test_clean_folds_every_whitespace_into_one_space() -> None:
    """Line breaks, tabs and Unicode separators become single spaces; ends are stripped."""
    expected = "one two three four"
    assert expected == clean("  one\r\n\ttwo\u2028three\u00a0\u00a0four \n")


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        pytest.param("x" * 500, 10, "x" * 9 + "\u2026", id="cut with an ellipsis"),
        pytest.param("abc", 3, "abc", id="exactly at the limit"),
        pytest.param("ab   cd", 4, "ab\u2026", id="no space before the ellipsis"),
        pytest.param("x" * 500, None, "x" * 500, id="no limit"),
        pytest.param("abc", 0, "\u2026", id="zero"),
    ],
)
def test_clean_caps_length(value: str, limit: int | None, expected: str) -> None:
    """Past ``limit`` characters the text is cut and ends with "…"."""
    assert expected == clean(value, limit)


def test_clean_huge_string_is_capped() -> None:
    """A megabyte of hostile text still gives one short line."""
    huge = ("\u202e\x1b[2J" + "y" * 1000 + "\n") * 1000

    cleaned = clean(huge, 200)

    assert (200, True) == (len(cleaned), cleaned.endswith("\u2026"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, "None", id="None"),
        pytest.param(12, "12", id="int"),
        pytest.param(["a\nb", {"k": 1}], "['a\\nb', {'k': 1}]", id="list"),
        pytest.param(b"bytes", "b'bytes'", id="bytes"),
    ],
)
def test_clean_accepts_any_value(value: object, expected: str) -> None:
    """Non-str values are shown through ``str``."""
    assert expected == clean(value)


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_clean_is_one_short_printable_line(value: str, limit: int) -> None:
    """Whatever the input: one line, at most ``limit`` characters, nothing invisible."""
    cleaned = clean(value, limit)

    assert len(cleaned) <= limit
    assert not any(ch.isspace() and ch != " " for ch in cleaned)
    assert cleaned == cleaned.strip()
    assert clean(cleaned, limit) == cleaned


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(42, "42", id="int"),
        pytest.param(10**20, "100000000000000000000", id="huge int"),
        pytest.param(0.123456, "0.1235", id="float"),
        pytest.param(1e300, "1e+300", id="huge float"),
        pytest.param(math.nan, "NaN", id="nan"),
        pytest.param(math.inf, "inf", id="inf"),
        pytest.param(-math.inf, "-inf", id="-inf"),
        pytest.param(True, "true", id="bool"),
        pytest.param(None, "-", id="None"),
        pytest.param("12 \x1b[31mred", "12 red", id="hostile str"),
        pytest.param("z" * 100, "z" * 23 + "\u2026", id="long str"),
        pytest.param({"a": 1}, "{'a': 1}", id="mapping"),
    ],
)
def test_number(value: object, expected: str) -> None:
    """Numbers in one form for every sink; anything else cleaned and capped."""
    assert expected == number(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(3, 3.0, id="int"),
        pytest.param(2.5, 2.5, id="float"),
        pytest.param(math.nan, None, id="nan"),
        pytest.param(math.inf, None, id="inf"),
        pytest.param(True, None, id="bool"),
        pytest.param("3", None, id="str"),
        pytest.param(None, None, id="None"),
    ],
)
def test_finite(value: object, expected: float | None) -> None:
    """Only finite JSON numbers count as finite; bools and strings do not."""
    assert expected == finite(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(3, 3.0, id="int"),
        pytest.param(" 2.5 ", 2.5, id="numeric str"),
        pytest.param("Infinity", math.inf, id="JSON-safe infinity"),
        pytest.param("-Infinity", -math.inf, id="JSON-safe -infinity"),
        pytest.param("abc", None, id="not a number"),
        pytest.param(False, None, id="bool"),
        pytest.param([1], None, id="list"),
        pytest.param(None, None, id="None"),
    ],
)
def test_to_float(value: object, expected: float | None) -> None:
    """Numbers and numeric strings parse; the rest is ``None``."""
    assert expected == to_float(value)


def test_to_float_nan_string() -> None:
    """The JSON-safe ``"NaN"`` parses to NaN."""
    parsed = to_float("NaN")

    assert True is (parsed is not None and math.isnan(parsed))


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(12.9, "12s", id="seconds, rounded down"),
        pytest.param(250, "4m 10s", id="minutes"),
        pytest.param(7500, "2h 5m", id="hours: minutes not padded"),
        pytest.param(7200, "2h 0m", id="whole hours"),
        pytest.param(273600, "3d 4h", id="days"),
        pytest.param(-5, "0s", id="negative"),
        pytest.param(math.inf, "0s", id="inf"),
        pytest.param(math.nan, "0s", id="nan"),
    ],
)
def test_duration(seconds: float, expected: str) -> None:
    """The two largest units, never negative, whatever the input."""
    assert expected == duration(seconds)
