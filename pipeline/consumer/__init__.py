"""``modelmeter consume``: Kafka -> validated Parquet lake, exactly once under crashes.

Use it from the command line (``modelmeter consume --until-idle 5``) or in-process::

    from pipeline.consumer import Consumer
    stats = Consumer(settings, group="modelmeter-lake", max_events=1_000_000).run()
    print(stats.landed, stats.rejected)

How it works
------------
* The parent process polls Kafka (auto-commit off) with the client ``--kafka-client`` /
  ``MODELMETER_KAFKA_CLIENT`` names (:mod:`.clients`): librdkafka (``confluent``, the
  default), which fetches and decodes in C threads, or kafka-python. Each poll's raw
  messages go to the lake writer, by default a child process (:class:`SinkProcess`) so that
  validation and Parquet writing use the second core while the parent keeps fetching.
* Validation (:mod:`.validate`): a fast path on the whole batch (msgspec structs generated
  from the contract's field table decode and check each value in C, Arrow checks whole
  columns) accepts the obviously valid events; pydantic (:mod:`pipeline.contract`)
  decides every other message and gives the reason of a reject.
* Valid events are buffered per Kafka partition; invalid ones too, with their reason.
* A flush of partition ``p`` covering offsets ``[first, last]`` happens when the buffer holds
  ``--flush-events`` messages, when it is ``--flush-seconds`` old, when all buffers together
  exceed a memory bound, on revocation, and on stop. It writes one Parquet file per
  (table, day) touched, every one named ``<topic>+<p>+<first>+<last>.parquet``
  (temporary dot-name, fsync, rename, directory fsync), then sends the flush's rejects to
  ``<topic>.dlq`` (original key and value, headers ``error``, ``source_topic``,
  ``source_partition``, ``source_offset``) and waits for the acks, and only then commits
  ``last + 1``.

Crash safety
------------
Commits only follow complete, durable flushes, so after a crash at any moment the lake
holds, for each partition, complete flushes up to the committed offset ``C`` plus possibly
files of flushes at or after ``C`` whose commit never happened. When a partition is assigned
(at start-up and on every rebalance) :func:`recover_partition` deletes every lake file of that
partition with ``first_offset >= C`` and the partition's temporary files, and consumption
resumes at ``C``: the re-read offsets are written again, so every offset is in the lake
exactly once (count of distinct (partition, offset) = rows). With no committed offset the
lake itself gives the position (complete flushes are kept, see :mod:`.recovery`). On
revocation (a rebalance) the flushes already durable are committed, the writes under way are
waited for, and the rest of the buffer is dropped: the next owner re-reads it from the
committed offset. The lake writer process dies with its parent (PDEATHSIG), so no orphan
writes after a kill.

A producer retry (same ``event_id``) is a new Kafka message: it may land twice in the lake;
the warehouse staging models count each ``event_id`` once. The dead-letter topic is
at-least-once: a crash between the DLQ acks and the commit re-sends that flush's dead
letters, and a crash between writing a flush and its DLQ acks, before any commit, has that
flush's ``_rejected`` rows dead-lettered again on restart (:mod:`.recovery`);
``_rejected`` Parquet is exactly-once by the same file mechanism as the events. No message
stops the consumer: one the DLQ refuses gets a reduced dead letter (:mod:`.dead_letter`).

Static membership: ``--instance-id ID`` (``group_instance_id``; librdkafka
``group.instance.id``) lets a consumer
restarted after a crash take its partitions back at once; without it the group waits for the
dead member's session to expire (``session_timeout_ms``, 10 s). A static member does not
leave the group when it stops, so another consumer gets its partitions only after that
timeout: give each long-running consumer its own stable ID (e.g. the host name).

Stopping: ``--until-idle S`` (no message for S seconds, and the broker confirms that
nothing is left to read), ``--max-events N``, SIGTERM or SIGINT: flush, commit, exit 0. A
lake that cannot be written raises :class:`~pipeline.LakeWriteError` (nothing more is
committed, exit 1). A broker that goes away mid-run is waited for (both clients reconnect;
commits are retried); SIGTERM during an outage gives up on the final commit after 10 s of
retries (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
from typing import TYPE_CHECKING, Any

from pipeline._exceptions import ConfigError
from pipeline.consumer.batches import Flushed, RawBatch
from pipeline.consumer.loop import (
    CONSUMER_DEFAULTS,
    Consumer,
    ConsumerStats,
    install_signal_handlers,
)
from pipeline.consumer.sink_process import SinkProcess
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.consumer.recovery import Recovery, recover_partition
    from pipeline.consumer.sink import Sink
    from pipeline.consumer.validate import BatchResult, Reject, validate_batch

# the lake writer's parts import pyarrow and the event models: loaded on first use, so that
# `modelmeter consume` leaves them to its writer process (see pipeline.consumer.batches)
_LAZY = {
    "Sink": "sink",
    "Recovery": "recovery",
    "recover_partition": "recovery",
    "validate_batch": "validate",
    "BatchResult": "validate",
    "Reject": "validate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"pipeline.consumer.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "run_cli",
    "Consumer",
    "ConsumerStats",
    "CONSUMER_DEFAULTS",
    "Sink",
    "SinkProcess",
    "RawBatch",
    "Flushed",
    "Recovery",
    "recover_partition",
    "validate_batch",
    "BatchResult",
    "Reject",
]


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    """``modelmeter consume``."""
    for option, value, minimum in (
        ("--until-idle", args.until_idle, 0),
        ("--max-events", args.max_events, 1),
        ("--flush-events", args.flush_events, 1),
        ("--flush-seconds", args.flush_seconds, 0),
        ("--progress-seconds", args.progress_seconds, 0),
    ):
        if value is not None and value < minimum:
            raise ConfigError(f"{option} must be >= {minimum}, got {value}")
    if not args.group:
        raise ConfigError("--group must not be empty")
    instance_id = getattr(args, "instance_id", None)
    if instance_id is not None and not instance_id.strip():
        raise ConfigError("--instance-id must not be empty")
    extra = {"group_instance_id": instance_id} if instance_id else {}
    consumer = Consumer(
        settings,
        group=args.group,
        flush_events=args.flush_events,
        flush_seconds=args.flush_seconds,
        progress_seconds=args.progress_seconds,
        max_events=args.max_events,
        until_idle=args.until_idle,
        **extra,
    )
    install_signal_handlers(consumer)
    from pipeline.metrics import serve_metrics

    settings.apply_umask()  # lake files: no access for others (MODELMETER_UMASK, default 027)
    with serve_metrics(settings, consumer.stats):
        consumer.run()
    return 0
