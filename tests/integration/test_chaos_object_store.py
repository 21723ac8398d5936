"""The object-store mode of ``make chaos`` (``ops/chaos.py --object-store``), small: 20k
events landed into a bucket of the run's own S3 server (S3Proxy) by two consumer processes
with separate working directories and instance ids (as on two machines), one of them
SIGKILLed twice at random moments, the S3 server restarted once mid-run, the broker restarted
once, ``modelmeter compact`` SIGKILLed twice against the bucket and left to finish once; then
drained, compacted, built from the bucket and audited against the simulator's own totals.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.fixtures.chaos_run import chaos_module
from tests.fixtures.kafka_broker import LocalBroker
from tests.fixtures.s3_server import CHECKSUM_ENV

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.slow]


def test_two_machines_land_one_bucket_exactly_once_through_kills_and_an_s3_restart(
    kafka_broker, tmp_path
):
    """After 2 consumer SIGKILLs, an S3 server restart, a broker restart and 2 SIGKILLed
    compactions, every valid event is in the bucket and the warehouse exactly once, every bad
    message and poison pill is rejected once and dead-lettered, every offset is accounted for
    once, no temporary object or journal is left in the bucket, no consumer exited but by the
    run's kills and final stops, and the warehouse's totals equal the producer-side totals
    exactly. The S3 credential is never printed."""
    if not isinstance(kafka_broker, LocalBroker):
        pytest.skip("the chaos run restarts the broker: needs the tests' own broker")
    chaos = chaos_module()
    env_before = {k: os.environ.get(k) for k in CHECKSUM_ENV}
    opts = chaos.Options(
        events=20_000,
        bad_fraction=0.01,
        duplicate_fraction=0.01,
        kills=2,
        broker_restarts=1,
        seed=11,
        days=5,  # fewer day partitions, hence objects, to list, compact and build from
        pause_min=1.5,
        pause_max=3.0,
        drain_idle=2.0,  # the drain repeats until every offset is committed
        compact_kills=2,
        object_store=True,
        s3_restarts=1,
        s3_pause=1.0,
    )
    result = chaos.run_chaos(opts, broker=kafka_broker, workdir=tmp_path)

    failed = {name: check for name, check in result["checks"].items() if not check["ok"]}
    assert not failed, f"chaos audit failed (logs in {tmp_path}): {failed}"
    assert result["ok"] is True
    assert result["object_store"]["lake"].startswith("s3://chaos-11-")
    faults = result["faults"]
    assert faults["consumer_kills"] == 2
    assert faults["s3_restarts"] == 1
    assert faults["broker_restarts"] == 1
    assert faults["compaction_kills"] == result["compaction"]["killed"] == 2
    # two consumers from the start, each in its own working directory, with its own id
    consumers = faults["consumers"]
    assert sorted(consumers) == ["a", "b"]
    assert len({c["cwd"] for c in consumers.values()}) == 2
    assert {c["instance_id"] for c in consumers.values()} == {"chaos-a", "chaos-b"}
    assert sum(c["starts"] for c in consumers.values()) == 2 + 2  # each kill restarts one
    exits = [x for c in consumers.values() for x in c["exit_codes"]]
    assert sorted(exits) == [-signal.SIGKILL] * 2 + [0] * 2
    restart = next(t for t in result["timeline"] if t["action"] == "S3 back")
    assert restart["consumers_running"] == ["a", "b"]  # they rode the outage out
    assert result["checks"]["consumer_exits_only_kills_and_stops"]["ok"]
    assert result["checks"]["temporary_files_left"]["actual"] == []
    assert result["checks"]["compaction_journals_left"]["actual"] == 0
    assert result["counts"]["lake_distinct_event_ids"] == 20_000
    # the producer's retries (same event_id, another offset), each landed once
    assert result["counts"]["lake_duplicate_rows"] == result["simulator"]["duplicates"] == 200
    assert result["counts"]["lake_rejected_rows"] == 200 + opts.poison_pills
    compaction = result["compaction"]
    assert compaction["failed_exit_codes"] == []
    assert compaction["final"]["exit_code"] == 0
    assert compaction["final"]["lake_after"]["compact_temp_files"] == 0
    assert compaction["final"]["lake_after"]["journals"] == 0

    # the random S3 credential (in the server's config file only) is in no output
    conf = (tmp_path / "s3" / "s3proxy.conf").read_text()
    secret = next(
        line.split("=", 1)[1]
        for line in conf.splitlines()
        if line.startswith("s3proxy.credential=")
    )
    assert len(secret) >= 32
    assert secret not in json.dumps(result, default=str)
    for log in tmp_path.rglob("*.log"):
        assert secret not in log.read_text(errors="replace"), log
    assert {k: os.environ.get(k) for k in CHECKSUM_ENV} == env_before  # restored
