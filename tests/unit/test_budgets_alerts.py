"""Budgets (schemas/budgets.yaml), their month-end projection (mart_budget_status) and
`modelmeter alerts`: checked against a projection recomputed here in Decimal from the priced
calls, and on a month whose budget sits 10% under its spend."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from pipeline._exceptions import PolicyError
from pipeline.budgets import load_budgets
from pipeline.cli import main
from pipeline.policy import load_policy
from pipeline.report import render
from pipeline.report.data import load_daily_report
from pipeline.warehouse import build_warehouse
from tests.fixtures.dq_lake import Lake
from tests.fixtures.kafka_broker import REPO_ROOT

POLICY = load_policy(REPO_ROOT / "schemas" / "routing_policy.yaml")
MONTH = [dt.date(2025, 6, 1) + dt.timedelta(days=i) for i in range(30)]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_budgets_load_as_exact_decimals():
    budgets = load_budgets(REPO_ROOT / "schemas" / "budgets.yaml", POLICY)
    by_name = {b.name: b for b in budgets.budgets}
    assert by_name["total"].monthly_usd == Decimal("20000.00")
    assert by_name["role:architect"].role == "architect"
    assert by_name["model:anthropic/claude-opus-4-1"].model == "claude-opus-4-1"
    assert budgets.trailing_days == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roles:\n  hacker:\n    monthly_usd: 10.00\n", "roles.hacker: unknown role 'hacker'"),
        ("total:\n  monthly_usd: -5.00\n", "total.monthly_usd"),
        ("total:\n  monthly_usd: 1.005\n", "total.monthly_usd"),
        (
            "models:\n  - {provider: zai, model: glm-4.5, monthly_usd: 1.00}\n"
            "  - {provider: zai, model: glm-4.5, monthly_usd: 2.00}\n",
            "zai/glm-4.5 has two budgets",
        ),
        ("trailing_days: 0\n", "trailing_days"),
    ],
)
def test_a_bad_budgets_file_is_refused_with_file_and_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as err:
        load_budgets(path, POLICY)
    assert str(err.value).startswith(f"{path}:") and message in str(err.value)


@pytest.fixture
def month(make_settings, tmp_path):
    """June 2025, 30 days of traffic growing through the month (the dq fixture's calls, 8 more
    every 3 days), built with the given budgets: one lake, a warehouse per call."""
    numbers = itertools.count()

    def build(budgets_text: str):
        settings = make_settings(
            kafka=False,
            budgets=_write(tmp_path, budgets_text),
            warehouse=tmp_path / f"warehouse-{next(numbers)}.duckdb",
        )
        if not Path(settings.lake).exists():
            lake = Lake(Path(settings.lake))
            for i, day in enumerate(MONTH):
                lake.day(day, calls=8 + 8 * (i // 3))
        build_warehouse(settings)
        return settings

    return build


def _daily_spend(settings) -> dict[dt.date, Decimal]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        rows = con.execute(
            "select event_date, sum(cost_usd) from fct_llm_calls where is_priced group by 1"
        ).fetchall()
    return {day: Decimal(cost) for day, cost in rows}


def _projection(spend: dict[dt.date, Decimal], day: dt.date, trailing: int) -> Decimal:
    """Month to date + the trailing days' mean daily spend x the days left (independent)."""
    first = min(spend)
    mtd = sum((v for d, v in spend.items() if d.month == day.month and d <= day), Decimal(0))
    window = min(trailing, (day - first).days + 1)
    recent = sum((v for d, v in spend.items() if 0 <= (day - d).days < window), Decimal(0))
    rate = (recent / window).quantize(Decimal("1e-12"), rounding="ROUND_DOWN")
    days_left = (dt.date(day.year, day.month + 1, 1) - dt.timedelta(days=1) - day).days
    return mtd + rate * days_left


def test_the_projection_equals_an_independent_decimal_computation(month):
    settings = month("total:\n  monthly_usd: 1000000.00\n")
    spend = _daily_spend(settings)
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        rows = con.execute(
            "select event_date, mtd_spend_usd, projected_usd, status from mart_budget_status"
            " where budget = 'total' order by event_date"
        ).fetchall()
    assert [r[0] for r in rows] == MONTH
    for day, mtd, projected, status in rows:
        assert mtd == sum((v for d, v in spend.items() if d <= day), Decimal(0))
        assert projected == _projection(spend, day, 7), day
        assert status == "ok"


def test_alerts_fire_on_the_first_day_the_projection_crosses_a_budget(month, tmp_path, capsys):
    """A total budget 10% under the month's spend: exit 0 the day before the projection
    crosses it, exit 1 naming the budget from that day; budgets above the spend: exit 0."""
    probe = month("total:\n  monthly_usd: 1000000.00\n")
    spend = _daily_spend(probe)
    limit = (sum(spend.values(), Decimal(0)) * Decimal("0.9")).quantize(Decimal("0.01"))
    first = next(d for d in MONTH if _projection(spend, d, 7) > limit)
    assert MONTH[0] < first < MONTH[-1]  # growing traffic: the projection crosses mid-month

    settings = month(f"total:\n  monthly_usd: {limit}\n")
    common = ["alerts", "--warehouse", str(settings.warehouse), "--only", "budget"]
    before = first - dt.timedelta(days=1)
    assert main([*common, "--date", before.isoformat()]) == 0
    capsys.readouterr()
    assert main([*common, "--date", first.isoformat()]) == 1
    out = capsys.readouterr().out
    assert out.startswith("alert: budget total: projected $")
    assert f"over its ${limit:,}" in out

    assert main([*common, "--date", first.isoformat(), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["count"] == 1 and doc["alerts"][0]["subject"] == "total"
    assert doc["alerts"][0]["figures"]["status"] in ("projected_over", "over")
    assert Decimal(doc["alerts"][0]["figures"]["projected_usd"]) == _projection(spend, first, 7)

    report = load_daily_report(Path(settings.warehouse), first)
    (row,) = report.budgets
    assert (row.budget, row.status) == ("total", "projected_over")
    assert row.projected_usd == _projection(spend, first, 7)
    text = render(report, "text")
    assert "Budgets (month to date, projected to month end)" in text
    assert "projected over" in text
    assert json.loads(render(report, "json"))["budgets"][0]["status"] == "projected_over"

    generous = month(f"total:\n  monthly_usd: {limit * 2}\n")
    for day in (first, MONTH[-1]):
        assert (
            main(
                [
                    "alerts",
                    "--warehouse",
                    str(generous.warehouse),
                    "--only",
                    "budget",
                    "--date",
                    day.isoformat(),
                ]
            )
            == 0
        )


def test_alerts_cannot_run_without_data_and_refuse_unknown_kinds(month, capsys):
    settings = month("total:\n  monthly_usd: 1000000.00\n")
    common = ["alerts", "--warehouse", str(settings.warehouse)]
    assert main([*common, "--date", "2024-01-01"]) == 2
    assert main([*common, "--date", MONTH[3].isoformat(), "--only", "weather"]) == 2
    assert "--only weather: kinds are budget, kpi, data" in capsys.readouterr().err


def test_the_prometheus_rules_use_only_served_metrics():
    import re

    import yaml

    rules = yaml.safe_load((REPO_ROOT / "ops" / "prometheus" / "modelmeter-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs and all(r.get("alert") for g in rules["groups"] for r in g["rules"])
    served = set(
        re.findall(r"``(modelmeter_[a-z_]+)", (REPO_ROOT / "pipeline" / "metrics.py").read_text())
    )
    used = {
        name.removesuffix("_bucket") for e in exprs for name in re.findall(r"modelmeter_[a-z_]+", e)
    }
    assert used and used <= served, used - served
