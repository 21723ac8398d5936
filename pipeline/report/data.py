"""The daily report's figures, read from the warehouse into one typed object.

::

    report = load_daily_report(settings.warehouse, dt.date(2026, 10, 6))
    report.headline.cost_usd            # Decimal, exact (DECIMAL(38,12) from DuckDB)

Everything is computed by the warehouse's SQL models (``sql/``); this module only
selects the rows of one day (and its month to date, and the 30 days up to it) and never
re-derives a cost or a KPI. Money and ratios stay exact :class:`~decimal.Decimal`; rounding
to cents happens in the renderers, at display time only.

The warehouse is opened read-only, so a report can run while ``modelmeter build`` swaps in a
new file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from pipeline._exceptions import NoDataError, WarehouseError
from pipeline.report.figures import (
    TREND_DAYS,
    BudgetRow,
    DailyReport,
    DataWarnings,
    EscalationRow,
    Headline,
    KpiRow,
    ModelRow,
    PolicyVersions,
    RetiredModelCalls,
    Roi,
    RoleModelCost,
    RoleRow,
    TrendPoint,
    UnknownRole,
    UnknownTrigger,
    UnpricedModel,
    find_kpi,
)

__all__ = ["KPI_ORDER", "load_daily_report"]


# The contract's KPI order (docs/finance.md); a KPI the policy adds later is listed after these.
KPI_ORDER = (
    "cost_reduction_pct",
    "default_model_share",
    "escalation_false_positive_rate",
    "satisfaction_avg",
    "review_consistency",
    "unpriced_calls",
)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> dict:
    rows = _rows(con, sql, params)
    return rows[0] if rows else {}


def load_daily_report(warehouse: Path, day: dt.date) -> DailyReport:
    """The report of ``day`` from the warehouse file ``warehouse`` (opened read-only).

    Raises :class:`ConfigError` when the warehouse is missing and :class:`NoDataError` when
    ``day`` has no llm_call events (naming the range of days that have data).
    """
    from pipeline.warehouse import open_warehouse_readonly

    con = open_warehouse_readonly(warehouse)
    try:
        return _load(con, Path(warehouse), day)
    except duckdb.CatalogException as exc:
        raise WarehouseError(
            f"warehouse {warehouse} lacks what the report needs ({str(exc).splitlines()[0]}); "
            "rebuild it with `modelmeter build`"
        ) from None
    finally:
        con.close()


def _load(con: duckdb.DuckDBPyConnection, path: Path, day: dt.date) -> DailyReport:
    # mart_daily_call_summary holds every call summed per day and group: a few thousand rows
    # instead of a scan of fct_llm_calls (so do _roles and _cost_by_role_model).
    span = _one(
        con,
        "select min(event_date) as first, max(event_date) as last, "
        "coalesce(sum(calls) filter (where event_date = ?), 0) as calls "
        "from mart_daily_call_summary",
        [day],
    )
    if span.get("first") is None:
        raise NoDataError(
            f"no data for {day}: the warehouse {path} has no usage events "
            "(consume some, then run `modelmeter build`)"
        )
    if not span["calls"]:
        raise NoDataError(
            f"no data for {day}: the warehouse has data from {span['first']} to {span['last']}"
        )
    month_start = day.replace(day=1)
    policy = _one(con, "select * from dim_policy")
    kpis = _kpis(con, day)
    headline = _headline(con, day, month_start, kpis)
    return DailyReport(
        date=day,
        policy_version=policy.get("policy_version"),
        default_model=f"{policy['default_provider']}/{policy['default_model']}",
        baseline_model=f"{policy['baseline_provider']}/{policy['baseline_model']}",
        first_date=span["first"],
        last_date=span["last"],
        headline=headline,
        roles=_roles(con, day),
        models=_models(con, day, policy),
        cost_by_role_model=_cost_by_role_model(con, day),
        kpis=kpis,
        escalations=_escalations(con, day),
        roi=_roi(month_start, headline.mtd_cost_reduction_pct, policy),
        trend=_trend(con, day),
        warnings=_warnings(con, day),
        policy_versions=_policy_versions(con, day),
        budgets=_budgets(con, day),
    )


def _policy_versions(con: duckdb.DuckDBPyConnection, day: dt.date) -> PolicyVersions | None:
    from pipeline.report.policy_versions import load_policy_versions

    return load_policy_versions(con, day)


def _kpis(con: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[KpiRow, ...]:
    targets = _rows(con, "select * from dim_kpi_targets")
    targets.sort(
        key=lambda t: (
            KPI_ORDER.index(t["kpi"]) if t["kpi"] in KPI_ORDER else len(KPI_ORDER),
            t["kpi"],
        )
    )
    # period 'day' is kpi_daily; 'month_to_date' sums the month's days up to and including `day`.
    actuals = {
        (r["period"], r["kpi"]): r
        for r in _rows(
            con,
            """
        select period, kpi, actual, status from mart_kpi_actuals
        where period in ('day', 'month_to_date') and period_start = ?""",
            [day],
        )
    }
    rows = []
    for t in targets:
        d = actuals.get(("day", t["kpi"]), {})
        m = actuals.get(("month_to_date", t["kpi"]), {})
        rows.append(
            KpiRow(
                kpi=t["kpi"],
                description=t["description"] or "",
                unit=t["unit"],
                target_min=t["target_min"],
                target_max=t["target_max"],
                min_inclusive=bool(t["min_inclusive"]),
                max_inclusive=bool(t["max_inclusive"]),
                day_actual=d.get("actual"),
                day_status=d.get("status", "no_data"),
                mtd_actual=m.get("actual"),
                mtd_status=m.get("status", "no_data"),
            )
        )
    return tuple(rows)


def _headline(
    con: duckdb.DuckDBPyConnection, day: dt.date, month_start: dt.date, kpis: tuple[KpiRow, ...]
) -> Headline:
    d = _one(
        con,
        """
        select s.calls, s.unpriced_calls, s.cost_usd, s.baseline_cost_usd, s.savings_usd,
               s.savings_pct,
               (select coalesce(sum(escalated_calls), 0) from daily_cost_by_role r
                where r.event_date = s.event_date) as escalated_calls
        from mart_daily_savings s where s.event_date = ?""",
        [day],
    )
    m = _one(
        con,
        """
        select sum(cost_usd) as cost_usd, sum(baseline_cost_usd) as baseline_cost_usd,
               sum(savings_usd) as savings_usd
        from mart_daily_savings where event_date between ? and ?""",
        [month_start, day],
    )
    reduction = find_kpi(kpis, "cost_reduction_pct")
    return Headline(
        calls=int(d["calls"]),
        escalated_calls=int(d["escalated_calls"]),
        unpriced_calls=int(d["unpriced_calls"]),
        cost_usd=d["cost_usd"],
        baseline_cost_usd=d["baseline_cost_usd"],
        savings_usd=d["savings_usd"],
        savings_pct=d["savings_pct"],
        month_start=month_start,
        mtd_cost_usd=m.get("cost_usd"),
        mtd_baseline_cost_usd=m.get("baseline_cost_usd"),
        mtd_savings_usd=m.get("savings_usd"),
        mtd_cost_reduction_pct=reduction.mtd_actual if reduction else None,
        target_min=reduction.target_min if reduction else None,
        target_max=reduction.target_max if reduction else None,
        mtd_status=reduction.mtd_status if reduction else "no_data",
    )


def _roles(con: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[RoleRow, ...]:
    rows = _rows(
        con,
        """
        with known as (
            select role, bool_and(is_known_role) as is_known_role
            from mart_daily_call_summary where event_date = ? group by role
        )
        select r.role, coalesce(known.is_known_role, false) as is_known_role,
               r.calls, r.escalated_calls, r.input_tokens, r.output_tokens,
               r.cost_usd, r.baseline_cost_usd, r.savings_usd, r.savings_pct
        from daily_cost_by_role r
        left join known on known.role = r.role
        where r.event_date = ?
        order by r.cost_usd desc nulls last, r.calls desc, r.role""",
        [day, day],
    )
    return tuple(RoleRow(**r) for r in rows)


def _models(con: duckdb.DuckDBPyConnection, day: dt.date, policy: dict) -> tuple[ModelRow, ...]:
    rows = _rows(
        con,
        """
        select provider, model, calls, input_tokens, output_tokens, cost_usd,
               share_of_calls, share_of_cost
        from daily_cost_by_model where event_date = ?
        order by calls desc, provider, model""",
        [day],
    )
    default = (policy["default_provider"], policy["default_model"])
    return tuple(
        ModelRow(is_default_model=(r["provider"], r["model"]) == default, **r) for r in rows
    )


def _cost_by_role_model(con: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[RoleModelCost, ...]:
    rows = _rows(
        con,
        """
        select role, provider, model, cast(sum(calls) as bigint) as calls, sum(cost_usd) as cost_usd
        from mart_daily_call_summary where event_date = ?
        group by role, provider, model order by role, provider, model""",
        [day],
    )
    return tuple(RoleModelCost(**r) for r in rows)


def _escalations(con: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[EscalationRow, ...]:
    rows = _rows(
        con,
        """
        select role, escalation_trigger as trigger, escalated_calls, escalated_tasks,
               unpriced_calls, cost_usd, baseline_cost_usd, tasks_with_verdict,
               false_positives, false_positive_rate
        from mart_escalations_by_trigger where event_date = ?
        order by cost_usd desc nulls last, role, trigger""",
        [day],
    )
    return tuple(EscalationRow(**r) for r in rows)


def _roi(month_start: dt.date, reduction: Decimal | None, policy: dict) -> Roi | None:
    from pipeline.policy import RoiInputs, roi_projection

    if reduction is None:
        return None
    inputs = RoiInputs(
        implementation_cost_usd=policy["implementation_cost_usd"],
        monthly_spend_before_usd=policy["monthly_spend_before_usd"],
        horizon_months=int(policy["horizon_months"]),
    )
    p = roi_projection(inputs, reduction).at_money_scale()  # as mart_roi stores it
    return Roi(
        month=month_start,
        observed_cost_reduction_pct=reduction,
        implementation_cost_usd=inputs.implementation_cost_usd,
        monthly_spend_before_usd=inputs.monthly_spend_before_usd,
        horizon_months=inputs.horizon_months,
        monthly_savings_usd=p.monthly_savings_usd,
        horizon_savings_usd=p.horizon_savings_usd,
        roi=p.roi,
        break_even_month=p.break_even_month,
    )


def _trend(con: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[TrendPoint, ...]:
    start = day - dt.timedelta(days=TREND_DAYS - 1)
    rows = _rows(
        con,
        """
        with days as (
            select cast(d as date) as date
            from range(cast(? as date), cast(? as date) + interval 1 day, interval 1 day) t(d)
        )
        select days.date, coalesce(s.calls, 0) as calls, s.cost_usd, s.baseline_cost_usd,
               s.savings_usd, s.savings_pct, k.actual as default_model_share,
               coalesce(s.unpriced_calls, 0) as unpriced_calls
        from days
        left join mart_daily_savings s on s.event_date = days.date
        left join kpi_daily k on k.event_date = days.date and k.kpi = 'default_model_share'
        order by days.date""",
        [start, day],
    )
    return tuple(TrendPoint(**r) for r in rows)


def _splitter(
    con: duckdb.DuckDBPyConnection, sql: str, day: dt.date
) -> Callable[[str], tuple[str, str]]:
    """Splits a warning's ``a/b`` subject back into the (a, b) of the day's rows that made
    it (``sql`` selects them), so that a role or provider holding a ``/`` is not cut at the
    wrong place; the first ``/`` when the subject is ambiguous or not among them."""
    found: dict[str, set[tuple[str, str]]] = {}
    for a, b in con.execute(sql, [day]).fetchall():
        found.setdefault(f"{a}/{b}", set()).add((a, b))

    def split(subject: str) -> tuple[str, str]:
        pairs = found.get(subject, set())
        if len(pairs) == 1:
            return next(iter(pairs))
        left, _, right = subject.partition("/")
        return left, right

    return split


def _budgets(con: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[BudgetRow, ...]:
    rows = _rows(
        con,
        """
            select budget, monthly_budget_usd, mtd_spend_usd, projected_usd, days_left, status
            from mart_budget_status where event_date = ?
            order by case status when 'over' then 0 when 'projected_over' then 1 else 2 end,
                     budget""",
        [day],
    )
    return tuple(BudgetRow(**r) for r in rows)


def _warnings(con: duckdb.DuckDBPyConnection, day: dt.date) -> DataWarnings:
    unpriced, roles, triggers, unattributed = [], [], [], []
    unassigned: UnknownRole | None = None
    retired: list[RetiredModelCalls] = []
    lifecycle = {
        f"{r['provider']}/{r['model']}": r
        for r in _rows(con, "select * from dim_models where retired_on is not null")
    }
    rejected = duplicates = 0
    day_freshness: dt.datetime | None = None
    model = _splitter(
        con,
        "select distinct provider, model from mart_daily_call_summary "
        "where event_date = ? and not has_model_price",
        day,
    )
    role_trigger = _splitter(
        con,
        "select distinct role, escalation_trigger "
        "from mart_daily_call_summary where event_date = ? "
        "and not is_known_trigger and escalation_trigger is not null",
        day,
    )
    for r in _rows(
        con,
        """
            select warning, subject, events, last_ingested_at from rpt_data_warnings
            where event_date = ? order by warning, events desc, subject""",
        [day],
    ):
        kind, subject, events = r["warning"], r["subject"], int(r["events"])
        if kind == "unpriced_calls":
            unpriced.append(UnpricedModel(*model(subject), events))
        elif kind == "unknown_role":
            roles.append(UnknownRole(subject, events))
        elif kind == "unassigned_role":
            unassigned = UnknownRole(subject, events)
        elif kind == "unknown_trigger":
            triggers.append(UnknownTrigger(*role_trigger(subject), events))
        elif kind == "unattributed_trigger":
            unattributed.append(UnknownTrigger(*role_trigger(subject), events))
        elif kind == "retired_model":
            life = lifecycle[subject]
            retired.append(
                RetiredModelCalls(
                    life["provider"], life["model"], life["retired_on"], life["successor"], events
                )
            )
        elif kind == "rejected_events":
            rejected += events
        elif kind == "duplicate_events":
            duplicates += events
        elif kind == "lake_freshness" and r["last_ingested_at"] is not None:
            day_freshness = max(filter(None, (day_freshness, r["last_ingested_at"])))
    lake = _one(
        con,
        "select max(last_ingested_at) as at from rpt_data_warnings "
        "where warning = 'lake_freshness'",
    )
    info = _one(con, "select built_at from mart_build_info")
    return DataWarnings(
        tuple(unpriced),
        tuple(roles),
        tuple(triggers),
        rejected,
        duplicates,
        day_freshness,
        lake.get("at"),
        info.get("built_at"),
        unassigned,
        tuple(unattributed),
        tuple(retired),
    )
