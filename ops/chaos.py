"""``make chaos``: fault injection against a real broker, then an exactly-once audit.

    .venv/bin/python ops/chaos.py [--events 200000] [--bad-fraction 0.01]
        [--duplicate-fraction 0.01] [--kills 5] [--broker-restarts 1] [--poison-pills 30]
        [--compact-kills 3] [--seed S] [--json PATH]
        [--object-store [--s3-restarts 1] [--s3-pause 4]]

What it does, on its own broker (ops/kafka/kafka.sh on free ports, a temporary data dir) and
its own temporary lake and warehouse:

1. ``modelmeter simulate`` (a subprocess, ``--summary-json``) produces the events, with bad
   messages and producer retries (same event_id), while ``modelmeter consume`` subprocesses
   land them (short flush intervals, so that kills hit every phase of a flush: writing,
   renamed-but-not-committed, committing); a second producer (librdkafka) sends
   ``--poison-pills`` hostile messages through the run: null key with null value,
   tombstones, binary junk, duplicate keys, escape sequences in field names;
2. meanwhile, in a seeded random order with random pauses: the consumer is SIGKILLed
   ``--kills`` times (a random member of the group each time) and restarted; the broker is
   restarted ``--broker-restarts`` times while the simulator is still producing; a second
   consumer joins the group for part of the run and leaves it (two rebalances);
   ``modelmeter compact --settle-hours`` (60 s, see ``Options.compact_settle``) is started
   and SIGKILLed ``--compact-kills`` times, each after a random share of the time the last
   compaction that ended took (with flushes to rewrite, kills land before, while and after
   it writes its temporary files and its journal), and left to finish once;
3. the running consumers are stopped, the topic is drained with
   ``modelmeter consume --until-idle``, one ``modelmeter compact`` runs to its end (it
   finishes a run a killed one committed and removes the temporary files of one killed
   before that), and ``modelmeter build`` builds the warehouse;
4. the audit, against the simulator's own account of what it sent (its summary, and its
   events regenerated deterministically from the same seed):

   - the lake's distinct valid event_ids are exactly the simulator's (none missing, none
     extra);
   - ``_rejected`` holds exactly as many rows as bad messages and poison pills were sent,
     and the dead-letter topic holds a dead letter for every one of them (by source
     partition and offset; duplicates allowed, the DLQ is at-least-once);
   - every offset of the topic is in the lake exactly once (landed + rejected rows by
     (partition, offset)), and every partition's committed offset is its end offset;
   - no temporary file is left in the lake, nor a compaction journal, and every compaction
     that was not killed exited 0;
   - the warehouse holds each event once and its token totals (every kind) and cost and
     baseline cost totals equal the producer-side totals exactly (Decimal, from the
     simulator's events and the price book).

Prints one JSON summary (every count, expected vs actual, ``ok``; under ``compaction`` the
runs started, killed and completed, and the runs, files removed and written of the completed
ones, from their summary lines) and exits 0 only when everything matches (1 otherwise, 2 on
bad usage). Compaction only rewrites a flush whose every file is in a closed day, and a flush
with a dead letter has a file in ``_rejected/received_date=<today>``: with the default bad
messages and poison pills nearly every flush has one, so the compactions of this run find
little or nothing to rewrite and the kills hit their start-up and scan;
tests/integration/test_compaction_live.py kills compactions in the middle of their rewrites.

``--object-store``: the lake is a bucket, ``s3://<bucket>/lake``, on an S3 server of the run's
own (S3Proxy through ops/s3/s3proxy.sh on a free port, a temporary data dir, a random
credential that is never printed), and every child process gets its AWS settings in its
environment, with ``MODELMETER_LAKE_RETRY_SECONDS`` (``Options.lake_retry_seconds``, 120 s)
far above an outage. Two consumers run from the start, as on two machines: each in a working
directory of its own and with its own ``--instance-id`` (static membership), in one group. The
faults: the SIGKILLs of a random consumer (restarted), the broker restart(s), the S3 server
restarted ``--s3-restarts`` times (after the first kill, then after every second one: stopped,
``--s3-pause`` seconds without it, started again; the consumers ride it out on their
retries), and the compaction kills, against the bucket (the lock object a killed compaction
leaves is deleted once it is gone, as docs/operations.md allows, so that the next one need not
wait for it to go stale). Drain, compaction, build and audit are the same, the audit listing
and reading the bucket through pyarrow (:class:`LakeAccess`); no temporary file left means no
``.compact-*`` object and no compaction journal object; and no consumer may have exited but
by a SIGKILL of the run or its final SIGTERM. The summary's ``faults`` add ``s3_restarts``
and ``consumers`` (instance id, working directory, starts, exit codes).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pipeline.cli import setting_args  # noqa: E402
from pipeline.object_lake import RETRY_SECONDS_ENV, ObjectLake  # noqa: E402
from pipeline.prices import TOKEN_KINDS  # noqa: E402

MODELMETER = str(Path(sys.executable).parent / "modelmeter")
GROUP = "modelmeter-chaos"
TOPIC = "chaos-agent-usage"
_MILLION = Decimal(1_000_000)


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    events: int = 200_000
    bad_fraction: float = 0.01
    duplicate_fraction: float = 0.01
    kills: int = 5
    broker_restarts: int = 1
    seed: int = 20261126
    days: int = 30
    flush_events: int = 10_000
    flush_seconds: float = 2.0
    pause_min: float = 2.0  # seconds between two faults, at least
    pause_max: float = 6.0
    drain_idle: float = 8.0
    poison_pills: int = 30
    compact_kills: int = 3
    # ``modelmeter compact --settle-hours`` of the run, in seconds. Compaction must not touch a
    # flush before the consumer's recovery has decided about it: a flush written but never
    # committed (its consumer SIGKILLed between the rename and the commit) is deleted and
    # re-read by the recovery of the partition's next owner. A compaction that read it at
    # that moment would bring its offsets back beside the re-read ones (rows twice); one that
    # folded it in before would have the recovery keep it and skip its dead letters (the
    # audit's DLQ check). That recovery comes once the dead member's session expires (the
    # consumer's session timeout, 10 s, pipeline.consumer.clients.CONSUMER_DEFAULTS) and the
    # restarted consumer (up to 1 s later, 1-3 s to start) has joined; a broker restart
    # (about 15 s here, ops/kafka/kafka.sh down and up) holds a commit back that long on top.
    # 60 s is twice that worst case, and short enough for the flushes of the first minute to
    # settle while the faults go on.
    compact_settle: float = 60.0
    # --object-store: the lake in a bucket of the run's own S3 server, two consumers from the
    # start, the S3 server restarted ``s3_restarts`` times (``s3_pause`` seconds down, plus
    # its start-up); the consumers retry a failing store for ``lake_retry_seconds``
    object_store: bool = False
    s3_restarts: int = 1
    s3_pause: float = 4.0
    lake_retry_seconds: float = 120.0


@dataclass
class ConsumerProc:
    """One ``modelmeter consume`` subprocess (output to a log file)."""

    name: str
    argv: list[str]
    log_path: Path
    cwd: Path = REPO_ROOT
    env: dict[str, str] | None = None  # None: this process's environment
    proc: subprocess.Popen | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)
    started_at: float = 0.0

    def reap(self) -> None:
        """Record the exit code of a process that exited on its own (not killed or stopped)."""
        if self.proc is not None and self.proc.poll() is not None and len(self.exits) < self.starts:
            self.exits.append(self.proc.returncode)

    def start(self) -> None:
        self.reap()
        self.starts += 1
        self.started_at = time.monotonic()
        with open(self.log_path, "a") as out:
            out.write(f"--- start {self.starts} at {time.strftime('%H:%M:%S')}\n")
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exits.append(self.proc.wait())

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM (flush, commit, exit 0) and wait."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.exits.append(code)
        return code


_COMPACT_LINE = re.compile(
    r"compact: (?P<runs>\d+) runs, (?P<files_removed>\d+) files -> (?P<files_written>\d+) "
    r"\((?P<rows>\d+) rows\); (?P<journals_replayed>\d+) cut-short compactions finished, "
    r"(?P<temp_removed>\d+) temporary files removed, (?P<skipped>\d+) runs skipped"
)


class LakeAccess:
    """The run's lake as the audit and the compaction records see it: a local directory, or
    a bucket (``s3://bucket/prefix``) listed and read through pyarrow with the run's AWS
    settings (``env``: the environment its child processes get). The one way the audit lists
    and reads the lake, whichever it is."""

    def __init__(self, lake: Path | ObjectLake, env: dict[str, str] | None = None) -> None:
        from pyarrow import fs as pafs

        self.is_bucket = isinstance(lake, ObjectLake)
        if isinstance(lake, ObjectLake):
            aws = env if env is not None else os.environ
            endpoint = urlsplit(aws["AWS_ENDPOINT_URL"])
            self.fs: Any = pafs.S3FileSystem(
                access_key=aws["AWS_ACCESS_KEY_ID"],
                secret_key=aws["AWS_SECRET_ACCESS_KEY"],
                endpoint_override=endpoint.netloc,
                scheme=endpoint.scheme,
                region=aws.get("AWS_REGION") or "us-east-1",
            )
            self.root = str(lake.root)
        else:
            self.fs = pafs.LocalFileSystem()
            self.root = Path(lake).absolute().as_posix()

    def files(self) -> list[str]:
        """Every file (object) of the lake, relative to it, sorted."""
        from pyarrow import fs as pafs

        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        return sorted(
            info.path[len(self.root) + 1 :]
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.path.endswith("/")
        )

    def read(self, table: str, columns: list[str]) -> Any:
        """``columns`` of every ``<table>/*/*.parquet`` file, one Arrow table; None when there
        is no file."""
        import pyarrow.dataset as ds

        paths = [
            f"{self.root}/{f}"
            for f in self.files()
            if f.startswith(f"{table}/") and f.count("/") == 2 and f.endswith(".parquet")
        ]
        if not paths:
            return None
        return ds.dataset(paths, filesystem=self.fs, format="parquet").to_table(columns=columns)

    def remove_compaction_lock(self) -> bool:
        """Delete a bucket's compaction lock object (a SIGKILLed compaction's: it is gone);
        whether there was one. A local lake's lock is a file lock, released with its process."""
        from pyarrow import fs as pafs

        lock = f"{self.root}/_index/compaction/compact.lock"
        if not self.is_bucket or self.fs.get_file_info(lock).type != pafs.FileType.File:
            return False
        self.fs.delete_file(lock)
        return True


def lake_state(lake: LakeAccess) -> dict[str, int]:
    """The lake's finished files, compaction temporaries and compaction journals."""
    names = [f.split("/") for f in lake.files()]
    in_dirs = [p for p in names if len(p) == 3]  # <dir>/<dir>/<name>
    return {
        "files": sum(1 for p in in_dirs if p[2].endswith(".parquet") and p[2][0] != "."),
        "compact_temp_files": sum(1 for p in in_dirs if p[2].startswith(".compact-")),
        "journals": sum(
            1 for p in in_dirs if p[:2] == ["_index", "compaction"] and p[2].endswith(".json")
        ),
    }


@dataclass
class Compactions:
    """``modelmeter compact`` subprocesses: some SIGKILLed at a random moment of their run,
    some left to finish (their stderr summary lines are added up)."""

    argv: list[str]
    lake: LakeAccess
    log_path: Path
    env: dict[str, str] | None = None  # None: this process's environment
    started: int = 0
    killed: int = 0
    completed: int = 0
    failed: list[int] = field(default_factory=list)
    totals: Counter = field(default_factory=Counter)
    last_seconds: float = 1.0  # how long the last finished run took (kill delays scale on it)
    kills: list[dict[str, Any]] = field(default_factory=list)

    def _start(self) -> tuple[subprocess.Popen, float]:
        self.started += 1
        with open(self.log_path, "a") as out:
            out.write(f"--- compact {self.started} at {time.strftime('%H:%M:%S')}\n")
        err = open(self.log_path, "a")  # noqa: SIM115 - closed once the process is done
        try:
            proc = subprocess.Popen(
                self.argv, stdout=err, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=self.env
            )
        finally:
            err.close()
        return proc, time.monotonic()

    def _finished(self, proc: subprocess.Popen, began: float, offset: int) -> dict[str, Any]:
        code = proc.wait()
        self.last_seconds = max(0.05, time.monotonic() - began)
        text = self.log_path.read_bytes()[offset:].decode(errors="replace")
        matches = list(_COMPACT_LINE.finditer(text))
        match = matches[-1] if matches else None
        if code != 0 or match is None:
            self.failed.append(code)
            return {"exit_code": code, "output": text[-2000:]}
        self.completed += 1
        counts = {k: int(v) for k, v in match.groupdict().items()}
        self.totals.update(counts)
        return {"exit_code": code, "seconds": round(self.last_seconds, 2), **counts}

    def run(self, timeout: float = 600) -> dict[str, Any]:
        """One compaction to its end."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        before = lake_state(self.lake)
        proc, began = self._start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        return {
            "lake_before": before,
            **self._finished(proc, began, offset),
            "lake_after": lake_state(self.lake),
        }

    def run_and_kill(self, rng: random.Random) -> dict[str, Any]:
        """One compaction SIGKILLed after a random fraction of the last run's duration (from
        its start-up to its last removal); one that ends first counts as completed, and
        another is started, so that every call kills one."""
        while True:
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            before = lake_state(self.lake)
            delay = rng.uniform(0.0, 1.0) * self.last_seconds
            proc, began = self._start()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=delay)
            if proc.poll() is not None:
                done = self._finished(proc, began, offset)
                if done["exit_code"] != 0:
                    raise RuntimeError(f"modelmeter compact failed: {done}")
                continue
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.killed += 1
            # what it left: temporary files (killed while writing), a journal (killed after
            # its commit point), inputs beside their compacted file (mid-removal)
            kill = {
                "after_seconds": round(time.monotonic() - began, 3),
                "lake_before": before,
                "lake_after": lake_state(self.lake),
            }
            if self.lake.is_bucket:
                # its lock object, which would keep the next compaction out for 10 minutes
                kill["lock_removed"] = self.lake.remove_compaction_lock()
            self.kills.append(kill)
            return kill


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
    finally:
        admin.close()


def _produced(bootstrap: str, topic: str) -> int:
    with contextlib.suppress(Exception):  # broker restarting: unknown yet
        return sum(_end_offsets(bootstrap, topic).values())
    return -1


# Messages that once stopped a consumer, or that no output may show raw: each is rejected
_POISON: list[tuple[bytes | None, bytes | None]] = [
    (None, None),  # a null key with a null value
    (b"poison", None),  # a tombstone
    (None, b""),
    (None, b"\x00\xff\x1b[2J\x07"),
    (b"dup", b'{"event_type":"llm_call","event_type":"task_feedback"}'),
    (b"esc", b'{"event_type":"llm_call","\\u001b]0;pwned\\u0007":1,"role":"\\u202e"}'),
]


class PoisonPills:
    """Sends ``count`` poison pills with librdkafka (it sends a null key with a null value;
    kafka-python does not), one every ``interval`` seconds, from a thread; librdkafka retries
    through a broker restart. :meth:`finish` waits for every ack and returns how many."""

    def __init__(self, bootstrap: str, topic: str, count: int, interval: float = 0.3) -> None:
        import threading

        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self._topic, self._count, self._interval = topic, count, interval
        self.delivered = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="poison-pills", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _ack(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.errors.append(str(err))

    def _run(self) -> None:
        for i in range(self._count):
            key, value = _POISON[i % len(_POISON)]
            self._producer.produce(self._topic, key=key, value=value, on_delivery=self._ack)
            self._producer.poll(self._interval)

    def finish(self, timeout: float = 300) -> int:
        self._thread.join(timeout)
        left = self._producer.flush(timeout)
        if left or self.errors:
            raise RuntimeError(f"poison pills: {left} not acknowledged, errors {self.errors[:3]}")
        return self.delivered


def _dlq_sources(bootstrap: str, dlq_topic: str) -> set[tuple[int, int]]:
    """(source_partition, source_offset) of every dead letter on ``dlq_topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "chaos-dlq-audit", "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(dlq_topic, timeout=30).topics[dlq_topic]
        ends = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(dlq_topic, p), timeout=30)
            if high > low:
                ends[p] = (low, high)
        consumer.assign([TopicPartition(dlq_topic, p, low) for p, (low, _) in ends.items()])
        sources: set[tuple[int, int]] = set()
        remaining = {p: high for p, (_, high) in ends.items()}
        deadline = time.monotonic() + 300
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error() is not None:
                    continue
                headers = dict(msg.headers() or [])
                sources.add((int(headers["source_partition"]), int(headers["source_offset"])))
                if msg.offset() + 1 >= remaining.get(msg.partition(), 0):
                    remaining.pop(msg.partition(), None)
        return sources
    finally:
        consumer.close()


# --------------------------------------------------------------------------------------------
# expected totals from the simulator's own events
# --------------------------------------------------------------------------------------------


def expected_from_simulator(settings, run_args: dict[str, Any]) -> dict[str, Any]:
    """Regenerate the simulator's events (deterministic) and total their tokens and cost."""
    from pipeline.prices import load_price_book
    from pipeline.simulate import SimRun, iter_chunks, load_traffic

    traffic = load_traffic(settings.policy)
    policy = traffic.policy
    book = load_price_book(settings.prices)
    base = policy.baseline_model
    run = SimRun(**run_args)
    ids: list[str] = []
    tokens: Counter[str] = Counter()
    cost = baseline = Decimal(0)
    calls = feedback = unpriced = bad = duplicates = 0
    for chunk in iter_chunks(traffic, run):
        bad += sum(chunk.bad_kinds.values())
        duplicates += chunk.duplicates
        for ev in chunk.events:
            ids.append(ev["event_id"])
            if ev["event_type"] != "llm_call":
                feedback += 1
                continue
            calls += 1
            for kind in TOKEN_KINDS:
                tokens[kind] += ev[f"{kind}_tokens"]
            at = dt.datetime.fromisoformat(ev["occurred_at"]).astimezone(dt.UTC)
            price = book.price_at(ev["provider"], ev["model"], at)
            base_price = book.price_at(base.provider, base.model, at)
            if price is None or base_price is None:
                unpriced += 1
                continue
            for kind in TOKEN_KINDS:
                n = Decimal(ev[f"{kind}_tokens"])
                cost += n * getattr(price, f"usd_per_mtok_{kind}") / _MILLION
                baseline += n * getattr(base_price, f"usd_per_mtok_{kind}") / _MILLION
    return {
        "event_ids": ids,
        "llm_call_events": calls,
        "task_feedback_events": feedback,
        "tokens": {k: tokens[k] for k in TOKEN_KINDS},
        "cost_usd": cost,
        "baseline_cost_usd": baseline,
        "unpriced_calls": unpriced,
        "bad_messages": bad,
        "duplicates": duplicates,
    }


# --------------------------------------------------------------------------------------------
# the audit
# --------------------------------------------------------------------------------------------


def audit(
    settings,
    summary: dict[str, Any],
    expected: dict[str, Any],
    *,
    poison_pills: int = 0,
    lake: LakeAccess | None = None,
) -> dict[str, Any]:
    """``lake``: how to reach ``settings.lake`` (default: a local directory, or a bucket with
    this process's AWS settings)."""
    import duckdb
    import pyarrow as pa

    lake = lake or LakeAccess(settings.lake)
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, want: Any, got: Any) -> None:
        checks[name] = {"expected": want, "actual": got, "ok": want == got}

    con = duckdb.connect()
    try:

        def src(table: str) -> str | None:
            columns = ["kafka_partition", "kafka_offset"]
            rows = lake.read(table, columns if table == "_rejected" else ["event_id", *columns])
            if rows is None:
                return None
            con.register(f"lake_{table.strip('_')}", rows)
            return f"lake_{table.strip('_')}"

        events = [s for s in (src("llm_call"), src("task_feedback")) if s]
        rejected = src("_rejected")
        event_rows = sum(con.execute(f"select count(*) from {s}").fetchall()[0][0] for s in events)
        rejected_rows = (
            con.execute(f"select count(*) from {rejected}").fetchall()[0][0] if rejected else 0
        )
        rejected_at = (
            set(con.execute(f"select kafka_partition, kafka_offset from {rejected}").fetchall())
            if rejected
            else set()
        )
        con.register("sim_ids", pa.table({"event_id": expected["event_ids"]}))
        union_ids = (
            " union all ".join(f"select event_id from {s}" for s in events)
            or "select null::varchar as event_id where false"
        )
        con.execute(f"create temp table lake_ids as select distinct event_id from ({union_ids})")
        distinct = con.execute("select count(*) from lake_ids").fetchall()[0][0]
        missing = con.execute(
            "select count(*) from sim_ids anti join lake_ids using (event_id)"
        ).fetchall()[0][0]
        extra = con.execute(
            "select count(*) from lake_ids anti join sim_ids using (event_id)"
        ).fetchall()[0][0]
        offsets = " union all ".join(
            f"select kafka_partition, kafka_offset from {s}"
            for s in [*events, *([rejected] if rejected else [])]
        )
        distinct_offsets = con.execute(
            f"select count(*) from (select distinct * from ({offsets}))"
        ).fetchall()[0][0]
    finally:
        con.close()

    end = _end_offsets(settings.kafka_bootstrap_servers, settings.topic)
    committed = _committed(settings.kafka_bootstrap_servers, GROUP, settings.topic)
    topic_messages = sum(end.values())

    check("simulator_regenerated_valid_events", summary["valid_events"], len(expected["event_ids"]))
    check("simulator_regenerated_bad_messages", summary["bad_messages"], expected["bad_messages"])
    check("landed_distinct_valid_events", summary["distinct_event_ids"], distinct)
    check("missing_event_ids", 0, missing)
    check("unexpected_event_ids", 0, extra)
    check("rejected_rows", summary["bad_messages"] + poison_pills, rejected_rows)
    dead_letters = _dlq_sources(settings.kafka_bootstrap_servers, settings.dlq_topic)
    check("rejects_missing_from_the_dlq", 0, len(rejected_at - dead_letters))
    check("dlq_letters_not_in_rejected", 0, len(dead_letters - rejected_at))
    check("lake_rows_are_topic_messages", topic_messages, event_rows + rejected_rows)
    check("distinct_offsets_are_topic_messages", topic_messages, distinct_offsets)
    check("committed_offsets_are_end_offsets", end, {p: committed.get(p, -1) for p in end})
    temp_files = [
        f
        for f in lake.files()
        if (name := f.rsplit("/", 1)[-1]).startswith(".")
        or name.endswith(".partial")
        # a bucket's compaction journal objects too (a local lake's: compaction_journals_left)
        or (lake.is_bucket and f.startswith("_index/compaction/") and name.endswith(".json"))
    ]
    check("temporary_files_left", [], temp_files)

    from pipeline.warehouse import open_warehouse_readonly

    wh = open_warehouse_readonly(settings.warehouse)
    try:
        sums = ", ".join(f"sum({k}_tokens)::hugeint" for k in TOKEN_KINDS)
        row = wh.execute(
            f"select count(*), count(distinct event_id), {sums}, sum(cost_usd), "
            "sum(baseline_cost_usd), count(*) filter (where not is_priced) "
            "from fct_llm_calls"
        ).fetchall()[0]
        fb = wh.execute(
            "select count(*), count(distinct event_id) from fct_task_feedback"
        ).fetchall()[0]
    finally:
        wh.close()
    n_calls, n_distinct_calls = row[0], row[1]
    wh_tokens = dict(zip(TOKEN_KINDS, (int(x or 0) for x in row[2:7]), strict=True))
    check("warehouse_llm_calls", summary["llm_call_events"], n_calls)
    check("warehouse_llm_calls_distinct", n_calls, n_distinct_calls)
    check("warehouse_task_feedback", summary["task_feedback_events"], fb[0])
    check("warehouse_task_feedback_distinct", fb[0], fb[1])
    check("warehouse_tokens", summary["tokens"], wh_tokens)
    check("warehouse_tokens_vs_regenerated_events", expected["tokens"], wh_tokens)
    check(
        "warehouse_cost_usd", str(expected["cost_usd"]), str(row[7]) if row[7] is not None else None
    )
    check(
        "warehouse_baseline_cost_usd",
        str(expected["baseline_cost_usd"]),
        str(row[8]) if row[8] is not None else None,
    )
    check("warehouse_unpriced_calls", expected["unpriced_calls"], row[9])
    # exact equality of the Decimals, not of their printed forms
    for name, key, value in (
        ("warehouse_cost_usd", "cost_usd", row[7]),
        ("warehouse_baseline_cost_usd", "baseline_cost_usd", row[8]),
    ):
        checks[name]["ok"] = value is not None and Decimal(value) == expected[key]
    counts = {
        "topic_messages": topic_messages,
        "lake_event_rows": event_rows,
        "lake_distinct_event_ids": distinct,
        "lake_rejected_rows": rejected_rows,
        "lake_duplicate_rows": event_rows - distinct,
    }
    return {"counts": counts, "checks": checks}


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


def _plan(opts: Options) -> list[str]:
    """The faults in order: the broker restart(s) first (while the simulator is producing),
    then the kills; a second consumer joins after the first kill and leaves before the last.
    With ``object_store`` both consumers run from the start (no join, no leave) and the S3
    server restarts after the first kill, then after every second one. The compactions
    (``--compact-kills`` killed, one left to finish) go anywhere after the broker restarts, at
    seeded random places."""
    plan = ["broker"] * opts.broker_restarts + ["kill"] * opts.kills
    first_kill = opts.broker_restarts
    if opts.object_store:
        for i in range(opts.s3_restarts):
            plan.insert(min(first_kill + 1 + 3 * i, len(plan)), "s3")
    else:
        plan.insert(min(first_kill + 1, len(plan)), "join")
        plan.insert(len(plan) - 1 if opts.kills >= 2 else len(plan), "leave")
    if opts.compact_kills:
        places = random.Random(f"{opts.seed}:compact")
        for step in ["compact-kill"] * opts.compact_kills + ["compact"]:
            plan.insert(places.randint(opts.broker_restarts, len(plan)), step)
    return plan


def _behind(bootstrap: str, topic: str) -> int:
    """Messages of the topic the group has not committed yet (-1: unknown)."""
    with contextlib.suppress(Exception):
        committed = _committed(bootstrap, GROUP, topic)
        return sum(off - committed.get(p, 0) for p, off in _end_offsets(bootstrap, topic).items())
    return -1


def _start_object_store(opts: Options, workdir: Path) -> tuple[Any, str]:
    """A private S3 server (ops/s3/s3proxy.sh on a free port, data under ``workdir/s3``, a
    random credential) and a fresh bucket on it."""
    from tests.fixtures.kafka_broker import FAST_START_JVM_OPTS
    from tests.fixtures.s3_server import LocalS3

    s3 = LocalS3(
        data_dir=workdir / "s3",
        identity="modelmeter-chaos",
        credential=secrets.token_hex(20),  # never printed, nor written to the summary
        jvm_opts=FAST_START_JVM_OPTS,
    )
    log(f"starting a private S3 server on {s3.endpoint}")
    s3.start()
    try:
        return s3, s3.bucket(f"chaos-{opts.seed}-{os.getpid()}")
    except BaseException:
        s3.stop()
        raise


def run_chaos(opts: Options, *, broker=None, workdir: Path) -> dict[str, Any]:
    """Run the scenario; ``broker`` is a started, restartable broker or None (start our own).
    With ``opts.object_store`` the run starts (and stops) its own S3 server too."""
    from pipeline.kafka_admin import ensure_topics
    from pipeline.settings import Settings
    from tests.fixtures.kafka_broker import LocalBroker
    from tests.fixtures.s3_server import CHECKSUM_ENV

    rng = random.Random(opts.seed)
    own_broker = broker is None
    if own_broker:
        broker = LocalBroker(data_dir=workdir / "kafka")
        log(f"starting a private broker on {broker.bootstrap}")
        broker.start()
    s3 = None
    child_env: dict[str, str] | None = None  # None: the children inherit this environment
    saved_env: dict[str, str | None] = {}
    lake_location: Path | str = workdir / "lake"
    if opts.object_store:
        # the AWS SDK inside pyarrow reads the checksum settings from the process environment
        # only: set for this process's own S3 requests while the run lasts (restored after)
        saved_env = {k: os.environ.get(k) for k in CHECKSUM_ENV}
        os.environ.update(CHECKSUM_ENV)
        try:
            s3, bucket = _start_object_store(opts, workdir)
        except BaseException:
            _restore_environ(saved_env)
            if own_broker:
                broker.stop()
            raise
        lake_location = f"s3://{bucket}/lake"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        child_env.update(s3.env())
        child_env[RETRY_SECONDS_ENV] = f"{opts.lake_retry_seconds:g}"
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap,
        topic=f"{TOPIC}-{opts.seed}-{os.getpid()}",
        lake=lake_location,
        warehouse=workdir / "warehouse.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv",
    )
    common = setting_args(settings)
    end_date = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    run_args = {
        "events": opts.events,
        "days": opts.days,
        "end_date": end_date,
        "seed": opts.seed,
        "bad_fraction": opts.bad_fraction,
        "duplicate_fraction": opts.duplicate_fraction,
    }
    messages = (
        opts.events
        + math.floor(opts.events * opts.bad_fraction)
        + math.floor(opts.events * opts.duplicate_fraction)
    )
    consume = [
        MODELMETER,
        "consume",
        *common,
        "--group",
        GROUP,
        "--flush-events",
        str(opts.flush_events),
        "--flush-seconds",
        str(opts.flush_seconds),
        "--progress-seconds",
        "0",
    ]
    lake = LakeAccess(settings.lake, child_env)
    if opts.object_store:
        # as on two machines: a working directory and a static member id each, one group
        consumers = {}
        for name in ("a", "b"):
            home = workdir / f"machine-{name}"
            home.mkdir(parents=True, exist_ok=True)
            consumers[name] = ConsumerProc(
                name,
                [*consume, "--instance-id", f"chaos-{name}"],
                home / "consumer.log",
                cwd=home,
                env=child_env,
            )
    else:
        consumers = {
            name: ConsumerProc(name, consume, workdir / f"consumer-{name}.log")
            for name in ("a", "b")
        }
    compactions = Compactions(
        [MODELMETER, "compact", *common, "--settle-hours", str(opts.compact_settle / 3600)],
        lake,
        workdir / "compact.log",
        env=child_env,
    )
    final_compaction: dict[str, Any] = {}
    timeline: list[dict[str, Any]] = []
    started = time.monotonic()

    def note(action: str, **details: Any) -> None:
        timeline.append({"t": round(time.monotonic() - started, 2), "action": action, **details})
        log(f"{action} {details if details else ''}")

    sim = None
    try:
        ensure_topics(settings)
        summary_path = workdir / "simulate-summary.json"
        sim_argv = [
            MODELMETER,
            "simulate",
            *common,
            "--events",
            str(opts.events),
            "--days",
            str(opts.days),
            "--end-date",
            end_date.isoformat(),
            "--seed",
            str(opts.seed),
            "--bad-fraction",
            str(opts.bad_fraction),
            "--duplicate-fraction",
            str(opts.duplicate_fraction),
            "--no-progress",
            "--summary-json",
            str(summary_path),
        ]
        sim_log = open(workdir / "simulate.log", "w")  # noqa: SIM115 - closed in finally
        sim = subprocess.Popen(
            sim_argv, stdout=sim_log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=child_env
        )
        sim_log.close()
        note("simulate started", messages=messages)
        consumers["a"].start()
        note("consumer a started")
        if opts.object_store:
            consumers["b"].start()
            note("consumer b started")
        pills = PoisonPills(settings.kafka_bootstrap_servers, settings.topic, opts.poison_pills)
        pills.start()
        note("poison pills started", count=opts.poison_pills)

        for step in _plan(opts):
            if step == "broker":
                time.sleep(rng.uniform(0.2, 1.0))
            else:
                time.sleep(rng.uniform(opts.pause_min, opts.pause_max))
            if step == "kill":
                victim = rng.choice(
                    [c for c in consumers.values() if c.running] or [consumers["a"]]
                )
                if not victim.running:
                    victim.start()
                # a random moment of the victim's own run, not only of its start-up
                time.sleep(
                    max(
                        0.0,
                        victim.started_at
                        + rng.uniform(opts.pause_min, opts.pause_max)
                        - time.monotonic(),
                    )
                )
                victim.kill()
                note(
                    "SIGKILL consumer",
                    consumer=victim.name,
                    produced=_produced(settings.kafka_bootstrap_servers, settings.topic),
                )
                time.sleep(rng.uniform(0.0, 1.0))
                victim.start()
                note("consumer restarted", consumer=victim.name)
            elif step == "broker":
                # mid-stream: while the simulator still has messages to send, when possible
                deadline = time.monotonic() + 60
                while sim.poll() is None and time.monotonic() < deadline:
                    done = _produced(settings.kafka_bootstrap_servers, settings.topic)
                    if done >= messages * 0.2:
                        break
                    time.sleep(0.2)
                produced = _produced(settings.kafka_bootstrap_servers, settings.topic)
                note("broker restart", produced=produced, simulator_running=sim.poll() is None)
                broker.restart()
                note("broker back")
            elif step == "s3" and s3 is not None:
                note(
                    "S3 restart",
                    produced=_produced(settings.kafka_bootstrap_servers, settings.topic),
                    uncommitted=_behind(settings.kafka_bootstrap_servers, settings.topic),
                    simulator_running=sim.poll() is None,
                )
                down = time.monotonic()
                s3.stop()
                time.sleep(opts.s3_pause)  # the consumers retry meanwhile
                s3.start()
                note(
                    "S3 back",
                    down_seconds=round(time.monotonic() - down, 1),
                    consumers_running=sorted(c.name for c in consumers.values() if c.running),
                )
            elif step == "join":
                consumers["b"].start()
                note("consumer b joined the group")
            elif step == "leave" and consumers["b"].running:
                code = consumers["b"].stop()
                note("consumer b left the group (SIGTERM)", exit_code=code)
            elif step == "compact-kill":
                note("SIGKILL compact", **compactions.run_and_kill(rng))
            elif step == "compact":
                note("compact finished", **compactions.run())

        code = sim.wait(timeout=900)
        note("simulate finished", exit_code=code)
        if code != 0:
            raise RuntimeError(
                f"modelmeter simulate exited {code}: "
                f"{(workdir / 'simulate.log').read_text()[-2000:]}"
            )
        summary = json.loads(summary_path.read_text())
        note("poison pills sent", delivered=pills.finish())
        for consumer in consumers.values():
            if consumer.running:
                # a stop, not another kill: let a just-restarted consumer get going first
                time.sleep(max(0.0, consumer.started_at + opts.pause_max - time.monotonic()))
                note(f"stopping consumer {consumer.name} (SIGTERM)", exit_code=consumer.stop())
            else:
                consumer.reap()
        # Drain. A SIGKILLed member stays in the group until its session times out, and a
        # drain that joins before that may get only some partitions and go idle on them: drain
        # again until the group's committed offsets reach the end of every partition.
        drain = [
            MODELMETER,
            "consume",
            *common,
            "--group",
            GROUP,
            "--until-idle",
            str(opts.drain_idle),
            "--progress-seconds",
            "0",
        ]
        for attempt in range(1, 6):
            with open(workdir / "consumer-drain.log", "a") as out:
                code = subprocess.run(
                    drain,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=REPO_ROOT,
                    env=child_env,
                    timeout=1800,
                ).returncode
            end = _end_offsets(settings.kafka_bootstrap_servers, settings.topic)
            committed = _committed(settings.kafka_bootstrap_servers, GROUP, settings.topic)
            behind = sum(off - committed.get(p, 0) for p, off in end.items())
            note("drained (--until-idle)", attempt=attempt, exit_code=code, behind=behind)
            if code != 0:
                raise RuntimeError(
                    f"the drain exited {code}: "
                    f"{(workdir / 'consumer-drain.log').read_text()[-2000:]}"
                )
            if behind == 0:
                break
        if opts.compact_kills:
            # one to its end: it finishes what a killed one committed (its journal), removes
            # the temporary files of one killed before that, and compacts what has settled
            final_compaction = compactions.run()
            note("final compact", **final_compaction)
            if final_compaction["exit_code"] != 0:
                raise RuntimeError(f"the final modelmeter compact failed: {final_compaction}")
        with open(workdir / "build.log", "w") as out:
            code = subprocess.run(
                [MODELMETER, "build", *common],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=child_env,
                timeout=1800,
            ).returncode
        note("modelmeter build", exit_code=code)
        if code != 0:
            raise RuntimeError(
                f"modelmeter build exited {code}: {(workdir / 'build.log').read_text()[-2000:]}"
            )
        log("auditing")
        expected = expected_from_simulator(settings, run_args)
        result = audit(settings, summary, expected, poison_pills=opts.poison_pills, lake=lake)
        if opts.compact_kills:
            left = lake_state(lake)
            for name, key in (
                ("compaction_temp_files_left", "compact_temp_files"),
                ("compaction_journals_left", "journals"),
            ):
                result["checks"][name] = {"expected": 0, "actual": left[key], "ok": not left[key]}
            result["checks"]["compaction_failures"] = {
                "expected": [],
                "actual": compactions.failed,
                "ok": not compactions.failed,
            }
        if opts.object_store:
            # every consumer rode the S3 restarts out: none exited but by a SIGKILL of the
            # run or its final SIGTERM (exit 2: the store did not answer for its retry time)
            unexpected = {
                c.name: [x for x in c.exits if x not in (0, -signal.SIGKILL)]
                for c in consumers.values()
            }
            result["checks"]["consumer_exits_only_kills_and_stops"] = {
                "expected": {},
                "actual": {k: v for k, v in unexpected.items() if v},
                "ok": not any(unexpected.values()),
            }
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
            sim.wait()
        for consumer in consumers.values():
            if consumer.running:
                assert consumer.proc is not None
                consumer.proc.kill()
                consumer.proc.wait()
        if own_broker:
            broker.stop()
        if s3 is not None:
            s3.stop()
            _restore_environ(saved_env)

    kills = sum(1 for t in timeline if t["action"] == "SIGKILL consumer")
    restarts = sum(1 for t in timeline if t["action"] == "broker restart")
    ok = all(c["ok"] for c in result["checks"].values())
    compaction = {
        "settle_seconds": opts.compact_settle,
        "started": compactions.started,
        "killed": compactions.killed,
        "completed": compactions.completed,
        "failed_exit_codes": compactions.failed,
        # added up over the runs that finished (the final one included), from their summary
        # lines; a killed run prints none
        **{
            k: compactions.totals[k]
            for k in ("runs", "files_removed", "files_written", "rows", "journals_replayed")
        },
        "temp_files_removed": compactions.totals["temp_removed"],
        "runs_skipped": compactions.totals["skipped"],
        "kills": compactions.kills,
        "final": final_compaction,
    }
    faults: dict[str, Any] = {
        "consumer_kills": kills,
        "broker_restarts": restarts,
        "second_consumer": consumers["b"].starts > 0,
        "consumer_exit_codes": {c.name: c.exits for c in consumers.values()},
        "compaction_kills": compactions.killed,
    }
    object_store: dict[str, Any] = {}
    if s3 is not None:
        faults["s3_restarts"] = sum(1 for t in timeline if t["action"] == "S3 restart")
        faults["consumers"] = {
            c.name: {
                "instance_id": f"chaos-{c.name}",
                "cwd": str(c.cwd),
                "starts": c.starts,
                "exit_codes": c.exits,
            }
            for c in consumers.values()
        }
        object_store = {
            "object_store": {
                "lake": str(settings.lake),
                "endpoint": s3.endpoint,
                "lake_retry_seconds": opts.lake_retry_seconds,
                "s3_pause_seconds": opts.s3_pause,
            }
        }
    return {
        "ok": ok,
        "options": {k: getattr(opts, k) for k in Options.__dataclass_fields__},
        **object_store,
        "faults": faults,
        "compaction": compaction,
        "simulator": {
            k: summary[k]
            for k in (
                "valid_events",
                "distinct_event_ids",
                "llm_call_events",
                "task_feedback_events",
                "duplicates",
                "bad_messages",
                "messages",
                "tokens",
            )
        },
        "expected_cost_usd": str(expected["cost_usd"]),
        "expected_baseline_cost_usd": str(expected["baseline_cost_usd"]),
        **result,
        "failed_checks": [name for name, c in result["checks"].items() if not c["ok"]],
        "timeline": timeline,
        "seconds": round(time.monotonic() - started, 1),
        "workdir": str(workdir),
    }


def _restore_environ(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ops/chaos.py", description=__doc__.split("\n\n")[0])
    d = Options()
    parser.add_argument("--events", type=int, default=d.events)
    parser.add_argument("--bad-fraction", type=float, default=d.bad_fraction)
    parser.add_argument("--duplicate-fraction", type=float, default=d.duplicate_fraction)
    parser.add_argument("--kills", type=int, default=d.kills)
    parser.add_argument("--broker-restarts", type=int, default=d.broker_restarts)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--days", type=int, default=d.days)
    parser.add_argument(
        "--flush-events",
        type=int,
        default=d.flush_events,
        help="consumer --flush-events during the faults (default 10000)",
    )
    parser.add_argument(
        "--flush-seconds",
        type=float,
        default=d.flush_seconds,
        help="consumer --flush-seconds during the faults (default 2)",
    )
    parser.add_argument(
        "--poison-pills",
        type=int,
        default=d.poison_pills,
        help="hostile messages sent through the run (default 30)",
    )
    parser.add_argument(
        "--compact-kills",
        type=int,
        default=d.compact_kills,
        help="modelmeter compact runs SIGKILLed at random moments (default 3; 0: no compaction)",
    )
    parser.add_argument(
        "--object-store",
        action="store_true",
        help="the lake in a bucket of a private S3 server (S3Proxy): two consumers with their "
        "own working directories from the start, the S3 server restarted mid-run",
    )
    parser.add_argument(
        "--s3-restarts",
        type=int,
        default=d.s3_restarts,
        help="with --object-store: S3 server restarts (default 1)",
    )
    parser.add_argument(
        "--s3-pause",
        type=float,
        default=d.s3_pause,
        help="with --object-store: seconds the S3 server stays down on a restart (default 4)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the summary here")
    parser.add_argument(
        "--workdir", type=Path, help="keep broker data, lake, warehouse and logs here"
    )
    args = parser.parse_args(argv)
    for name in (
        "events",
        "kills",
        "broker_restarts",
        "days",
        "flush_events",
        "poison_pills",
        "compact_kills",
        "s3_restarts",
    ):
        if getattr(args, name) < (1 if name in ("events", "days", "flush_events") else 0):
            parser.error(f"--{name.replace('_', '-')} is out of range: {getattr(args, name)}")
    for name in ("bad_fraction", "duplicate_fraction"):
        if not 0 <= getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    if not 0 <= args.s3_pause <= d.lake_retry_seconds / 4:
        parser.error(f"--s3-pause must be in [0, {d.lake_retry_seconds / 4:g}] seconds")
    opts = Options(
        events=args.events,
        bad_fraction=args.bad_fraction,
        duplicate_fraction=args.duplicate_fraction,
        kills=args.kills,
        broker_restarts=args.broker_restarts,
        seed=args.seed,
        days=args.days,
        flush_events=args.flush_events,
        flush_seconds=args.flush_seconds,
        poison_pills=args.poison_pills,
        compact_kills=args.compact_kills,
        object_store=args.object_store,
        s3_restarts=args.s3_restarts,
        s3_pause=args.s3_pause,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelmeter-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run_chaos(opts, workdir=workdir)
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "workdir": str(workdir)}
    text = json.dumps(result, indent=2, default=_json_default)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    if result["ok"] and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not result["ok"]:
        log(
            f"FAILED: {result.get('failed_checks') or result.get('error')}; "
            f"logs and data kept in {workdir}"
        )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
