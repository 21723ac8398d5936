"""``modelmeter compact`` on a lake in an S3 bucket (S3Proxy, the tests' own server).

A lake laid out as the consumer writes it (bench/gen_lake.py: three days, several small
flushes per Kafka partition and day) is uploaded to a bucket and compacted there, in-process
and through the command line: fewer objects, the same rows, the same file names as a local
compaction of the same lake, every flush still holding its offsets exactly once, the same
daily costs from a build. A compaction cut short before its journal leaves only temporary
objects that the next one removes; one cut short after it (or amid its copies) reads
consistently and is finished by the next one. The lock object keeps a second compaction out
until it goes stale.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.gen_lake import generate_lake
from pipeline import compaction_store
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


@pytest.fixture(scope="module")
def pristine_lake(tmp_path_factory) -> Path:
    """Three days of traffic, 6 Kafka partitions, flushes of at most 40 messages (3 or 4
    flushes per partition and day), as the consumer lays them out. Generated once per module
    and never changed: compacted locally once, as a copy (:func:`locally_compacted`), and in a
    bucket cloned from :func:`pristine_bucket` by each test."""
    lake = tmp_path_factory.mktemp("generated") / "lake"
    generate_lake(lake, events=2000, days=3, last_day=D3, flush_events=40, progress=False)
    flushes: dict[tuple[str, int], set[str]] = defaultdict(set)
    for path in lake.glob("*/*/*.parquet"):
        flushes[path.parent.name, FileName.parse(path.name).partition].add(path.name)
    assert len(flushes) == 3 * 6 and min(map(len, flushes.values())) >= 3  # several each
    return lake


@pytest.fixture(scope="module")
def locally_compacted(pristine_lake, tmp_path_factory) -> list[str]:
    """The Parquet files of a local compaction of (a copy of) the generated lake."""
    lake = tmp_path_factory.mktemp("compacted") / "lake"
    shutil.copytree(pristine_lake, lake)
    compact_lake(lake, before=D3, now=LATER)
    return sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet"))


@pytest.fixture(scope="module")
def pristine_bucket(s3_server, pristine_lake) -> str:
    """A bucket holding the generated lake under ``lake/``, uploaded once per module (a PUT
    per file) and never changed: each test compacts a clone of it."""
    name = s3_server.bucket(f"t-{uuid.uuid4().hex}")
    s3_server.upload(pristine_lake, f"{name}/lake")
    return name


@pytest.fixture
def bucket(s3_server, s3_bucket, pristine_bucket, monkeypatch) -> ObjectLake:
    """The generated lake in a fresh bucket (a clone of the pristine one); the AWS settings
    in os.environ."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELMETER_LAKE_RETRY_SECONDS", "10")
    # the lock is read back after 1 s, for a rival that wrote it meanwhile: no rival here
    monkeypatch.setattr(compaction_store, "LOCK_CONFIRM_SECONDS", 0.05)
    s3_server.copy_bucket(pristine_bucket, s3_bucket.name)
    return ObjectLake.parse(s3_bucket.url)


def objects(lake: ObjectLake) -> list[str]:
    """Every object of the lake, relative to it."""
    return sorted(lake.relative(path) for path, _, _ in lake.files())


def _read_all(lake: ObjectLake, paths: list) -> list[list[dict]]:
    """The rows of each object (one GET each, a few at a time), in the order of ``paths``."""
    fs = lake.filesystem()

    def read(path) -> list[dict]:
        with fs.open_input_stream(str(path)) as stream:
            return pq.read_table(pa.BufferReader(stream.read())).to_pylist()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(read, paths))


def _rows(lake: ObjectLake, objects: list[tuple[str, object]]) -> list[str]:
    """The rows of each (table, object path), as sorted comparable strings."""
    read = _read_all(lake, [path for _, path in objects])
    return sorted(
        f"{table} {sorted(r.items())!r}"
        for (table, _), rows in zip(objects, read, strict=True)
        for r in rows
    )


def all_rows(lake: ObjectLake) -> list[str]:
    """Every row of every llm_call / task_feedback object, as sorted comparable strings."""
    objects = []
    for path, _, _ in lake.files():
        relative = lake.relative(path)
        if relative.split("/")[0] in TABLES and relative.endswith(".parquet"):
            objects.append((relative.split("/")[0], path))
    return _rows(lake, objects)


def reader_rows(lake: ObjectLake) -> list[str]:
    """The rows the warehouse build reads (covered files skipped)."""
    files = reader_files(lake)
    return _rows(lake, [(table, f.path) for table in TABLES for f in files[table]])


def assert_each_flush_exact(lake: ObjectLake) -> None:
    """The files of each name hold exactly its offsets, once; a partition's names abut."""
    parsed = [(FileName.parse(path.name), path) for path, _, _ in lake.files()]
    named = [(name, path) for name, path in parsed if name is not None]
    offsets: dict[FileName, list[int]] = defaultdict(list)
    for (name, _), rows in zip(named, _read_all(lake, [p for _, p in named]), strict=True):
        offsets[name] += [r["kafka_offset"] for r in rows]
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


def test_compaction_of_a_bucket_keeps_rows_names_and_costs(
    bucket, locally_compacted, s3_server, tmp_path
):
    env = {**ENV, **s3_server.env()}
    before_objects, before_rows = objects(bucket), all_rows(bucket)
    costs = daily_cost_by_role(bucket, tmp_path / "before.duckdb", env)
    assert costs

    result = compact_lake(bucket, before=D3, now=LATER)
    assert result.runs == 12 and result.files_removed > result.files_written  # 6 x 2 days
    after = objects(bucket)
    # one file per (table, closed day, Kafka partition): 2 x 2 x 6, from about 80
    assert len([o for o in after if f"={D3}" not in o]) == 24
    assert len(after) < len(before_objects)
    assert all_rows(bucket) == before_rows
    assert reader_rows(bucket) == before_rows
    assert_each_flush_exact(bucket)
    assert leftovers(bucket) == []
    # the day after --before is untouched
    assert [o for o in after if f"={D3}" in o] == [o for o in before_objects if f"={D3}" in o]
    # the same files as the local compaction of the same lake
    assert after == locally_compacted
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
    bucket, locally_compacted, cut
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
    assert objects(bucket) == locally_compacted  # the same end as an uncut compaction


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
