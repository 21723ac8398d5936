"""The broker is a real Kafka: committed offsets survive a broker restart."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        for v in values:
            producer.send(topic, key=v, value=v)
        producer.flush(30)
    finally:
        producer.close()


def _consume(bootstrap: str, topic: str, group: str, want: int) -> list[bytes]:
    """Read ``want`` messages as group ``group`` and commit them."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=30_000,
    )
    got: list[bytes] = []
    try:
        for record in consumer:
            got.append(record.value)
            if len(got) == want:
                break
        consumer.commit()
    finally:
        consumer.close()
    return got


def test_group_resumes_after_its_committed_offset_across_a_broker_restart(
    kafka_broker, topic_factory
):
    """Produce, consume + commit half, restart the broker on the same data dir, produce more:
    the group resumes exactly after its committed offsets - nothing lost, nothing re-read."""
    topic = topic_factory(partitions=1)
    first = [f"first-{i}".encode() for i in range(100)]
    _produce(kafka_broker.bootstrap, topic, first)
    assert _consume(kafka_broker.bootstrap, topic, "restart-group", want=60) == first[:60]

    kafka_broker.restart()

    second = [f"second-{i}".encode() for i in range(50)]
    _produce(kafka_broker.bootstrap, topic, second)
    rest = _consume(kafka_broker.bootstrap, topic, "restart-group", want=90)
    assert rest == first[60:] + second

    probe = KafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap, group_id="restart-group", enable_auto_commit=False
    )
    try:
        assert probe.committed(TopicPartition(topic, 0)) == 150
    finally:
        probe.close()
