"""The bad-input catalogue against the real broker: the consumer never stops on
bad input, valid neighbours land with exact values, every bad message is in the DLQ (original
bytes and key, ``error`` header naming the problem) and in ``_rejected``, and every offset is
accounted for exactly once."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from kafka import KafkaProducer

from pipeline._exceptions import ContractError
from pipeline.contract import parse_event, to_row
from tests.fixtures.consume import (
    both_kafka_clients,  # noqa: F401 (the fixture make_settings: both Kafka clients)
    consume_cli,
    read_dlq,
)
from tests.fixtures.consume import table_rows as lake_rows
from tests.fixtures.events import catalogue, enc, feedback, llm_call

pytestmark = pytest.mark.kafka


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024
    )
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close()


def same_reason(got: str, want: str) -> bool:
    """Equal reasons; the consumer's clock in a far-future reason may differ from the test's."""
    clock = re.compile(r" \(now [^)]*\)")
    return clock.sub("", got) == clock.sub("", want)


def test_every_catalogue_case_is_rejected_with_a_reason_and_neighbours_land(make_settings):  # noqa: F811
    settings = make_settings()
    now = dt.datetime.now(dt.UTC)
    bad = catalogue(now)
    expected_bad, messages = {}, []
    for i, raw in enumerate(bad):
        for value in (enc(llm_call(i, occurred_at="2026-11-25T10:00:00Z")), raw, enc(feedback(i))):
            key = f"task-{i}".encode()
            messages.append((key, value))
    # verdicts by pydantic, the source of truth (the consumer's clock is a little later;
    # no case is within seconds of the future bound)
    for key, value in messages:
        try:
            parse_event(value, now=now)
        except ContractError as exc:
            expected_bad[(key, value)] = str(exc)
    produce(settings.kafka_bootstrap_servers, settings.topic, messages)

    proc = consume_cli(
        settings, "--until-idle", "1", "--flush-seconds", "1", "--progress-seconds", "1"
    )
    assert proc.returncode == 0, proc.stderr
    assert "consume done:" in proc.stderr

    landed = lake_rows(settings.lake, "llm_call") + lake_rows(settings.lake, "task_feedback")
    rejected = lake_rows(settings.lake, "_rejected")
    seen = [(r["kafka_partition"], r["kafka_offset"]) for r in landed + rejected]
    assert len(seen) == len(set(seen)) == len(messages), "every offset exactly once"

    by_value = {}
    for r in landed:
        by_value.setdefault(r["event_id"], []).append(r)
    for key, value in messages:
        if (key, value) in expected_bad:
            continue
        row = to_row(parse_event(value, now=now))
        got = by_value[row["event_id"]]
        assert any({k: g[k] for k in row} == row for g in got), row["event_id"]

    want_bad = [(k, v) for k, v in messages if (k, v) in expected_bad]
    assert len(rejected) == len(want_bad)
    rejected_pairs = {(r["raw_key"], r["raw_value"]): r["error"] for r in rejected}
    for pair in want_bad:
        assert same_reason(rejected_pairs[pair], expected_bad[pair])

    dlq = read_dlq(settings.kafka_bootstrap_servers, settings.topic, len(want_bad))
    assert len(dlq) == len(want_bad)
    for record in dlq:
        headers = {k: v.decode() for k, v in record.headers}
        assert set(headers) == {"error", "source_topic", "source_partition", "source_offset"}
        assert headers["source_topic"] == settings.topic
        assert same_reason(headers["error"], expected_bad[(record.key, record.value)])
        assert (int(headers["source_partition"]), int(headers["source_offset"])) in seen
    assert any(r.value is None for r in dlq), "the tombstone is dead-lettered as a tombstone"
    assert any(r.value is not None and len(r.value) > 900_000 for r in dlq), "900 KB value"
