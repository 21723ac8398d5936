"""Producer transports: the Kafka client under :class:`~pipeline.sdk.UsageProducer`.

``MODELMETER_KAFKA_CLIENT`` (``--kafka-client``) picks one; both give the same guarantees::

    transport = open_producer(settings, topic, max_buffer=100_000, options={"linger_ms": 50})
    handle = transport.send(value, key)      # handle.is_done, handle.exception (None: delivered)
    transport.wait(handle, timeout)          # block until something may have finished
    transport.flush(timeout)                 # False when messages are still unfinished
    transport.close(timeout)

- ``confluent`` (librdkafka, the default): batching, compression and retries run in C
  threads outside the GIL. Delivery reports are served by :meth:`ConfluentTransport.wait` /
  ``serve``, i.e. in the agent's thread.
- ``kafka-python``: pure Python, through ``KafkaProducer.send`` (its I/O thread competes for
  the GIL with the agent).

Both: ``acks=all``, idempotence on, the same key -> partition assignment (murmur2 of the key
like the Java client: librdkafka's ``murmur2_random``, kafka-python's default partitioner),
the same security settings (:func:`pipeline.kafka_config.confluent_config`) and start-up
failures (:func:`pipeline.kafka_probe.wait_for_broker`). Public client APIs only.
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
    "CONFLUENT_PRODUCER_DEFAULTS",
    "kafka_python_config",
    "BufferFull",
]

KAFKA_CLIENTS = ("confluent", "kafka-python")


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


def kafka_python_config(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` keyword arguments: the defaults, then ``options``."""
    return {**PRODUCER_DEFAULTS, **(options or {})}


# The same guarantees on librdkafka, with its own names where kafka-python's differ: murmur2
# partitioning like the Java client and kafka-python (librdkafka's default is crc32), and
# librdkafka's default batch size (it batches in C, outside the GIL).
CONFLUENT_PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 50,
    "message.timeout.ms": 120_000,
    "client.id": "modelmeter-sdk",
}


class KafkaPythonTransport:
    """kafka-python's ``KafkaProducer``."""

    name = "kafka-python"
    send: Callable[[bytes | None, bytes | None], Handle]  # the client's send with the topic bound

    def __init__(
        self, settings: Settings, topic: str, *, max_buffer: int, options: dict[str, Any]
    ) -> None:
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
        # KafkaProducer.send(topic, value, key)
        self.send = functools.partial(self._producer.send, topic)

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
                f" {self.settings.kafka_bootstrap_servers}: {exc}"
            )
        if isinstance(exc, ke.KafkaError):
            return translate_kafka_error(exc, self.settings) or KafkaError(
                f"producing to {self.topic!r} failed: {type(exc).__name__}: {exc}"
            )
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
    """confluent-kafka's ``Producer`` (librdkafka), the default transport."""

    name = "confluent"
    send: Callable[[bytes | None, bytes | None], Handle]  # a closure over the client, per instance

    def __init__(
        self, settings: Settings, topic: str, *, max_buffer: int, options: dict[str, Any]
    ) -> None:
        from pipeline.kafka_connect import create_confluent_producer

        self.settings, self.topic = settings, topic
        # librdkafka's own bound matches the SDK's: a full queue raises BufferError, never
        # a silent drop.
        self._producer = create_confluent_producer(
            settings,
            {**CONFLUENT_PRODUCER_DEFAULTS, "queue.buffering.max.messages": max_buffer, **options},
            topic=topic,
        )
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


def open_producer(
    settings: Settings, topic: str, *, max_buffer: int, options: dict[str, Any] | None = None
) -> KafkaPythonTransport | ConfluentTransport:
    """The transport ``settings.kafka_client`` names, connected, with ``topic``'s metadata."""
    client = settings.kafka_client
    if client == "kafka-python":
        return KafkaPythonTransport(settings, topic, max_buffer=max_buffer, options=options or {})
    if client == "confluent":
        return ConfluentTransport(settings, topic, max_buffer=max_buffer, options=options or {})
    raise ConfigError(
        f"MODELMETER_KAFKA_CLIENT: unknown Kafka client {client!r}"
        f" (one of {', '.join(KAFKA_CLIENTS)})"
    )  # pragma: no cover
