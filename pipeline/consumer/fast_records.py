"""kafka-python's per-message decoding, replaced in the consumer by a lean one.

kafka-python 3.0.12 decodes every fetched message in pure Python: a ``DefaultRecord`` (seven
``decode_varint`` calls, properties recomputed per field, headers parsed) and then a 13-field
``ConsumerRecord`` with deserializer calls and size sums. py-spy on a poll-only pass over 200k
events put two thirds of the poll thread's time there; with this module the same pass costs
3.6-4.2 instead of 7.4-8.1 us of CPU per event (start-up included). The consumer needs three things of a message:
offset, key and value. :class:`LeanPartitionRecords` gives exactly those, as
``(offset, key, value)`` tuples, and leaves everything else (fetch requests, the group
protocol, positions, CRC checks of each batch, decompression, control batches, aborted
transactions) to kafka-python.

It is installed on one consumer (:func:`install`), not on kafka-python's classes. What it
relies on is checked there: the kafka-python version ``pyproject.toml`` pins
(``install`` raises :class:`~pipeline.ConfigError` on another one, so an upgrade is a decision, taken with the unit tests of
``tests/unit/test_fast_records.py``, which compare it with kafka-python's own decoding).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kafka
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record.default_records import DefaultRecordBatch

from pipeline._exceptions import ConfigError
from pipeline.kafka_connect import KAFKA_PYTHON_CHECKED, kafka_python_checked

__all__ = ["LeanPartitionRecords", "install", "decode_batch"]


def _zigzag_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A signed (zigzag) varint of a record, and the position after it."""
    value = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift >= 64:
            raise CorruptRecordError("varint out of int64 range")


def decode_batch(buf: bytes, pos: int, count: int, base_offset: int
                 ) -> tuple[list[int], list[bytes | None], list[bytes | None]]:
    """Offsets, keys and values of the ``count`` records of a v2 record batch whose
    (uncompressed) records start at ``buf[pos]``.

    A record is ``length attributes timestamp_delta offset_delta key_length key value_length
    value headers`` (all lengths and deltas zigzag varints). Timestamps and headers are not
    used by the consumer: they are skipped (the record's length says where it ends). The
    common case, a field of one or two bytes, is decoded inline.
    """
    offsets: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    end_of_buffer = len(buf)
    varint = _zigzag_varint
    try:
        for _ in range(count):
            b = buf[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                length, pos = varint(buf, pos)
            end = pos + length
            if length < 0 or end > end_of_buffer:
                raise CorruptRecordError(f"record length {length} runs past its batch")
            pos += 1  # attributes (unused, always one byte)
            # timestamp delta: skipped
            while buf[pos] >= 0x80:
                pos += 1
            pos += 1
            b = buf[pos]
            if b < 0x80:
                offsets.append(base_offset + ((b >> 1) ^ -(b & 1)))
                pos += 1
            else:
                delta, pos = varint(buf, pos)
                offsets.append(base_offset + delta)
            b = buf[pos]
            if b == 1:  # -1: null key (the usual case)
                keys.append(None)
                pos += 1
            else:
                n, pos = varint(buf, pos)
                if n < 0:
                    keys.append(None)
                else:
                    keys.append(buf[pos:pos + n])
                    pos += n
            n, pos = varint(buf, pos)
            if n < 0:
                values.append(None)
            else:
                values.append(buf[pos:pos + n])
                pos += n
            if pos > end:
                raise CorruptRecordError(f"record at offset {offsets[-1]} runs past its length")
            pos = end  # headers: skipped
    except IndexError:
        raise CorruptRecordError("record batch ends inside a record") from None
    if pos != end_of_buffer:
        raise CorruptRecordError(f"{end_of_buffer - pos} unconsumed bytes after all records")
    return offsets, keys, values


class LeanPartitionRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """kafka-python's ``Fetcher.PartitionRecords`` yielding ``(offset, key, value)`` tuples.

    Batches kafka-python must look at record by record (legacy message formats v0/v1, and
    transactional reads with ``isolation_level=read_committed``) go through kafka-python's
    own decoding and are then reduced to the same tuples.
    """

    def _maybe_skip_record(self, record: tuple[int, Any, Any]) -> bool:
        return record[0] < self.fetch_offset

    def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any,
                        value_deserializer: Any) -> Iterator[tuple[int, Any, Any]]:
        if (key_deserializer is not None or value_deserializer is not None
                or self.isolation_level != IsolationLevel.READ_UNCOMMITTED):
            for r in super()._unpack_records(tp, records, key_deserializer, value_deserializer):
                yield (r.offset, r.key, r.value)
            return
        batch = records.next_batch()
        last_batch = None
        while batch is not None:
            last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise CorruptRecordError(
                    f"Record batch for partition {tp} at offset {batch.base_offset}"
                    " failed crc check")
            if not isinstance(batch, DefaultRecordBatch):  # message format v0/v1
                for record in batch:
                    if self.check_crcs and not record.validate_crc():
                        raise CorruptRecordError(
                            f"Record for partition {tp} at offset {record.offset} failed"
                            " crc check")
                    self.records_read += 1
                    self.bytes_read += record.size_in_bytes
                    self.next_fetch_offset = record.offset + 1
                    yield (record.offset, record.key, record.value)
            else:
                self.leader_epoch = batch.leader_epoch
                if batch.is_control_batch:  # transaction markers are not messages
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
                batch._maybe_uncompress()
                buf = bytes(batch._buffer)
                offsets, keys, values = decode_batch(buf, batch._pos, batch.records_count,
                                                     batch.base_offset)
                self.records_read += len(offsets)
                # (fetch metrics; kafka-python's sum leaves the records' length prefixes out)
                self.bytes_read += len(buf) - batch._pos
                for record in zip(offsets, keys, values, strict=True):
                    self.next_fetch_offset = record[0] + 1
                    yield record
            batch = records.next_batch()
        # format v2 keeps a batch's last offset even when compaction removed its last record
        if last_batch is not None and isinstance(last_batch, DefaultRecordBatch):
            self.next_fetch_offset = last_batch.next_offset
        self.drain()


def install(consumer: Any) -> None:
    """Make ``consumer`` (a ``kafka.KafkaConsumer``) return ``(offset, key, value)`` tuples
    from ``poll()`` instead of ``ConsumerRecord`` objects."""
    if not kafka_python_checked():
        raise ConfigError(
            f"kafka-python {kafka.__version__} is installed, but the consumer's message"
            f" decoding was checked against {', '.join(KAFKA_PYTHON_CHECKED)} only: install"
            f" that version (pyproject.toml pins it) or use --kafka-client confluent")
    consumer._fetcher.PartitionRecords = LeanPartitionRecords
