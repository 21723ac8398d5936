"""Inline SVG charts for the HTML report, generated in Python (no JavaScript, no network).

Each chart is one ``<svg>`` with a stable ``id`` and the class ``chart``, ``role="img"``, a
``<title>`` and a ``<desc>`` (referenced by ``aria-labelledby``), so screen readers and tests
find it. Every mark carries its own ``<title>`` (a tooltip with the exact figure).

Pixel geometry uses floats; the figures printed in labels come from
:mod:`pipeline.report.formatting` (exact decimals rounded at display time). Every text,
``<title>``, ``<desc>`` and attribute value is :func:`~pipeline.safe_text.html_text`
(visible, then HTML-escaped), so a role or model is only ever text.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from pipeline.report import formatting as f
from pipeline.report.figures import TREND_DAYS, DailyReport
from pipeline.safe_text import html_text

__all__ = [
    "CHART_IDS",
    "CHART_TITLES",
    "cost_by_role_chart",
    "savings_trend_chart",
    "model_share_chart",
    "escalations_chart",
    "all_charts",
    "model_colours",
]

CHART_IDS = ("chart-cost-by-role", "chart-savings-trend", "chart-model-share", "chart-escalations")
CHART_TITLES = dict(
    zip(
        CHART_IDS,
        (
            "Cost by role, stacked by model",
            f"Cost reduction over the last {TREND_DAYS} days against the target",
            "Share of calls by model against the default-model target",
            "Escalations by trigger: cost and false-positive rate",
        ),
        strict=True,
    )
)

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
_FONT = 12
_W = 960


def _n(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _fx(value: Decimal | None) -> float:
    """A figure as a pixel-geometry float (labels never use it); None draws nothing."""
    return 0.0 if value is None else float(value)


def model_colours(report: DailyReport) -> dict[str, str]:
    """A stable colour per ``provider/model``: the default model first (blue), then by calls."""
    names = [
        f"{m.provider}/{m.model}"
        for m in sorted(
            report.models, key=lambda m: (not m.is_default_model, -m.calls, m.provider, m.model)
        )
    ]
    for c in report.cost_by_role_model:
        name = f"{c.provider}/{c.model}"
        if name not in names:
            names.append(name)
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}


def _svg(chart_id: str, title: str, desc: str, height: float, body: Iterable[str]) -> str:
    return "\n".join(
        [
            f'<svg id="{chart_id}" class="chart" role="img" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {_W} {_n(height)}" width="{_W}" height="{_n(height)}" '
            f'aria-labelledby="{chart_id}-title {chart_id}-desc" font-size="{_FONT}">',
            f'<title id="{chart_id}-title">{html_text(title)}</title>',
            f'<desc id="{chart_id}-desc">{html_text(desc)}</desc>',
            *body,
            "</svg>",
        ]
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    cls: str = "label",
    weight: str | None = None,
) -> str:
    w = f' font-weight="{weight}"' if weight else ""
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" class="{cls}"{w}>'
        f"{html_text(text)}</text>"
    )


def _rect(
    x: float, y: float, w: float, h: float, fill: str, tip: str, cls: str = "bar", extra: str = ""
) -> str:
    return (
        f'<rect class="{cls}" x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.0))}" '
        f'height="{_n(h)}" fill="{fill}"{extra}><title>{html_text(tip)}</title></rect>'
    )


def _legend(items: list[tuple[str, str]], y: float, x0: float = 0.0) -> list[str]:
    out, x = [], x0
    for label, colour in items:
        out.append(
            f'<rect class="legend-swatch" x="{_n(x)}" y="{_n(y - 10)}" width="12" '
            f'height="12" fill="{colour}"/>'
        )
        out.append(_text(x + 16, y, label))
        x += 16 + 7 * len(label) + 18
    return out


def _no_data(chart_id: str, title: str, message: str) -> str:
    return _svg(chart_id, title, message, 60, [_text(_W / 2, 34, message, anchor="middle")])


def cost_by_role_chart(report: DailyReport) -> str:
    """Horizontal bars: each role's cost of the day, stacked by model."""
    chart_id = CHART_IDS[0]
    title = CHART_TITLES[chart_id]
    colours = model_colours(report)
    roles = [r.role for r in report.roles]
    priced = [c for c in report.cost_by_role_model if c.cost_usd]
    if not priced:
        return _no_data(chart_id, title, "no priced calls this day")
    totals = {r.role: r.cost_usd for r in report.roles}
    top = max((v for v in totals.values() if v is not None), default=Decimal(0)) or Decimal(1)
    left, right, row_h, bar_h, top_y = 140.0, 110.0, 30.0, 20.0, 40.0
    scale = (_W - left - right) / float(top)
    body = _legend(
        [
            (name, colours[name])
            for name in colours
            if any(f"{c.provider}/{c.model}" == name for c in priced)
        ],
        16,
    )
    for i, role in enumerate(roles):
        y = top_y + i * row_h
        body.append(_text(left - 8, y + bar_h - 5, role, anchor="end"))
        x = left
        for c in (c for c in priced if c.role == role):
            name = f"{c.provider}/{c.model}"
            w = _fx(c.cost_usd) * scale
            body.append(
                _rect(
                    x,
                    y,
                    w,
                    bar_h,
                    colours[name],
                    f"{role} on {name}: {f.usd(c.cost_usd)} ({c.calls:,} calls)",
                    cls="bar segment",
                    extra=f' data-model="{html_text(name)}"',
                )
            )
            x += w
        total = totals[role]
        body.append(
            _text(x + 6, y + bar_h - 5, "unpriced" if total is None else f.usd(total), cls="value")
        )
    height = top_y + len(roles) * row_h + 8
    desc = "; ".join(
        f"{r.role} {f.usd(r.cost_usd) if r.cost_usd is not None else 'unpriced'}"
        for r in report.roles
    )
    return _svg(chart_id, title, f"Cost of {report.date} by role: {desc}.", height, body)


def savings_trend_chart(report: DailyReport) -> str:
    """Daily cost reduction (savings / baseline) over the trend window against the target band."""
    chart_id = CHART_IDS[1]
    title = CHART_TITLES[chart_id]
    points = [(i, p) for i, p in enumerate(report.trend) if p.savings_pct is not None]
    if not points:
        return _no_data(chart_id, title, "no priced calls in the last days")
    kpi = report.kpi("cost_reduction_pct")
    lo = kpi.target_min if kpi else None
    hi = kpi.target_max if kpi else None
    values = [_fx(p.savings_pct) for _, p in points] + [float(v) for v in (lo, hi) if v]
    y_max = max(0.6, min(1.0, max(values) + 0.1))
    y_min = min(0.0, min(values) - 0.05)
    left, right, top, bottom, height = 56.0, 20.0, 30.0, 40.0, 280.0
    plot_w, plot_h = _W - left - right, height - top - bottom
    n = max(len(report.trend) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + plot_w * i / n, top + plot_h * (1 - (v - y_min) / (y_max - y_min))

    body: list[str] = []
    if lo is not None or hi is not None:
        band_lo = float(lo) if lo is not None else y_min
        band_hi = float(hi) if hi is not None else y_max
        y1, y0 = xy(0, band_hi)[1], xy(0, band_lo)[1]
        body.append(
            _rect(
                left,
                y1,
                plot_w,
                y0 - y1,
                "#009E73",
                f"target band {f.kpi_target(kpi) if kpi else ''}",
                cls="target-band",
                extra=' fill-opacity="0.15"',
            )
        )
        body.append(
            _text(
                left + plot_w - 4,
                y1 - 4,
                f"target {f.kpi_target(kpi)}" if kpi else "",
                anchor="end",
                cls="note",
            )
        )
    tick = 0.0 if y_min >= 0 else y_min
    step = 0.2 if y_max - y_min > 0.5 else 0.1
    while tick <= y_max + 1e-9:
        y = xy(0, tick)[1]
        body.append(
            f'<line class="grid" x1="{_n(left)}" x2="{_n(left + plot_w)}" '
            f'y1="{_n(y)}" y2="{_n(y)}"/>'
        )
        body.append(_text(left - 6, y + 4, f"{tick * 100:.0f}%", anchor="end", cls="axis"))
        tick = round(tick + step, 6)
    for i, p in enumerate(report.trend):
        if i % 7 == (len(report.trend) - 1) % 7:
            x = xy(i, 0)[0]
            body.append(
                _text(
                    x, height - bottom + 18, p.date.strftime("%b %d"), anchor="middle", cls="axis"
                )
            )
    # The line breaks on days without priced calls rather than inventing a value.
    segments: list[list[tuple[float, float]]] = []
    prev = None
    for i, p in points:
        if prev is None or i != prev + 1:
            segments.append([])
        segments[-1].append(xy(i, _fx(p.savings_pct)))
        prev = i
    for seg in (s for s in segments if len(s) > 1):  # a lone day is its dot only
        d = " ".join(("M" if k == 0 else "L") + f"{_n(x)},{_n(y)}" for k, (x, y) in enumerate(seg))
        body.append(
            f'<path class="trend-line" d="{d}" fill="none" stroke="#0072B2" stroke-width="2"/>'
        )
    last = len(report.trend) - 1
    for i, p in points:
        x, y = xy(i, _fx(p.savings_pct))
        is_day = i == last
        body.append(
            f'<circle class="point{" report-day" if is_day else ""}" cx="{_n(x)}" '
            f'cy="{_n(y)}" r="{4.5 if is_day else 2.5}" fill="'
            f'{"#D55E00" if is_day else "#0072B2"}"><title>{p.date}: savings '
            f"{f.pct(p.savings_pct)} ({f.usd(p.savings_usd)} of "
            f"{f.usd(p.baseline_cost_usd)})</title></circle>"
        )
    day = report.trend[-1]
    if day.savings_pct is not None:
        x, y = xy(last, _fx(day.savings_pct))
        body.append(
            _text(x - 8, y - 8, f.pct(day.savings_pct), anchor="end", cls="value", weight="bold")
        )
    desc = (
        f"Daily cost reduction against the all-Claude baseline from "
        f"{report.trend[0].date} to {report.trend[-1].date}; {report.date}: "
        f"{f.pct(day.savings_pct)}; target band {f.kpi_target(kpi) if kpi else f.NA}."
    )
    return _svg(chart_id, title, desc, height, body)


def model_share_chart(report: DailyReport) -> str:
    """One 100% bar: the day's share of calls by model, with the default-model target line."""
    chart_id = CHART_IDS[2]
    title = CHART_TITLES[chart_id]
    models = [m for m in report.models if m.share_of_calls]
    if not models:
        return _no_data(chart_id, title, "no calls this day")
    colours = model_colours(report)
    kpi = report.kpi("default_model_share")
    models.sort(key=lambda m: (not m.is_default_model, -m.calls))
    left, right, y, bar_h, height = 20.0, 20.0, 44.0, 36.0, 130.0
    plot_w = _W - left - right
    body = _legend(
        [
            (
                f"{m.provider}/{m.model} {f.pct(m.share_of_calls)}",
                colours[f"{m.provider}/{m.model}"],
            )
            for m in models
        ],
        16,
        left,
    )
    x = left
    for m in models:
        name = f"{m.provider}/{m.model}"
        w = plot_w * _fx(m.share_of_calls)
        body.append(
            _rect(
                x,
                y,
                w,
                bar_h,
                colours[name],
                f"{name}: {f.pct(m.share_of_calls)} of calls ({m.calls:,})",
                cls="bar segment",
                extra=f' data-model="{html_text(name)}"',
            )
        )
        x += w
    if kpi and kpi.target_min is not None:
        tx = left + plot_w * float(kpi.target_min)
        body.append(
            f'<line class="target-line" x1="{_n(tx)}" x2="{_n(tx)}" y1="{_n(y - 8)}" '
            f'y2="{_n(y + bar_h + 8)}" stroke="#000" stroke-width="2" '
            f'stroke-dasharray="5 3"/>'
        )
        body.append(
            _text(
                tx,
                y + bar_h + 24,
                f"default-model target {f.kpi_target(kpi)}",
                anchor="end",
                cls="note",
            )
        )
    for i, pos in enumerate((0.0, 0.5, 1.0)):
        body.append(
            _text(
                left + plot_w * pos,
                height - 4,
                f"{pos * 100:.0f}%",
                anchor=("start", "middle", "end")[i],
                cls="axis",
            )
        )
    default = next((m for m in models if m.is_default_model), None)
    desc = (
        f"Default model {report.default_model}: "
        f"{f.pct(default.share_of_calls) if default else '0.0%'} of calls on {report.date}; "
        f"target {f.kpi_target(kpi) if kpi else f.NA}."
    )
    return _svg(chart_id, title, desc, height, body)


def escalations_chart(report: DailyReport) -> str:
    """Horizontal bars: cost of the escalated calls per trigger, with calls and FP rate."""
    chart_id = CHART_IDS[3]
    title = CHART_TITLES[chart_id]
    rows = report.escalations
    if not rows:
        return _no_data(chart_id, title, "no escalated calls this day")
    top = max((e.cost_usd or Decimal(0) for e in rows), default=Decimal(0)) or Decimal(1)
    left, right, row_h, bar_h, top_y = 250.0, 230.0, 30.0, 20.0, 10.0
    scale = (_W - left - right) / float(top)
    body: list[str] = []
    for i, e in enumerate(rows):
        y = top_y + i * row_h
        body.append(_text(left - 8, y + bar_h - 5, f"{e.role} / {e.trigger}", anchor="end"))
        w = float(e.cost_usd or 0) * scale
        body.append(
            _rect(
                left,
                y,
                w,
                bar_h,
                "#E69F00",
                f"{e.trigger}: {f.usd(e.cost_usd)}, {e.escalated_calls:,} calls, "
                f"false-positive rate {f.pct(e.false_positive_rate)}",
                cls="bar",
            )
        )
        body.append(
            _text(
                left + w + 6,
                y + bar_h - 5,
                f"{f.usd(e.cost_usd)} · {e.escalated_calls:,} calls · FP "
                f"{f.pct(e.false_positive_rate)}",
                cls="value",
            )
        )
    height = top_y + len(rows) * row_h + 8
    desc = "; ".join(f"{e.trigger} {f.usd(e.cost_usd)}" for e in rows)
    return _svg(chart_id, title, f"Cost of escalated calls on {report.date}: {desc}.", height, body)


def all_charts(report: DailyReport) -> dict[str, str]:
    """Chart id -> SVG markup, in display order."""
    return dict(
        zip(
            CHART_IDS,
            (
                cost_by_role_chart(report),
                savings_trend_chart(report),
                model_share_chart(report),
                escalations_chart(report),
            ),
            strict=True,
        )
    )
