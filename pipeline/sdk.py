"""The producer SDK agents use to emit usage events.

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
  :class:`ContractError` at the agent and never reaches Kafka. (The check is compiled from
  the contract's models, :func:`pipeline.contract.fast_validator`: pydantic's verdicts.)
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
  with the error, to ``on_error(event, error)`` and kept in :attr:`UsageProducer.undelivered`
  (an event equal to the one returned, rebuilt from the bytes sent);
  the next :meth:`~UsageProducer.flush` (and so :meth:`~UsageProducer.close` and leaving the
  ``with`` block) raises :class:`KafkaError` saying how many. Nothing is dropped silently.
  ``on_error`` runs in the agent's thread, during a later ``send``/``flush``/``close``,
  never in Kafka's I/O thread.
- A broker that cannot be reached when the producer is made raises
  :class:`KafkaUnavailableError` (after ``MODELMETER_BOOTSTRAP_TIMEOUT``).

The Kafka client underneath is ``MODELMETER_KAFKA_CLIENT``: ``confluent`` (librdkafka, the
default) or ``kafka-python``; the guarantees above hold for both (:mod:`pipeline.transport`).

Length: one class agents use, :class:`UsageProducer`; its buffer bookkeeping (room, pruning,
reporting undelivered events) guards the sends next to it and would not be read apart.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from pipeline._exceptions import (
    ConfigError,
    ContractError,
    KafkaError,
    ProducerBufferFullError,
)
from pipeline.contract import (
    EVENT_ADAPTER,
    SCHEMA_VERSION,
    LlmCall,
    TaskFeedback,
    contract_error,
    fast_validator,
    validate_event,
)
from pipeline.settings import Settings

__all__ = ["UsageProducer", "RawMessage", "new_event_id", "serialize_event", "ErrorCallback"]

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
# What waits for the broker, beside its handle: an event as the bytes sent (the event is
# rebuilt from them if it fails: bytes are no work for the garbage collector, a model held
# until the broker answers is), a RawMessage, or a (key, value) tuple of send_raw_many.
_Item = bytes | RawMessage | tuple[bytes | None, bytes | None]


# Event ids: a random 64-bit prefix per process (from the OS, so seeding the global `random`,
# as the simulator does, changes nothing; new in a forked child) and a counter: unique
# without a random draw per event (os.urandom per event is a system call that releases the
# GIL, and winning it back from the Kafka client's I/O thread costs more than the rest).
def _reset_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count(int.from_bytes(os.urandom(4)))


_id_prefix: str
_id_counter: itertools.count[int]
_reset_ids()
os.register_at_fork(after_in_child=_reset_ids)


def new_event_id() -> str:
    """A fresh event id: 32 hex digits, a random per-process prefix then a counter."""
    return f"{_id_prefix}{next(_id_counter):016x}"


def serialize_event(event: Event) -> bytes:
    """The message value the SDK sends for ``event``: its compact JSON (optional fields that
    are unset as ``null``; ``occurred_at`` in UTC), read back equal by
    :func:`pipeline.contract.parse_event`. orjson on the validated fields: a third of the
    cost of pydantic's serialiser."""
    return _dumps(event.__dict__)


_dumps = orjson.dumps
_UTC = dt.UTC
_now = dt.datetime.now
# The contract's checks compiled from the models (pydantic's verdicts, pydantic's errors).
_validate_llm_call = fast_validator(LlmCall)
_validate_task_feedback = fast_validator(TaskFeedback)
# Rebuilding a failed event from its bytes: the contract held when it was sent.
_REBUILD_CONTEXT = {"now": dt.datetime(9000, 1, 1, tzinfo=dt.UTC)}

# How often (in sends) acknowledged events are taken off the pending queue.
_PRUNE_EVERY = 1024


class UsageProducer:
    """Validate usage events and produce them to Kafka; a context manager.

    Keyword arguments:
        max_buffer: most events awaiting the broker's acknowledgement at once.
        max_block_ms: how long ``send`` waits for room before raising.
        on_error: ``on_error(event, error)`` for each event the broker did not take.
        create_topics: create the topic (6 partitions) and its ``.dlq`` twin when missing.
        kafka_options: further producer settings in kafka-python names (``linger_ms``,
            ``batch_size``, ``compression_type``, ``delivery_timeout_ms``, ...); with the
            confluent transport they are mapped to librdkafka's names (which are accepted
            as they are too, e.g. ``**{"queue.buffering.max.ms": 5}``).

    The Kafka client is ``settings.kafka_client`` (``MODELMETER_KAFKA_CLIENT``):
    ``confluent`` (librdkafka, the default) or ``kafka-python`` (see :mod:`pipeline.transport`).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        max_buffer: int = 100_000,
        max_block_ms: int = 60_000,
        on_error: ErrorCallback | None = None,
        create_topics: bool = True,
        **kafka_options: Any,
    ) -> None:
        from pipeline.kafka_admin import ensure_topics
        from pipeline.transport import open_producer

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
        # Sent and not yet known to be done, oldest first: the transport's handles and, in
        # step, what each carried (two deques: no tuple per event).
        self._handles: collections.deque[Any] = collections.deque()
        self._items: collections.deque[_Item] = collections.deque()
        # Reentrant: on_error runs under it and may send again.
        self._lock = threading.RLock()
        self._closed = False
        if create_topics:
            ensure_topics(self.settings)
        self._transport = open_producer(
            self.settings, self.topic, max_buffer=max_buffer, options=kafka_options
        )
        self._send = self._transport.send

    @property
    def kafka_client(self) -> str:
        """The transport in use: ``confluent`` or ``kafka-python``."""
        return self._transport.name

    # -- building events -------------------------------------------------------------------

    def llm_call(
        self,
        *,
        role: str,
        agent_id: str,
        task_id: str,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_5m_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        latency_ms: int | None = None,
        status: Literal["ok", "error"] = "ok",
        escalated: bool = False,
        escalation_trigger: str | None = None,
        policy_version: str | None = None,
        task_type: str | None = None,
        event_id: str | None = None,
        occurred_at: dt.datetime | None = None,
    ) -> LlmCall:
        """Validate and send one ``llm_call``; returns the event sent.

        ``event_id`` (random) and ``occurred_at`` (now, UTC) are filled in when not given;
        pass the same ``event_id`` to re-send an event (it is then counted once).
        """
        try:
            # positional, in LlmCall's field order (tests/integration/test_sdk.py checks it)
            event: LlmCall = _validate_llm_call(
                f"{_id_prefix}{next(_id_counter):016x}" if event_id is None else event_id,
                "llm_call",
                SCHEMA_VERSION,
                _now(_UTC) if occurred_at is None else occurred_at,
                agent_id,
                task_id,
                role,
                provider,
                model,
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_write_5m_tokens,
                cache_write_1h_tokens,
                latency_ms,
                status,
                escalated,
                escalation_trigger,
                policy_version,
                task_type,
            )
        except ValidationError as exc:
            raise contract_error(exc) from None
        value = _dumps(event.__dict__)
        self._queue(value, task_id.encode(), value)
        return event

    def task_feedback(
        self,
        *,
        role: str,
        agent_id: str,
        task_id: str,
        satisfaction: int | None = None,
        escalation_needed: bool | None = None,
        review_consistent: bool | None = None,
        event_id: str | None = None,
        occurred_at: dt.datetime | None = None,
    ) -> TaskFeedback:
        """Validate and send one ``task_feedback``; returns the event sent."""
        try:
            # positional, in TaskFeedback's field order
            feedback: TaskFeedback = _validate_task_feedback(
                f"{_id_prefix}{next(_id_counter):016x}" if event_id is None else event_id,
                "task_feedback",
                SCHEMA_VERSION,
                _now(_UTC) if occurred_at is None else occurred_at,
                agent_id,
                task_id,
                role,
                satisfaction,
                escalation_needed,
                review_consistent,
            )
        except ValidationError as exc:
            raise contract_error(exc) from None
        value = _dumps(feedback.__dict__)
        self._queue(value, task_id.encode(), value)
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
        value = serialize_event(event)
        self._queue(value, event.task_id.encode(), value)
        return event

    def send_raw(self, key: bytes | None, value: bytes | None) -> None:
        """Send bytes as they are, NOT validated. For tests and the simulator's deliberately
        bad messages only: agents use :meth:`llm_call`, :meth:`task_feedback` or :meth:`send`."""
        self._queue(RawMessage((key, value)), key, value)

    def send_raw_many(self, messages: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """:meth:`send_raw` for each ``(key, value)`` of ``messages`` (NOT validated), with
        the per-message bookkeeping hoisted out of the loop; returns how many were sent.
        Same buffer bound, errors and delivery reports as :meth:`send_raw`."""
        if self._closed:
            raise KafkaError("the usage producer is closed")
        count = 0
        with self._lock:
            send, max_buffer, mask = self._send, self.max_buffer, _PRUNE_EVERY - 1
            handles, items = self._handles, self._items
            for message in messages:
                if len(handles) >= max_buffer or not self.sent & mask:
                    self._queue(RawMessage(message), message[0], message[1])
                else:
                    try:
                        handle = send(message[1], message[0])
                    except Exception as exc:
                        handle = self._retry_full(exc, message[0], message[1])
                    handles.append(handle)
                    # the tuple itself; _report wraps it in a RawMessage if it ever fails
                    items.append(message)
                    self.sent += 1
                count += 1
        return count

    # -- delivery --------------------------------------------------------------------------

    def _queue(self, item: _Item, key: bytes | None, value: bytes | None) -> None:
        if self._closed:
            raise KafkaError("the usage producer is closed")
        with self._lock:
            handles = self._handles
            if len(handles) >= self.max_buffer:
                self._make_room()
            elif not self.sent & (_PRUNE_EVERY - 1):
                self._transport.serve()
                self._prune()
            try:
                handle = self._send(value, key)
            except Exception as exc:
                handle = self._retry_full(exc, key, value)
            handles.append(handle)
            self._items.append(item)
            self.sent += 1

    def _retry_full(self, exc: Exception, key: bytes | None, value: bytes | None) -> Any:
        """The client's own buffer was full (confluent): wait for room like :meth:`_make_room`."""
        from pipeline.transport import BufferFull

        if not isinstance(exc, BufferFull):
            raise self._transport.translate(exc) from None
        deadline = time.monotonic() + self.max_block_ms / 1000
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._buffer_full_error()
            if self._handles:
                self._transport.wait(self._handles[0], min(remaining, 0.1))
            self._prune()
            try:
                return self._send(value, key)
            except BufferFull:
                continue
            except Exception as error:
                raise self._transport.translate(error) from None

    def _buffer_full_error(self) -> ProducerBufferFullError:
        return ProducerBufferFullError(
            f"{len(self._handles)} usage events are still waiting for the Kafka broker at"
            f" {self.settings.kafka_bootstrap_servers} after {self.max_block_ms} ms"
            f" (max_buffer={self.max_buffer}); the broker is slow or unreachable and this"
            " event was not queued"
        )

    def _prune(self) -> None:
        """Take acknowledged (or failed) events off the front of the pending queue."""
        handles, items = self._handles, self._items
        delivered = 0
        while handles and handles[0].is_done:
            error = handles.popleft().exception
            item = items.popleft()
            if error is not None:
                self._report(item, error)
            else:
                delivered += 1
        self.delivered += delivered

    def _make_room(self) -> None:
        deadline = time.monotonic() + self.max_block_ms / 1000
        self._transport.serve()
        self._prune()
        while len(self._handles) >= self.max_buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._buffer_full_error()
            self._transport.wait(self._handles[0], min(remaining, 0.5))
            self._prune()
            if len(self._handles) >= self.max_buffer:
                self._prune_anywhere()

    def _prune_anywhere(self) -> None:
        """Drop finished events from anywhere in the queue (a slow partition at the front);
        the deques are updated in place (callers may hold them)."""
        handles, items = self._handles, self._items
        pairs = list(zip(handles, items, strict=True))
        handles.clear()
        items.clear()
        for handle, item in pairs:
            if not handle.is_done:
                handles.append(handle)
                items.append(item)
            elif handle.exception is not None:
                self._report(item, handle.exception)
            else:
                self.delivered += 1

    def _report(self, item: _Item, error: Exception) -> None:
        reported: Event | RawMessage
        if isinstance(item, bytes):  # an event, as sent: valid then, so it parses back
            reported = EVENT_ADAPTER.validate_json(item, context=_REBUILD_CONTEXT)
        elif isinstance(item, RawMessage):
            reported = item
        else:  # a plain (key, value) tuple of send_raw_many
            reported = RawMessage(item)
        self.undelivered.append((reported, error))
        self._failed_since_flush += 1
        if self.on_error is not None:
            self.on_error(reported, error)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event sent so far is acknowledged or has failed.

        Raises :class:`KafkaError` when events are still pending after ``timeout`` seconds, or
        when events sent since the last flush could not be delivered (they went to
        ``on_error`` and are in :attr:`undelivered`).
        """
        with self._lock:
            done = self._transport.flush(timeout)
            self._prune_anywhere()
            if not done:
                raise KafkaError(
                    f"{len(self._handles)} usage events not acknowledged by the Kafka broker at"
                    f" {self.settings.kafka_bootstrap_servers} within {timeout} s"
                )
            failed, self._failed_since_flush = self._failed_since_flush, 0
        if failed:
            first = self.undelivered[-failed][1]
            raise KafkaError(
                f"{failed} usage events could not be delivered to {self.topic!r} at"
                f" {self.settings.kafka_bootstrap_servers} (first: {type(first).__name__}:"
                f" {first}); they were passed to on_error and are in producer.undelivered"
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush (see :meth:`flush`, which may raise) and close the Kafka client.

        With a ``timeout`` that runs out, the events still unacknowledged are reported to
        ``on_error`` and :attr:`undelivered` as well (they may yet arrive: re-sending them is
        safe, the same ``event_id`` is counted once).
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout)
        finally:
            with self._lock:
                self._prune_anywhere()
                unfinished = list(self._items)
                for item in unfinished:
                    self._report(
                        item,
                        KafkaError(
                            f"not acknowledged by the broker within close(timeout={timeout})"
                        ),
                    )
                self._handles.clear()
                self._items.clear()
                self._failed_since_flush = 0
            self._transport.close(0 if unfinished else timeout)

    def __enter__(self) -> UsageProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Events sent and not yet known to be acknowledged (an upper bound)."""
        return len(self._handles)
