"""The per-partition index: written ahead of every flush's files, it lets recovery list only
the directories that can hold files at or past the committed offset, with the same outcome
as a listing of the whole lake."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest

from pipeline.consumer.recovery import recover_partition
from pipeline.consumer.sink import Sink
from pipeline.lake_files import (
    INDEX_DIR,
    TEMP_PREFIX,
    FileName,
    partition_files,
    read_partition_index,
)
from tests.fixtures.lake_flushes import lake_files, write_flushes

D1, D2, D3 = dt.date(2025, 6, 1), dt.date(2025, 6, 2), dt.date(2025, 6, 3)


@pytest.fixture
def sink(make_settings):
    s = Sink(make_settings(kafka=False, topic="t"), dead_letter=None)
    yield s
    s.close()


def index_path(lake, partition=0):
    return lake.joinpath(*INDEX_DIR) / f"t+{partition}+index.json"


def test_a_flush_bounds_every_directory_it_writes_before_its_files(sink):
    end = write_flushes(sink, 0, 0, [[D1] * 8 + [D2] * 3])
    index = read_partition_index(sink.lake, "t", 0)
    assert index is not None
    written = {str(p.parent.relative_to(sink.lake)) for p, _ in partition_files(sink.lake, "t", 0)}
    assert written == set(index)
    assert {"llm_call/event_date=2025-06-01", "_rejected/received_date=2025-06-02"} <= written
    assert all(bound >= end - 1 for bound in index.values())


def test_the_index_is_not_rewritten_while_its_bounds_cover_the_flushes(sink):
    write_flushes(sink, 0, 0, [[D1] * 10])
    before = os.stat(index_path(sink.lake))
    write_flushes(sink, 0, 10, [[D1] * 10] * 5)  # within the headroom, same directories
    assert os.stat(index_path(sink.lake)).st_ino == before.st_ino
    write_flushes(sink, 0, 60, [[D2] * 10])  # a new directory: rewritten
    assert os.stat(index_path(sink.lake)).st_ino != before.st_ino


def test_recovery_with_an_index_lists_only_the_directories_bounded_past_the_commit(sink):
    lake = sink.lake
    old = "llm_call/event_date=2025-06-01"
    end = write_flushes(sink, 0, 0, [[D1] * 10, [D2] * 10])
    index = read_partition_index(lake, "t", 0)
    assert index is not None
    # months later: the commit is past the old day's bound (and its headroom)
    committed = index[old] + 1
    end = write_flushes(sink, 0, committed, [[D3] * 10] * 3)
    write_flushes(sink, 0, end, [[D3] * 4 + [D2]])  # uncommitted, with a late event
    # a file no indexed writer made, in the old directory: were it listed, it would go
    planted = lake / old / str(FileName("t", 0, end, end))
    shutil.copyfile(next((lake / old).glob("*.parquet")), planted)
    rec = recover_partition(lake, "t", 0, end)
    assert rec.indexed_dirs is not None
    assert old not in rec.indexed_dirs
    assert "llm_call/event_date=2025-06-03" in rec.indexed_dirs
    assert planted.exists()  # never listed
    assert {p.parent.name for p in rec.deleted} == {
        "event_date=2025-06-02",
        "event_date=2025-06-03",
        "received_date=2025-06-03",
    }


def test_recovery_through_the_index_matches_a_listing_of_the_whole_lake(sink, tmp_path):
    lake = sink.lake
    end = write_flushes(sink, 0, 0, [[D1] * 6, [D1] * 3 + [D2] * 3, [D2] * 6])
    committed = end
    end = write_flushes(sink, 0, end, [[D2] * 2 + [D1], [D3] * 5, [D3, D1]])
    write_flushes(sink, 1, 0, [[D2] * 4])
    twin = tmp_path / "twin"
    shutil.copytree(lake, twin)
    shutil.rmtree(twin / INDEX_DIR[0])
    with_index = recover_partition(lake, "t", 0, committed)
    without = recover_partition(twin, "t", 0, committed)
    assert with_index.indexed_dirs is not None and without.indexed_dirs is None
    assert sorted(p.relative_to(lake) for p in with_index.deleted) == sorted(
        p.relative_to(twin) for p in without.deleted
    )
    assert with_index.deleted  # the three uncommitted flushes
    assert lake_files(lake) == lake_files(twin)
    assert with_index.position == without.position


def test_a_full_listing_writes_the_index_the_next_recovery_uses(sink):
    lake = sink.lake
    end = write_flushes(sink, 0, 0, [[D1] * 5, [D2] * 5])
    shutil.rmtree(lake / INDEX_DIR[0])
    first = recover_partition(lake, "t", 0, end)
    assert first.indexed_dirs is None
    index = read_partition_index(lake, "t", 0)
    assert index is not None and max(index.values()) == end - 1
    second = recover_partition(lake, "t", 0, end)
    assert second.indexed_dirs == []


def test_without_a_commit_the_whole_lake_is_listed(sink):
    end = write_flushes(sink, 0, 0, [[D1] * 5, [D2] * 5])
    rec = recover_partition(sink.lake, "t", 0, None)
    assert rec.indexed_dirs is None
    assert rec.position == end


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"version": 2, "dirs": {}}'])
def test_an_unreadable_index_falls_back_to_the_whole_lake(sink, content):
    end = write_flushes(sink, 0, 0, [[D1] * 5])
    write_flushes(sink, 0, end, [[D2] * 5])
    index_path(sink.lake).write_bytes(content)
    rec = recover_partition(sink.lake, "t", 0, end)
    assert rec.indexed_dirs is None
    assert len(rec.deleted) == 2  # llm_call and task_feedback of the uncommitted flush
    assert read_partition_index(sink.lake, "t", 0) is not None  # written again


def test_an_index_write_cut_short_is_cleaned_by_the_partitions_recovery_only(sink):
    end = write_flushes(sink, 0, 0, [[D1] * 5])
    directory = sink.lake.joinpath(*INDEX_DIR)
    mine = directory / f"{TEMP_PREFIX}{'a' * 32}-t+0+index.json.partial"
    other = directory / f"{TEMP_PREFIX}{'b' * 32}-t+1+index.json.partial"
    mine.write_bytes(b"{")
    other.write_bytes(b"{")
    rec = recover_partition(sink.lake, "t", 0, end)
    assert rec.temp_removed == 1
    assert not mine.exists() and other.exists()
