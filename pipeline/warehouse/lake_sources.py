"""The lake as the SQL models see it: ``lake_llm_call``, ``lake_task_feedback``, ``lake_rejected``.

The staging models read the lake through these temporary views, registered by the build over
the lake's finished files (a writer's temporary files are skipped), or as empty tables of the
lake schema when a table has no files yet. An incremental build registers only the changed
partitions' files of the event tables.

A file whose offset range lies inside another's of the same Kafka partition in the same
directory is covered by it and not read: during a compaction (:mod:`pipeline.compaction`)
the new file is renamed in before its inputs are removed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.lake import REJECTED_TABLE, SCHEMAS, TEMP_PREFIX, FileName
from pipeline.warehouse.duckdb_helpers import create_from_arrow, parquet_literal, sql_str

__all__ = ["LAKE_VIEWS", "SOURCES", "LakeFile", "lake_files", "lake_views_sql", "register_lake"]

#: lake table -> (name of the view the staging models read, its partition column)
SOURCES = {
    "llm_call": ("lake_llm_call", "event_date"),
    "task_feedback": ("lake_task_feedback", "event_date"),
    REJECTED_TABLE: ("lake_rejected", "received_date"),
}
#: view name -> lake table
LAKE_VIEWS = {view: table for table, (view, _) in SOURCES.items()}


@dataclass(frozen=True, slots=True)
class LakeFile:
    """One finished Parquet file of the lake."""

    table: str
    partition: str  # the partition directory's value, e.g. "2025-06-01"
    path: Path
    bytes: int
    mtime_ns: int


def lake_files(lake: Path) -> dict[str, list[LakeFile]]:
    """The finished Parquet files of each lake table (writers' temporary files excluded)."""
    found: dict[str, list[LakeFile]] = {}
    for table in SOURCES:
        files: list[LakeFile] = []
        for path in sorted((Path(lake) / table).glob("*=*/*.parquet")):
            if path.name.startswith((TEMP_PREFIX, ".")):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed between glob and stat
                continue
            files.append(
                LakeFile(
                    table, path.parent.name.split("=", 1)[1], path, stat.st_size, stat.st_mtime_ns
                )
            )
        found[table] = _uncovered(files)
    return found


def _uncovered(files: list[LakeFile]) -> list[LakeFile]:
    """``files`` less those whose offsets another file of their directory and Kafka partition
    covers (a compacted file and its inputs, until they are removed)."""
    named = [(f, FileName.parse(f.path.name)) for f in files]
    groups: dict[tuple[str, str, int], list[tuple[int, int, LakeFile]]] = defaultdict(list)
    for f, name in named:
        if name is not None:
            key = (f.partition, name.topic, name.partition)
            groups[key].append((name.first_offset, name.last_offset, f))
    covered: set[Path] = set()
    for ranges in groups.values():
        reach = -1
        for _first, last, f in sorted(ranges, key=lambda r: (r[0], -r[1])):
            if last <= reach:
                covered.add(f.path)
            reach = max(reach, last)
    return [f for f in files if f.path not in covered] if covered else files


def lake_views_sql(
    files: dict[str, list[LakeFile]], plan: dict[str, set[str]] | None = None
) -> dict[str, str | None]:
    """Per lake table, the select of its view over the lake's files (None: no files).

    With a plan, only the changed partitions' files. Each partition is one ``read_parquet``
    of its files, with the partition column as a constant: DuckDB's ``hive_partitioning``
    would parse every ``key=value`` directory of the whole path, the lake's own location
    included (a lake under ``/data/kafka_offset=1/`` would overwrite that column).
    """
    selects: dict[str, str | None] = {}
    for table, (_, partition_column) in SOURCES.items():
        found = files.get(table, [])
        if plan is not None and table in plan:
            found = [f for f in found if f.partition in plan[table]]
        by_partition: dict[str, list[LakeFile]] = defaultdict(list)
        for f in found:
            by_partition[f.partition].append(f)
        selects[table] = (
            "\nunion all by name\n".join(
                f"select *, cast({sql_str(value)} as date) as {partition_column} from read_parquet("
                f"[{', '.join(parquet_literal(f.path) for f in in_partition)}], "
                "hive_partitioning = false, union_by_name = true)"
                for value, in_partition in sorted(by_partition.items())
            )
            or None
        )
    return selects


def register_lake(con: duckdb.DuckDBPyConnection, selects: dict[str, str | None]) -> None:
    """lake_<table> views (:func:`lake_views_sql`), or empty tables of the lake schema."""
    for table, (view, partition_column) in SOURCES.items():
        select = selects.get(table)
        if select:
            con.execute(f"create or replace temp view {view} as\n{select}")
        else:
            schema = SCHEMAS[table].append(pa.field(partition_column, pa.date32()))
            create_from_arrow(con, view, schema.empty_table(), temp=True)
