"""Policy versions side by side: the simulated second half of a month, a canary on 20% of
tasks from the 15th (its escalation thresholds raised), built into the warehouse
(mart_policy_versions) and shown by the report, and the same figures recomputed independently
from the lake's Parquet files (pyarrow and Python, not the warehouse's SQL)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from pipeline.report import render_html, render_json, render_markdown, render_text
from pipeline.report.data import load_daily_report
from tests.fixtures.canary_month import (
    CANDIDATE,
    REPO,
    canary_policy_file,
    lake_comparison,
    simulate_lake,
)
from tests.fixtures.golden import golden_warehouse

# one worker runs the module: its module-scoped fixture is made once, not once per worker
pytestmark = pytest.mark.xdist_group("canary-month")

DAY = dt.date(2026, 11, 30)
BASELINE = "2026.11.1"
PRICES = REPO / "schemas" / "prices.csv"


@pytest.fixture(scope="module")
def canary_month(tmp_path_factory):
    """(report of the month's last day, independent lake comparison)."""
    from pipeline.settings import Settings
    from pipeline.warehouse import build_warehouse

    root = tmp_path_factory.mktemp("canary-month")
    policy = canary_policy_file(root / "policy.yaml", start=dt.date(2026, 11, 15))
    # only the comparison window (the canary's 16 days): 100k events, as dense as 190k over 30
    # days, enough for the cost interval to exclude zero
    simulate_lake(policy, root / "lake", events=100_000, end_date=DAY, days=16)
    settings = Settings(
        lake=root / "lake", warehouse=root / "warehouse.duckdb", policy=policy, prices=PRICES
    )
    build_warehouse(settings)
    return load_daily_report(settings.warehouse, DAY), lake_comparison(root / "lake", PRICES)


def test_candidate_costs_less_per_task_with_an_interval_excluding_zero(canary_month):
    report, _ = canary_month
    pv = report.policy_versions
    assert pv is not None and pv.concurrent
    assert (pv.window_start, pv.window_end) == (dt.date(2026, 11, 15), DAY)
    assert pv.baseline_version == BASELINE
    (c,) = pv.comparisons
    assert (c.candidate, c.baseline) == (CANDIDATE, BASELINE)
    d = c.cost_per_task_usd
    assert d.estimate is not None and d.low is not None and d.high is not None
    assert d.low < d.estimate < d.high < 0
    ch = c.cost_per_task_change
    assert ch.high is not None and ch.high < 0
    assert c.escalation_rate.high is not None and c.escalation_rate.high < 0
    assert c.verdict.startswith(f"{CANDIDATE} costs ")
    assert f"less per task than {BASELINE} (95% CI)" in c.verdict
    assert "satisfaction not lower at 95%" in c.verdict
    tasks = {v.policy_version: v.tasks for v in pv.versions}
    assert 0.17 < tasks[CANDIDATE] / (tasks[CANDIDATE] + tasks[BASELINE]) < 0.23


def test_figures_match_an_independent_recomputation_from_the_lake(canary_month):
    report, lake = canary_month
    pv = report.policy_versions
    assert pv is not None
    assert (pv.window_start, pv.window_end) == lake.window
    assert pv.baseline_version == lake.baseline
    rows = {v.policy_version: v for v in pv.versions}
    assert set(rows) == set(lake.versions) == {BASELINE, CANDIDATE}
    for version, expected in lake.versions.items():
        row = rows[version]
        assert row.tasks == expected.tasks
        assert row.calls == expected.calls
        assert row.cost_usd == expected.cost_usd  # exact Decimal
        assert row.cost_per_task_usd == expected.cost_per_task_usd
        assert row.escalated_tasks == expected.escalated_tasks
        assert row.escalated_tasks_with_verdict == expected.escalated_with_verdict
        assert row.false_positives == expected.false_positives
        assert row.satisfaction_responses == len(expected.satisfactions)
        assert row.reviews == expected.reviews
        assert row.review_consistency is not None
        assert row.review_consistency == _truncated(expected.consistent_reviews, expected.reviews)
    (c,) = pv.comparisons
    diff, low, high = lake.cost_diff_ci(CANDIDATE)
    assert c.cost_per_task_usd.estimate == diff
    assert float(c.cost_per_task_usd.low) == pytest.approx(low, rel=1e-9)
    assert float(c.cost_per_task_usd.high) == pytest.approx(high, rel=1e-9)
    s_diff, s_low, s_high = lake.satisfaction_ci(CANDIDATE)
    assert float(c.satisfaction.estimate) == pytest.approx(s_diff, abs=1e-11)
    assert float(c.satisfaction.low) == pytest.approx(s_low, abs=1e-9)
    assert float(c.satisfaction.high) == pytest.approx(s_high, abs=1e-9)


def _truncated(numerator: int, denominator: int) -> Decimal:
    from decimal import ROUND_DOWN

    return (Decimal(numerator) / Decimal(denominator)).quantize(
        Decimal("1E-12"), rounding=ROUND_DOWN
    )


def test_every_format_shows_the_section(canary_month):
    report, _ = canary_month
    (c,) = report.policy_versions.comparisons
    text = render_text(report, width=200)
    assert "Policy versions, 2026-11-15 to 2026-11-30" in text and c.verdict in text
    markdown = render_markdown(report)
    assert "## Policy versions, 2026-11-15 to 2026-11-30" in markdown
    assert "less per task than" in markdown
    html = render_html(report)
    assert 'id="policy-versions"' in html and "less per task than" in html
    body = json.loads(render_json(report))["policy_versions"]
    assert body["baseline_version"] == BASELINE
    assert body["comparisons"][0]["cost_per_task_usd"]["estimate"] == format(
        c.cost_per_task_usd.estimate, "f"
    )
    assert body["comparisons"][0]["verdict"] == c.verdict


def test_a_month_with_one_version_has_no_comparison(tmp_path_factory):
    expected, settings = golden_warehouse(tmp_path_factory)
    report = load_daily_report(settings.warehouse, expected.dates[0])
    assert report.policy_versions is None
    assert "Policy versions" not in render_text(report)
    assert json.loads(render_json(report))["policy_versions"] is None
