"""Producer benchmark: the SDK's events/s vs raw kafka-python ``send`` of the same bytes.

    .venv/bin/python bench/producer.py sdk --bootstrap 127.0.0.1:PORT --topic T --events N
    .venv/bin/python bench/producer.py raw --bootstrap 127.0.0.1:PORT --topic T --events N
    .venv/bin/python bench/producer.py sdk --kafka-client confluent --bootstrap ... --topic T --events N

Both sides run in a fresh process, build the same N events (bench/gen_lake.py's traffic,
yesterday) before the clock starts, then time sending them all and flushing until every one
is acknowledged. ``sdk`` calls ``UsageProducer.llm_call(...)`` / ``task_feedback(...)`` as an
agent does (contract validation, JSON serialisation, bounded buffer, delivery tracking);
``raw`` sends, with a bare ``KafkaProducer`` configured exactly like the SDK's, the bytes the
SDK produces for those events (key = task_id). bench/run.py alternates raw, sdk, raw, sdk
and keeps the best rate of each; goal sdk / raw >= 0.8. It also times the SDK on its optional
confluent-kafka (librdkafka) transport against the same raw kafka-python rate (information).
Each side also reports its process CPU per event over the same window (``cpu_ratio``:
steadier than wall-clock rates on a shared machine). The sdk side calls with its keyword
names interned, as they are at an agent's call site.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PYTHON, log, run_timed  # noqa: E402

__all__ = ["run_producer"]

HERE = Path(__file__).resolve()


def _events(events: int, seed: int) -> list[dict]:
    import numpy as np

    from bench.gen_lake import Traffic, day_tables

    traffic = Traffic.from_policy()
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    llm, fb, _, _ = day_tables(traffic, day, events, np.random.default_rng(seed),
                               id_prefix=f"p{seed}-{time.time_ns()}-")
    rows = llm.to_pylist() + fb.to_pylist()
    rows.sort(key=lambda r: r["occurred_at"])
    return rows


def _sdk(bootstrap: str, topic: str, rows: list[dict],
         kafka_client: str = "kafka-python") -> tuple[float, float]:
    from pipeline.sdk import UsageProducer
    from pipeline.settings import Settings

    settings = Settings(kafka_bootstrap_servers=bootstrap, topic=topic, kafka_client=kafka_client)
    calls = []
    for row in rows:
        kind = row.pop("event_type")
        row.pop("schema_version")
        # keyword names as an agent's call site has them (interned constants): pyarrow's
        # fresh key strings would make CPython match each one by comparing characters,
        # ~2 us per call that no agent pays
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


def _raw(bootstrap: str, topic: str, rows: list[dict]) -> tuple[float, float]:
    from kafka import KafkaProducer

    from pipeline.contract import validate_event
    from pipeline.sdk import serialize_event
    from pipeline.transport import kafka_python_config

    # the exact bytes the SDK sends for these events
    messages = []
    for row in rows:
        event = validate_event(row)
        messages.append((event.task_id.encode(), serialize_event(event)))
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


def _argv(side: str, bootstrap: str, topic: str, events: int) -> list[str]:
    client = ["--kafka-client", "confluent"] if side == "sdk_confluent" else []
    return [PYTHON, str(HERE), side.removesuffix("_confluent"), *client, "--bootstrap", bootstrap,
            "--topic", topic, "--events", str(events)]


def run_producer(settings, events: int, rounds: int = 2) -> dict:
    """The ``producer`` figure: raw and sdk alternated ``rounds`` times, best rate of each.

    Also the process CPU per event of each side (best run): on a shared machine the other
    load moves wall-clock rates much more than CPU, so ``cpu_ratio`` (raw CPU per event /
    SDK CPU per event) is the steadier view of the same question."""
    from pipeline.kafka_admin import ensure_topics

    ensure_topics(settings)
    rates: dict[str, list[int]] = {"raw": [], "sdk": [], "sdk_confluent": []}
    cpu: dict[str, list[float]] = {side: [] for side in rates}
    commands = {}
    for i in range(rounds):
        for side in rates:
            argv = _argv(side, settings.kafka_bootstrap_servers, settings.topic, events)
            log(f"producer: {side} round {i + 1}/{rounds} ({events:,} events)")
            timed = run_timed(argv).check()
            result = json.loads(timed.stdout)
            rates[side].append(result["events_per_s"])
            cpu[side].append(result["cpu_us_per_event"])
            commands[side] = timed.command
    sdk, raw = max(rates["sdk"]), max(rates["raw"])
    ratio = sdk / raw
    cpu_ratio = min(cpu["raw"]) / min(cpu["sdk"])
    log(f"producer: sdk {sdk:,}/s vs raw {raw:,}/s (ratio {ratio:.2f}, CPU ratio {cpu_ratio:.2f})")
    return {"events": events, "sdk_events_per_s": sdk, "raw_kafka_python_events_per_s": raw,
            "sdk_runs": rates["sdk"], "raw_runs": rates["raw"], "ratio": round(ratio, 3),
            "goal": "ratio >= 0.8", "met": ratio >= 0.8,
            "sdk_cpu_us_per_event": cpu["sdk"], "raw_cpu_us_per_event": cpu["raw"],
            "cpu_ratio": round(cpu_ratio, 3),
            "command": commands["sdk"], "raw_command": commands["raw"],
            # the SDK on its optional librdkafka transport, against the same raw rate
            "sdk_confluent_events_per_s": max(rates["sdk_confluent"]),
            "sdk_confluent_runs": rates["sdk_confluent"],
            "sdk_confluent_ratio": round(max(rates["sdk_confluent"]) / raw, 3),
            "sdk_confluent_cpu_us_per_event": cpu["sdk_confluent"],
            "sdk_confluent_command": commands["sdk_confluent"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("side", choices=["sdk", "raw"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--kafka-client", choices=["kafka-python", "confluent"],
                        default="kafka-python", help="the SDK's transport (sdk side only)")
    args = parser.parse_args(argv)
    rows = _events(args.events, args.seed)
    if args.side == "sdk":
        seconds, cpu = _sdk(args.bootstrap, args.topic, rows, args.kafka_client)
    else:
        seconds, cpu = _raw(args.bootstrap, args.topic, rows)
    print(json.dumps({"side": args.side, "kafka_client": args.kafka_client,
                      "events": len(rows), "seconds": round(seconds, 3),
                      "events_per_s": round(len(rows) / seconds),
                      "cpu_us_per_event": round(cpu / len(rows) * 1e6, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
