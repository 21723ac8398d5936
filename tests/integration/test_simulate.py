"""``modelmeter simulate`` against the real broker: what lands on the topic is what the
summary says, whatever the number of producer processes, and the consumer lands every
distinct valid event."""

from __future__ import annotations

import json
from collections import Counter

import duckdb
import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline._exceptions import ContractError
from pipeline.cli import main
from pipeline.contract import parse_event

pytestmark = pytest.mark.kafka

END_DATE = "2026-10-31"  # the last day of traffic


def _simulate(settings, tmp_path, *extra: str, name: str = "summary.json") -> dict:
    path = tmp_path / name
    code = main(
        [
            "simulate",
            "--bootstrap-servers",
            settings.kafka_bootstrap_servers,
            "--topic",
            settings.topic,
            "--policy",
            str(settings.policy),
            "--end-date",
            END_DATE,
            "--no-progress",
            "--summary-json",
            str(path),
            *extra,
        ]
    )
    assert code == 0
    return json.loads(path.read_text())


def _read_all(bootstrap: str, topic: str, *, partitions: bool = False) -> list[tuple]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(parts)
        out = []
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=2000, max_records=10_000).values():
                out.extend(
                    (r.partition, r.key, r.value) if partitions else (r.key, r.value)
                    for r in records
                )
        return out
    finally:
        consumer.close()


def test_messages_on_the_topic_match_the_summary(make_settings, tmp_path, capsys):
    """Every message counted in the summary is on the topic: valid events with distinct ids,
    exact re-sends of them, and bad messages the contract rejects."""
    settings = make_settings()
    summary = _simulate(
        settings,
        tmp_path,
        "--events",
        "6000",
        "--days",
        "3",
        "--seed",
        "7",
        "--bad-fraction",
        "0.05",
        "--duplicate-fraction",
        "0.02",
    )
    out = capsys.readouterr().out
    assert "simulated 6000 valid events" in out and "300 bad, 120 duplicates" in out
    assert (summary["valid_events"], summary["distinct_event_ids"]) == (6000, 6000)
    assert (summary["bad_messages"], summary["duplicates"], summary["messages"]) == (300, 120, 6420)

    messages = _read_all(settings.kafka_bootstrap_servers, settings.topic)
    assert len(messages) == summary["messages"]
    ids, bad, tokens = Counter(), 0, Counter()
    for key, value in messages:
        try:
            event = parse_event(value)
        except ContractError:
            bad += 1
            continue
        assert key == event.task_id.encode()
        ids[event.event_id] += 1
        if ids[event.event_id] == 1 and event.event_type == "llm_call":
            for kind in summary["tokens"]:
                tokens[kind] += getattr(event, f"{kind}_tokens")
    assert bad == summary["bad_messages"]
    assert len(ids) == summary["distinct_event_ids"]
    assert sum(n - 1 for n in ids.values()) == summary["duplicates"]
    assert dict(tokens) == summary["tokens"]


def test_two_producer_processes_send_the_same_messages_as_one(make_settings, tmp_path):
    """The same seed gives the same messages whether one or two processes produce them."""
    one, two = make_settings(), make_settings()
    args = (
        "--events",
        "5000",
        "--days",
        "2",
        "--seed",
        "3",
        "--bad-fraction",
        "0.01",
        "--duplicate-fraction",
        "0.01",
    )
    s1 = _simulate(one, tmp_path, *args, "--workers", "1", name="one.json")
    s2 = _simulate(two, tmp_path, *args, "--workers", "2", name="two.json")
    drop = ("elapsed_seconds", "messages_per_second", "topic")
    assert {k: v for k, v in s1.items() if k not in drop} == {
        k: v for k, v in s2.items() if k not in drop
    }
    m1 = Counter(_read_all(one.kafka_bootstrap_servers, one.topic))
    m2 = Counter(_read_all(two.kafka_bootstrap_servers, two.topic))
    assert m1 == m2 and sum(m1.values()) == s1["messages"]


def test_both_transports_put_the_same_messages_on_the_same_partitions(make_settings, tmp_path):
    """kafka-python and confluent (librdkafka murmur2_random) send the same seed's messages,
    each to the same partition: the key -> partition mapping does not depend on the client."""
    args = (
        "--events",
        "4000",
        "--days",
        "2",
        "--seed",
        "11",
        "--bad-fraction",
        "0.01",
        "--duplicate-fraction",
        "0.01",
        "--workers",
        "1",
    )
    landed = []
    for client in ("kafka-python", "confluent"):
        settings = make_settings()
        summary = _simulate(
            settings, tmp_path, *args, "--kafka-client", client, name=f"{client}.json"
        )
        landed.append(
            Counter(_read_all(settings.kafka_bootstrap_servers, settings.topic, partitions=True))
        )
        assert sum(landed[-1].values()) == summary["messages"]
    assert landed[0] == landed[1]
    assert len({p for p, _, _ in landed[0]}) == 6


def test_simulate_then_consume_lands_every_distinct_valid_event(make_settings, tmp_path):
    """simulate -> consume: distinct event_ids in the lake = the summary's distinct valid
    events, rejects = bad messages, and token totals over distinct llm_calls are exact."""
    settings = make_settings()
    summary = _simulate(
        settings,
        tmp_path,
        "--events",
        "8000",
        "--days",
        "5",
        "--seed",
        "11",
        "--bad-fraction",
        "0.02",
        "--duplicate-fraction",
        "0.03",
    )
    code = main(
        [
            "consume",
            "--bootstrap-servers",
            settings.kafka_bootstrap_servers,
            "--topic",
            settings.topic,
            "--lake",
            str(settings.lake),
            "--group",
            "sim-test",
            "--until-idle",
            "1",
            "--progress-seconds",
            "0",
        ]
    )
    assert code == 0
    lake = settings.lake
    con = duckdb.connect()

    def scan(table: str) -> str:
        return f"read_parquet('{lake}/{table}/*/*.parquet', hive_partitioning=true)"

    calls = con.execute(
        f"select count(*), count(distinct event_id) from {scan('llm_call')}"
    ).fetchone()
    feedback = con.execute(
        f"select count(*), count(distinct event_id) from {scan('task_feedback')}"
    ).fetchone()
    rejected = con.execute(f"select count(*) from {scan('_rejected')}").fetchone()[0]
    assert calls[1] == summary["llm_call_events"]
    assert feedback[1] == summary["task_feedback_events"]
    assert calls[1] + feedback[1] == summary["distinct_event_ids"]
    assert calls[0] + feedback[0] == summary["valid_events"] + summary["duplicates"]
    assert rejected == summary["bad_messages"]
    totals = con.execute(
        "select sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), "
        "sum(cache_write_5m_tokens), sum(cache_write_1h_tokens) from "
        f"(select distinct on (event_id) * from {scan('llm_call')})"
    ).fetchone()
    assert [int(t) for t in totals] == [
        summary["tokens"][k]
        for k in ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
    ]
