"""A line chart as inline SVG, drawn on the server: no script, no library, no CDN, and it
fits the Content-Security-Policy (presentation attributes only, no style)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 28
# Colours that keep 3:1 against white and apart from each other for most colour vision.
COLOURS = ("#0b4f8a", "#1d6b3a", "#a4161a")


@dataclass(frozen=True)
class Line:
    name: str
    label: str
    colour: str
    points: str  # the polyline's "x,y x,y ..."
    total: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[Line]
    y_ticks: list[tuple[float, int]]  # (y, value)
    x_ticks: list[tuple[float, str]]  # (x, label)
    plot: tuple[int, int, int, int]  # left, top, right, bottom


def _nice_top(value: int) -> int:
    """The smallest of 1, 2, 5 × 10^n (at least 4) not below `value`."""
    top, step = 4, 1
    while top < value:
        for factor in (2, 5, 10):
            if step * factor >= value:
                return step * factor
        step *= 10
        top = step
    return top


def line_chart(dates: list[date], series: dict[str, list[int]], labels: dict[str, str]) -> Chart:
    """The chart of `series` (name -> one value per date), each line labelled by `labels`."""
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    top_value = _nice_top(max((max(values, default=0) for values in series.values()), default=0))
    span = max(len(dates) - 1, 1)

    def x(index: int) -> float:
        return round(LEFT + (right - LEFT) * index / span, 1)

    def y(value: float) -> float:
        return round(bottom - (bottom - TOP) * value / top_value, 1)

    lines = [
        Line(name, labels.get(name, name), COLOURS[n % len(COLOURS)],
             " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values)), sum(values))
        for n, (name, values) in enumerate(series.items())
    ]
    y_ticks = [(y(top_value * k / 4), round(top_value * k / 4)) for k in range(5)]
    x_ticks = [(x(i), dates[i].strftime("%d.%m.")) for i in range(0, len(dates), max(1, len(dates) // 6))]
    return Chart(WIDTH, HEIGHT, lines, y_ticks, x_ticks, (LEFT, TOP, right, bottom))
