"""Display rules shared by every human-readable format (text, markdown, HTML).

Money is rounded to the cent with ROUND_HALF_EVEN here and only here, at display time;
percentages have one decimal; KPI statuses are words (``met``, ``missed``, ``no data``) so
they never depend on colour.

Every string that came from the data (role, provider, model, trigger, policy version, a KPI
or status the warehouse holds) goes through ``esc`` on its way into a display string:
:func:`~pipeline.safe_text.visible` by default (every non-printable character as a visible
escape), which the text and HTML formats then show as plain text / HTML-escape as a whole;
markdown passes :func:`~pipeline.safe_text.markdown_text`, so that only the data is
backslash-escaped and the sentences around it stay readable (pipeline/safe_text.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from pipeline.report.figures import DailyReport, KpiRow
from pipeline.safe_text import visible

#: How a format makes a data string safe inside its display strings.
Escape = Callable[[object], str]

__all__ = [
    "Escape",
    "NA",
    "STATUS_WORDS",
    "usd",
    "pct",
    "integer",
    "kpi_value",
    "kpi_target",
    "kpi_title",
    "status_word",
    "month_label",
    "break_even_text",
    "warning_lines",
    "title",
    "freshness_text",
    "info_lines",
    "Grid",
    "headline_grid",
    "role_grid",
    "model_grid",
    "kpi_grid",
    "escalation_grid",
    "budget_grid",
    "roi_lines",
    "headline_sentence",
    "cost_reduction_target",
    "subtitle",
    "NO_WARNINGS",
]

NA = "n/a"
CENT = Decimal("0.01")
TENTH = Decimal("0.1")

STATUS_WORDS = {
    "met": "met",
    "missed": "missed",
    "below_range": "below range",
    "above_range": "above range",
    "no_data": "no data",
    # budgets
    "ok": "ok",
    "projected_over": "projected over",
    "over": "over budget",
}

KPI_TITLES = {
    "cost_reduction_pct": "Cost reduction vs all-Claude",
    "default_model_share": "Default-model share of calls",
    "escalation_false_positive_rate": "Escalation false-positive rate",
    "satisfaction_avg": "Average satisfaction (1-5)",
    "review_consistency": "Review consistency",
    "unpriced_calls": "Unpriced calls",
}


def usd(value: Decimal | None, *, signed: bool = False) -> str:
    """``$1,234.57`` (half-even to the cent), ``-$0.50``; ``n/a`` for None (unpriced)."""
    if value is None:
        return NA
    cents = value.quantize(CENT, rounding=ROUND_HALF_EVEN)
    if cents == 0:
        cents = abs(cents)  # no "-$0.00"
    sign = "-" if cents < 0 else ("+" if signed and cents > 0 else "")
    return f"{sign}${abs(cents):,.2f}"


def pct(ratio: Decimal | None) -> str:
    """A ratio as a percentage with one decimal: ``Decimal('0.41234')`` -> ``41.2%``."""
    if ratio is None:
        return NA
    return f"{(ratio * 100).quantize(TENTH, rounding=ROUND_HALF_EVEN)}%"


def integer(value: int | None) -> str:
    return NA if value is None else f"{value:,}"


def _number(value: Decimal, unit: str) -> str:
    if unit == "ratio":
        return pct(value)
    if unit == "count":
        return integer(int(value))
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN)}"


def kpi_value(kpi: KpiRow, value: Decimal | None) -> str:
    return NA if value is None else _number(value, kpi.unit)


def kpi_target(kpi: KpiRow) -> str:
    """The target as people say it: ``35.0% to 45.0%``, ``>= 95.0%``, ``< 5.0%``, ``0``."""
    lo, hi = kpi.target_min, kpi.target_max
    if lo is not None and hi is not None:
        if lo == hi:
            return _number(lo, kpi.unit)
        return f"{_number(lo, kpi.unit)} to {_number(hi, kpi.unit)}"
    if lo is not None:
        return f"{'>=' if kpi.min_inclusive else '>'} {_number(lo, kpi.unit)}"
    if hi is not None:
        if kpi.unit == "count" and hi == 0 and kpi.max_inclusive:
            return "0"
        return f"{'<=' if kpi.max_inclusive else '<'} {_number(hi, kpi.unit)}"
    return NA


def kpi_title(kpi: str, esc: Escape = visible) -> str:
    """The KPI's title; a KPI the policy adds later shows its own name (data: ``esc``)."""
    return KPI_TITLES[kpi] if kpi in KPI_TITLES else esc(kpi.replace("_", " "))


def status_word(status: str, esc: Escape = visible) -> str:
    """``met``, ``missed``, ``no data``; any other status (data: ``esc``) as it is."""
    return STATUS_WORDS[status] if status in STATUS_WORDS else esc(status)


def month_label(month: dt.date) -> str:
    return month.strftime("%B %Y")


def break_even_text(report: DailyReport) -> str:
    roi = report.roi
    if roi is None:
        return NA
    if roi.break_even_month is None:
        return f"not within {roi.horizon_months} months"
    return f"month {roi.break_even_month} of {roi.horizon_months}"


def warning_lines(report: DailyReport, esc: Escape = visible) -> list[str]:
    """Each data warning of the day as one plain sentence (empty list = nothing to flag)."""
    w = report.warnings
    lines = [
        f"{u.calls:,} unpriced call(s) on {esc(u.provider)}/{esc(u.model)}: no price in "
        "force, excluded from cost (never counted as $0)"
        for u in w.unpriced
    ]
    lines += [
        f"{r.events:,} event(s) with unknown role '{esc(r.role)}' (not in policy "
        f"{esc(report.policy_version or NA)})"
        for r in w.unknown_roles
    ]
    if w.unassigned:
        lines.append(
            f"{w.unassigned.events:,} event(s) with role '{esc(w.unassigned.role)}': a collector "
            "found no role for them (map them in schemas/sources.yaml)"
        )
    lines += [
        f"{t.calls:,} escalated call(s) of role '{esc(t.role)}' with unknown trigger "
        f"'{esc(t.trigger)}'"
        for t in w.unknown_triggers
    ]
    lines += [
        f"{t.calls:,} escalated call(s) of role '{esc(t.role)}' whose source records no "
        f"trigger (counted as '{esc(t.trigger)}')"
        for t in w.unattributed
    ]
    lines += [
        f"{r.calls:,} call(s) to {esc(r.provider)}/{esc(r.model)}, retired on {r.retired_on}: "
        "requests to it fail" + (f" (successor: {esc(r.successor)})" if r.successor else "")
        for r in w.retired_models
    ]
    if w.rejected_events:
        lines.append(
            f"{w.rejected_events:,} rejected event(s) received this day "
            "(dead-lettered; see the _rejected lake table)"
        )
    return lines


def _when(at: dt.datetime | None) -> str:
    if at is None:
        return NA
    if at.tzinfo is not None:
        at = at.astimezone(dt.UTC)
    return at.strftime("%Y-%m-%d %H:%M UTC")


def freshness_text(report: DailyReport) -> str:
    """Lake freshness: when the day's last event landed, the newest landing, the build time."""
    w = report.warnings
    return (
        f"this day's last event landed {_when(w.day_last_ingested_at)}; newest event in the "
        f"lake landed {_when(w.lake_freshness)}; warehouse built {_when(w.built_at)}"
    )


def info_lines(report: DailyReport) -> list[str]:
    """Facts worth knowing that need no action (retries are deduplicated by event_id)."""
    w = report.warnings
    if not w.duplicate_events:
        return []
    return [
        f"{w.duplicate_events:,} duplicate event(s) from producer retries landed and were "
        "counted once"
    ]


def title(report: DailyReport) -> str:
    return f"modelmeter daily report - {report.date.isoformat()}"


# --- the tables every format shows, as display strings --------------------------------------


@dataclass(frozen=True, slots=True)
class Grid:
    """One table of the report as display strings.

    Cells in ``status_columns`` hold a raw status (``met``/``missed``/``no_data``) that each
    format dresses its own way (a word always, colour or emphasis on top).
    """

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric_columns: frozenset[int] = frozenset()
    status_columns: frozenset[int] = frozenset()
    empty_text: str = "none"


def _grid(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: Sequence[int] = (),
    status: Sequence[int] = (),
    empty: str = "none",
) -> Grid:
    return Grid(
        title,
        tuple(header),
        tuple(tuple(r) for r in rows),
        frozenset(numeric),
        frozenset(status),
        empty,
    )


def headline_grid(report: DailyReport) -> Grid:
    h = report.headline
    return _grid(
        "Headline",
        ["", "day", "month to date"],
        [
            ["cost", usd(h.cost_usd), usd(h.mtd_cost_usd)],
            ["all-Claude baseline", usd(h.baseline_cost_usd), usd(h.mtd_baseline_cost_usd)],
            ["savings", usd(h.savings_usd), usd(h.mtd_savings_usd)],
            ["cost reduction", pct(h.savings_pct), pct(h.mtd_cost_reduction_pct)],
            ["calls", integer(h.calls), ""],
            ["escalated calls", integer(h.escalated_calls), ""],
            ["unpriced calls", integer(h.unpriced_calls), ""],
        ],
        numeric=(1, 2),
    )


def cost_reduction_target(report: DailyReport) -> str:
    kpi = report.kpi("cost_reduction_pct")
    return kpi_target(kpi) if kpi else NA


def headline_sentence(report: DailyReport, status: Callable[[str], str] = status_word) -> str:
    """The headline in one sentence (figures only); ``status`` dresses the met/missed word
    per format (and makes an unknown status safe for it)."""
    h = report.headline
    return (
        f"Cost {usd(h.cost_usd)} against an all-Claude baseline of "
        f"{usd(h.baseline_cost_usd)}: savings {usd(h.savings_usd)} ({pct(h.savings_pct)}). "
        f"Month to date ({h.month_start} to {report.date}): cost reduction "
        f"{pct(h.mtd_cost_reduction_pct)} against the {cost_reduction_target(report)} "
        f"target: {status(h.mtd_status)}."
    )


def role_grid(report: DailyReport, esc: Escape = visible) -> Grid:
    return _grid(
        "Per role",
        [
            "role",
            "calls",
            "escalated",
            "input tokens",
            "output tokens",
            "cost",
            "baseline",
            "savings",
            "savings %",
        ],
        [
            [
                esc(r.role) + ("" if r.is_known_role else " (unknown role)"),
                integer(r.calls),
                integer(r.escalated_calls),
                integer(r.input_tokens),
                integer(r.output_tokens),
                usd(r.cost_usd),
                usd(r.baseline_cost_usd),
                usd(r.savings_usd),
                pct(r.savings_pct),
            ]
            for r in report.roles
        ],
        numeric=range(1, 9),
    )


def model_grid(report: DailyReport, esc: Escape = visible) -> Grid:
    return _grid(
        "Per model",
        [
            "provider/model",
            "calls",
            "input tokens",
            "output tokens",
            "cost",
            "share of calls",
            "share of cost",
        ],
        [
            [
                f"{esc(m.provider)}/{esc(m.model)}" + (" (default)" if m.is_default_model else ""),
                integer(m.calls),
                integer(m.input_tokens),
                integer(m.output_tokens),
                usd(m.cost_usd) if m.cost_usd is not None else "unpriced",
                pct(m.share_of_calls),
                pct(m.share_of_cost),
            ]
            for m in report.models
        ],
        numeric=range(1, 7),
    )


def kpi_grid(report: DailyReport, esc: Escape = visible) -> Grid:
    """Status cells hold the raw status: each format shows it with :func:`status_word`."""
    return _grid(
        "KPI scorecard",
        ["KPI", "target", "day", "day status", "month to date", "month status"],
        [
            [
                kpi_title(k.kpi, esc),
                kpi_target(k),
                kpi_value(k, k.day_actual),
                k.day_status,
                kpi_value(k, k.mtd_actual),
                k.mtd_status,
            ]
            for k in report.kpis
        ],
        numeric=(1, 2, 4),
        status=(3, 5),
    )


def budget_grid(report: DailyReport, esc: Escape = visible) -> Grid:
    """The monthly budgets on the report day: spent, projected to month end, status."""
    return _grid(
        "Budgets (month to date, projected to month end)",
        ["budget", "monthly budget", "spent", "projected", "days left", "status"],
        [
            [
                esc(b.budget),
                usd(b.monthly_budget_usd),
                usd(b.mtd_spend_usd),
                usd(b.projected_usd),
                integer(b.days_left),
                b.status,
            ]
            for b in report.budgets
        ],
        numeric=(1, 2, 3, 4),
        status=(5,),
        empty="no budgets set (schemas/budgets.yaml)",
    )


def escalation_grid(report: DailyReport, esc: Escape = visible) -> Grid:
    return _grid(
        "Escalations by trigger",
        [
            "role",
            "trigger",
            "calls",
            "tasks",
            "cost",
            "baseline",
            "reviewed tasks",
            "false positives",
            "FP rate",
        ],
        [
            [
                esc(e.role),
                esc(e.trigger),
                integer(e.escalated_calls),
                integer(e.escalated_tasks),
                usd(e.cost_usd)
                + (f" (+{e.unpriced_calls:,} unpriced)" if e.unpriced_calls else ""),
                usd(e.baseline_cost_usd),
                integer(e.tasks_with_verdict),
                integer(e.false_positives),
                pct(e.false_positive_rate),
            ]
            for e in report.escalations
        ],
        numeric=range(2, 9),
        empty="no escalated calls this day",
    )


def roi_lines(report: DailyReport) -> list[str]:
    roi = report.roi
    if roi is None:
        return [f"{NA}: no priced calls this month so far"]
    return [
        f"observed cost reduction ({month_label(roi.month)} to {report.date}): "
        f"{pct(roi.observed_cost_reduction_pct)}",
        f"monthly spend before the strategy: {usd(roi.monthly_spend_before_usd)}; "
        f"implementation cost: {usd(roi.implementation_cost_usd)}",
        f"projected monthly savings: {usd(roi.monthly_savings_usd)}; over "
        f"{roi.horizon_months} months: {usd(roi.horizon_savings_usd)}; ROI: {pct(roi.roi)}",
        f"break-even: {break_even_text(report)}",
    ]


NO_WARNINGS = "none: every call priced, every role and trigger known, no rejected events"


def subtitle(report: DailyReport, esc: Escape = visible) -> str:
    policy = esc(report.policy_version) if report.policy_version else NA
    return (
        f"policy {policy} · default model {esc(report.default_model)} · "
        f"baseline {esc(report.baseline_model)} · data {report.first_date} to "
        f"{report.last_date}"
    )
