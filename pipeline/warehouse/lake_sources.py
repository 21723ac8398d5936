"""The lake as the SQL models see it: ``lake_llm_call``, ``lake_task_feedback``, ``lake_rejected``.

The staging models read the lake through these temporary views, registered by the build over
the lake's finished files (a writer's temporary files are skipped), or as empty tables of the
lake schema when a table has no files yet. An incremental build registers only the changed
partitions' files of the event tables.

A file whose offset range lies inside another's of the same Kafka partition in the same
directory is covered by it and not read: during a compaction (:mod:`pipeline.compaction`)
the new file is renamed in before its inputs are removed.

Listing costs what changed, not the lake's history: every writer of the lake (the consumer,
``compact``) adds and removes files by renaming and unlinking, which sets the partition
directory's mtime, so a directory whose mtime is the one the previous build recorded
(``mart_lake_manifest.directory_modified_ns``) holds the files recorded then and is not
listed again. A directory modified less than :data:`RACY_NS` before it was listed is
recorded without its mtime (NULL) and listed by the next build too: a second change within
the file system's timestamp granularity could leave the same mtime. A file rewritten in place
(not through a rename) is not seen: ``build --full`` lists everything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.lake import REJECTED_TABLE, SCHEMAS, TEMP_PREFIX, FileName, Lake
from pipeline.lake_files import covered
from pipeline.object_lake import ObjectLake
from pipeline.warehouse.duckdb_helpers import create_from_arrow, parquet_literal, sql_str

__all__ = [
    "LAKE_VIEWS",
    "RACY_NS",
    "SOURCES",
    "LakeFile",
    "lake_directories",
    "lake_files",
    "lake_location",
    "lake_views_sql",
    "object_lake_datasets",
    "register_lake",
]

#: lake table -> (name of the view the staging models read, its partition column)
SOURCES = {
    "llm_call": ("lake_llm_call", "event_date"),
    "task_feedback": ("lake_task_feedback", "event_date"),
    REJECTED_TABLE: ("lake_rejected", "received_date"),
}
#: view name -> lake table
LAKE_VIEWS = {view: table for table, (view, _) in SOURCES.items()}
#: A directory modified this close to its listing may change again with the same mtime.
RACY_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class LakeFile:
    """One finished Parquet file of the lake."""

    table: str
    partition: str  # the partition directory's value, e.g. "2025-06-01"
    path: PurePath  # a PurePosixPath ``bucket/prefix/...`` in a bucket
    bytes: int
    mtime_ns: int
    #: the partition directory's mtime when listed, None when too recent to be trusted
    directory_mtime_ns: int | None = None


#: (lake table, partition value) -> (the directory's recorded mtime, its files then)
Known = Mapping[tuple[str, str], tuple[int, list[LakeFile]]]


def lake_location(lake: Lake) -> str:
    """The lake as recorded by a build: its URL, or its local directory resolved."""
    return str(lake) if isinstance(lake, ObjectLake) else str(Path(lake).resolve())


def lake_directories(lake: Path, table: str) -> list[tuple[str, Path, int]]:
    """The partition directories of a lake table: (value, path, mtime_ns), by value."""
    found = []
    try:
        with os.scandir(Path(lake) / table) as entries:
            for entry in entries:
                name = entry.name
                if (
                    "=" not in name
                    or name.startswith(".")
                    or not entry.is_dir(follow_symlinks=False)
                ):
                    continue
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime_ns
                except FileNotFoundError:  # removed meanwhile
                    continue
                found.append((name.split("=", 1)[1], Path(entry.path), mtime))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found)


def lake_files(lake: Lake, known: Known | None = None) -> dict[str, list[LakeFile]]:
    """The finished Parquet files of each lake table (writers' temporary files excluded).

    A partition directory found in ``known`` with the recorded mtime is not listed: its
    recorded files are returned. A lake in a bucket is listed whole (pages of 1,000 keys: a
    compacted lake keeps that to a few requests a month of data).
    """
    if isinstance(lake, ObjectLake):
        return {table: _uncovered(_objects(lake, table)) for table in SOURCES}
    found: dict[str, list[LakeFile]] = {}
    for table in SOURCES:
        files: list[LakeFile] = []
        for value, directory, mtime in lake_directories(lake, table):
            recorded = known.get((table, value)) if known else None
            if recorded is not None and recorded[0] == mtime:
                files.extend(recorded[1])
                continue
            trusted = mtime if time.time_ns() - mtime >= RACY_NS else None
            files.extend(_listed(table, value, directory, trusted))
        found[table] = _uncovered(files)
    return found


def _objects(lake: ObjectLake, table: str) -> list[LakeFile]:
    files = []
    for path, size, mtime in lake.partition_objects(table):
        if not path.name.endswith(".parquet") or path.name.startswith((TEMP_PREFIX, ".")):
            continue
        files.append(LakeFile(table, path.parent.name.split("=", 1)[1], path, size, mtime))
    return sorted(files, key=lambda f: (f.partition, f.path.name))


def _listed(table: str, value: str, directory: Path, directory_mtime: int | None) -> list[LakeFile]:
    files = []
    try:
        with os.scandir(directory) as entries:
            names = sorted(
                e.name
                for e in entries
                if e.name.endswith(".parquet") and not e.name.startswith((TEMP_PREFIX, "."))
            )
    except FileNotFoundError:  # the directory was removed meanwhile
        return []
    for name in names:
        path = directory / name
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed between the listing and the stat
            continue
        files.append(LakeFile(table, value, path, stat.st_size, stat.st_mtime_ns, directory_mtime))
    return files


def _uncovered(files: list[LakeFile]) -> list[LakeFile]:
    """``files`` less those another file of their directory and Kafka partition covers
    (:func:`~pipeline.lake_files.covered`)."""
    named = [(f, FileName.parse(f.path.name)) for f in files]
    hidden = covered((f.partition, name) for f, name in named if name is not None)
    if not hidden:
        return files
    return [f for f, name in named if name is None or (f.partition, name) not in hidden]


def lake_views_sql(
    files: dict[str, list[LakeFile]], plan: dict[str, set[str]] | None = None
) -> dict[str, str | None]:
    """Per lake table, the select of its view over the lake's files (None: no files).

    With a plan, only the changed partitions' files. One ``read_parquet`` of every file (365
    of them, one per partition, took 2.5x the time and 1.6x the memory on a year of data),
    the partition column taken from each file's own directory name: DuckDB's
    ``hive_partitioning`` would parse every ``key=value`` directory of the whole path, the
    lake's own location included (a lake under ``/data/kafka_offset=1/`` would overwrite
    that column).
    """
    selects: dict[str, str | None] = {}
    for table, (_, partition_column) in SOURCES.items():
        found = files.get(table, [])
        if plan is not None and table in plan:
            found = [f for f in found if f.partition in plan[table]]
        directory = sql_str(f"/{partition_column}=([^/]+)/[^/]*$")
        selects[table] = (
            f"select * exclude (filename), cast(regexp_extract(filename, {directory}, 1) as date)"
            f" as {partition_column} from read_parquet("
            f"[{', '.join(parquet_literal(Path(f.path)) for f in sorted(found, key=_order))}], "
            "filename = true, hive_partitioning = false, union_by_name = true)"
            if found
            else None
        )
    return selects


def _order(f: LakeFile) -> tuple[str, str]:
    return (f.partition, f.path.name)


def object_lake_datasets(
    lake: ObjectLake, files: dict[str, list[LakeFile]], plan: dict[str, set[str]] | None = None
) -> dict[str, Any]:
    """Per lake table, a pyarrow dataset over its files in the bucket (None: no files), with
    the partition column from the directory names; with a plan, the changed partitions only.
    DuckDB scans it through Arrow (its own S3 reader is an extension it would download)."""
    import pyarrow.dataset as ds

    out: dict[str, Any] = {}
    for table, (_, partition_column) in SOURCES.items():
        found = files.get(table, [])
        if plan is not None and table in plan:
            found = [f for f in found if f.partition in plan[table]]
        out[table] = (
            ds.dataset(
                [str(f.path) for f in found],
                schema=SCHEMAS[table].append(pa.field(partition_column, pa.date32())),
                format="parquet",
                filesystem=lake.filesystem(),
                partitioning=ds.partitioning(
                    pa.schema([(partition_column, pa.date32())]), flavor="hive"
                ),
                partition_base_dir=str(lake.path(table)),
            )
            if found
            else None
        )
    return out


def register_lake(con: duckdb.DuckDBPyConnection, selects: dict[str, Any]) -> None:
    """lake_<table> views over :func:`lake_views_sql`'s selects or
    :func:`object_lake_datasets`' datasets, or empty tables of the lake schema."""
    for table, (view, partition_column) in SOURCES.items():
        select = selects.get(table)
        if isinstance(select, str) and select:
            con.execute(f"create or replace temp view {view} as\n{select}")
        elif select is not None and not isinstance(select, str):
            con.register(f"{view}_dataset", select)
            con.execute(f"create or replace temp view {view} as select * from {view}_dataset")
        else:
            schema = SCHEMAS[table].append(pa.field(partition_column, pa.date32()))
            create_from_arrow(con, view, schema.empty_table(), temp=True)
