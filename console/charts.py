"""Server-side SVG charts: bars (one series) and lines (a few series) with axes and labels.

Pure functions returning inline SVG. Every piece of text (titles, labels, units, series names,
tooltips) is escaped here, so the result is safe to put in a page as is (it is returned as a
``SafeString``). Geometry is computed in floats; tooltips and ``data-value`` attributes keep the
exact value as given (a ``Decimal`` stays exact).

The drawing uses presentation attributes (``fill``, ``stroke``) so a chart looks right on its own
(an exported SVG, a test); ``console/static/console/console.css`` restyles the classes for the
admin's light and dark themes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Number = int | float | Decimal

# Room around the plot: the y-axis labels on the left, the x-axis labels below, the title above.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 52, 12, 28, 34
# Line colours, in series order (from the admin's palette; readable on light and dark backgrounds).
PALETTE = ("#417690", "#e1a23a", "#5a9e4b", "#b3478a", "#7a6fd0", "#c0504d")
TICK_COUNT = 5
# At most this many x labels, and at least this many pixels apart (a "12-31" label needs ~30):
# beyond that, every n-th label is shown.
MAX_X_LABELS = 10
MIN_X_LABEL_SPACING = 40


@dataclass(frozen=True)
class Series:
    """One line of a line chart: a name for the legend and one value (or ``None``) per label."""

    name: str
    values: Sequence[Number | None]


def nice_ticks(low: float, high: float, count: int = TICK_COUNT) -> list[float]:
    """Round axis ticks covering ``low``..``high`` (about ``count`` of them), always including 0.

    Steps are 1, 2, 2.5 or 5 times a power of ten: ``nice_ticks(0, 87)`` is ``[0, 25, 50, 75, 100]``.
    """
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1.0
    rough = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= rough * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    digits = max(0, -math.floor(math.log10(step)) + 1)
    return [round(index * step, digits) + 0.0 for index in range(first, last + 1)]


def format_compact(value: float) -> str:
    """A short axis label: ``950``, ``1.5k``, ``2M``, ``0.25``, ``-3k``."""
    size = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    if size == 0:
        return "0"
    return f"{value:.3g}" if size >= 0.001 else f"{value:.1e}"


def format_exact(value: Number) -> str:
    """The value as given, without exponent or trailing zeros: ``1000``, ``0.5``, ``12.25``."""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value != 0 else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label_step(count: int, plot_width: float) -> int:
    fitting = max(1, min(MAX_X_LABELS, int(plot_width // MIN_X_LABEL_SPACING)))
    return max(1, math.ceil(count / fitting))


def _labelled(index: int, count: int, step: int) -> bool:
    """Every ``step``-th label, counted back from the last one (the latest day is always labelled)."""
    return (count - 1 - index) % step == 0


class _Frame:
    """The plot area and the value -> y mapping shared by both chart kinds."""

    def __init__(self, width: int, height: int, values: list[float]):
        self.width, self.height = width, height
        self.left, self.top = MARGIN_LEFT, MARGIN_TOP
        self.right, self.bottom = width - MARGIN_RIGHT, height - MARGIN_BOTTOM
        self.ticks = nice_ticks(min(values, default=0.0), max(values, default=0.0))
        self.low, self.high = self.ticks[0], self.ticks[-1]

    def y(self, value: float) -> float:
        return self.bottom - (value - self.low) / (self.high - self.low) * (self.bottom - self.top)

    def open(self, *, title: str, css_class: str) -> list[str]:
        title_text = escape(title)
        return [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" width="{self.width}" '
            f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" role="img" '
            f'aria-label="{title_text}">',
            f"<title>{title_text}</title>",
            f'<text class="chart-title" x="{self.left}" y="16" font-family="sans-serif" font-size="13" '
            f'font-weight="bold" fill="#333">{title_text}</text>',
        ]

    def axes(self, *, unit: str) -> list[str]:
        parts = []
        for tick in self.ticks:
            y = _f(self.y(tick))
            parts.append(
                f'<line class="grid" x1="{self.left}" y1="{y}" x2="{self.right}" y2="{y}" stroke="#e8e8e8"/>'
                f'<text class="tick y-tick" x="{self.left - 6}" y="{y}" text-anchor="end" dominant-baseline="middle" '
                f'font-family="sans-serif" font-size="10" fill="#666">{escape(format_compact(tick))}</text>'
            )
        zero = _f(self.y(0.0))
        parts.append(
            f'<line class="axis y-axis" x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{self.bottom}" '
            'stroke="#999"/>'
            f'<line class="axis x-axis" x1="{self.left}" y1="{zero}" x2="{self.right}" y2="{zero}" stroke="#999"/>'
        )
        if unit:
            parts.append(
                f'<text class="unit" x="{self.right}" y="16" text-anchor="end" font-family="sans-serif" '
                f'font-size="11" fill="#666">{escape(unit)}</text>'
            )
        return parts

    def x_label(self, x: float, text: str) -> str:
        return (
            f'<text class="tick x-tick" x="{_f(x)}" y="{self.bottom + 16}" text-anchor="middle" '
            f'font-family="sans-serif" font-size="10" fill="#666">{escape(text)}</text>'
        )

    def no_data(self) -> str:
        return (
            f'<text class="no-data" x="{_f((self.left + self.right) / 2)}" y="{_f((self.top + self.bottom) / 2)}" '
            'text-anchor="middle" font-family="sans-serif" font-size="12" fill="#666">No data</text>'
        )


def _f(value: float) -> str:
    """Coordinates with at most one decimal: short output, and stable for tests."""
    rounded = round(float(value), 1)
    return str(int(rounded)) if rounded.is_integer() else str(rounded)


def _check_lengths(labels: Sequence[str], values: Sequence, what: str) -> None:
    if len(values) != len(labels):
        raise ValueError(f"{what} has {len(values)} values for {len(labels)} labels.")


def bar_chart_svg(
    *,
    labels: Sequence[str],
    values: Sequence[Number | None],
    title: str,
    unit: str = "",
    width: int = 640,
    height: int = 200,
    css_class: str = "chart bar-chart",
) -> SafeString:
    """One bar per label. ``None`` draws no bar (nothing known), unlike 0 (known to be zero).

    Each bar carries ``data-label`` and ``data-value`` (the exact value) and a tooltip
    ``<label>: <value> <unit>``. Negative values hang below the zero line.
    """
    _check_lengths(labels, values, "values")
    known = [float(value) for value in values if value is not None]
    frame = _Frame(width, height, known)
    parts = frame.open(title=title, css_class=css_class) + frame.axes(unit=unit)
    slot = (frame.right - frame.left) / max(len(labels), 1)
    bar_width = max(1.0, slot * 0.7)
    zero = frame.y(0.0)
    step = _label_step(len(labels), frame.right - frame.left)
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = frame.left + index * slot + (slot - bar_width) / 2
        if value is not None:
            y = frame.y(float(value))
            top, bar_height = min(y, zero), abs(zero - y)
            tooltip = f"{label}: {format_exact(value)}" + (f" {unit}" if unit else "")
            parts.append(
                f'<rect class="bar" data-label="{escape(label)}" data-value="{escape(format_exact(value))}" '
                f'x="{_f(x)}" y="{_f(top)}" width="{_f(bar_width)}" height="{_f(bar_height)}" fill="#79aec8">'
                f"<title>{escape(tooltip)}</title></rect>"
            )
        if _labelled(index, len(labels), step):
            parts.append(frame.x_label(x + bar_width / 2, label))
    if not known:
        parts.append(frame.no_data())
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()


def line_chart_svg(
    *,
    labels: Sequence[str],
    series: Sequence[Series],
    title: str,
    unit: str = "",
    width: int = 640,
    height: int = 200,
    css_class: str = "chart line-chart",
) -> SafeString:
    """One line per series over the labels, with a point at every known value and a legend.

    A ``None`` breaks the line (nothing known there) instead of drawing it down to zero.
    """
    for line in series:
        _check_lengths(labels, line.values, f"Series {line.name!r}")
    known = [float(value) for line in series for value in line.values if value is not None]
    frame = _Frame(width, height, known)
    parts = frame.open(title=title, css_class=css_class) + frame.axes(unit=unit)
    slot = (frame.right - frame.left) / max(len(labels), 1)

    def x_of(index: int) -> float:
        return frame.left + index * slot + slot / 2

    for number, line in enumerate(series):
        colour = PALETTE[number % len(PALETTE)]
        name = escape(line.name)
        parts.append(f'<g class="series" data-series="{name}">')
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        for index, value in enumerate(line.values):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{_f(x_of(index))},{_f(frame.y(float(value)))}")
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline class="line" points="{" ".join(points)}" fill="none" stroke="{colour}" '
                    'stroke-width="2"/>'
                )
        for index, value in enumerate(line.values):
            if value is None:
                continue
            tooltip = f"{line.name} · {labels[index]}: {format_exact(value)}" + (f" {unit}" if unit else "")
            parts.append(
                f'<circle class="point" data-label="{escape(labels[index])}" '
                f'data-value="{escape(format_exact(value))}" cx="{_f(x_of(index))}" '
                f'cy="{_f(frame.y(float(value)))}" r="2.5" fill="{colour}"><title>{escape(tooltip)}</title></circle>'
            )
        parts.append("</g>")
    step = _label_step(len(labels), frame.right - frame.left)
    for index, label in enumerate(labels):
        if _labelled(index, len(labels), step):
            parts.append(frame.x_label(x_of(index), label))
    legend_x = frame.left
    for number, line in enumerate(series):
        colour = PALETTE[number % len(PALETTE)]
        parts.append(
            f'<g class="legend-item"><rect x="{_f(legend_x)}" y="{height - 10}" width="10" height="4" '
            f'fill="{colour}"/><text x="{_f(legend_x + 14)}" y="{height - 6}" font-family="sans-serif" '
            f'font-size="10" fill="#333">{escape(line.name)}</text></g>'
        )
        legend_x += 24 + 6.5 * len(line.name)
    if not known:
        parts.append(frame.no_data())
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()
