"""Running the SQL models into a DuckDB connection, in the order of their stated dependencies.

Each model becomes a table (a temporary view for the build-only staging layer) named after
its file; in an incremental build the models marked ``-- incremental: partition ...`` are
updated per changed partition instead (:func:`pipeline.warehouse.incremental.merge_partitions`).
What ran and how many rows it made goes into a :class:`BuildResult`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline._exceptions import WarehouseError
from pipeline.warehouse.duckdb_helpers import count_rows, first_line
from pipeline.warehouse.incremental import merge_partitions
from pipeline.warehouse.models import BUILD_ONLY_LAYERS, Model, lake_sources

__all__ = ["BuildResult", "Progress", "run_models", "run_script"]

Progress = Callable[[str], None]


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


def run_script(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Run a SQL file (the macros); WarehouseError names the file."""
    try:
        con.execute(path.read_text(encoding="utf-8"))
    except duckdb.Error as exc:
        raise WarehouseError(f"{path.name}: {first_line(exc)}") from None


def run_models(
    con: duckdb.DuckDBPyConnection,
    models: list[Model],
    plan: dict[str, set[str]] | None,
    result: BuildResult,
    say: Progress,
) -> None:
    """Run ``models`` in order; with a ``plan``, the incremental ones per changed partition."""
    by_name = {m.name: m for m in models}
    layer_started = time.monotonic()
    done_in_layer: list[str] = []
    for index, model in enumerate(models):
        body = model.sql.strip().rstrip(";")
        try:
            if plan is not None and model.partition_column:
                partitions = set().union(
                    *(plan.get(t, set()) for t in lake_sources(model, by_name))
                )
                merge_partitions(con, model, body, sorted(partitions))
            else:
                kind = "temp view" if model.layer in BUILD_ONLY_LAYERS else "table"
                con.execute(f"create or replace {kind} {model.name} as\n{body}")
        except duckdb.Error as exc:
            raise WarehouseError(f"{model.where}: {first_line(exc)}") from None
        if model.layer not in BUILD_ONLY_LAYERS:  # counting a view would run it once more
            result.rows[model.name] = count_rows(con, model.name)
        done_in_layer.append(model.name)
        last_of_run = index + 1 == len(models) or models[index + 1].layer != model.layer
        if last_of_run:
            say(
                f"build: {model.layer}: "
                + ", ".join(f"{n} {result.rows.get(n, 'view')}" for n in done_in_layer)
                + f" in {time.monotonic() - layer_started:.1f}s"
            )
            layer_started, done_in_layer = time.monotonic(), []
