"""The lake writer's flush (no broker, no dead-letter producer): which files one flush of a
partition writes, and that every file holds its rows in offset order whether or not the
buffered rows needed sorting."""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow.parquet as pq

from pipeline.consumer.sink import RawBatch, Sink
from pipeline.lake import LLM_CALL_SCHEMA, TASK_FEEDBACK_SCHEMA, FileName, partition_dir

INGESTED = dt.datetime.now(dt.UTC)
YESTERDAY = (INGESTED - dt.timedelta(days=1)).date()


def event(i: int, day: dt.date = YESTERDAY, *, event_type: str = "llm_call") -> dict:
    common = {
        "event_id": f"e-{i}",
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": f"{day.isoformat()}T12:00:{i % 60:02d}Z",
        "agent_id": "a",
        "task_id": f"t-{i}",
        "role": "implementer",
    }
    if event_type == "task_feedback":
        return common | {"satisfaction": 4}
    return common | {"provider": "zai", "model": "glm-4.5", "input_tokens": i, "output_tokens": 1}


def batch(partition: int, first: int, values: list[bytes]) -> RawBatch:
    n = len(values)
    return RawBatch(
        [partition] * n,
        list(range(first, first + n)),
        [b"k"] * n,
        values,
        INGESTED,
        [(partition, 0, n)],
    )


def flush(tmp_path, make_settings, *batches: RawBatch):
    sink = Sink(make_settings(kafka=False, topic="t"), dead_letter=None)
    for b in batches:
        sink.add(b)
    out = sink.flush()
    sink.close()
    return out


def read(tmp_path, table: str, day: dt.date, name: FileName):
    return pq.read_table(partition_dir(tmp_path / "lake", table, day) / str(name))


def test_one_day_flush_writes_rows_in_offset_order_when_slow_rows_come_last(
    tmp_path, make_settings
):
    """Rows pydantic decided (here: a space before a colon the fast path leaves to it, an invalid event) come
    after the fast rows in a validated batch; the file still holds them in offset order."""
    values = [orjson.dumps(event(i)) for i in range(6)]
    values[2] = values[2].replace(b'"input_tokens":2', b'"input_tokens" : 2')
    values[4] = orjson.dumps(event(4) | {"input_tokens": -1})
    values.append(orjson.dumps(event(6, event_type="task_feedback")))
    values += [orjson.dumps(event(i)) for i in range(7, 10)]
    (flushed,) = flush(
        tmp_path, make_settings, batch(0, 100, values[:5]), batch(0, 105, values[5:])
    )
    assert (flushed.first_offset, flushed.last_offset, flushed.landed, flushed.rejected) == (
        100,
        109,
        9,
        1,
    )
    name = FileName("t", 0, 100, 109)
    calls = read(tmp_path, "llm_call", YESTERDAY, name)
    assert calls.schema.equals(LLM_CALL_SCHEMA)
    assert calls["kafka_offset"].to_pylist() == [100, 101, 102, 103, 105, 107, 108, 109]
    assert calls["input_tokens"].to_pylist() == [0, 1, 2, 3, 5, 7, 8, 9]
    feedback = read(tmp_path, "task_feedback", YESTERDAY, name)
    assert feedback.schema.equals(TASK_FEEDBACK_SCHEMA)
    assert feedback["kafka_offset"].to_pylist() == [106]


def test_a_flush_spanning_days_writes_one_file_per_day_in_offset_order(tmp_path, make_settings):
    before = YESTERDAY - dt.timedelta(days=1)
    days = [YESTERDAY, before, YESTERDAY, before, before]
    values = [orjson.dumps(event(i, day)) for i, day in enumerate(days)]
    (flushed,) = flush(tmp_path, make_settings, batch(3, 0, values))
    assert flushed.files == 2 and flushed.landed == 5
    name = FileName("t", 3, 0, 4)
    assert read(tmp_path, "llm_call", YESTERDAY, name)["kafka_offset"].to_pylist() == [0, 2]
    assert read(tmp_path, "llm_call", before, name)["kafka_offset"].to_pylist() == [1, 3, 4]


def test_a_flush_reports_its_llm_call_token_sums_per_provider_model_role(tmp_path, make_settings):
    """Flushed.tokens: the landed llm_call rows' five token columns summed per (provider,
    model, role); rejected events and task_feedback rows count nothing."""
    rows = []
    for i in range(12):
        e = event(i) | {
            "provider": "anthropic" if i % 3 == 0 else "zai",
            "model": "claude-opus-4-5" if i % 3 == 0 else "glm-4.5",
            "role": "architect" if i % 2 else "implementer",
            "input_tokens": 1000 + i,
            "output_tokens": 10 * i,
            "cache_read_tokens": i * i,
            "cache_write_5m_tokens": 7 if i % 4 == 0 else 0,
            "cache_write_1h_tokens": 3 * i,
        }
        rows.append(e)
    values = [orjson.dumps(e) for e in rows]
    values.append(orjson.dumps(event(12) | {"output_tokens": -5}))  # rejected
    values.append(orjson.dumps(event(13, event_type="task_feedback")))
    (flushed,) = flush(tmp_path, make_settings, batch(0, 0, values[:6]), batch(0, 6, values[6:]))
    assert (flushed.landed, flushed.rejected) == (13, 1)
    expected: dict[tuple[str, str, str], list[int]] = {}
    kinds = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
    for e in rows:
        sums = expected.setdefault((e["provider"], e["model"], e["role"]), [0] * 5)
        for k, kind in enumerate(kinds):
            sums[k] += e[f"{kind}_tokens"]
    assert len(expected) == 4
    assert {key: list(v) for key, v in flushed.tokens.items()} == expected


def test_a_flush_without_llm_calls_reports_no_tokens(tmp_path, make_settings):
    values = [orjson.dumps(event(i, event_type="task_feedback")) for i in range(3)]
    (flushed,) = flush(tmp_path, make_settings, batch(1, 0, values))
    assert flushed.landed == 3 and flushed.tokens == {}
