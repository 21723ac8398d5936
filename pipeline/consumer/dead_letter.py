"""The dead-letter topic: where the consumer sends every message that breaks the contract.

A dead letter is the refused message, key and value byte for byte, with headers ``error``
(field and problem, one printable line), ``source_topic``, ``source_partition`` and
``source_offset``. Whatever the message was, the consumer never stops on it:

* a message the DLQ cannot take as it is - larger than the DLQ topic allows, refused by the
  broker (authorization, invalid record), a null key together with a null value
  (kafka-python refuses to send that, and a reader of the DLQ would take it for a
  tombstone), or still undelivered after ``MODELMETER_DLQ_RETRY_SECONDS`` of retries - gets a **reduced dead letter** instead: the same four headers plus ``dead_letter:
  reduced``, ``dead_letter_reason`` (why the original could not go), ``original_key_length``
  and ``original_value_length`` (bytes; ``null`` for a null key or value),
  ``original_key_sha256`` and ``original_value_sha256``, with the key and the value cut to
  their first :data:`REDUCED_KEY_BYTES` / :data:`REDUCED_VALUE_BYTES` bytes. Such a message
  counts in ``dlq_failed``: the whole original is only in the lake's ``_rejected`` table.
* a reduced dead letter that is refused too is logged and counted the same way; the
  consumer carries on (the original stays in ``_rejected``).
* a transient error (broker away, leader moving, request timeout) is retried with back-off
  for up to ``MODELMETER_DLQ_RETRY_SECONDS`` (default 300): the flush, and so the commit,
  waits, nothing is skipped during an ordinary broker restart.

The DLQ is at-least-once (a crash between the DLQ's acks and the commit re-sends that
flush's dead letters): consumers of the DLQ count a dead letter once per
(``source_topic``, ``source_partition``, ``source_offset``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.consumer.validate import Reject
from pipeline.safe_text import visible
from pipeline.settings import Settings

__all__ = [
    "DeadLetter",
    "DLQ_MAX_REQUEST_BYTES",
    "REDUCED_KEY_BYTES",
    "REDUCED_VALUE_BYTES",
    "reduced_headers",
    "DeliveryError",
]

log = logging.getLogger(__name__)

# The producer's own limit: large enough for any message the broker accepted on the source
# topic with its default limits; a larger one gets a reduced dead letter.
DLQ_MAX_REQUEST_BYTES = 16 * 1024 * 1024
REDUCED_KEY_BYTES = 1024
REDUCED_VALUE_BYTES = 16 * 1024
_FIRST_PAUSE, _LONGEST_PAUSE = 0.5, 10.0


@dataclass(slots=True)
class _Letter:
    """One dead letter to deliver: the reject, and whether it is the reduced form yet."""

    reject: Reject
    reduced_because: str | None = None  # set once the original was refused
    # sent on its own: a broker refuses a whole batch for one record in it (too large), so a
    # refused letter is tried alone before it counts as refused
    alone: bool = False


def _length(data: bytes | None) -> bytes:
    return b"null" if data is None else str(len(data)).encode()


def _sha256(data: bytes | None) -> bytes:
    return b"" if data is None else hashlib.sha256(data).hexdigest().encode()


def reduced_headers(reject: Reject, reason: str) -> list[tuple[str, bytes]]:
    """The headers a reduced dead letter adds to the usual four."""
    return [
        ("dead_letter", b"reduced"),
        ("dead_letter_reason", visible(reason)[:300].encode()),
        ("original_key_length", _length(reject.key)),
        ("original_value_length", _length(reject.value)),
        ("original_key_sha256", _sha256(reject.key)),
        ("original_value_sha256", _sha256(reject.value)),
    ]


def _why(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class DeliveryError(Exception):
    """librdkafka's refusal of one dead letter (its error name and text); ``retriable`` like
    kafka-python's errors: a broker away, a leader moving, a request or message timeout."""

    def __init__(self, error: Any) -> None:
        from confluent_kafka import KafkaError as CKError

        super().__init__(f"{error.name()}: {error.str()}")
        self.retriable = not error.fatal() and (
            error.retriable()
            or error.code()
            in (
                CKError._MSG_TIMED_OUT,
                CKError._TIMED_OUT,
                CKError._TRANSPORT,
                CKError._ALL_BROKERS_DOWN,
                CKError.REQUEST_TIMED_OUT,
                CKError.NETWORK_EXCEPTION,
                CKError.NOT_LEADER_FOR_PARTITION,
                CKError.LEADER_NOT_AVAILABLE,
            )
        )


class NullKeyAndValue(ValueError):
    """A dead letter with neither key nor value: kafka-python refuses to send one, and a
    consumer of the DLQ would take it for a tombstone; it goes reduced on both clients."""


# The dead-letter producer's settings (kafka-python names; librdkafka gets the same through
# pipeline.kafka_config.confluent_config). Not idempotent: one refused record (too large)
# puts an idempotent producer in a fatal state that fails every later send; the DLQ is
# at-least-once anyway.
DLQ_PRODUCER: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "retries": 2_147_483_647,
    "enable_idempotence": False,
    "max_request_size": DLQ_MAX_REQUEST_BYTES,
    "delivery_timeout_ms": 120_000,
    "client_id": "modelmeter-dlq",
}


class DeadLetter:
    """Sends invalid messages to ``<topic>.dlq`` with the reason in headers (see module),
    with the producer of the client ``MODELMETER_KAFKA_CLIENT`` names."""

    def __init__(self, settings: Settings, *, retry_seconds: float | None = None) -> None:
        self.topic = settings.topic
        self.dlq_topic = settings.dlq_topic
        self.retry_seconds = settings.dlq_retry_seconds if retry_seconds is None else retry_seconds
        self.kafka_client = settings.kafka_client
        self._settings = settings
        self._made: Any = None

    @property
    def _producer(self) -> Any:
        """The producer, made at the first dead letter: a flush without rejects never needs
        it, so a broker that goes away before then does not fail the flush (the commit after
        it reports the outage)."""
        if self._made is None:
            if self.kafka_client == "kafka-python":
                from kafka import KafkaProducer

                from pipeline.kafka_connect import create_client

                self._made = create_client(KafkaProducer, self._settings, **DLQ_PRODUCER)
            else:
                from pipeline.kafka_connect import create_confluent_producer

                self._made = create_confluent_producer(self._settings, DLQ_PRODUCER)
        return self._made

    def send(self, rejects: Iterable[Reject]) -> int:
        """Deliver a dead letter for every reject and wait for the acks; returns how many
        went only in their reduced form or not at all (``dlq_failed``)."""
        pending = [_Letter(r) for r in rejects]
        failed = 0
        deadline = time.monotonic() + self.retry_seconds
        pause = _FIRST_PAUSE
        last_round = False
        while pending:
            retry: list[_Letter] = []
            transient = False
            for letter, error, before_sending in self._attempt(pending):
                if error is None:
                    failed += letter.reduced_because is not None
                elif getattr(error, "retriable", False):  # kafka-python's flag, DeliveryError's
                    retry.append(letter)
                    transient = True
                elif not (letter.alone or before_sending):  # maybe another record's fault
                    letter.alone = True
                    retry.append(letter)
                elif letter.reduced_because is None:  # refused as it is: the reduced form next
                    letter.alone = True
                    self._reduce(letter, _why(error))
                    retry.append(letter)
                else:
                    log.error(
                        "offset %s of partition %s: the reduced dead letter was refused "
                        "too (%s); the message stays in _rejected only",
                        letter.reject.offset,
                        letter.reject.partition,
                        visible(_why(error)),
                    )
                    failed += 1
            pending = retry
            if not pending:
                break
            if last_round:
                log.error(
                    "%s dead letters not delivered within %g s of retries; the messages"
                    " stay in _rejected only",
                    len(pending),
                    self.retry_seconds,
                )
                failed += len(pending)
                break
            if time.monotonic() >= deadline:  # one more round, each as a reduced letter
                last_round = True
                for letter in pending:
                    if letter.reduced_because is None:
                        self._reduce(letter, f"not acknowledged within {self.retry_seconds:g} s")
            elif transient:
                log.warning(
                    "dead-letter send failed for %s messages; retrying in %g s", len(pending), pause
                )
                time.sleep(pause)
                pause = min(pause * 2, _LONGEST_PAUSE)
        return failed

    def _attempt(self, letters: list[_Letter]) -> list[tuple[_Letter, BaseException | None, bool]]:
        """Send ``letters`` and wait for the acks: each with its error (or None) and whether
        the producer refused it before sending. Letters tried alone go one send at a time."""
        outcomes: list[tuple[_Letter, BaseException | None, bool]] = []
        together = [x for x in letters if not x.alone]
        send_group = (
            self._send_kafka_python if self.kafka_client == "kafka-python" else self._send_confluent
        )
        for group in [together] * bool(together) + [[x] for x in letters if x.alone]:
            ready = []
            for letter in group:
                key, value, headers = self._message(letter)
                if key is None and value is None:
                    outcomes.append(
                        (
                            letter,
                            NullKeyAndValue("a null key with a null value is not sent as it is"),
                            True,
                        )
                    )
                else:
                    ready.append((letter, key, value, headers))
            if ready:
                outcomes += send_group(ready)
        return outcomes

    def _send_kafka_python(
        self, group: list[tuple[_Letter, bytes | None, bytes | None, Any]]
    ) -> list[tuple[_Letter, BaseException | None, bool]]:
        outcomes: list[tuple[_Letter, BaseException | None, bool]] = []
        sent = []
        for letter, key, value, headers in group:
            try:
                sent.append(
                    (
                        letter,
                        self._producer.send(self.dlq_topic, key=key, value=value, headers=headers),
                    )
                )
            except Exception as exc:  # refused before sending: too large
                outcomes.append((letter, exc, True))
        if sent:
            self._producer.flush()
        for letter, future in sent:
            try:
                future.get(timeout=0)
            except Exception as exc:
                outcomes.append((letter, exc, False))
            else:
                outcomes.append((letter, None, False))
        return outcomes

    def _send_confluent(
        self, group: list[tuple[_Letter, bytes | None, bytes | None, Any]]
    ) -> list[tuple[_Letter, BaseException | None, bool]]:
        from confluent_kafka import KafkaException

        outcomes: list[tuple[_Letter, BaseException | None, bool]] = []
        reports: list[tuple[_Letter, list[Any]]] = []
        for letter, key, value, headers in group:
            report: list[Any] = []  # [error or None] once librdkafka reports the delivery
            while True:
                try:
                    self._producer.produce(
                        self.dlq_topic,
                        value=value,
                        key=key,
                        headers=headers,
                        on_delivery=lambda err, _msg, r=report: r.append(err),
                    )
                except BufferError:  # librdkafka's queue is full: serve reports, then again
                    self._producer.poll(0.1)
                    continue
                except KafkaException as exc:  # refused before sending: too large
                    outcomes.append((letter, DeliveryError(exc.args[0]), True))
                else:
                    reports.append((letter, report))
                break
        if reports:
            self._producer.flush()  # every report arrives within message.timeout.ms
        for letter, report in reports:
            error = report[0] if report else None
            if not report:  # not reported (cannot happen after flush): try again
                outcomes.append((letter, TimeoutError("no delivery report"), False))
            elif error is None:
                outcomes.append((letter, None, False))
            else:
                outcomes.append((letter, DeliveryError(error), False))
        return outcomes

    def _reduce(self, letter: _Letter, reason: str) -> None:
        r = letter.reject
        log.error(
            "offset %s of partition %s not dead-lettered as it is (%s); a reduced dead "
            "letter is sent and the whole message stays in _rejected",
            r.offset,
            r.partition,
            visible(reason),
        )
        letter.reduced_because = reason

    def _message(
        self, letter: _Letter
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        r = letter.reject
        headers = [
            ("error", visible(r.error).encode()),
            ("source_topic", self.topic.encode()),
            ("source_partition", str(r.partition).encode()),
            ("source_offset", str(r.offset).encode()),
        ]
        if letter.reduced_because is None:
            return r.key, r.value, headers
        key = None if r.key is None else r.key[:REDUCED_KEY_BYTES]
        value = (r.value or b"")[:REDUCED_VALUE_BYTES]  # never both null
        return key, value, headers + reduced_headers(r, letter.reduced_because)

    def send_rejected(self, table: Any) -> tuple[int, int]:
        """Dead-letter again the rejects of a ``_rejected`` table read from the lake (crash
        recovery: its flush was written but maybe not dead-lettered); (sent, dlq_failed)."""
        rejects = [
            Reject(
                row["kafka_partition"],
                row["kafka_offset"],
                row["raw_key"],
                row["raw_value"],
                row["error"],
            )
            for row in table.to_pylist()
        ]
        return len(rejects), self.send(rejects)

    def close(self) -> None:
        if self._made is None:
            return
        if self.kafka_client == "kafka-python":
            self._producer.close(timeout=10)
        else:
            self._producer.flush(10)
