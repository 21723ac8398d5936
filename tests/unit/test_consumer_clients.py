"""The consumer's Kafka clients without a broker: the librdkafka settings derived from the
kafka-python defaults, and how a poll's messages become one RawBatch. Both clients run the
whole consumer suite against the real broker (tests/integration/test_consume.py and the
modules importing its ``make_settings``)."""

from __future__ import annotations

import pytest

from pipeline._exceptions import ConfigError
from pipeline.consumer.clients import _CONFLUENT_ONLY, CONSUMER_DEFAULTS, _batch
from pipeline.kafka_connect import confluent_config
from pipeline.settings import Settings


def test_every_consumer_default_has_its_librdkafka_name_and_value():
    """The librdkafka consumer gets the same tuning as kafka-python (a default added without
    a librdkafka name would raise here, as it would at start-up)."""
    options = {k: v for k, v in CONSUMER_DEFAULTS.items() if k != "max_poll_records"}
    config = confluent_config(Settings(), {**options, **_CONFLUENT_ONLY, "group_id": "g",
                                           "group_instance_id": "host-1"})
    assert config["enable.auto.commit"] is False
    assert config["auto.offset.reset"] == "earliest"
    assert config["session.timeout.ms"] == CONSUMER_DEFAULTS["session_timeout_ms"]
    assert config["fetch.max.bytes"] == CONSUMER_DEFAULTS["fetch_max_bytes"]
    assert config["max.partition.fetch.bytes"] == CONSUMER_DEFAULTS["max_partition_fetch_bytes"]
    assert config["group.id"] == "g" and config["group.instance.id"] == "host-1"
    assert config["queued.max.messages.kbytes"] <= 32 * 1024  # the memory goal


def test_a_kafka_python_only_option_is_a_config_error():
    with pytest.raises(ConfigError, match="max_poll_records"):
        confluent_config(Settings(), {"max_poll_records": 10})


def test_batch_keeps_each_partition_contiguous_in_segments():
    batch = _batch([(3, [10, 11], [b"k", None], [b"a", b"b"]), (0, [5], [b"k0"], [b"c"])])
    assert batch is not None
    assert batch.partitions == [3, 3, 0]
    assert batch.offsets == [10, 11, 5]
    assert batch.keys == [b"k", None, b"k0"]
    assert batch.values == [b"a", b"b", b"c"]
    assert batch.segments == [(3, 0, 2), (0, 2, 3)]
    assert batch.ingested_at.tzinfo is not None


def test_batch_of_nothing_is_none():
    assert _batch([]) is None
