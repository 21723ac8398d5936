"""`modelmeter report`: display rules, the four formats, and the CLI's error lines.

The first half renders a hand-made :class:`DailyReport` (pure, no warehouse); the second half
builds a warehouse from the golden lake (tests/golden.py) and checks every format's figures
to the cent against the golden expectations.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal as D
from pathlib import Path

import pytest

from pipeline._exceptions import ConfigError
from pipeline.report import formatting as fmt
from pipeline.report import parse_report_date, render, write_atomic
from pipeline.report.charts import CHART_IDS
from pipeline.report.data import (
    DailyReport,
    DataWarnings,
    EscalationRow,
    Headline,
    KpiRow,
    ModelRow,
    Roi,
    RoleModelCost,
    RoleRow,
    TrendPoint,
    UnknownRole,
    UnpricedModel,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
DAY = dt.date(2026, 10, 6)


def _kpi(kpi, unit, lo, hi, day, day_status, mtd, mtd_status, *, max_inclusive=True):
    return KpiRow(kpi, kpi, unit, lo, hi, True, max_inclusive, day, day_status, mtd, mtd_status)


def sample_report(**changes) -> DailyReport:
    """A day with an unpriced model, an unknown role, rejected events and two triggers."""
    trend = tuple(
        TrendPoint(DAY - dt.timedelta(days=29 - i), 100, D("10"), D("17"), D("7"),
                   D("0.411764705882"), D("0.96"), 0) if i % 9 else
        TrendPoint(DAY - dt.timedelta(days=29 - i), 0, None, None, None, None, None, 0)
        for i in range(30))
    values = dict(
        date=DAY, policy_version="2026.11.1", default_model="zai/glm-4.5",
        baseline_model="anthropic/claude-opus-4-1",
        first_date=dt.date(2026, 9, 7), last_date=DAY,
        headline=Headline(
            calls=160, escalated_calls=6, unpriced_calls=2, cost_usd=D("12.345000000000"),
            baseline_cost_usd=D("21.000000000000"), savings_usd=D("8.655000000000"),
            savings_pct=D("0.412142857142"), month_start=dt.date(2026, 10, 1),
            mtd_cost_usd=D("70.125"), mtd_baseline_cost_usd=D("100.3"), mtd_savings_usd=D("30.175"),
            mtd_cost_reduction_pct=D("0.3012"), target_min=D("0.35"), target_max=D("0.45"),
            mtd_status="missed"),
        roles=(RoleRow("architect", True, 40, 6, 400000, 90000, D("9.1"), D("12"), D("2.9"),
                       D("0.2416")),
               RoleRow("implementer", True, 100, 0, 300000, 50000, D("3.245"), D("8.9"),
                       D("5.655"), D("0.63")),
               RoleRow("ghost", False, 20, 0, 1000, 100, None, None, None, None)),
        models=(ModelRow("zai", "glm-4.5", True, 154, 600000, 100000, D("3.245"), D("0.9625"),
                         D("0.2628")),
                ModelRow("anthropic", "claude-opus-4-1", False, 4, 100000, 40000, D("9.1"),
                         D("0.025"), D("0.7371")),
                ModelRow("acme", "mystery-1", False, 2, 1000, 100, None, D("0.0125"), None)),
        cost_by_role_model=(RoleModelCost("architect", "zai", "glm-4.5", 34, D("1.1")),
                            RoleModelCost("architect", "anthropic", "claude-opus-4-1", 6, D("8.0")),
                            RoleModelCost("implementer", "zai", "glm-4.5", 100, D("3.245")),
                            RoleModelCost("ghost", "acme", "mystery-1", 2, None)),
        kpis=(_kpi("cost_reduction_pct", "ratio", D("0.35"), D("0.45"), D("0.412345"), "met",
                   D("0.3012"), "missed"),
              _kpi("default_model_share", "ratio", D("0.95"), None, D("0.9625"), "met",
                   D("0.95"), "met"),
              _kpi("escalation_false_positive_rate", "ratio", None, D("0.05"), D("0.05"),
                   "missed", None, "no_data", max_inclusive=False),
              _kpi("satisfaction_avg", "score", D("4.0"), None, D("4.125"), "met", D("4.2"),
                   "met"),
              _kpi("review_consistency", "ratio", D("0.95"), None, None, "no_data", None,
                   "no_data"),
              _kpi("unpriced_calls", "count", None, D("0"), D("2"), "missed", D("2"), "missed")),
        escalations=(EscalationRow("architect", "three_plus_services", 4, 2, D("6.5"), D("6.5"),
                                   2, 1, D("0.5")),
                     EscalationRow("architect", "security_implications", 2, 1, D("1.5"),
                                   D("1.5"), 0, 0, None)),
        roi=Roi(dt.date(2026, 10, 1), D("0.3012"), D("45000"), D("30000"), 60, D("9036"),
                D("542160"), D("11.048"), 5),
        trend=trend,
        warnings=DataWarnings((UnpricedModel("acme", "mystery-1", 2),), (UnknownRole("ghost", 20),),
                              (), 3, dt.datetime(2026, 10, 7, 0, 5, tzinfo=dt.UTC),
                              dt.datetime(2026, 10, 7, 1, 0, tzinfo=dt.UTC)),
    )
    values.update(changes)
    return DailyReport(**values)


# --- display rules ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [
    (D("0.125"), "$0.12"),            # half-even: ties go to the even cent
    (D("0.135"), "$0.14"),
    (D("12.345000000000"), "$12.34"),
    (D("1234567.995"), "$1,234,568.00"),
    (D("-1.005"), "-$1.00"),
    (D("-0.004"), "$0.00"),           # never "-$0.00"
    (D("0"), "$0.00"),
])
def test_usd_rounds_half_even_to_the_cent_only_at_display(value, shown):
    assert fmt.usd(value) == shown


def test_usd_of_an_unpriced_amount_is_na_never_zero():
    assert fmt.usd(None) == "n/a"


@pytest.mark.parametrize(("ratio", "shown"), [
    (D("0.41234"), "41.2%"), (D("0.41250"), "41.2%"), (D("0.41350"), "41.4%"),
    (D("1"), "100.0%"), (D("0"), "0.0%"), (None, "n/a")])
def test_pct_has_one_decimal_half_even(ratio, shown):
    assert fmt.pct(ratio) == shown


def test_kpi_targets_read_as_people_say_them():
    targets = {k.kpi: fmt.kpi_target(k) for k in sample_report().kpis}
    assert targets == {
        "cost_reduction_pct": "35.0% to 45.0%",
        "default_model_share": ">= 95.0%",
        "escalation_false_positive_rate": "< 5.0%",
        "satisfaction_avg": ">= 4.00",
        "review_consistency": ">= 95.0%",
        "unpriced_calls": "0",
    }


def test_parse_report_date_accepts_iso_dates_and_defaults_to_yesterday_utc():
    assert parse_report_date("2026-10-06") == DAY
    assert parse_report_date(None, today=dt.date(2026, 3, 1)) == dt.date(2026, 2, 28)


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-02-30", "yesterday", "20261006", "2026-1-6", ""])
def test_parse_report_date_rejects_non_dates_with_one_line(bad):
    with pytest.raises(ConfigError) as err:
        parse_report_date(bad)
    assert str(err.value) == f"--date {bad}: not a date (YYYY-MM-DD)"
    assert err.value.exit_code == 2


# --- formats on a hand-made report ---------------------------------------------------------


def test_text_has_colour_only_when_asked_and_words_for_every_status():
    plain = render(sample_report(), "text")
    coloured = render(sample_report(), "text", color=True)
    assert not ANSI.search(plain)
    assert ANSI.search(coloured)
    assert ANSI.sub("", coloured).count("missed") == plain.count("missed")
    assert not any(line != line.rstrip() for line in plain.splitlines())
    kpi_lines = {line.split("  ")[0]: line for line in plain.splitlines()
                 if line.startswith(("Cost reduction vs", "Escalation false", "Review cons"))}
    assert re.search(r"41\.2%\s+met\s+30\.1%\s+missed$", kpi_lines["Cost reduction vs all-Claude"])
    assert re.search(r"< 5\.0%\s+5\.0%\s+missed\s+n/a\s+no data$",
                     kpi_lines["Escalation false-positive rate"])


def test_text_shows_money_to_the_cent_and_flags_unpriced_and_unknown():
    text = render(sample_report(), "text")
    assert re.search(r"^cost\s+\$12\.34\s+\$70\.12$", text, re.M)
    assert re.search(r"^savings\s+\$8\.66\s+\$30\.18$", text, re.M)   # 8.655 -> 8.66 (even)
    assert re.search(r"^ghost \(unknown role\)\s+20 .* n/a\s+n/a\s+n/a\s+n/a$", text, re.M)
    assert re.search(r"^acme/mystery-1\s+2\s+1,000\s+100\s+unpriced\s+1\.2%\s+n/a$", text, re.M)
    assert "2 unpriced call(s) on acme/mystery-1" in text
    assert "20 call(s) with unknown role 'ghost'" in text
    assert "3 rejected event(s)" in text
    assert "break-even: month 5 of 60" in text


def test_markdown_is_github_tables_with_figures():
    md = render(sample_report(), "markdown")
    assert md.startswith("# modelmeter daily report - 2026-10-06\n")
    assert "| cost | $12.34 | $70.12 |" in md
    assert "| architect | 40 | 6 | 400,000 | 90,000 | $9.10 | $12.00 | $2.90 | 24.2% |" in md
    assert ("| Cost reduction vs all-Claude | 35.0% to 45.0% | 41.2% | met | 30.1% | **missed** |"
            in md)
    for header in ("## Per role", "## Per model", "## KPI scorecard", "## Escalations by trigger",
                   "## ROI projection", "## Data warnings"):
        assert f"\n{header}\n" in md
    # every table row has as many cells as its header
    tables = re.findall(r"((?:^\|.*\|\n)+)", md, re.M)
    assert len(tables) == 5
    for table in tables:
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.strip().splitlines()}
        assert len(widths) == 1


def _walk(value):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def test_json_money_is_exact_decimal_strings_never_floats():
    doc = json.loads(render(sample_report(), "json"))
    assert next(iter(doc)) == "schema_version" and doc["schema_version"] == 1
    assert doc["headline"]["cost_usd"] == "12.345000000000"
    assert doc["headline"]["mtd_status"] == "missed"
    assert doc["roles"][2]["cost_usd"] is None          # unpriced: null, never "0"
    assert doc["models"][2]["share_of_cost"] is None
    assert doc["kpis"][2]["max_inclusive"] is False
    assert doc["roi"]["break_even_month"] == 5
    assert doc["warnings"]["lake_freshness"] == "2026-10-07T00:05:00Z"
    assert doc["warnings"]["count"] == 3
    assert len(doc["trend"]) == 30
    assert not any(isinstance(v, float) for v in _walk(doc))
    assert D(doc["headline"]["savings_usd"]) == D("8.655")


def test_html_is_one_self_contained_file_with_four_labelled_charts():
    page = render(sample_report(), "html")
    assert page.startswith("<!DOCTYPE html>")
    for forbidden in ("<script", "<link", "<img", "@import", "url(", "<iframe"):
        assert forbidden not in page
    assert not re.findall(r"(?:https?:)?//(?!www\.w3\.org/2000/svg\")", page)
    for chart_id in CHART_IDS:
        svg = re.search(rf'<svg id="{chart_id}" class="chart" role="img".*?</svg>', page, re.S)
        assert svg, chart_id
        body = svg.group(0)
        assert f'aria-labelledby="{chart_id}-title {chart_id}-desc"' in body
        assert re.search(rf'<title id="{chart_id}-title">[^<]+</title>', body)
        assert re.search(r'<rect class="[^"]*bar[^"]*"[^>]*width="[1-9]', body) or \
            re.search(r'<path class="trend-line" d="M[^"]+L', body)
    assert 'class="status status-missed">missed</span>' in page


def test_html_never_draws_an_unpriced_role_as_zero_dollars():
    page = render(sample_report(), "html")
    chart = re.search(r'<svg id="chart-cost-by-role".*?</svg>', page, re.S).group(0)
    assert ">unpriced</text>" in chart
    assert "$0.00" not in chart


def test_html_trend_line_breaks_on_days_without_priced_calls():
    page = render(sample_report(), "html")
    chart = re.search(r'<svg id="chart-savings-trend".*?</svg>', page, re.S).group(0)
    # days 0, 9, 18 and 27 of the window have no priced calls: the line has 4 pieces
    assert chart.count('class="trend-line"') == 4
    assert chart.count('class="point') == 26
    assert 'class="point report-day"' in chart


def test_charts_say_so_when_there_is_nothing_to_draw():
    page = render(sample_report(escalations=()), "html")
    chart = re.search(r'<svg id="chart-escalations".*?</svg>', page, re.S).group(0)
    assert "no escalated calls this day" in chart
    assert "no escalated calls this day." in render(sample_report(escalations=()), "html")


def test_unknown_format_is_a_config_error():
    with pytest.raises(ConfigError, match="--format pdf"):
        render(sample_report(), "pdf")


def test_write_atomic_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "report.html"
    target.write_text("old")
    write_atomic(target, "new content")
    assert target.read_text() == "new content"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_atomic_into_a_missing_directory_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        write_atomic(tmp_path / "nope" / "r.md", "x")
