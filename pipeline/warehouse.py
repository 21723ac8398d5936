"""``modelmeter build``: the finance warehouse from the lake, the price book and the policy.

The models live in ``sql/`` at the repository root, one ``select`` per file named as its
table (jaffle-shop style)::

    sql/_macros.sql      exact_ratio, token_cost, kpi_status, first_landed_copy
    (python)             dim_prices (price book), dim_policy, dim_roles, dim_triggers,
                         dim_kpi_targets (routing policy)
    sql/staging/         stg_llm_calls, stg_task_feedback, stg_rejected   (lake_* sources;
                         temporary views: not stored in the warehouse)
    sql/facts/           fct_llm_calls, fct_task_feedback, fct_task_verdicts, fct_escalated_tasks
    sql/dims/            dim_dates (the span of the facts)
    sql/marts/           daily_cost_by_role, daily_cost_by_model, kpi_daily, kpi_monthly, ...
    (python)             mart_roi (pipeline.policy.roi_projection), mart_lake_manifest,
                         mart_build_info

A model runs after every model it names; otherwise layers run in the order of
:data:`LAYERS` (staging, facts, dims, marts). The lake is read through ``lake_llm_call``, ``lake_task_feedback`` and
``lake_rejected``, temporary views over the lake's finished files (a writer's temporary
files are skipped) or empty tables of the lake schema when a table has no files yet.

The build writes ``<warehouse>.building-<pid>`` and then ``os.replace``-s it over the
warehouse, so a reader sees the old warehouse or the new one, never half of one, and a
connection opened before the swap keeps reading the old file. Readers should use
:func:`open_warehouse_readonly`::

    result = build_warehouse(settings)
    con = open_warehouse_readonly(settings.warehouse)
    con.sql("select * from kpi_daily").fetchall()

Incremental builds: ``mart_lake_manifest`` records every lake file (size, mtime) and
``mart_build_info.inputs_fingerprint`` the price book, policy, lake path and code. When the
fingerprint is unchanged, the next build starts from a copy of the warehouse and recomputes
only the event_date partitions whose files changed in the models marked
``-- incremental: partition event_date, key event_id`` (the big facts); everything
downstream of them is rebuilt from the facts. An event_id found in both a changed and an
unchanged partition (which a full build would deduplicate across partitions) makes the
build fall back to a full one, as does ``--full``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import graphlib
import hashlib
import os
import re
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipeline._exceptions import ConfigError, PipelineError, WarehouseError
from pipeline.files import replace_file
from pipeline.lake import EVENT_TABLES, REJECTED_TABLE, SCHEMAS, TEMP_PREFIX
from pipeline.prices import PriceBook, load_price_book

__all__ = [
    "SQL_DIR",
    "LAYERS",
    "BuildResult",
    "LakeFile",
    "build_warehouse",
    "is_stale",
    "parquet_literal",
    "lake_files",
    "open_warehouse_readonly",
    "run_cli",
]

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
# Folders of sql/, in the order their models run when dependencies allow. The dimensions from
# files (price book, policy) are loaded first, from Python; sql/dims/ derives dimensions from
# the facts (dim_dates spans them), so it runs after sql/facts/.
LAYERS = ("staging", "facts", "dims", "marts")
#: Layers created as temporary views: read by the build, not stored in the warehouse (staging
#: is the lake typed and deduplicated; materialising it would cost a pass and memory for nothing).
BUILD_ONLY_LAYERS = frozenset({"staging"})
MACROS_FILE = "_macros.sql"

# lake table -> (name of the view the staging models read, its partition column)
_SOURCES = {
    "llm_call": ("lake_llm_call", "event_date"),
    "task_feedback": ("lake_task_feedback", "event_date"),
    REJECTED_TABLE: ("lake_rejected", "received_date"),
}
_MONEY = pa.decimal128(38, 12)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class LakeFile:
    """One finished Parquet file of the lake."""

    table: str
    partition: str  # the partition directory's value, e.g. "2025-06-01"
    path: Path
    bytes: int
    mtime_ns: int


@dataclass(slots=True)
class BuildResult:
    """What a build did."""

    warehouse: Path
    built_at: dt.datetime
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    lake_files: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    mode: str = "full"  # or "incremental"
    #: lake table -> event_date partitions recomputed by an incremental build
    rebuilt_partitions: dict[str, list[str]] = field(default_factory=dict)
    fingerprint: str = ""


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


def open_warehouse_readonly(path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse at ``path``, session time zone UTC.

    The file is ATTACHed to a fresh in-memory database rather than opened with
    ``duckdb.connect(path)``: DuckDB caches one database instance per path and process, so a
    second ``connect`` after a rebuild would still see the replaced file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"warehouse {path} does not exist; run `modelmeter build` first")
    literal = _database_path(path)
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"attach {_sql_str(literal)} as warehouse (read_only)")
        con.execute("use warehouse")
    except duckdb.Error as exc:
        con.close()
        raise WarehouseError(f"cannot open warehouse {path}: {exc}") from None
    return con


# ---------------------------------------------------------------------------------------------
# Lake
# ---------------------------------------------------------------------------------------------


def lake_files(lake: Path) -> dict[str, list[LakeFile]]:
    """The finished Parquet files of each lake table (writers' temporary files excluded)."""
    found: dict[str, list[LakeFile]] = {}
    for table in _SOURCES:
        files: list[LakeFile] = []
        for path in sorted((Path(lake) / table).glob("*=*/*.parquet")):
            if path.name.startswith((TEMP_PREFIX, ".")):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed between glob and stat
                continue
            files.append(LakeFile(table, path.parent.name.split("=", 1)[1], path,
                                  stat.st_size, stat.st_mtime_ns))
        found[table] = files
    return found


def is_stale(settings: Any) -> bool:
    """True when the warehouse is missing or older than a lake file, the price book or the policy."""
    try:
        built = Path(settings.warehouse).stat().st_mtime_ns
    except FileNotFoundError:
        return True
    inputs: list[int] = []
    for path in (settings.prices, settings.policy):
        try:
            inputs.append(Path(path).stat().st_mtime_ns)
        except FileNotFoundError:
            return True  # let the build report the missing file
    lake = Path(settings.lake)
    for files in lake_files(lake).values():
        inputs.extend(f.mtime_ns for f in files)
    # A deleted file or partition changes its directory's mtime.
    if lake.is_dir():
        inputs.append(lake.stat().st_mtime_ns)
        for table in _SOURCES:
            table_dir = lake / table
            if table_dir.is_dir():
                inputs.append(table_dir.stat().st_mtime_ns)
                inputs.extend(d.stat().st_mtime_ns for d in table_dir.iterdir() if d.is_dir())
    return any(mtime >= built for mtime in inputs)


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------


def build_warehouse(settings: Any, *, progress: Progress | None = None,
                    full: bool = False) -> BuildResult:
    """Build the warehouse of ``settings`` and swap it in atomically.

    Incremental when possible: with the same price book, policy and models as the current
    warehouse, only the event_date partitions whose lake files changed (new, rewritten or
    removed files, per ``mart_lake_manifest``) are recomputed in the incremental facts; the
    other models are rebuilt from the facts. ``full=True`` rebuilds everything from the lake.
    """
    from pipeline.policy import load_policy

    say = progress or (lambda line: None)
    # The warehouse's mtime becomes this instant, before any input is read: an input written
    # during the build is newer than the warehouse, so `build --if-stale` rebuilds for it.
    inputs_read_ns = time.time_ns()
    started = time.monotonic()
    target = Path(settings.warehouse)
    book = load_price_book(settings.prices)
    policy = load_policy(settings.policy)
    policy_sha256 = hashlib.sha256(Path(settings.policy).read_bytes()).hexdigest()
    result = BuildResult(warehouse=target, built_at=dt.datetime.now(dt.UTC))

    lake = Path(settings.lake)
    if not lake.is_dir():
        result.warnings.append(f"lake {lake} does not exist: building an empty warehouse")
        say(f"build: warning: {result.warnings[-1]}")
    files = lake_files(lake)
    result.lake_files = {table: len(found) for table, found in files.items()}
    models = ordered_models(discover_models())
    result.fingerprint = _fingerprint(lake, book.sha256, policy_sha256)
    plan, reason = (None, "full rebuild asked") if full else _incremental_plan(
        target, result.fingerprint, files, models)
    if plan is None:
        say(f"build: full build ({reason})")
    else:
        result.mode = "incremental"
        result.rebuilt_partitions = {t: sorted(p) for t, p in plan.items()}
        say("build: incremental: " + ", ".join(
            f"{t} {len(p)} changed partition(s)" for t, p in plan.items()))

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WarehouseError(f"cannot create {target.parent}: {exc.strerror or exc}") from None
    _database_path(target)  # refused here, naming the configured path
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    building_literal = _database_path(building)
    lake_sql = _lake_views_sql(files, plan)  # refuses lake paths DuckDB cannot read literally
    _remove_abandoned_builds(target)
    _remove_database_files(building)
    try:
        if plan is not None:
            shutil.copyfile(target, building)
        con = duckdb.connect(building_literal)
        try:
            con.execute("set TimeZone = 'UTC'")
            _run_script(con, SQL_DIR / MACROS_FILE)
            step = time.monotonic()
            _load_dims(con, book, policy, result)
            say(f"build: dims (price book, policy): {_counts(result, 'dim_')} "
                f"in {time.monotonic() - step:.1f}s")
            _register_lake(con, lake_sql)
            _run_models(con, models, plan, result, say)
            step = time.monotonic()
            _load_mart_roi(con, policy, result)
            _load_manifest(con, files, result)
            result.seconds = time.monotonic() - started
            _load_build_info(con, settings, book, policy, policy_sha256, result)
            say(f"build: python marts: mart_roi {result.rows['mart_roi']}, mart_lake_manifest "
                f"{result.rows['mart_lake_manifest']} in {time.monotonic() - step:.1f}s")
            con.execute("checkpoint")
        finally:
            con.close()
        os.utime(building, ns=(inputs_read_ns, inputs_read_ns))
        # A WAL next to the target would be replayed into the new file: nobody writes the
        # warehouse in place, so one can only be stale.
        Path(f"{target}.wal").unlink(missing_ok=True)
        # DuckDB (or copyfile) created `building` like open() does: mode 0o666 less the
        # umask, which the swap keeps (never a fixed chmod)
        replace_file(building, target)
    except _NeedsFullBuild as exc:
        _remove_database_files(building)
        say(f"build: incremental build not possible ({exc}); rebuilding in full")
        return build_warehouse(settings, progress=progress, full=True)
    except duckdb.Error as exc:
        _remove_database_files(building)
        raise WarehouseError(f"building {target} failed: {_first_line(exc)}") from None
    except BaseException:
        _remove_database_files(building)
        raise
    result.seconds = time.monotonic() - started
    say(f"build: wrote {target} ({result.mode}) in {result.seconds:.1f}s")
    return result


class _NeedsFullBuild(Exception):
    """An incremental build found something only a full build handles correctly."""


@dataclass(frozen=True, slots=True)
class Model:
    """One SQL model: ``sql/<layer>/<name>.sql``.

    A model whose header has ``-- incremental: partition <column>[, key <column>]`` is
    rebuilt per partition in incremental builds: its rows of the changed partitions are
    deleted and recomputed (its select, restricted to those partitions). With a key, a key
    value also present in an unchanged partition makes the build fall back to a full one.
    """

    layer: str
    name: str
    path: Path
    sql: str
    partition_column: str | None = None
    key_column: str | None = None


_INCREMENTAL = re.compile(r"^--\s*incremental:\s*partition\s+(\w+)(?:\s*,\s*key\s+(\w+))?", re.M)


def discover_models(sql_dir: Path | None = None) -> dict[str, list[Model]]:
    """The models of each layer (``sql/<layer>/*.sql``), by name."""
    sql_dir = sql_dir or SQL_DIR
    if not (sql_dir / MACROS_FILE).is_file():
        raise WarehouseError(f"the SQL models are not in {sql_dir}: install modelmeter from its "
                             "source tree (pip install -e .)")
    models: dict[str, list[Model]] = {}
    for layer in LAYERS:
        found = []
        for path in sorted((sql_dir / layer).glob("*.sql")):
            sql = path.read_text(encoding="utf-8")
            marker = _INCREMENTAL.search(sql)
            found.append(Model(layer, path.stem, path, sql, *(marker.groups() if marker else ())))
        models[layer] = found
    return models


def ordered_models(models: dict[str, list[Model]]) -> list[Model]:
    """Every model after the models it selects from; otherwise in layer order, then by name."""
    by_name = {m.name: m for found in models.values() for m in found}
    graph = {m.name: {n for n in _references(m.sql) if n in by_name and n != m.name}
             for m in by_name.values()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        raise WarehouseError(f"sql/: models select from each other in a cycle: {exc.args[1]}") from None
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    order: list[Model] = []
    done: set[str] = set()
    remaining = sorted(by_name.values(), key=lambda m: (rank[m.layer], m.name))
    while remaining:
        chosen = next(m for m in remaining if graph[m.name] <= done)
        order.append(chosen)
        done.add(chosen.name)
        remaining.remove(chosen)
    return order


_WORD = re.compile(r"\b[a-z_][a-z0-9_]*\b")


def _references(sql: str) -> set[str]:
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return set(_WORD.findall(without_comments.lower()))


def _lake_sources(model: Model, by_name: dict[str, Model]) -> set[str]:
    """The lake tables ``model`` reads, directly or through the models it selects from."""
    views = {view: table for table, (view, _) in _SOURCES.items()}
    found: set[str] = set()
    seen: set[str] = set()
    stack = [model]
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        refs = _references(current.sql)
        found |= {views[r] for r in refs if r in views}
        stack.extend(by_name[r] for r in refs if r in by_name and r != current.name)
    return found


def _run_models(con: duckdb.DuckDBPyConnection, models: list[Model],
                plan: dict[str, set[str]] | None, result: BuildResult, say: Progress) -> None:
    by_name = {m.name: m for m in models}
    layer_started = time.monotonic()
    done_in_layer: list[str] = []
    for index, model in enumerate(models):
        body = model.sql.strip().rstrip(";")
        try:
            if plan is not None and model.partition_column:
                partitions = set().union(*(plan.get(t, set()) for t in _lake_sources(model, by_name)))
                _merge_partitions(con, model, body, sorted(partitions))
            else:
                kind = "temp view" if model.layer in BUILD_ONLY_LAYERS else "table"
                con.execute(f"create or replace {kind} {model.name} as\n{body}")
        except duckdb.Error as exc:
            raise WarehouseError(f"sql/{model.layer}/{model.name}.sql: {_first_line(exc)}") from None
        if model.layer not in BUILD_ONLY_LAYERS:  # counting a view would run it once more
            result.rows[model.name] = _count(con, model.name)
        done_in_layer.append(model.name)
        last_of_run = index + 1 == len(models) or models[index + 1].layer != model.layer
        if last_of_run:
            say(f"build: {model.layer}: "
                + ", ".join(f"{n} {result.rows.get(n, 'view')}" for n in done_in_layer)
                + f" in {time.monotonic() - layer_started:.1f}s")
            layer_started, done_in_layer = time.monotonic(), []


def _merge_partitions(con: duckdb.DuckDBPyConnection, model: Model, body: str,
                      partitions: list[str]) -> None:
    """Replace the rows of ``partitions`` of ``model`` with the recomputed ones."""
    part, key = model.partition_column, model.key_column
    # A literal list (not a subquery) so that DuckDB pushes the filter down to the scans.
    values = ", ".join(f"date '{dt.date.fromisoformat(p).isoformat()}'" for p in partitions)

    def changed(column: str) -> str:
        return f"{column} in ({values})" if partitions else "false"

    in_changed = changed(str(part))
    con.execute(f"create or replace temp table _increment as\n"
                f"select * from (\n{body}\n) where {in_changed}")
    if key:
        clash = con.execute(
            f"select count(*) from _increment as i join {model.name} as t on t.{key} = i.{key} "
            f"where not {changed(f't.{part}')}").fetchone()
        if clash and clash[0]:
            raise _NeedsFullBuild(f"{clash[0]} {key}(s) of {model.name} also in unchanged partitions")
    con.execute(f"delete from {model.name} where {in_changed}")
    con.execute(f"insert into {model.name} by name select * from _increment")
    con.execute("drop table _increment")


def _fingerprint(lake: Path, prices_sha256: str, policy_sha256: str) -> str:
    """What an incremental build must share with the previous one: inputs other than the lake, code."""
    digest = hashlib.sha256()
    for part in (str(lake.resolve()), prices_sha256, policy_sha256):
        digest.update(part.encode() + b"\0")
    package = Path(__file__).resolve().parent
    code = sorted(SQL_DIR.rglob("*.sql")) + [package / n for n in (
        "warehouse.py", "prices.py", "policy.py", "lake.py")]
    for path in code:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _incremental_plan(target: Path, fingerprint: str, files: dict[str, list[LakeFile]],
                      models: list[Model]) -> tuple[dict[str, set[str]] | None, str]:
    """(changed partitions per event table, "") for an incremental build, or (None, why not)."""
    if not target.is_file():
        return None, "no warehouse yet"
    by_name = {m.name: m for m in models}
    for model in models:
        if model.layer in BUILD_ONLY_LAYERS or model.partition_column:
            continue
        partial = [r for r in _references(model.sql)
                   if r in by_name and by_name[r].layer in BUILD_ONLY_LAYERS
                   and _lake_sources(by_name[r], by_name) & set(EVENT_TABLES)]
        if partial:
            return None, f"{model.name} reads {partial[0]} directly"
    try:
        con = open_warehouse_readonly(target)
    except PipelineError as exc:
        return None, str(exc)
    try:
        row = con.execute("select inputs_fingerprint from mart_build_info").fetchone()
        manifest = con.execute("select lake_table, partition_value, file_name, bytes, modified_ns "
                               "from mart_lake_manifest").fetchall()
    except duckdb.Error:
        return None, "the warehouse predates incremental builds"
    finally:
        con.close()
    if not row or row[0] != fingerprint:
        return None, "price book, policy, lake path or models changed"
    before: dict[tuple[str, str], set[tuple[str, int, int]]] = defaultdict(set)
    for table, partition, name, size, modified_ns in manifest:
        before[(table, partition)].add((name, size, modified_ns))
    now: dict[tuple[str, str], set[tuple[str, int, int]]] = defaultdict(set)
    for table, found in files.items():
        for f in found:
            now[(table, f.partition)].add((f.path.name, f.bytes, f.mtime_ns))
    plan: dict[str, set[str]] = {table: set() for table in EVENT_TABLES}
    for table, partition in before.keys() | now.keys():
        if table in plan and before.get((table, partition)) != now.get((table, partition)):
            plan[table].add(partition)
    return plan, ""


def _run_script(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    try:
        con.execute(path.read_text(encoding="utf-8"))
    except duckdb.Error as exc:
        raise WarehouseError(f"{path.name}: {_first_line(exc)}") from None


def _lake_views_sql(files: dict[str, list[LakeFile]],
                    plan: dict[str, set[str]] | None = None) -> dict[str, str | None]:
    """Per lake table, the select of its view over the lake's files (None: no files).

    With a plan, only the changed partitions' files. Each partition is one ``read_parquet``
    of its files, with the partition column as a constant: DuckDB's ``hive_partitioning``
    would parse every ``key=value`` directory of the whole path, the lake's own location
    included (a lake under ``/data/kafka_offset=1/`` would overwrite that column).
    """
    selects: dict[str, str | None] = {}
    for table, (_, partition_column) in _SOURCES.items():
        found = files.get(table, [])
        if plan is not None and table in plan:
            found = [f for f in found if f.partition in plan[table]]
        by_partition: dict[str, list[LakeFile]] = defaultdict(list)
        for f in found:
            by_partition[f.partition].append(f)
        selects[table] = "\nunion all by name\n".join(
            f"select *, cast({_sql_str(value)} as date) as {partition_column} from read_parquet("
            f"[{', '.join(parquet_literal(f.path) for f in in_partition)}], "
            "hive_partitioning = false, union_by_name = true)"
            for value, in_partition in sorted(by_partition.items())) or None
    return selects


def _register_lake(con: duckdb.DuckDBPyConnection, selects: dict[str, str | None]) -> None:
    """lake_<table> views (:func:`_lake_views_sql`), or empty tables of the lake schema."""
    for table, (view, partition_column) in _SOURCES.items():
        select = selects.get(table)
        if select:
            con.execute(f"create or replace temp view {view} as\n{select}")
        else:
            schema = SCHEMAS[table].append(pa.field(partition_column, pa.date32()))
            _create_from_arrow(con, view, schema.empty_table(), temp=True)


def _load_dims(con: duckdb.DuckDBPyConnection, book: PriceBook, policy: Any, result: BuildResult) -> None:
    def ref(model: Any) -> tuple[str | None, str | None]:
        return (model.provider, model.model) if model is not None else (None, None)

    tables: dict[str, pa.Table] = {"dim_prices": book.to_arrow()}
    default, premium, baseline = ref(policy.default_model), ref(policy.premium_model), ref(policy.baseline_model)
    tables["dim_policy"] = pa.table({
        "policy_version": [policy.version],
        "default_provider": [default[0]], "default_model": [default[1]],
        "premium_provider": [premium[0]], "premium_model": [premium[1]],
        "baseline_provider": [baseline[0]], "baseline_model": [baseline[1]],
        "implementation_cost_usd": pa.array([policy.roi.implementation_cost_usd], _MONEY),
        "monthly_spend_before_usd": pa.array([policy.roi.monthly_spend_before_usd], _MONEY),
        "horizon_months": pa.array([policy.roi.horizon_months], pa.int32()),
    })
    roles = list(policy.roles.values())
    tables["dim_roles"] = pa.table({
        "role": pa.array([r.name for r in roles], pa.string()),
        "primary_provider": pa.array([r.primary.provider for r in roles], pa.string()),
        "primary_model": pa.array([r.primary.model for r in roles], pa.string()),
        "premium_provider": pa.array([ref(r.premium)[0] for r in roles], pa.string()),
        "premium_model": pa.array([ref(r.premium)[1] for r in roles], pa.string()),
        "triggers": pa.array([len(r.triggers) for r in roles], pa.int32()),
        "description": pa.array([r.description for r in roles], pa.string()),
    })
    triggers = [(role.name, order, t) for role in roles for order, t in enumerate(role.triggers, 1)]
    tables["dim_triggers"] = pa.table({
        "role": pa.array([r for r, _, _ in triggers], pa.string()),
        "trigger_id": pa.array([t.id for _, _, t in triggers], pa.string()),
        "trigger_order": pa.array([o for _, o, _ in triggers], pa.int32()),
        "description": pa.array([t.description for _, _, t in triggers], pa.string()),
        "rule": pa.array([str(t.rule) for _, _, t in triggers], pa.string()),
    })
    targets = list(policy.kpi_targets.values())
    tables["dim_kpi_targets"] = pa.table({
        "kpi": pa.array([t.kpi for t in targets], pa.string()),
        "target_min": pa.array([t.min for t in targets], _MONEY),
        "target_max": pa.array([t.max for t in targets], _MONEY),
        "min_inclusive": pa.array([t.min_inclusive for t in targets], pa.bool_()),
        "max_inclusive": pa.array([t.max_inclusive for t in targets], pa.bool_()),
        "unit": pa.array([t.unit for t in targets], pa.string()),
        "description": pa.array([t.description for t in targets], pa.string()),
    })
    for name, table in tables.items():
        _create_from_arrow(con, name, table)
        result.rows[name] = table.num_rows


def _load_mart_roi(con: duckdb.DuckDBPyConnection, policy: Any, result: BuildResult) -> None:
    """mart_roi: per month, the observed cost reduction projected with policy.roi_projection."""
    from pipeline.policy import roi_projection

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
    inputs = policy.roi
    rows: dict[str, list[Any]] = {name: [] for name in (
        "month", "cost_usd", "baseline_cost_usd", "savings_usd", "cost_reduction",
        "implementation_cost_usd", "monthly_spend_before_usd", "horizon_months",
        "projected_monthly_savings_usd", "projected_horizon_savings_usd", "projected_roi",
        "break_even_month")}
    for month, cost, baseline, savings, reduction in months:
        projection = (roi_projection(inputs, reduction).at_money_scale()
                      if reduction is not None else None)
        for name, value in (
            ("month", month), ("cost_usd", cost), ("baseline_cost_usd", baseline),
            ("savings_usd", savings), ("cost_reduction", reduction),
            ("implementation_cost_usd", inputs.implementation_cost_usd),
            ("monthly_spend_before_usd", inputs.monthly_spend_before_usd),
            ("horizon_months", inputs.horizon_months),
            ("projected_monthly_savings_usd", projection and projection.monthly_savings_usd),
            ("projected_horizon_savings_usd", projection and projection.horizon_savings_usd),
            ("projected_roi", projection and projection.roi),
            ("break_even_month", projection and projection.break_even_month),
        ):
            rows[name].append(value)
    types = {"month": pa.date32(), "horizon_months": pa.int32(), "break_even_month": pa.int32()}
    table = pa.table({name: pa.array(values, types.get(name, _MONEY)) for name, values in rows.items()})
    _create_from_arrow(con, "mart_roi", table)
    result.rows["mart_roi"] = table.num_rows


def _load_manifest(con: duckdb.DuckDBPyConnection, files: dict[str, list[LakeFile]],
                   result: BuildResult) -> None:
    every = [f for found in files.values() for f in found]
    table = pa.table({
        "lake_table": pa.array([f.table for f in every], pa.string()),
        "partition_value": pa.array([f.partition for f in every], pa.string()),
        "file_name": pa.array([f.path.name for f in every], pa.string()),
        "path": pa.array([str(f.path) for f in every], pa.string()),
        "bytes": pa.array([f.bytes for f in every], pa.int64()),
        "modified_ns": pa.array([f.mtime_ns for f in every], pa.int64()),
        "modified_at": pa.array([dt.datetime.fromtimestamp(f.mtime_ns / 1e9, dt.UTC) for f in every],
                                pa.timestamp("us", tz="UTC")),
    })
    _create_from_arrow(con, "mart_lake_manifest", table)
    result.rows["mart_lake_manifest"] = table.num_rows


def _load_build_info(con: duckdb.DuckDBPyConnection, settings: Any, book: PriceBook, policy: Any,
                     policy_sha256: str, result: BuildResult) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        modelmeter_version = version("modelmeter")
    except PackageNotFoundError:
        modelmeter_version = "unknown"
    table = pa.table({
        "built_at": pa.array([result.built_at], pa.timestamp("us", tz="UTC")),
        "modelmeter_version": [modelmeter_version],
        "lake_path": [str(Path(settings.lake).resolve())],
        "llm_call_files": pa.array([result.lake_files.get("llm_call", 0)], pa.int64()),
        "task_feedback_files": pa.array([result.lake_files.get("task_feedback", 0)], pa.int64()),
        "rejected_files": pa.array([result.lake_files.get(REJECTED_TABLE, 0)], pa.int64()),
        "prices_path": [str(Path(settings.prices).resolve())],
        "prices_sha256": [book.sha256],
        "policy_path": [str(Path(settings.policy).resolve())],
        "policy_sha256": [policy_sha256],
        "policy_version": [policy.version],
        "build_seconds": pa.array([Decimal(str(round(result.seconds, 3)))], pa.decimal128(18, 3)),
        "build_mode": [result.mode],
        "rebuilt_partitions": pa.array([sum(len(p) for p in result.rebuilt_partitions.values())],
                                       pa.int64()),
        "inputs_fingerprint": [result.fingerprint],
    })
    _create_from_arrow(con, "mart_build_info", table)
    result.rows["mart_build_info"] = 1


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def run_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter build [--if-stale]``."""
    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    settings.apply_umask()  # the warehouse's mode: MODELMETER_UMASK (default 027)
    if getattr(args, "if_stale", False) and not is_stale(settings):
        say(f"build: {settings.warehouse} is newer than the lake, price book and policy; skipped")
        return 0
    try:
        build_warehouse(settings, progress=say, full=getattr(args, "full", False))
    except PipelineError:
        raise
    except OSError as exc:
        raise WarehouseError(f"building {settings.warehouse} failed: {exc}") from None
    return 0


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _create_from_arrow(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, *,
                       temp: bool = False) -> None:
    con.register("_arrow_input", table)
    try:
        con.execute(f"create or replace {'temp ' if temp else ''}table {name} as "
                    "select * from _arrow_input")
    finally:
        con.unregister("_arrow_input")


def _count(con: duckdb.DuckDBPyConnection, name: str) -> int:
    row = con.execute(f"select count(*) from {name}").fetchone()
    return int(row[0]) if row else 0


def _counts(result: BuildResult, prefix: str) -> str:
    return ", ".join(f"{n} {c}" for n, c in result.rows.items() if n.startswith(prefix))


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Paths reach DuckDB as literals. DuckDB globs every read_parquet() item (list items too),
# with [...] classes, * and ?; the escape is a one-character class: [[] [*] [?]. Its globbing
# and its database paths take a backslash for a directory separator (no escape exists), and a
# relative database name may be a prefix such as md: or :memory:, hence absolute paths.
_GLOB_CHARACTER = re.compile(r"[\[*?]")


def parquet_literal(path: Path) -> str:
    """The SQL string of a read_parquet() item that matches the file ``path`` and nothing else."""
    text = os.path.abspath(path)
    if _GLOB_CHARACTER.search(text):
        if "\\" in text:
            raise ConfigError(f"lake file {path}: DuckDB cannot read a path with both a backslash "
                              "and one of [ * ? literally; rename the directory")
        text = _GLOB_CHARACTER.sub(lambda m: f"[{m.group()}]", text)
    return _sql_str(text)


def _database_path(path: Path) -> str:
    """``path`` as DuckDB opens a database file literally: absolute, no backslash."""
    text = os.path.abspath(path)
    if "\\" in text:
        raise ConfigError(f"warehouse {path}: DuckDB takes a backslash in a path for a directory "
                          "separator; use a path without one")
    return text


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _remove_abandoned_builds(target: Path) -> None:
    """Delete ``<warehouse>.building-<pid>`` files of builds whose process no longer exists."""
    prefix = f"{target.name}.building-"  # compared as a string: a glob would read [, *, ?
    leftovers = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    for leftover in leftovers:
        pid_text = leftover.name.rsplit("-", 1)[1].removesuffix(".wal")
        if not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove_database_files(path: Path) -> None:
    for candidate in (path, Path(f"{path}.wal")):
        candidate.unlink(missing_ok=True)

