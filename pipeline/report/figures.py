"""The daily report as typed, immutable figures: what :func:`pipeline.report.data.load_daily_report`
returns and every renderer reads. Money and ratios are exact :class:`~decimal.Decimal`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = [
    "SCHEMA_VERSION",
    "TREND_DAYS",
    "DailyReport",
    "Headline",
    "RoleRow",
    "ModelRow",
    "RoleModelCost",
    "KpiRow",
    "EscalationRow",
    "Roi",
    "TrendPoint",
    "UnpricedModel",
    "UnknownRole",
    "UnknownTrigger",
    "DataWarnings",
    "RetiredModelCalls",
    "BudgetRow",
    "VersionRow",
    "VersionDifference",
    "VersionComparison",
    "PolicyVersions",
    "find_kpi",
]

SCHEMA_VERSION = 1
TREND_DAYS = 30


@dataclass(frozen=True, slots=True)
class Headline:
    """The day in one line: cost against the all-Claude baseline, and the month so far."""

    calls: int
    escalated_calls: int
    unpriced_calls: int  # left out of every money figure (never $0)
    cost_usd: Decimal | None  # None only when no call of the day is priced
    baseline_cost_usd: Decimal | None
    savings_usd: Decimal | None
    savings_pct: Decimal | None  # ratio 0..1
    month_start: dt.date
    mtd_cost_usd: Decimal | None
    mtd_baseline_cost_usd: Decimal | None
    mtd_savings_usd: Decimal | None
    mtd_cost_reduction_pct: Decimal | None  # ratio 0..1, the cost_reduction_pct KPI month to date
    target_min: Decimal | None
    target_max: Decimal | None
    mtd_status: str  # met | missed | no_data


@dataclass(frozen=True, slots=True)
class RoleRow:
    role: str
    is_known_role: bool
    calls: int
    escalated_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    baseline_cost_usd: Decimal | None
    savings_usd: Decimal | None
    savings_pct: Decimal | None


@dataclass(frozen=True, slots=True)
class ModelRow:
    provider: str
    model: str
    is_default_model: bool
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None  # None = unpriced, never $0
    share_of_calls: Decimal | None
    share_of_cost: Decimal | None


@dataclass(frozen=True, slots=True)
class RoleModelCost:
    """Cost of one (role, model) cell: the segments of the stacked cost-by-role chart."""

    role: str
    provider: str
    model: str
    calls: int
    cost_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class KpiRow:
    kpi: str
    description: str
    unit: str  # ratio | score | count
    target_min: Decimal | None
    target_max: Decimal | None
    min_inclusive: bool
    max_inclusive: bool
    day_actual: Decimal | None
    day_status: str  # met | missed | no_data
    mtd_actual: Decimal | None
    mtd_status: str


@dataclass(frozen=True, slots=True)
class EscalationRow:
    role: str
    trigger: str
    escalated_calls: int
    escalated_tasks: int
    unpriced_calls: int
    cost_usd: Decimal | None
    baseline_cost_usd: Decimal | None
    tasks_with_verdict: int
    false_positives: int
    false_positive_rate: Decimal | None  # None when no verdict


@dataclass(frozen=True, slots=True)
class Roi:
    """The policy's ROI projection at the month-to-date cost reduction (pipeline.policy)."""

    month: dt.date
    observed_cost_reduction_pct: Decimal
    implementation_cost_usd: Decimal
    monthly_spend_before_usd: Decimal
    horizon_months: int
    monthly_savings_usd: Decimal
    horizon_savings_usd: Decimal
    roi: Decimal  # ratio: (horizon savings - implementation cost) / implementation cost
    break_even_month: int | None  # months after go-live; None = not within the horizon


@dataclass(frozen=True, slots=True)
class TrendPoint:
    date: dt.date
    calls: int
    cost_usd: Decimal | None
    baseline_cost_usd: Decimal | None
    savings_usd: Decimal | None
    savings_pct: Decimal | None
    default_model_share: Decimal | None
    unpriced_calls: int


@dataclass(frozen=True, slots=True)
class UnpricedModel:
    provider: str
    model: str
    calls: int


@dataclass(frozen=True, slots=True)
class UnknownRole:
    role: str
    events: int  # llm_call and task_feedback events of the role


@dataclass(frozen=True, slots=True)
class UnknownTrigger:
    role: str
    trigger: str
    calls: int


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One monthly budget on the report day (mart_budget_status)."""

    budget: str  # total, role:<role>, model:<provider>/<model>
    monthly_budget_usd: Decimal
    mtd_spend_usd: Decimal
    projected_usd: Decimal
    days_left: int
    status: str  # ok | projected_over | over


@dataclass(frozen=True, slots=True)
class RetiredModelCalls:
    provider: str
    model: str
    retired_on: dt.date
    successor: str | None
    calls: int  # calls of the day, made on or after the retirement date


@dataclass(frozen=True, slots=True)
class DataWarnings:
    unpriced: tuple[UnpricedModel, ...]
    unknown_roles: tuple[UnknownRole, ...]
    unknown_triggers: tuple[UnknownTrigger, ...]
    rejected_events: int  # dead-lettered messages received that day
    duplicate_events: int  # extra copies landed by producer retries (counted once; not a warning)
    day_last_ingested_at: dt.datetime | None  # when the day's newest event landed (UTC)
    lake_freshness: dt.datetime | None  # newest ingested_at in the whole lake (UTC)
    built_at: dt.datetime | None  # when the warehouse was built (UTC)
    # events of the policy's unresolved role: a collector found no role for them (a warning)
    unassigned: UnknownRole | None = None
    # escalated calls of the policy's unresolved trigger, per role: their source records no
    # trigger (Claude Code transcripts); shown apart from the unknown triggers
    unattributed: tuple[UnknownTrigger, ...] = ()
    # calls to a model on or after its retirement date (schemas/models.yaml)
    retired_models: tuple[RetiredModelCalls, ...] = ()

    @property
    def count(self) -> int:
        """How many warnings there are (0 = a clean day)."""
        return (
            len(self.unpriced)
            + len(self.unknown_roles)
            + len(self.unknown_triggers)
            + (1 if self.unassigned else 0)
            + len(self.unattributed)
            + len(self.retired_models)
            + (1 if self.rejected_events else 0)
        )


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One policy version's figures over the comparison window (mart_policy_versions)."""

    policy_version: str
    is_baseline: bool
    tasks: int
    calls: int
    unpriced_calls: int
    priced_tasks: int  # tasks whose every call is priced: the cost per task is over these
    cost_usd: Decimal | None
    cost_per_task_usd: Decimal | None
    escalated_tasks: int
    escalation_rate: Decimal | None
    escalated_tasks_with_verdict: int
    false_positives: int
    false_positive_rate: Decimal | None
    satisfaction_responses: int
    satisfaction_avg: Decimal | None
    reviews: int
    review_consistency: Decimal | None


@dataclass(frozen=True, slots=True)
class VersionDifference:
    """candidate - baseline, with its 95 % confidence interval (None: not computable)."""

    estimate: Decimal | None
    low: Decimal | None
    high: Decimal | None


@dataclass(frozen=True, slots=True)
class VersionComparison:
    candidate: str
    baseline: str
    cost_per_task_usd: VersionDifference  # USD
    cost_per_task_change: VersionDifference  # ratio: candidate / baseline - 1
    escalation_rate: VersionDifference
    false_positive_rate: VersionDifference
    satisfaction: VersionDifference
    review_consistency: VersionDifference
    verdict: str  # the plain sentence


@dataclass(frozen=True, slots=True)
class PolicyVersions:
    """The report month's policy versions side by side (docs/report.md)."""

    month: dt.date
    window_start: dt.date
    window_end: dt.date
    concurrent: bool  # the versions ran on the same days (a canary), not one after the other
    baseline_version: str
    versions: tuple[VersionRow, ...]
    comparisons: tuple[VersionComparison, ...]
    method: str


@dataclass(frozen=True, slots=True)
class DailyReport:
    date: dt.date
    policy_version: str | None
    default_model: str  # "provider/model"
    baseline_model: str
    first_date: dt.date  # range of days that have data
    last_date: dt.date
    headline: Headline
    roles: tuple[RoleRow, ...]
    models: tuple[ModelRow, ...]
    cost_by_role_model: tuple[RoleModelCost, ...]
    kpis: tuple[KpiRow, ...]
    escalations: tuple[EscalationRow, ...]
    roi: Roi | None  # None when no call of the month so far is priced
    trend: tuple[TrendPoint, ...]  # TREND_DAYS days ending at `date`, one point per day
    warnings: DataWarnings
    schema_version: int = field(default=SCHEMA_VERSION)
    # the month's policy versions compared; None when the month has one version
    policy_versions: PolicyVersions | None = None
    # the monthly budgets on the report day (schemas/budgets.yaml); () when none are set
    budgets: tuple[BudgetRow, ...] = ()

    def kpi(self, name: str) -> KpiRow | None:
        """The row of KPI ``name``; None when the policy sets no target for it."""
        return find_kpi(self.kpis, name)


def find_kpi(kpis: Sequence[KpiRow], name: str) -> KpiRow | None:
    return next((k for k in kpis if k.kpi == name), None)
