"""The kafka-python consumer client, public API only (``MODELMETER_KAFKA_CLIENT=kafka-python``).
kafka-python 3 calls rebalance listeners on its I/O thread, where blocking consumer calls are
refused (see :mod:`.clients` for what the loop does about it)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from pipeline._exceptions import KafkaError
from pipeline.consumer.batches import RawBatch
from pipeline.consumer.clients import (
    ATTEMPT_MS,
    ConsumerClient,
    OnAssign,
    OnRevoke,
    describe_error,
    make_batch,
)
from pipeline.settings import Settings

__all__ = ["KafkaPythonClient"]

log = logging.getLogger(__name__)


class KafkaPythonClient(ConsumerClient):
    """kafka-python's ``KafkaConsumer`` (``enable_auto_commit=False``), public API only.

    Rebalance callbacks go through a :class:`kafka.ConsumerRebalanceListener`; kafka-python 3
    calls it on its I/O thread, where blocking consumer calls are refused. A commit asked for
    there (the revocation's commit of what is durable) goes out with ``commit_async``: it is
    sent before the rejoin of the group, so the broker takes it while the partitions are still
    ours, or refuses it; either way the lake stays exactly-once (the next owner's recovery
    deletes what was not committed).
    """

    def __init__(
        self, settings: Settings, group: str, config: dict[str, Any], stopping: threading.Event
    ) -> None:
        from kafka import KafkaConsumer

        from pipeline.kafka_connect import create_client

        super().__init__(stopping)
        self.topic = settings.topic
        self._poller = threading.current_thread()
        self._consumer = create_client(
            KafkaConsumer, settings, group_id=group, client_id="modelmeter-consume", **config
        )
        self._poll_failing = False

    def _tp(self, partition: int) -> Any:
        from kafka import TopicPartition

        return TopicPartition(self.topic, partition)

    def subscribe(self, on_assign: OnAssign, on_revoke: OnRevoke) -> None:
        from kafka import ConsumerRebalanceListener

        topic = self.topic

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                on_revoke([tp.partition for tp in revoked if tp.topic == topic], False)

            def on_partitions_lost(self, lost: Any) -> None:  # kafka-python 3 only
                on_revoke([tp.partition for tp in lost if tp.topic == topic], True)

            def on_partitions_assigned(self, assigned: Any) -> None:
                on_assign([tp.partition for tp in assigned if tp.topic == topic])

        try:
            self._consumer.subscribe([topic], listener=Listener())
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
            # a failed metadata refresh may escape while kafka-python looks for the group
            # coordinator (broker restarting): the next poll tries again
            if not self._poll_failing:
                log.warning(
                    "poll failed (%s); retrying until the broker is back", describe_error(exc)
                )
            self._poll_failing = True
            time.sleep(min(timeout, 0.2))
            return None
        self._poll_failing = False
        if not records:
            return None
        return make_batch(
            (tp.partition, [r.offset for r in recs], [r.key for r in recs], [r.value for r in recs])
            for tp, recs in records.items()
        )

    def pause(self, partitions: list[int]) -> None:
        self._consumer.pause(*[self._tp(p) for p in partitions])

    def committed(self, partitions: list[int]) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for p in partitions:
            out[p] = self._retrying(
                "fetching committed offsets",
                functools.partial(self._consumer.committed, self._tp(p), timeout_ms=ATTEMPT_MS),
            )
        return out

    def start(self, positions: dict[int, int | None]) -> None:
        for partition, offset in positions.items():
            # always seek: kafka-python keeps its in-memory position after a rebalance,
            # which is past the messages dropped on revocation
            if offset is None:
                self._consumer.seek_to_beginning(self._tp(partition))
            else:
                self._consumer.seek(self._tp(partition), offset)
        self._consumer.resume(*[self._tp(p) for p in positions])

    def commit(self, offsets: dict[int, int]) -> bool:
        import kafka.errors as ke
        from kafka import OffsetAndMetadata

        kafka_offsets = {self._tp(p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        if threading.current_thread() is not self._poller:  # kafka-python 3's I/O thread

            def done(_offsets: Any, response: Any) -> None:
                if isinstance(response, Exception):
                    log.warning(
                        "commit on revocation refused (%s); the new owner re-reads %s",
                        describe_error(response),
                        sorted(offsets),
                    )

            self._consumer.commit_async(kafka_offsets, callback=done)
            return True
        membership = (
            ke.CommitFailedError,
            ke.IllegalGenerationError,
            ke.UnknownMemberIdError,
            ke.RebalanceInProgressError,
            *((ke.FencedInstanceIdError,) if hasattr(ke, "FencedInstanceIdError") else ()),
        )
        try:
            self._retrying(
                "commit", lambda: self._consumer.commit(kafka_offsets, timeout_ms=ATTEMPT_MS)
            )
        except membership as exc:
            log.warning(
                "commit refused after a rebalance (%s); the new owner re-reads %s",
                type(exc).__name__,
                sorted(offsets),
            )
            return False
        return True

    def _transient(self, exc: BaseException) -> bool:
        # kafka-python's own retries give up when a metadata refresh fails while the broker
        # restarts (KafkaConnectionError), and an attempt bounded by ATTEMPT_MS ends in
        # KafkaTimeoutError (not "retriable" to kafka-python) when the coordinator is away;
        # membership errors are not retriable ones
        import kafka.errors as ke

        return isinstance(exc, ke.KafkaTimeoutError) or (
            isinstance(exc, ke.KafkaError) and bool(exc.retriable)
        )

    def highwater(self, partition: int) -> int | None:
        hw: int | None = self._consumer.highwater(self._tp(partition))
        return hw

    def watermarks(
        self, partitions: list[int], timeout: float
    ) -> dict[int, tuple[int, int]] | None:
        import kafka.errors as ke

        tps = [self._tp(p) for p in partitions]
        try:
            try:
                low = self._consumer.beginning_offsets(tps, timeout_ms=int(timeout * 1000))
                high = self._consumer.end_offsets(tps, timeout_ms=int(timeout * 1000))
            except TypeError:  # kafka-python 2.x: no timeout_ms (request_timeout_ms applies)
                low = self._consumer.beginning_offsets(tps)
                high = self._consumer.end_offsets(tps)
        except ke.KafkaError as exc:
            log.debug("watermarks: %s", describe_error(exc))
            return None
        return {tp.partition: (low[tp], high[tp]) for tp in tps}

    def close(self) -> None:
        self._consumer.close(autocommit=False, timeout_ms=ATTEMPT_MS)

    def _wait_for_topic_metadata(self, timeout_s: float = 30.0) -> None:
        """Fetch the subscribed topic's metadata (blocking) before the first poll joins the group.

        ``subscribe()`` only *requests* a metadata update, so a join that wins the race
        against that response makes the group leader assign from an empty snapshot; the
        response then differs from it and the consumer rebalances again right after its first
        assignment (the messages read meanwhile are dropped and re-read). ``topics()`` always
        asks the broker and waits for its answer.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if self.topic in self._consumer.topics() and self._consumer.partitions_for_topic(
                self.topic
            ):
                return
            if time.monotonic() > deadline:
                raise KafkaError(f"topic {self.topic} has no partitions after {timeout_s:g} s")
            time.sleep(0.2)
