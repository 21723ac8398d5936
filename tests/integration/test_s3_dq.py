"""``modelmeter dq`` on a lake in an S3 bucket (S3Proxy, the tests' own server) gives exactly
the results of the same files in a local lake.

One lake is built locally the way the dq unit tests build theirs (tests/fixtures/dq_lake.py):
three clean days of history and a checked day with defects - a file with a wrong column
type, a file that is not a lake file, a flush whose task_feedback file is gone, a gap
between two flushes, a flush whose files lie in two days' partitions, events landed after
the warehouse was built - plus what the day's listing must not take (a hidden file, a file
in a subdirectory of the partition). Every file is uploaded to the bucket under the same
relative key; dq then runs on both for the checked day, and every verdict, failing value,
frame and reconciliation row must be the same: a bucket listing or read that skipped a file
would change them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline._exceptions import ConfigError, NoDataError
from pipeline.dq import default_outputs, run_dq
from pipeline.dq.lakeday import daily_event_counts, flush_frame, load_lake_day
from pipeline.lake import EVENT_TABLES, REJECTED_TABLE, partition_dir
from pipeline.object_lake import ObjectLake
from pipeline.warehouse import build_warehouse
from tests.fixtures.dq_lake import DAY, NOW, Lake, call, feedback

HISTORY = [DAY - dt.timedelta(days=back) for back in (3, 2, 1)]


@pytest.fixture
def aws_env(s3_server, monkeypatch):
    """The AWS_* variables of the test server, where pipeline.object_lake reads them."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELMETER_LAKE_RETRY_SECONDS", "5")


def _problem_lake(root: Path, settings) -> dict[str, object]:
    """History, the checked day and its defects in the local lake at ``root``."""
    lake = Lake(root)
    for day in HISTORY:
        lake.day(day)
    lake.day(DAY)
    spans = lake.flush(3, [("llm_call", call(DAY)), ("llm_call", call(HISTORY[-1], 600))])
    build_warehouse(settings)  # the rest lands after the build: warehouse_complete fails
    late = call(DAY, 1000)
    lake.flush(4, [("llm_call", late)])
    # a flush whose task_feedback file moved into a subdirectory of its partition, where no
    # reader looks: one offset in no file
    lost = lake.flush(2, [("llm_call", call(DAY, 900)), ("task_feedback", feedback())])
    feedback_dir = partition_dir(root, "task_feedback", DAY)
    (feedback_dir / "sub").mkdir()
    (feedback_dir / str(lost)).rename(feedback_dir / "sub" / str(lost))
    # offsets 5 past the previous flush of Kafka partition 0: lost events between flushes
    gap = lake.flush(0, [("llm_call", call(DAY, 910))], first=lake.next_offset[0] + 5)
    # latency_ms as int32: the schema check names the file
    calls_dir = partition_dir(root, "llm_call", DAY)
    mistyped = sorted(calls_dir.iterdir())[0]
    table = pq.read_table(mistyped)
    column = table.schema.get_field_index("latency_ms")
    pq.write_table(
        table.set_column(column, "latency_ms", table.column("latency_ms").cast(pa.int32())),
        mistyped,
    )
    (calls_dir / "notes.parquet").write_bytes(b"not a lake file")  # listed: a wrong name
    (calls_dir / ".hidden").write_bytes(b"never listed")
    return {"late": late, "lost": lost, "gap": gap, "spans": spans, "mistyped": mistyped}


def _upload(s3_server, root: Path, url: str) -> int:
    """Every file under ``root`` to the bucket under the same relative key (a PUT each, a few
    at a time); returns how many."""
    return s3_server.upload(root, str(ObjectLake.parse(url).root))


def _statuses(report) -> dict[str, str]:
    return {r.name: r.status for r in report.results}


def _failures(report, name: str) -> list[str]:
    return next(r.failures for r in report.results if r.name == name)


def test_dq_on_a_bucket_equals_dq_on_the_same_local_files(
    make_settings, tmp_path, s3_server, s3_bucket, aws_env, monkeypatch
):
    local = make_settings(kafka=False)
    root = Path(local.lake)
    made = _problem_lake(root, local)
    assert _upload(s3_server, root, s3_bucket.url) == sum(1 for p in root.rglob("*") if p.is_file())
    bucket = local.with_overrides(lake=s3_bucket.url)
    assert isinstance(bucket.lake, ObjectLake)

    # the frames the suites validate, and the reconciliation rows, are the same
    day_local, day_bucket = load_lake_day(root, DAY), load_lake_day(bucket.lake, DAY)
    pd.testing.assert_frame_equal(day_bucket.files, day_local.files)
    # day(): 4 flushes x 2 tables; spans, late, lost, gap, notes.parquet: 1 file each
    assert len(day_local.files) == 4 * 2 + 5
    for table, frame in day_local.tables.items():
        pd.testing.assert_frame_equal(day_bucket.tables[table], frame)
    assert day_bucket.flush_names == day_local.flush_names
    flushes_local = flush_frame(root, day_local.flush_names, known_offsets=day_local.offsets)
    flushes_bucket = flush_frame(
        bucket.lake, day_bucket.flush_names, known_offsets=day_bucket.offsets
    )
    pd.testing.assert_frame_equal(flushes_bucket, flushes_local)
    pd.testing.assert_frame_equal(flush_frame(bucket.lake, day_bucket.flush_names), flushes_local)
    spans = flushes_bucket.set_index("flush").loc[str(made["spans"])]
    assert spans["rows"] == 2 and spans["missing_offsets"] == 0  # its other day's file is read
    assert flushes_bucket.set_index("flush").loc[str(made["lost"]), "missing_offsets"] == 1
    assert daily_event_counts(bucket.lake, HISTORY) == daily_event_counts(root, HISTORY)

    # the listing stays bounded: one prefix per day partition, the whole lake once
    listed: list[str] = []
    files = ObjectLake.files

    def counting(self, relative: str = ""):
        listed.append(relative)
        return files(self, relative)

    monkeypatch.setattr(ObjectLake, "files", counting)
    local_json = tmp_path / "local" / "result.json"
    from_local = run_dq(local, DAY, now=NOW, data_docs=False, output=local_json)
    from_bucket = run_dq(bucket, DAY, now=NOW, data_docs=False)
    trailing = [DAY - dt.timedelta(days=back) for back in range(1, 8)]  # volume's 7 days
    expected = [(table, DAY) for table in (*EVENT_TABLES, REJECTED_TABLE)]
    expected += [(table, day) for day in trailing for table in EVENT_TABLES]
    assert sorted(listed) == sorted(
        ["", *(bucket.lake.relative(partition_dir(bucket.lake, t, d)) for t, d in expected)]
    )

    # identical verdicts and failing values; the defects are found through the bucket
    assert [r.to_json() for r in from_bucket.results] == [r.to_json() for r in from_local.results]
    assert {name for name, status in _statuses(from_bucket).items() if status == "fail"} == {
        "schema",
        "reconciliation",
        "warehouse_complete",
    }
    schema = _failures(from_bucket, "schema")
    assert any(
        made["mistyped"].name in m and "latency_ms is int32, expected int64" in m for m in schema
    ), schema
    assert any("notes.parquet" in m and "not a lake file name" in m for m in schema), schema
    assert not any(".hidden" in m or "/sub/" in m for m in schema), schema
    reconciliation = " | ".join(_failures(from_bucket, "reconciliation"))
    assert f"{made['lost']} (missing_offsets=1)" in reconciliation
    assert f"{made['gap']} (gap_before=5)" in reconciliation
    assert made["late"]["event_id"] in " ".join(_failures(from_bucket, "warehouse_complete"))
    assert _statuses(from_bucket)["volume"] == "pass"  # the trailing days were read

    # the JSON results match but for the lake; the bucket's goes next to the warehouse
    assert from_bucket.json_path == default_outputs(bucket, DAY)[0]
    assert from_bucket.json_path == Path(local.warehouse).parent / "dq" / f"dq-{DAY}.json"
    local_doc = json.loads(local_json.read_text())
    bucket_doc = json.loads(from_bucket.json_path.read_text())
    assert bucket_doc.pop("lake") == s3_bucket.url and local_doc.pop("lake") == str(root)
    assert bucket_doc == local_doc


def test_dq_on_a_bucket_cannot_run_without_the_bucket_or_the_day(make_settings, s3_bucket, aws_env):
    settings = make_settings(kafka=False, lake=s3_bucket.url)
    with pytest.raises(NoDataError, match=f"no lake partition for {DAY} in {s3_bucket.url} "):
        run_dq(settings, DAY, now=NOW, data_docs=False)
    missing = settings.with_overrides(lake=f"s3://{s3_bucket.name}-gone/lake")
    with pytest.raises(ConfigError, match="does not exist"):
        run_dq(missing, DAY, now=NOW, data_docs=False)
