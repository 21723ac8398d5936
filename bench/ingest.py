"""Consumer benchmarks: ``ingest`` (+ ``memory``) and ``scale_out``.

Figures (bench/run.py calls :func:`run_ingest` and :func:`run_scale_out`):

- ``ingest``: a topic of N pre-produced events is drained by one ``python -m pipeline.cli
  consume --max-events N`` subprocess (start-up included: interpreter, imports, group join,
  recovery); landed events/s = N / wall seconds, checked against the lake (every offset
  landed exactly once). Side by side, alternated ``--rounds`` times (the raw passes once
  more at the end), best run of each side compared:

  * ``default``: ``--kafka-client confluent`` (librdkafka, the default client);
  * ``kafka_python``: ``--kafka-client kafka-python`` (kafka-python's public API);
  * ``fast_path``: the consumer of the ``kafka-python-fast-path`` tag (kafka-python with
    modelmeter's own message decoding, which read kafka-python's internals), run from a
    ``git archive`` of the tag with this virtualenv;
  * ``raw_librdkafka`` / ``raw_kafka_python``: poll-only passes over the same topic with
    the consumer's fetch settings (``python bench/ingest.py raw --client ...``), records
    counted, nothing else.

  Goals: default >= fast_path, default >= 0.9 x raw_librdkafka, kafka_python >= 0.8 x
  raw_kafka_python.
- ``memory``: peak memory of those consumer runs (the process and its lake-writer child,
  sampled every 100 ms, and the kernel's VmHWM of each); goal <= 300 MB.
- ``scale_out``: the same topic drained by one consumer process, then by two in one group,
  each into a fresh lake; time until the group's committed offsets cover all N events; on
  both clients. goal: two >= 1.6x one.

Run one raw measurement by hand::

    .venv/bin/python bench/ingest.py raw --client confluent --bootstrap 127.0.0.1:PORT --topic T --events N
    .venv/bin/python bench/ingest.py raw --client kafka-python --bootstrap ... --topic T --events N
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import signal
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    FAST_PATH_TAG,
    PYTHON,
    REPO_ROOT,
    command_text,
    fast_path_tree,
    lake_counts,
    log,
    produce_events,
    run_timed,
    start_sampled,
)

__all__ = ["fill_topic", "run_ingest", "run_scale_out", "raw_rate"]

HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------------------------
# raw client rates (run as a subprocess: ``python bench/ingest.py raw ...``)
# --------------------------------------------------------------------------------------------


def _raw_kafka_python(bootstrap: str, topic: str, events: int) -> tuple[int, float]:
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.consumer import CONSUMER_DEFAULTS

    config = {k: v for k, v in CONSUMER_DEFAULTS.items() if k not in ("max_poll_interval_ms",)}
    started = time.perf_counter()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **config)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    count = 0
    deadline = time.monotonic() + 600
    while count < events and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            count += len(records)
    seconds = time.perf_counter() - started
    consumer.close()
    return count, seconds


def _raw_confluent(bootstrap: str, topic: str, events: int) -> tuple[int, float]:
    """librdkafka with the consumer's own settings (fetch sizes, pre-fetch queue) and batch
    size, partitions assigned from the beginning, messages counted."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from pipeline.consumer import CONSUMER_DEFAULTS
    from pipeline.consumer.clients import CONFLUENT_ONLY
    from pipeline.kafka_connect import confluent_config
    from pipeline.settings import Settings

    options = {k: v for k, v in CONSUMER_DEFAULTS.items() if k != "max_poll_records"}
    config = confluent_config(
        Settings(kafka_bootstrap_servers=bootstrap),
        {**options, **CONFLUENT_ONLY, "group_id": f"bench-raw-{uuid.uuid4().hex}"},
    )
    batch = CONSUMER_DEFAULTS["max_poll_records"]
    started = time.perf_counter()
    consumer = Consumer(config)
    meta = consumer.list_topics(topic, timeout=30)
    parts = [
        TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.topics[topic].partitions)
    ]
    consumer.assign(parts)
    count = 0
    deadline = time.monotonic() + 600
    while count < events and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=batch, timeout=1.0):
            if msg.error() is None:
                count += 1
    seconds = time.perf_counter() - started
    consumer.close()
    return count, seconds


def raw_argv(bootstrap: str, topic: str, events: int, client: str = "kafka-python") -> list[str]:
    return [
        PYTHON,
        str(HERE),
        "raw",
        "--client",
        client,
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--events",
        str(events),
    ]


def raw_rate(bootstrap: str, topic: str, events: int, client: str = "kafka-python") -> dict:
    """One raw poll-only pass over the topic, in a fresh process."""
    argv = raw_argv(bootstrap, topic, events, client)
    timed = run_timed(argv).check()
    result = json.loads(timed.stdout)
    if result["events"] < events:
        raise RuntimeError(f"raw {client} read only {result['events']} of {events} events")
    result["wall_seconds"] = round(timed.seconds, 3)
    result["cpu_seconds"] = round(timed.cpu_seconds, 2)
    result["command"] = timed.command
    return result


# --------------------------------------------------------------------------------------------
# topics and consumers
# --------------------------------------------------------------------------------------------


def fill_topic(settings, events: int, *, seed: int = 11) -> dict:
    """Create the topic (6 partitions) and pre-produce ``events`` valid events of yesterday."""
    import numpy as np

    from bench.gen_lake import Traffic, day_tables, to_json_values
    from pipeline.kafka_admin import ensure_topics

    ensure_topics(settings)
    traffic = Traffic.from_policy(settings.policy)
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    started = time.perf_counter()
    llm, fb, _, _ = day_tables(
        traffic, yesterday, events, np.random.default_rng(seed), id_prefix=f"k{seed}-"
    )
    messages = to_json_values(llm) + to_json_values(fb)
    # interleave calls and feedback as agents send them: by time
    times = np.concatenate([t.column("occurred_at").to_numpy().view("i8") for t in (llm, fb)])
    messages = [messages[i] for i in np.argsort(times, kind="stable")]
    made = time.perf_counter() - started
    mean_bytes = sum(len(v) for _, v in messages) / max(1, len(messages))
    seconds = produce_events(settings.kafka_bootstrap_servers, settings.topic, messages)
    log(
        f"pre-produced {len(messages):,} events ({mean_bytes:.0f} bytes each) to {settings.topic} "
        f"in {seconds:.1f} s (generated in {made:.1f} s)"
    )
    return {"events": len(messages), "mean_value_bytes": round(mean_bytes)}


def consume_argv(
    settings,
    *,
    group: str,
    lake: Path,
    max_events: int | None = None,
    until_idle: float | None = None,
    flush_seconds: float | None = None,
    client: str = "confluent",
) -> list[str]:
    """``python -m pipeline.cli consume ...``: the code of the working directory it runs in
    (the repository, or a copy of the fast-path tag)."""
    argv = [
        PYTHON,
        "-m",
        "pipeline.cli",
        "consume",
        "--bootstrap-servers",
        settings.kafka_bootstrap_servers,
        "--topic",
        settings.topic,
        "--lake",
        str(lake),
        "--group",
        group,
        "--progress-seconds",
        "0",
        "--kafka-client",
        client,
    ]
    if max_events is not None:
        argv += ["--max-events", str(max_events)]
    if until_idle is not None:
        argv += ["--until-idle", str(until_idle)]
    if flush_seconds is not None:
        argv += ["--flush-seconds", str(flush_seconds)]
    return argv


def _check_lake(lake: Path, events: int) -> dict:
    counts = lake_counts(lake)
    rows = counts["llm_call"] + counts["task_feedback"] + counts["_rejected"]
    if rows != events or counts["distinct_offsets"] != events:
        raise RuntimeError(
            f"lake {lake} holds {rows} rows / {counts['distinct_offsets']} distinct "
            f"offsets, expected {events}: {counts}"
        )
    return counts


def _memory(timed) -> dict:
    return {
        "peak_pss_mb": round(timed.peak_pss_bytes / 2**20, 1),
        "peak_rss_sum_mb": round(timed.peak_rss_bytes / 2**20, 1),
        "peak_vmhwm_mb_largest_process": round(timed.peak_hwm_bytes / 2**20, 1),
        "goal": "<= 300 MB",
        "met": timed.peak_pss_bytes <= 300 * 2**20,
        "command": timed.command,
    }


# the consumer sides of ``ingest``: (client, run from the fast-path tag's code)
SIDES = {
    "default": ("confluent", False),
    "kafka_python": ("kafka-python", False),
    "fast_path": ("kafka-python", True),
}


def _consume_once(settings, workdir: Path, events: int, side: str):
    client, old = SIDES[side]
    lake = workdir / f"lake-ingest-{side}-{uuid.uuid4().hex[:6]}"
    argv = consume_argv(
        settings,
        group=f"bench-ingest-{uuid.uuid4().hex[:6]}",
        lake=lake,
        max_events=events,
        client=client,
    )
    tree = fast_path_tree(workdir) if old else None
    log(f"ingest ({side}): {command_text(argv)}")
    timed = run_timed(argv, cwd=tree).check()
    command = timed.command
    if tree is not None:
        command = f"git archive {FAST_PATH_TAG} | tar -x -C OLD && cd OLD && {REPO_ROOT}/{command}"
    return timed, _check_lake(lake, events), command


def run_ingest(settings, workdir: Path, events: int, rounds: int = 2) -> tuple[dict, dict]:
    """The ``ingest`` and ``memory`` figures.

    ``rounds`` times: raw librdkafka, raw kafka-python, then ``modelmeter consume`` on the
    default client, on kafka-python, and the fast-path tag's consumer; then both raw passes
    once more. As for ``producer``, the best run of each side is compared: the other load
    of a shared machine only ever slows a run down. Memory is the highest peak of all runs
    of a side."""
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.topic
    raws: dict[str, list[dict]] = {"confluent": [], "kafka-python": []}
    runs: dict[str, list] = {side: [] for side in SIDES}
    for i in range(rounds + 1):
        for client in raws:
            log(f"ingest: raw {client} poll-only pass {i + 1} over {events:,} events")
            raws[client].append(raw_rate(bootstrap, topic, events, client))
        if i < rounds:
            for side in runs:
                runs[side].append(_consume_once(settings, workdir, events, side))
    best_raw = {
        client: max(results, key=lambda r: r["events_per_s"]) for client, results in raws.items()
    }
    raw = {client: best["events_per_s"] for client, best in best_raw.items()}

    def figure(side: str) -> dict:
        timed, counts, command = min(runs[side], key=lambda run: run[0].seconds)
        landed = events / timed.seconds
        raw_client = SIDES[side][0]
        return {
            "landed_events_per_s": round(landed),
            "consume_seconds": round(timed.seconds, 2),
            "runs_events_per_s": [round(events / t.seconds) for t, _, _ in runs[side]],
            f"ratio_to_raw_{raw_client.replace('-', '_')}": round(landed / raw[raw_client], 3),
            # CPU per event, start-up included (best runs): what a shared, busy machine
            # cannot blur; the wall-clock ratio is the goal
            "consume_cpu_seconds": round(timed.cpu_seconds, 2),
            "lake": {
                k: counts[k] for k in ("llm_call", "task_feedback", "_rejected", "distinct_offsets")
            },
            "command": command,
        }

    def memory_of(side: str) -> dict:
        timed, _, command = max(runs[side], key=lambda run: run[0].peak_pss_bytes)
        return {**_memory(timed), "command": command}

    figures = {side: figure(side) for side in SIDES}
    default, kp, fast = figures["default"], figures["kafka_python"], figures["fast_path"]
    vs_fast = default["landed_events_per_s"] / fast["landed_events_per_s"]
    goals = {
        "default >= fast_path": (round(vs_fast, 3), vs_fast >= 1.0),
        "default >= 0.9 x raw_librdkafka": (
            default["ratio_to_raw_confluent"],
            default["ratio_to_raw_confluent"] >= 0.9,
        ),
        "kafka_python >= 0.8 x raw_kafka_python": (
            kp["ratio_to_raw_kafka_python"],
            kp["ratio_to_raw_kafka_python"] >= 0.8,
        ),
    }
    ingest = {
        "events": events,
        "goals": {name: {"ratio": ratio, "met": met} for name, (ratio, met) in goals.items()},
        "met": all(met for _, met in goals.values()),
        "default": {**default, "kafka_client": "confluent (librdkafka, the default)"},
        "kafka_python": {**kp, "kafka_client": "kafka-python (public API)"},
        "fast_path": {
            **fast,
            "kafka_client": f"kafka-python with the {FAST_PATH_TAG} tag's "
            "own message decoding (its internals)",
        },
        "default_vs_fast_path": round(vs_fast, 3),
        "raw_librdkafka": {
            "events_per_s": raw["confluent"],
            "runs_events_per_s": [r["events_per_s"] for r in raws["confluent"]],
            "cpu_seconds": best_raw["confluent"]["cpu_seconds"],
            "command": best_raw["confluent"]["command"],
        },
        "raw_kafka_python": {
            "events_per_s": raw["kafka-python"],
            "runs_events_per_s": [r["events_per_s"] for r in raws["kafka-python"]],
            "cpu_seconds": best_raw["kafka-python"]["cpu_seconds"],
            "command": best_raw["kafka-python"]["command"],
        },
    }
    memory = {
        **memory_of("default"),
        "kafka_python": memory_of("kafka_python"),
        "fast_path": memory_of("fast_path"),
        "what": "modelmeter consume is two processes (poller + lake writer); peak_pss_mb is "
        "their summed PSS (shared library pages counted once), peak_rss_sum_mb their "
        "summed RSS (shared pages counted twice), sampled every 100 ms while draining "
        f"{events:,} events; the highest of the runs; the goal is judged on PSS",
    }
    log(
        f"ingest: raw librdkafka {raw['confluent']:,}/s, raw kafka-python "
        f"{raw['kafka-python']:,}/s; landed default {default['landed_events_per_s']:,}/s, "
        f"kafka-python {kp['landed_events_per_s']:,}/s, fast path "
        f"{fast['landed_events_per_s']:,}/s; goals {goals}"
    )
    return ingest, memory


def _committed(admin, group: str) -> int:
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except Exception:  # the group does not exist yet (the consumer is still starting)
        return 0
    return sum(max(0, meta.offset) for meta in offsets.values())


def _machine_cpu() -> tuple[int, int, int]:
    """(busy, iowait, total) jiffies of all cores since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return total - idle, fields[4], total


def _drain_with(
    settings,
    workdir: Path,
    events: int,
    consumers: int,
    client: str = "confluent",
    pinned: bool = False,
) -> dict:
    """Start ``consumers`` processes in one fresh group; seconds until all N are committed.

    ``pinned``: consumer i (poller and lake writer) runs on core i only (``taskset``)."""
    from kafka import KafkaAdminClient

    group = f"bench-scale{consumers}-{client}-{uuid.uuid4().hex[:6]}"
    lake = workdir / f"lake-{group}"
    # a short flush interval so that the last partial flushes commit promptly: the clock
    # stops at the last commit, and the default 10 s timer would dominate small runs
    argv = consume_argv(
        settings, group=group, lake=lake, until_idle=600, flush_seconds=1, client=client
    )
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.sync()  # see bench.common.run_timed
    busy0, wait0, total0 = _machine_cpu()
    started = time.perf_counter()
    argvs = [
        ["taskset", "-c", str(i % (os.cpu_count() or 1)), *argv] if pinned else argv
        for i in range(consumers)
    ]
    procs = [start_sampled(a)[0] for a in argvs]
    samples: list[tuple[float, int]] = []  # (seconds since start, committed events)
    try:
        done = 0
        deadline = time.monotonic() + 1800
        while done < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{consumers} consumers did not drain {events} events in time")
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"a consumer exited early ({proc.returncode}): "
                        f"{proc.stderr.read()[-2000:] if proc.stderr else ''}"
                    )
            time.sleep(0.2)
            done = _committed(admin, group)
            samples.append((time.perf_counter() - started, done))
        seconds = time.perf_counter() - started
        busy1, wait1, total1 = _machine_cpu()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.communicate(timeout=120)
            except Exception:
                proc.kill()
                proc.communicate()
        admin.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - rusage.ru_utime) + (after.ru_stime - rusage.ru_stime)
    _check_lake(lake, events)
    # steady state: committed events/s between the first samples at >= 25% and >= 75% of
    # the topic (start-up, group joins, the first rebalance and the last flushes left out)
    t_a, n_a = next(s for s in samples if s[1] >= events * 0.25)
    t_b, n_b = next(s for s in samples if s[1] >= events * 0.75)
    return {
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        # None when both thresholds fell in one sample (a topic drained in a blink)
        "steady_events_per_s": round((n_b - n_a) / (t_b - t_a)) if t_b > t_a else None,
        # consumers' own CPU (pollers + lake writers, the idle tail included) per event,
        # and how busy all cores were while draining (broker and everything else included)
        "consumer_cpu_us_per_event": round(cpu / events * 1e6, 2),
        "machine_cpu_busy": round((busy1 - busy0) / max(1, total1 - total0), 3),
        "machine_cpu_iowait": round((wait1 - wait0) / max(1, total1 - total0), 3),
        "command": (
            " & ".join(command_text(a) for a in argvs)
            if pinned
            else command_text(argv) + (f"  (x{consumers}, same group)" if consumers > 1 else "")
        ),
    }


def run_scale_out(settings, workdir: Path, events: int) -> dict:
    """One consumer vs two in one group, on the default client (librdkafka, the figure) and
    on kafka-python; and on the default client with each consumer held to one core of its
    own (``one_core_each``).

    One ``modelmeter consume`` is two processes (poller and lake writer) and already uses
    most of both cores here; ``one_core_each`` measures the group's scaling the goal has in
    mind, one core per consumer, without changing the consumer."""
    out: dict = {"events": events}
    for client, pinned in (("confluent", False), ("kafka-python", False), ("confluent", True)):
        label = f"{client}{', one core each' if pinned else ''}"
        log(f"scale_out ({label}): one consumer draining {events:,} events")
        one = _drain_with(settings, workdir, events, 1, client, pinned)
        log(f"scale_out ({label}): two consumers in one group draining {events:,} events")
        two = _drain_with(settings, workdir, events, 2, client, pinned)
        speedup = one["seconds"] / two["seconds"]
        steady = (
            round(two["steady_events_per_s"] / one["steady_events_per_s"], 2)
            if one["steady_events_per_s"] and two["steady_events_per_s"]
            else None
        )
        log(
            f"scale_out ({label}): one {one['events_per_s']:,}/s, two "
            f"{two['events_per_s']:,}/s ({speedup:.2f}x); steady state "
            f"{f'{steady}x' if steady else 'not measurable (drained too fast)'}"
        )
        result = {
            "one_consumer": one,
            "two_consumers": two,
            "speedup": round(speedup, 2),
            "met": speedup >= 1.6,
            "steady_state_speedup": steady,
        }
        if pinned:
            out["one_core_each"] = result
        elif client == "confluent":
            out.update(result)
        else:
            out["kafka_python"] = result
    out.update(
        {
            "goal": ">= 1.6x on 2 cores",
            "cpus": os.cpu_count(),
            "method": "fresh group and lake per run, --flush-seconds 1; speedup: seconds "
            "from process start until the group's committed offsets cover every "
            "event (the goal's figure); steady_state_speedup: committed events/s "
            "between 25% and 75% of the topic; the broker runs on the same 2 "
            "cores; one_core_each: consumer i pinned to core i (taskset), the "
            "broker not pinned",
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="raw poll-only consumption rate of a topic")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("raw")
    p.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--events", type=int, required=True)
    args = parser.parse_args(argv)
    fn = _raw_kafka_python if args.client == "kafka-python" else _raw_confluent
    count, seconds = fn(args.bootstrap, args.topic, args.events)
    print(
        json.dumps(
            {
                "client": args.client,
                "events": count,
                "seconds": round(seconds, 3),
                "events_per_s": round(count / seconds),
            }
        )
    )
    return 0 if count >= args.events else 1


if __name__ == "__main__":
    sys.exit(main())
