"""The decode-rate history of a cell as an inline SVG line chart: its geometry (pure), written by a template.

One polyline per concurrency level, one circle per promotion point (a <title> on each), and a
distinct triangle with its own <title> where a promotion is a regression. Colours come with dash
patterns and a legend, so the series are told apart without colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2

from builder.board.model import BoardCell, HistoryPoint, SweepLevel

TEMPLATES: Final = Path(__file__).parent / "templates"
WIDTH: Final = 640
HEIGHT: Final = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 90, 16, 44
_STYLES: Final = (("#0969da", ""), ("#bf3989", "6 3"), ("#1a7f37", "2 3"), ("#9a6700", "8 3 2 3"),
                  ("#6e40c9", "4 2"), ("#cf222e", "1 2"))


def style_for(index: int) -> tuple[str, str]:
    """(stroke colour, dash pattern) of the index-th concurrency level."""
    return _STYLES[index % len(_STYLES)]


def nice_max(value: float) -> float:
    """A round axis maximum at or above value (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value))


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _point_title(cell: BoardCell, point: HistoryPoint, level: SweepLevel) -> str:
    text = (f"{point.promoted_at[:10]} · c={level.concurrency} · {level.decode_tps:.1f} decode tok/s · "
            f"{point.digest[:19]}")
    if level.measure == "legacy":
        text += " · older single-stream measure (tokens / request wall time), not compared with sweeps"
    return text


@dataclass(frozen=True, kw_only=True)
class ChartPoint:
    concurrency: int
    promotion: int
    measure: str
    digest: str
    cx: float
    cy: float
    fill: str
    title: str


@dataclass(frozen=True, kw_only=True)
class ChartSeries:
    concurrency: int
    colour: str
    dash: str
    points: str  # the polyline's "x,y x,y ..."
    circles: tuple[ChartPoint, ...]
    legend_y: float


@dataclass(frozen=True, kw_only=True)
class ChartRegression:
    concurrency: int
    promotion: int
    path: str
    title: str


@dataclass(frozen=True, kw_only=True)
class Chart:
    """The chart's geometry and texts; templates/chart.svg.j2 writes it, escaping every text (never by hand)."""

    width: int
    height: int
    left: int
    right: int
    title_id: str
    title: str
    promotions: int
    grid: tuple[tuple[float, str], ...]  # (y, axis label)
    axis_y: float  # where the vertical axis title sits
    x_labels: tuple[tuple[float, str], ...]
    x_label_y: float
    x_title: tuple[float, float]
    series: tuple[ChartSeries, ...]
    regressions: tuple[ChartRegression, ...]


def chart(cell: BoardCell) -> Chart | None:
    """The chart of a cell's promotions, or None when no promotion has a number (pure)."""
    points = cell.history
    levels = cell.concurrencies
    values = [lv.decode_tps for p in points for lv in p.levels]
    if not points or not values:
        return None
    top = nice_max(max(values) * 1.05)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return round(_LEFT + (plot_w / 2 if len(points) == 1 else plot_w * i / (len(points) - 1)), 1)

    def y(v: float) -> float:
        return round(_TOP + plot_h * (1 - v / top), 1)

    step = max(1, math.ceil(len(points) / 6))
    series = []
    for n, c in enumerate(levels):
        colour, dash = style_for(n)
        coords = [(x(i), y(r)) for i, p in enumerate(points) if (r := p.rate(c)) is not None]
        circles = tuple(
            ChartPoint(concurrency=c, promotion=i, measure=level.measure, digest=point.digest, cx=x(i),
                       cy=y(level.decode_tps), fill="#ffffff" if level.measure == "legacy" else colour,
                       title=_point_title(cell, point, level))
            for i, point in enumerate(points)
            if (level := next((lv for lv in point.levels if lv.concurrency == c), None)) is not None)
        series.append(ChartSeries(concurrency=c, colour=colour, dash=dash,
                                  points=" ".join(f"{px},{py}" for px, py in coords), circles=circles,
                                  legend_y=_TOP + 14 + 18 * n))
    regressions = tuple(
        ChartRegression(concurrency=reg.concurrency, promotion=i,
                        path=f"M{x(i) - 7},{y(reg.decode_tps) + 7} h14 l-7,12 z",
                        title=(f"Regression at {point.promoted_at[:10]}, c={reg.concurrency}: {reg.decode_tps:.1f} "
                               f"decode tok/s, {reg.change * 100:+.1f}% against the previous promotion "
                               f"({reg.previous_tps:.1f} tok/s)"))
        for i, point in enumerate(points) for reg in point.regressions)
    return Chart(width=WIDTH, height=HEIGHT, left=_LEFT, right=_RIGHT, title_id=f"chart-title-{cell.id}",
                 title=f"Decode tok/s of {cell.id} over {len(points)} promotion(s), one line per concurrency level",
                 promotions=len(points), grid=tuple((y(top * k / 4), _fmt(top * k / 4)) for k in range(5)),
                 axis_y=_TOP + plot_h / 2,
                 x_labels=tuple((x(i), p.promoted_at[:10]) for i, p in enumerate(points)
                                if i % step == 0 or i == len(points) - 1),
                 x_label_y=HEIGHT - _BOTTOM + 16,
                 x_title=(_LEFT + plot_w / 2, HEIGHT - 6), series=tuple(series), regressions=regressions)


def history_svg(cell: BoardCell) -> str:
    """The chart as SVG markup (the template escapes every text), or "" when there is nothing to draw."""
    drawn = chart(cell)
    if drawn is None:
        return ""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("chart.svg.j2").render(chart=drawn).strip()
