"""Producer benchmark: the SDK's events/s on each client, the old fast path and raw clients.

    .venv/bin/python bench/producer.py sdk --kafka-client confluent --events-file F --bootstrap 127.0.0.1:PORT --topic T
    .venv/bin/python bench/producer.py raw --kafka-client kafka-python --events-file F --bootstrap ... --topic T

bench/run.py generates N events once (bench/gen_lake.py's traffic, yesterday), writes them
and the exact bytes the SDK sends for them to a file, then times, side by side in fresh
processes, alternated ``--rounds`` times, best rate of each side kept:

- ``default``: ``UsageProducer.llm_call(...)`` / ``task_feedback(...)`` as an agent calls
  them (contract validation, JSON serialisation, bounded buffer, delivery tracking) on the
  default client, librdkafka;
- ``kafka_python``: the same on kafka-python (``KafkaProducer.send``, its public API);
- ``fast_path``: the same with the SDK of the ``kafka-python-fast-path`` tag (kafka-python,
  with the SDK appending to kafka-python's accumulator itself), run from a ``git archive``
  of the tag with this virtualenv;
- ``raw_librdkafka`` / ``raw_kafka_python``: a bare ``Producer.produce`` /
  ``KafkaProducer.send`` loop of the same bytes (key = task_id) with the SDK's settings.

Each side times sending every event and flushing until every one is acknowledged, and
reports its process CPU per event over the same window. Goal: default >= fast_path. The
sdk sides call with keyword names interned, as they are at an agent's call site.

The child side imports only the standard library before ``pipeline`` (from the directory
``--code`` names: the repository, or the tag's copy), so each side runs its own code.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent

__all__ = ["run_producer"]

# the sides: (kind, client, run from the fast-path tag's code)
SIDES = {
    "default": ("sdk", "confluent", False),
    "kafka_python": ("sdk", "kafka-python", False),
    "fast_path": ("sdk", "kafka-python", True),
    "raw_librdkafka": ("raw", "confluent", False),
    "raw_kafka_python": ("raw", "kafka-python", False),
}


# -- the child process: one side ------------------------------------------------------------


def _sdk(bootstrap: str, topic: str, rows: list[dict], kafka_client: str) -> tuple[float, float]:
    from pipeline.sdk import UsageProducer
    from pipeline.settings import Settings

    settings = Settings(kafka_bootstrap_servers=bootstrap, topic=topic, kafka_client=kafka_client)
    calls = []
    for row in rows:
        kind = row.pop("event_type")
        row.pop("schema_version")
        # keyword names as an agent's call site has them (interned constants): pyarrow's
        # fresh key strings would make CPython match each one by comparing characters
        calls.append((kind == "llm_call", {sys.intern(k): v for k, v in row.items()}))
    with UsageProducer(settings, create_topics=False) as meter:
        llm_call, task_feedback = meter.llm_call, meter.task_feedback
        started, cpu = time.perf_counter(), time.process_time()
        for is_call, kwargs in calls:
            if is_call:
                llm_call(**kwargs)
            else:
                task_feedback(**kwargs)
        meter.flush()
        return time.perf_counter() - started, time.process_time() - cpu


def _raw(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], kafka_client: str
) -> tuple[float, float]:
    if kafka_client == "confluent":
        return _raw_librdkafka(bootstrap, topic, messages)
    from kafka import KafkaProducer

    from pipeline.transport import kafka_python_config

    producer = KafkaProducer(bootstrap_servers=bootstrap, **kafka_python_config())
    producer.partitions_for(topic)
    try:
        send = producer.send
        started, cpu = time.perf_counter(), time.process_time()
        futures = [send(topic, value=value, key=key) for key, value in messages]
        producer.flush()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        failed = sum(1 for f in futures if f.failed())
        if failed:
            raise RuntimeError(f"{failed} raw sends failed")
        return seconds, cpu
    finally:
        producer.close()


def _raw_librdkafka(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]
) -> tuple[float, float]:
    from confluent_kafka import Producer

    from pipeline.kafka_connect import confluent_config
    from pipeline.settings import Settings
    from pipeline.transport import CONFLUENT_PRODUCER_DEFAULTS

    config = confluent_config(
        Settings(kafka_bootstrap_servers=bootstrap),
        {**CONFLUENT_PRODUCER_DEFAULTS, "queue.buffering.max.messages": 100_000},
    )
    producer = Producer(config)
    producer.list_topics(topic, timeout=30)
    failed = []

    def report(error, _message) -> None:  # noqa: ANN001
        if error is not None:
            failed.append(error)

    produce, poll = producer.produce, producer.poll
    started, cpu = time.perf_counter(), time.process_time()
    for key, value in messages:
        while True:
            try:
                produce(topic, value, key, on_delivery=report)
                break
            except BufferError:
                poll(0.01)
    producer.flush()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if failed:
        raise RuntimeError(f"{len(failed)} raw sends failed: {failed[0]}")
    return seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["sdk", "raw"])
    parser.add_argument(
        "--kafka-client", choices=["confluent", "kafka-python"], default="confluent"
    )
    parser.add_argument(
        "--events-file",
        type=Path,
        required=True,
        help="pickled {'rows': [...], 'messages': [(key, value), ...]}",
    )
    parser.add_argument(
        "--code",
        type=Path,
        default=REPO,
        help="the directory whose pipeline package runs (default: this one)",
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.code.resolve()))
    with open(args.events_file, "rb") as fh:
        data = pickle.load(fh)
    if args.kind == "sdk":
        seconds, cpu = _sdk(args.bootstrap, args.topic, data["rows"], args.kafka_client)
    else:
        seconds, cpu = _raw(args.bootstrap, args.topic, data["messages"], args.kafka_client)
    events = len(data["rows"])
    import pipeline

    print(
        json.dumps(
            {
                "kind": args.kind,
                "kafka_client": args.kafka_client,
                "code": str(Path(pipeline.__file__).resolve().parent.parent),
                "events": events,
                "seconds": round(seconds, 3),
                "events_per_s": round(events / seconds),
                "cpu_us_per_event": round(cpu / events * 1e6, 2),
            }
        )
    )
    return 0


# -- the parent: bench/run.py -----------------------------------------------------------------


def _write_events(path: Path, events: int, seed: int) -> None:
    """N events of yesterday and the exact bytes the SDK sends for them (key = task_id)."""
    import datetime as dt

    import numpy as np

    from bench.gen_lake import Traffic, day_tables
    from pipeline.contract import validate_event
    from pipeline.sdk import serialize_event

    traffic = Traffic.from_policy()
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    llm, fb, _, _ = day_tables(
        traffic, day, events, np.random.default_rng(seed), id_prefix=f"p{seed}-{time.time_ns()}-"
    )
    rows = llm.to_pylist() + fb.to_pylist()
    rows.sort(key=lambda r: r["occurred_at"])
    messages = []
    for row in rows:
        event = validate_event(dict(row))
        messages.append((event.task_id.encode(), serialize_event(event)))
    with open(path, "wb") as fh:
        pickle.dump({"rows": rows, "messages": messages}, fh, protocol=pickle.HIGHEST_PROTOCOL)


def run_producer(settings, workdir: Path, events: int, rounds: int = 2, seed: int = 5) -> dict:
    """The ``producer`` figure: every side alternated ``rounds`` times, best rate of each.

    Also the process CPU per event of each side (best run): on a shared machine the other
    load moves wall-clock rates much more than CPU."""
    from bench.common import FAST_PATH_TAG, PYTHON, command_text, fast_path_tree, log, run_timed
    from pipeline.kafka_admin import ensure_topics

    ensure_topics(settings)
    events_file = workdir / "producer-events.pickle"
    _write_events(events_file, events, seed)
    old = fast_path_tree(workdir)
    rates: dict[str, list[int]] = {side: [] for side in SIDES}
    cpu: dict[str, list[float]] = {side: [] for side in SIDES}
    commands = {}
    for i in range(rounds):
        for side, (kind, client, from_tag) in SIDES.items():
            argv = [
                PYTHON,
                str(HERE),
                kind,
                "--kafka-client",
                client,
                "--events-file",
                str(events_file),
                "--bootstrap",
                settings.kafka_bootstrap_servers,
                "--topic",
                settings.topic,
            ]
            if from_tag:
                argv += ["--code", str(old)]
            log(f"producer: {side} round {i + 1}/{rounds} ({events:,} events)")
            timed = run_timed(argv).check()
            result = json.loads(timed.stdout)
            expected = old if from_tag else REPO
            if Path(result["code"]) != expected.resolve():
                raise RuntimeError(f"producer side {side} ran the code of {result['code']}")
            rates[side].append(result["events_per_s"])
            cpu[side].append(result["cpu_us_per_event"])
            commands[side] = command_text(argv).replace(str(old), f"$(git archive {FAST_PATH_TAG})")
    best = {side: max(r) for side, r in rates.items()}
    vs_fast = best["default"] / best["fast_path"]
    out: dict = {
        "events": events,
        "goal": "default (SDK on librdkafka) >= fast_path (the tag's kafka-python SDK)",
        "default_vs_fast_path": round(vs_fast, 3),
        "met": vs_fast >= 1.0,
        "kafka_python_vs_raw_kafka_python": round(
            best["kafka_python"] / best["raw_kafka_python"], 3
        ),
        "default_vs_raw_librdkafka": round(best["default"] / best["raw_librdkafka"], 3),
    }
    for side in SIDES:
        out[side] = {
            "events_per_s": best[side],
            "runs_events_per_s": rates[side],
            "cpu_us_per_event": min(cpu[side]),
            "command": commands[side],
        }
    log(
        f"producer: {', '.join(f'{side} {best[side]:,}/s' for side in SIDES)}; "
        f"default / fast_path = {vs_fast:.2f}"
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
