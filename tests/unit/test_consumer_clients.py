"""The consumer's Kafka clients without a broker: the librdkafka settings derived from the
kafka-python defaults, how a poll's messages become one RawBatch, the back-off during an
outage, and how ``--until-idle`` reads the broker's watermarks. Both clients run the
whole consumer suite against the real broker (tests/integration/test_consume.py and the
modules importing its ``make_settings``)."""

from __future__ import annotations

import threading

import pytest

from pipeline._exceptions import ConfigError, KafkaUnavailableError
from pipeline.consumer import Consumer
from pipeline.consumer.clients import (
    CONFLUENT_ONLY,
    CONSUMER_DEFAULTS,
    ConsumerClient,
    _Backoff,
    keep_from,
    make_batch,
)
from pipeline.kafka_connect import confluent_config
from pipeline.settings import Settings


def test_every_consumer_default_has_its_librdkafka_name_and_value():
    """The librdkafka consumer gets the same tuning as kafka-python (a default added without
    a librdkafka name would raise here, as it would at start-up)."""
    options = {k: v for k, v in CONSUMER_DEFAULTS.items() if k != "max_poll_records"}
    config = confluent_config(
        Settings(), {**options, **CONFLUENT_ONLY, "group_id": "g", "group_instance_id": "host-1"}
    )
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
    batch = make_batch([(3, [10, 11], [b"k", None], [b"a", b"b"]), (0, [5], [b"k0"], [b"c"])])
    assert batch is not None
    assert batch.partitions == [3, 3, 0]
    assert batch.offsets == [10, 11, 5]
    assert batch.keys == [b"k", None, b"k0"]
    assert batch.values == [b"a", b"b", b"c"]
    assert batch.segments == [(3, 0, 2), (0, 2, 3)]
    assert batch.ingested_at.tzinfo is not None


def test_batch_of_nothing_is_none():
    assert make_batch([]) is None
    assert make_batch([(1, [], [], [])]) is None


def test_keep_from_drops_partitions_not_ours_and_offsets_before_the_start():
    """The loop's guard after a rebalance: messages of a partition it does not own (fetched
    before a revocation) and messages before a partition's start position (fetched before
    its seek) never reach the lake."""
    batch = make_batch(
        [
            (3, [8, 9, 10, 11], [b"a", b"b", b"c", b"d"], [b"1", b"2", b"3", b"4"]),
            (0, [5], [b"k0"], [b"c"]),
            (1, [7], [None], [b"x"]),
        ]
    )
    kept = keep_from(batch, {3: 10, 1: None})
    assert kept is not None
    assert (kept.partitions, kept.offsets, kept.keys, kept.values) == (
        [3, 3, 1],
        [10, 11, 7],
        [b"c", b"d", None],
        [b"3", b"4", b"x"],
    )
    assert kept.segments == [(3, 0, 2), (1, 2, 3)]
    assert keep_from(batch, {3: 0, 0: 5, 1: 7}) is batch  # nothing dropped: the same batch
    assert keep_from(batch, {}) is None


def test_backoff_doubles_up_to_5_s_and_retries_for_as_long_as_the_consumer_runs():
    backoff = _Backoff("commit", threading.Event())
    delays = [backoff.pause(ConnectionError("down")) for _ in range(8)]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_backoff_gives_up_a_grace_period_after_a_stop_request(monkeypatch):
    """SIGTERM during an outage: the consumer stops within seconds, without a final commit."""
    clock = [100.0]
    monkeypatch.setattr("pipeline.consumer.clients.time.monotonic", lambda: clock[0])
    stopping = threading.Event()
    backoff = _Backoff("commit", stopping)
    backoff.pause(ConnectionError("down"))
    stopping.set()
    backoff.pause(ConnectionError("down"))  # the grace period starts
    clock[0] += _Backoff.STOP_GRACE_S - 0.1
    backoff.pause(ConnectionError("down"))
    clock[0] += 0.1
    error = ConnectionError("still down")
    with pytest.raises(KafkaUnavailableError, match="commit failed while stopping") as raised:
        backoff.pause(error)
    assert raised.value.__cause__ is error and raised.value.exit_code == 2


class _Watermarks(ConsumerClient):
    """Only what Consumer._caught_up asks of a client: the broker's answer, set by the test."""

    def __init__(self, marks):
        super().__init__(threading.Event())
        self.marks = marks
        self.asked: list[list[int]] = []

    def watermarks(self, partitions, timeout):
        self.asked.append(partitions)
        return self.marks


def _idle_consumer(marks, positions):
    consumer = Consumer(Settings(), until_idle=5)
    consumer._client = _Watermarks(marks)
    consumer._assigned = set(positions)
    consumer.stats.positions.update({p: o for p, o in positions.items() if o is not None})
    return consumer


@pytest.mark.parametrize(
    ("marks", "positions", "idle"),
    [
        ({0: (0, 10), 1: (5, 5)}, {0: 10, 1: None}, True),  # read to the end; 1 is empty
        ({0: (0, 10), 1: (0, 7)}, {0: 10, 1: 3}, False),  # 4 messages left in partition 1
        ({0: (0, 10)}, {0: None}, False),  # nothing read yet, 10 to read
        ({0: (8, 10)}, {0: 2}, False),  # behind, even after retention
        ({0: (12, 12)}, {0: 2}, True),  # all we missed was deleted
        (None, {0: 10}, False),  # the broker does not answer
    ],
)
def test_until_idle_stops_only_when_the_broker_confirms_nothing_is_left(marks, positions, idle):
    consumer = _idle_consumer(marks, positions)
    assert consumer._caught_up() is idle
    assert consumer._client.asked == [sorted(positions)]


def test_until_idle_with_no_partitions_stops_without_asking():
    consumer = _idle_consumer({}, {})
    assert consumer._caught_up() is True
    assert consumer._client.asked == []


def test_the_poller_process_leaves_the_writer_libraries_to_the_writer():
    """`modelmeter consume` starts faster and uses less memory when the poller does not
    import pyarrow, msgspec and the event models: the forked lake writer imports them on the
    other core while the poller connects to Kafka (pipeline.consumer.batches), and the
    poller's lake recovery needs only file names (pipeline.lake_files)."""
    import subprocess
    import sys

    code = (
        "import sys, pipeline.cli, pipeline.consumer, pipeline.consumer.loop, "
        "pipeline.consumer.clients, pipeline.consumer.recovery; "
        "heavy = [m for m in ('pyarrow', 'msgspec', 'pipeline.contract', 'pipeline.lake') "
        "if m in sys.modules]; sys.exit(str(heavy) if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
