"""`modelmeter report`: display rules, the four formats, and the CLI's error lines.

The first half renders a hand-made :class:`DailyReport` (pure, no warehouse); the second half
builds a warehouse from the golden lake (tests/fixtures/golden.py) and checks every format's figures
to the cent against the golden expectations.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal as D
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline._exceptions import ConfigError
from pipeline.report import formatting as fmt
from pipeline.report import parse_report_date, render, write_atomic
from pipeline.report.charts import CHART_IDS
from pipeline.report.figures import DailyReport
from tests.fixtures.reports import DAY, hostile_report, sample_report

ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- display rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (D("0.125"), "$0.12"),  # half-even: ties go to the even cent
        (D("0.135"), "$0.14"),
        (D("12.345000000000"), "$12.34"),
        (D("1234567.995"), "$1,234,568.00"),
        (D("-1.005"), "-$1.00"),
        (D("-0.004"), "$0.00"),  # never "-$0.00"
        (D("0"), "$0.00"),
    ],
)
def test_usd_rounds_half_even_to_the_cent_only_at_display(value, shown):
    assert fmt.usd(value) == shown


def test_usd_of_an_unpriced_amount_is_na_never_zero():
    assert fmt.usd(None) == "n/a"


@pytest.mark.parametrize(
    ("ratio", "shown"),
    [
        (D("0.41234"), "41.2%"),
        (D("0.41250"), "41.2%"),
        (D("0.41350"), "41.4%"),
        (D("1"), "100.0%"),
        (D("0"), "0.0%"),
        (None, "n/a"),
    ],
)
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


@pytest.mark.parametrize(
    "bad", ["2026-13-01", "2026-02-30", "yesterday", "20261006", "2026-1-6", ""]
)
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
    kpi_lines = {
        line.split("  ")[0]: line
        for line in plain.splitlines()
        if line.startswith(("Cost reduction vs", "Escalation false", "Review cons"))
    }
    assert re.search(
        r"41\.2%\s+met\s+30\.1%\s+below range$", kpi_lines["Cost reduction vs all-Claude"]
    )
    assert re.search(
        r"< 5\.0%\s+5\.0%\s+missed\s+n/a\s+no data$", kpi_lines["Escalation false-positive rate"]
    )


def test_text_shows_money_to_the_cent_and_flags_unpriced_and_unknown():
    text = render(sample_report(), "text")
    assert re.search(r"^cost\s+\$12\.34\s+\$70\.12$", text, re.M)
    assert re.search(r"^savings\s+\$8\.66\s+\$30\.18$", text, re.M)  # 8.655 -> 8.66 (even)
    assert re.search(r"^ghost \(unknown role\)\s+20 .* n/a\s+n/a\s+n/a\s+n/a$", text, re.M)
    assert re.search(r"^acme/mystery-1\s+2\s+1,000\s+100\s+unpriced\s+1\.2%\s+n/a$", text, re.M)
    assert "2 unpriced call(s) on acme/mystery-1" in text
    assert "20 event(s) with unknown role 'ghost'" in text
    assert "3 rejected event(s)" in text
    assert "break-even: month 5 of 60" in text


def test_a_narrow_terminal_wraps_headers_but_never_cuts_a_figure():
    text = render(sample_report(), "text", width=60)
    assert "…" not in text
    for cells in (
        fmt.role_grid(sample_report()).rows
        + fmt.model_grid(sample_report()).rows
        + fmt.escalation_grid(sample_report()).rows
    ):
        lines = [re.findall(r"\S+(?: \S+)*", line) for line in text.splitlines()]
        assert [c for c in cells if c] in lines, cells  # the whole row on one line, uncut


def test_markdown_is_github_tables_with_figures():
    md = render(sample_report(), "markdown")
    assert md.startswith("# modelmeter daily report - 2026-10-06\n")
    assert "| cost | $12.34 | $70.12 |" in md
    assert "| architect | 40 | 6 | 400,000 | 90,000 | $9.10 | $12.00 | $2.90 | 24.2% |" in md
    assert (
        "| Cost reduction vs all-Claude | 35.0% to 45.0% | 41.2% | met | 30.1% | **below range** |"
        in md
    )
    for header in (
        "## Per role",
        "## Per model",
        "## KPI scorecard",
        "## Escalations by trigger",
        "## ROI projection",
        "## Data warnings",
    ):
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
    assert doc["headline"]["mtd_status"] == "below_range"
    assert doc["roles"][2]["cost_usd"] is None  # unpriced: null, never "0"
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
        assert re.search(r'<rect class="[^"]*bar[^"]*"[^>]*width="[1-9]', body) or re.search(
            r'<path class="trend-line" d="M[^"]+L', body
        )
    assert 'class="status status-missed">missed</span>' in page
    assert 'class="status status-below_range">below range</span>' in page


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


# --- the golden warehouse ------------------------------------------------------------------
# tests/fixtures/golden.py computes every call's cost and baseline by hand; here they are summed per
# day / role / model / trigger (an oracle independent of the SQL) and every format must show
# them: exact decimals in JSON, the half-even cent in text, markdown and HTML.

JUNE = dt.date(2025, 6, 1)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """(expected, settings) of the session's shared golden warehouse (read-only here)."""
    from tests.fixtures.golden import golden_warehouse

    return golden_warehouse(tmp_path_factory)


def _sum(values) -> D | None:
    values = [v for v in values if v is not None]
    return sum(values, D(0)) if values else None


def _by(expected, day, key=lambda call: True):
    ids = [e for e, call in expected.calls.items() if call[0] == day and key(call)]
    cost = _sum(expected.cost[e] for e in ids)
    baseline = _sum(expected.baseline[e] for e in ids)
    return ids, cost, baseline


def _exact(value: D) -> str:
    """How the JSON shows an exact DECIMAL(38,12)."""
    return format(value.quantize(D("1E-12")), "f")


def _report(golden, day: dt.date, form: str, capsys, *extra: str) -> str:
    from pipeline.cli import main

    _, settings = golden
    code = main(
        [
            "report",
            "--date",
            day.isoformat(),
            "--format",
            form,
            "--warehouse",
            str(settings.warehouse),
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_json_of_the_golden_cost_day_has_every_figure_exactly(golden, capsys):
    expected, _ = golden
    doc = json.loads(_report(golden, JUNE, "json", capsys))
    ids, cost, baseline = _by(expected, JUNE)
    h = doc["headline"]
    assert (h["calls"], h["escalated_calls"], h["unpriced_calls"]) == (9, 2, 1)
    assert h["cost_usd"] == _exact(cost) == "0.315792000000"
    assert h["baseline_cost_usd"] == _exact(baseline) == "0.705375000000"
    assert h["savings_usd"] == _exact(baseline - cost)
    assert h["mtd_cost_usd"] == h["cost_usd"]  # the 1st: month to date = the day
    assert (h["mtd_cost_reduction_pct"], h["mtd_status"]) == (
        _exact(expected.kpi_daily[(JUNE, "cost_reduction_pct")][0]),
        "above_range",
    )
    roles = {r["role"]: r for r in doc["roles"]}
    assert set(roles) == {c[1] for c in expected.calls.values() if c[0] == JUNE}
    for role, row in roles.items():
        ids, cost, baseline = _by(expected, JUNE, lambda c, role=role: c[1] == role)
        assert row["calls"] == len(ids)
        assert row["cost_usd"] == (_exact(cost) if cost is not None else None), role
        assert row["baseline_cost_usd"] == (_exact(baseline) if baseline is not None else None)
    assert roles["tester"]["is_known_role"] is False and roles["critic"]["is_known_role"] is True
    models = {f"{m['provider']}/{m['model']}": m for m in doc["models"]}
    assert models["zai/glm-5-preview"]["cost_usd"] is None  # unpriced, never "0"
    assert models["zai/glm-4.5"]["is_default_model"] is True
    assert models["zai/glm-4.5"]["share_of_calls"] == "0.555555555555"  # 5 / 9, truncated
    for name, row in models.items():
        ids, cost, _ = _by(expected, JUNE, lambda c, name=name: f"{c[2]}/{c[3]}" == name)
        assert row["calls"] == len(ids)
        assert row["cost_usd"] == (_exact(cost) if cost is not None else None)
    kpis = {k["kpi"]: k for k in doc["kpis"]}
    assert list(kpis) == [
        "cost_reduction_pct",
        "default_model_share",
        "escalation_false_positive_rate",
        "satisfaction_avg",
        "review_consistency",
        "unpriced_calls",
    ]
    for kpi, row in kpis.items():
        actual, status = expected.kpi_daily[(JUNE, kpi)]
        assert (D(row["day_actual"]), row["day_status"]) == (actual, status), kpi
    esc = {(e["role"], e["trigger"]): e for e in doc["escalations"]}
    assert esc[("architect", "three_plus_services")] == {
        "role": "architect",
        "trigger": "three_plus_services",
        "escalated_calls": 1,
        "escalated_tasks": 1,
        "unpriced_calls": 0,
        "cost_usd": "0.296250000000",
        "baseline_cost_usd": "0.296250000000",
        "tasks_with_verdict": 1,
        "false_positives": 1,
        "false_positive_rate": "1.000000000000",
    }
    assert esc[("architect", "gut_feeling")]["false_positive_rate"] is None
    w = doc["warnings"]
    assert w["unpriced"] == [{"provider": "zai", "model": "glm-5-preview", "calls": 1}]
    assert w["unknown_roles"] == [{"role": "tester", "events": 1}]
    assert w["unknown_triggers"] == [{"role": "architect", "trigger": "gut_feeling", "calls": 1}]
    assert (w["rejected_events"], w["duplicate_events"], w["count"]) == (1, 1, 4)
    assert w["day_last_ingested_at"] == "2025-06-01T21:00:02Z"  # fa-01 at 21:00 + 2 s
    assert (doc["first_date"], doc["last_date"]) == ("2025-06-01", "2025-06-03")


def test_json_month_to_date_sums_the_month_up_to_the_report_day(golden, capsys):
    expected, _ = golden
    from tests.fixtures.golden import _ratio

    day_c = dt.date(2025, 6, 3)
    doc = json.loads(_report(golden, day_c, "json", capsys))
    cost = _sum(v for v in expected.cost.values())
    baseline = _sum(v for v in expected.baseline.values())
    priced_baseline = _sum(expected.baseline[e] for e, c in expected.cost.items() if c is not None)
    h = doc["headline"]
    assert h["mtd_cost_usd"] == _exact(cost)
    assert h["mtd_baseline_cost_usd"] == _exact(baseline) == _exact(priced_baseline)
    mtd = {k["kpi"]: (k["mtd_actual"], k["mtd_status"]) for k in doc["kpis"]}
    # June 1-3: 5 + 19 + 0 default-model calls of 9 + 20 + 20; escalated tasks with a verdict:
    # t-a02 (false positive) and t-c01..t-c20 (t-c20 a false positive) -> 2 / 21; satisfaction
    # (5 + 10x5 + 10x3) / 21 = 85 / 21; consistent reviews (1 + 19) / 21; one unpriced call.
    assert mtd == {
        "cost_reduction_pct": (_exact(_ratio(baseline - cost, baseline)), "met"),
        "default_model_share": (_exact(_ratio(D(24), D(49))), "missed"),
        "escalation_false_positive_rate": (_exact(_ratio(D(2), D(21))), "missed"),
        "satisfaction_avg": (_exact(_ratio(D(85), D(21))), "met"),
        "review_consistency": (_exact(_ratio(D(20), D(21))), "met"),
        "unpriced_calls": ("1.000000000000", "missed"),
    }
    # ROI at the month-to-date reduction: 30,000 a month before x reduction; break-even when
    # the cumulative savings reach the 45,000 implementation cost.
    reduction = _ratio(baseline - cost, baseline)
    roi = doc["roi"]
    assert roi["observed_cost_reduction_pct"] == _exact(reduction)
    assert D(roi["monthly_savings_usd"]) == D(30000) * reduction
    assert roi["break_even_month"] == next(
        m for m in range(1, 61) if m * D(30000) * reduction >= D(45000)
    )
    assert [p["date"] for p in doc["trend"]][-3:] == ["2025-06-01", "2025-06-02", "2025-06-03"]
    assert doc["trend"][0]["date"] == "2025-05-05" and doc["trend"][0]["calls"] == 0
    assert doc["trend"][-2]["savings_pct"] == "0.350000000000"


def test_text_shows_the_golden_figures_to_the_cent_without_colour(golden, capsys):
    expected, _ = golden
    text = _report(golden, dt.date(2025, 6, 2), "text", capsys)
    assert not ANSI.search(text)
    _, cost, baseline = _by(expected, dt.date(2025, 6, 2))
    first_two = [e for e, c in expected.calls.items() if c[0] <= dt.date(2025, 6, 2)]
    mtd_cost = _sum(expected.cost[e] for e in first_two)
    mtd_baseline = _sum(expected.baseline[e] for e in first_two)
    assert re.search(rf"^cost\s+\{fmt.usd(cost)}\s+\{fmt.usd(mtd_cost)}$", text, re.M)
    assert fmt.usd(cost) == "$0.53"  # 0.01197 + 0.52155 = 0.53352
    assert re.search(
        rf"^all-Claude baseline\s+\{fmt.usd(baseline)}\s+\{fmt.usd(mtd_baseline)}$", text, re.M
    )
    assert re.search(r"^cost reduction\s+35\.0%\s+", text, re.M)
    assert re.search(
        r"^Cost reduction vs all-Claude\s+35\.0% to 45\.0%\s+35\.0%\s+met\s+", text, re.M
    )
    assert re.search(r"^Default-model share of calls\s+>= 95\.0%\s+95\.0%\s+met\s+", text, re.M)
    assert re.search(
        r"^integrator\s+multi_service_conflict\s+1\s+1\s+\$0\.52\s+\$0\.52\s+0\s+0\s+n/a$",
        text,
        re.M,
    )


def test_markdown_shows_the_golden_review_day(golden, capsys):
    md = _report(golden, dt.date(2025, 6, 3), "markdown", capsys)
    # 20 escalated architect calls at 100 input tokens x $15 / 1e6 = $0.0015 each = $0.03
    # (a trigger is data: its punctuation is backslash-escaped, and renders as typed)
    assert "| architect | three\\_plus\\_services | 20 | 20 | $0.03 | $0.03 | 20 | 1 | 5.0% |" in md
    assert "| Escalation false-positive rate | < 5.0% | 5.0% | **missed** |" in md
    assert "| Average satisfaction (1-5) | >= 4.00 | 4.00 | met |" in md
    assert "| Review consistency | >= 95.0% | 95.0% | met |" in md
    assert "- note: 1 duplicate event(s) from producer retries landed and were counted once" in md


def test_html_of_the_golden_cost_day_carries_figures_and_charts(golden, capsys):
    expected, _ = golden
    page = _report(golden, JUNE, "html", capsys)
    assert page.count('<svg id="chart-') == 4
    roles = re.search(r'<svg id="chart-cost-by-role".*?</svg>', page, re.S).group(0)
    # architect = a-02 0.29625 + a-09 0.009 = 0.30525 -> $0.31; critic's unpriced call is not drawn
    assert '<text x="' in roles and ">$0.31</text>" in roles
    assert 'data-model="zai/glm-5-preview"' not in roles
    assert '<td class="num">$0.32</td>' in page  # the day's cost 0.315792
    assert "1 unpriced call(s) on zai/glm-5-preview" in page
    assert "1 escalated call(s) of role &#x27;architect&#x27; with unknown trigger" in page


def test_output_writes_the_file_atomically_and_says_where_on_stderr(golden, tmp_path, capsys):
    from pipeline.cli import main

    _, settings = golden
    target = tmp_path / "daily.md"
    code = main(
        [
            "report",
            "--date",
            "2025-06-02",
            "--format",
            "markdown",
            "--output",
            str(target),
            "--warehouse",
            str(settings.warehouse),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and out == ""
    assert err == f"wrote markdown report for 2025-06-02 to {target}\n"
    assert target.read_text().startswith("# modelmeter daily report - 2025-06-02\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daily.md"]


def test_text_output_file_never_has_colour(golden, tmp_path, capsys):
    from pipeline.cli import main

    _, settings = golden
    target = tmp_path / "daily.txt"
    assert (
        main(
            [
                "report",
                "--date",
                "2025-06-01",
                "--output",
                str(target),
                "--warehouse",
                str(settings.warehouse),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert not ANSI.search(target.read_text())
    assert "cost                  $0.32" in target.read_text()


# --- errors: one line on stderr, exit 2, never a traceback ---------------------------------


def _error(capsys, *argv: str) -> str:
    from pipeline.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("modelmeter: error: ")
    return err.strip()


def test_an_invalid_date_is_one_line_and_exit_2(golden, capsys):
    _, settings = golden
    assert (
        _error(capsys, "report", "--date", "2026-13-01", "--warehouse", str(settings.warehouse))
        == "modelmeter: error: --date 2026-13-01: not a date (YYYY-MM-DD)"
    )


def test_a_missing_warehouse_says_to_run_build(tmp_path, capsys):
    err = _error(
        capsys, "report", "--date", "2025-06-01", "--warehouse", str(tmp_path / "none.duckdb")
    )
    assert "none.duckdb" in err and "modelmeter build" in err


def test_a_day_without_data_names_the_days_that_have_data(golden, capsys):
    _, settings = golden
    assert _error(
        capsys,
        "report",
        "--date",
        "2025-07-01",
        "--format",
        "html",
        "--warehouse",
        str(settings.warehouse),
    ) == (
        "modelmeter: error: no data for 2025-07-01: the warehouse has data from 2025-06-01 "
        "to 2025-06-03"
    )


def test_the_default_date_is_yesterday_utc(golden, capsys):
    _, settings = golden
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert _error(capsys, "report", "--warehouse", str(settings.warehouse)).startswith(
        f"modelmeter: error: no data for {yesterday}: "
    )


def test_an_empty_warehouse_says_there_are_no_events(tmp_path, capsys):
    from pipeline.settings import Settings
    from pipeline.warehouse import build_warehouse
    from tests.fixtures.kafka_broker import REPO_ROOT

    (tmp_path / "lake").mkdir()
    settings = Settings(
        lake=tmp_path / "lake",
        warehouse=tmp_path / "w.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv",
    )
    build_warehouse(settings)
    err = _error(capsys, "report", "--date", "2025-06-01", "--warehouse", str(settings.warehouse))
    assert err.startswith("modelmeter: error: no data for 2025-06-01: the warehouse ")
    assert "has no usage events" in err


def test_an_unwritable_output_is_one_line(golden, tmp_path, capsys):
    _, settings = golden
    err = _error(
        capsys,
        "report",
        "--date",
        "2025-06-01",
        "--output",
        str(tmp_path / "missing" / "r.html"),
        "--warehouse",
        str(settings.warehouse),
    )
    assert "does not exist" in err


# --- acceptance: an independent event set with its own price book --------------------------

OWN_PRICES = """\
provider,model,effective_from,effective_to,usd_per_mtok_input,usd_per_mtok_output,usd_per_mtok_cache_read,usd_per_mtok_cache_write_5m,usd_per_mtok_cache_write_1h
zai,glm-4.5,2025-01-01T00:00:00Z,2026-10-03T12:00:00Z,0.60,2.20,0.11,0,0
zai,glm-4.5,2026-10-03T12:00:00Z,,0.55,2.05,0.105,0,0
anthropic,claude-opus-4-1,2025-01-01T00:00:00Z,2026-10-03T12:00:00Z,15,75,1.50,18.75,30
anthropic,claude-opus-4-1,2026-10-03T12:00:00Z,,13.5,67.5,1.35,16.875,27
"""
# (provider, model) -> [(from, to, per-million prices of input, output, cache read, 5m, 1h)]
_SWITCH = dt.datetime(2026, 10, 3, 12, tzinfo=dt.UTC)
_BOOK = {
    ("zai", "glm-4.5"): [
        (None, _SWITCH, ("0.60", "2.20", "0.11", "0", "0")),
        (_SWITCH, None, ("0.55", "2.05", "0.105", "0", "0")),
    ],
    ("anthropic", "claude-opus-4-1"): [
        (None, _SWITCH, ("15", "75", "1.50", "18.75", "30")),
        (_SWITCH, None, ("13.5", "67.5", "1.35", "16.875", "27")),
    ],
}


def _price(provider, model, tokens, at) -> D:
    for start, end, prices in _BOOK[(provider, model)]:
        if (start is None or at >= start) and (end is None or at < end):
            return sum((D(n) * D(p) for n, p in zip(tokens, prices, strict=True)), D(0)) / D(10**6)
    raise AssertionError("no price")


def test_an_independent_event_set_shows_each_days_exact_cost_to_the_cent(tmp_path, capsys):
    """`report --date 2026-10-06 --format text` shows the day's exact cost."""
    import random

    from pipeline.cli import main
    from pipeline.settings import Settings
    from pipeline.warehouse import build_warehouse
    from tests.fixtures.golden import llm_call, write_events_lake
    from tests.fixtures.kafka_broker import REPO_ROOT

    rng = random.Random(20261006)
    events, cost, baseline = [], {}, {}
    for n in range(600):
        day = dt.date(2026, 10, 1) + dt.timedelta(days=n % 6)
        at = dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60)), dt.UTC)
        escalated = rng.random() < 0.05
        role = "architect" if escalated else rng.choice(["orchestrator", "implementer", "critic"])
        provider, model = ("anthropic", "claude-opus-4-1") if escalated else ("zai", "glm-4.5")
        tokens = (
            rng.randrange(0, 60_000),
            rng.randrange(0, 9_000),
            rng.randrange(0, 90_000),
            rng.randrange(0, 5_000),
            rng.randrange(0, 3_000),
        )
        events.append(
            llm_call(
                f"x-{n:04d}",
                at,
                role,
                provider,
                model,
                input_tokens=tokens[0],
                output_tokens=tokens[1],
                cache_read_tokens=tokens[2],
                cache_write_5m_tokens=tokens[3],
                cache_write_1h_tokens=tokens[4],
                escalated=escalated,
                escalation_trigger="security_implications" if escalated else None,
            )
        )
        cost[day] = cost.get(day, D(0)) + _price(provider, model, tokens, at)
        baseline[day] = baseline.get(day, D(0)) + _price("anthropic", "claude-opus-4-1", tokens, at)
    write_events_lake(tmp_path / "lake", events)
    (tmp_path / "prices.csv").write_text(OWN_PRICES)
    settings = Settings(
        lake=tmp_path / "lake",
        warehouse=tmp_path / "w.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=tmp_path / "prices.csv",
    )
    build_warehouse(settings)

    day = dt.date(2026, 10, 6)
    assert (
        main(
            [
                "report",
                "--date",
                str(day),
                "--format",
                "text",
                "--warehouse",
                str(settings.warehouse),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    mtd = sum((cost[d] for d in cost), D(0))
    assert re.search(rf"^cost\s+\{fmt.usd(cost[day])}\s+\{fmt.usd(mtd)}$", text, re.M), text[:800]
    assert re.search(rf"^all-Claude baseline\s+\{fmt.usd(baseline[day])}\s+", text, re.M)
    for d in cost:  # and every day exactly, in JSON
        assert (
            main(
                [
                    "report",
                    "--date",
                    str(d),
                    "--format",
                    "json",
                    "--warehouse",
                    str(settings.warehouse),
                ]
            )
            == 0
        )
        headline = json.loads(capsys.readouterr().out)["headline"]
        assert D(headline["cost_usd"]) == cost[d], d
        assert D(headline["baseline_cost_usd"]) == baseline[d], d


# --- untrusted strings: every value of the data is shown as data, never as markup ----------
# tests/fixtures/hostile_text.py's HOSTILE catalogue goes into every place a string of the data
# reaches the report: roles, providers, models, triggers, warnings, the policy version, a KPI
# name and status. Each format must show each value literally (distinct values distinct),
# interpret none of it, and let no raw control, bidi or zero-width character through.


def _hostile_values(report: DailyReport) -> set[str]:
    """Every string of the data in ``report`` (what must be shown, each one literally)."""
    values = {report.policy_version, report.default_model, report.baseline_model}
    values |= {r.role for r in report.roles} | {m.provider for m in report.models}
    values |= {m.model for m in report.models} | {e.trigger for e in report.escalations}
    values |= {e.role for e in report.escalations}
    return values - {None}


def _assert_text_report(text: str, values: set[str]) -> None:
    from pipeline.safe_text import visible
    from tests.fixtures.hostile_text import RAW, only_printable

    assert only_printable(text) and not RAW.search(text)
    for value in values:  # literally: brackets and all, escapes visible
        assert visible(value) in text, value
    # markup was not interpreted: "[bold red]glm-4.5[/]" is not a second glm-4.5 row
    assert len(re.findall(r"^zai/glm-4\.5\b", text, re.M)) == 1


def _assert_markdown_report(md: str, values: set[str]) -> None:
    from pipeline.safe_text import markdown_text
    from tests.fixtures.hostile_text import RAW, only_printable

    assert only_printable(md) and not RAW.search(md)
    for value in values:
        assert markdown_text(value) in md, value
    assert not re.search(r"(?<!\\)!\[", md)  # no image
    assert not re.search(r"(?<!\\)<[A-Za-z/!?]", md)  # no raw HTML
    assert not re.search(r"(?<!\\)\]\(", md)  # no link
    for table in re.findall(r"((?:^\|.*\|\n)+)", md, re.M):  # no extra cell
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.strip().splitlines()}
        assert len(widths) == 1, table


class _Page(HTMLParser):
    """Tags, attribute names and values, and the text (entities decoded) of a page."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self.values: list[str] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            self.attrs.add(name)
            self.values.append(value or "")

    def handle_data(self, data):
        self.text.append(data)


def _assert_html_report(page: str, values: set[str]) -> _Page:
    from pipeline.safe_text import visible
    from tests.fixtures.hostile_text import RAW, only_printable

    assert only_printable(page) and not RAW.search(page)
    parsed, plain = _Page(page), _Page(render(sample_report(), "html"))
    # no tag and no attribute made from the data: the same ones as a report of plain values
    assert parsed.tags <= plain.tags and parsed.attrs <= plain.attrs
    assert not {"img", "script", "a", "iframe"} & parsed.tags
    text = "\n".join(parsed.text)
    for value in values:  # shown as text, escapes visible
        assert visible(value) in text, value
    return parsed


def test_hostile_values_print_literally_in_the_text_report_without_colour_and_with():
    report = hostile_report()
    plain = render(report, "text", width=400)
    _assert_text_report(plain, _hostile_values(report))
    assert "arch[i]itect" in plain and "zai/[bold red]glm-4.5[/]" in plain and "[/]" in plain
    assert "\\x1b[31mred\\x1b[0m" in plain and "rtl\\u202eevil" in plain
    assert "archi\\u200btect" in plain and re.search(r"^architect\s", plain, re.M)
    assert "event(s) with unknown role '<img src=x onerror=alert(1)>'" in plain
    coloured = render(report, "text", color=True, width=400)
    assert ANSI.search(coloured)  # rich's own colour codes, and nothing else raw
    _assert_text_report(ANSI.sub("", coloured), _hostile_values(report))


def test_hostile_values_are_escaped_data_in_markdown():
    from pipeline.safe_text import markdown_text

    report = hostile_report()
    md = render(report, "markdown")
    _assert_markdown_report(md, _hostile_values(report))
    role_table = md.split("## Per role\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(role_table) == 2 + len(report.roles)  # a CR or LF made no extra row
    assert "| \\<img src\\=x onerror\\=alert\\(1\\)\\> (unknown role) | 10 |" in md
    assert "| \\!\\[t\\]\\(https\\:\\/\\/example\\.invalid\\/x\\.png\\) |" in md
    assert "| a\\|b |" in md and "| \\&amp\\; |" in md
    assert f"- warning: 1 event(s) with unknown role '{markdown_text('[/]')}'" in md
    # the report's own sentences and figures stay as they were
    assert "| architect | 40 | 6 | 400,000 | 90,000 | $1.50 | $2.00 | $0.50 | 25.0% |" in md


def test_hostile_values_are_text_in_html_and_its_charts():
    from pipeline.safe_text import visible

    report = hostile_report()
    page = render(report, "html")
    parsed = _assert_html_report(page, _hostile_values(report))
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&amp;amp;" in page
    for value in report.cost_by_role_model:  # attribute values too (entities decoded)
        assert visible(f"{value.provider}/{value.model}") in parsed.values
    charts = "".join(re.findall(r"<svg .*?</svg>", page, re.S))
    assert charts.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # label, tip, desc
    assert "rtl\\u202eevil" in charts


def test_hostile_values_stay_exact_in_ascii_json():
    from pipeline.safe_text import visible
    from tests.fixtures.hostile_text import RAW, only_printable

    report = hostile_report()
    out = render(report, "json")
    assert out.isascii() and only_printable(out) and not RAW.search(out)
    doc = json.loads(out)
    assert [r["role"] for r in doc["roles"]] == [r.role for r in report.roles]  # exact
    assert [m["model"] for m in doc["models"]] == [m.model for m in report.models]
    assert [e["trigger"] for e in doc["escalations"]] == [e.trigger for e in report.escalations]
    assert doc["policy_version"] == report.policy_version
    assert doc["warnings"]["unknown_triggers"][0] == {
        "role": report.warnings.unknown_triggers[0].role,
        "trigger": "\x1b[31mred\x1b[0m",
        "calls": 1,
    }
    assert visible("\x1b") not in out  # escaped for JSON, not made visible


# The same catalogue through the whole path: lake -> warehouse (DuckDB) -> data.py -> CLI.


@pytest.fixture(scope="module")
def hostile_warehouse(tmp_path_factory):
    """A warehouse whose day holds every HOSTILE value as a role, a trigger, a provider and a
    model (and two values holding a '/', which the warnings join with '/')."""
    from pipeline.settings import Settings
    from pipeline.warehouse import build_warehouse
    from tests.fixtures.golden import llm_call, task_feedback, write_events_lake
    from tests.fixtures.hostile_text import HOSTILE
    from tests.fixtures.kafka_broker import REPO_ROOT

    root = tmp_path_factory.mktemp("hostile")
    at = dt.datetime(2025, 6, 1, 9, tzinfo=dt.UTC)
    events = [llm_call("h-default", at, "implementer", "zai", "glm-4.5", input_tokens=1000)]
    for i, value in enumerate((*HOSTILE, "ops/infra")):
        minute = dt.timedelta(minutes=i + 1)
        events += [
            llm_call(f"h-role-{i}", at + minute, value, "zai", "glm-4.5", input_tokens=100),
            llm_call(f"h-model-{i}", at + minute, "implementer", "zai", value, input_tokens=100),
            llm_call(f"h-provider-{i}", at + minute, "critic", value, "m/1", input_tokens=100),
            llm_call(
                f"h-trigger-{i}",
                at + minute,
                "architect",
                "anthropic",
                "claude-opus-4-1",
                input_tokens=100,
                escalated=True,
                escalation_trigger=value,
            ),
            task_feedback(
                f"h-feedback-{i}",
                at + minute,
                f"t-h-trigger-{i}",
                role=value,
                escalation_needed=False,
            ),
        ]
    write_events_lake(root / "lake", events)
    settings = Settings(
        lake=root / "lake",
        warehouse=root / "w.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv",
    )
    build_warehouse(settings)
    return settings, (*HOSTILE, "ops/infra")


def test_hostile_values_from_the_warehouse_in_every_format(hostile_warehouse, capsys):
    from pipeline.cli import main

    settings, values = hostile_warehouse
    out = {}
    for form in ("json", "text", "markdown", "html"):
        assert (
            main(
                [
                    "report",
                    "--date",
                    "2025-06-01",
                    "--format",
                    form,
                    "--warehouse",
                    str(settings.warehouse),
                ]
            )
            == 0
        )
        out[form], err = capsys.readouterr()
        assert err == ""
    doc = json.loads(out["json"])
    assert out["json"].isascii()
    assert {r["role"] for r in doc["roles"]} == {*values, "implementer", "critic", "architect"}
    assert {e["trigger"] for e in doc["escalations"]} == set(values)
    assert {m["model"] for m in doc["models"]} == {*values, "glm-4.5", "m/1", "claude-opus-4-1"}
    assert {u["provider"] for u in doc["warnings"]["unpriced"]} == {*values, "zai"}
    # a '/' in a role or provider does not move where the warning splits it
    assert {"role": "architect", "trigger": "ops/infra", "calls": 1} in doc["warnings"][
        "unknown_triggers"
    ]
    assert {"provider": "ops/infra", "model": "m/1", "calls": 1} in doc["warnings"]["unpriced"]
    assert {"role": "ops/infra", "events": 2} in doc["warnings"]["unknown_roles"]
    shown = set(values) | {"m/1"}
    _assert_text_report(out["text"].replace("zai/glm-4.5 (default)", "zai/glm-4.5"), shown)
    _assert_markdown_report(out["markdown"], shown)
    _assert_html_report(out["html"], shown)
