"""``modelmeter consume`` against the real broker: exact values from another client, stopping
(--max-events, SIGTERM), two consumers in one group, and a lake that cannot be written."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.contract import parse_event, to_row
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


def test_librdkafka_events_and_retries_land_with_exact_values(make_settings):
    """Every message produced by librdkafka lands once per offset with the values sent; a
    retry (same event_id) is a second row with the same values (deduped downstream)."""
    settings = make_settings()
    values = events(600)
    values += values[:25]  # producer retries: same event_id, same bytes
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, values)
    proc = run_cli(settings, "--until-idle", "1", "--flush-seconds", "1")
    assert proc.returncode == 0, proc.stderr
    assert "landed=625 rejected=0" in proc.stderr
    rows = lake_rows(settings.lake)
    assert len(assert_each_offset_once(rows)) == 625
    expected = {}
    for value in values:
        row = to_row(parse_event(value))
        expected[row["event_id"]] = row
    retried = {parse_event(v).event_id for v in values[:25]}
    got: dict[str, list[dict]] = {}
    for r in rows:
        got.setdefault(r["event_id"], []).append(r)
    assert set(got) == set(expected)
    for event_id, landed in got.items():
        want = expected[event_id]
        assert len(landed) == (2 if event_id in retried else 1)
        for r in landed:
            assert {k: r[k] for k in want} == want
    # partition files: the day directory is the UTC date of occurred_at
    for table in ("llm_call", "task_feedback"):
        for path in Path(settings.lake).glob(f"{table}/*/*.parquet"):
            day = path.parent.name.split("=")[1]
            dates = {r["occurred_at"].date().isoformat() for r in pq.read_table(path).to_pylist()}
            assert dates == {day}
    assert committed(settings, "modelmeter-lake") == {
        p: max(o for q, o in assert_each_offset_once(rows) if q == p) + 1
        for p in {r["kafka_partition"] for r in rows}
    }


def test_max_events_lands_and_commits_exactly_n(make_settings):
    settings = make_settings()
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, events(500))
    proc = run_cli(settings, "--max-events", "200", "--group", "g-max")
    assert proc.returncode == 0, proc.stderr
    assert len(assert_each_offset_once(lake_rows(settings.lake))) == 200
    assert sum(committed(settings, "g-max").values()) == 200
    proc = run_cli(settings, "--until-idle", "1", "--group", "g-max")
    assert proc.returncode == 0, proc.stderr
    assert len(assert_each_offset_once(lake_rows(settings.lake))) == 500


def test_sigterm_flushes_commits_and_exits_0_with_nothing_lost(make_settings):
    settings = make_settings()
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, events(3000))
    # buffers are never flushed by size or age here: only SIGTERM makes them durable
    proc = subprocess.Popen(
        cli(
            settings,
            "--flush-events",
            "1000000",
            "--flush-seconds",
            "3600",
            "--progress-seconds",
            "0.2",
            "--group",
            "g-term",
        ),
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    progress = Progress(proc)
    progress.wait_consumed(1)
    assert not lake_rows(settings.lake)
    proc.send_signal(signal.SIGTERM)
    assert progress.wait(timeout=60) == 0, "".join(progress.lines)
    rows = lake_rows(settings.lake)
    assert rows and len(assert_each_offset_once(rows)) == sum(
        committed(settings, "g-term").values()
    )
    proc2 = run_cli(settings, "--until-idle", "1", "--group", "g-term")
    assert proc2.returncode == 0, proc2.stderr
    assert len(assert_each_offset_once(lake_rows(settings.lake))) == 3000


def test_two_consumers_in_one_group_share_partitions_without_loss_or_doubles(make_settings):
    """A second consumer joins mid-stream (rebalance: the first flushes and commits what it
    holds before giving partitions up); together they land every offset exactly once."""
    settings = make_settings()
    values = events(12000)
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, values[:2000])
    # the rest arrives while the consumers run, so that both have work after the rebalance
    feeder = threading.Thread(
        target=lambda: [
            (
                produce_librdkafka(
                    settings.kafka_bootstrap_servers, settings.topic, values[i : i + 500]
                ),
                time.sleep(0.25),
            )
            for i in range(2000, len(values), 500)
        ]
    )
    args = (
        "--until-idle",
        "4",
        "--flush-seconds",
        "1",
        "--flush-events",
        "500",
        "--progress-seconds",
        "0.2",
        "--group",
        "g-two",
    )
    first = subprocess.Popen(cli(settings, *args), stderr=subprocess.PIPE, text=True, env=ENV)
    p1 = Progress(first)
    p1.wait_consumed(1)
    feeder.start()
    second = subprocess.Popen(cli(settings, *args), stderr=subprocess.PIPE, text=True, env=ENV)
    p2 = Progress(second)
    feeder.join()
    assert p1.wait(timeout=180) == 0, "".join(p1.lines)
    assert p2.wait(timeout=180) == 0, "".join(p2.lines)
    assert p2.consumed() > 0, "the second consumer got partitions"
    rows = lake_rows(settings.lake)
    assert len(assert_each_offset_once(rows)) == 12000
    assert sum(committed(settings, "g-two").values()) == 12000


def test_unwritable_lake_exits_non_zero_commits_nothing_then_resumes(make_settings, tmp_path):
    settings = make_settings()
    produce_librdkafka(settings.kafka_bootstrap_servers, settings.topic, events(300))
    blocker = Path(settings.lake) / "llm_call"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # any write under llm_call/ fails (even as root)
    proc = run_cli(settings, "--until-idle", "3", "--flush-seconds", "1", "--group", "g-ro")
    assert proc.returncode == 1, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "modelmeter: error" in line]
    assert len(error_lines) == 1 and "cannot write the lake" in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert committed(settings, "g-ro") == {}
    blocker.unlink()
    proc = run_cli(settings, "--until-idle", "1", "--group", "g-ro")
    assert proc.returncode == 0, proc.stderr
    assert len(assert_each_offset_once(lake_rows(settings.lake))) == 300
