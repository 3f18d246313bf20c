"""The decode-rate history of a cell as an inline SVG line chart (pure: returns markup).

One polyline per concurrency level, one circle per promotion point (a <title> on each), and a
distinct triangle with its own <title> where a promotion is a regression. Colours come with dash
patterns and a legend, so the series are told apart without colour.
"""

from __future__ import annotations

import math
from html import escape
from typing import Final

from builder.board.model import BoardCell, HistoryPoint, SweepLevel

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


def history_svg(cell: BoardCell) -> str:
    """The chart, or "" when the cell has no promotion with a number."""
    points = cell.history
    levels = cell.concurrencies
    values = [lv.decode_tps for p in points for lv in p.levels]
    if not points or not values:
        return ""
    top = nice_max(max(values) * 1.05)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return round(_LEFT + (plot_w / 2 if len(points) == 1 else plot_w * i / (len(points) - 1)), 1)

    def y(v: float) -> float:
        return round(_TOP + plot_h * (1 - v / top), 1)

    title_id = f"chart-title-{cell.id}"
    out = [(f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-labelledby="{escape(title_id)}" '
            f'data-promotions="{len(points)}">'),
           (f'<title id="{escape(title_id)}">Decode tok/s of {escape(cell.id)} over {len(points)} promotion(s), '
            f'one line per concurrency level</title>')]
    for k in range(5):  # axis and grid
        v = top * k / 4
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(v)}" y2="{y(v)}" '
                   f'stroke="#d0d7de" stroke-width="1"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{y(v) + 4}" text-anchor="end" font-size="11" '
                   f'fill="#57606a">{_fmt(v)}</text>')
    out.append(f'<text x="14" y="{_TOP + plot_h / 2}" font-size="11" fill="#57606a" text-anchor="middle" '
               f'transform="rotate(-90 14 {_TOP + plot_h / 2})">decode tok/s</text>')
    step = max(1, math.ceil(len(points) / 6))
    for i, point in enumerate(points):
        if i % step == 0 or i == len(points) - 1:
            out.append(f'<text x="{x(i)}" y="{HEIGHT - _BOTTOM + 16}" text-anchor="middle" font-size="11" '
                       f'fill="#57606a">{escape(point.promoted_at[:10])}</text>')
    out.append(f'<text x="{_LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11" '
               f'fill="#57606a">promotion</text>')
    for n, c in enumerate(levels):
        colour, dash = style_for(n)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        coords = [(x(i), y(r)) for i, p in enumerate(points) if (r := p.rate(c)) is not None]
        out.append(f'<g class="series" data-concurrency="{c}">')
        out.append(f'<polyline data-concurrency="{c}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr} '
                   f'points="{" ".join(f"{px},{py}" for px, py in coords)}"/>')
        for i, point in enumerate(points):
            level = next((lv for lv in point.levels if lv.concurrency == c), None)
            if level is None:
                continue
            fill = "#ffffff" if level.measure == "legacy" else colour
            out.append(f'<circle class="point {level.measure}" data-concurrency="{c}" data-promotion="{i}" '
                       f'data-digest="{escape(point.digest)}" cx="{x(i)}" cy="{y(level.decode_tps)}" r="4" '
                       f'fill="{fill}" stroke="{colour}" stroke-width="2">'
                       f'<title>{escape(_point_title(cell, point, level))}</title></circle>')
        out.append("</g>")
        ly = _TOP + 14 + 18 * n  # legend entry
        out.append(f'<line x1="{WIDTH - _RIGHT + 10}" x2="{WIDTH - _RIGHT + 36}" y1="{ly}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"{dash_attr}/>'
                   f'<text x="{WIDTH - _RIGHT + 40}" y="{ly + 4}" font-size="11" fill="#24292f">c={c}</text>')
    for i, point in enumerate(points):
        for reg in point.regressions:
            px, py = x(i), y(reg.decode_tps)
            out.append(f'<path class="regression" data-concurrency="{reg.concurrency}" data-promotion="{i}" '
                       f'd="M{px - 7},{py + 7} h14 l-7,12 z" fill="#cf222e" stroke="#ffffff" stroke-width="1">'
                       f'<title>Regression at {escape(point.promoted_at[:10])}, c={reg.concurrency}: '
                       f'{reg.decode_tps:.1f} decode tok/s, {reg.change * 100:+.1f}% against the previous '
                       f'promotion ({reg.previous_tps:.1f} tok/s)</title></path>')
    out.append("</svg>")
    return "\n".join(out)
