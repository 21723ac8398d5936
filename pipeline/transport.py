"""Producer transports: the Kafka client under :class:`~pipeline.sdk.UsageProducer`.

``MODELMETER_KAFKA_CLIENT`` (``--kafka-client``) picks one; both give the same guarantees::

    transport = open_producer(settings, topic, max_buffer=100_000, options={"linger_ms": 50})
    handle = transport.send(value, key)      # handle.is_done, handle.exception (None: delivered)
    transport.wait(handle, timeout)          # block until something may have finished
    transport.flush(timeout)                 # False when messages are still unfinished
    transport.close(timeout)

- ``kafka-python`` (default): pure Python, ~14 us of CPU per message in the sending process
  (plus its I/O thread competing for the GIL); the SDK's messages skip ``KafkaProducer.send``'s
  steps that never apply to them (:func:`_lean_send`).
- ``confluent`` (librdkafka, the optional ``confluent-kafka`` package): ~2-3 us per message;
  batching, compression and retries run in C threads outside the GIL. Delivery reports are
  served by :meth:`ConfluentTransport.wait` / ``poll``, i.e. in the agent's thread.

Both: ``acks=all``, idempotence on, the same key -> partition assignment (murmur2 of the key
like the Java client: kafka-python's default partitioner, librdkafka's ``murmur2_random``),
the same security settings (:func:`pipeline.kafka_connect.confluent_config`) and start-up
failures (:func:`pipeline.kafka_connect.wait_for_broker`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, Protocol

from pipeline._exceptions import ConfigError, KafkaError, KafkaUnavailableError
from pipeline.settings import Settings

__all__ = [
    "KAFKA_CLIENTS",
    "Handle",
    "ProducerTransport",
    "KafkaPythonTransport",
    "ConfluentTransport",
    "open_producer",
    "PRODUCER_DEFAULTS",
    "BufferFull",
]

KAFKA_CLIENTS = ("kafka-python", "confluent")


class Handle(Protocol):
    """What a transport's ``send`` returns (kafka-python's FutureRecordMetadata has it):
    ``exception`` is set before ``is_done`` turns true."""

    is_done: bool
    exception: Exception | None


class BufferFull(Exception):
    """The client's own buffer refused a message (the caller makes room and retries)."""


class ProducerTransport(Protocol):
    # value first, as both clients take it (``send(topic, value, key)``, ``produce(...)``)
    def send(self, value: bytes | None, key: bytes | None) -> Handle: ...
    def wait(self, handle: Handle, timeout: float) -> None: ...
    def serve(self) -> None: ...
    def flush(self, timeout: float | None) -> bool: ...
    def close(self, timeout: float | None) -> None: ...
    def translate(self, exc: Exception) -> Exception: ...


# Producer settings (kafka-python names) tuned for many small events: batches of up to
# 256 KiB gathered for up to 50 ms (an agent does not wait for them; fewer, fuller batches
# mean fewer wake-ups of the I/O thread); no compression by default (CPU in pure Python).
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 50,
    "batch_size": 256 * 1024,
    "delivery_timeout_ms": 120_000,
    "client_id": "modelmeter-sdk",
}


def _task_partitioner() -> Any:
    from kafka.partitioner import DefaultPartitioner

    class TaskPartitioner(DefaultPartitioner):
        """kafka-python's default partitioner (murmur2 of the key, like the Java client),
        remembered per key and partition count: a task sends several events under one key,
        and murmur2 in pure Python is a fifth of a send's cost."""

        def __init__(self, max_keys: int = 100_000) -> None:
            self.max_keys = max_keys
            self._seen: dict[tuple[str, bytes], tuple[int, int]] = {}

        def partition(self, topic, key, serialized_key, value, serialized_value, cluster):  # type: ignore[no-untyped-def]
            partitions = cluster.partitions_for_topic(topic)
            if serialized_key is None or not partitions:
                return super().partition(topic, key, serialized_key, value, serialized_value,
                                         cluster)
            seen = self._seen.get((topic, serialized_key))
            if seen is not None and seen[0] == len(partitions):
                return seen[1]
            found = super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            if len(self._seen) >= self.max_keys:
                self._seen.clear()
            self._seen[(topic, serialized_key)] = (len(partitions), found)
            return found

    return TaskPartitioner()


def kafka_python_config(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` keyword arguments: the defaults, then ``options``."""
    return {**PRODUCER_DEFAULTS, "partitioner": _task_partitioner(), **(options or {})}


# what kafka-python's size estimate adds to key and value, at most: the batch header (61),
# the record's length, attributes, timestamp and offset deltas (21), key and value lengths
# (5 + 5) and header count (1)
_RECORD_OVERHEAD = 61 + 21 + 5 + 5 + 1


def _lean_send(producer: Any, topic: str) -> Callable[[bytes | None, bytes | None], Handle]:
    """``KafkaProducer.send(topic, value, key)`` without the per-message steps that never
    apply to the SDK's messages (on the kafka-python versions of
    :data:`pipeline.kafka_connect.KAFKA_PYTHON_CHECKED`; ``send`` itself on any other).

    ``send`` checks headers and serializer outputs, runs the two serializers, looks the
    topic's metadata up, makes a ``TopicPartition``, estimates the record size in Python and
    formats a debug message, for every message: ~3.5 of its ~23 us of CPU here. The SDK's
    messages are bytes with a key, no headers, no serializers, no transaction: for them this
    asks the partitioner (the same one) and appends to kafka-python's accumulator as ``send``
    does, and wakes its sender thread as ``send`` does. Anything else (no key or no value,
    metadata not known yet, a message that may be too large, a closed producer) goes
    through ``send`` itself, with its waits and errors.
    """
    from kafka.partitioner import Partitioner
    from kafka.structs import TopicPartition

    from pipeline.kafka_connect import kafka_python_checked

    stock = functools.partial(producer.send, topic)
    config = producer.config
    if (not kafka_python_checked()
            or config["key_serializer"] is not None or config["value_serializer"] is not None
            or not isinstance(config["partitioner"], Partitioner)
            or producer._transaction_manager is not None
            and producer._transaction_manager.is_transactional()
            or producer.max_usable_produce_magic(config["api_version"]) != 2):
        return stock
    metadata, accumulator, sender = producer._metadata, producer._accumulator, producer._sender
    partition_of = functools.partial(config["partitioner"].partition, topic)
    limit = config["max_request_size"] - _RECORD_OVERHEAD
    tps: dict[int, Any] = {}

    def send(value: bytes | None, key: bytes | None) -> Handle:
        if (key is None or value is None or producer._closed or len(key) + len(value) > limit
                or metadata.partitions_for_topic(topic) is None):
            return stock(value=value, key=key)  # type: ignore[no-any-return]
        partition = partition_of(key, key, value, value, metadata)
        tp = tps.get(partition)
        if tp is None:
            tp = tps[partition] = TopicPartition(topic, partition)
        future, full, new_batch, _ = accumulator.append(tp, None, key, value, [],
                                                         abort_on_new_batch=False)
        if full or new_batch:
            sender.wakeup()
        return future  # type: ignore[no-any-return]

    return send


class KafkaPythonTransport:
    """kafka-python's ``KafkaProducer`` (the default transport)."""

    name = "kafka-python"
    send: Callable[[bytes | None, bytes | None], Handle]  # the client's send with the topic bound

    def __init__(self, settings: Settings, topic: str, *, max_buffer: int,
                 options: dict[str, Any]) -> None:
        from kafka import KafkaProducer

        from pipeline.kafka_connect import create_client

        self.settings, self.topic = settings, topic
        # kafka-python's own max_block_ms only bounds waiting for topic metadata, fetched
        # here once; room in the SDK's buffer is bounded by the SDK.
        metadata_ms = int(settings.kafka_bootstrap_timeout * 1000)
        config = kafka_python_config({"max_block_ms": metadata_ms, **options})
        self._producer = create_client(KafkaProducer, settings, **config)
        try:
            # Fetch the topic's partitions now, so the first send does not wait for them.
            self._producer.partitions_for(topic)
        except Exception as exc:
            self._producer.close(timeout=0)
            raise self.translate(exc) from None
        self.send = _lean_send(self._producer, topic)

    def wait(self, handle: Handle, timeout: float) -> None:
        with contextlib.suppress(Exception):  # a failure is reported by the SDK's bookkeeping
            handle.get(timeout=timeout)  # type: ignore[attr-defined]

    def serve(self) -> None:
        """Nothing to do: kafka-python completes futures in its I/O thread."""

    def flush(self, timeout: float | None) -> bool:
        import time

        import kafka.errors as ke

        deadline = None if timeout is None else time.monotonic() + timeout
        for attempt in range(10):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._producer.flush(timeout=left)
                return True
            except ke.KafkaTimeoutError:
                return False
            except ke.KafkaError:
                # kafka-python 3.0.12 raises UnknownError('Future not done') from flush while
                # it splits a batch the broker found too large; the split batches are still
                # being sent (their records then succeed or fail on their own): wait again.
                time.sleep(0.05 * (attempt + 1))
        return False

    def close(self, timeout: float | None) -> None:
        import kafka.errors as ke

        # kafka-python's close flushes first and raises when batches remain unsent.
        with contextlib.suppress(ke.KafkaError):
            self._producer.close(timeout=timeout)

    def translate(self, exc: Exception) -> Exception:
        import kafka.errors as ke

        from pipeline.kafka_connect import translate_kafka_error

        if isinstance(exc, ke.KafkaTimeoutError):
            return KafkaUnavailableError(
                f"no metadata for Kafka topic {self.topic!r} from"
                f" {self.settings.kafka_bootstrap_servers}: {exc}")
        if isinstance(exc, ke.KafkaError):
            return translate_kafka_error(exc, self.settings) or KafkaError(
                f"producing to {self.topic!r} failed: {type(exc).__name__}: {exc}")
        return exc


class _Delivery:
    """A confluent message's fate, set by its delivery report (served in the caller's thread)."""

    __slots__ = ("is_done", "exception")

    def __init__(self) -> None:
        self.is_done = False
        self.exception: Exception | None = None

    def report(self, error: Any, message: Any) -> None:
        if error is not None:
            self.exception = KafkaError(f"{error.name()}: {error.str()}")
        self.is_done = True


class ConfluentTransport:
    """confluent-kafka's ``Producer`` (librdkafka); optional, several times faster."""

    name = "confluent"
    send: Callable[[bytes | None, bytes | None], Handle]  # a closure over the client, per instance

    def __init__(self, settings: Settings, topic: str, *, max_buffer: int,
                 options: dict[str, Any]) -> None:
        from pipeline.kafka_connect import create_confluent_producer

        self.settings, self.topic = settings, topic
        # librdkafka's own bound matches the SDK's: a full queue raises BufferError, never
        # a silent drop.
        self._producer = create_confluent_producer(
            settings, topic, options, buffer_messages=max_buffer)
        produce = self._producer.produce
        poll = self._producer.poll

        def fast_send(value: bytes | None, key: bytes | None) -> Handle:
            handle = _Delivery()
            try:
                produce(topic, value, key, on_delivery=handle.report)
            except BufferError:
                poll(0)  # serve delivery reports: they free room
                raise BufferFull() from None
            return handle

        self.send = fast_send

    def wait(self, handle: Handle, timeout: float) -> None:
        self._producer.poll(timeout)

    def serve(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float | None) -> bool:
        left: int = self._producer.flush(-1 if timeout is None else timeout)
        return left == 0

    def close(self, timeout: float | None) -> None:
        # The SDK flushed already; whatever is left is dropped from librdkafka's queue (and
        # reported by its delivery report) rather than left to a destructor.
        if len(self._producer):
            self._producer.purge()
        self._producer.poll(0)

    def translate(self, exc: Exception) -> Exception:
        from confluent_kafka import KafkaException

        if isinstance(exc, KafkaException):
            return KafkaError(f"producing to {self.topic!r} failed: {exc.args[0]}")
        return exc


def open_producer(settings: Settings, topic: str, *, max_buffer: int,
                  options: dict[str, Any] | None = None) -> KafkaPythonTransport | ConfluentTransport:
    """The transport ``settings.kafka_client`` names, connected, with ``topic``'s metadata."""
    client = settings.kafka_client
    if client == "confluent":
        return ConfluentTransport(settings, topic, max_buffer=max_buffer, options=options or {})
    if client == "kafka-python":
        return KafkaPythonTransport(settings, topic, max_buffer=max_buffer, options=options or {})
    raise ConfigError(f"MODELMETER_KAFKA_CLIENT: unknown Kafka client {client!r}"
                      f" (one of {', '.join(KAFKA_CLIENTS)})")  # pragma: no cover
