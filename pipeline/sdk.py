"""The producer SDK agents use to emit usage events (DESIGN.md section 1).

::

    from pipeline import UsageProducer, anthropic_tokens

    with UsageProducer() as meter:                       # settings from the environment
        meter.llm_call(role="coder", agent_id="agent-7", task_id="T-42",
                       provider="anthropic", model="claude-opus-4-1",
                       escalated=True, escalation_trigger="security_sensitive",
                       **anthropic_tokens(response.usage))
        meter.task_feedback(role="coder", agent_id="agent-7", task_id="T-42", satisfaction=5)
    # leaving the block flushes: every event is acknowledged by the broker, or an error is raised

Guarantees:

- An event is validated against the v1 contract before it is queued; a bad one raises
  :class:`ContractError` at the agent and never reaches Kafka.
- Message key = ``task_id`` (one task's events stay ordered on one partition); value = the
  event's compact JSON, which :func:`pipeline.contract.parse_event` reads back equal.
- ``acks="all"`` and an idempotent producer: the Kafka client's own retries resend the same
  bytes, so a retry carries the same ``event_id`` and the broker drops in-session duplicates.
  A duplicate that still lands (the agent re-sends after an error) is counted once
  downstream: the warehouse keeps one row per ``event_id``.
- Sending never blocks on the network. At most ``max_buffer`` events wait for the broker's
  acknowledgement; when that many are pending (broker slow or away) ``send`` waits up to
  ``max_block_ms`` for room and then raises :class:`ProducerBufferFullError` - the event
  was not queued, the caller still has it.
- An event the broker did not take within ``delivery_timeout_ms`` (or refused) is reported,
  with the error, to ``on_error(event, error)`` and kept in :attr:`UsageProducer.undelivered`;
  the next :meth:`~UsageProducer.flush` (and so :meth:`~UsageProducer.close` and leaving the
  ``with`` block) raises :class:`KafkaError` saying how many. Nothing is dropped silently.
  ``on_error`` runs in the agent's thread, during a later ``send``/``flush``/``close``,
  never in Kafka's I/O thread.
- A broker that cannot be reached when the producer is made raises
  :class:`KafkaUnavailableError` (after ``MODELMETER_BOOTSTRAP_TIMEOUT``).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ValidationError

from pipeline._exceptions import (
    ConfigError,
    ContractError,
    KafkaError,
    KafkaUnavailableError,
    ProducerBufferFullError,
)
from pipeline.contract import SCHEMA_VERSION, LlmCall, TaskFeedback, contract_error, validate_event
from pipeline.settings import Settings

__all__ = ["UsageProducer", "RawMessage", "new_event_id", "ErrorCallback"]

Event = LlmCall | TaskFeedback


class RawMessage(tuple[bytes | None, bytes | None]):
    """A message sent with :meth:`UsageProducer.send_raw`: ``(key, value)``."""

    __slots__ = ()

    @property
    def key(self) -> bytes | None:
        return self[0]

    @property
    def value(self) -> bytes | None:
        return self[1]


ErrorCallback = Callable[[Event | RawMessage, Exception], None]

# A private generator seeded from the OS: os.urandom per event is a system call that releases
# the GIL, and winning it back from kafka-python's I/O thread costs more than the rest of a
# send. A private instance also stays unique when an application seeds the global `random`
# (the simulator does), and is reseeded in a forked child.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_event_id() -> str:
    """A fresh event id: 32 random hex digits (128 random bits, like a UUID4)."""
    return f"{_ids.getrandbits(128):032x}"


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


# Producer settings tuned for many small events: batches of up to 256 KiB gathered for up to
# 50 ms (an agent does not wait for them; fewer, fuller batches mean fewer wake-ups of the
# I/O thread competing for the GIL); lz4 would save bytes but costs CPU in pure Python, so
# no compression by default.
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 50,
    "batch_size": 256 * 1024,
    "delivery_timeout_ms": 120_000,
    "client_id": "modelmeter-sdk",
    "partitioner": _task_partitioner(),
}

_UTC = dt.UTC
_validate_llm_call = LlmCall.__pydantic_validator__.validate_python
_validate_task_feedback = TaskFeedback.__pydantic_validator__.validate_python

# How often (in sends) acknowledged events are taken off the pending queue.
_PRUNE_EVERY = 512


class UsageProducer:
    """Validate usage events and produce them to Kafka; a context manager.

    Keyword arguments:
        max_buffer: most events awaiting the broker's acknowledgement at once.
        max_block_ms: how long ``send`` waits for room (and for topic metadata) before
            raising; also kafka-python's ``max_block_ms``.
        on_error: ``on_error(event, error)`` for each event the broker did not take.
        create_topics: create the topic (6 partitions) and its ``.dlq`` twin when missing.
        kafka_options: further kafka-python ``KafkaProducer`` settings (``linger_ms``,
            ``batch_size``, ``compression_type``, ``delivery_timeout_ms``, ...).
    """

    def __init__(self, settings: Settings | None = None, *, max_buffer: int = 100_000,
                 max_block_ms: int = 60_000, on_error: ErrorCallback | None = None,
                 create_topics: bool = True, **kafka_options: Any) -> None:
        from kafka import KafkaProducer

        from pipeline.kafka_admin import ensure_topics
        from pipeline.kafka_connect import create_client

        if max_buffer < 1:
            raise ConfigError(f"UsageProducer: max_buffer must be >= 1, got {max_buffer}")
        if max_block_ms < 0:
            raise ConfigError(f"UsageProducer: max_block_ms must be >= 0, got {max_block_ms}")
        self.settings = settings if settings is not None else Settings()  # type: ignore[call-arg]
        self.topic = self.settings.topic
        self.max_buffer = max_buffer
        self.max_block_ms = max_block_ms
        self.on_error = on_error
        self.undelivered: list[tuple[Event | RawMessage, Exception]] = []
        self.sent = 0
        self.delivered = 0
        self._failed_since_flush = 0
        self._pending: collections.deque[tuple[Any, Event | RawMessage]] = collections.deque()
        self._lock = threading.RLock()
        self._closed = False
        if create_topics:
            ensure_topics(self.settings)
        # kafka-python's own max_block_ms only bounds waiting for topic metadata, fetched
        # here once; room in the buffer is bounded by our max_block_ms.
        metadata_ms = int(self.settings.kafka_bootstrap_timeout * 1000)
        config = {**_PRODUCER_DEFAULTS, "max_block_ms": metadata_ms, **kafka_options}
        self._producer = create_client(KafkaProducer, self.settings, **config)
        try:
            # Fetch the topic's partitions now, so the first send does not wait for them.
            self._producer.partitions_for(self.topic)
        except Exception as exc:
            self._producer.close(timeout=0)
            raise self._translate(exc) from None
        self._send = self._producer.send

    # -- building events -------------------------------------------------------------------

    def llm_call(self, *, role: str, agent_id: str, task_id: str, provider: str, model: str,
                 input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
                 cache_write_5m_tokens: int = 0, cache_write_1h_tokens: int = 0,
                 latency_ms: int | None = None, status: Literal["ok", "error"] = "ok", escalated: bool = False,
                 escalation_trigger: str | None = None, policy_version: str | None = None,
                 task_type: str | None = None, event_id: str | None = None,
                 occurred_at: dt.datetime | None = None) -> LlmCall:
        """Validate and send one ``llm_call``; returns the event sent.

        ``event_id`` (random) and ``occurred_at`` (now, UTC) are filled in when not given;
        pass the same ``event_id`` to re-send an event (it is then counted once).
        """
        try:
            # The validator directly, not LlmCall(...): same validation, one call less.
            event: LlmCall = _validate_llm_call({
                "event_id": new_event_id() if event_id is None else event_id, "event_type": "llm_call",
                "schema_version": SCHEMA_VERSION,
                "occurred_at": dt.datetime.now(_UTC) if occurred_at is None else occurred_at, "agent_id": agent_id,
                "task_id": task_id, "role": role, "provider": provider, "model": model,
                "input_tokens": input_tokens, "output_tokens": output_tokens,
                "cache_read_tokens": cache_read_tokens,
                "cache_write_5m_tokens": cache_write_5m_tokens,
                "cache_write_1h_tokens": cache_write_1h_tokens, "latency_ms": latency_ms,
                "status": status, "escalated": escalated, "escalation_trigger": escalation_trigger,
                "policy_version": policy_version, "task_type": task_type})
        except ValidationError as exc:
            raise contract_error(exc) from None
        self._enqueue(event)
        return event

    def task_feedback(self, *, role: str, agent_id: str, task_id: str,
                      satisfaction: int | None = None, escalation_needed: bool | None = None,
                      review_consistent: bool | None = None, event_id: str | None = None,
                      occurred_at: dt.datetime | None = None) -> TaskFeedback:
        """Validate and send one ``task_feedback``; returns the event sent."""
        try:
            feedback: TaskFeedback = _validate_task_feedback({
                "event_id": new_event_id() if event_id is None else event_id, "event_type": "task_feedback",
                "schema_version": SCHEMA_VERSION,
                "occurred_at": dt.datetime.now(_UTC) if occurred_at is None else occurred_at, "agent_id": agent_id,
                "task_id": task_id, "role": role, "satisfaction": satisfaction,
                "escalation_needed": escalation_needed, "review_consistent": review_consistent})
        except ValidationError as exc:
            raise contract_error(exc) from None
        self._enqueue(feedback)
        return feedback

    def send(self, event: Event | dict[str, Any]) -> Event:
        """Send a pre-built event (a model, or a dict), validated again first: a model made
        with ``model_construct`` or changed since cannot slip past the contract.
        Re-sending an undelivered event this way keeps its ``event_id``."""
        if isinstance(event, LlmCall | TaskFeedback):
            event = validate_event(dict(event))
        elif isinstance(event, dict):
            event = validate_event(event)
        else:
            raise ContractError(f"not an event: {type(event).__name__}")
        self._enqueue(event)
        return event

    def send_raw(self, key: bytes | None, value: bytes | None) -> None:
        """Send bytes as they are, NOT validated. For tests and the simulator's deliberately
        bad messages only: agents use :meth:`llm_call`, :meth:`task_feedback` or :meth:`send`."""
        message = RawMessage((key, value))
        self._queue(message, key, value)

    # -- delivery --------------------------------------------------------------------------

    def _enqueue(self, event: Event) -> None:
        value = event.__pydantic_serializer__.to_json(event, exclude_none=True)
        self._queue(event, event.task_id.encode(), value)

    def _queue(self, item: Event | RawMessage, key: bytes | None, value: bytes | None) -> None:
        if self._closed:
            raise KafkaError("the usage producer is closed")
        with self._lock:
            if len(self._pending) >= self.max_buffer:
                self._make_room()
            elif self.sent % _PRUNE_EVERY == 0:
                self._prune()
            try:
                future = self._send(self.topic, value=value, key=key)
            except Exception as exc:
                raise self._translate(exc) from None
            self._pending.append((future, item))
            self.sent += 1

    def _prune(self) -> None:
        """Take acknowledged (or failed) events off the front of the pending queue."""
        pending = self._pending
        while pending and pending[0][0].is_done:
            future, item = pending.popleft()
            if future.failed():
                self._report(item, future.exception)
            else:
                self.delivered += 1

    def _make_room(self) -> None:
        deadline = time.monotonic() + self.max_block_ms / 1000
        self._prune()
        while len(self._pending) >= self.max_buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProducerBufferFullError(
                    f"{len(self._pending)} usage events are still waiting for the Kafka broker at"
                    f" {self.settings.kafka_bootstrap_servers} after {self.max_block_ms} ms"
                    f" (max_buffer={self.max_buffer}); the broker is slow or unreachable and this"
                    " event was not queued")
            with contextlib.suppress(Exception):  # a failure is reported by _prune
                self._pending[0][0].get(timeout=min(remaining, 0.5))
            self._prune()
            if len(self._pending) >= self.max_buffer:
                self._prune_anywhere()

    def _prune_anywhere(self) -> None:
        """Drop finished events from anywhere in the queue (a slow partition at the front)."""
        keep: collections.deque[tuple[Any, Event | RawMessage]] = collections.deque()
        for future, item in self._pending:
            if not future.is_done:
                keep.append((future, item))
            elif future.failed():
                self._report(item, future.exception)
            else:
                self.delivered += 1
        self._pending = keep

    def _report(self, item: Event | RawMessage, error: Exception) -> None:
        self.undelivered.append((item, error))
        self._failed_since_flush += 1
        if self.on_error is not None:
            self.on_error(item, error)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event sent so far is acknowledged or has failed.

        Raises :class:`KafkaError` when events are still pending after ``timeout`` seconds, or
        when events sent since the last flush could not be delivered (they went to
        ``on_error`` and are in :attr:`undelivered`).
        """
        import kafka.errors as ke

        with self._lock:
            try:
                self._producer.flush(timeout=timeout)
            except ke.KafkaTimeoutError:
                self._prune_anywhere()
                raise KafkaError(
                    f"{len(self._pending)} usage events not acknowledged by the Kafka broker at"
                    f" {self.settings.kafka_bootstrap_servers} within {timeout} s") from None
            self._prune_anywhere()
            failed, self._failed_since_flush = self._failed_since_flush, 0
        if failed:
            first = self.undelivered[-failed][1]
            raise KafkaError(
                f"{failed} usage events could not be delivered to {self.topic!r} at"
                f" {self.settings.kafka_bootstrap_servers} (first: {type(first).__name__}:"
                f" {first}); they were passed to on_error and are in producer.undelivered")

    def close(self, timeout: float | None = None) -> None:
        """Flush (see :meth:`flush`, which may raise) and close the Kafka client.

        With a ``timeout`` that runs out, the events still unacknowledged are reported to
        ``on_error`` and :attr:`undelivered` as well (they may yet arrive: re-sending them is
        safe, the same ``event_id`` is counted once).
        """
        import kafka.errors as ke

        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout)
        finally:
            with self._lock:
                unfinished = [item for future, item in self._pending if not future.is_done]
                self._prune_anywhere()
                for item in unfinished:
                    self._report(item, KafkaError(
                        f"not acknowledged by the broker within close(timeout={timeout})"))
                self._pending.clear()
                self._failed_since_flush = 0
            # kafka-python's close flushes first and raises when batches remain unsent.
            with contextlib.suppress(ke.KafkaError):
                self._producer.close(timeout=0 if unfinished else timeout)

    def __enter__(self) -> UsageProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Events sent and not yet known to be acknowledged (an upper bound)."""
        return len(self._pending)

    def _translate(self, exc: Exception) -> Exception:
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
