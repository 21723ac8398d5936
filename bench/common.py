"""Shared pieces of the benchmarks: a private broker, timed subprocesses with peak memory,
pre-produced topics and lake counts.

Every benchmark runs against its own broker (tests/fixtures/kafka_broker.py ``LocalBroker``: the
project's ops/kafka/kafka.sh on free loopback ports with a temporary data dir), never a
developer's broker on 9092.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import resource
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import duckdb  # noqa: E402
import psutil  # noqa: E402

from pipeline.settings import Settings  # noqa: E402
from pipeline.warehouse import parquet_literal  # noqa: E402
from tests.fixtures.kafka_broker import LocalBroker  # noqa: E402

__all__ = [
    "REPO_ROOT",
    "PYTHON",
    "MODELMETER",
    "log",
    "private_broker",
    "settings_for",
    "Timed",
    "run_timed",
    "command_text",
    "produce_events",
    "lake_counts",
    "FAST_PATH_TAG",
    "fast_path_tree",
    "machine",
    "rel",
]

PYTHON = str(Path(sys.executable))
MODELMETER = str(Path(sys.executable).parent / "modelmeter")


def log(message: str) -> None:
    """Progress to stderr (stdout carries the one JSON document)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rel(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (for printed commands)."""
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    return str(path)


def command_text(argv: Sequence[str]) -> str:
    """A copy-pasteable command line (the venv's python and modelmeter shown relative)."""
    shown = [rel(a) if a in (PYTHON, MODELMETER) else str(a) for a in argv]
    if shown and shown[0] == rel(PYTHON):
        shown[0] = ".venv/bin/python"
    elif shown and shown[0] == rel(MODELMETER):
        shown[0] = ".venv/bin/modelmeter"
    return shlex.join(shown)


@contextlib.contextmanager
def private_broker(workdir: Path) -> Iterator[LocalBroker]:
    """A broker of our own on free ports, stopped (and its data left in ``workdir``) at exit."""
    broker = LocalBroker(data_dir=workdir / "kafka", heap="-Xms256m -Xmx768m")
    log(f"starting a private Kafka broker on {broker.bootstrap}")
    broker.start()
    try:
        warm_group_coordinator(broker.bootstrap)
        yield broker
    finally:
        log("stopping the private broker")
        broker.stop()


def warm_group_coordinator(bootstrap: str) -> None:
    """Commit one offset for a throwaway group, so that the broker creates its
    ``__consumer_offsets`` topic now and not during the first timed consumer.

    A new broker does that on its first group request, once in its life; measured here it
    added 0.3-0.4 s to whichever consumer came first (the first ``ingest`` run), which a
    broker in service never charges."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from pipeline.kafka_admin import ensure_topics

    started = time.perf_counter()
    ensure_topics(Settings(kafka_bootstrap_servers=bootstrap, topic="bench-warmup"), partitions=1)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id="bench-warmup", enable_auto_commit=False
    )
    try:
        tp = TopicPartition("bench-warmup", 0)
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(0, "", -1)})
    finally:
        consumer.close()
    log(f"group coordinator ready ({time.perf_counter() - started:.1f} s)")


def settings_for(broker: LocalBroker, topic: str, workdir: Path) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap,
        topic=topic,
        lake=workdir / "lake",
        warehouse=workdir / "warehouse.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv",
    )


@dataclass
class Timed:
    """A finished subprocess: wall seconds from start to exit, its output and memory."""

    argv: list[str]
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int  # largest sum of RSS over the process and its children, sampled
    peak_pss_bytes: int  # the same with PSS (shared pages split between the processes)
    peak_hwm_bytes: int  # largest VmHWM (kernel's peak RSS) of any one process of the tree
    cpu_seconds: float = 0.0  # user + system CPU of the process and the children it waited for

    @property
    def command(self) -> str:
        return command_text(self.argv)

    def check(self) -> Timed:
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{self.command} exited {self.returncode}:\n{tail}")
        return self


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def start_sampled(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    interval: float = 0.1,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen, dict[str, int], threading.Thread]:
    """Start ``argv`` (in ``cwd``, default the repository); a thread samples the tree's
    memory until it exits."""
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd or REPO_ROOT,
    )
    peak = {"rss": 0, "pss": 0, "hwm": 0}

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while proc.poll() is None:
            rss = pss = 0
            try:
                members = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for member in members:
                with contextlib.suppress(psutil.Error):
                    info = member.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", info.rss)
                peak["hwm"] = max(peak["hwm"], _hwm(member.pid))
            peak["rss"] = max(peak["rss"], rss)
            peak["pss"] = max(peak["pss"], pss)
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return proc, peak, thread


def run_timed(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
    cwd: Path | None = None,
) -> Timed:
    """Run ``argv`` to completion; wall time includes start-up (interpreter, imports, connect).

    Dirty pages left by earlier steps (a generated lake, a filled topic) are written back
    first: the consumer fsyncs every flush, and an fsync queued behind gigabytes of someone
    else's writeback measured 2x slower."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc, peak, thread = start_sampled(argv, env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"{command_text(argv)} did not finish within {timeout} s") from None
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    thread.join(timeout=2)
    return Timed(
        list(argv), seconds, proc.returncode, out, err, peak["rss"], peak["pss"], peak["hwm"], cpu
    )


# The commit whose kafka-python client read kafka-python's internals (the consumer's own
# message decoding, the SDK's direct appends to the producer's accumulator): measured side
# by side with the public-API clients that replaced it.
FAST_PATH_TAG = "kafka-python-fast-path"


def fast_path_tree(workdir: Path) -> Path:
    """A copy of the repository at :data:`FAST_PATH_TAG` (``git archive``), once per run;
    its code runs with this virtualenv (the tag pins kafka-python 3.0.12, installed here)."""
    tree = workdir / FAST_PATH_TAG
    if not (tree / "pipeline").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", FAST_PATH_TAG], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        log(f"the old kafka-python fast path: git archive {FAST_PATH_TAG} -> {tree}")
    return tree


def produce_events(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Pre-produce ``messages`` (key, value) fast with librdkafka; returns seconds.

    Only fills a topic for the consumer benchmarks; the producer benchmark measures the SDK.
    The partitioner is murmur2 (Kafka's and kafka-python's default), so a task stays on one
    partition as with the SDK.
    """
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "compression.type": "none",
        }
    )
    started = time.perf_counter()
    produce = producer.produce
    for key, value in messages:
        while True:
            try:
                produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages not acknowledged by the broker")
    return time.perf_counter() - started


def lake_counts(lake: Path) -> dict[str, int]:
    """Rows per lake table, distinct (partition, offset) and temporary files left over."""
    lake = Path(lake)
    con = duckdb.connect()
    counts: dict[str, int] = {}
    selects = []
    try:
        for table in ("llm_call", "task_feedback", "_rejected"):
            files = list(lake.glob(f"{table}/*/*.parquet"))
            if not files:
                counts[table] = 0
                continue
            src = (
                f"read_parquet([{', '.join(map(parquet_literal, files))}], "
                "hive_partitioning = false)"
            )
            counts[table] = con.execute(f"select count(*) from {src}").fetchall()[0][0]
            selects.append(f"select kafka_partition, kafka_offset from {src}")
        if selects:
            counts["distinct_offsets"] = con.execute(
                "select count(*) from (select distinct * from ("
                + " union all ".join(selects)
                + "))"
            ).fetchall()[0][0]
        else:
            counts["distinct_offsets"] = 0
    finally:
        con.close()
    counts["temp_files"] = sum(
        1
        for p in lake.rglob("*")
        if p.is_file() and (p.name.startswith(".") or p.name.endswith(".partial"))
    )
    return counts


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    import platform

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
        "load_average_at_start": [round(x, 2) for x in load],
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
