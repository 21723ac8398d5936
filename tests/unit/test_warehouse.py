"""`modelmeter build`: the golden lake's hand-computed costs and KPIs, the atomic swap, and
the acceptance check against an independent Decimal computation."""

from __future__ import annotations

import datetime as dt
import os
import random
from collections import defaultdict
from decimal import ROUND_DOWN, Decimal, localcontext
from pathlib import Path

import pytest

from pipeline._exceptions import ConfigError, WarehouseError
from pipeline.cli import main
from pipeline.lake import partition_dir
from pipeline.policy import KpiTarget, load_policy, roi_projection
from pipeline.settings import Settings
from pipeline.warehouse import build_warehouse, is_stale, open_warehouse_readonly
from tests.fixtures.golden import (
    DAY_A,
    DAY_B,
    DAY_C,
    golden_warehouse,
    llm_call,
    task_feedback,
    write_events_lake,
    write_golden_lake,
    write_midday_price_book,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = REPO_ROOT / "schemas" / "routing_policy.yaml"
PRICES = REPO_ROOT / "schemas" / "prices.csv"
D = Decimal
UTC = dt.UTC


def settings_for(root: Path, *, prices: Path = PRICES, lake: Path | None = None) -> Settings:
    return Settings(
        lake=lake or root / "lake",
        warehouse=root / "warehouse.duckdb",
        policy=POLICY,
        prices=prices,
    )


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """The golden lake built with the shipped price book: (expected, read-only connection)."""
    expected, settings = golden_warehouse(tmp_path_factory)
    con = open_warehouse_readonly(settings.warehouse)
    yield expected, con
    con.close()


@pytest.fixture(scope="module")
def midday(tmp_path_factory):
    """The golden lake built with the price book that changes GLM-4.5 and Opus 4.1 at 12:00."""
    root = tmp_path_factory.mktemp("midday")
    expected = write_golden_lake(root / "lake")
    build_warehouse(settings_for(root, prices=write_midday_price_book(root / "prices.csv")))
    con = open_warehouse_readonly(root / "warehouse.duckdb")
    yield expected, con
    con.close()


def money_by_event(con, column: str) -> dict[str, Decimal | None]:
    return dict(con.execute(f"select event_id, {column} from fct_llm_calls").fetchall())


def truncated(numerator: Decimal, denominator: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return (numerator / denominator).quantize(D("1E-12"), rounding=ROUND_DOWN)


# --- golden costs --------------------------------------------------------------------------


def test_every_call_costs_what_the_hand_arithmetic_says(golden):
    """cost, baseline and savings of every call equal tests/fixtures/golden.py's hand figures exactly."""
    expected, con = golden
    assert money_by_event(con, "cost_usd") == expected.cost
    assert money_by_event(con, "baseline_cost_usd") == expected.baseline
    savings = money_by_event(con, "savings_usd")
    for event_id, cost in expected.cost.items():
        baseline = expected.baseline[event_id]
        assert savings[event_id] == (None if cost is None else baseline - cost), event_id


def test_money_columns_are_decimal_38_12(golden):
    """Money is DECIMAL(38,12) in the facts and marts, never DOUBLE."""
    _, con = golden
    types = dict(
        con.execute("""
        select table_name || '.' || column_name, data_type from information_schema.columns
        where column_name like '%usd%' or column_name in ('actual', 'savings_pct',
            'share_of_calls', 'share_of_cost', 'target_min', 'target_max')""").fetchall()
    )
    assert types["fct_llm_calls.cost_usd"] == "DECIMAL(38,12)"
    assert types["daily_cost_by_role.savings_pct"] == "DECIMAL(38,12)"
    assert {t for t in types.values()} == {"DECIMAL(38,12)"}, types


def test_no_table_has_float_or_hugeint_columns(golden):
    """No DOUBLE/FLOAT anywhere (money stays exact); counts are BIGINT, not HUGEINT (clients choke)."""
    _, con = golden
    bad = con.execute(
        "select table_name, column_name, data_type from information_schema.columns "
        "where data_type in ('DOUBLE', 'FLOAT', 'HUGEINT', 'REAL')"
    ).fetchall()
    assert bad == []


def test_unpriced_model_is_null_and_counted_never_zero(golden):
    """a-06 (zai/glm-5-preview) has no price: is_priced false, NULL money, counted as unpriced."""
    _, con = golden
    row = con.execute(
        "select is_priced, cost_usd, baseline_cost_usd, savings_usd "
        "from fct_llm_calls where event_id = 'a-06'"
    ).fetchone()
    assert row == (False, None, None, None)
    assert con.execute(
        "select unpriced_calls, calls from mart_daily_savings where event_date = ?", [DAY_A]
    ).fetchone() == (1, 9)
    assert con.execute(
        "select cost_usd, unpriced_calls, share_of_cost from daily_cost_by_model "
        "where model = 'glm-5-preview'"
    ).fetchone() == (None, 1, None)


def test_price_change_at_midday_reprices_only_events_from_12_00(midday):
    """With a new price from 12:00, 11:59:59.999999 keeps the old price and 12:00:00 gets the new."""
    expected, con = midday
    assert money_by_event(con, "cost_usd") == expected.midday_cost
    assert money_by_event(con, "baseline_cost_usd") == expected.midday_baseline
    used = dict(
        con.execute(
            "select event_id, price_effective_from from fct_llm_calls "
            "where event_id in ('a-03', 'a-04')"
        ).fetchall()
    )
    assert used["a-03"] == dt.datetime(2025, 1, 1, tzinfo=UTC)
    assert used["a-04"] == dt.datetime(2025, 6, 1, 12, tzinfo=UTC)
    # by hand: a-03 0.0029 (old glm price), a-04 0.00216 (new)
    assert expected.midday_cost["a-03"] == D("0.0029") and expected.midday_cost["a-04"] == D(
        "0.00216"
    )


def test_producer_retry_duplicates_are_counted_once(golden):
    """a-08 and fc-05 landed twice; the facts hold them once, the earliest offset kept."""
    expected, con = golden
    assert expected.landed["llm_call"] == len(expected.cost) + 1
    assert con.execute(
        "select count(*), count(distinct event_id) from fct_llm_calls"
    ).fetchone() == (len(expected.cost), len(expected.cost))
    assert con.execute("select count(*) from fct_task_feedback").fetchone() == (
        expected.feedback_events,
    )
    offsets = con.execute(
        "select kafka_offset, landed_copies from fct_llm_calls where event_id = 'a-08'"
    ).fetchone()
    copies = [
        r[0]
        for r in con.execute(
            f"select kafka_offset from read_parquet('{expected.lake}/llm_call/*/agent-usage*.parquet') "
            "where event_id = 'a-08'"
        ).fetchall()
    ]
    assert len(copies) == 2 and offsets == (min(copies), 2)


def test_unknown_role_and_trigger_are_kept_and_flagged(golden):
    """A call of role 'tester' is priced and flagged; an unknown trigger is flagged."""
    _, con = golden
    assert con.execute(
        "select is_known_role, cost_usd from fct_llm_calls where event_id = 'a-07'"
    ).fetchone() == (False, D("0.00052"))
    assert con.execute(
        "select is_known_trigger from fct_llm_calls where event_id = 'a-09'"
    ).fetchone() == (False,)
    warnings = {
        (w, s): n
        for w, s, n in con.execute(
            "select warning, subject, events from rpt_data_warnings where event_date = ?", [DAY_A]
        ).fetchall()
    }
    assert warnings[("unknown_role", "tester")] == 1
    assert warnings[("unknown_trigger", "architect/gut_feeling")] == 1
    assert warnings[("unpriced_calls", "zai/glm-5-preview")] == 1
    assert warnings[("duplicate_events", "llm_call")] == 1
    assert warnings[("rejected_events", "agent-usage")] == 1
    assert warnings[("lake_freshness", "llm_call")] == 9


def test_daily_cost_by_role_and_model_are_sums_of_the_calls(golden):
    """Every (date, role) and (date, provider, model) row is the sum of its priced calls."""
    expected, con = golden
    by_role: dict[tuple, list[Decimal]] = defaultdict(lambda: [D(0), D(0)])
    by_model: dict[tuple, Decimal] = defaultdict(Decimal)
    for event_id, (day, role, provider, model, _esc, _trig) in expected.calls.items():
        if expected.cost[event_id] is None:
            continue
        by_role[(day, role)][0] += expected.cost[event_id]
        by_role[(day, role)][1] += expected.baseline[event_id]
        by_model[(day, provider, model)] += expected.cost[event_id]
    got_role = {
        (d, r): [c, b]
        for d, r, c, b in con.execute(
            "select event_date, role, cost_usd, baseline_cost_usd from daily_cost_by_role"
        ).fetchall()
    }
    assert got_role == dict(by_role)
    got_model = {
        (d, p, m): c
        for d, p, m, c in con.execute(
            "select event_date, provider, model, cost_usd from daily_cost_by_model "
            "where cost_usd is not null"
        ).fetchall()
    }
    assert got_model == dict(by_model)
    # day B: 19 of 20 calls on glm-4.5; its cost 0.01197 of 0.53352
    share = con.execute(
        "select share_of_calls, share_of_cost from daily_cost_by_model "
        "where event_date = ? and model = 'glm-4.5'",
        [DAY_B],
    ).fetchone()
    assert share == (D("0.95"), truncated(D("0.01197"), D("0.53352")))


def test_kpi_daily_matches_the_hand_figures_including_exact_boundaries(golden):
    """0.35 and 0.95 exactly are met (inclusive minimums); 0.05 exactly is missed (< 0.05 required)."""
    expected, con = golden
    got = {
        (d, k): (a, s)
        for d, k, a, s in con.execute(
            "select event_date, kpi, actual, status from kpi_daily"
        ).fetchall()
    }
    assert got == expected.kpi_daily
    assert got[(DAY_B, "cost_reduction_pct")] == (D("0.35"), "met")
    assert got[(DAY_B, "default_model_share")] == (D("0.95"), "met")
    assert got[(DAY_C, "escalation_false_positive_rate")] == (D("0.05"), "missed")


def test_kpi_monthly_adds_up_the_days(golden):
    """June's KPIs are the ratios of June's summed numerators and denominators."""
    expected, con = golden
    got = {
        k: (a, s)
        for k, a, s in con.execute(
            "select kpi, actual, status from kpi_monthly where month = date '2025-06-01'"
        ).fetchall()
    }
    priced = [e for e, c in expected.cost.items() if c is not None]
    savings = sum(expected.baseline[e] - expected.cost[e] for e in priced)
    baseline = sum(expected.baseline[e] for e in priced)
    # default-model calls: 5 on day A + 19 on day B of 9 + 20 + 20 = 49
    # escalated tasks with verdict: t-a02 (false) + 20 on day C (one false) = 2 / 21
    # satisfaction: 5 + (10x5 + 10x3) = 85 over 21; reviews: 1 + 19 consistent of 21
    assert got == {
        "cost_reduction_pct": (truncated(savings, baseline), "met"),
        "default_model_share": (truncated(D(24), D(49)), "missed"),
        "escalation_false_positive_rate": (truncated(D(2), D(21)), "missed"),
        "satisfaction_avg": (truncated(D(85), D(21)), "met"),
        "review_consistency": (truncated(D(20), D(21)), "met"),
        "unpriced_calls": (D(1), "missed"),
    }


@pytest.mark.parametrize(
    "actual",
    [
        "0.0499999999",
        "0.05",
        "0.35",
        "0.45",
        "0.4500000001",
        "0.95",
        "0.9499999999",
        "4",
        "0",
        "1",
        None,
    ],
)
def test_sql_kpi_status_agrees_with_policy_kpi_target_status(golden, actual):
    """The SQL kpi_status macro and pipeline.policy.KpiTarget.status agree on every target."""
    _, con = golden
    for kpi, tmin, tmax, min_inc, max_inc, unit, status in con.execute(
        "select kpi, target_min, target_max, min_inclusive, max_inclusive, unit, "
        "kpi_status(cast(? as decimal(38,12)), target_min, target_max, min_inclusive, "
        "max_inclusive) from dim_kpi_targets",
        [actual],
    ).fetchall():
        target = KpiTarget(kpi, tmin, tmax, unit, min_inc, max_inc)
        assert status == target.status(None if actual is None else D(actual)), (kpi, actual)


def test_escalations_by_trigger_counts_tasks_verdicts_and_false_positives(golden):
    """Day C's 20 three_plus_services tasks have 20 verdicts, one false positive: rate 0.05."""
    _, con = golden
    row = con.execute(
        """select escalated_calls, escalated_tasks, cost_usd, baseline_cost_usd,
        tasks_with_verdict, false_positives, false_positive_rate from mart_escalations_by_trigger
        where event_date = ? and role = 'architect' and escalation_trigger = 'three_plus_services'""",
        [DAY_C],
    ).fetchone()
    # 20 calls x 0.0015 = 0.03
    assert row == (20, 20, D("0.03"), D("0.03"), 20, 1, D("0.05"))
    # t-c01's earlier "not needed" is superseded by its later "needed"
    assert con.execute(
        "select escalation_needed from fct_task_verdicts where task_id = 't-c01'"
    ).fetchone() == (True,)


def test_mart_roi_is_policy_roi_projection_of_the_observed_reduction(golden):
    """mart_roi's projection equals pipeline.policy.roi_projection on kpi_monthly's reduction."""
    _, con = golden
    policy = load_policy(POLICY)
    rows = con.execute("""select r.cost_reduction, k.actual, r.projected_monthly_savings_usd,
        r.projected_horizon_savings_usd, r.projected_roi, r.break_even_month
        from mart_roi r join kpi_monthly k on k.month = r.month and k.kpi = 'cost_reduction_pct'
        """).fetchall()
    assert len(rows) == 1
    reduction, kpi_actual, monthly, horizon, roi, break_even = rows[0]
    assert reduction == kpi_actual
    projection = roi_projection(policy.roi, reduction)
    tolerance = D("1E-12")
    assert abs(monthly - projection.monthly_savings_usd) <= tolerance
    assert abs(horizon - projection.horizon_savings_usd) <= tolerance
    assert abs(roi - projection.roi) <= tolerance
    assert break_even == projection.break_even_month


def test_dims_come_from_the_policy_and_price_book(golden):
    """dim_policy, dim_roles, dim_triggers, dim_kpi_targets and dim_prices mirror their files."""
    _, con = golden
    policy = load_policy(POLICY)
    assert con.execute(
        "select policy_version, default_model, baseline_provider, baseline_model from dim_policy"
    ).fetchone() == (
        policy.version,
        policy.default_model.model,
        policy.baseline_model.provider,
        policy.baseline_model.model,
    )
    assert {r[0] for r in con.execute("select role from dim_roles").fetchall()} == set(policy.roles)
    assert {
        (r, t) for r, t in con.execute("select role, trigger_id from dim_triggers").fetchall()
    } == {(role, t.id) for role, t in policy.triggers()}
    assert con.execute("select count(*) from dim_prices").fetchone() == (5,)
    info = con.execute(
        "select policy_version, llm_call_files, prices_sha256 from mart_build_info"
    ).fetchone()
    assert info[0] == policy.version and info[1] == 9 and len(info[2]) == 64


# --- the build -----------------------------------------------------------------------------


def test_missing_lake_builds_empty_typed_tables_with_a_warning(tmp_path):
    """No lake directory: a warning, and every table exists, empty, with its types."""
    lines: list[str] = []
    result = build_warehouse(settings_for(tmp_path), progress=lines.append)
    assert result.warnings and "does not exist" in result.warnings[0]
    assert any("warning" in line for line in lines)
    con = open_warehouse_readonly(tmp_path / "warehouse.duckdb")
    assert con.execute("select count(*) from fct_llm_calls").fetchone() == (0,)
    assert con.execute("select count(*) from kpi_daily").fetchone() == (0,)
    types = dict(
        con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_name = 'fct_llm_calls'"
        ).fetchall()
    )
    assert types["cost_usd"] == "DECIMAL(38,12)" and types["event_date"] == "DATE"
    assert types["occurred_at"] == "TIMESTAMP WITH TIME ZONE"


def test_build_is_idempotent(tmp_path):
    """Building twice from the same inputs gives the same tables, row for row."""
    write_golden_lake(tmp_path / "lake")
    settings = settings_for(tmp_path)
    snapshots = []
    for _ in range(2):
        build_warehouse(settings)
        con = open_warehouse_readonly(settings.warehouse)
        snapshots.append(
            {
                t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr)
                for t in (
                    "fct_llm_calls",
                    "daily_cost_by_role",
                    "kpi_daily",
                    "rpt_data_warnings",
                    "mart_roi",
                )
            }
        )
        con.close()
    assert snapshots[0] == snapshots[1]
    assert not list(tmp_path.glob("warehouse.duckdb.building-*"))


def test_reader_keeps_the_old_warehouse_while_a_build_swaps_in_the_new(tmp_path):
    """A read-only connection opened before a build keeps querying the old file; a new one sees the new."""
    settings = settings_for(tmp_path)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "x-1",
                dt.datetime(2025, 7, 1, 9, tzinfo=UTC),
                "implementer",
                "zai",
                "glm-4.5",
                input_tokens=10,
            )
        ],
    )
    build_warehouse(settings)
    old = open_warehouse_readonly(settings.warehouse)
    assert old.execute("select count(*) from fct_llm_calls").fetchone() == (1,)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "x-2",
                dt.datetime(2025, 7, 2, 9, tzinfo=UTC),
                "implementer",
                "zai",
                "glm-4.5",
                input_tokens=10,
            )
        ],
        topic="other-topic",
    )
    build_warehouse(settings)
    assert old.execute("select count(*) from fct_llm_calls").fetchone() == (1,)
    new = open_warehouse_readonly(settings.warehouse)
    assert new.execute("select count(*) from fct_llm_calls").fetchone() == (2,)
    old.close()
    new.close()


def test_writers_temporary_files_in_the_lake_are_ignored(tmp_path):
    """A half-written .tmp-* file of the consumer does not break or feed the build."""
    settings = settings_for(tmp_path)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "x-1",
                dt.datetime(2025, 7, 1, 9, tzinfo=UTC),
                "implementer",
                "zai",
                "glm-4.5",
                input_tokens=10,
            )
        ],
    )
    day_dir = partition_dir(settings.lake, "llm_call", dt.date(2025, 7, 1))
    (day_dir / ".tmp-0123-agent-usage+0+1+2.parquet").write_bytes(b"PAR1 half written")
    build_warehouse(settings)
    con = open_warehouse_readonly(settings.warehouse)
    assert con.execute("select count(*) from fct_llm_calls").fetchone() == (1,)


def test_if_stale_skips_an_up_to_date_warehouse_and_rebuilds_after_new_lake_files(tmp_path, capsys):
    """`build --if-stale` builds when missing, skips when newer than its inputs, rebuilds after new data."""
    settings = settings_for(tmp_path)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "x-1",
                dt.datetime(2025, 7, 1, 9, tzinfo=UTC),
                "implementer",
                "zai",
                "glm-4.5",
                input_tokens=10,
            )
        ],
    )
    argv = [
        "build",
        "--if-stale",
        "--lake",
        str(settings.lake),
        "--warehouse",
        str(settings.warehouse),
        "--policy",
        str(POLICY),
        "--prices",
        str(PRICES),
    ]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().err
    assert not is_stale(settings)
    assert main(argv) == 0
    assert "skipped" in capsys.readouterr().err
    written = write_events_lake(
        settings.lake,
        [llm_call("x-2", dt.datetime(2025, 7, 2, 9, tzinfo=UTC), "implementer", "zai", "glm-4.5")],
        topic="other-topic",
    )
    assert written == {"llm_call": 1}
    newest = max(p.stat().st_mtime_ns for p in settings.lake.rglob("*.parquet"))
    os.utime(
        settings.warehouse, ns=(newest - 1, newest - 1)
    )  # coarse clocks: make the order explicit
    assert is_stale(settings)
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().err


def test_invalid_price_book_exits_2_with_one_line(tmp_path, capsys):
    """A negative price stops the build before anything is written: exit 2, file:line: problem."""
    prices = tmp_path / "prices.csv"
    prices.write_text(PRICES.read_text().replace("0.60,2.20", "-0.60,2.20"))
    code = main(
        [
            "build",
            "--lake",
            str(tmp_path / "lake"),
            "--warehouse",
            str(tmp_path / "w.duckdb"),
            "--policy",
            str(POLICY),
            "--prices",
            str(prices),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == f"modelmeter: error: {prices}:2: usd_per_mtok_input -0.60 is negative"
    assert not (tmp_path / "w.duckdb").exists()


def test_open_missing_warehouse_is_a_config_error(tmp_path):
    """Readers get a one-line 'run modelmeter build first' error (exit 2)."""
    with pytest.raises(ConfigError, match="run `modelmeter build` first"):
        open_warehouse_readonly(tmp_path / "nope.duckdb")


def test_broken_model_names_its_file_and_leaves_no_partial_warehouse(tmp_path):
    """A failing model raises WarehouseError naming sql/<layer>/<model>.sql; the target is untouched."""
    from pipeline.resources import sql_dir as shipped_sql_dir

    sql_dir = tmp_path / "sql"
    for path in shipped_sql_dir().rglob("*.sql"):
        target = sql_dir / path.relative_to(shipped_sql_dir())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (sql_dir / "marts" / "kpi_daily.sql").write_text(
        "-- depends on: fct_llm_calls\nselect no_such_column from fct_llm_calls"
    )
    settings = settings_for(tmp_path)
    with pytest.raises(WarehouseError, match=r"sql/marts/kpi_daily\.sql: .*no_such_column"):
        build_warehouse(settings, sql_dir=sql_dir)
    assert not settings.warehouse.exists()
    assert not list(tmp_path.glob("warehouse.duckdb.building-*"))


# --- acceptance: an independent Decimal computation ----------------------------------------

# (provider, model) -> [(effective_from, effective_to, (in, out, cache read, 5m, 1h))]
ACCEPTANCE_CHANGE = dt.datetime(2025, 3, 12, 13, 37, 11, tzinfo=UTC)
ACCEPTANCE_PRICES = {
    ("zai", "glm-4.5"): [("0.60", "2.20", "0.11", "0", "0"), ("0.45", "1.85", "0.095", "0", "0")],
    ("zai", "glm-4.5-air"): [("0.20", "1.10", "0.03", "0", "0"), None],
    ("anthropic", "claude-opus-4-1"): [
        ("15", "75", "1.50", "18.75", "30"),
        ("13.5", "67.25", "1.35", "16.875", "27"),
    ],
    ("anthropic", "claude-sonnet-4-5"): [
        ("3", "15", "0.30", "3.75", "6"),
        ("2.999999", "14.000001", "0.299999", "3.750001", "5.999999"),
    ],
}


def acceptance_price_book(path: Path) -> Path:
    lines = [
        "provider,model,effective_from,effective_to,usd_per_mtok_input,usd_per_mtok_output,"
        "usd_per_mtok_cache_read,usd_per_mtok_cache_write_5m,usd_per_mtok_cache_write_1h"
    ]
    change = ACCEPTANCE_CHANGE.isoformat().replace("+00:00", "Z")
    for (provider, model), (before, after) in ACCEPTANCE_PRICES.items():
        if after is None:
            lines.append(f"{provider},{model},2025-01-01T00:00:00Z,,{','.join(before)}")
        else:
            lines.append(f"{provider},{model},2025-01-01T00:00:00Z,{change},{','.join(before)}")
            lines.append(f"{provider},{model},{change},,{','.join(after)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def independent_cost(
    provider: str, model: str, at: dt.datetime, tokens: tuple[int, ...]
) -> Decimal | None:
    rows = ACCEPTANCE_PRICES.get((provider, model))
    if rows is None:
        return None
    before, after = rows
    prices = before if after is None or at < ACCEPTANCE_CHANGE else after
    return sum((D(n) * D(p) for n, p in zip(tokens, prices, strict=True)), D(0)) / D(1_000_000)


def test_acceptance_costs_shares_and_kpis_equal_an_independent_decimal_computation(
    tmp_path, monkeypatch, capsys
):
    """A random event set with a mid-period price change, built via MODELMETER_PRICES,
    matches an independent Decimal computation for every (date, role), (date, provider, model)
    and the daily default_model_share, cost_reduction_pct and unpriced_calls."""
    rng = random.Random(20250312)
    roles = ["orchestrator", "architect", "integrator", "implementer", "critic", "ghost-role"]
    models = [("zai", "glm-4.5")] * 12 + [
        ("zai", "glm-4.5-air"),
        ("anthropic", "claude-opus-4-1"),
        ("anthropic", "claude-sonnet-4-5"),
        ("zai", "glm-9-beta"),
    ]
    start = dt.datetime(2025, 3, 9, tzinfo=UTC)
    events = []
    for n in range(2500):
        at = start + dt.timedelta(
            seconds=rng.randrange(6 * 86400), microseconds=rng.randrange(10**6)
        )
        provider, model = rng.choice(models)
        big = rng.random() < 0.01
        tokens = [rng.choice([0, rng.randrange(1, 50_000)]) for _ in range(5)]
        if big:
            tokens[0] = 100_000_000 - rng.randrange(10)
        escalated = model == "claude-opus-4-1" and rng.random() < 0.8
        events.append(
            llm_call(
                f"e-{n:05d}",
                at,
                rng.choice(roles),
                provider,
                model,
                task_id=f"task-{n // 3}",
                input_tokens=tokens[0],
                output_tokens=tokens[1],
                cache_read_tokens=tokens[2],
                cache_write_5m_tokens=tokens[3],
                cache_write_1h_tokens=tokens[4],
                escalated=escalated,
                escalation_trigger="three_plus_services" if escalated else None,
            )
        )
    # exactly at the change instant, and a microsecond before it
    for n, at in enumerate([ACCEPTANCE_CHANGE, ACCEPTANCE_CHANGE - dt.timedelta(microseconds=1)]):
        events.append(
            llm_call(
                f"edge-{n}",
                at,
                "implementer",
                "zai",
                "glm-4.5",
                input_tokens=123_457,
                output_tokens=9_876,
                cache_read_tokens=55_555,
            )
        )
    duplicates = [e["event_id"] for e in rng.sample(events, 40)]
    write_events_lake(tmp_path / "lake", events, duplicates=duplicates, partitions=6)

    monkeypatch.setenv(
        "MODELMETER_PRICES", str(acceptance_price_book(tmp_path / "acceptance-prices.csv"))
    )
    monkeypatch.setenv("MODELMETER_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("MODELMETER_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("MODELMETER_POLICY", str(POLICY))
    assert main(["build"]) == 0, capsys.readouterr().err

    role_cost: dict[tuple, list] = defaultdict(lambda: [None, None])
    model_cost: dict[tuple, Decimal | None] = {}
    daily: dict[dt.date, dict[str, Decimal | int]] = defaultdict(
        lambda: {"calls": 0, "default": 0, "unpriced": 0, "savings": D(0), "baseline": D(0)}
    )

    def add(slot: list, i: int, value: Decimal) -> None:
        slot[i] = value if slot[i] is None else slot[i] + value

    for e in events:
        day = e["occurred_at"].date()
        tokens = (
            e["input_tokens"],
            e["output_tokens"],
            e["cache_read_tokens"],
            e["cache_write_5m_tokens"],
            e["cache_write_1h_tokens"],
        )
        cost = independent_cost(e["provider"], e["model"], e["occurred_at"], tokens)
        baseline = independent_cost("anthropic", "claude-opus-4-1", e["occurred_at"], tokens)
        stats = daily[day]
        stats["calls"] += 1
        stats["default"] += (e["provider"], e["model"]) == ("zai", "glm-4.5")
        key_model = (day, e["provider"], e["model"])
        model_cost.setdefault(key_model, None)
        if cost is None:
            stats["unpriced"] += 1
            role_cost.setdefault((day, e["role"]), [None, None])
            continue
        add(role_cost[(day, e["role"])], 0, cost)
        add(role_cost[(day, e["role"])], 1, baseline)
        model_cost[key_model] = (
            cost if model_cost[key_model] is None else model_cost[key_model] + cost
        )
        stats["savings"] += baseline - cost
        stats["baseline"] += baseline

    con = open_warehouse_readonly(tmp_path / "warehouse.duckdb")
    tolerance = D("1E-6")

    def close(a: Decimal | None, b: Decimal | None) -> bool:
        return (a is None and b is None) or (
            a is not None and b is not None and abs(a - b) <= tolerance
        )

    got_role = {
        (d, r): (c, b)
        for d, r, c, b in con.execute(
            "select event_date, role, cost_usd, baseline_cost_usd from daily_cost_by_role"
        ).fetchall()
    }
    assert set(got_role) == set(role_cost)
    for key, (cost, baseline) in role_cost.items():
        assert close(got_role[key][0], cost) and close(got_role[key][1], baseline), key
        assert got_role[key] == (cost, baseline), key  # in fact exact, not just to 1e-6
    got_model = {
        (d, p, m): c
        for d, p, m, c in con.execute(
            "select event_date, provider, model, cost_usd from daily_cost_by_model"
        ).fetchall()
    }
    assert set(got_model) == set(model_cost)
    for key, cost in model_cost.items():
        assert close(got_model[key], cost), key
    kpis = {
        (d, k): a
        for d, k, a in con.execute(
            "select event_date, kpi, actual from kpi_daily where kpi in "
            "('default_model_share', 'cost_reduction_pct', 'unpriced_calls')"
        ).fetchall()
    }
    assert {d for d, _ in kpis} == set(daily) and len(daily) == 6
    for day, stats in daily.items():
        assert abs(
            kpis[(day, "default_model_share")] - D(stats["default"]) / D(stats["calls"])
        ) <= D("1E-12")
        assert abs(kpis[(day, "cost_reduction_pct")] - stats["savings"] / stats["baseline"]) <= D(
            "1E-12"
        )
        assert kpis[(day, "unpriced_calls")] == stats["unpriced"]
    # the two edge calls straddle the change: old glm-4.5 price before, new price at the instant
    edge = dict(
        con.execute(
            "select event_id, cost_usd from fct_llm_calls where event_id like 'edge-%'"
        ).fetchall()
    )
    # before: 123457x0.60 + 9876x2.20 + 55555x0.11 = 74074.2 + 21727.2 + 6111.05 = 101912.45 / 1e6
    # at:     123457x0.45 + 9876x1.85 + 55555x0.095 = 55555.65 + 18270.6 + 5277.725 = 79103.975 / 1e6
    assert edge == {"edge-1": D("0.10191245"), "edge-0": D("0.079103975")}
    con.close()


# --- incremental builds --------------------------------------------------------------------


def snapshot(path: Path) -> dict[str, list]:
    """Every table's rows (build metadata aside), sorted, for comparing two warehouses."""
    con = open_warehouse_readonly(path)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_name <> 'mart_build_info'"
            ).fetchall()
        ]
        # when a directory was listed (how recently it had changed) is build metadata too
        columns = {"mart_lake_manifest": "* exclude (directory_modified_ns)"}
        return {
            t: sorted(con.execute(f"select {columns.get(t, '*')} from {t}").fetchall(), key=repr)
            for t in tables
        }
    finally:
        con.close()


def full_build_snapshot(settings: Settings, root: Path) -> dict[str, list]:
    reference = settings.with_overrides(warehouse=root / "reference.duckdb")
    assert build_warehouse(reference, full=True).mode == "full"
    return snapshot(reference.warehouse)


def test_incremental_builds_recompute_only_changed_partitions_and_equal_a_full_build(tmp_path):
    """New day, a new file in an existing day, a removed day: each incremental build touches only
    those event_date partitions and gives exactly the tables of a full build."""
    settings = settings_for(tmp_path)
    write_golden_lake(settings.lake)
    assert build_warehouse(settings).mode == "full"
    day_d = dt.datetime(2025, 6, 4, 9, tzinfo=UTC)

    # a new day lands (calls and feedback)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "d-01",
                day_d,
                "architect",
                "anthropic",
                "claude-opus-4-1",
                task_id="t-d01",
                input_tokens=700,
                escalated=True,
                escalation_trigger="security_implications",
            ),
            llm_call("d-02", day_d, "implementer", "zai", "glm-4.5", input_tokens=300),
            task_feedback(
                "fd-01",
                day_d + dt.timedelta(hours=1),
                "t-d01",
                satisfaction=4,
                escalation_needed=False,
            ),
        ],
        topic="late",
    )
    result = build_warehouse(settings)
    assert result.mode == "incremental"
    assert result.rebuilt_partitions == {
        "llm_call": ["2025-06-04"],
        "task_feedback": ["2025-06-04"],
    }
    assert snapshot(settings.warehouse) == full_build_snapshot(settings, tmp_path)

    # an existing day gets one more file: a retry of a-01 from another topic and a new call
    a01 = llm_call(
        "a-01",
        dt.datetime(2025, 6, 1, 8, tzinfo=UTC),
        "orchestrator",
        "zai",
        "glm-4.5",
        input_tokens=1000,
        output_tokens=200,
        cache_read_tokens=5000,
        task_type="plan",
    )
    write_events_lake(
        settings.lake,
        [
            a01,
            llm_call(
                "a-10",
                dt.datetime(2025, 6, 1, 23, tzinfo=UTC),
                "critic",
                "zai",
                "glm-4.5",
                input_tokens=5,
            ),
        ],
        topic="retries",
    )
    result = build_warehouse(settings)
    assert result.mode == "incremental"
    assert result.rebuilt_partitions == {"llm_call": ["2025-06-01"], "task_feedback": []}
    assert snapshot(settings.warehouse) == full_build_snapshot(settings, tmp_path)
    con = open_warehouse_readonly(settings.warehouse)
    assert con.execute(
        "select count(*), sum(landed_copies) from fct_llm_calls where event_id = 'a-01'"
    ).fetchone() == (1, 2)
    con.close()

    # a day disappears from the lake (e.g. an operator removed a bad partition)
    for path in settings.lake.glob("*/event_date=2025-06-03/*.parquet"):
        path.unlink()
    result = build_warehouse(settings)
    assert result.mode == "incremental"
    assert result.rebuilt_partitions == {
        "llm_call": ["2025-06-03"],
        "task_feedback": ["2025-06-03"],
    }
    assert snapshot(settings.warehouse) == full_build_snapshot(settings, tmp_path)


def _age_directories(lake: Path, seconds: int = 3600) -> None:
    """Set every partition directory's mtime ``seconds`` back, as after a quiet hour."""
    old = dt.datetime.now(UTC).timestamp() - seconds
    for directory in lake.glob("*/*=*"):
        os.utime(directory, (old, old))


def test_an_incremental_build_lists_only_the_directories_that_changed(tmp_path, monkeypatch):
    """Directories whose mtime the previous build recorded are not listed again; a new day's
    directory and one that got a file are, and the result equals a full build."""
    from pipeline.warehouse import lake_sources

    settings = settings_for(tmp_path)
    write_golden_lake(settings.lake)
    _age_directories(settings.lake)
    assert build_warehouse(settings).mode == "full"
    con = open_warehouse_readonly(settings.warehouse)
    untrusted = con.execute(
        "select count(*) from mart_lake_manifest where directory_modified_ns is null"
    ).fetchone()
    con.close()
    assert untrusted == (0,)

    listed: list[str] = []
    real = lake_sources._listed

    def spy(table, value, directory, mtime):
        listed.append(f"{table}/{value}")
        return real(table, value, directory, mtime)

    monkeypatch.setattr(lake_sources, "_listed", spy)
    day_d = dt.datetime(2025, 6, 4, 9, tzinfo=UTC)
    write_events_lake(
        settings.lake,
        [
            llm_call("d-01", day_d, "implementer", "zai", "glm-4.5", input_tokens=300),
            llm_call("a-11", dt.datetime(2025, 6, 1, 22, tzinfo=UTC), "critic", "zai", "glm-4.5"),
        ],
        topic="late",
    )
    result = build_warehouse(settings)
    assert result.mode == "incremental"
    assert sorted(listed) == ["llm_call/2025-06-01", "llm_call/2025-06-04"]
    assert result.rebuilt_partitions == {
        "llm_call": ["2025-06-01", "2025-06-04"],
        "task_feedback": [],
    }
    assert snapshot(settings.warehouse) == full_build_snapshot(settings, tmp_path)

    # The two directories were modified just before that build: too recent to be trusted,
    # the next build lists them again (a second change could keep their mtime).
    listed.clear()
    assert build_warehouse(settings).mode == "incremental"
    assert sorted(listed) == ["llm_call/2025-06-01", "llm_call/2025-06-04"]
    _age_directories(settings.lake)  # now every directory changed: all listed
    listed.clear()
    build_warehouse(settings)
    assert len(listed) == len(list(settings.lake.glob("*/*=*")))
    listed.clear()
    assert build_warehouse(settings).rebuilt_partitions == {"llm_call": [], "task_feedback": []}
    assert listed == []


def test_a_file_removed_from_a_known_directory_is_seen(tmp_path):
    """Unlinking a file sets its directory's mtime: the next build lists the directory."""
    settings = settings_for(tmp_path)
    write_golden_lake(settings.lake)
    _age_directories(settings.lake)
    build_warehouse(settings)
    victim = sorted(settings.lake.glob("llm_call/event_date=2025-06-02/*.parquet"))[0]
    victim.unlink()
    result = build_warehouse(settings)
    assert result.rebuilt_partitions == {"llm_call": ["2025-06-02"], "task_feedback": []}
    assert snapshot(settings.warehouse) == full_build_snapshot(settings, tmp_path)


def test_changed_price_book_forces_a_full_build(tmp_path):
    """A different price book reprices every partition: the build is full, not incremental."""
    settings = settings_for(tmp_path)
    write_golden_lake(settings.lake)
    build_warehouse(settings)
    lines: list[str] = []
    midday = settings.with_overrides(prices=write_midday_price_book(tmp_path / "midday.csv"))
    assert build_warehouse(midday, progress=lines.append).mode == "full"
    assert any("price book, policy" in line for line in lines)
    con = open_warehouse_readonly(settings.warehouse)
    assert con.execute("select cost_usd from fct_llm_calls where event_id = 'a-04'").fetchone() == (
        D("0.00216"),
    )
    con.close()


def test_event_id_in_a_changed_and_an_unchanged_partition_falls_back_to_a_full_build(tmp_path):
    """A retry carrying another day's occurred_at lands in another partition: the incremental
    build cannot deduplicate it across partitions, so it rebuilds in full (one row per event_id)."""
    settings = settings_for(tmp_path)
    write_golden_lake(settings.lake)
    build_warehouse(settings)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "a-02",
                dt.datetime(2025, 6, 5, 9, tzinfo=UTC),
                "architect",
                "zai",
                "glm-4.5",
                input_tokens=1,
            )
        ],
        topic="odd",
    )
    lines: list[str] = []
    assert build_warehouse(settings, progress=lines.append).mode == "full"
    assert any("rebuilding in full" in line for line in lines)
    con = open_warehouse_readonly(settings.warehouse)
    assert con.execute(
        "select count(*), any_value(model) from fct_llm_calls where event_id = 'a-02'"
    ).fetchone() == (1, "claude-opus-4-1")
    con.close()
    assert snapshot(settings.warehouse) == full_build_snapshot(settings, tmp_path)


def test_call_without_a_baseline_price_is_unpriced_and_names_the_baseline(tmp_path):
    """When only the baseline model has no price in force, the call is unpriced (all money NULL)
    and the data warning names the baseline model, not the call's own model."""
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "".join(
            line + "\n" for line in PRICES.read_text().splitlines() if "claude-opus-4-1" not in line
        )
    )
    settings = settings_for(tmp_path, prices=prices)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "x-1",
                dt.datetime(2025, 7, 1, 9, tzinfo=UTC),
                "implementer",
                "zai",
                "glm-4.5",
                input_tokens=10,
            )
        ],
    )
    build_warehouse(settings)
    con = open_warehouse_readonly(settings.warehouse)
    assert con.execute(
        "select is_priced, cost_usd, baseline_cost_usd, savings_usd from fct_llm_calls"
    ).fetchone() == (False, None, None, None)
    assert con.execute(
        "select subject, events from rpt_data_warnings where warning = 'unpriced_calls'"
    ).fetchall() == [("anthropic/claude-opus-4-1 (baseline)", 1)]
    con.close()


def test_files_of_a_killed_build_are_removed_by_the_next_build(tmp_path):
    """A build killed mid-way leaves <warehouse>.building-<pid>; the next build deletes it once
    that process is gone, and leaves a running build's file alone."""
    settings = settings_for(tmp_path)
    dead_pid = 2**22 + 1  # above Linux's largest pid: no such process
    abandoned = tmp_path / f"warehouse.duckdb.building-{dead_pid}"
    abandoned.write_bytes(b"half a database")
    (tmp_path / f"warehouse.duckdb.building-{dead_pid}.wal").write_bytes(b"wal")
    running = tmp_path / f"warehouse.duckdb.building-{os.getppid()}"
    running.write_bytes(b"another build in progress")
    build_warehouse(settings)
    assert sorted(p.name for p in tmp_path.glob("warehouse.duckdb.building-*")) == [running.name]


def test_finance_connection_survives_a_build_by_another_process(tmp_path):
    """A plain duckdb.connect(read_only=True) stays usable while `modelmeter build` runs in another
    process and swaps the file; a reader that reconnects sees the new data."""
    import subprocess
    import sys

    import duckdb

    settings = settings_for(tmp_path)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "x-1",
                dt.datetime(2025, 7, 1, 9, tzinfo=UTC),
                "implementer",
                "zai",
                "glm-4.5",
                input_tokens=10,
            )
        ],
    )
    build_warehouse(settings)
    finance = duckdb.connect(str(settings.warehouse), read_only=True)
    assert finance.execute("select count(*) from fct_llm_calls").fetchone() == (1,)
    write_events_lake(
        settings.lake,
        [
            llm_call(
                "x-2",
                dt.datetime(2025, 7, 2, 9, tzinfo=UTC),
                "implementer",
                "zai",
                "glm-4.5",
                input_tokens=10,
            )
        ],
        topic="other-topic",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "build",
            "--lake",
            str(settings.lake),
            "--warehouse",
            str(settings.warehouse),
            "--policy",
            str(POLICY),
            "--prices",
            str(PRICES),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "build: staging:" in done.stderr and "build: marts:" in done.stderr
    assert finance.execute("select count(*) from fct_llm_calls").fetchone() == (1,)
    finance.close()
    fresh = open_warehouse_readonly(settings.warehouse)
    assert fresh.execute("select count(*) from fct_llm_calls").fetchone() == (2,)
    fresh.close()
