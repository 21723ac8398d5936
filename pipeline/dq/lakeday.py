"""One day of the lake, as the frames the data-quality suites validate.

*The day's files* are the Parquet files in that day's three partitions
(``llm_call/event_date=D``, ``task_feedback/event_date=D``, ``_rejected/received_date=D``).
*The day's flushes* are the distinct file names among them: each name is one flush of one
Kafka partition covering offsets [first, last] (pipeline/lake.py), whose rows may be spread
over several tables and over other days' partitions too - so the reconciliation reads every
file of that name anywhere in the lake, and compares each flush with its neighbours among
all the lake's flushes of the same Kafka partition.

The lake is a local directory or an S3 bucket (:data:`~pipeline.lake_files.Lake`): every
listing and read goes through :func:`day_files`, :func:`read_file` and :func:`flush_files`,
which take either, so both give the same frames for the same files. In a bucket a day's
files are listed per partition prefix (``<table>/event_date=D/``, one LIST each) and a file
is fetched whole (one GET) and decoded in memory, so that a retried request is a transport
failure and never a damaged file; the reconciliation lists the lake once per run (one
recursive LIST of the prefix, paged by 1,000 objects) for all of the day's Kafka partitions,
because a flush's files and its neighbours may lie in any day's partition.

Everything here is pure (files in, frames out); great-expectations is not imported.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.lake import (
    EVENT_TABLES,
    REJECTED_TABLE,
    SCHEMAS,
    TEMP_PREFIX,
    FileName,
    Lake,
    partition_dir,
    partition_files,
)
from pipeline.object_lake import ObjectLake

__all__ = [
    "LakeDay",
    "load_lake_day",
    "day_files",
    "read_file",
    "flush_files",
    "flush_frame",
    "daily_event_counts",
    "schema_problem",
    "null_columns",
]

_TABLES = (*EVENT_TABLES, REJECTED_TABLE)


@dataclass
class LakeDay:
    """The frames of one day: per file, per table, per flush."""

    lake: Lake
    day: dt.date
    files: pd.DataFrame  # one row per file of the day: file, table, schema_problem
    tables: dict[str, pd.DataFrame]  # lake table -> the day's rows (schema-valid files only)
    #: lake table -> the day's files (:class:`~pathlib.Path` in a local lake,
    #: :class:`~pathlib.PurePosixPath` ``bucket/prefix/...`` in a bucket)
    paths: dict[str, list[PurePath]] = field(default_factory=dict)
    #: kafka_offset values of each schema-valid file of the day, kept from the one read of it
    #: so that the reconciliation (:func:`flush_frame`) does not read those files again
    offsets: dict[PurePath, list[int]] = field(default_factory=dict)

    @property
    def flush_names(self) -> set[str]:
        return {p.name for paths in self.paths.values() for p in paths}


def schema_problem(actual: pa.Schema, table: str) -> str | None:
    """What is wrong with a file's schema for lake ``table`` (names and types), or None."""
    expected = SCHEMAS[table]
    problems = []
    missing = [f.name for f in expected if f.name not in actual.names]
    extra = [name for name in actual.names if name not in expected.names]
    if missing:
        problems.append("missing column " + ", ".join(missing))
    if extra:
        problems.append("unexpected column " + ", ".join(extra))
    for f in expected:
        if f.name in actual.names and not actual.field(f.name).type.equals(f.type):
            problems.append(f"{f.name} is {actual.field(f.name).type}, expected {f.type}")
    return "; ".join(problems) or None


def null_columns(frame: pd.DataFrame, table: str) -> pd.Series:
    """Per row, the lake schema's non-nullable columns that are null (``"agent_id, role"``), else None."""
    required = [f.name for f in SCHEMAS[table] if not f.nullable]
    nulls = frame[required].isna()
    result = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    for index, row in nulls[nulls.any(axis=1)].iterrows():
        result.loc[index] = ", ".join(column for column, is_null in row.items() if is_null)
    return result


def _lake_file_candidate(name: str) -> bool:
    """Not a writer's temporary file nor a hidden one (``.DS_Store``, an editor's swap file)."""
    return not name.startswith((TEMP_PREFIX, "."))


def day_files(lake: Lake, table: str, day: dt.date) -> list[PurePath]:
    """The files directly in the day's partition of ``table``, sorted: in a bucket the
    objects under ``<table>/<key>=D/`` (one listing of that prefix; an object in a deeper
    "directory" is not the partition's, as a subdirectory is not in a local lake)."""
    directory = partition_dir(lake, table, day)
    if isinstance(lake, ObjectLake):
        return sorted(
            path
            for path, _, _ in lake.partition_objects(lake.relative(PurePosixPath(directory)))
            if path.parent == directory and _lake_file_candidate(path.name)
        )
    local = Path(directory)
    if not local.is_dir():
        return []
    return sorted(p for p in local.iterdir() if p.is_file() and _lake_file_candidate(p.name))


_LOCAL = pafs.LocalFileSystem()


def read_file(lake: Lake, path: PurePath, columns: list[str] | None = None) -> pa.Table:
    """One lake file, with no partitioning (no ``key=value`` directory of its path becomes a
    column).

    Local: its path a literal, absolute and on the local file system, so that pyarrow takes
    no ``s3:``/``file:`` prefix of a relative lake path for a URI. Bucket: the object is
    fetched whole (retried while the store fails: :class:`~pipeline.LakeWriteError` when it
    never answers) and decoded from memory, so a damaged file raises the same
    :class:`pyarrow.ArrowException` as locally; a vanished one raises FileNotFoundError.
    """
    if isinstance(lake, ObjectLake):
        body = lake.get_bytes(PurePosixPath(path))
        if body is None:
            raise FileNotFoundError(f"{lake.relative(PurePosixPath(path))}: no such object")
        return pq.read_table(pa.BufferReader(body), columns=columns, partitioning=None)
    return pq.read_table(
        os.path.abspath(path), columns=columns, filesystem=_LOCAL, partitioning=None
    )


def _as_lake(lake: Lake | str) -> Lake:
    return lake if isinstance(lake, ObjectLake) else Path(lake)


def _relative(lake: Lake, path: PurePath) -> str:
    """``<table>/<partition>/<name>``, the same for a local lake and a bucket."""
    if isinstance(lake, ObjectLake):
        return lake.relative(PurePosixPath(path))
    return Path(path).relative_to(lake).as_posix()


def flush_files(
    lake: Lake, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], list[tuple[PurePath, FileName]]]:
    """Every lake file (all tables, all days) of each Kafka partition ``(topic, partition)``
    of ``keys``: :func:`~pipeline.lake_files.partition_files` of each.

    In a bucket, ``partition_files`` would list the whole lake once per Kafka partition
    (a flush's files and its neighbours may be in any day's partition, and the partition
    index bounds only the recent ones): here the lake is listed once for all of them and
    the objects kept exactly as ``partition_files`` keeps them
    (``<table>/<partition dir with =>/<topic>+<partition>+<first>+<last>.parquet``).
    """
    wanted = sorted(set(keys))
    if not isinstance(lake, ObjectLake):
        return {key: partition_files(lake, *key) for key in wanted}
    found: dict[tuple[str, int], list[tuple[PurePath, FileName]]] = defaultdict(list)
    if wanted:
        keep = set(wanted)
        for path, _, _ in lake.partition_objects():
            name = FileName.parse(path.name)
            if name is not None and (name.topic, name.partition) in keep:
                found[(name.topic, name.partition)].append((path, name))
    return {
        key: sorted(found[key], key=lambda item: (item[1].first_offset, str(item[0])))
        for key in wanted
    }


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def _empty(table: str) -> pd.DataFrame:
    return SCHEMAS[table].empty_table().to_pandas()


def load_lake_day(lake: Lake, day: dt.date) -> LakeDay:
    """Read the day's files; a file whose schema or name is wrong is listed, not read."""
    lake = _as_lake(lake)
    rows: list[dict[str, object]] = []
    tables: dict[str, pd.DataFrame] = {}
    paths: dict[str, list[PurePath]] = {}
    offsets: dict[PurePath, list[int]] = {}
    for table in _TABLES:
        paths[table] = day_files(lake, table, day)
        good: list[pa.Table] = []
        for path in paths[table]:
            problem: str | None
            if FileName.parse(path.name) is None:
                problem = "not a lake file name (<topic>+<partition>+<first>+<last>.parquet)"
            else:
                try:
                    data = read_file(lake, path)
                except (OSError, pa.ArrowException) as exc:
                    data, problem = None, f"unreadable: {exc}"
                else:
                    problem = schema_problem(data.schema, table)
                if data is not None and problem is None:
                    # nullable: a null in a key column is the keys_not_null check's to report
                    good.append(data.select(SCHEMAS[table].names).cast(_nullable(SCHEMAS[table])))
                    offsets[path] = _non_null_ints(data.column("kafka_offset"))
            relative = _relative(lake, path)
            rows.append(
                {
                    "file": relative,
                    "table": table,
                    "schema_problem": f"{relative}: {problem}" if problem else None,
                }
            )
        tables[table] = pa.concat_tables(good).to_pandas() if good else _empty(table)
    files = pd.DataFrame(rows, columns=["file", "table", "schema_problem"])
    return LakeDay(lake=lake, day=day, files=files, tables=tables, paths=paths, offsets=offsets)


def _offsets(lake: Lake, path: PurePath) -> list[int] | None:
    """The kafka_offset values of one file, or None when they cannot be read."""
    try:
        column = read_file(lake, path, ["kafka_offset"]).column("kafka_offset")
    except (OSError, KeyError, pa.ArrowException):
        return None
    if not pa.types.is_integer(column.type):
        return None
    return _non_null_ints(column)


def _non_null_ints(column: pa.ChunkedArray) -> list[int]:
    return [int(v) for v in column.to_pylist() if v is not None]


_FLUSH_COLUMNS = [
    "flush",
    "kafka_topic",
    "kafka_partition",
    "first_offset",
    "last_offset",
    "expected_offsets",
    "rows",
    "rejected_rows",
    "missing_offsets",
    "duplicate_offsets",
    "foreign_offsets",
    "gap_before",
    "gap_after",
]


def flush_frame(
    lake: Lake,
    flush_names: set[str],
    *,
    known_offsets: Mapping[PurePath, list[int]] | None = None,
) -> pd.DataFrame:
    """One row per flush of the day with what reconciliation asserts.

    ``missing_offsets`` / ``duplicate_offsets`` / ``foreign_offsets`` count offsets of
    [first, last] found in no file of that name, offsets found more than once, and offsets
    outside [first, last]. ``gap_before`` is ``first - previous.last - 1`` against the lake's
    previous flush of the same Kafka partition (``gap_after`` likewise with the next one):
    0 when they abut, positive = offsets lost between flushes, negative = an overlap
    (double counting); null when there is no neighbour. ``known_offsets`` (path -> its
    kafka_offset values, e.g. :attr:`LakeDay.offsets`) spares reading those files again.
    """
    lake = _as_lake(lake)
    names = [n for n in (FileName.parse(text) for text in flush_names) if n is not None]
    rows = []
    listed = flush_files(lake, {(n.topic, n.partition) for n in names})  # every table, day
    for (topic, partition), files in listed.items():
        siblings = sorted({n for _, n in files}, key=lambda n: (n.first_offset, n.last_offset))
        for name in sorted(
            (n for n in names if (n.topic, n.partition) == (topic, partition)),
            key=lambda n: n.first_offset,
        ):
            rows.append(
                _flush_row(
                    lake, name, [p for p, n in files if n == name], siblings, known_offsets or {}
                )
            )
    frame = pd.DataFrame(rows, columns=_FLUSH_COLUMNS)
    for column in ("gap_before", "gap_after"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _flush_row(
    lake: Lake,
    name: FileName,
    paths: list[PurePath],
    siblings: list[FileName],
    known_offsets: Mapping[PurePath, list[int]],
) -> dict[str, object]:
    offsets: list[int] = []
    rejected_rows = 0
    for path in paths:
        values = known_offsets[path] if path in known_offsets else _offsets(lake, path)
        if values is None:
            continue  # reported by the schema check
        offsets.extend(values)
        if path.parent.parent.name == REJECTED_TABLE:
            rejected_rows += len(values)
    inside = [o for o in offsets if name.first_offset <= o <= name.last_offset]
    distinct = set(inside)
    expected = name.last_offset - name.first_offset + 1
    at = siblings.index(name)
    before = siblings[at - 1] if at > 0 else None
    after = siblings[at + 1] if at + 1 < len(siblings) else None
    return {
        "flush": str(name),
        "kafka_topic": name.topic,
        "kafka_partition": name.partition,
        "first_offset": name.first_offset,
        "last_offset": name.last_offset,
        "expected_offsets": expected,
        "rows": len(offsets),
        "rejected_rows": rejected_rows,
        "missing_offsets": expected - len(distinct),
        "duplicate_offsets": len(inside) - len(distinct),
        "foreign_offsets": len(offsets) - len(inside),
        "gap_before": (name.first_offset - before.last_offset - 1) if before else None,
        "gap_after": (after.first_offset - name.last_offset - 1) if after else None,
    }


def daily_event_counts(lake: Lake, days: list[dt.date]) -> dict[dt.date, int]:
    """Distinct event_ids per day over llm_call + task_feedback, for days that have files."""
    lake = _as_lake(lake)
    counts: dict[dt.date, int] = {}
    for day in days:
        ids: set[str] = set()
        seen_files = False
        for table in EVENT_TABLES:
            for path in day_files(lake, table, day):
                seen_files = True
                try:
                    column = read_file(lake, path, ["event_id"]).column("event_id")
                except (OSError, KeyError, pa.ArrowException):
                    continue
                ids.update(v for v in column.to_pylist() if v is not None)
        if seen_files:
            counts[day] = len(ids)
    return counts
