"""The report's "Policy versions" section: the month's versions side by side (a canary).

The figures and intervals are the warehouse's (``mart_policy_versions``, sql/marts/): this
module selects the report month's rows, turns the interval bounds that the warehouse computes
in floating point (square roots: statistics, never money) into decimals rounded to 12
places, and words the verdict, e.g. ``2026.11.2 costs 12.3% +- 4.1% less per task than
2026.11.1 (95% CI); satisfaction not lower at 95%``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import duckdb

from pipeline.report import formatting as f
from pipeline.report.figures import (
    PolicyVersions,
    VersionComparison,
    VersionDifference,
    VersionRow,
)
from pipeline.safe_text import visible

__all__ = [
    "METHOD",
    "load_policy_versions",
    "version_grid",
    "comparison_grid",
    "verdict_text",
    "section_lines",
]

METHOD = (
    "95% confidence intervals of candidate - baseline: Welch's unequal-variance standard "
    "error with the normal quantile 1.96 for means (cost per task, satisfaction), Newcombe's "
    "hybrid score interval (from Wilson intervals) for proportions, the delta method for the "
    "relative cost change; a task belongs to the version of its first call"
)

_Q12 = Decimal("1E-12")


def _dec(value: Any) -> Decimal | None:
    """A warehouse value as a Decimal; a DOUBLE statistic rounded to 12 places."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(float(value))).quantize(_Q12, rounding=ROUND_HALF_EVEN)


def _diff(row: dict[str, Any], name: str, suffix: str = "") -> VersionDifference:
    return VersionDifference(
        _dec(row[f"{name}{suffix}"]),
        _dec(row[f"{name}_low{suffix}"]),
        _dec(row[f"{name}_high{suffix}"]),
    )


_ROW_FIELDS = frozenset(field.name for field in dataclasses.fields(VersionRow))


def load_policy_versions(con: duckdb.DuckDBPyConnection, day: dt.date) -> PolicyVersions | None:
    """The comparison of ``day``'s month (its window starting on or before ``day``); None
    when the month has one policy version."""
    cur = con.execute(
        "select * from mart_policy_versions where month = ? and window_start <= ? "
        "order by is_baseline desc, policy_version",
        [day.replace(day=1), day],
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if not rows:
        return None
    versions = tuple(VersionRow(**{k: v for k, v in r.items() if k in _ROW_FIELDS}) for r in rows)
    comparisons = []
    for r in rows:
        if r["is_baseline"]:
            continue
        c = VersionComparison(
            candidate=r["policy_version"],
            baseline=r["baseline_version"],
            cost_per_task_usd=_diff(r, "cost_per_task_diff", "_usd"),
            cost_per_task_change=_diff(r, "cost_per_task_change"),
            escalation_rate=_diff(r, "escalation_rate_diff"),
            false_positive_rate=_diff(r, "false_positive_rate_diff"),
            satisfaction=_diff(r, "satisfaction_diff"),
            review_consistency=_diff(r, "review_consistency_diff"),
            verdict="",
        )
        comparisons.append(_with_verdict(c))
    first = rows[0]
    return PolicyVersions(
        month=first["month"],
        window_start=first["window_start"],
        window_end=first["window_end"],
        concurrent=bool(first["concurrent"]),
        baseline_version=first["baseline_version"],
        versions=versions,
        comparisons=tuple(comparisons),
        method=METHOD,
    )


def _with_verdict(c: VersionComparison) -> VersionComparison:
    return dataclasses.replace(c, verdict=verdict_text(c))


def _pct_abs(value: Decimal) -> str:
    return f.pct(abs(value))


def _quality(d: VersionDifference, name: str, worse_if_higher: bool = False) -> str | None:
    if d.low is None or d.high is None:
        return None
    if d.low > 0:
        word = "higher"
    elif d.high < 0:
        word = "lower"
    else:
        return f"{name} not {'higher' if worse_if_higher else 'lower'} at 95%"
    return f"{name} {word} at 95%"


def verdict_text(c: VersionComparison, esc: f.Escape = visible) -> str:
    """The plain sentence: the cost per task change with its interval, then the quality
    figures (satisfaction, review consistency, false positives) at 95%."""
    cand, base = esc(c.candidate), esc(c.baseline)
    ch = c.cost_per_task_change
    if ch.estimate is None or ch.low is None or ch.high is None:
        parts = [f"{cand}: cost per task not comparable with {base} (no priced tasks)"]
    else:
        half = (ch.high - ch.low) / 2
        size = f"{_pct_abs(ch.estimate)} +- {_pct_abs(half)}"
        if ch.high < 0:
            parts = [f"{cand} costs {size} less per task than {base} (95% CI)"]
        elif ch.low > 0:
            parts = [f"{cand} costs {size} more per task than {base} (95% CI)"]
        else:
            sign = "-" if ch.estimate < 0 else "+"
            parts = [f"{cand}'s cost per task is not different from {base}'s at 95% ({sign}{size})"]
    for d, name, worse_if_higher in (
        (c.satisfaction, "satisfaction", False),
        (c.review_consistency, "review consistency", False),
        (c.false_positive_rate, "false-positive rate", True),
    ):
        text = _quality(d, name, worse_if_higher)
        if text:
            parts.append(text)
    return "; ".join(parts)


def _ci(d: VersionDifference, fmt: Any) -> str:
    if d.estimate is None:
        return f.NA
    if d.low is None or d.high is None:
        return fmt(d.estimate)
    return f"{fmt(d.estimate)} [{fmt(d.low)}, {fmt(d.high)}]"


def _signed_pct(value: Decimal) -> str:
    text = f.pct(value)
    return text if text.startswith("-") or value == 0 else f"+{text}"


def _score(value: Decimal | None) -> str:
    if value is None:
        return f.NA
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _signed_score(value: Decimal) -> str:
    text = _score(value)
    return text if text.startswith("-") else f"+{text}"


def version_grid(pv: PolicyVersions, esc: f.Escape = visible) -> f.Grid:
    rows = [
        (
            esc(v.policy_version) + (" (baseline)" if v.is_baseline else ""),
            f.integer(v.tasks),
            f.integer(v.calls),
            _usd4(v.cost_per_task_usd),
            f.pct(v.escalation_rate),
            f.pct(v.false_positive_rate),
            _score(v.satisfaction_avg),
            f.pct(v.review_consistency),
        )
        for v in pv.versions
    ]
    return f.Grid(
        f"Policy versions, {pv.window_start} to {pv.window_end}",
        (
            "version",
            "tasks",
            "calls",
            "cost per task",
            "escalation rate",
            "false positives",
            "satisfaction",
            "review consistency",
        ),
        tuple(rows),
        frozenset(range(1, 8)),
    )


def _usd4(value: Decimal | None) -> str:
    """Cost per task to a hundredth of a cent (a task costs cents)."""
    if value is None:
        return f.NA
    q = value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
    return f"-${abs(q):,.4f}" if q < 0 else f"${q:,.4f}"


def _signed_usd4(value: Decimal) -> str:
    text = _usd4(value)
    return text if text.startswith("-") else f"+{text}"


def comparison_grid(pv: PolicyVersions, esc: f.Escape = visible) -> f.Grid:
    rows = [
        (
            f"{esc(c.candidate)} - {esc(c.baseline)}",
            _ci(c.cost_per_task_usd, _signed_usd4),
            _ci(c.cost_per_task_change, _signed_pct),
            _ci(c.escalation_rate, _signed_pct),
            _ci(c.false_positive_rate, _signed_pct),
            _ci(c.satisfaction, _signed_score),
            _ci(c.review_consistency, _signed_pct),
        )
        for c in pv.comparisons
    ]
    return f.Grid(
        "Difference candidate - baseline [95% CI]",
        (
            "versions",
            "cost per task",
            "cost change",
            "escalation rate",
            "false positives",
            "satisfaction",
            "review consistency",
        ),
        tuple(rows),
        frozenset(range(1, 7)),
    )


def section_lines(pv: PolicyVersions, esc: f.Escape = visible) -> list[str]:
    """The verdicts, the window and the method, one line each (every format lists them)."""
    lines = [verdict_text(c, esc) + "." for c in pv.comparisons]
    if pv.concurrent:
        lines.append(
            f"window: {pv.window_start} to {pv.window_end}, the days on which the versions "
            "routed tasks side by side"
        )
    else:
        lines.append(
            f"window: {pv.window_start} to {pv.window_end}; the versions never ran on the same "
            "day: a before/after comparison, confounded by time"
        )
    lines.append(f"method: {pv.method}")
    return lines
