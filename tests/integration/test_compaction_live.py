"""Compaction beside a live consumer: ``modelmeter compact`` SIGKILLed at random moments.

While ``modelmeter consume`` lands a steady stream of events of closed days, compactions are
started and SIGKILLed after seeded random delays (every other one at any moment of its run,
mostly its start-up and scan; the others once they write: amid their temporary files, after
their journal or amid their renames), then one runs to its end. Afterwards the lake holds every offset exactly once, in fewer files than before, with
no temporary file or journal left, and the warehouse built from it holds every event once
with the produced token totals.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from pipeline.cli import setting_args
from pipeline.compaction import COMPACT_PREFIX, JOURNAL_DIR
from pipeline.lake import TEMP_PREFIX
from pipeline.prices import TOKEN_KINDS
from tests.fixtures.consume import (
    ENV,
    Progress,
    assert_each_offset_once,
    cli,
    committed,
    lake_rows,
    modelmeter,
)
from tests.fixtures.events import enc, feedback, iso, llm_call
from tests.fixtures.kafka_broker import REPO_ROOT
from tests.fixtures.lake_flushes import lake_files

pytestmark = pytest.mark.kafka

BATCH = 300  # events a batch; one batch every 0.3 s
TAIL = 6  # batches sent after the last kill: flushes the final compaction must fold in
#: The consumer is never killed here, so each flush is committed right after it is written
#: (no rejects, no dead letters to wait for): a short settle time is safe and lets the flushes
#: of the last seconds be compacted while the consumer goes on.
SETTLE_SECONDS = 2.0
KILLS = 6
_SUMMARY = re.compile(r"compact: (\d+) runs, (\d+) files -> (\d+) ")


def _event(i: int, rng: random.Random) -> dict:
    """A valid event of one of two closed days (three and four days ago: closed even just
    after midnight), llm calls and feedback mixed."""
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    at = iso(today - dt.timedelta(days=2.001 + rng.random() * 1.998))
    if i % 6 == 5:
        return feedback(i, occurred_at=at)
    return llm_call(i, occurred_at=at, input_tokens=rng.randrange(1, 50_000))


class SteadyProducer(threading.Thread):
    """Sends a batch of events every 0.3 s until :attr:`done` is set, then ``TAIL`` more
    batches, so that the consumer lands flush after flush while the compactions run."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="steady-producer", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.done = threading.Event()
        self.sent: list[dict] = []
        self.errors: list[str] = []

    def run(self) -> None:
        rng = random.Random(3)
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        try:
            tail = TAIL
            while tail and len(self.sent) < 300 * BATCH:  # bounded, whatever the test does
                for _ in range(BATCH):
                    event = _event(len(self.sent), rng)
                    producer.produce(self.topic, key=event["event_id"], value=enc(event))
                    self.sent.append(event)
                producer.poll(0)
                if self.done.is_set():
                    tail -= 1
                time.sleep(0.3)  # pacing, not synchronisation
            left = producer.flush(30)
            if left:
                self.errors.append(f"{left} messages not acknowledged")
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))


def _lake_leftovers(lake: Path) -> dict[str, list[str]]:
    return {
        "compact_temp": sorted(p.name for p in lake.glob(f"*/*/{COMPACT_PREFIX}*")),
        "writer_temp": sorted(p.name for p in lake.glob(f"*/*/{TEMP_PREFIX}*")),
        "journals": sorted(p.name for p in lake.joinpath(*JOURNAL_DIR).glob("*.json")),
    }


def _new_temp_file(lake: Path, since: int) -> bool:
    """A compaction's temporary file written since ``since`` (not one a killed run left)."""
    for path in lake.glob(f"*/*/{COMPACT_PREFIX}*"):
        try:
            if path.stat().st_mtime_ns >= since:
                return True
        except FileNotFoundError:
            continue
    return False


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_compaction_killed_at_random_moments_beside_a_live_consumer(make_settings, topic_factory):
    settings = make_settings(topic=topic_factory(partitions=2))
    lake = Path(settings.lake)
    group = f"g-compact-{settings.topic}"
    compact = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "compact",
        *setting_args(settings, "lake"),
        "--settle-hours",
        str(SETTLE_SECONDS / 3600),
    ]
    consumer = subprocess.Popen(
        cli(settings, "--group", group, "--flush-events", "300", "--flush-seconds", "0.3")
        + ["--progress-seconds", "0.2"],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    progress = Progress(consumer)
    producer = SteadyProducer(settings.kafka_bootstrap_servers, settings.topic)
    try:
        producer.start()

        def settled_files() -> int:
            horizon = time.time() - SETTLE_SECONDS - 0.5
            return sum(1 for p in lake.glob("*/*/*.parquet") if p.stat().st_mtime < horizon)

        _wait_for(lambda: settled_files() >= 6, 60, "settled flushes in the lake")

        rng = random.Random(20261203)
        seconds = 2.0  # how long the last compaction that ended took; the kill delays scale on it
        kills: list[dict] = []
        finished: list[str] = []
        while len(kills) < KILLS:
            assert len(kills) + len(finished) < 4 * KILLS, f"too few kills landed: {finished}"
            began, start_ns = time.monotonic(), time.time_ns()
            proc = subprocess.Popen(
                compact, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO_ROOT
            )
            if len(kills) % 2:
                # at any moment of its run: mostly its start-up, its scan, its reads
                deadline = began + rng.uniform(0.0, 1.0) * seconds
            else:
                # once it writes: while it writes its temporary files, after its journal,
                # amid its renames and removals
                while proc.poll() is None and not _new_temp_file(lake, since=start_ns):
                    time.sleep(0.002)
                deadline = time.monotonic() + rng.uniform(0.0, 0.15)
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=30) == -signal.SIGKILL
                proc.stderr.close()
                kills.append({"after": round(time.monotonic() - began, 2), **_lake_leftovers(lake)})
            else:  # ended before its kill: a compaction finished beside the consumer
                err = proc.stderr.read()
                proc.stderr.close()
                assert proc.returncode == 0, err
                seconds = time.monotonic() - began
                finished.append(err.strip())
            time.sleep(rng.uniform(0.0, 0.3))
        # kills that left work for the next compaction (temporary files, a journal)
        assert any(k["compact_temp"] or k["journals"] for k in kills), kills
        assert consumer.poll() is None, "".join(progress.lines)
        producer.done.set()

        # every message landed and committed, and every flush settled: the last compaction
        # has the whole lake to work on, the flushes of the tail included
        producer.join(timeout=60)
        assert not producer.is_alive() and not producer.errors, producer.errors
        events = producer.sent
        total = len(events)
        _wait_for(lambda: sum(committed(settings, group).values()) == total, 60, "the commits")
        newest = max(p.stat().st_mtime for p in lake.glob("*/*/*.parquet"))
        _wait_for(lambda: time.time() > newest + SETTLE_SECONDS + 0.1, 10, "the last flush")
        before = lake_files(lake)
        final = modelmeter(settings, "compact", "--settle-hours", str(SETTLE_SECONDS / 3600))
        assert final.returncode == 0, final.stderr
        after = lake_files(lake)
        summary = _SUMMARY.search(final.stderr)
        assert summary is not None, final.stderr
        runs, removed, written = map(int, summary.groups())
        assert runs > 0 and removed > written, final.stderr
        assert len(after) < len(before), f"compaction removed no file: {final.stderr}; {kills}"

        consumer.send_signal(signal.SIGTERM)
        assert progress.wait(timeout=60) == 0, "".join(progress.lines[-20:])
    finally:
        producer.done.set()
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()

    assert _lake_leftovers(lake) == {"compact_temp": [], "writer_temp": [], "journals": []}
    rows = lake_rows(lake)
    assert len(assert_each_offset_once(rows)) == len(rows) == total, "an offset twice or lost"
    assert Counter(r["event_id"] for r in rows) == Counter(e["event_id"] for e in events)

    built = modelmeter(settings, "build")
    assert built.returncode == 0, built.stderr
    from pipeline.warehouse import open_warehouse_readonly

    calls = [e for e in events if e["event_type"] == "llm_call"]
    kinds = TOKEN_KINDS
    wh = open_warehouse_readonly(settings.warehouse)
    try:
        call_ids = wh.execute("select event_id from fct_llm_calls").fetchall()
        feedback_ids = wh.execute("select event_id from fct_task_feedback").fetchall()
        sums = wh.execute(
            f"select {', '.join(f'sum({k}_tokens)::bigint' for k in kinds)} from fct_llm_calls"
        ).fetchall()[0]
    finally:
        wh.close()
    assert Counter(i for (i,) in call_ids) == Counter(e["event_id"] for e in calls)
    assert Counter(i for (i,) in feedback_ids) == Counter(
        e["event_id"] for e in events if e["event_type"] == "task_feedback"
    )
    assert dict(zip(kinds, sums, strict=True)) == {
        k: sum(e[f"{k}_tokens"] for e in calls) for k in kinds
    }
