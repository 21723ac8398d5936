"""The warehouse tables built in Python rather than by a model of ``sql/``.

Seven come from the input files and exist before any SQL model runs (the models depend on
them); three are made after the models: the ROI projection (Decimal arithmetic shared with
the report), the lake manifest (a file listing) and the build's own record.
:data:`PYTHON_TABLES` lists them, each with the function that makes it; ``sql/README.md``
lists them for readers of ``sql/`` (a test keeps the two lists equal).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from pipeline.budgets import Budgets
from pipeline.lake import REJECTED_TABLE
from pipeline.model_catalog import ModelCatalogue
from pipeline.policy import ModelRef, Policy, roi_projection
from pipeline.prices import PriceBook
from pipeline.warehouse.duckdb_helpers import create_from_arrow
from pipeline.warehouse.lake_sources import LakeFile, lake_location
from pipeline.warehouse.runner import BuildResult

__all__ = [
    "PYTHON_TABLES",
    "BuildInputs",
    "PythonTable",
    "build_tables",
    "input_tables",
]

_MONEY = pa.decimal128(38, 12)


@dataclass(frozen=True, slots=True)
class BuildInputs:
    """What the Python-built tables are made from."""

    settings: Any
    book: PriceBook
    policy: Policy
    policy_sha256: str
    catalogue: ModelCatalogue
    budgets: Budgets
    files: dict[str, list[LakeFile]]
    result: BuildResult
    started: float  # time.monotonic() when the build started


Builder = Callable[[BuildInputs, duckdb.DuckDBPyConnection], pa.Table]


@dataclass(frozen=True, slots=True)
class PythonTable:
    """A table the build makes in Python: when, from what, and the function that makes it."""

    name: str
    stage: Literal["before models", "after models"]
    reads: tuple[str, ...]  # the SQL models it reads (after the models only)
    build: Builder


def _ref(model: ModelRef | None) -> tuple[str | None, str | None]:
    return (model.provider, model.model) if model is not None else (None, None)


def dim_prices(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The price book as loaded (one row per provider, model, effective_from)."""
    return inputs.book.to_arrow()


def dim_policy(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row: the policy's version, default/premium/baseline models, ROI inputs and the ids
    collectors record when a source cannot tell (``unresolved``)."""
    policy = inputs.policy
    default, premium, baseline = (
        _ref(policy.default_model),
        _ref(policy.premium_model),
        _ref(policy.baseline_model),
    )
    return pa.table(
        {
            "policy_version": [policy.version],
            "default_provider": [default[0]],
            "default_model": [default[1]],
            "premium_provider": [premium[0]],
            "premium_model": [premium[1]],
            "baseline_provider": [baseline[0]],
            "baseline_model": [baseline[1]],
            "implementation_cost_usd": pa.array([policy.roi.implementation_cost_usd], _MONEY),
            "monthly_spend_before_usd": pa.array([policy.roi.monthly_spend_before_usd], _MONEY),
            "horizon_months": pa.array([policy.roi.horizon_months], pa.int32()),
            "unresolved_role": [policy.unresolved_role],
            "unresolved_trigger": [policy.unresolved_trigger],
        }
    )


def dim_models(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per model of the model catalogue: its lifecycle dates and successor."""
    models = sorted(inputs.catalogue.models.values(), key=lambda m: (m.provider, m.model))
    return pa.table(
        {
            "provider": pa.array([m.provider for m in models], pa.string()),
            "model": pa.array([m.model for m in models], pa.string()),
            "deprecated_on": pa.array([m.deprecated_on for m in models], pa.date32()),
            "retired_on": pa.array([m.retired_on for m in models], pa.date32()),
            "successor": pa.array([m.successor for m in models], pa.string()),
        }
    )


def dim_budgets(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per monthly budget (schemas/budgets.yaml), with the projection's window."""
    budgets = inputs.budgets.budgets
    return pa.table(
        {
            "budget": pa.array([b.name for b in budgets], pa.string()),
            "scope": pa.array([b.scope for b in budgets], pa.string()),
            "role": pa.array([b.role for b in budgets], pa.string()),
            "provider": pa.array([b.provider for b in budgets], pa.string()),
            "model": pa.array([b.model for b in budgets], pa.string()),
            "monthly_budget_usd": pa.array([b.monthly_usd for b in budgets], _MONEY),
            "trailing_days": pa.array([inputs.budgets.trailing_days] * len(budgets), pa.int32()),
        }
    )


def dim_roles(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per role of the policy."""
    roles = list(inputs.policy.roles.values())
    return pa.table(
        {
            "role": pa.array([r.name for r in roles], pa.string()),
            "primary_provider": pa.array([r.primary.provider for r in roles], pa.string()),
            "primary_model": pa.array([r.primary.model for r in roles], pa.string()),
            "premium_provider": pa.array([_ref(r.premium)[0] for r in roles], pa.string()),
            "premium_model": pa.array([_ref(r.premium)[1] for r in roles], pa.string()),
            "triggers": pa.array([len(r.triggers) for r in roles], pa.int32()),
            "description": pa.array([r.description for r in roles], pa.string()),
        }
    )


def dim_triggers(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per (role, escalation trigger), in policy order."""
    triggers = [
        (role.name, order, t)
        for role in inputs.policy.roles.values()
        for order, t in enumerate(role.triggers, 1)
    ]
    return pa.table(
        {
            "role": pa.array([r for r, _, _ in triggers], pa.string()),
            "trigger_id": pa.array([t.id for _, _, t in triggers], pa.string()),
            "trigger_order": pa.array([o for _, o, _ in triggers], pa.int32()),
            "description": pa.array([t.description for _, _, t in triggers], pa.string()),
            "rule": pa.array([str(t.rule) for _, _, t in triggers], pa.string()),
        }
    )


def dim_kpi_targets(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per KPI with the policy's target band."""
    targets = list(inputs.policy.kpi_targets.values())
    return pa.table(
        {
            "kpi": pa.array([t.kpi for t in targets], pa.string()),
            "target_min": pa.array([t.min for t in targets], _MONEY),
            "target_max": pa.array([t.max for t in targets], _MONEY),
            "min_inclusive": pa.array([t.min_inclusive for t in targets], pa.bool_()),
            "max_inclusive": pa.array([t.max_inclusive for t in targets], pa.bool_()),
            "unit": pa.array([t.unit for t in targets], pa.string()),
            "description": pa.array([t.description for t in targets], pa.string()),
        }
    )


def mart_roi(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Per month, the observed cost reduction projected with :func:`pipeline.policy.roi_projection`."""
    months = con.execute("""
        select
            components.period_start as month,
            components.cost_usd,
            components.baseline_cost_usd,
            components.savings_usd,
            kpi.actual as cost_reduction
        from mart_kpi_components as components
        left join kpi_monthly as kpi
            on kpi.month = components.period_start and kpi.kpi = 'cost_reduction_pct'
        where components.period = 'month'
        order by month
    """).fetchall()
    roi = inputs.policy.roi
    rows: dict[str, list[Any]] = {
        name: []
        for name in (
            "month",
            "cost_usd",
            "baseline_cost_usd",
            "savings_usd",
            "cost_reduction",
            "implementation_cost_usd",
            "monthly_spend_before_usd",
            "horizon_months",
            "projected_monthly_savings_usd",
            "projected_horizon_savings_usd",
            "projected_roi",
            "break_even_month",
        )
    }
    for month, cost, baseline, savings, reduction in months:
        projection = (
            roi_projection(roi, reduction).at_money_scale() if reduction is not None else None
        )
        for name, value in (
            ("month", month),
            ("cost_usd", cost),
            ("baseline_cost_usd", baseline),
            ("savings_usd", savings),
            ("cost_reduction", reduction),
            ("implementation_cost_usd", roi.implementation_cost_usd),
            ("monthly_spend_before_usd", roi.monthly_spend_before_usd),
            ("horizon_months", roi.horizon_months),
            ("projected_monthly_savings_usd", projection and projection.monthly_savings_usd),
            ("projected_horizon_savings_usd", projection and projection.horizon_savings_usd),
            ("projected_roi", projection and projection.roi),
            ("break_even_month", projection and projection.break_even_month),
        ):
            rows[name].append(value)
    types = {"month": pa.date32(), "horizon_months": pa.int32(), "break_even_month": pa.int32()}
    return pa.table(
        {name: pa.array(values, types.get(name, _MONEY)) for name, values in rows.items()}
    )


def mart_lake_manifest(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per lake file: what the next incremental build compares the lake with."""
    every = [f for found in inputs.files.values() for f in found]
    return pa.table(
        {
            "lake_table": pa.array([f.table for f in every], pa.string()),
            "partition_value": pa.array([f.partition for f in every], pa.string()),
            "file_name": pa.array([f.path.name for f in every], pa.string()),
            "path": pa.array([str(f.path) for f in every], pa.string()),
            "bytes": pa.array([f.bytes for f in every], pa.int64()),
            "modified_ns": pa.array([f.mtime_ns for f in every], pa.int64()),
            "modified_at": pa.array(
                [dt.datetime.fromtimestamp(f.mtime_ns / 1e9, dt.UTC) for f in every],
                pa.timestamp("us", tz="UTC"),
            ),
            "directory_modified_ns": pa.array([f.directory_mtime_ns for f in every], pa.int64()),
        }
    )


def mart_build_info(inputs: BuildInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row: when and from what the warehouse was built (made last: it records the time)."""
    settings, result = inputs.settings, inputs.result
    result.seconds = time.monotonic() - inputs.started
    try:
        modelmeter_version = version("modelmeter")
    except PackageNotFoundError:
        modelmeter_version = "unknown"
    return pa.table(
        {
            "built_at": pa.array([result.built_at], pa.timestamp("us", tz="UTC")),
            "modelmeter_version": [modelmeter_version],
            "lake_path": [lake_location(settings.lake)],
            "llm_call_files": pa.array([result.lake_files.get("llm_call", 0)], pa.int64()),
            "task_feedback_files": pa.array(
                [result.lake_files.get("task_feedback", 0)], pa.int64()
            ),
            "rejected_files": pa.array([result.lake_files.get(REJECTED_TABLE, 0)], pa.int64()),
            "prices_path": [str(Path(settings.prices).resolve())],
            "prices_sha256": [inputs.book.sha256],
            "policy_path": [str(Path(settings.policy).resolve())],
            "policy_sha256": [inputs.policy_sha256],
            "policy_version": [inputs.policy.version],
            "build_seconds": pa.array(
                [Decimal(str(round(result.seconds, 3)))], pa.decimal128(18, 3)
            ),
            "build_mode": [result.mode],
            "rebuilt_partitions": pa.array(
                [sum(len(p) for p in result.rebuilt_partitions.values())], pa.int64()
            ),
            "inputs_fingerprint": [result.fingerprint],
        }
    )


#: Every Python-built table, in the order the build makes them.
PYTHON_TABLES: tuple[PythonTable, ...] = (
    PythonTable("dim_prices", "before models", (), dim_prices),
    PythonTable("dim_policy", "before models", (), dim_policy),
    PythonTable("dim_models", "before models", (), dim_models),
    PythonTable("dim_budgets", "before models", (), dim_budgets),
    PythonTable("dim_roles", "before models", (), dim_roles),
    PythonTable("dim_triggers", "before models", (), dim_triggers),
    PythonTable("dim_kpi_targets", "before models", (), dim_kpi_targets),
    PythonTable("mart_roi", "after models", ("mart_kpi_components", "kpi_monthly"), mart_roi),
    PythonTable("mart_lake_manifest", "after models", (), mart_lake_manifest),
    PythonTable("mart_build_info", "after models", (), mart_build_info),
)


def input_tables() -> list[str]:
    """The tables that exist before the SQL models run (the models may depend on them)."""
    return [t.name for t in PYTHON_TABLES if t.stage == "before models"]


def build_tables(
    con: duckdb.DuckDBPyConnection,
    inputs: BuildInputs,
    stage: Literal["before models", "after models"],
) -> list[str]:
    """Make the Python-built tables of ``stage``; their row counts go into ``inputs.result``."""
    made = []
    for spec in PYTHON_TABLES:
        if spec.stage != stage:
            continue
        table = spec.build(inputs, con)
        create_from_arrow(con, spec.name, table)
        inputs.result.rows[spec.name] = table.num_rows
        made.append(spec.name)
    return made
