"""What the consumer loop needs of a Kafka client, and what both clients share.

``MODELMETER_KAFKA_CLIENT`` picks one (:func:`pipeline.consumer.loop.open_client`):
``confluent`` (:mod:`.librdkafka_client`, the default: fetching and decoding run in C
threads outside the GIL) or ``kafka-python`` (:mod:`.kafka_python_client`). A client offers the loop what both libraries offer publicly, and nothing
else::

    client = open_client(settings, group, config, stopping)  # stopping: threading.Event
    client.subscribe(on_assign, on_revoke)   # on_assign(partitions); on_revoke(partitions, lost)
    batch = client.poll(limit, timeout)      # RawBatch, or None; the callbacks run in here
    client.pause(partitions)                 # assigned, not to be fetched yet
    client.committed(partitions)             # {partition: committed offset or None}
    client.start({partition: offset})        # fetch from there (None: the beginning)
    client.commit({partition: next_offset})  # False: refused, the partition moved
    client.highwater(partition)              # for the lag
    client.watermarks(partitions, 5.0)       # asked of the broker: is --until-idle really idle?
    client.close()

What happens on a rebalance is the consumer loop's business (:mod:`.loop`), written once for
both clients. The callbacks run while the loop is inside :meth:`ConsumerClient.poll` (or
:meth:`~ConsumerClient.close`). librdkafka calls them in the polling thread and allows
blocking calls there (``callbacks_may_block``): the loop starts an assigned partition inside
the callback, and :meth:`ConfluentClient.start` is the assignment itself, with the offsets
(librdkafka refuses a seek on a partition it is still setting up). kafka-python 3.x calls them
on its own I/O thread, where a blocking consumer call is refused: the loop pauses the
partitions there and starts them after the poll (``seek``, ``resume``); a commit asked for
inside a callback is sent without waiting for the answer (it goes out ahead of the group
rejoin, see :class:`~.kafka_python_client.KafkaPythonClient`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipeline._exceptions import KafkaUnavailableError
from pipeline.consumer.batches import RawBatch

__all__ = [
    "ATTEMPT_MS",
    "CONFLUENT_ONLY",
    "CONSUMER_DEFAULTS",
    "ConsumerClient",
    "describe_error",
    "keep_from",
    "make_batch",
    "OnAssign",
    "OnRevoke",
]

log = logging.getLogger(__name__)

OnAssign = Callable[[list[int]], None]
OnRevoke = Callable[[list[int], bool], None]  # (partitions, lost)

# Consumer settings in kafka-python names (librdkafka gets the same through
# pipeline.kafka_config.confluent_config): large fetches, few round trips; memory stays
# bounded because a poll never returns more than max_poll_records and the sink flushes by size.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "max_poll_records": 5000,
    "fetch_max_bytes": 8 * 1024 * 1024,
    "max_partition_fetch_bytes": 1024 * 1024,
    "fetch_max_wait_ms": 200,
    "max_poll_interval_ms": 300_000,
    "metadata_max_age_ms": 60_000,
    # a SIGKILLed member blocks its group's next rebalance until its session expires: keep
    # that short so that a restarted consumer resumes within seconds
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 2_000,
}

# librdkafka only: its pre-fetch queue (default 64 MiB) counts against the consumer's memory
# goal (<= 300 MB); 8 MiB still keeps several polls' worth of messages ready.
CONFLUENT_ONLY: dict[str, Any] = {
    "queued.max.messages.kbytes": 8 * 1024,
    "isolation.level": "read_uncommitted",  # as kafka-python
    "enable.partition.eof": False,
    # a full pre-fetch queue pauses fetching for fetch.queue.backoff.ms (default 1 s), longer
    # than the lake writer needs to drain the queue: the poller would starve meanwhile
    "fetch.queue.backoff.ms": 20,
}

# one attempt of a commit or committed-offset fetch: short, so that _Backoff decides how long
# to go on (kafka-python would otherwise block for request_timeout_ms, 30 s, per attempt)
ATTEMPT_MS = 5_000


class _Backoff:
    """How both clients wait while the broker or the group coordinator is away.

    Commits and committed-offset fetches are retried with a doubling pause (0.2 s up to 5 s)
    until they succeed: a broker restart must not stop the consumer. Once a stop was
    requested (SIGTERM during an outage) retrying ends after ``STOP_GRACE_S`` with
    :class:`KafkaUnavailableError` (exit 2); the uncommitted lake files are recovered on the
    next start.
    """

    STOP_GRACE_S = 10.0

    def __init__(self, what: str, stopping: threading.Event) -> None:
        self.what = what
        self.stopping = stopping
        self.delay = 0.2
        self.stop_deadline: float | None = None

    def pause(self, exc: BaseException) -> float:
        """Seconds to wait before the next attempt after ``exc``; raises
        :class:`KafkaUnavailableError` when it is time to give up."""
        if self.stopping.is_set():
            now = time.monotonic()
            if self.stop_deadline is None:
                self.stop_deadline = now + self.STOP_GRACE_S
            if now >= self.stop_deadline:
                raise KafkaUnavailableError(
                    f"{self.what} failed while stopping: Kafka still unreachable after"
                    f" {self.STOP_GRACE_S:g} s ({describe_error(exc)}); the uncommitted lake files"
                    " are recovered on the next start"
                ) from exc
        log.warning(
            "%s failed (%s); retrying in %.1f s", self.what, describe_error(exc), self.delay
        )
        delay = self.delay
        self.delay = min(delay * 2, 5.0)
        return delay


def describe_error(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if args and hasattr(args[0], "name"):  # confluent_kafka.KafkaException(KafkaError)
        return str(args[0].name())
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def make_batch(
    by_partition: Iterable[tuple[int, Sequence[int], Sequence[Any], Sequence[Any]]],
) -> RawBatch | None:
    """One RawBatch from per-partition (partition, offsets, keys, values); None if empty."""
    partitions: list[int] = []
    offsets: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    segments = []
    for partition, offs, ks, vs in by_partition:
        if not offs:
            continue
        start = len(offsets)
        partitions += [partition] * len(offs)
        offsets += offs
        keys += ks
        values += vs
        segments.append((partition, start, len(offsets)))
    if not offsets:
        return None
    return RawBatch(partitions, offsets, keys, values, dt.datetime.now(dt.UTC), segments)


def keep_from(batch: RawBatch, start: dict[int, int | None]) -> RawBatch | None:
    """``batch`` without the messages of partitions not in ``start`` and those before
    ``start[partition]`` (None: any offset). The libraries drop what they fetched before a
    seek or a revocation; this makes sure of it. ``batch`` itself when nothing is dropped."""
    keep = []
    changed = False
    for partition, begin, end in batch.segments:
        if partition not in start:
            changed = True
            continue
        first = start[partition]
        if first is not None and batch.offsets[begin] < first:
            changed = True
            begin = bisect.bisect_left(batch.offsets, first, begin, end)
        keep.append(
            (partition, batch.offsets[begin:end], batch.keys[begin:end], batch.values[begin:end])
        )
    if not changed:
        return batch
    return make_batch(keep)


class ConsumerClient:
    """What the consumer loop needs of a Kafka client (see the module docstring)."""

    topic: str
    # may on_assign make blocking consumer calls (committed, commit, start) inside the
    # library's callback? Else the loop pauses the partitions and starts them after the poll
    callbacks_may_block = False

    def subscribe(self, on_assign: OnAssign, on_revoke: OnRevoke) -> None:
        raise NotImplementedError

    def poll(self, limit: int, timeout: float) -> RawBatch | None:
        raise NotImplementedError

    def pause(self, partitions: list[int]) -> None:
        raise NotImplementedError

    def committed(self, partitions: list[int]) -> dict[int, int | None]:
        raise NotImplementedError

    def start(self, positions: dict[int, int | None]) -> None:
        """Fetch the assigned ``positions``' partitions from these offsets (None: from the
        beginning), paused or not."""
        raise NotImplementedError

    def commit(self, offsets: dict[int, int]) -> bool:
        raise NotImplementedError

    def highwater(self, partition: int) -> int | None:
        raise NotImplementedError

    def watermarks(
        self, partitions: list[int], timeout: float
    ) -> dict[int, tuple[int, int]] | None:
        """partition -> (first, next) offset, asked of the broker now; None when it does not
        answer within ``timeout`` seconds."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping

    def _transient(self, exc: BaseException) -> bool:
        """Is ``exc`` a broker or group coordinator that is away for a while?"""
        raise NotImplementedError

    def _retrying(self, what: str, call: Callable[[], Any]) -> Any:
        """``call()``, retried (:class:`_Backoff`) while :meth:`_transient` says the broker or
        the group coordinator is away; other errors are raised."""
        backoff = _Backoff(what, self.stopping)
        while True:
            try:
                return call()
            except Exception as exc:
                if not self._transient(exc):
                    raise
                time.sleep(backoff.pause(exc))
