"""The report as ONE self-contained HTML file: inline CSS, inline SVG charts, no scripts,
no fonts, images or anything else fetched from the network. Readable in print (black on
white, sections kept on one page where they fit) and with a screen reader (charts carry a
title and a description; every figure is also in a table).

Every text and attribute value is :func:`~pipeline.safe_text.html_text` (visible, then
HTML-escaped, quotes included): a role ``<img src=x onerror=...>`` is text on the page, and
no control, bidi or zero-width character from the data is in the file.
"""

from __future__ import annotations

from pipeline.report import formatting as f
from pipeline.report.charts import CHART_TITLES, all_charts
from pipeline.report.figures import DailyReport
from pipeline.safe_text import html_text

__all__ = ["render_html"]

_CSS = """
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg: #ffffff; --card: #f6f8fa;
        --met: #1a7f37; --missed: #cf222e; --above: #8250df; --nodata: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1040px; padding: 24px; color: var(--fg); background: var(--bg);
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.15rem; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
.subtitle, .note-text { color: var(--muted); margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 12px; }
.card .k { color: var(--muted); font-size: .85rem; }
.card .v { font-size: 1.45rem; font-weight: 650; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px;
        font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; }
th { background: var(--card); font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
.status { font-weight: 650; white-space: nowrap; }
.status-met { color: var(--met); }
.status-met::before { content: "\\2714\\FE0E  "; }
.status-missed { color: var(--missed); }
.status-missed::before { content: "\\2716\\FE0E  "; }
.status-below_range { color: var(--missed); }
.status-below_range::before { content: "\\25BC\\FE0E  "; }
.status-above_range { color: var(--above); }
.status-above_range::before { content: "\\25B2\\FE0E  "; }
.status-no_data { color: var(--nodata); }
.status-ok { color: var(--met); }
.status-projected_over { color: var(--nodata); }
.status-projected_over::before { content: "\\25B2\\FE0E  "; }
.status-over { color: var(--missed); }
.status-over::before { content: "\\2716\\FE0E  "; }
figure { margin: 10px 0 18px; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: 4px; }
h3.chart-title { font-size: .95rem; font-weight: 600; margin: 0 0 6px; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg .label, svg .value, svg .axis, svg .note { fill: var(--fg); }
svg .axis, svg .note { fill: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
ul.warnings li { margin: 2px 0; }
.warning { color: var(--missed); font-weight: 600; }
footer { color: var(--muted); font-size: .85rem; margin-top: 32px; }
@media (max-width: 960px) { th, td { padding: 4px 5px; } body { padding: 12px; } }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  section, figure, table { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .card { border-color: #999; }
}
"""


def _status(status: str) -> str:
    return (
        f'<span class="status status-{html_text(status)}">{html_text(f.status_word(status))}</span>'
    )


def _table(grid: f.Grid, table_id: str) -> str:
    if not grid.rows:
        return f'<p class="note-text" id="{table_id}">{html_text(grid.empty_text)}.</p>'
    head = "".join(
        f'<th scope="col"{" class=num" if i in grid.numeric_columns else ""}>{html_text(h)}</th>'
        for i, h in enumerate(grid.header)
    )
    body = []
    for row in grid.rows:
        cells = []
        for i, c in enumerate(row):
            if i in grid.status_columns:
                cells.append(f"<td>{_status(c)}</td>")
            elif i == 0:
                cells.append(f'<th scope="row">{html_text(c)}</th>')
            else:
                cls = ' class="num"' if i in grid.numeric_columns else ""
                cells.append(f"<td{cls}>{html_text(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _figure(charts: dict[str, str], chart_id: str, caption: str) -> str:
    # The heading is aria-hidden: the svg's own <title> already names it for screen readers.
    return (
        f'<figure><h3 class="chart-title" aria-hidden="true">'
        f"{html_text(CHART_TITLES[chart_id])}</h3>{charts[chart_id]}"
        f"<figcaption>{html_text(caption)}</figcaption></figure>"
    )


def _policy_versions_section(report: DailyReport) -> str:
    """The month's policy versions side by side; empty when it has one version."""
    if report.policy_versions is None:
        return ""
    from pipeline.report import policy_versions as pv

    versions = report.policy_versions
    return (
        '<section id="policy-versions" aria-labelledby="h-policy-versions">'
        '<h2 id="h-policy-versions">Policy versions</h2>'
        + _table(pv.version_grid(versions), "table-policy-versions")
        + _table(pv.comparison_grid(versions), "table-policy-version-differences")
        + "<ul>"
        + "".join(f"<li>{html_text(line)}</li>" for line in pv.section_lines(versions))
        + "</ul></section>"
    )


def render_html(report: DailyReport) -> str:
    h = report.headline
    charts = all_charts(report)
    cards = [
        ("Cost", f.usd(h.cost_usd)),
        ("All-Claude baseline", f.usd(h.baseline_cost_usd)),
        ("Savings", f"{f.usd(h.savings_usd)} ({f.pct(h.savings_pct)})"),
        ("Month-to-date cost reduction", f.pct(h.mtd_cost_reduction_pct)),
    ]
    card_html = "".join(
        f'<div class="card"><div class="k">{html_text(k)}</div>'
        f'<div class="v">{html_text(v)}</div></div>'
        for k, v in cards
    )
    warnings = f.warning_lines(report)
    warning_html = (
        "".join(f'<li><span class="warning">warning:</span> {html_text(w)}</li>' for w in warnings)
        or f"<li>{html_text(f.NO_WARNINGS)}</li>"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light">',
        f"<title>{html_text(f.title(report))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{html_text(f.title(report))}</h1>"
        f'<p class="subtitle">{html_text(f.subtitle(report))}</p></header><main>',
        '<section id="headline" aria-labelledby="h-headline"><h2 id="h-headline">Headline</h2>',
        f'<div class="cards">{card_html}</div>',
        # escape the sentence around the status's slot, then put the status markup in it
        "<p>"
        + _status(h.mtd_status).join(
            html_text(part) for part in f.headline_sentence(report, lambda _: "\x00").split("\x00")
        )
        + "</p>",
        _table(f.headline_grid(report), "table-headline"),
        "</section>",
        '<section id="roles" aria-labelledby="h-roles"><h2 id="h-roles">Per role</h2>',
        _figure(
            charts,
            "chart-cost-by-role",
            "Cost of the day by role, each bar split by model "
            "(unpriced calls are not drawn; see data warnings).",
        ),
        _table(f.role_grid(report), "table-roles"),
        "</section>",
        '<section id="models" aria-labelledby="h-models"><h2 id="h-models">Per model</h2>',
        _figure(
            charts,
            "chart-model-share",
            "Share of the day's calls by model; the dashed "
            "line marks the default-model share target.",
        ),
        _table(f.model_grid(report), "table-models"),
        "</section>",
        '<section id="kpis" aria-labelledby="h-kpis"><h2 id="h-kpis">KPI scorecard</h2>',
        _table(f.kpi_grid(report), "table-kpis"),
        "<h3>Budgets</h3>",
        _table(f.budget_grid(report), "table-budgets"),
        _figure(
            charts,
            "chart-savings-trend",
            "Daily cost reduction against the all-Claude "
            "baseline; the shaded band is the target; the larger dot is the report day.",
        ),
        "</section>",
        '<section id="escalations" aria-labelledby="h-escalations">'
        '<h2 id="h-escalations">Escalations by trigger</h2>',
        _figure(
            charts,
            "chart-escalations",
            "Cost of the escalated (premium-model) calls per "
            "trigger, with the calls and the false-positive rate of reviewed tasks.",
        ),
        _table(f.escalation_grid(report), "table-escalations"),
        "</section>",
        _policy_versions_section(report),
        '<section id="roi" aria-labelledby="h-roi"><h2 id="h-roi">ROI projection</h2><ul>',
        "".join(f"<li>{html_text(line)}</li>" for line in f.roi_lines(report)),
        "</ul></section>",
        '<section id="warnings" aria-labelledby="h-warnings">'
        '<h2 id="h-warnings">Data warnings</h2><ul class="warnings">',
        warning_html,
        "".join(f"<li>note: {html_text(line)}</li>" for line in f.info_lines(report)),
        f"<li>freshness: {html_text(f.freshness_text(report))}</li></ul></section>",
        "</main>",
        f"<footer>modelmeter report schema {report.schema_version}; money rounded half-even to "
        "the cent from exact decimals.</footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
