"""Lake file naming, atomic writes and the consumer's crash-recovery rules (no broker)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.consumer.recovery import recover_partition
from pipeline.lake import (
    REJECTED_SCHEMA,
    SCHEMAS,
    TEMP_PREFIX,
    FileName,
    clean_temp_files,
    partition_dir,
    partition_files,
    write_table_atomic,
)

DAY = dt.date(2026, 11, 25)
TS = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)


def test_file_name_round_trips_and_sorts_by_offset():
    name = FileName("agent-usage", 3, 1200, 1299)
    assert str(name) == "agent-usage+3+00000000000000001200+00000000000000001299.parquet"
    assert FileName.parse(str(name)) == name
    assert sorted([str(FileName("t", 0, 10, 19)), str(FileName("t", 0, 9, 9))])[0].endswith(
        "00000000000000000009+00000000000000000009.parquet"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "x.parquet",
        "t+1+5+6.parquet",
        f"{TEMP_PREFIX}abc-t+0+00000000000000000000+00000000000000000001.parquet.partial",
        "a+b+00000000000000000000+00000000000000000001.parquet",
    ],
)
def test_names_that_are_not_lake_files_parse_to_none(bad):
    assert FileName.parse(bad) is None


def rejected_rows(offsets: list[int], partition: int = 0) -> pa.Table:
    n = len(offsets)
    return pa.table(
        {
            "raw_key": [b"k"] * n,
            "raw_value": [b"v"] * n,
            "error": ["e"] * n,
            "kafka_topic": ["t"] * n,
            "kafka_partition": pa.array([partition] * n, pa.int32()),
            "kafka_offset": pa.array(offsets, pa.int64()),
            "ingested_at": pa.array([TS] * n, pa.timestamp("us", tz="UTC")),
        },
        schema=REJECTED_SCHEMA,
    )


def put(lake, table: str, day: dt.date, name: FileName, offsets: list[int]):
    path = partition_dir(lake, table, day) / str(name)
    write_table_atomic(rejected_rows(offsets, name.partition), path)
    return path


def test_temporary_files_are_never_matched_by_a_parquet_glob(tmp_path, monkeypatch):
    """A reader globbing ``*.parquet`` never sees a file that is still being written."""
    seen = []
    real = pq.write_table

    def spy(table, where, **kw):  # look at the directory while the file is being written
        seen.append(sorted(p.name for p in (tmp_path / "_rejected").glob("*/*.parquet")))
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", spy)
    put(tmp_path, "_rejected", DAY, FileName("t", 0, 0, 1), [0, 1])
    assert seen == [[]]
    assert [p.name for p in (tmp_path / "_rejected").glob("*/*.parquet")] == [
        str(FileName("t", 0, 0, 1))
    ]


def test_atomic_write_leaves_no_temp_file_and_replaces_a_previous_file(tmp_path):
    path = put(tmp_path, "_rejected", DAY, FileName("t", 0, 0, 1), [0, 1])
    put(tmp_path, "_rejected", DAY, FileName("t", 0, 0, 1), [0, 1])
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_recovery_deletes_files_at_or_after_the_committed_offset_in_every_table(tmp_path):
    """Files of flushes whose commit never happened go; committed ones stay."""
    keep = [put(tmp_path, "_rejected", DAY, FileName("t", 0, 0, 9), list(range(10)))]
    gone = [
        put(tmp_path, "_rejected", DAY, FileName("t", 0, 10, 19), list(range(10, 15))),
        put(
            tmp_path,
            "_rejected",
            DAY + dt.timedelta(days=1),
            FileName("t", 0, 10, 19),
            list(range(15, 20)),
        ),
        put(tmp_path, "_rejected", DAY, FileName("t", 0, 20, 29), list(range(20, 30))),
    ]
    other = [
        put(tmp_path, "_rejected", DAY, FileName("t", 1, 10, 19), list(range(10, 20))),
        put(tmp_path, "_rejected", DAY, FileName("t2", 0, 10, 19), list(range(10, 20))),
    ]
    rec = recover_partition(tmp_path, "t", 0, committed=10)
    assert sorted(rec.deleted) == sorted(gone)
    assert rec.position is None and not rec.straddling
    assert all(p.exists() for p in keep + other)
    assert not any(p.exists() for p in gone)


def test_recovery_removes_only_the_partitions_temporary_files(tmp_path):
    d = partition_dir(tmp_path, "llm_call", DAY)
    d.mkdir(parents=True)
    mine = d / f"{TEMP_PREFIX}abc-{FileName('t', 0, 5, 9)}.partial"
    theirs = d / f"{TEMP_PREFIX}def-{FileName('t', 1, 5, 9)}.partial"
    mine.write_bytes(b"partial")
    theirs.write_bytes(b"partial")
    rec = recover_partition(tmp_path, "t", 0, committed=5)
    assert rec.temp_removed == 1 and not mine.exists() and theirs.exists()
    assert clean_temp_files(tmp_path) == 1 and not theirs.exists()


def test_a_file_straddling_the_committed_offset_is_kept_and_skipped(tmp_path):
    """Cannot happen with this consumer; if it does, nothing is written twice."""
    path = put(tmp_path, "_rejected", DAY, FileName("t", 0, 0, 19), list(range(20)))
    rec = recover_partition(tmp_path, "t", 0, committed=10)
    assert path.exists() and rec.position == 20
    assert rec.straddling == [FileName("t", 0, 0, 19)]


def test_without_a_commit_complete_flushes_are_kept_and_incomplete_ones_deleted(tmp_path):
    """A new group (or a crash before the first commit): the lake says where to resume."""
    complete = [
        put(tmp_path, "_rejected", DAY, FileName("t", 0, 0, 9), list(range(6))),
        put(
            tmp_path,
            "_rejected",
            DAY + dt.timedelta(days=1),
            FileName("t", 0, 0, 9),
            list(range(6, 10)),
        ),
    ]
    partial = put(tmp_path, "_rejected", DAY, FileName("t", 0, 10, 19), list(range(10, 14)))
    rec = recover_partition(tmp_path, "t", 0, committed=None)
    assert rec.position == 10 and rec.deleted == [partial]
    assert all(p.exists() for p in complete)


def test_without_a_commit_or_files_nothing_changes(tmp_path):
    rec = recover_partition(tmp_path / "missing", "t", 0, committed=None)
    assert rec.position is None and rec.deleted == [] and rec.temp_removed == 0


def test_partition_files_lists_one_partition_across_tables_and_days(tmp_path):
    a = put(tmp_path, "_rejected", DAY, FileName("t", 0, 0, 9), list(range(10)))
    b = put(tmp_path, "_rejected", DAY, FileName("t", 10, 0, 9), list(range(10)))
    assert [p for p, _ in partition_files(tmp_path, "t", 0)] == [a]
    assert [p for p, _ in partition_files(tmp_path, "t", 10)] == [b]


_TS = pa.timestamp("us", tz="UTC")
_ENVELOPE = [
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("schema_version", pa.int32(), nullable=False),
    pa.field("occurred_at", _TS, nullable=False),
    pa.field("agent_id", pa.string(), nullable=False),
    pa.field("task_id", pa.string(), nullable=False),
    pa.field("role", pa.string(), nullable=False),
]
_SOURCE = [
    pa.field("kafka_topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("ingested_at", _TS, nullable=False),
]
# The lake's event schemas as they were written by hand before they were derived from the
# models: every lake file written since schema_version 1 has exactly these columns.
WRITTEN_SCHEMAS = {
    "llm_call": pa.schema(
        _ENVELOPE
        + [
            pa.field("provider", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("input_tokens", pa.int64(), nullable=False),
            pa.field("output_tokens", pa.int64(), nullable=False),
            pa.field("cache_read_tokens", pa.int64(), nullable=False),
            pa.field("cache_write_5m_tokens", pa.int64(), nullable=False),
            pa.field("cache_write_1h_tokens", pa.int64(), nullable=False),
            pa.field("latency_ms", pa.int64()),
            pa.field("status", pa.string(), nullable=False),
            pa.field("escalated", pa.bool_(), nullable=False),
            pa.field("escalation_trigger", pa.string()),
            pa.field("policy_version", pa.string()),
            pa.field("task_type", pa.string()),
        ]
        + _SOURCE
    ),
    "task_feedback": pa.schema(
        _ENVELOPE
        + [
            pa.field("satisfaction", pa.int32()),
            pa.field("escalation_needed", pa.bool_()),
            pa.field("review_consistent", pa.bool_()),
        ]
        + _SOURCE
    ),
}


@pytest.mark.parametrize("table", sorted(WRITTEN_SCHEMAS))
def test_the_schemas_derived_from_the_models_are_the_written_ones(table):
    """Derived from the pydantic models (column names, order, types, nullability): the same
    schema as every lake file already written, so the warehouse and the data-quality checks
    read old and new files alike. A change here is a contract change (docs/events.md,
    "Changing the contract")."""
    assert SCHEMAS[table].equals(WRITTEN_SCHEMAS[table], check_metadata=True), (
        f"{table}: derived {SCHEMAS[table]} != written {WRITTEN_SCHEMAS[table]}"
    )


def test_lake_files_read_back_with_the_lake_schema_and_identical_values(tmp_path):
    """Dictionary encoding only on some columns and statistics only on some are write-side
    choices: readers get the declared schema (plain strings, no dictionary type) and the
    same values, and the filter/reconciliation columns keep their min/max statistics."""
    import duckdb

    rows = [
        {
            "event_id": f"e{i}",
            "event_type": "llm_call",
            "schema_version": 1,
            "occurred_at": TS + dt.timedelta(seconds=i),
            "agent_id": f"a{i % 3}",
            "task_id": f"t{i}",
            "role": "implementer",
            "provider": "zai",
            "model": "glm-4.5",
            "input_tokens": i,
            "output_tokens": 2 * i,
            "cache_read_tokens": 0,
            "cache_write_5m_tokens": 0,
            "cache_write_1h_tokens": 0,
            "latency_ms": None if i % 2 else i,
            "status": "ok",
            "escalated": i == 3,
            "escalation_trigger": "security" if i == 3 else None,
            "policy_version": None,
            "task_type": "tests",
            "kafka_topic": "t",
            "kafka_partition": 2,
            "kafka_offset": 10 + i,
            "ingested_at": TS,
        }
        for i in range(50)
    ]
    table = pa.Table.from_pylist(rows, schema=SCHEMAS["llm_call"])
    path = partition_dir(tmp_path, "llm_call", DAY) / str(FileName("t", 2, 10, 59))
    write_table_atomic(table, path)
    back = pq.read_table(path)
    assert back.schema.equals(SCHEMAS["llm_call"]) and back.equals(table)
    stats = pq.read_metadata(path).row_group(0)
    by_name = {stats.column(i).path_in_schema: stats.column(i) for i in range(stats.num_columns)}
    offsets = by_name["kafka_offset"].statistics
    assert (offsets.min, offsets.max) == (10, 59)
    assert by_name["occurred_at"].statistics.has_min_max
    got = duckdb.sql(
        f"select count(*), sum(input_tokens), count(distinct agent_id), "
        f"count(latency_ms) from read_parquet('{path}')"
    ).fetchall()
    assert got == [(50, sum(range(50)), 3, 25)]


# -- symbolic links: nothing below the lake root is followed ------------------------------------


def outside_dir(tmp_path):
    """A directory outside the lake that a planted link points to."""
    out = tmp_path / "outside"
    out.mkdir()
    return out


def llm_batch(day: dt.date, offsets: list[int]):
    """A raw batch of valid llm_call events of ``day`` on partition 0."""
    import orjson

    from pipeline.consumer.batches import RawBatch

    values = [
        orjson.dumps(
            {
                "event_id": f"e-{o}",
                "event_type": "llm_call",
                "schema_version": 1,
                "occurred_at": f"{day.isoformat()}T12:00:00Z",
                "agent_id": "a",
                "task_id": f"t-{o}",
                "role": "implementer",
                "provider": "zai",
                "model": "glm-4.5",
                "input_tokens": 1,
                "output_tokens": 1,
            }
        )
        for o in offsets
    ]
    n = len(values)
    return RawBatch([0] * n, offsets, [b"k"] * n, values, TS, [(0, 0, n)])


@pytest.mark.parametrize("linked", ["partition", "table"])
def test_sink_refuses_to_write_through_a_linked_directory_of_the_lake(
    tmp_path, make_settings, linked
):
    """A partition (or table) directory that is a symlink: the flush raises LakeWriteError
    naming it (the consumer exits 1, commits nothing) and nothing lands in the link's target."""
    from pipeline._exceptions import LakeWriteError
    from pipeline.consumer.sink import Sink

    lake, out = tmp_path / "lake", outside_dir(tmp_path)
    day_dir = partition_dir(lake, "llm_call", DAY)
    link = day_dir if linked == "partition" else day_dir.parent
    link.parent.mkdir(parents=True)
    link.symlink_to(out, target_is_directory=True)
    sink = Sink(make_settings(kafka=False, topic="t", lake=lake), dead_letter=None)
    try:
        sink.add(llm_batch(DAY, [0, 1, 2]))
        with pytest.raises(LakeWriteError, match="symbolic link") as err:
            sink.flush()
    finally:
        sink.close()
    assert err.value.path == str(link) and str(link) in str(err.value)
    assert err.value.exit_code == 1
    assert list(out.rglob("*")) == []  # not a byte outside the lake, not even a directory
    assert link.is_symlink()


def test_the_lake_root_itself_may_be_a_symlink(tmp_path):
    real = tmp_path / "real-lake"
    real.mkdir()
    (tmp_path / "lake").symlink_to(real, target_is_directory=True)
    path = put(tmp_path / "lake", "_rejected", DAY, FileName("t", 0, 0, 1), [0, 1])
    assert (real / path.relative_to(tmp_path / "lake")).is_file()
    assert [p for p, _ in partition_files(tmp_path / "lake", "t", 0)] == [path]


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path, monkeypatch):
    """The temporary file is created with O_EXCL | O_NOFOLLOW: a link at its name is an error,
    the file it points to is untouched, the link stays (it is not ours to remove)."""
    import uuid

    from pipeline._exceptions import LakeWriteError

    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)
    victim = outside_dir(tmp_path) / "victim"
    victim.write_bytes(b"precious")
    name = FileName("t", 0, 0, 1)
    directory = partition_dir(tmp_path / "lake", "_rejected", DAY)
    directory.mkdir(parents=True)
    planted = directory / f"{TEMP_PREFIX}{fixed.hex}-{name}.partial"
    planted.symlink_to(victim)
    with pytest.raises(LakeWriteError, match="already exists") as err:
        put(tmp_path / "lake", "_rejected", DAY, name, [0, 1])
    assert err.value.path == str(planted)
    assert victim.read_bytes() == b"precious" and planted.is_symlink()
    assert not (directory / str(name)).exists()


def test_a_link_at_the_final_name_is_replaced_not_written_through(tmp_path):
    victim = outside_dir(tmp_path) / "victim.parquet"
    victim.write_bytes(b"precious")
    name = FileName("t", 0, 0, 1)
    directory = partition_dir(tmp_path / "lake", "_rejected", DAY)
    directory.mkdir(parents=True)
    (directory / str(name)).symlink_to(victim)
    path = put(tmp_path / "lake", "_rejected", DAY, name, [0, 1])
    assert not path.is_symlink() and pq.read_table(path).num_rows == 2
    assert victim.read_bytes() == b"precious"


def test_a_directory_swapped_for_a_link_mid_write_does_not_redirect_the_file(tmp_path, monkeypatch):
    """No check-then-open race: the directory is held open while the file is written, so
    replacing it by a link to the outside meanwhile changes nothing about where it lands."""
    out = outside_dir(tmp_path)
    day_dir = partition_dir(tmp_path / "lake", "_rejected", DAY)
    day_dir.mkdir(parents=True)
    moved = day_dir.with_name("moved")
    real = pq.write_table

    def swap_then_write(table, where, **kw):
        day_dir.rename(moved)
        day_dir.symlink_to(out, target_is_directory=True)
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", swap_then_write)
    name = FileName("t", 0, 0, 1)
    put(tmp_path / "lake", "_rejected", DAY, name, [0, 1])
    assert list(out.iterdir()) == []
    assert [p.name for p in moved.iterdir()] == [str(name)]


def test_recovery_never_lists_or_deletes_through_a_linked_directory(tmp_path):
    """Linked table and partition directories are not entered: files outside the lake that
    look like this partition's lake or temporary files are neither listed nor deleted."""
    out = outside_dir(tmp_path)
    lake = tmp_path / "lake"
    outside_files = [
        out / str(FileName("t", 0, 10, 19)),
        out / f"{TEMP_PREFIX}abc-{FileName('t', 0, 20, 29)}.partial",
    ]
    for path in outside_files:
        path.write_bytes(b"not the lake's")
    partition_dir(lake, "llm_call", DAY).parent.mkdir(parents=True)
    partition_dir(lake, "llm_call", DAY).symlink_to(out, target_is_directory=True)
    (lake / "task_feedback").symlink_to(tmp_path / "outside", target_is_directory=True)
    # a link named like a lake file in a real partition directory: not listed either
    real_dir = partition_dir(lake, "_rejected", DAY)
    real_dir.mkdir(parents=True)
    (real_dir / str(FileName("t", 0, 30, 39))).symlink_to(outside_files[0])
    assert partition_files(lake, "t", 0) == []
    rec = recover_partition(lake, "t", 0, committed=0)
    assert rec.deleted == [] and rec.temp_removed == 0
    assert all(p.read_bytes() == b"not the lake's" for p in outside_files)


def test_a_link_named_like_a_temporary_file_is_removed_not_its_target(tmp_path):
    victim = outside_dir(tmp_path) / "victim"
    victim.write_bytes(b"precious")
    directory = partition_dir(tmp_path / "lake", "llm_call", DAY)
    directory.mkdir(parents=True)
    link = directory / f"{TEMP_PREFIX}abc-{FileName('t', 0, 5, 9)}.partial"
    link.symlink_to(victim)
    assert clean_temp_files(tmp_path / "lake", topic="t", partition=0) == 1
    assert not link.is_symlink() and victim.read_bytes() == b"precious"


def test_temporary_files_of_a_topic_ending_like_another_are_not_removed(tmp_path):
    """Temporary files are matched on the whole topic name: cleaning topic ``t`` leaves
    ``a-t``'s (the old ``*-t+0+*`` glob matched both)."""
    directory = partition_dir(tmp_path, "llm_call", DAY)
    directory.mkdir(parents=True)
    other = directory / f"{TEMP_PREFIX}abc-{FileName('a-t', 0, 5, 9)}.partial"
    other.write_bytes(b"partial")
    assert clean_temp_files(tmp_path, topic="t", partition=0) == 0 and other.exists()
