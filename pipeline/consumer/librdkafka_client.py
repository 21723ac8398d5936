"""The librdkafka consumer client (confluent-kafka), the default: fetching and decoding run
in librdkafka's C threads, outside the GIL. Its rebalance callbacks run inside ``consume()``,
in the polling thread, where blocking calls are allowed (see :mod:`.clients`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from pipeline._exceptions import KafkaError
from pipeline.consumer.batches import RawBatch
from pipeline.consumer.clients import (
    ATTEMPT_MS,
    CONFLUENT_ONLY,
    ConsumerClient,
    OnAssign,
    OnRevoke,
    describe_error,
    make_batch,
)
from pipeline.settings import Settings

__all__ = ["ConfluentClient"]

log = logging.getLogger(__name__)


def _transient_codes() -> frozenset[int]:
    """librdkafka error codes of a broker or coordinator that is away for a while (its
    documented local codes, ``KafkaError._TRANSPORT`` and the like, and broker codes)."""
    from confluent_kafka import KafkaError as CKError

    return frozenset(
        (
            CKError._TRANSPORT,
            CKError._TIMED_OUT,
            CKError._WAIT_COORD,
            CKError._ALL_BROKERS_DOWN,
            CKError.COORDINATOR_NOT_AVAILABLE,
            CKError.NOT_COORDINATOR,
            CKError.COORDINATOR_LOAD_IN_PROGRESS,
            CKError.REQUEST_TIMED_OUT,
            CKError.NETWORK_EXCEPTION,
        )
    )


class ConfluentClient(ConsumerClient):
    """librdkafka through confluent-kafka (the default). Its rebalance callbacks run inside
    ``consume()``, in the polling thread; blocking calls are allowed there."""

    callbacks_may_block = True

    def __init__(
        self, settings: Settings, group: str, config: dict[str, Any], stopping: threading.Event
    ) -> None:
        from pipeline.kafka_connect import create_confluent_consumer

        super().__init__(stopping)
        self.topic = settings.topic
        options = {k: v for k, v in config.items() if k != "max_poll_records"}
        self._consumer = create_confluent_consumer(
            settings,
            {**options, **CONFLUENT_ONLY, "group_id": group, "client_id": "modelmeter-consume"},
        )

    def _tps(self, partitions: Iterable[int], offset: int | None = None) -> list[Any]:
        from confluent_kafka import TopicPartition

        if offset is None:
            return [TopicPartition(self.topic, p) for p in partitions]
        return [TopicPartition(self.topic, p, offset) for p in partitions]

    def subscribe(self, on_assign: OnAssign, on_revoke: OnRevoke) -> None:
        topic = self.topic

        def assigned(consumer: Any, tps: list[Any]) -> None:
            # the loop starts our partitions in here (self.start: the assignment, with the
            # offsets); librdkafka wants every assigned partition assigned in the callback
            others = [tp for tp in tps if tp.topic != topic]
            if others:
                consumer.assign(others)
            on_assign([tp.partition for tp in tps if tp.topic == topic])

        def revoked(consumer: Any, tps: list[Any]) -> None:
            on_revoke([tp.partition for tp in tps if tp.topic == topic], False)

        def lost(consumer: Any, tps: list[Any]) -> None:
            on_revoke([tp.partition for tp in tps if tp.topic == topic], True)

        try:
            self._consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=lost)
        except BaseException:
            self._consumer.close()
            raise

    def poll(self, limit: int, timeout: float) -> RawBatch | None:
        messages = self._consumer.consume(num_messages=limit, timeout=timeout)
        if not messages:
            return None
        parts: dict[int, tuple[list[int], list[Any], list[Any]]] = {}
        for m in messages:
            if m.error() is not None:
                self._message_error(m.error())
                continue
            p = m.partition()
            part = parts.get(p)
            if part is None:
                part = parts[p] = ([], [], [])
            part[0].append(m.offset())
            part[1].append(m.key())
            part[2].append(m.value())
        return make_batch((p, *cols) for p, cols in parts.items())

    def pause(self, partitions: list[int]) -> None:
        self._consumer.pause(self._tps(partitions))

    def committed(self, partitions: list[int]) -> dict[int, int | None]:
        found = self._retrying(
            "fetching committed offsets",
            lambda: self._consumer.committed(self._tps(partitions), timeout=ATTEMPT_MS / 1000),
        )
        out: dict[int, int | None] = {}
        for tp in found:
            if tp.error is not None:
                raise KafkaError(f"committed offset of partition {tp.partition}: {tp.error}")
            out[tp.partition] = tp.offset if tp.offset >= 0 else None
        return out

    def start(self, positions: dict[int, int | None]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        # called from the assignment callback (callbacks_may_block): this is the assignment
        self._consumer.assign(
            [
                TopicPartition(self.topic, p, OFFSET_BEGINNING if o is None else o)
                for p, o in positions.items()
            ]
        )

    def commit(self, offsets: dict[int, int]) -> bool:
        from confluent_kafka import KafkaException, TopicPartition

        tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
        try:
            result = self._retrying(
                "commit", lambda: self._consumer.commit(offsets=tps, asynchronous=False)
            )
        except KafkaException as exc:
            error = exc.args[0]
            if self._membership_error(error):
                log.warning(
                    "commit refused after a rebalance (%s); the new owner re-reads %s",
                    error.name(),
                    sorted(offsets),
                )
                return False
            raise KafkaError(f"commit failed: {error.name()}: {error.str()}") from None
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            raise KafkaError(
                f"commit failed for partition {failed[0].partition}: {failed[0].error}"
            )
        return True

    def _transient(self, exc: BaseException) -> bool:
        from confluent_kafka import KafkaException

        if not isinstance(exc, KafkaException):
            return False
        error = exc.args[0]
        return not error.fatal() and (error.retriable() or error.code() in _transient_codes())

    def highwater(self, partition: int) -> int | None:
        (tp,) = self._tps([partition])
        _, high = self._consumer.get_watermark_offsets(tp, cached=True)
        return high if high is not None and high >= 0 else None

    def watermarks(
        self, partitions: list[int], timeout: float
    ) -> dict[int, tuple[int, int]] | None:
        from confluent_kafka import KafkaException

        marks = {}
        deadline = time.monotonic() + timeout
        for p in partitions:
            (tp,) = self._tps([p])
            try:
                mark = self._consumer.get_watermark_offsets(
                    tp, timeout=max(0.1, deadline - time.monotonic()), cached=False
                )
            except KafkaException as exc:
                log.debug("watermarks: %s", describe_error(exc))
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

        return error.code() in (
            CKError.ILLEGAL_GENERATION,
            CKError.UNKNOWN_MEMBER_ID,
            CKError.REBALANCE_IN_PROGRESS,
            CKError.FENCED_INSTANCE_ID,
            CKError._ASSIGNMENT_LOST,
            CKError._STATE,
        )

    @staticmethod
    def _message_error(error: Any) -> None:
        if error.fatal():
            raise KafkaError(f"Kafka consumer failed: {error.name()}: {error.str()}")
        log.warning("Kafka consumer: %s: %s", error.name(), error.str())
