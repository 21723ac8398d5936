"""The consumer's group membership against the real broker: in-process runs one after
another, and a broker restart in the middle of a stream."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from pipeline.consumer import Consumer
from tests.fixtures.consume import (
    ENV,
    Progress,
    assert_each_offset_once,
    both_kafka_clients,  # noqa: F401 (the fixture make_settings: both Kafka clients)
    cli,
    committed,
    events,
    lake_rows,
    produce_librdkafka,
    run_cli,
)

pytestmark = pytest.mark.kafka


def _run(settings, group: str) -> Consumer:
    consumer = Consumer(
        settings,
        group=group,
        until_idle=2,
        flush_seconds=0.5,
        progress_seconds=0,
        in_process=True,
        out=io.StringIO(),
    )
    consumer.run()
    return consumer


def test_successive_in_process_consumers_join_once_and_land_everything(make_settings):  # noqa: F811
    """Regression: a second Consumer.run() in the same process used to be assigned its
    partitions twice (its join raced the metadata response asked for by subscribe(), so the
    leader assigned from a stale snapshot and rejoined at once), dropping what it had read.
    Each run must join once and land what it was given: a first group, a new group on the
    same topic (new lake), and the first group again after more messages."""
    settings = make_settings()
    bootstrap = settings.kafka_bootstrap_servers
    produce_librdkafka(bootstrap, settings.topic, events(300))

    first = _run(settings, "g-a")
    assert (first.stats.landed, first.stats.rejected) == (300, 0)
    assert first.stats.assignments == 1

    other = settings.with_overrides(lake=settings.lake.parent / "lake-b")
    second = _run(other, "g-b")
    assert (second.stats.consumed, second.stats.landed) == (300, 300)
    assert second.stats.assignments == 1
    assert len(assert_each_offset_once(lake_rows(other.lake))) == 300

    produce_librdkafka(bootstrap, settings.topic, events(200, start=300))
    third = _run(settings, "g-a")
    assert (third.stats.consumed, third.stats.landed) == (200, 200)
    assert third.stats.assignments == 1
    assert len(assert_each_offset_once(lake_rows(settings.lake))) == 500
    assert sum(committed(settings, "g-a").values()) == 500


@contextlib.contextmanager
def _consuming(settings, *args: str) -> Iterator[Progress]:
    """`modelmeter consume ARGS` in the background; killed if it still runs at the end."""
    proc = subprocess.Popen(
        cli(settings, "--progress-seconds", "0.2", *args),
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        yield Progress(proc)
    finally:
        if proc.poll() is None:
            proc.kill()


def _assert_landed_once(settings, group: str, n: int) -> None:
    assert len(assert_each_offset_once(lake_rows(settings.lake))) == n
    assert sum(committed(settings, group).values()) == n


def test_broker_restart_mid_stream_consumer_carries_on_exactly_once(kafka_broker, make_settings):  # noqa: F811
    """The broker goes away and comes back while `modelmeter consume` runs: the consumer
    reconnects by itself, lands every message exactly once and exits 0 once idle."""
    settings = make_settings()
    values = events(4000)
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, values[:2000])
    with _consuming(
        settings, "--until-idle", "20", "--flush-seconds", "0.5", "--group", "g-restart"
    ) as progress:
        progress.wait_consumed(2000, timeout=90)
        kafka_broker.restart()
        produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, values[2000:])
        assert progress.wait(timeout=180) == 0, "".join(progress.lines)
    assert "landed=4,000 rejected=0" in progress.lines[-1], "".join(progress.lines)
    _assert_landed_once(settings, "g-restart", 4000)


def test_a_flush_due_while_the_broker_is_down_is_committed_once_it_is_back(
    kafka_broker, make_settings
):  # noqa: F811
    """The buffer is flushed while the broker is stopped: the lake files are written, the
    commit is retried until the broker is back (kafka-python 3.0.12 raised
    KafkaConnectionError out of its own commit retries), nothing is lost or landed twice."""
    settings = make_settings()
    values = events(3000)
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, values[:2000])
    try:
        with _consuming(
            settings, "--until-idle", "20", "--flush-seconds", "6", "--group", "g-outage"
        ) as progress:
            progress.wait_consumed(2000, timeout=90)
            kafka_broker.stop()  # the flush, due 6 s after the first message, finds no broker
            deadline = time.monotonic() + 30
            while len(lake_rows(settings.lake)) < 2000:  # written; committed once it is back
                assert time.monotonic() < deadline and progress.proc.poll() is None, "".join(
                    progress.lines
                )
                time.sleep(0.2)
            time.sleep(2)  # commit retries meanwhile
            assert progress.proc.poll() is None, "".join(progress.lines)
            kafka_broker.start()
            produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, values[2000:])
            assert progress.wait(timeout=180) == 0, "".join(progress.lines)
    finally:
        kafka_broker.start()  # no-op when it runs
    assert "landed=3,000 rejected=0" in progress.lines[-1], "".join(progress.lines)
    _assert_landed_once(settings, "g-outage", 3000)


def test_sigterm_while_the_broker_is_down_exits_2_in_seconds_and_a_restart_recovers(
    kafka_broker, make_settings
):  # noqa: F811
    """The final commit cannot reach the broker: the consumer gives up after the grace period
    (exit 2, one clear line) instead of hanging; the next run lands everything exactly once."""
    settings = make_settings()
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, events(2000))
    try:
        with _consuming(settings, "--flush-seconds", "600", "--group", "g-term") as progress:
            progress.wait_consumed(2000, timeout=90)
            kafka_broker.stop()
            progress.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert progress.wait(timeout=60) == 2, "".join(progress.lines)
            assert time.monotonic() - started < 45
    finally:
        kafka_broker.start()
    assert any(
        "commit failed while stopping: Kafka still unreachable" in line for line in progress.lines
    ), "".join(progress.lines)
    again = run_cli(settings, "--until-idle", "1", "--group", "g-term")
    assert again.returncode == 0, again.stderr
    _assert_landed_once(settings, "g-term", 2000)
