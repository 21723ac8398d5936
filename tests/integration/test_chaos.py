"""The fault-injection run of ``make chaos`` (ops/chaos.py), small: 20k events, the consumer
SIGKILLed twice at random moments, the broker restarted once, a second consumer joining and
leaving the group, ``modelmeter compact`` SIGKILLed twice at random moments and left to
finish once; then drained, compacted, built and audited against the simulator's own totals.
"""

from __future__ import annotations

import pytest

from tests.fixtures.chaos_run import chaos_module
from tests.fixtures.kafka_broker import LocalBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_kills_broker_restart_and_rebalance_lose_and_double_nothing(kafka_broker, tmp_path):
    """After 2 SIGKILLs, a broker restart, a rebalance and 2 SIGKILLed compactions, every valid
    event is in the lake and the warehouse exactly once, every bad message and poison pill is
    rejected once and dead-lettered, every offset is accounted for once, no temporary file or
    compaction journal is left, and the warehouse's token and cost totals equal the
    producer-side totals exactly."""
    if not isinstance(kafka_broker, LocalBroker):
        pytest.skip("the chaos run restarts the broker: needs the tests' own broker")
    chaos = chaos_module()
    opts = chaos.Options(
        events=20_000,
        bad_fraction=0.01,
        duplicate_fraction=0.01,
        kills=2,
        broker_restarts=1,
        seed=8,
        pause_min=2.0,
        pause_max=5.0,
        compact_kills=2,
    )
    result = chaos.run_chaos(opts, broker=kafka_broker, workdir=tmp_path)

    failed = {name: check for name, check in result["checks"].items() if not check["ok"]}
    assert not failed, f"chaos audit failed (logs in {tmp_path}): {failed}"
    assert result["ok"] is True
    assert result["faults"]["consumer_kills"] == 2
    assert result["faults"]["broker_restarts"] == 1
    assert result["faults"]["second_consumer"] is True
    assert result["simulator"]["bad_messages"] == 200
    assert result["simulator"]["duplicates"] == 200
    assert result["counts"]["lake_rejected_rows"] == 200 + opts.poison_pills  # poison pills too
    assert result["checks"]["rejects_missing_from_the_dlq"]["actual"] == 0
    assert result["counts"]["lake_distinct_event_ids"] == 20_000
    compaction = result["compaction"]
    assert compaction["killed"] == result["faults"]["compaction_kills"] == 2
    assert compaction["completed"] >= 2  # the one left to finish and the final one
    assert compaction["failed_exit_codes"] == []
    assert compaction["final"]["exit_code"] == 0
    assert compaction["final"]["lake_after"]["compact_temp_files"] == 0
    assert compaction["final"]["lake_after"]["journals"] == 0
