"""``modelmeter build``: a new warehouse file from the inputs, swapped in atomically.

The build writes ``<warehouse>.building-<pid>`` and then ``os.replace``-s it over the
warehouse, so a reader sees the old warehouse or the new one, never half of one, and a
connection opened before the swap keeps reading the old file. Inside the new file, in order:
the macros (``sql/_macros.sql``), the tables made in Python from the price book and the
policy, the lake views, the SQL models in dependency order, and the tables made in Python
after them (:mod:`pipeline.warehouse.python_tables`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

from pipeline._exceptions import WarehouseError
from pipeline.budgets import load_budgets
from pipeline.files import replace_file
from pipeline.model_catalog import load_model_catalogue
from pipeline.object_lake import ObjectLake
from pipeline.policy import load_policy
from pipeline.prices import load_price_book
from pipeline.resources import sql_dir as packaged_sql_dir
from pipeline.warehouse.duckdb_helpers import database_path, first_line
from pipeline.warehouse.incremental import (
    NeedsFullBuild,
    fingerprint,
    incremental_plan,
    previous_build,
)
from pipeline.warehouse.lake_sources import (
    SOURCES,
    lake_directories,
    lake_files,
    lake_views_sql,
    object_lake_datasets,
    register_lake,
)
from pipeline.warehouse.models import MACROS_FILE, discover_models, ordered_models
from pipeline.warehouse.python_tables import (
    PYTHON_TABLES,
    BuildInputs,
    build_tables,
    input_tables,
)
from pipeline.warehouse.runner import BuildResult, Progress, run_models, run_script

__all__ = ["build_warehouse", "is_stale"]

#: S3 LastModified is whole seconds of the store's clock: objects this close to the warehouse's
#: time count as newer.
OBJECT_TIME_MARGIN_NS = 2_000_000_000


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
    # The lake's writers add, replace and remove files by rename and unlink, which sets the
    # directory's mtime: the directories tell, without listing every file.
    lake = settings.lake
    if isinstance(lake, ObjectLake):  # no directories: every object's time, which the store
        # keeps in whole seconds of its own clock: 2 s of margin (a newer object is never missed)
        inputs.extend(
            f.mtime_ns + OBJECT_TIME_MARGIN_NS for found in lake_files(lake).values() for f in found
        )
    elif lake.is_dir():
        inputs.append(lake.stat().st_mtime_ns)
        for table in SOURCES:
            table_dir = lake / table
            if table_dir.is_dir():
                inputs.append(table_dir.stat().st_mtime_ns)
                inputs.extend(mtime for _, _, mtime in lake_directories(lake, table))
    return any(mtime >= built for mtime in inputs)


def build_warehouse(
    settings: Any,
    *,
    progress: Progress | None = None,
    full: bool = False,
    sql_dir: Path | None = None,
) -> BuildResult:
    """Build the warehouse of ``settings`` and swap it in atomically.

    Incremental when possible: with the same price book, policy and models as the current
    warehouse, only the event_date partitions whose lake files changed (new, rewritten or
    removed files, per ``mart_lake_manifest``; only partition directories whose mtime changed
    are listed) are recomputed in the incremental facts; the other models are rebuilt from
    the facts. ``full=True`` rebuilds everything from the lake.
    ``sql_dir`` replaces the shipped models (:func:`pipeline.resources.sql_dir`).
    """
    say = progress or (lambda line: None)
    models_dir = sql_dir or packaged_sql_dir()
    # The warehouse's mtime becomes this instant, before any input is read: an input written
    # during the build is newer than the warehouse, so `build --if-stale` rebuilds for it.
    inputs_read_ns = time.time_ns()
    started = time.monotonic()
    target = Path(settings.warehouse)
    book = load_price_book(settings.prices)
    policy = load_policy(settings.policy)
    policy_sha256 = hashlib.sha256(Path(settings.policy).read_bytes()).hexdigest()
    catalogue = load_model_catalogue(settings.models, book)
    budgets = load_budgets(settings.budgets, policy)
    result = BuildResult(warehouse=target, built_at=dt.datetime.now(dt.UTC))

    lake = settings.lake
    if isinstance(lake, ObjectLake):
        lake.check()  # the bucket exists and answers
    elif not lake.is_dir():
        result.warnings.append(f"lake {lake} does not exist: building an empty warehouse")
        say(f"build: warning: {result.warnings[-1]}")
    models = ordered_models(discover_models(models_dir), input_tables())
    _check_python_reads({m.name for m in models})
    result.fingerprint = fingerprint(lake, book.sha256, policy_sha256, models_dir)
    previous, reason = (None, "full rebuild asked") if full else previous_build(target)
    same_inputs = previous is not None and previous.fingerprint == result.fingerprint
    files = lake_files(lake, previous.known() if previous and same_inputs else None)
    result.lake_files = {table: len(found) for table, found in files.items()}
    plan = None
    if previous is not None:
        plan, reason = incremental_plan(previous, result.fingerprint, files, models)
    if plan is None:
        say(f"build: full build ({reason})")
    else:
        result.mode = "incremental"
        result.rebuilt_partitions = {t: sorted(p) for t, p in plan.items()}
        say(
            "build: incremental: "
            + ", ".join(f"{t} {len(p)} changed partition(s)" for t, p in plan.items())
        )

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WarehouseError(f"cannot create {target.parent}: {exc.strerror or exc}") from None
    database_path(target)  # refused here, naming the configured path
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    building_literal = database_path(building)
    lake_sources = (
        object_lake_datasets(lake, files, plan)
        if isinstance(lake, ObjectLake)
        else lake_views_sql(files, plan)  # refuses lake paths DuckDB cannot read literally
    )
    inputs = BuildInputs(
        settings, book, policy, policy_sha256, catalogue, budgets, files, result, started
    )
    _remove_abandoned_builds(target)
    _remove_database_files(building)
    try:
        if plan is not None:
            step = time.monotonic()
            shutil.copyfile(target, building)
            say(
                f"build: copied the warehouse ({building.stat().st_size / 1e6:.0f} MB)"
                f" in {time.monotonic() - step:.1f}s"
            )
        con = duckdb.connect(building_literal)
        try:
            con.execute("set TimeZone = 'UTC'")
            run_script(con, models_dir / MACROS_FILE)
            step = time.monotonic()
            dims = build_tables(con, inputs, "before models")
            say(
                "build: dims (price book, policy): "
                + ", ".join(f"{n} {result.rows[n]}" for n in dims)
                + f" in {time.monotonic() - step:.1f}s"
            )
            register_lake(con, lake_sources)
            run_models(con, models, plan, result, say)
            step = time.monotonic()
            marts = build_tables(con, inputs, "after models")
            say(
                "build: python marts: "
                + ", ".join(f"{n} {result.rows[n]}" for n in marts if n != "mart_build_info")
                + f" in {time.monotonic() - step:.1f}s"
            )
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
    except NeedsFullBuild as exc:
        _remove_database_files(building)
        say(f"build: incremental build not possible ({exc}); rebuilding in full")
        return build_warehouse(settings, progress=progress, full=True, sql_dir=sql_dir)
    except duckdb.Error as exc:
        _remove_database_files(building)
        raise WarehouseError(f"building {target} failed: {first_line(exc)}") from None
    except BaseException:
        _remove_database_files(building)
        raise
    result.seconds = time.monotonic() - started
    say(f"build: wrote {target} ({result.mode}) in {result.seconds:.1f}s")
    return result


def _check_python_reads(model_names: set[str]) -> None:
    for spec in PYTHON_TABLES:
        missing = [n for n in spec.reads if n not in model_names]
        if missing:
            raise WarehouseError(
                f"{spec.name} (built in Python) reads {', '.join(missing)}, "
                "which no model of sql/ makes"
            )


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
