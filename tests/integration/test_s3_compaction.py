"""``modelmeter compact`` on a lake in an S3 bucket (S3Proxy, the tests' own server).

A lake laid out as the consumer writes it (bench/gen_lake.py: three days, many small flushes
per Kafka partition) is uploaded to a bucket and compacted there, in-process and through the
command line: fewer objects, the same rows, the same file names as a local compaction of the
same lake, every flush still holding its offsets exactly once, the same daily costs from a
build. A compaction cut short before its journal leaves only temporary objects that the next
one removes; one cut short after it (or amid its copies) reads consistently and is finished
by the next one. The lock object keeps a second compaction out until it goes stale.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.gen_lake import generate_lake
from pipeline._exceptions import LakeWriteError
from pipeline.compaction import COMPACT_PREFIX, JOURNAL_DIR, compact_lake
from pipeline.compaction_store import LOCK_NAME, BucketStore
from pipeline.lake_files import FileName
from pipeline.object_lake import ObjectLake
from pipeline.warehouse import open_warehouse_readonly
from pipeline.warehouse.lake_sources import lake_files as reader_files
from tests.fixtures.consume import ENV
from tests.fixtures.kafka_broker import REPO_ROOT

D1, D3 = dt.date(2025, 6, 1), dt.date(2025, 6, 3)  # D3 is not compacted (before=D3)
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
TABLES = ("llm_call", "task_feedback")


@pytest.fixture
def local_lake(tmp_path_factory) -> Path:
    """Three days of traffic, 6 Kafka partitions, flushes of at most 40 messages (about 8
    flushes per partition and day), as the consumer lays them out."""
    lake = tmp_path_factory.mktemp("generated") / "lake"
    generate_lake(lake, events=4000, days=3, last_day=D3, flush_events=40, progress=False)
    return lake


@pytest.fixture
def bucket(s3_server, s3_bucket, local_lake, monkeypatch) -> ObjectLake:
    """The generated lake uploaded to a fresh bucket; the AWS settings in os.environ."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELMETER_LAKE_RETRY_SECONDS", "10")
    fs = s3_server.filesystem()
    lake = ObjectLake.parse(s3_bucket.url)
    for path in sorted(local_lake.rglob("*.parquet")):
        with fs.open_output_stream(str(lake.path(path.relative_to(local_lake).as_posix()))) as out:
            out.write(path.read_bytes())
    return lake


def objects(lake: ObjectLake) -> list[str]:
    """Every object of the lake, relative to it."""
    return sorted(lake.relative(path) for path, _, _ in lake.files())


def _read(lake: ObjectLake, path) -> list[dict]:
    with lake.filesystem().open_input_file(str(path)) as f:
        return pq.ParquetFile(f).read().to_pylist()


def all_rows(lake: ObjectLake) -> list[str]:
    """Every row of every llm_call / task_feedback object, as sorted comparable strings."""
    out = []
    for path, _, _ in lake.files():
        relative = lake.relative(path)
        if relative.split("/")[0] in TABLES and relative.endswith(".parquet"):
            out += [f"{relative.split('/')[0]} {sorted(r.items())!r}" for r in _read(lake, path)]
    return sorted(out)


def reader_rows(lake: ObjectLake) -> list[str]:
    """The rows the warehouse build reads (covered files skipped)."""
    out = []
    for table in TABLES:
        for f in reader_files(lake)[table]:
            out += [f"{table} {sorted(r.items())!r}" for r in _read(lake, f.path)]
    return sorted(out)


def assert_each_flush_exact(lake: ObjectLake) -> None:
    """The files of each name hold exactly its offsets, once; a partition's names abut."""
    offsets: dict[FileName, list[int]] = defaultdict(list)
    for path, _, _ in lake.files():
        name = FileName.parse(path.name)
        if name is not None:
            offsets[name] += [r["kafka_offset"] for r in _read(lake, path)]
    ends: dict[int, int] = {}
    for name in sorted(offsets, key=lambda n: (n.partition, n.first_offset)):
        assert sorted(offsets[name]) == list(range(name.first_offset, name.last_offset + 1))
        assert ends.get(name.partition, -1) + 1 == name.first_offset, name
        ends[name.partition] = name.last_offset


def leftovers(lake: ObjectLake) -> list[str]:
    """Temporary objects, journals and the lock: nothing once a compaction finished."""
    index = "/".join(JOURNAL_DIR)
    return [
        o for o in objects(lake) if o.rsplit("/", 1)[-1].startswith(COMPACT_PREFIX) or index in o
    ]


def daily_cost_by_role(lake: ObjectLake, warehouse: Path, env: dict) -> list[tuple]:
    built = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "build", "--full", "--lake", str(lake)]
        + ["--warehouse", str(warehouse)]
        + ["--prices", str(REPO_ROOT / "schemas" / "prices.csv")]
        + ["--policy", str(REPO_ROOT / "schemas" / "routing_policy.yaml")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    con = open_warehouse_readonly(warehouse)
    try:
        return con.execute("select * from daily_cost_by_role order by all").fetchall()
    finally:
        con.close()


def test_compaction_of_a_bucket_keeps_rows_names_and_costs(bucket, local_lake, s3_server, tmp_path):
    env = {**ENV, **s3_server.env()}
    before_objects, before_rows = objects(bucket), all_rows(bucket)
    costs = daily_cost_by_role(bucket, tmp_path / "before.duckdb", env)
    assert costs

    result = compact_lake(bucket, before=D3, now=LATER)
    assert result.runs == 12 and result.files_removed > result.files_written  # 6 x 2 days
    after = objects(bucket)
    # one file per (table, closed day, Kafka partition): 2 x 2 x 6, from about 140
    assert len([o for o in after if f"={D3}" not in o]) == 24
    assert len(after) < len(before_objects)
    assert all_rows(bucket) == before_rows
    assert reader_rows(bucket) == before_rows
    assert_each_flush_exact(bucket)
    assert leftovers(bucket) == []
    # the day after --before is untouched
    assert [o for o in after if f"={D3}" in o] == [o for o in before_objects if f"={D3}" in o]
    # the same files as the local compaction of the same lake
    compact_lake(local_lake, before=D3, now=LATER)
    local = sorted(p.relative_to(local_lake).as_posix() for p in local_lake.rglob("*.parquet"))
    assert after == local
    assert daily_cost_by_role(bucket, tmp_path / "after.duckdb", env) == costs

    again = compact_lake(bucket, before=D3, now=LATER)
    assert again.runs == 0 and objects(bucket) == after


def test_the_command_compacts_a_bucket(bucket, s3_server):
    before_objects, before_rows = objects(bucket), all_rows(bucket)
    compacted = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "compact", "--lake", str(bucket)]
        + ["--settle-hours", "0", "--before", D3.isoformat()],
        cwd=REPO_ROOT,
        env={**ENV, **s3_server.env()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compacted.returncode == 0, compacted.stderr[-3000:]
    runs = int(compacted.stderr.split("compact: ", 1)[1].split(" runs", 1)[0])
    assert runs >= 12, compacted.stderr
    assert len(objects(bucket)) < len(before_objects)
    assert all_rows(bucket) == before_rows
    assert_each_flush_exact(bucket)
    assert leftovers(bucket) == []


def test_a_crash_before_the_journal_leaves_temporary_objects_the_next_run_removes(bucket):
    before_objects, before_rows = objects(bucket), all_rows(bucket)

    def crash(self, name, body):
        raise KeyboardInterrupt  # as if killed before the commit point

    with pytest.MonkeyPatch.context() as mp, pytest.raises(KeyboardInterrupt):
        mp.setattr(BucketStore, "write_journal", crash)
        compact_lake(bucket, before=D3, now=LATER)
    temps = leftovers(bucket)
    assert temps and all(COMPACT_PREFIX in t and t.endswith(".partial") for t in temps)
    assert [o for o in objects(bucket) if o not in temps] == before_objects
    assert reader_rows(bucket) == before_rows

    result = compact_lake(bucket, before=D3, now=LATER)
    assert result.temp_removed == len(temps) and result.journals_replayed == 0
    assert result.runs >= 12
    assert all_rows(bucket) == before_rows
    assert leftovers(bucket) == []
    assert_each_flush_exact(bucket)


@pytest.mark.parametrize("cut", ["after the journal", "amid the copies"])
def test_a_crash_after_the_journal_reads_consistently_and_is_finished_next_time(
    bucket, local_lake, cut
):
    before_rows = all_rows(bucket)
    mp = pytest.MonkeyPatch()
    if cut == "after the journal":
        write_journal = BucketStore.write_journal

        def crash_after_journal(self, name, body):
            write_journal(self, name, body)
            raise KeyboardInterrupt  # killed right after the commit point

        mp.setattr(BucketStore, "write_journal", crash_after_journal)
    else:
        copy, copies = ObjectLake.copy, []

        def crash_on_second_copy(self, source, target):
            if copies:
                raise KeyboardInterrupt  # killed between two copies
            copies.append(target)
            copy(self, source, target)

        mp.setattr(ObjectLake, "copy", crash_on_second_copy)
    try:
        with pytest.raises(KeyboardInterrupt):
            compact_lake(bucket, before=D3, now=LATER)
    finally:
        mp.undo()  # the patch only (the fixture's AWS settings stay)
    journals = [o for o in leftovers(bucket) if o.endswith(".json")]
    assert len(journals) == 1
    assert LOCK_NAME not in " ".join(leftovers(bucket))  # released on the way out
    assert reader_rows(bucket) == before_rows  # new files and their inputs: read once

    result = compact_lake(bucket, before=D3, now=LATER)
    assert result.journals_replayed == 1
    assert leftovers(bucket) == []
    assert all_rows(bucket) == before_rows
    assert_each_flush_exact(bucket)
    compact_lake(local_lake, before=D3, now=LATER)  # the same end as an uncut compaction
    local = sorted(p.relative_to(local_lake).as_posix() for p in local_lake.rglob("*.parquet"))
    assert objects(bucket) == local


def test_a_fresh_lock_object_keeps_a_second_compaction_out_a_stale_one_does_not(bucket):
    lock = bucket.path(*JOURNAL_DIR, LOCK_NAME)
    held = {"owner": "nightly-host:4242", "token": "x", "started": "2025-06-04T01:30:00+00:00"}
    bucket.put_bytes(lock, json.dumps({**held, "refreshed": time.time() - 60}).encode())
    before = objects(bucket)
    with pytest.raises(LakeWriteError, match="another compaction .*nightly-host:4242"):
        compact_lake(bucket, before=D3, now=LATER)
    assert objects(bucket) == before  # nothing touched, the lock left to its owner

    bucket.put_bytes(lock, json.dumps({**held, "refreshed": time.time() - 3600}).encode())
    assert compact_lake(bucket, before=D3, now=LATER).runs >= 12  # its owner is gone
    assert leftovers(bucket) == []
