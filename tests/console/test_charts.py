"""The SVG chart helper: ticks, geometry, labels, gaps and escaping, read back as XML."""

from decimal import Decimal
from xml.etree import ElementTree

import pytest

from console.charts import Series, bar_chart_svg, format_compact, format_exact, line_chart_svg, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ElementTree.Element:
    """Well-formed XML or the test fails: unescaped text would break the parse."""
    return ElementTree.fromstring(svg)


def texts(root: ElementTree.Element, css_class: str) -> list[str]:
    return [element.text for element in root.iter(f"{SVG}text") if element.get("class") == css_class]


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        (0, 87, [0, 25, 50, 75, 100]),
        (0, 1.25e6, [0, 500_000, 1_000_000, 1_500_000]),
        (0, 40, [0, 10, 20, 30, 40]),
        (0, 0, [0, 0.25, 0.5, 0.75, 1]),
        (0, 0.3, [0, 0.1, 0.2, 0.3]),
        (0, 1234, [0, 500, 1000, 1500]),
        (-30, 95, [-50, 0, 50, 100]),
        (5, 9, [0, 2.5, 5, 7.5, 10]),
    ],
)
def test_ticks_are_round_numbers_that_cover_the_values_and_zero(low, high, ticks):
    assert nice_ticks(low, high) == ticks


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0, "0"),
        (950, "950"),
        (1500, "1.5k"),
        (12345, "12.3k"),
        (2_000_000, "2M"),
        (-3000, "-3k"),
        (0.25, "0.25"),
        (7.5e9, "7.5G"),
    ],
)
def test_axis_labels_are_compact(value, label):
    assert format_compact(value) == label


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1000.000000000000"), "1000"),
        (Decimal("0.500"), "0.5"),
        (Decimal("0E-12"), "0"),
        (3.0, "3"),
        (2.25, "2.25"),
        (7, "7"),
    ],
)
def test_exact_values_drop_trailing_zeros_and_never_use_exponents(value, text):
    assert format_exact(value) == text


def test_a_bar_chart_draws_one_bar_per_known_value_on_axes_with_ticks():
    svg = bar_chart_svg(
        labels=["a", "b", "c"],
        values=[Decimal("10.000"), None, Decimal("40")],
        title="Calls",
        unit="requests",
        width=200,
        height=100,
    )
    root = parse(svg)

    assert root.get("viewBox") == "0 0 200 100"
    assert root.get("aria-label") == "Calls"
    assert root.find(f"{SVG}title").text == "Calls"
    bars = [element for element in root.iter(f"{SVG}rect") if element.get("class") == "bar"]
    # Plot from x=52 to 188 and y=28 to 66; 3 slots of 45.3; bars 70 % of a slot; 40 is the top tick.
    assert [
        (
            bar.get("data-label"),
            bar.get("data-value"),
            bar.get("x"),
            bar.get("y"),
            bar.get("width"),
            bar.get("height"),
        )
        for bar in bars
    ] == [
        ("a", "10", "58.8", "56.5", "31.7", "9.5"),
        ("c", "40", "149.5", "28", "31.7", "38"),
    ]
    assert [bar.find(f"{SVG}title").text for bar in bars] == ["a: 10 requests", "c: 40 requests"]
    assert texts(root, "tick y-tick") == ["0", "10", "20", "30", "40"]
    assert texts(root, "tick x-tick") == ["a", "b", "c"]
    assert texts(root, "unit") == ["requests"]
    assert [line.get("class") for line in root.iter(f"{SVG}line")].count("axis y-axis") == 1
    assert texts(root, "no-data") == []


def test_text_is_escaped_everywhere():
    hostile = '<script>alert("x")</script> & co'
    svg = bar_chart_svg(labels=[hostile], values=[1], title=hostile, unit=hostile)
    root = parse(svg)

    assert "<script>" not in svg
    assert root.find(f"{SVG}title").text == hostile
    assert root.get("aria-label") == hostile
    bar = next(element for element in root.iter(f"{SVG}rect") if element.get("class") == "bar")
    assert bar.get("data-label") == hostile
    assert bar.find(f"{SVG}title").text == f"{hostile}: 1 {hostile}"
    assert texts(root, "unit") == [hostile]
    line_svg = line_chart_svg(labels=[hostile], series=[Series(hostile, [1])], title=hostile)
    assert "<script>" not in line_svg
    assert parse(line_svg).find(f"{SVG}g[@class='series']").get("data-series") == hostile


def test_no_known_value_says_no_data_and_zero_is_a_value():
    empty = parse(bar_chart_svg(labels=["a", "b"], values=[None, None], title="Empty"))
    assert texts(empty, "no-data") == ["No data"]
    assert [element for element in empty.iter(f"{SVG}rect") if element.get("class") == "bar"] == []
    assert texts(empty, "tick y-tick") == ["0", "0.25", "0.5", "0.75", "1"]

    zero = parse(bar_chart_svg(labels=["a"], values=[0], title="Zero"))
    assert texts(zero, "no-data") == []
    bar = next(element for element in zero.iter(f"{SVG}rect") if element.get("class") == "bar")
    assert (bar.get("data-value"), bar.get("height")) == ("0", "0")


def test_negative_bars_hang_below_the_zero_line():
    root = parse(bar_chart_svg(labels=["in", "out"], values=[30, -10], title="Net", width=200, height=100))
    bars = {bar.get("data-label"): bar for bar in root.iter(f"{SVG}rect") if bar.get("class") == "bar"}
    zero = next(line for line in root.iter(f"{SVG}line") if line.get("class") == "axis x-axis").get("y1")
    assert texts(root, "tick y-tick") == ["-10", "0", "10", "20", "30"]
    assert bars["in"].get("y") < zero == bars["out"].get("y")  # up from zero, and down from it
    assert float(bars["out"].get("height")) == pytest.approx(float(bars["in"].get("height")) / 3, abs=0.1)


def test_x_labels_thin_out_to_fit_the_width_and_always_show_the_last():
    labels = [f"d{index}" for index in range(30)]
    wide = parse(bar_chart_svg(labels=labels, values=[1] * 30, title="Month", width=640))
    assert texts(wide, "tick x-tick") == [f"d{index}" for index in range(2, 30, 3)]  # at most 10
    narrow = parse(bar_chart_svg(labels=labels, values=[1] * 30, title="Month", width=290))
    assert texts(narrow, "tick x-tick") == ["d5", "d11", "d17", "d23", "d29"]  # 226 px: 5 labels 40 px apart


def test_a_line_chart_breaks_at_unknown_values_and_has_a_legend():
    svg = line_chart_svg(
        labels=["1", "2", "3", "4", "5"],
        title="History",
        unit="GB",
        width=300,
        height=120,
        series=[Series("gold", [1, 2, None, 4, 5]), Series("free", [None, 3, None, None, 1])],
    )
    root = parse(svg)
    gold, free = root.findall(f"{SVG}g[@class='series']")

    assert gold.get("data-series") == "gold"
    assert len(gold.findall(f"{SVG}polyline")) == 2  # 1-2 and 4-5, not across the gap
    assert [point.get("data-value") for point in gold.findall(f"{SVG}circle")] == ["1", "2", "4", "5"]
    assert free.findall(f"{SVG}polyline") == []  # no two neighbouring known values
    assert [point.find(f"{SVG}title").text for point in free.findall(f"{SVG}circle")] == [
        "free · 2: 3 GB",
        "free · 5: 1 GB",
    ]
    assert [
        item.find(f"{SVG}text").text for item in root.iter(f"{SVG}g") if item.get("class") == "legend-item"
    ] == ["gold", "free"]
    assert texts(root, "tick y-tick") == ["0", "2", "4", "6"]
    first, second = gold.findall(f"{SVG}polyline")
    # Slots of 47.2 from x=52; y from 86 (0) up to 28 (6).
    assert first.get("points") == "75.6,76.3 122.8,66.7"


def test_values_must_match_the_labels():
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        bar_chart_svg(labels=["a", "b", "c"], values=[1, 2], title="Short")
    with pytest.raises(ValueError, match="Series 'x' has 1 values for 2 labels"):
        line_chart_svg(labels=["a", "b"], series=[Series("x", [1])], title="Short")
