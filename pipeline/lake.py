"""The Parquet lake: layout, column schemas and atomic file writes.

Layout::

    <lake>/llm_call/event_date=YYYY-MM-DD/<file>.parquet
    <lake>/task_feedback/event_date=YYYY-MM-DD/<file>.parquet
    <lake>/_rejected/received_date=YYYY-MM-DD/<file>.parquet
    <lake>/_index/partitions/<topic>+<partition>+index.json   (where recovery looks)
    <lake>/_index/compaction/                                (journals of pipeline.compaction)

``<file>`` is ``<topic>+<partition>+<first offset>+<last offset>`` (offsets zero-padded to 20
digits): the name is derived from the Kafka offsets the file covers, never from event
values, so a rewrite of the same offsets lands on the same name. The partition column
(``event_date`` / ``received_date``) lives in the directory name only (hive partitioning).

Every row carries where it came from (``kafka_topic``, ``kafka_partition``, ``kafka_offset``)
and when it landed (``ingested_at``), so that landed + rejected rows can be reconciled with
committed offsets.

An event table's columns are derived from the event's pydantic model at import
(:data:`pipeline.contract.EVENT_FIELDS`, :func:`arrow_type`): one column per field in field
order, nullable when the field is, typed by the field's Python type (``str`` -> string,
``int`` -> int64, ``bool`` -> bool, a timestamp -> ``timestamp[us, UTC]``, ``Decimal`` ->
decimal128 of its ``max_digits`` and ``decimal_places``) unless the field names another
(:class:`pipeline.contract.rules.LakeType`); then the source columns.

File names and paths are in :mod:`pipeline.lake_files` (no pyarrow), re-exported here.

Files appear atomically: written under a dot-prefixed temporary name (ending in
``.partial``, never matched by ``*.parquet``) in the same
directory, fsynced, renamed, and the directory fsynced (:func:`pipeline.files.atomic_write`;
mode ``0o666`` less the umask). Nothing below the lake root is written through a symbolic
link: a linked table or partition directory is a :class:`~pipeline.LakeWriteError`. In a
lake in an S3 bucket (:mod:`pipeline.object_lake`) a file is one PUT, visible whole or not
at all (:func:`write_lake_file`).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from decimal import Decimal
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline._exceptions import LakeWriteError
from pipeline.contract.fields import EVENT_FIELDS, ContractDerivationError, FieldSpec
from pipeline.files import atomic_write

# file names and paths, which need no pyarrow (the consumer's poller uses them alone)
from pipeline.lake_files import (
    EVENT_TABLES,
    REJECTED_TABLE,
    TEMP_PREFIX,
    FileName,
    Lake,
    clean_temp_files,
    fsync_path,
    open_lake_dir,
    partition_dir,
    partition_files,
)
from pipeline.object_lake import ObjectLake

__all__ = [
    "EVENT_TABLES",
    "REJECTED_TABLE",
    "LLM_CALL_SCHEMA",
    "TASK_FEEDBACK_SCHEMA",
    "REJECTED_SCHEMA",
    "SCHEMAS",
    "arrow_type",
    "event_schema",
    "TEMP_PREFIX",
    "FileName",
    "partition_dir",
    "open_lake_dir",
    "Lake",
    "write_table_atomic",
    "write_lake_file",
    "read_lake_file",
    "write_parquet",
    "clean_temp_files",
    "fsync_path",
    "partition_files",
]

_TS = pa.timestamp("us", tz="UTC")
_DEFAULT_TYPES: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    bool: pa.bool_(),
    dt.datetime: _TS,
}


def arrow_type(spec: FieldSpec) -> pa.DataType:
    """The lake column type of a contract field; ContractDerivationError when the type cannot
    hold every value the field allows (an int's bounds, a decimal's digits)."""
    if spec.lake_type is not None:
        typ = pa.type_for_alias(spec.lake_type)
    elif spec.type is Decimal:
        typ = pa.decimal128(spec.max_digits, spec.decimal_places)
    else:
        typ = _DEFAULT_TYPES[spec.type]
    if spec.type is int:
        if not pa.types.is_integer(typ):
            raise ContractDerivationError(f"{spec.name}: an int stored as {typ}")
        bits = typ.bit_width - (1 if pa.types.is_signed_integer(typ) else 0)
        low = -(2**bits) if pa.types.is_signed_integer(typ) else 0
        if spec.ge is None or spec.le is None or spec.ge < low or spec.le >= 2**bits:
            raise ContractDerivationError(f"{spec.name}: {spec.ge}..{spec.le} does not fit {typ}")
    elif spec.type is Decimal:
        if not (
            pa.types.is_decimal(typ)
            and typ.precision >= (spec.max_digits or 0)
            and typ.scale == spec.decimal_places
        ):
            raise ContractDerivationError(
                f"{spec.name}: max_digits={spec.max_digits}, decimal_places={spec.decimal_places}"
                f" stored as {typ}"
            )
    elif spec.type is dt.datetime:
        if not (pa.types.is_timestamp(typ) and typ.tz is not None):
            raise ContractDerivationError(f"{spec.name}: a UTC timestamp stored as {typ}")
    elif typ != _DEFAULT_TYPES[spec.type]:
        raise ContractDerivationError(f"{spec.name}: a {spec.type.__name__} stored as {typ}")
    return typ


def event_schema(event_type: str) -> pa.Schema:
    """The lake schema of an event table: the event model's fields, then the source columns."""
    fields = [
        pa.field(spec.name, arrow_type(spec), nullable=spec.nullable)
        for spec in EVENT_FIELDS[event_type]
    ]
    clash = {f.name for f in fields} & {f.name for f in _SOURCE}
    if clash:
        raise ContractDerivationError(
            f"{event_type}: fields named like source columns: {sorted(clash)}"
        )
    return pa.schema(fields + _SOURCE)


_SOURCE = [
    pa.field("kafka_topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("ingested_at", _TS, nullable=False),
]

if tuple(EVENT_FIELDS) != EVENT_TABLES:  # lake_files names the tables without the models
    raise ContractDerivationError(
        f"event types {tuple(EVENT_FIELDS)} != lake tables {EVENT_TABLES}"
    )
LLM_CALL_SCHEMA = event_schema("llm_call")
TASK_FEEDBACK_SCHEMA = event_schema("task_feedback")

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("raw_key", pa.binary()),
        pa.field("raw_value", pa.binary()),  # null for a tombstone
        pa.field("error", pa.string(), nullable=False),
    ]
    + _SOURCE
)

SCHEMAS: dict[str, pa.Schema] = {
    "llm_call": LLM_CALL_SCHEMA,
    "task_feedback": TASK_FEEDBACK_SCHEMA,
    REJECTED_TABLE: REJECTED_SCHEMA,
}

# snappy: several times cheaper to write than zstd for somewhat larger files; the consumer
# writes on the hot path, so the cheaper codec wins (DuckDB reads both alike)
DEFAULT_COMPRESSION = "snappy"
# Dictionary encoding only for the columns with few distinct values (roles, models, agents,
# one topic, ...): hashing every value of an id, a timestamp or a token count costs the
# consumer CPU and hardly shrinks the file. Statistics (min/max per row group) only for the
# columns readers filter or reconcile on. Cheaper to write for slightly larger files; the
# schema and what readers get are unchanged.
_DICTIONARY_COLUMNS = (
    "event_type",
    "schema_version",
    "agent_id",
    "role",
    "provider",
    "model",
    "status",
    "escalated",
    "escalation_trigger",
    "policy_version",
    "task_type",
    "satisfaction",
    "escalation_needed",
    "review_consistent",
    "error",
    "kafka_topic",
    "kafka_partition",
    "ingested_at",
)
_STATISTICS_COLUMNS = ("event_id", "occurred_at", "kafka_partition", "kafka_offset", "ingested_at")


def write_parquet(table: pa.Table, sink: Any, *, compression: str = DEFAULT_COMPRESSION) -> None:
    """Write ``table`` to the open file ``sink`` with the lake's encoding and statistics."""
    pq.write_table(
        table,
        sink,
        compression=compression,
        use_dictionary=list(_DICTIONARY_COLUMNS),
        write_statistics=list(_STATISTICS_COLUMNS),
    )


def write_lake_file(lake: Lake, table: pa.Table, path: PurePath) -> None:
    """Write one lake file: :func:`write_table_atomic` in a local lake, one PUT in a bucket."""
    if isinstance(lake, ObjectLake):
        lake.put_table(table, PurePosixPath(path), write_parquet)
    else:
        write_table_atomic(table, Path(path), lake=Path(lake))


def read_lake_file(lake: Lake, path: PurePath, columns: list[str] | None = None) -> pa.Table:
    """Read one lake file of a local lake or a bucket."""
    if isinstance(lake, ObjectLake):
        table = lake.read_table(PurePosixPath(path))
        return table.select(columns) if columns else table
    return pq.read_table(Path(path), columns=columns)


def write_table_atomic(
    table: pa.Table, path: Path, *, lake: Path | None = None, compression: str = DEFAULT_COMPRESSION
) -> None:
    """Write ``table`` to ``path`` so that readers see either nothing or the whole file.

    ``lake`` is the lake root (default: ``path`` three levels up, the layout
    ``<lake>/<table>/<partition>/<file>``). The directories below it are created and opened
    without following symbolic links (:func:`~pipeline.lake_files.open_lake_dir`) and the
    temporary file is created with ``O_EXCL | O_NOFOLLOW`` in the opened directory: a link
    inside the lake raises :class:`~pipeline.LakeWriteError` naming it and nothing is
    written. The file's mode is ``0o666`` less the process umask.
    """
    path = Path(path)
    root = Path(lake) if lake is not None else path.parents[2]
    *parts, name = path.relative_to(root).parts
    # not ending in .parquet, so that no reader glob ever picks up a half-written file
    tmp = f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}.partial"
    dir_fd = open_lake_dir(root, parts, create=True)
    try:
        with atomic_write(name, dir_fd=dir_fd, temp_name=tmp) as fh:
            write_parquet(table, fh, compression=compression)
    except FileExistsError:  # the temporary name is taken: a planted link, never followed
        raise LakeWriteError(
            "cannot write the lake: the temporary file name already exists (never followed)",
            path=str(path.parent / tmp),
        ) from None
    finally:
        os.close(dir_fd)
