"""The named data-quality checks of one day: frames, suite parameters, skips, verdicts.

Each check is a set of expectations (``meta.check``) in the suite files of
``schemas/expectations/``; this module builds the frames they run on, fills their
``$PARAMETER``s from ``schemas/dq.yaml``, the routing policy, the price book and the day,
decides which checks are skipped (and why), runs the suites and folds the outcomes into one
verdict per check. Every failure and skip reason is one printable line
(:func:`~pipeline.safe_text.visible`): they name values of the data, paths and file names.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd

from pipeline._exceptions import ConfigError
from pipeline.dq.config import DqConfig
from pipeline.dq.gx import GxRunner, Outcome, Suite, load_suite
from pipeline.dq.lakeday import LakeDay, daily_event_counts, flush_frame, null_columns
from pipeline.lake import REJECTED_TABLE
from pipeline.policy import Policy
from pipeline.prices import PriceBook
from pipeline.safe_text import visible

__all__ = ["CHECKS", "CheckResult", "DayInputs", "run_checks", "SUITE_FRAMES"]

#: The named checks, in summary order, with what each one asserts.
CHECKS: dict[str, str] = {
    "schema": "every lake file of the day has the columns and types of pipeline/lake.py",
    "keys_not_null": "event_id, envelope, provider/model and kafka source columns are never null",
    "event_id_unique": "event_id is unique in fct_llm_calls and fct_task_feedback for the day",
    "value_bounds": "token counts 0..100,000,000, latency_ms >= 0, satisfaction 1..5",
    "escalation_consistency": "escalated calls name an escalation_trigger, others do not",
    "cache_tokens_sane": "input + cache tokens of a call fit max_prompt_tokens",
    "every_call_priced": "every call has a price in force for its provider/model at occurred_at",
    "known_roles_triggers": "roles and escalation triggers (of that role) exist in the routing policy",
    "occurred_at_in_partition": "occurred_at falls on the partition's UTC date",
    "reconciliation": "each flush covers its offsets exactly once; flushes of a partition abut",
    "warehouse_complete": "every event_id of the day's lake is in the warehouse facts",
    "rejected_rate": "dead-lettered messages / messages of the day's flushes under the threshold",
    "volume": "events of the day within a band of the trailing median",
    "freshness": "newest event of today is recent (today only)",
}

#: suite file stem -> (frame, the column naming a failing row in the summary)
SUITE_FRAMES: dict[str, str | None] = {
    "lake_files": "file",
    "llm_call": "event_id",
    "task_feedback": "event_id",
    "rejected": "source",
    "fct_llm_calls": "event_id",
    "fct_task_feedback": "event_id",
    "flushes": "flush",
    "day_metrics": "date",
}

Status = Literal["pass", "fail", "skip"]


@dataclass
class CheckResult:
    """The verdict of one named check."""

    name: str
    status: Status
    description: str
    failures: list[str] = field(default_factory=list)
    reason: str | None = None  # why it was skipped

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "description": self.description,
            "failures": self.failures,
            "reason": self.reason,
        }


@dataclass
class DayInputs:
    """Everything the checks read, loaded by the caller."""

    day: dt.date
    now: dt.datetime
    lake_day: LakeDay
    policy: Policy
    prices: PriceBook
    warehouse: Path
    config: DqConfig


def _unpriced_models(calls: pd.DataFrame, prices: PriceBook, policy: Policy) -> pd.Series:
    """Per call, what has no price in force at occurred_at, else None.

    ``provider/model`` when the call's own model has none; ``baseline provider/model`` when
    the policy's baseline model has none (no baseline cost, so no savings: the warehouse
    counts such a call as unpriced too).
    """
    result = pd.Series([None] * len(calls), index=calls.index, dtype=object)
    if calls.empty:
        return result
    keyed = pd.DataFrame(
        {
            "i": range(len(calls)),
            "provider": calls["provider"].astype(object),
            "model": calls["model"].astype(object),
            "occurred_at": calls["occurred_at"],
        }
    )
    baseline = policy.baseline_model
    con = duckdb.connect()
    try:
        con.register("calls", keyed)
        con.register("prices", prices.to_arrow())
        rows = con.execute(
            """
            with in_force as (
                select c.i, c.provider, c.model,
                       exists (select 1 from prices p
                               where p.provider = c.provider and p.model = c.model
                                 and p.effective_from <= c.occurred_at
                                 and (p.effective_to is null or c.occurred_at < p.effective_to)
                       ) as has_price,
                       exists (select 1 from prices p
                               where p.provider = $provider and p.model = $model
                                 and p.effective_from <= c.occurred_at
                                 and (p.effective_to is null or c.occurred_at < p.effective_to)
                       ) as has_baseline
                from calls c
                where c.provider is not null and c.model is not null and c.occurred_at is not null
            )
            select i, case when not has_price then provider || '/' || model
                           else 'baseline ' || $provider || '/' || $model end
            from in_force where not (has_price and has_baseline)
        """,
            {"provider": baseline.provider, "model": baseline.model},
        ).fetchall()
    finally:
        con.close()
    for i, name in rows:
        result.iloc[i] = name
    return result


def _warehouse_frames(
    warehouse: Path, day: dt.date, lake_ids: dict[str, pd.Series]
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.Series]]:
    """The day's fact rows and, per lake table, whether each lake event_id is in the facts."""
    from pipeline.warehouse import open_warehouse_readonly

    con = open_warehouse_readonly(warehouse)
    facts: dict[str, pd.DataFrame] = {}
    present: dict[str, pd.Series] = {}
    try:
        for table, fact in (("llm_call", "fct_llm_calls"), ("task_feedback", "fct_task_feedback")):
            try:
                facts[fact] = con.execute(
                    f"select event_id from {fact} where event_date = ? order by event_id", [day]
                ).df()
                ids = pd.DataFrame({"event_id": lake_ids[table].dropna().astype(object).unique()})
                con.register("lake_ids", ids)
                known = {
                    r[0]
                    for r in con.execute(
                        f"select l.event_id from lake_ids l semi join {fact} f on f.event_id = l.event_id"
                    ).fetchall()
                }
                con.unregister("lake_ids")
            except duckdb.CatalogException:
                raise ConfigError(
                    f"the warehouse {warehouse} has no table {fact}: rebuild it with "
                    "`modelmeter build`"
                ) from None
            present[table] = lake_ids[table].map(
                lambda v, known=known: None if v is None or pd.isna(v) else v in known
            )
    finally:
        con.close()
    return facts, present


def _day_metrics(inputs: DayInputs, flushes: pd.DataFrame, skipped: dict[str, str]) -> pd.DataFrame:
    """The one-row frame of day-level numbers; adds to ``skipped`` the checks that cannot apply."""
    day, cfg = inputs.day, inputs.config
    calls, feedback = inputs.lake_day.tables["llm_call"], inputs.lake_day.tables["task_feedback"]
    ids = pd.concat([calls["event_id"], feedback["event_id"]]).dropna()
    events = int(ids.nunique())
    today = inputs.now.astimezone(dt.UTC).date()

    expected = int(flushes["expected_offsets"].sum()) if not flushes.empty else 0
    rejected = int(flushes["rejected_rows"].sum()) if not flushes.empty else 0
    rejected_rate = rejected / expected if expected else None
    if rejected_rate is None:
        skipped["rejected_rate"] = "no flush of the day has a valid file name"

    volume_ratio = median = None
    if day >= today:
        skipped["volume"] = "the day is still in progress (checked as today)"
    else:
        history_days = [day - dt.timedelta(days=n) for n in range(1, cfg.volume.trailing_days + 1)]
        history = daily_event_counts(inputs.lake_day.lake, history_days)
        if len(history) < cfg.volume.min_history_days:
            skipped["volume"] = (
                f"{len(history)} day(s) with data in the trailing "
                f"{cfg.volume.trailing_days}, need {cfg.volume.min_history_days}"
            )
        else:
            median = statistics.median(history.values())
            if median == 0:
                skipped["volume"] = "the trailing days hold no events"
            else:
                volume_ratio = events / median

    age = None
    if day != today:
        skipped["freshness"] = "only checked for today (UTC)"
    else:
        newest = pd.concat([calls["occurred_at"], feedback["occurred_at"]]).dropna()
        if not newest.empty:
            age = (pd.Timestamp(inputs.now).tz_convert("UTC") - newest.max()).total_seconds() / 60
    return pd.DataFrame(
        [
            {
                "date": day.isoformat(),
                "events": events,
                "messages": expected,
                "rejected_messages": rejected,
                "rejected_rate": rejected_rate,
                "trailing_median_events": median,
                "volume_ratio": volume_ratio,
                "freshness_age_minutes": age,
            }
        ]
    )


def _suites(config: DqConfig) -> dict[str, Suite]:
    suites = {}
    for stem in SUITE_FRAMES:
        path = config.expectations_dir / f"{stem}.json"
        suites[stem] = load_suite(path)
    unknown = {c for s in suites.values() for c in s.checks} - set(CHECKS)
    if unknown:
        raise ConfigError(
            f"{config.expectations_dir}: unknown check name(s) in meta.check: "
            f"{', '.join(sorted(unknown))} (known: {', '.join(CHECKS)})"
        )
    missing = set(CHECKS) - {c for s in suites.values() for c in s.checks}
    if missing:
        raise ConfigError(
            f"{config.expectations_dir}: no expectation for check(s) {', '.join(sorted(missing))}"
        )
    return suites


def run_checks(inputs: DayInputs, runner: GxRunner) -> list[CheckResult]:
    """Run every named check of the day; one CheckResult per entry of CHECKS, in order."""
    cfg, day, lake_day = inputs.config, inputs.day, inputs.lake_day
    suites = _suites(cfg)
    skipped: dict[str, str] = {}

    calls = lake_day.tables["llm_call"].copy()
    feedback = lake_day.tables["task_feedback"].copy()
    rejected = lake_day.tables[REJECTED_TABLE].copy()
    for frame, table in (
        (calls, "llm_call"),
        (feedback, "task_feedback"),
        (rejected, REJECTED_TABLE),
    ):
        frame["null_columns"] = null_columns(frame, table)
    token_columns = [
        "input_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
    ]
    calls["prompt_tokens"] = calls[token_columns].astype("Int64").sum(axis=1, min_count=1)
    calls["unpriced_model"] = _unpriced_models(calls, inputs.prices, inputs.policy)
    calls["role_trigger"] = [
        f"{role}:{trigger}" if isinstance(trigger, str) else None
        for role, trigger in zip(calls["role"], calls["escalation_trigger"], strict=True)
    ]
    rejected["source"] = [
        f"{t}:{p}:{o}"
        for t, p, o in zip(
            rejected["kafka_topic"],
            rejected["kafka_partition"],
            rejected["kafka_offset"],
            strict=True,
        )
    ]

    facts: dict[str, pd.DataFrame] = {}
    if inputs.warehouse.exists():
        facts, present = _warehouse_frames(
            inputs.warehouse,
            day,
            {"llm_call": calls["event_id"], "task_feedback": feedback["event_id"]},
        )
        calls["in_warehouse"] = present["llm_call"]
        feedback["in_warehouse"] = present["task_feedback"]
    else:
        reason = f"no warehouse at {inputs.warehouse} (run `modelmeter build`)"
        skipped["event_id_unique"] = skipped["warehouse_complete"] = reason
        calls["in_warehouse"] = feedback["in_warehouse"] = None

    flushes = flush_frame(lake_day.lake, lake_day.flush_names, known_offsets=lake_day.offsets)
    metrics = _day_metrics(inputs, flushes, skipped)

    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    policy = inputs.policy
    triggers = policy.triggers()
    # the unresolved trigger (an escalation whose source records no trigger) is known for every
    # role that can escalate; the unresolved role is not a role: its calls fail the check
    unattributed = [
        f"{role.name}:{policy.unresolved_trigger}"
        for role in policy.roles.values()
        if role.premium is not None
    ]
    parameters: dict[str, Any] = {
        "day_start": start.isoformat(),
        "day_end": (start + dt.timedelta(days=1)).isoformat(),
        "known_roles": sorted(policy.roles),
        "known_triggers": sorted({t.id for _, t in triggers} | {policy.unresolved_trigger}),
        "known_role_triggers": sorted([f"{role}:{t.id}" for role, t in triggers] + unattributed),
        "max_prompt_tokens": cfg.max_prompt_tokens,
        "max_rejected_rate": cfg.max_rejected_rate,
        "volume_min_ratio": cfg.volume.min_ratio,
        "volume_max_ratio": cfg.volume.max_ratio,
        "freshness_max_age_minutes": cfg.freshness.max_age_minutes,
    }
    frames: dict[str, pd.DataFrame] = {
        "lake_files": lake_day.files,
        "llm_call": calls,
        "task_feedback": feedback,
        "rejected": rejected,
        "flushes": flushes,
        "day_metrics": metrics,
        **facts,
    }
    outcomes: list[Outcome] = []
    for stem, index_column in SUITE_FRAMES.items():
        if stem not in frames:
            continue  # warehouse frames without a warehouse
        suite = suites[stem].without(set(skipped))
        outcomes += runner.validate(
            stem, frames[stem], suite, parameters=parameters, index_column=index_column
        )

    results = []
    for name, description in CHECKS.items():
        if name in skipped:
            results.append(CheckResult(name, "skip", description, reason=visible(skipped[name])))
            continue
        failures = [
            visible(o.message or o.expectation)
            for o in outcomes
            if o.check == name and not o.success
        ]
        results.append(CheckResult(name, "fail" if failures else "pass", description, failures))
    return results
