"""The Kafka client under :class:`~pipeline.consumer.Consumer`: kafka-python or librdkafka.

``MODELMETER_KAFKA_CLIENT`` picks one (:func:`open_client`); both offer the loop the same
six calls and the same guarantees::

    client = open_client(consumer)     # created, subscribed, rebalance callbacks wired
    batch = client.poll(limit, 1.0)    # RawBatch of the partitions we own, or None
    client.commit({partition: next_offset})   # False: refused, the partition moved
    client.highwater(partition)        # for the lag
    client.watermarks(partitions, 5.0) # asked of the broker: is --until-idle really idle?
    client.close()

- ``kafka-python`` (default): pure Python. Its rebalance listener runs on kafka-python's
  network thread as coroutines (:class:`_Rebalance`). Its per-message decoding is replaced
  by :mod:`.fast_records` (offset, key and value only): half the poller's CPU per event.
- ``confluent`` (librdkafka, the optional ``confluent-kafka`` package): fetching and record
  decoding run in C threads outside the GIL, ~4x kafka-python's raw rate here (``make
  bench``, ``confluent_raw``). Its rebalance callbacks run inside ``consume()`` in the
  poller's thread, where blocking is allowed.

What happens on a rebalance is the consumer's business, not the client's: on revocation
:meth:`Consumer._revoke_begin` / ``_offsets`` / ``_committed`` / ``_revoke_end``, on assignment
:meth:`Consumer._recover` per partition; the clients only do the Kafka calls in between.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

from pipeline._exceptions import KafkaError, KafkaUnavailableError
from pipeline.consumer import fast_records
from pipeline.consumer.batches import RawBatch

if TYPE_CHECKING:
    from pipeline.consumer.loop import Consumer

__all__ = ["CONSUMER_DEFAULTS", "ConsumerClient", "KafkaPythonClient", "ConfluentClient",
           "open_client"]

log = logging.getLogger(__name__)

# Consumer settings in kafka-python names (librdkafka gets the same through
# pipeline.kafka_connect.confluent_config): large fetches, few round trips; memory stays
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
# goal (issue 9: <= 300 MB); 8 MiB still keeps several polls' worth of messages ready.
_CONFLUENT_ONLY: dict[str, Any] = {
    "queued.max.messages.kbytes": 8 * 1024,
    "isolation.level": "read_uncommitted",  # as kafka-python
    "enable.partition.eof": False,
    # a full pre-fetch queue pauses fetching for fetch.queue.backoff.ms (default 1 s), longer
    # than the lake writer needs to drain the queue: the poller then starved for ~0.85 s a time
    "fetch.queue.backoff.ms": 20,
}


def _transient_codes() -> frozenset[int]:
    """librdkafka error codes of a broker or coordinator that is away for a while."""
    from confluent_kafka import KafkaError as CKError

    return frozenset((CKError._TRANSPORT, CKError._TIMED_OUT, CKError._WAIT_COORD,
                      CKError._ALL_BROKERS_DOWN, CKError.COORDINATOR_NOT_AVAILABLE,
                      CKError.NOT_COORDINATOR, CKError.COORDINATOR_LOAD_IN_PROGRESS,
                      CKError.REQUEST_TIMED_OUT, CKError.NETWORK_EXCEPTION))


# one attempt of a commit or committed-offset fetch: short, so that _Backoff decides how long
# to go on (kafka-python would otherwise block for request_timeout_ms, 30 s, per attempt)
_ATTEMPT_MS = 5_000


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
                    f" {self.STOP_GRACE_S:g} s ({_describe(exc)}); the uncommitted lake files"
                    " are recovered on the next start") from exc
        log.warning("%s failed (%s); retrying in %.1f s", self.what, _describe(exc), self.delay)
        delay = self.delay
        self.delay = min(delay * 2, 5.0)
        return delay


def _describe(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if args and hasattr(args[0], "name"):  # confluent_kafka.KafkaException(KafkaError)
        return str(args[0].name())
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


class ConsumerClient:
    """What the consumer loop needs of a Kafka client (see the module docstring)."""

    def poll(self, limit: int, timeout: float) -> RawBatch | None:
        raise NotImplementedError

    def commit(self, offsets: dict[int, int]) -> bool:
        raise NotImplementedError

    def highwater(self, partition: int) -> int | None:
        raise NotImplementedError

    def watermarks(self, partitions: list[int], timeout: float) -> dict[int, tuple[int, int]] | None:
        """partition -> (first, next) offset, asked of the broker now; None when it does not
        answer within ``timeout`` seconds."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    owner: Consumer

    def _transient(self, exc: BaseException) -> bool:
        """Is ``exc`` a broker or group coordinator that is away for a while?"""
        raise NotImplementedError

    def _retrying(self, what: str, call: Any) -> Any:
        """``call()``, retried (:class:`_Backoff`) while :meth:`_transient` says the broker or
        the group coordinator is away; other errors are raised."""
        backoff = _Backoff(what, self.owner._stop)
        while True:
            try:
                return call()
            except Exception as exc:
                if not self._transient(exc):
                    raise
                time.sleep(backoff.pause(exc))


def open_client(owner: Consumer) -> ConsumerClient:
    """The client ``owner.settings.kafka_client`` names, subscribed to the topic."""
    if owner.settings.kafka_client == "confluent":
        return ConfluentClient(owner)
    return KafkaPythonClient(owner)


def _batch(by_partition: Iterable[tuple[int, Sequence[int], Sequence[Any], Sequence[Any]]]
           ) -> RawBatch | None:
    """One RawBatch from per-partition (partition, offsets, keys, values)."""
    partitions: list[int] = []
    offsets: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    segments = []
    for partition, offs, ks, vs in by_partition:
        start = len(offsets)
        partitions += [partition] * len(offs)
        offsets += offs
        keys += ks
        values += vs
        segments.append((partition, start, len(offsets)))
    if not offsets:
        return None
    return RawBatch(partitions, offsets, keys, values, dt.datetime.now(dt.UTC), segments)


# -- kafka-python ------------------------------------------------------------------------------

class _Rebalance(AsyncConsumerRebalanceListener):
    """kafka-python 3 runs listeners on its network thread, where blocking consumer calls are
    refused; the coroutine variants are awaited there instead, and the blocking flush runs
    in a helper thread so that heartbeats go on."""

    def __init__(self, client: KafkaPythonClient) -> None:
        self.client = client

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self.client._on_revoked(list(revoked), commit=True)

    async def on_partitions_lost(self, lost: Iterable[Any]) -> None:
        await self.client._on_revoked(list(lost), commit=False)

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        await self.client._on_assigned(list(assigned))


class KafkaPythonClient(ConsumerClient):
    """kafka-python (``enable_auto_commit=False``), the default."""

    def __init__(self, owner: Consumer) -> None:
        from kafka import KafkaConsumer

        from pipeline.kafka_connect import create_client

        self.owner = owner
        self.topic = owner.settings.topic
        self._consumer = create_client(KafkaConsumer, owner.settings, group_id=owner.group,
                                       client_id="modelmeter-consume", **owner.consumer_config)
        self._poll_failing = False
        try:
            fast_records.install(self._consumer)  # poll() gives (offset, key, value) tuples
            self._consumer.subscribe([self.topic], listener=_Rebalance(self))
            self._wait_for_topic_metadata()
        except BaseException:
            self._consumer.close(autocommit=False)
            raise

    def poll(self, limit: int, timeout: float) -> RawBatch | None:
        try:
            records = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=limit)
        except Exception as exc:
            if not self._transient(exc):
                raise
            # kafka-python 3.0.12 lets a failed metadata refresh escape while it looks for
            # the group coordinator (broker restarting): the next poll tries again
            if not self._poll_failing:
                log.warning("poll failed (%s); retrying until the broker is back",
                            _describe(exc))
            self._poll_failing = True
            time.sleep(min(timeout, 0.2))
            return None
        self._poll_failing = False
        if not records:
            return None
        return _batch((tp.partition, *zip(*recs, strict=True)) for tp, recs in records.items() if recs)

    def commit(self, offsets: dict[int, int]) -> bool:
        try:
            self._retrying("commit", lambda: self._consumer.commit(
                self._kafka_offsets(offsets), timeout_ms=_ATTEMPT_MS))
        except self._membership_errors() as exc:
            log.warning("commit refused after a rebalance (%s); the new owner re-reads %s",
                        type(exc).__name__, sorted(offsets))
            return False
        return True

    def highwater(self, partition: int) -> int | None:
        from kafka.structs import TopicPartition

        hw: int | None = self._consumer.highwater(TopicPartition(self.topic, partition))
        return hw

    def watermarks(self, partitions: list[int], timeout: float) -> dict[int, tuple[int, int]] | None:
        import kafka.errors as ke
        from kafka.structs import TopicPartition

        tps = [TopicPartition(self.topic, p) for p in partitions]
        try:
            low = self._consumer.beginning_offsets(tps, timeout_ms=int(timeout * 1000))
            high = self._consumer.end_offsets(tps, timeout_ms=int(timeout * 1000))
        except ke.KafkaError as exc:
            log.debug("watermarks: %s", _describe(exc))
            return None
        return {tp.partition: (low[tp], high[tp]) for tp in tps}

    def close(self) -> None:
        self._consumer.close(autocommit=False, timeout_ms=_ATTEMPT_MS)

    def _kafka_offsets(self, offsets: dict[int, int]) -> dict[Any, Any]:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        return {TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                for p, o in offsets.items()}

    @staticmethod
    def _membership_errors() -> tuple[type[BaseException], ...]:
        import kafka.errors as ke

        return (ke.CommitFailedError, ke.IllegalGenerationError, ke.UnknownMemberIdError,
                ke.RebalanceInProgressError, ke.FencedInstanceIdError)

    def _transient(self, exc: BaseException) -> bool:
        # kafka-python's own retries give up when a metadata refresh fails while the broker
        # restarts (KafkaConnectionError); membership errors are not retriable ones
        import kafka.errors as ke

        return isinstance(exc, ke.RetriableError)

    async def _retrying_async(self, what: str, call: Any) -> Any:
        """:meth:`_retrying` for coroutines on kafka-python's network thread."""
        backoff = _Backoff(what, self.owner._stop)
        while True:
            try:
                return await call()
            except Exception as exc:
                if not self._transient(exc):
                    raise
                await self._consumer._coordinator._net.sleep(backoff.pause(exc))

    # -- rebalances (run on kafka-python's network thread) ----------------------------------
    async def _in_thread(self, fn: Any) -> Any:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc

        helper = threading.Thread(target=target, name="modelmeter-rebalance-flush")
        helper.start()
        net = self._consumer._coordinator._net
        while helper.is_alive():
            await net.sleep(0.01)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    async def _commit_async(self, offsets: dict[int, int]) -> None:
        await self._retrying_async("commit", lambda: (
            self._consumer._coordinator._commit_offsets_sync_async(
                self._kafka_offsets(offsets), timeout_ms=_ATTEMPT_MS)))

    async def _on_revoked(self, revoked: list[Any], *, commit: bool) -> None:
        """Give partitions up (see :meth:`Consumer._revoke_begin`).

        A long listener makes kafka-python 3.0.12 lose track of the rebalance when the poll
        timeout expires meanwhile (the consumer then never gets its partitions back), so this
        only waits for the writes already under way.
        """
        owner = self.owner
        partitions = [tp.partition for tp in revoked if tp.topic == self.topic]
        sink = owner._revoke_begin(partitions)
        if sink is None:
            return
        try:
            # barrier: the writer finishes what it was doing, so no file of these
            # partitions appears after the new owner's recovery
            flushed = await self._in_thread(lambda: sink.flush([]))
            offsets = owner._offsets(flushed)
            if commit and offsets and owner._fatal is None:
                await self._commit_async(offsets)
                owner._committed(offsets)
        except self._membership_errors() as exc:
            log.warning("commit on revocation refused (%s); the new owner re-reads", exc)
        except BaseException as exc:  # kafka-python would only log it: keep it for the loop
            log.error("giving partitions up failed: %s", exc)
            owner._fatal = exc
        finally:
            owner._revoke_end(partitions)

    async def _on_assigned(self, assigned: list[Any]) -> None:
        owner = self.owner
        mine = [tp for tp in assigned if tp.topic == self.topic]
        if not owner._assign_begin(mine):
            return
        try:
            committed = await self._retrying_async(
                "fetching committed offsets",
                lambda: self._consumer._coordinator.fetch_committed_offsets_async(
                    mine, timeout_ms=_ATTEMPT_MS))
            for tp in mine:
                offset = committed[tp].offset if tp in committed else None
                position, commit_to = owner._recover(tp.partition, offset)
                # always seek: after a rebalance kafka-python keeps its in-memory position,
                # which is past the messages dropped on revocation
                if position is None:
                    self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, position)
                if commit_to is not None:
                    await self._commit_async({tp.partition: commit_to})
                owner._assigned_one(tp.partition, commit_to if commit_to is not None else offset)
        except BaseException as exc:
            log.error("recovery on assignment failed: %s", exc)
            owner._fatal = exc

    def _wait_for_topic_metadata(self, timeout_s: float = 30.0) -> None:
        """Fetch the subscribed topic's metadata (blocking) before the first poll joins the group.

        kafka-python's coordinator remembers the partitions of the subscribed topics as of the
        last metadata response. ``subscribe()`` only *requests* an update, so a join that wins
        the race against that response makes the leader assign from an empty snapshot; the
        response then differs from it and the consumer rebalances again right after its first
        assignment (the messages read meanwhile are dropped and re-read). A blocking metadata
        fetch after ``subscribe()`` makes the snapshot current before the join. A group leader
        without the topic's partitions would also assign nothing until the next refresh.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            # topics() always asks the broker (blocking) and updates the coordinator's snapshot
            if (self.topic in self._consumer.topics()
                    and self._consumer.partitions_for_topic(self.topic)):
                return
            if time.monotonic() > deadline:
                raise KafkaError(f"topic {self.topic} has no partitions after {timeout_s:g} s")
            time.sleep(0.2)


# -- confluent-kafka (librdkafka) ----------------------------------------------------------------

class ConfluentClient(ConsumerClient):
    """librdkafka through confluent-kafka, the optional fast client.

    Rebalance callbacks run inside :meth:`poll` (``consume()``) in the poller's thread.
    librdkafka may hand out, in the same ``consume()`` call, messages it fetched before a
    revocation; :meth:`poll` keeps only messages of partitions we own, from the position
    set at their assignment on (``_next``), so a dropped buffer is never half re-added.
    """

    def __init__(self, owner: Consumer) -> None:
        from pipeline.kafka_connect import create_confluent_consumer

        self.owner = owner
        self.topic = owner.settings.topic
        options = {k: v for k, v in owner.consumer_config.items() if k != "max_poll_records"}
        self._consumer = create_confluent_consumer(owner.settings, {
            **options, **_CONFLUENT_ONLY, "group_id": owner.group,
            "client_id": "modelmeter-consume"})
        self._next: dict[int, int | None] = {}  # partition -> first offset we may accept
        try:
            self._consumer.subscribe([self.topic], on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_lost)
        except BaseException:
            self._consumer.close()
            raise

    def poll(self, limit: int, timeout: float) -> RawBatch | None:
        messages = self._consumer.consume(num_messages=limit, timeout=timeout)
        if not messages:
            return None
        parts: dict[int, tuple[list[int], list[Any], list[Any]]] = {}
        next_offset = self._next
        for m in messages:
            if m.error() is not None:
                self._message_error(m.error())
                continue
            p = m.partition()
            if p not in next_offset:
                continue  # fetched before its revocation
            part = parts.get(p)
            if part is None:
                part = parts[p] = ([], [], [])
            offset = m.offset()
            start = next_offset[p]
            if start is not None and offset < start:
                continue  # fetched before a re-assignment moved the position back
            part[0].append(offset)
            part[1].append(m.key())
            part[2].append(m.value())
        for p, (offs, _, _) in parts.items():
            if offs:
                next_offset[p] = offs[-1] + 1
        return _batch(((p, *cols) for p, cols in parts.items() if cols[0]))

    def commit(self, offsets: dict[int, int]) -> bool:
        from confluent_kafka import KafkaException, TopicPartition

        tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
        try:
            result = self._retrying("commit", lambda: self._consumer.commit(
                offsets=tps, asynchronous=False))
        except KafkaException as exc:
            error = exc.args[0]
            if self._membership_error(error):
                log.warning("commit refused after a rebalance (%s); the new owner re-reads %s",
                            error.name(), sorted(offsets))
                return False
            raise KafkaError(f"commit failed: {error.name()}: {error.str()}") from None
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            raise KafkaError(f"commit failed for partition {failed[0].partition}: "
                             f"{failed[0].error}")
        return True

    def _transient(self, exc: BaseException) -> bool:
        from confluent_kafka import KafkaException

        if not isinstance(exc, KafkaException):
            return False
        error = exc.args[0]
        return not error.fatal() and (error.retriable() or error.code() in _transient_codes())

    def highwater(self, partition: int) -> int | None:
        from confluent_kafka import TopicPartition

        _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                       cached=True)
        return high if high is not None and high >= 0 else None

    def watermarks(self, partitions: list[int], timeout: float) -> dict[int, tuple[int, int]] | None:
        from confluent_kafka import KafkaException, TopicPartition

        marks = {}
        deadline = time.monotonic() + timeout
        for p in partitions:
            try:
                mark = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=max(0.1, deadline - time.monotonic()),
                    cached=False)
            except KafkaException as exc:
                log.debug("watermarks: %s", _describe(exc))
                return None
            if mark is None:
                return None
            marks[p] = (mark[0], mark[1])
        return marks

    def close(self) -> None:
        self._consumer.close()

    @staticmethod
    def _membership_error(error: Any) -> bool:
        from confluent_kafka import KafkaError as CKError

        return error.code() in (CKError.ILLEGAL_GENERATION, CKError.UNKNOWN_MEMBER_ID,
                                CKError.REBALANCE_IN_PROGRESS, CKError.FENCED_INSTANCE_ID,
                                CKError._ASSIGNMENT_LOST, CKError._STATE)

    @staticmethod
    def _message_error(error: Any) -> None:
        if error.fatal():
            raise KafkaError(f"Kafka consumer failed: {error.name()}: {error.str()}")
        log.warning("Kafka consumer: %s: %s", error.name(), error.str())

    # -- rebalances (run inside consume(), in the poller's thread) --------------------------
    def _on_revoke(self, consumer: Any, revoked: list[Any], commit: bool = True) -> None:
        owner = self.owner
        partitions = [tp.partition for tp in revoked if tp.topic == self.topic]
        for p in partitions:
            self._next.pop(p, None)
        sink = owner._revoke_begin(partitions)
        if sink is None:
            return
        try:
            # barrier: the writer finishes what it was doing (see KafkaPythonClient)
            offsets = owner._offsets(sink.flush([]))
            if commit and offsets and owner._fatal is None and self.commit(offsets):
                owner._committed(offsets)
        except BaseException as exc:  # raised by the loop, after the rebalance
            log.error("giving partitions up failed: %s", exc)
            owner._fatal = exc
        finally:
            owner._revoke_end(partitions)

    def _on_lost(self, consumer: Any, lost: list[Any]) -> None:
        self._on_revoke(consumer, lost, commit=False)

    def _on_assign(self, consumer: Any, assigned: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        owner = self.owner
        mine = [tp for tp in assigned if tp.topic == self.topic]
        if not owner._assign_begin(mine):
            return
        try:
            committed = self._retrying("fetching committed offsets", lambda: consumer.committed(
                [TopicPartition(self.topic, tp.partition) for tp in mine], timeout=30))
            start = []
            for tp in committed:
                offset = tp.offset if tp.offset >= 0 else None
                position, commit_to = owner._recover(tp.partition, offset)
                start.append(TopicPartition(self.topic, tp.partition,
                                            OFFSET_BEGINNING if position is None else position))
                if commit_to is not None and not self.commit({tp.partition: commit_to}):
                    raise KafkaError(f"partition {tp.partition} moved during its assignment")
                self._next[tp.partition] = position
                owner._assigned_one(tp.partition, commit_to if commit_to is not None else offset)
            consumer.assign(start)
        except BaseException as exc:
            log.error("recovery on assignment failed: %s", exc)
            owner._fatal = exc
