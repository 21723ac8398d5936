"""Crash safety: the consumer SIGKILLed mid-stream, several times, then drained.

Whatever moment the kill hits (a file half written, files renamed but the offset not yet
committed, the commit in flight), after the restarts the lake holds every offset exactly
once and no temporary file is left.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.lake import TEMP_PREFIX
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
)

pytestmark = pytest.mark.kafka


def test_sigkill_at_random_moments_loses_and_doubles_nothing(make_settings):  # noqa: F811
    settings = make_settings()
    total = 60000
    values = events(total)
    values[777] = b"not json"  # a dead letter too: _rejected must also be exactly once
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, values)
    rng = random.Random(8)
    # static membership: each restart takes the partitions back at once, instead of waiting
    # for the killed member's session to expire. A group of its own per run: a static member
    # left in a shared group by another run would be handed that run's assignment back.
    group = f"g-crash-{settings.topic}"
    args = (
        "--flush-events",
        "300",
        "--flush-seconds",
        "0.3",
        "--progress-seconds",
        "0.1",
        "--group",
        group,
        "--instance-id",
        "crash-test",
    )
    mid_stream = 0
    for _ in range(4):
        if sum(committed(settings, group).values()) == total:
            break  # drained already: the final run below still checks everything
        proc = subprocess.Popen(cli(settings, *args), stderr=subprocess.PIPE, text=True, env=ENV)
        progress = Progress(proc)
        # a random moment while it lands: once it has committed its first flushes, after a
        # random pause; polling runs ahead of the writer, so other flushes are being written
        # or await their commit when the kill hits. The restarts (immediate with static
        # membership) do not drain the topic before the kills are done.
        progress.wait_consumed(1, timeout=90, name="landed")
        time.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        assert progress.wait(timeout=30) == -signal.SIGKILL
        mid_stream += 0 < sum(committed(settings, group).values()) < total
    assert mid_stream >= 2, "at least two kills hit the consumer mid-stream"
    proc = subprocess.run(
        cli(settings, "--until-idle", "1", *args[-4:]),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    rows = lake_rows(settings.lake)
    offsets = assert_each_offset_once(rows)
    assert len(offsets) == len(rows) == total
    by_partition: dict[int, list[int]] = {}
    for p, o in offsets:
        by_partition.setdefault(p, []).append(o)
    for p, got in by_partition.items():
        assert sorted(got) == list(range(len(got))), f"partition {p} has a gap"
    assert committed(settings, group) == {p: len(o) for p, o in by_partition.items()}
    assert [r["kafka_offset"] for r in lake_rows(settings.lake, ("_rejected",))] and len(
        lake_rows(settings.lake, ("_rejected",))
    ) == 1
    assert not list(Path(settings.lake).glob(f"*/*/{TEMP_PREFIX}*")), "temporary files left"
