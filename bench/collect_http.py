"""The ``collect_http`` figure: ``modelmeter collect http`` turning OTLP protobuf batches into
acknowledged Kafka events, side by side with the SDK producing the same events.

bench/run.py calls :func:`run_collect_http`. N Claude Code ``claude_code.api_request`` log
records (four roles, two models, numbers as strings and integers) are serialised once as
OTLP/HTTP protobuf bodies of 100 records, then, alternated ``--rounds`` times, each run on a
fresh 6-partition topic of the private broker, best of each side kept:

- ``collector``: ``python -m pipeline.cli collect http --listen 127.0.0.1:0`` as a
  subprocess; start-up (interpreter, imports, broker connection, until ``/healthz``
  answers) is timed apart (``startup_seconds``). The clock runs from the first POST until
  the last batch is answered 200 (the collector answers only after Kafka acknowledged every
  event of it); ``CONCURRENCY`` keep-alive connections post in parallel, as several agents'
  exporters do. Checked: every answer 200 without ``partial_success``, and the topic read
  back holds N distinct event ids. Memory: the collector's RSS (and VmHWM) sampled every
  100 ms by bench/common's ``start_sampled``.
- ``sdk``: ``python bench/collect_http.py sdk`` in a fresh process: the same bodies decoded
  with the collector's public functions (``otlp.decode``, ``otlp.log_outcomes``) before the
  clock, then ``UsageProducer.llm_call(**fields)`` for every call and ``flush()``: the SDK's
  produce rate of the very same events.

Goals: collector >= 0.5 x sdk records/s; collector peak RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pickle
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["make_bodies", "run_collect_http"]

HERE = Path(__file__).resolve()
BATCH = 100
CONCURRENCY = 4
ROLES = ("architect", "implementer", "critic", "orchestrator")
MODELS = ("glm-4.5", "claude-opus-4-1")


def make_bodies(records: int) -> list[bytes]:
    """``records`` Claude Code log records as OTLP protobuf bodies of :data:`BATCH`."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def kv(attrs: dict[str, Any]) -> list[KeyValue]:
        return [
            KeyValue(
                key=k,
                value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v),
            )
            for k, v in attrs.items()
        ]

    bodies = []
    for b in range((records + BATCH - 1) // BATCH):
        role = ROLES[b % len(ROLES)]
        logs = []
        for j in range(min(BATCH, records - b * BATCH)):
            attrs: dict[str, Any] = {
                "event.name": "api_request",
                "event.timestamp": f"2026-01-{5 + b % 20:02d}T{j % 24:02d}:{b % 60:02d}:00.000Z",
                "event.sequence": j,
                "session.id": f"bench-{b}",
                "prompt.id": f"prompt-{b}-{j // 10}",
                "model": MODELS[1] if j % 10 == 0 else MODELS[0],
                "input_tokens": str(50 + (b * 7 + j) % 400),
                "output_tokens": 5 + j,
                "cache_read_tokens": str((b * j) % 3000),
                "cache_creation_tokens": "0",
                "cost_usd": "0.01",
                "duration_ms": "1200",
                "request_id": f"req_{b}_{j}",
            }
            logs.append(
                LogRecord(
                    time_unix_nano=1_767_607_200_000_000_000 + j,
                    body=AnyValue(string_value="claude_code.api_request"),
                    attributes=kv(attrs),
                )
            )
        request = ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=Resource(attributes=kv({"modelmeter.role": role})),
                    scope_logs=[ScopeLogs(log_records=logs)],
                )
            ]
        )
        bodies.append(request.SerializeToString())
    return bodies


# -- the child: the SDK side ----------------------------------------------------------------


def _sdk(bodies_file: Path, bootstrap: str, topic: str, policy: Path, prices: Path) -> dict:
    from pipeline.collect import otlp
    from pipeline.collect.records import CallBuilder
    from pipeline.collect.sources import load_sources
    from pipeline.policy import load_policy
    from pipeline.resources import default_data_file
    from pipeline.sdk import UsageProducer
    from pipeline.settings import Settings

    bodies = pickle.loads(bodies_file.read_bytes())
    mapping = load_sources(default_data_file("sources.yaml"))
    builder = CallBuilder(mapping, load_policy(policy))
    calls = []
    for body in bodies:
        message = otlp.decode("logs", body, "application/x-protobuf")
        calls += list(otlp.log_outcomes(message, mapping.otel, builder))  # type: ignore[arg-type]
    if not all(isinstance(c, dict) for c in calls):
        raise RuntimeError("a benchmark record is not a call")
    settings = Settings(
        kafka_bootstrap_servers=bootstrap, topic=topic, policy=policy, prices=prices
    )
    with UsageProducer(settings) as producer:
        producer.flush(30)  # connected before the clock starts, as the collector is
        started = time.perf_counter()
        for fields in calls:
            producer.llm_call(**fields)
        producer.flush(120)
        seconds = time.perf_counter() - started
    return {"records": len(calls), "seconds": seconds, "records_per_s": len(calls) / seconds}


# -- the parent -----------------------------------------------------------------------------


def _post_all(port: int, bodies: list[bytes]) -> tuple[float, list[str]]:
    """POST every body over CONCURRENCY keep-alive connections; (seconds, problems)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    problems: list[str] = []
    lock = threading.Lock()
    queue = list(reversed(range(len(bodies))))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                conn.request(
                    "POST",
                    "/v1/logs",
                    body=bodies[i],
                    headers={"Content-Type": "application/x-protobuf"},
                )
                response = conn.getresponse()
                answer = response.read()
                if response.status != 200:
                    problems.append(f"batch {i}: {response.status} {answer[:200]!r}")
                elif ExportLogsServiceResponse.FromString(answer).HasField("partial_success"):
                    problems.append(f"batch {i}: partial_success {answer[:200]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, problems


def _collector_run(settings, workdir: Path, bodies: list[bytes], records: int) -> dict:
    from bench.collect import _topic_event_ids
    from bench.common import PYTHON, command_text, start_sampled
    from pipeline.cli import setting_args

    port_file = workdir / f"collector-port-{uuid.uuid4().hex[:6]}"
    argv = [
        PYTHON,
        "-m",
        "pipeline.cli",
        "collect",
        "http",
        "--listen",
        "127.0.0.1:0",
        "--port-file",
        str(port_file),
        *setting_args(settings),
    ]
    started = time.perf_counter()
    proc, peak, sampler = start_sampled(argv)
    try:
        port = 0
        while time.perf_counter() - started < 60:
            if proc.poll() is not None:
                raise RuntimeError(f"the collector exited {proc.returncode}: {proc.stderr.read()}")
            if port_file.exists() and port_file.read_text().endswith("\n"):
                port = int(port_file.read_text())
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                finally:
                    conn.close()
            time.sleep(0.02)
        else:
            raise RuntimeError("the collector did not start within 60 s")
        startup = time.perf_counter() - started
        seconds, problems = _post_all(port, bodies)
        rss_while_sending = peak["rss"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        sampler.join(timeout=2)
    if problems:
        raise RuntimeError(f"collector: {len(problems)} batches not accepted: {problems[:3]}")
    acked, ids = _topic_event_ids(settings.kafka_bootstrap_servers, settings.topic)
    if acked != records or len(ids) != records:
        raise RuntimeError(f"collector: topic holds {acked} messages, {len(ids)} ids; {records}")
    return {
        "records_per_s": records / seconds,
        "seconds": seconds,
        "startup_seconds": startup,
        "peak_rss_bytes": max(rss_while_sending, peak["rss"]),
        "peak_hwm_bytes": peak["hwm"],
        "command": command_text(argv),
    }


def run_collect_http(settings, workdir: Path, records: int, rounds: int = 2) -> dict[str, Any]:
    """The ``collect_http`` figure (see the module's docstring)."""
    from bench.common import PYTHON, command_text, log, produce_events, run_timed
    from pipeline.kafka_admin import ensure_topics

    bodies = make_bodies(records)
    bodies_file = workdir / "collect-http-bodies.pickle"
    bodies_file.write_bytes(pickle.dumps(bodies))
    log(
        f"collect_http: {records:,} records in {len(bodies)} protobuf bodies "
        f"({sum(map(len, bodies)) / 2**20:.1f} MB)"
    )
    # a new broker's first idempotent producer is told to retry once: not in a timed run
    warm = settings.model_copy(update={"topic": f"{settings.topic}-warmup"})
    ensure_topics(warm, partitions=1)
    produce_events(settings.kafka_bootstrap_servers, warm.topic, [(b"warmup", b"{}")])

    collector_runs: list[dict] = []
    sdk_runs: list[tuple[Any, dict]] = []
    sdk_argv: list[str] = []
    for i in range(rounds):
        topic = f"{settings.topic}-sdk-{i + 1}-{uuid.uuid4().hex[:6]}"
        ensure_topics(settings.model_copy(update={"topic": topic}))
        sdk_argv = [
            PYTHON,
            str(HERE),
            "sdk",
            "--bodies-file",
            str(bodies_file),
            "--bootstrap",
            settings.kafka_bootstrap_servers,
            "--topic",
            topic,
            "--policy",
            str(settings.policy),
            "--prices",
            str(settings.prices),
        ]
        log(f"collect_http: sdk round {i + 1}/{rounds}")
        timed = run_timed(sdk_argv).check()
        result = json.loads(timed.stdout)
        if result["records"] != records:
            raise RuntimeError(f"sdk side produced {result['records']} of {records}")
        sdk_runs.append((timed, result))

        topic = f"{settings.topic}-http-{i + 1}-{uuid.uuid4().hex[:6]}"
        round_settings = settings.model_copy(update={"topic": topic})
        ensure_topics(round_settings)
        log(f"collect_http: collector round {i + 1}/{rounds}")
        run = _collector_run(round_settings, workdir, bodies, records)
        collector_runs.append(run)
        log(
            f"collect_http: collector {run['records_per_s']:,.0f} records/s "
            f"(start-up {run['startup_seconds']:.2f} s, peak RSS "
            f"{run['peak_rss_bytes'] / 2**20:.0f} MB); sdk {result['records_per_s']:,.0f}/s"
        )

    best = max(collector_runs, key=lambda r: r["records_per_s"])
    best_sdk = max(r["records_per_s"] for _, r in sdk_runs)
    ratio = best["records_per_s"] / best_sdk
    peak_rss_mb = max(r["peak_rss_bytes"] for r in collector_runs) / 2**20
    figure = {
        "records": records,
        "batch_records": BATCH,
        "concurrent_connections": CONCURRENCY,
        "collector_records_per_s": round(best["records_per_s"]),
        "collector_seconds": round(best["seconds"], 2),
        "collector_startup_seconds": round(min(r["startup_seconds"] for r in collector_runs), 2),
        "sdk_records_per_s": round(best_sdk),
        "collector_vs_sdk": round(ratio, 3),
        "collector_peak_rss_mb": round(peak_rss_mb, 1),
        "collector_peak_vmhwm_mb": round(
            max(r["peak_hwm_bytes"] for r in collector_runs) / 2**20, 1
        ),
        "goals": {
            "collector_vs_sdk": {"goal": ">= 0.5", "met": ratio >= 0.5},
            "collector_peak_rss_mb": {"goal": "<= 200", "met": peak_rss_mb <= 200},
        },
        "met": ratio >= 0.5 and peak_rss_mb <= 200,
        "runs_collector_records_per_s": [round(r["records_per_s"]) for r in collector_runs],
        "runs_sdk_records_per_s": [round(r["records_per_s"]) for _, r in sdk_runs],
        "command": best["command"],
        "sdk_command": command_text(sdk_argv),
        "method": "collector: from the first POST until every batch is answered 200 (after "
        "Kafka's acknowledgement), start-up excluded and reported apart, "
        f"{CONCURRENCY} keep-alive connections; sdk: llm_call() of the same calls (decoded "
        "before the clock) and flush() in a fresh process; each run on a fresh topic; "
        f"alternated {rounds} rounds, best of each; RSS of the collector's process tree "
        "sampled every 100 ms",
    }
    log(
        f"collect_http: collector {figure['collector_records_per_s']:,}/s vs sdk "
        f"{figure['sdk_records_per_s']:,}/s ({figure['collector_vs_sdk']}x); peak RSS "
        f"{figure['collector_peak_rss_mb']} MB"
    )
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="collect http benchmark: the SDK side")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sdk", help="produce the bodies' calls with the SDK; JSON on stdout")
    s.add_argument("--bodies-file", type=Path, required=True)
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--policy", type=Path, required=True)
    s.add_argument("--prices", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(_sdk(args.bodies_file, args.bootstrap, args.topic, args.policy, args.prices)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
