"""kafka-python's per-message decoding, replaced in the consumer by a lean one.

kafka-python 3.0.12 decodes every fetched message in pure Python: a ``DefaultRecord`` (seven
``decode_varint`` calls, properties recomputed per field, headers parsed) and then a 13-field
``ConsumerRecord`` with deserializer calls and size sums. py-spy on a poll-only pass over 200k
events put two thirds of the poll thread's time there; with this module the same pass costs
3.6-4.2 instead of 7.4-8.1 us of CPU per event (start-up included).

The consumer needs three things of a message: offset, key and value.
:class:`LeanPartitionRecords` gives exactly those, as ``(offset, key, value)`` tuples, after
reading and checking each record as kafka-python does (a malformed record raises the same
``CorruptRecordError``, after the good records before it). Everything else stays
kafka-python's: fetch requests, the group protocol, positions, each batch's CRC check,
decompression, control batches, aborted transactions.

It is installed on one consumer (:func:`install`), not on kafka-python's classes, and only
``poll()`` is supported on that consumer (iterating over it expects ``ConsumerRecord``
objects). :func:`install` raises :class:`~pipeline.ConfigError` on a kafka-python version
other than those of :data:`pipeline.kafka_connect.KAFKA_PYTHON_CHECKED` (the one
``pyproject.toml`` pins): moving the pin is a decision, taken with
``tests/unit/test_fast_records.py``, which compares this decoding with kafka-python's.
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
            raise CorruptRecordError("Found invalid record structure: varint out of int64 range")


def _skip_headers(buf: bytes, pos: int) -> int:
    """Check a record's headers as kafka-python reads them; the position after them."""
    varint = _zigzag_varint
    count, pos = varint(buf, pos)
    if count < 0:
        raise CorruptRecordError(f"Found invalid number of record headers {count}")
    for _ in range(count):
        n, pos = varint(buf, pos)
        if n < 0:
            raise CorruptRecordError(f"Invalid negative header key size {n}")
        buf[pos:pos + n].decode("utf-8")  # a header key is a string
        pos += n
        n, pos = varint(buf, pos)
        if n > 0:
            pos += n
    return pos


def _decode(buf: bytes, pos: int, count: int, base_offset: int
            ) -> tuple[list[int], list[bytes | None], list[bytes | None], list[int],
                       CorruptRecordError | None]:
    """The records of a v2 batch up to the first bad one: offsets, keys, values, record sizes
    (as kafka-python counts them), and the error that stopped decoding (None: all good).

    A record is ``length attributes timestamp_delta offset_delta key_length key value_length
    value header_count headers`` (all zigzag varints as kafka-python reads them, but key,
    value and headers). Everything is read and checked as kafka-python's
    ``DefaultRecordBatch`` does; the timestamps and headers are not kept (the consumer
    does not use them). The common case of each field, one or two bytes, is decoded inline.
    """
    offsets: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    sizes: list[int] = []
    add_offset, add_key, add_value, add_size = (offsets.append, keys.append, values.append,
                                                sizes.append)
    end_of_buffer = len(buf)
    varint = _zigzag_varint
    try:
        for _ in range(count):
            b = buf[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif buf[pos + 1] < 0x80:  # two bytes: records of 64 to 8191 bytes
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                length = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                length, pos = varint(buf, pos)
            end = pos + length
            if length < 0 or end > end_of_buffer:
                raise CorruptRecordError(f"Invalid record size {length}: it runs past its batch")
            if buf[pos] < 0x80:  # attributes (unused; a varint to kafka-python)
                pos += 1
            else:
                _, pos = varint(buf, pos)
            if buf[pos] < 0x80:  # timestamp delta (unused)
                pos += 1
            else:
                _, pos = varint(buf, pos)
            b = buf[pos]
            if b < 0x80:
                delta = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                delta, pos = varint(buf, pos)
            if buf[pos] == 1:  # key length -1: no key (the usual case)
                key = None
                pos += 1
            else:
                n, pos = varint(buf, pos)
                if n >= 0:
                    key = buf[pos:pos + n]
                    pos += n
                else:
                    key = None
            # the value length, decoded inline as the record length above: a helper call
            # for each of the two cost ~0.15 us per record (the hot path of the poller)
            b = buf[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            elif buf[pos + 1] < 0x80:  # two bytes: values of 64 to 8191 bytes
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                n = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                n, pos = varint(buf, pos)
            if n >= 0:
                value = buf[pos:pos + n]
                pos += n
            else:
                value = None
            if buf[pos] == 0:  # no headers (the usual case)
                pos += 1
            else:
                pos = _skip_headers(buf, pos)
            if pos != end:
                raise CorruptRecordError(
                    f"Invalid record size: expected to read {length} bytes in record payload,"
                    f" but instead read {pos - end + length}")
            add_offset(base_offset + delta)
            add_key(key)
            add_value(value)
            add_size(length)
    except CorruptRecordError as exc:
        return offsets, keys, values, sizes, exc
    except (IndexError, ValueError) as exc:  # ran off the buffer; a header key not UTF-8
        return offsets, keys, values, sizes, CorruptRecordError(
            f"Found invalid record structure: {exc!r}")
    error = None
    if pos != end_of_buffer:
        error = CorruptRecordError(f"{end_of_buffer - pos} unconsumed bytes after all records"
                                   " consumed")
    return offsets, keys, values, sizes, error


def decode_batch(buf: bytes, pos: int, count: int, base_offset: int
                 ) -> tuple[list[int], list[bytes | None], list[bytes | None]]:
    """Offsets, keys and values of the ``count`` records of a v2 record batch whose
    (uncompressed) records start at ``buf[pos]``; :class:`CorruptRecordError` where
    kafka-python's own decoding raises one."""
    offsets, keys, values, _, error = _decode(buf, pos, count, base_offset)
    if error is not None:
        raise error
    return offsets, keys, values


class LeanPartitionRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """kafka-python's ``Fetcher.PartitionRecords`` yielding ``(offset, key, value)`` tuples.

    Batches kafka-python must look at record by record (legacy message formats v0/v1, and
    transactional reads with ``isolation_level=read_committed``) go through kafka-python's
    own decoding and are then reduced to the same tuples.
    """

    next_fetch_offset: int  # kafka-python's: where the next fetch of the partition starts

    def _maybe_skip_record(self, record: tuple[int, Any, Any]) -> bool:
        return record[0] < self.fetch_offset

    def take(self, n: int | None = None) -> list[tuple[int, Any, Any]]:
        """kafka-python's ``take``; the position then follows the last record taken (the
        lean decoding does not move it per record; it moves it past control batches and,
        at the end of the data, past the last batch, which can only be further)."""
        records: list[tuple[int, Any, Any]] = super().take(n)
        if records and records[-1][0] >= self.next_fetch_offset:
            self.next_fetch_offset = records[-1][0] + 1
        return records

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
                offsets, keys, values, sizes, error = _decode(
                    bytes(batch._buffer), batch._pos, batch.records_count, batch.base_offset)
                # as kafka-python: the records before a bad one, then its error; the
                # records given are counted when the batch is done with or given up, and
                # the position follows them in take()
                given = 0
                try:
                    for record in zip(offsets, keys, values, strict=True):
                        given += 1
                        yield record
                finally:
                    self.records_read += given
                    self.bytes_read += sum(sizes if given == len(sizes) else sizes[:given])
                if error is not None:
                    raise error
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
