"""Charts: sparkline shapes, loss series from a job's curve, summaries and a safe SVG."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from watcher.render.charts import BLOCKS, curve_summary, loss_series, sparkline, svg_chart

SVG = "{http://www.w3.org/2000/svg}"
NAN = math.nan
INF = math.inf

# A scripted job's loss_curve as the diff stores it: JSON-safe (NaN as a string), with the
# 0.0 valid_loss placeholders of steps without validation.
CURVE: list[list[float | str | None]] = [
    [10, 2.4, 0.0],
    [20, 1.9, 2.0],
    [30, 1.5, 0.0],
    [40, 1.2, 1.4],
    [50, 1.5, 0.0],
    [60, 0.9, 1.1],
    [70, 0.7, 0.0],
    [80, "NaN", 1.3],
]


def rank(char: str) -> int:
    return BLOCKS.index(char)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([], "", id="empty"),
        pytest.param([1, 2, 3, 4, 5, 6, 7, 8], "▁▂▃▄▅▆▇█", id="rising"),
        pytest.param([8, 7, 6, 5, 4, 3, 2, 1], "█▇▆▅▄▃▂▁", id="falling"),
        pytest.param([3.0, 1.5, 0.0, 1.5, 3.0], "█▅▁▅█", id="V shape"),
        pytest.param([2.5, 2.5, 2.5], "▄▄▄", id="flat"),
        pytest.param([7.0], "▄", id="one value"),
        pytest.param([0.0, NAN, 1.0], "▁·█", id="NaN is a gap"),
        pytest.param([INF, 1.0, 2.0, -INF], "·▁█·", id="infinities are gaps"),
        pytest.param([NAN, NAN], "··", id="nothing finite"),
        pytest.param([-1e-9, 0.0, 1e-9], "▁▅█", id="tiny range still spans"),
    ],
)
def test_sparkline_shapes(values: list[float], expected: str) -> None:
    """Each value becomes one block scaled min to max; non-finite values become dots."""
    assert expected == sparkline(values)


def test_sparkline_downsamples_to_60_keeping_ends() -> None:
    """More than 60 values are thinned to 60 characters, the first and the last kept."""
    values = [0.0] + [5.0] * 200 + [10.0]
    line = sparkline(values)
    assert (60, "▁", "█") == (len(line), line[0], line[-1])
    assert 60 == len(sparkline([float(i) for i in range(61)]))
    assert "▁▂▃▄▅▆▇█" == sparkline([float(i) for i in range(8)])  # no thinning below 60


def test_sparkline_follows_the_loss_curve() -> None:
    """Where the scripted train loss goes down the sparkline goes down, and up where it rises."""
    values = [v for _, v in loss_series(CURVE)["train_loss"]]
    line = sparkline(values)
    assert len(values) == len(line)
    for i in range(len(values) - 1):
        if not (math.isfinite(values[i]) and math.isfinite(values[i + 1])):
            assert "·" in (line[i], line[i + 1])
        elif values[i + 1] < values[i]:
            assert rank(line[i + 1]) <= rank(line[i]), (i, line)
        elif values[i + 1] > values[i]:
            assert rank(line[i + 1]) >= rank(line[i]), (i, line)
    assert (BLOCKS[-1], BLOCKS[0]) == (line[0], line[-2])  # highest first, lowest before NaN
    assert rank(line[4]) > rank(line[3])  # the bump at step 50 shows


def test_loss_series_skips_placeholders_and_missing_values() -> None:
    """Train and valid losses by step: None and the 0.0 valid placeholders are left out."""
    curve: list[list[float | str | None]] = [
        [3, 1.0, 0.0],
        [1, 2.0, 2.2],
        [2, None, 1.7],
        [4, "Infinity", None],
    ]
    expected = {
        "train_loss": [(1.0, 2.0), (3.0, 1.0), (4.0, INF)],
        "valid_loss": [(1.0, 2.2), (2.0, 1.7)],
    }
    assert expected == loss_series(curve)


def test_loss_series_keeps_nan_from_the_json_safe_curve() -> None:
    """The string "NaN" of a JSON-safe curve comes back as a float NaN, not dropped."""
    train = loss_series(CURVE)["train_loss"]
    assert (80.0, True) == (train[-1][0], math.isnan(train[-1][1]))


@pytest.mark.parametrize(
    "curve",
    [
        pytest.param([], id="empty"),
        pytest.param([[]], id="empty row"),
        pytest.param([["x", 1.0, 1.0], [None, 1.0, 1.0], [NAN, 1.0, 1.0]], id="bad steps"),
        pytest.param([[1, "abc", {"a": 1}], [2, True, [1]]], id="bad values"),
        pytest.param("not a curve", id="a string"),
    ],
)
def test_loss_series_tolerates_malformed_curves(curve: list[list[object]]) -> None:
    """Rows without a finite step and values that are no numbers are skipped, never raised."""
    assert {"train_loss": [], "valid_loss": []} == loss_series(curve)


def test_curve_summary() -> None:
    """First, best and last finite values with their steps; NaN counted, not chosen."""
    expected = {
        "first": 2.4,
        "first_step": 10.0,
        "best": 0.7,
        "best_step": 70.0,
        "last": 0.7,
        "last_step": 70.0,
        "points": 7,
        "non_finite": 1,
    }
    assert expected == curve_summary(loss_series(CURVE)["train_loss"])


def test_curve_summary_best_tie_and_empty() -> None:
    """On a tie the earliest best wins; an empty series keeps the shape with None values."""
    assert (2.0, 1.0) == tuple(
        curve_summary([(1, 3.0), (2, 1.0), (3, 1.0)])[k] for k in ("best_step", "best")
    )
    empty = curve_summary([])
    assert (None, None, 0) == (empty["best"], empty["last_step"], empty["points"])


def test_svg_parses_with_one_polyline_per_series() -> None:
    """The SVG is a standalone document with one polyline per non-empty series."""
    series = loss_series(CURVE)
    document = svg_chart(series, title="support-bot")
    root = ET.fromstring(document)  # noqa: S314 - our own output, parsed to check it
    assert SVG + "svg" == root.tag
    assert "1.1" == root.get("version")
    polylines = root.iter(SVG + "polyline")
    strokes = [line.get("stroke") for line in polylines]
    assert 2 == len(strokes)
    assert len(set(strokes)) == len(strokes)  # distinct colours
    texts = [t.text for t in root.iter(SVG + "text")]
    assert {"support-bot", "train_loss", "valid_loss", "0.7", "2.4", "10", "80"} <= set(texts)


def test_svg_polyline_points_match_the_finite_points() -> None:
    """Each polyline carries one coordinate pair per finite point, inside the picture."""
    series = {"train_loss": [(1.0, 3.0), (2.0, NAN), (3.0, 1.0)], "valid_loss": []}
    root = ET.fromstring(svg_chart(series, width=200, height=100))  # noqa: S314
    (line,) = list(root.iter(SVG + "polyline"))
    pairs = [tuple(map(float, p.split(","))) for p in (line.get("points") or "").split()]
    assert 2 == len(pairs)
    assert all(0 <= x <= 200 and 0 <= y <= 100 for x, y in pairs)
    assert pairs[0][1] < pairs[1][1]  # higher loss drawn higher (smaller y)


def test_svg_without_data_says_so() -> None:
    """No drawable point gives a small valid SVG saying "no data"."""
    cases: list[dict[str, list[tuple[float, float]]]] = [
        {},
        {"train_loss": []},
        {"train_loss": [(1.0, NAN)]},
    ]
    for series in cases:
        root = ET.fromstring(svg_chart(series))  # noqa: S314
        assert ["no data"] == [t.text for t in root.iter(SVG + "text")]
        assert [] == list(root.iter(SVG + "polyline"))


def test_svg_escapes_a_hostile_title_and_names() -> None:
    """A title or series name with markup and control characters stays text, never markup."""
    hostile = '<script>alert("x")</script>&\x00\x1b]8;;'
    document = svg_chart({hostile: [(1.0, 1.0), (2.0, 2.0)]}, title=hostile)
    assert "<script" not in document
    root = ET.fromstring(document)  # noqa: S314
    assert [] == [e for e in root.iter() if e.tag.removeprefix(SVG) == "script"]
    assert any("<script>" in (t.text or "") for t in root.iter(SVG + "text"))
    assert "href" not in document and "url(" not in document  # nothing external


def test_svg_rejects_a_too_small_picture() -> None:
    """Sizes too small to hold axes and labels are refused."""
    with pytest.raises(ValueError, match="at least"):
        svg_chart({"train_loss": [(1.0, 1.0)]}, width=20, height=10)


def test_svg_chart_names_its_axes_when_asked() -> None:
    """``x_label`` / ``y_label`` name the axes (escaped); without them nothing changes."""
    series = {"train_loss": [(1.0, 2.0), (2.0, 1.0)]}
    plain = svg_chart(series)
    named = svg_chart(series, x_label="step", y_label="<loss>")
    assert ">step</text>" in named and "&lt;loss&gt;</text>" in named
    assert 'transform="rotate(-90' in named
    assert "step" not in plain and "rotate" not in plain
    ET.fromstring(named)  # noqa: S314 - our own output: still well-formed
