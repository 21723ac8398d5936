"""``modelmeter compact``: closed days rewritten into one file per (table, day, partition)
and run of flushes, with the same rows, names the reconciliation still accepts, and a lake
that any crash leaves readable and the next compaction finishes."""

from __future__ import annotations

import argparse
import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import pipeline.compaction as compaction
from pipeline._exceptions import ConfigError
from pipeline.compaction import JOURNAL_DIR, compact_lake
from pipeline.consumer.sink import Sink
from pipeline.dq.lakeday import flush_frame
from pipeline.lake_files import FileName
from pipeline.warehouse.lake_sources import lake_files as warehouse_files
from tests.fixtures.lake_flushes import lake_files, write_flushes

D1, D2, D3 = dt.date(2025, 6, 1), dt.date(2025, 6, 2), dt.date(2025, 6, 3)
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def lake(make_settings):
    sink = Sink(make_settings(kafka=False, topic="t"), dead_letter=None)
    try:
        for p in (0, 1):
            end = write_flushes(sink, p, 0, [[D1] * 6] * 4 + [[D1] * 2 + [D2] * 4])
            end = write_flushes(sink, p, end, [[D2] * 6] * 3 + [[D2, D1, D3]])
            write_flushes(sink, p, end, [[D3] * 6] * 2)
    finally:
        sink.close()
    return sink.lake


def rows(lake) -> list[tuple]:
    """Every row the warehouse would read: (table, partition, offset, one row's values)."""
    out = []
    for table, found in warehouse_files(lake).items():
        for f in found:
            for row in pq.ParquetFile(f.path).read().to_pylist():
                out.append(
                    (
                        table,
                        f.partition,
                        row["kafka_partition"],
                        row["kafka_offset"],
                        repr(sorted(row.items())),
                    )
                )
    return sorted(out)


def test_closed_days_become_one_file_per_table_day_and_run_with_the_same_rows(lake):
    before_rows, before_files = rows(lake), lake_files(lake)
    result = compact_lake(lake, before=D3, now=LATER)
    assert result.runs >= 2 and result.files_removed > result.files_written
    assert rows(lake) == before_rows
    after = lake_files(lake)
    assert [f for f in after if "2025-06-03" in f] == [f for f in before_files if "2025-06-03" in f]
    d1 = [f for f in after if f.startswith("llm_call/event_date=2025-06-01/t+0+")]
    assert len(d1) < len(
        [f for f in before_files if f.startswith("llm_call/event_date=2025-06-01/t+0+")]
    )
    # each name is still one flush: its files hold its offsets exactly once, abutting
    frame = flush_frame(lake, {f.rsplit("/", 1)[1] for f in after})
    assert frame[["missing_offsets", "duplicate_offsets", "foreign_offsets"]].sum().sum() == 0
    assert set(frame["gap_before"].dropna()) <= {0} and set(frame["gap_after"].dropna()) <= {0}


def test_a_second_compaction_changes_nothing_and_unsettled_days_are_left(lake):
    compact_lake(lake, before=D3, now=LATER)
    files = lake_files(lake)
    assert compact_lake(lake, before=D3, now=LATER).runs == 0
    assert lake_files(lake) == files
    # files just written are not settled, whatever their day
    assert compact_lake(lake, settle=dt.timedelta(hours=2)).runs == 0
    assert lake_files(lake) == files


def test_a_crash_before_the_journal_leaves_only_temporary_files_the_next_run_removes(
    lake, monkeypatch
):
    before_rows, before_files = rows(lake), lake_files(lake)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed before the commit point

    monkeypatch.setattr(compaction, "atomic_write", crash)
    with pytest.raises(KeyboardInterrupt):
        compact_lake(lake, before=D3, now=LATER)
    assert lake_files(lake) == before_files and rows(lake) == before_rows
    monkeypatch.undo()
    result = compact_lake(lake, before=D3, now=LATER)
    assert result.runs >= 2
    assert rows(lake) == before_rows
    assert not list(lake.glob("*/*/.compact-*"))


# os.replace is the process's own: the journal's atomic write is the first rename
@pytest.mark.parametrize("renamed", [1, 2, 3])
def test_a_crash_after_the_journal_reads_consistently_and_is_finished_next_time(
    lake, monkeypatch, renamed
):
    before_rows = rows(lake)
    real_replace = compaction.os.replace
    done = []

    def replace(*args, **kwargs):
        if len(done) == renamed:
            raise KeyboardInterrupt  # killed between renames
        done.append(args)
        return real_replace(*args, **kwargs)

    monkeypatch.setattr(compaction.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        compact_lake(lake, before=D3, now=LATER)
    monkeypatch.undo()
    assert list(lake.joinpath(*JOURNAL_DIR).glob("*.json"))
    assert rows(lake) == before_rows  # new files and their inputs: read once
    result = compact_lake(lake, before=D3, now=LATER)
    assert result.journals_replayed == 1
    assert not list(lake.joinpath(*JOURNAL_DIR).glob("*.json"))
    assert rows(lake) == before_rows


def test_readers_skip_a_file_another_of_the_same_partition_covers(tmp_path):
    directory = tmp_path / "llm_call" / "event_date=2025-06-01"
    directory.mkdir(parents=True)
    names = [
        FileName("t", 0, 0, 9),
        FileName("t", 0, 0, 4),
        FileName("t", 0, 5, 9),
        FileName("t", 1, 3, 4),
        FileName("t", 0, 8, 12),
    ]
    for name in names:
        pq.write_table(pa.table({"x": [1]}), directory / str(name))
    kept = {f.path.name for f in warehouse_files(tmp_path)["llm_call"]}
    assert kept == {str(names[0]), str(names[3]), str(names[4])}


def test_compaction_removes_files_another_covers_and_readers_see_the_same_rows(lake, make_settings):
    """A partition's new owner wrote offsets 0-11 again as one flush (the old owner, which had
    lost the partition, had written them as two): the two old files are covered, never read,
    and compaction removes them, even in a day it does not compact."""
    sink = Sink(make_settings(kafka=False, topic="t"), dead_letter=None)
    try:
        write_flushes(sink, 0, 0, [[D1] * 12])
    finally:
        sink.close()
    before_rows = rows(lake)
    superseded = (str(FileName("t", 0, 0, 5)), str(FileName("t", 0, 6, 11)))
    old = [f for f in lake_files(lake) if f.endswith(superseded)]
    assert "llm_call/event_date=2025-06-01/" + superseded[0] in old
    result = compact_lake(lake, before=D1, now=LATER)  # no day before D1: nothing compacted
    assert (result.covered_removed, result.runs) == (len(old), 0)
    assert not set(old) & set(lake_files(lake))
    assert f"llm_call/event_date=2025-06-01/{FileName('t', 0, 0, 11)}" in lake_files(lake)
    assert rows(lake) == before_rows
    assert compact_lake(lake, before=D1, now=LATER).covered_removed == 0


def test_a_covered_file_holding_an_offset_its_cover_lacks_is_kept(lake, make_settings):
    """Two consumers may validate the same offsets differently (the future-time check reads
    the clock): the rewrite of offsets 0-11 lacks offset 4, which the old file 0-5 holds, so
    that file stays; 6-11 goes."""
    sink = Sink(make_settings(kafka=False, topic="t"), dead_letter=None)
    try:
        write_flushes(sink, 0, 0, [[D1] * 12])
    finally:
        sink.close()
    directory = lake / "llm_call" / "event_date=2025-06-01"
    cover = directory / str(FileName("t", 0, 0, 11))
    table = pq.read_table(cover)
    assert 4 in table.column("kafka_offset").to_pylist()
    pq.write_table(table.filter(pc.not_equal(table["kafka_offset"], 4)), cover)
    compact_lake(lake, before=D1, now=LATER)
    assert (directory / str(FileName("t", 0, 0, 5))).exists()
    assert not (directory / str(FileName("t", 0, 6, 11))).exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("settle_hours", -24.0),  # would compact today and files just written
        ("settle_hours", float("nan")),
        ("settle_hours", float("inf")),
        ("target_mb", 0.0),
        ("target_mb", float("nan")),
        ("before", "yesterday"),
    ],
)
def test_the_command_refuses_a_negative_or_non_finite_settle_and_bad_options(
    lake, make_settings, option, value
):
    options = {"before": None, "settle_hours": 2.0, "target_mb": 128.0, option: value}
    files = lake_files(lake)
    with pytest.raises(ConfigError, match=option.replace("_", "-")):
        compaction.run_cli(argparse.Namespace(**options), make_settings(kafka=False))
    assert lake_files(lake) == files  # nothing compacted
