"""The models of sql/: their stated dependencies are the tables they read, the runner orders
them by those statements alone, and sql/README.md names every table built in Python."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from pipeline._exceptions import WarehouseError
from pipeline.resources import sql_dir
from pipeline.warehouse import PYTHON_TABLES, build_warehouse, discover_models, ordered_models
from pipeline.warehouse.lake_sources import LAKE_VIEWS
from pipeline.warehouse.models import lake_sources
from pipeline.warehouse.python_tables import input_tables
from tests.fixtures.golden import write_golden_lake

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL = sql_dir()
MODELS = [m for found in discover_models(SQL).values() for m in found]


def _tables_read(sql: str) -> set[str]:
    """The tables a select reads, from DuckDB's own parse tree (CTE names left out)."""
    con = duckdb.connect()
    tree = json.loads(con.execute("select json_serialize_sql(?)", [sql]).fetchone()[0])
    con.close()
    assert not tree.get("error"), tree.get("error_message")
    tables: set[str] = set()
    ctes: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE":
                tables.add(node["table_name"])
            cte_map = node.get("cte_map")
            if isinstance(cte_map, dict):
                ctes.update(entry["key"] for entry in cte_map.get("map", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return tables - ctes


def test_the_parse_tree_reader_finds_tables_and_skips_ctes():
    assert _tables_read("with a as (select * from x) select * from a join y using (k)") == {
        "x",
        "y",
    }


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.where)
def test_depends_on_states_exactly_the_tables_the_model_reads(model):
    assert set(model.depends_on) == _tables_read(model.sql), (
        f"{model.where}: fix its '-- depends on:' line"
    )


def test_models_run_after_what_they_depend_on_and_never_read_tables_made_after_them():
    order = ordered_models(discover_models(SQL), input_tables())
    seen = set(input_tables()) | set(LAKE_VIEWS)
    for model in order:
        assert set(model.depends_on) <= seen, model.where
        seen.add(model.name)
    after = {t.name for t in PYTHON_TABLES if t.stage == "after models"}
    assert not after & {n for m in order for n in m.depends_on}
    for table in PYTHON_TABLES:
        assert set(table.reads) <= {m.name for m in order}, table.name


def test_lake_sources_follow_the_stated_dependencies():
    by_name = {m.name: m for m in MODELS}
    assert lake_sources(by_name["kpi_daily"], by_name) == {"llm_call", "task_feedback"}
    assert lake_sources(by_name["rpt_data_warnings"], by_name) == {
        "llm_call",
        "task_feedback",
        "_rejected",
    }
    assert lake_sources(by_name["fct_task_verdicts"], by_name) == {"task_feedback"}


def test_sql_readme_lists_every_python_built_table_with_its_function():
    """sql/README.md's table of Python-built tables is PYTHON_TABLES: name, stage, function."""
    text = (SQL / "README.md").read_text(encoding="utf-8")
    rows = re.findall(
        r"^\| `(\w+)` \| (before|after) the models \| `python_tables\.(\w+)` \|", text, re.M
    )
    assert rows == [(t.name, t.stage.split()[0], t.build.__name__) for t in PYTHON_TABLES]
    views = re.findall(r"^\| `(lake_\w+)` \|", text, re.M)
    assert sorted(views) == sorted(LAKE_VIEWS)


def _copy_models(tmp_path: Path) -> Path:
    copy = tmp_path / "sql"
    shutil.copytree(SQL, copy)
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "marts/kpi_daily.sql",
            "-- depends on: mart_kpi_actuals\n",
            "",
            r"sql/marts/kpi_daily\.sql: the header has no '-- depends on:' line",
        ),
        (
            "marts/kpi_daily.sql",
            "-- depends on: mart_kpi_actuals",
            "-- depends on: mart_kpi_actual",
            r"sql/marts/kpi_daily\.sql: depends on 'mart_kpi_actual', which is not a model",
        ),
        (
            "marts/kpi_daily.sql",
            "-- depends on: mart_kpi_actuals",
            "-- depends on: mart_kpi_actuals, mart_roi",
            r"sql/marts/kpi_daily\.sql: depends on 'mart_roi', which is not a model",
        ),
        (
            "marts/kpi_daily.sql",
            "-- depends on: mart_kpi_actuals",
            "-- depends on: mart kpi",
            r"sql/marts/kpi_daily\.sql:\d+: 'depends on:' takes table names",
        ),
        (
            "facts/fct_task_verdicts.sql",
            "-- depends on: fct_task_feedback",
            "-- depends on: fct_task_feedback, fct_escalated_tasks",
            r"models depend on each other in a cycle",
        ),
        (
            "facts/fct_llm_calls.sql",
            "-- incremental: partition event_date, key event_id",
            "-- incremental: partition by day",
            r"sql/facts/fct_llm_calls\.sql:2: expected 'incremental",
        ),
    ],
)
def test_bad_headers_stop_the_build_naming_the_file(tmp_path, file, old, new, message):
    models = _copy_models(tmp_path)
    _edit(models / file, old, new)
    with pytest.raises(WarehouseError, match=message):
        ordered_models(discover_models(models), input_tables())


def test_the_runner_orders_by_the_statements_not_by_the_sql(tmp_path):
    """A model that reads a table it does not state may run before that table exists: the
    order comes from the headers. (DuckDB then names the missing table and the model.)"""
    models = _copy_models(tmp_path)
    # dim_dates runs before every mart; make it read a mart without saying so
    _edit(
        models / "dims" / "dim_dates.sql",
        "select event_date from fct_task_feedback",
        "select event_date from fct_task_feedback union all "
        "select event_date from daily_cost_by_role",
    )
    root = tmp_path / "build"
    write_golden_lake(root / "lake")
    from pipeline.settings import Settings

    settings = Settings(
        lake=root / "lake",
        warehouse=root / "w.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv",
    )
    with pytest.raises(WarehouseError, match=r"sql/dims/dim_dates\.sql: .*daily_cost_by_role"):
        build_warehouse(settings, sql_dir=models)
    # stated, the same SQL runs after daily_cost_by_role
    _edit(
        models / "dims" / "dim_dates.sql",
        "-- depends on: fct_llm_calls, fct_task_feedback",
        "-- depends on: fct_llm_calls, fct_task_feedback, daily_cost_by_role",
    )
    order = [m.name for m in ordered_models(discover_models(models), input_tables())]
    assert order.index("dim_dates") > order.index("daily_cost_by_role")
