"""``modelmeter alerts [--date D] [--format text|json] [--only KINDS]``: what needs attention.

One line per alert, exit code 0 (none), 1 (alerts) or 2 (cannot run: no warehouse, no data
for the day, a bad option); for nightly jobs and monitoring (docs/operations.md, "Alerts").

Kinds, each read from the warehouse (opened read-only):

- ``budget``: a monthly budget (``schemas/budgets.yaml``) whose month-to-date spend, or whose
  projected month-end spend, passes it on the day (``mart_budget_status``);
- ``kpi``: a KPI whose month-to-date actual misses its target (``met`` and ``no_data`` do
  not alert; the report's scorecard says the same);
- ``data``: the report's data warnings of the day (unpriced calls, unknown or unresolved
  roles and triggers, calls to a retired model, rejected events).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline._exceptions import ConfigError
from pipeline.policy import MISSED_STATUSES
from pipeline.report.figures import BudgetRow
from pipeline.safe_text import visible

__all__ = ["KINDS", "Alert", "collect_alerts", "run_cli"]

KINDS = ("budget", "kpi", "data")


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # budget | kpi | data
    subject: str  # the budget's name, the KPI, or the warning
    message: str
    figures: dict[str, Any]


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01')):,}"


def budget_alerts(budgets: Iterable[BudgetRow]) -> list[Alert]:
    """One alert per budget over, or projected over, on the report day."""
    alerts = []
    for b in budgets:
        if b.status == "ok":
            continue
        limit, mtd = b.monthly_budget_usd, b.mtd_spend_usd
        if b.status == "over":
            text = f"spent {_usd(mtd)} this month, over its {_usd(limit)}"
        else:
            text = (
                f"projected {_usd(b.projected_usd)} by month end ({b.days_left} days left), "
                f"over its {_usd(limit)}; spent {_usd(mtd)} so far"
            )
        alerts.append(
            Alert(
                "budget",
                b.budget,
                f"budget {b.budget}: {text}",
                {
                    "status": b.status,
                    "monthly_budget_usd": str(limit),
                    "mtd_spend_usd": str(mtd),
                    "projected_usd": str(b.projected_usd),
                    "days_left": b.days_left,
                },
            )
        )
    return alerts


def collect_alerts(warehouse: Path, day: dt.date, kinds: tuple[str, ...] = KINDS) -> list[Alert]:
    """The alerts of ``day``; raises ConfigError/NoDataError (exit 2) when it cannot tell."""
    from pipeline.report import formatting as f
    from pipeline.report.data import load_daily_report

    report = load_daily_report(warehouse, day)  # no warehouse, no data that day: exit 2
    alerts: list[Alert] = []
    if "budget" in kinds:
        alerts += budget_alerts(report.budgets)
    if "kpi" in kinds:
        for k in report.kpis:
            if k.mtd_status in MISSED_STATUSES:
                alerts.append(
                    Alert(
                        "kpi",
                        k.kpi,
                        f"KPI {k.kpi}: month to date {f.kpi_value(k, k.mtd_actual)}, "
                        f"{f.status_word(k.mtd_status)} (target {f.kpi_target(k)})",
                        {
                            "status": k.mtd_status,
                            "mtd_actual": None if k.mtd_actual is None else str(k.mtd_actual),
                        },
                    )
                )
    if "data" in kinds:
        alerts += [Alert("data", "warning", line, {}) for line in f.warning_lines(report)]
    return alerts


def _kinds(value: str | None) -> tuple[str, ...]:
    if not value:
        return KINDS
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"--only {value}: kinds are {', '.join(KINDS)}")
    return kinds


def run_cli(args: argparse.Namespace, settings: Any) -> int:
    from pipeline.report import parse_report_date

    day = parse_report_date(args.date)
    alerts = collect_alerts(Path(settings.warehouse), day, _kinds(args.only))
    if args.format == "json":
        doc = {
            "date": day.isoformat(),
            "count": len(alerts),
            "alerts": [asdict(a) for a in alerts],
        }
        print(json.dumps(doc, indent=2, ensure_ascii=True))
    else:
        for alert in alerts:
            print(f"alert: {visible(alert.message)}")
        if not alerts:
            print(f"no alerts for {day}", file=sys.stderr)
    return 1 if alerts else 0
