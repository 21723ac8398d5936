"""The consumer's lean record decoding (pipeline.consumer.fast_records) against kafka-python's.

Batches are built with kafka-python's own builders (the producer's code path), so every
comparison is with the format as kafka-python writes and reads it.
"""

from __future__ import annotations

import random
import struct

import kafka
import pytest
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.record.util import calc_crc32c
from kafka.structs import TopicPartition

from pipeline._exceptions import ConfigError
from pipeline.consumer import fast_records
from pipeline.consumer.fast_records import LeanPartitionRecords, decode_batch
from pipeline.kafka_connect import KAFKA_PYTHON_CHECKED

TP = TopicPartition("usage-events", 3)
GZIP = DefaultRecordBatch.CODEC_GZIP


def _messages(n: int, seed: int) -> list[tuple[int, bytes | None, bytes | None, list]]:
    """(timestamp, key, value, headers) with the awkward cases: null and empty keys and
    values, values needing 1-, 2- and 3-byte length varints, headers, timestamp jumps."""
    rng = random.Random(seed)
    out = []
    ts = 1_764_000_000_000
    for _ in range(n):
        ts += rng.choice((0, 1, 63, 64, 8_191, 8_192, 10**9))
        key = rng.choice((None, b"", b"agent-7", bytes(range(256)) * 2))
        size = rng.choice((0, 1, 63, 64, 424, 8_191, 8_192, 70_000))
        value = rng.choice((None, bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (
            size // 64 or 1)))
        headers = rng.choice(([], [("trace", b"x" * 70)], [("a", None), ("b", b"")]))
        out.append((ts, key, value, headers))
    return out


def _batch(messages: list, *, base_offset: int = 0, compression: int = 0,
           offset_step: int = 1, control: bool = False) -> bytes:
    """One v2 record batch as a broker stores it (base offset set, CRC valid)."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=compression,
                                        is_transactional=control,
                                        producer_id=7 if control else -1,
                                        producer_epoch=0 if control else -1,
                                        base_sequence=0 if control else -1,
                                        batch_size=10**8)
    for i, (ts, key, value, headers) in enumerate(messages):
        assert builder.append(i * offset_step, ts, key, value, headers) is not None
    buf = bytearray(builder.build())
    struct.pack_into(">q", buf, 0, base_offset)
    if control:  # attributes bit 5: a transaction marker batch
        attributes = struct.unpack_from(">h", buf, DefaultRecordBatch.ATTRIBUTES_OFFSET)[0]
        struct.pack_into(">h", buf, DefaultRecordBatch.ATTRIBUTES_OFFSET,
                         attributes | DefaultRecordBatch.CONTROL_MASK)
        crc = calc_crc32c(memoryview(buf)[DefaultRecordBatch.ATTRIBUTES_OFFSET:])
        struct.pack_into(">I", buf, DefaultRecordBatch.CRC_OFFSET, crc)
    return bytes(buf)


def _kafka_python(batch_bytes: bytes) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(r.offset, r.key, r.value) for r in DefaultRecordBatch(batch_bytes)]


def _lean(batch_bytes: bytes) -> list[tuple[int, bytes | None, bytes | None]]:
    batch = DefaultRecordBatch(batch_bytes)
    batch._maybe_uncompress()
    return list(zip(*decode_batch(bytes(batch._buffer), batch._pos, batch.records_count,
                                  batch.base_offset), strict=True))


@pytest.mark.parametrize("compression", [0, GZIP])
@pytest.mark.parametrize("seed", range(4))
def test_decode_batch_gives_what_kafka_python_gives(seed: int, compression: int) -> None:
    raw = _batch(_messages(60, seed), base_offset=10**12 + seed, compression=compression,
                 offset_step=1 + seed * 40)  # gaps as after compaction, deltas >= 64
    expected = _kafka_python(raw)
    got = _lean(raw)
    assert got == expected
    assert all(type(v) is bytes for _, k, v in got for v in (k, v) if v is not None)


@pytest.mark.parametrize("cut", [1, 7, 200])
def test_a_truncated_batch_is_a_corrupt_record_error(cut: int) -> None:
    batch = DefaultRecordBatch(_batch(_messages(20, 1)))
    body = bytes(batch._buffer)[:-cut]
    with pytest.raises(CorruptRecordError):
        decode_batch(body, batch._pos, batch.records_count, 0)


def test_bytes_left_after_the_last_record_are_a_corrupt_record_error() -> None:
    batch = DefaultRecordBatch(_batch(_messages(5, 2)))
    with pytest.raises(CorruptRecordError, match="unconsumed"):
        decode_batch(bytes(batch._buffer) + b"\0", batch._pos, batch.records_count, 0)


def test_a_record_whose_value_runs_past_its_length_is_a_corrupt_record_error() -> None:
    raw = bytearray(_batch([(1, None, b"abc", [])]))
    pos = DefaultRecordBatch.HEADER_STRUCT.size
    # record length 9: attributes, timestamp, offset, key length, value length, value (3),
    # header count
    assert raw[pos] == 2 * 9
    raw[pos] = 2 * 6  # claims 6 bytes: the value ends past them
    raw.append(0)  # so that the batch does not just end early
    with pytest.raises(CorruptRecordError):
        decode_batch(bytes(raw), pos, 1, 0)


# -- LeanPartitionRecords: kafka-python's fetch bookkeeping on the lean decoding ------------

def _partition_records(cls: type, raw: bytes, fetch_offset: int, **kw) -> object:
    return cls(fetch_offset, TP, MemoryRecords(raw), **kw)


def _take_all(part, sizes: list[int]) -> tuple[list, list[int]]:
    """Everything ``part`` gives in takes of ``sizes`` (repeated), and next_fetch_offset
    after each take."""
    got, positions = [], []
    i = 0
    while part:
        taken = part.take(sizes[i % len(sizes)])
        i += 1
        got += [(r[0], r[1], r[2]) if isinstance(r, tuple) and len(r) == 3
                else (r.offset, r.key, r.value) for r in taken]
        positions.append(part.next_fetch_offset)
    return got, positions


def _log(seed: int) -> tuple[bytes, int]:
    """Several batches as one fetch response holds them: plain, gzip, a transaction marker
    in between, offsets with gaps. Returns the bytes and the next offset after them."""
    rng = random.Random(seed)
    out, offset = b"", 1_000
    for i in range(6):
        n = rng.randint(1, 40)
        control = i == 3
        step = 1 if i % 2 else 3
        out += _batch(_messages(1 if control else n, seed * 10 + i), base_offset=offset,
                      compression=GZIP if i == 4 else 0, offset_step=step, control=control)
        offset += (1 if control else n - 1) * step + 1
    return out, offset


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("sizes", [[10_000], [1], [7, 3, 50]])
def test_takes_offsets_and_positions_match_kafka_pythons(seed: int, sizes: list[int]) -> None:
    raw, end = _log(seed)
    stock = _partition_records(Fetcher.PartitionRecords, raw, 1_000)
    lean = _partition_records(LeanPartitionRecords, raw, 1_000)
    expected, stock_positions = _take_all(stock, sizes)
    got, lean_positions = _take_all(lean, sizes)
    assert got == expected
    assert lean_positions == stock_positions
    assert lean_positions[-1] == end  # past the trailing batch
    assert (lean.records_read, lean.bytes_read) == (stock.records_read, stock.bytes_read)


def test_a_fetch_offset_inside_a_batch_skips_the_records_before_it() -> None:
    raw = _batch(_messages(30, 5), base_offset=500)
    stock, _ = _take_all(_partition_records(Fetcher.PartitionRecords, raw, 517), [100])
    got, _ = _take_all(_partition_records(LeanPartitionRecords, raw, 517), [100])
    assert got == stock
    assert [o for o, _, _ in got] == list(range(517, 530))


def _with_crc(buf: bytearray) -> bytes:
    """``buf`` with its batch CRC recomputed: damage that the CRC check cannot catch."""
    crc = calc_crc32c(memoryview(buf)[DefaultRecordBatch.ATTRIBUTES_OFFSET:])
    struct.pack_into(">I", buf, DefaultRecordBatch.CRC_OFFSET, crc)
    return bytes(buf)


def _simple(n: int, headers: list | None = None) -> bytearray:
    return bytearray(_batch([(1000 + i, b"k%d" % i, b"v%d" % i, list(headers or []))
                             for i in range(n)]))


def _malformed() -> dict[str, bytes]:
    cases = {}
    b = _simple(3)
    assert b[-1] == 0
    b[-1] = 0x01  # the last record's header count: -1
    cases["header count -1"] = _with_crc(b)
    b = _simple(3, [("k", b"v")])
    at = bytes(b).rfind(b"k\x02v")
    b[at] = 0xFF  # the last record's header key: not UTF-8
    cases["header key not UTF-8"] = _with_crc(b)
    b = _simple(5)
    struct.pack_into(">i", b, DefaultRecordBatch.HEADER_STRUCT.size - 4, 4)  # 5 records, says 4
    cases["bytes after the last record"] = _with_crc(b)
    b = _simple(1)
    pos = DefaultRecordBatch.HEADER_STRUCT.size
    assert b[pos + 1:pos + 3] == b"\x00\x00"  # attributes, timestamp delta 0
    b[pos] += 20  # the record 10 bytes longer (zigzag)...
    b[pos + 2:pos + 3] = b"\x80" * 10 + b"\x00"  # ...for an 11-byte timestamp delta
    struct.pack_into(">i", b, 8, struct.unpack_from(">i", b, 8)[0] + 10)
    cases["11-byte varint"] = _with_crc(b)
    return cases


def _outcome(cls: type, raw: bytes) -> list:
    """What successive takes of 2 give: offsets and position, or an error and position."""
    part = _partition_records(cls, raw, 0)
    out: list = []
    for _ in range(5):
        if not part:
            out.append("drained")
            break
        try:
            out.append(([r[0] if type(r) is tuple else r.offset for r in part.take(2)],
                        part.next_fetch_offset))
        except CorruptRecordError:
            out.append(("CorruptRecordError", part.next_fetch_offset))
    return out


@pytest.mark.parametrize("case", list(_malformed()))
def test_a_malformed_record_is_refused_after_the_good_ones_as_kafka_python_does(case: str
                                                                                ) -> None:
    raw = _malformed()[case]
    expected = _outcome(Fetcher.PartitionRecords, raw)
    assert ("CorruptRecordError", expected[-1][1]) in expected  # kafka-python refuses it
    assert _outcome(LeanPartitionRecords, raw) == expected


def test_a_corrupt_batch_fails_its_crc_check() -> None:
    raw = bytearray(_batch(_messages(10, 6)))
    raw[-3] ^= 0xFF
    part = _partition_records(LeanPartitionRecords, bytes(raw), 0)
    with pytest.raises(CorruptRecordError, match="crc"):
        part.take(10)


def test_read_committed_goes_through_kafka_pythons_decoding(monkeypatch) -> None:
    calls = []
    original = Fetcher.PartitionRecords._unpack_records

    def spy(self, *args):
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(Fetcher.PartitionRecords, "_unpack_records", spy)
    raw = _batch(_messages(12, 7), base_offset=40)
    part = _partition_records(LeanPartitionRecords, raw, 40,
                              isolation_level=IsolationLevel.READ_COMMITTED)
    got, _ = _take_all(part, [5])
    assert calls and got == _kafka_python(raw)
    assert all(type(r) is tuple for r in got)


def test_legacy_message_format_batches_are_decoded_by_kafka_python() -> None:
    builder = MemoryRecordsBuilder(magic=1, compression_type=0, batch_size=10**6)
    for ts, key, value, _ in _messages(15, 8):
        builder.append(ts, key, value, headers=[])
    builder.close()
    raw = builder.buffer()
    stock, _ = _take_all(_partition_records(Fetcher.PartitionRecords, raw, 0), [4])
    got, _ = _take_all(_partition_records(LeanPartitionRecords, raw, 0), [4])
    assert got == stock and len(got) == 15


def test_install_refuses_an_unchecked_kafka_python_version(monkeypatch) -> None:
    class Consumer:
        _fetcher = type("F", (), {})()

    monkeypatch.setattr(kafka, "__version__", "3.1.0")
    with pytest.raises(ConfigError, match="kafka-python 3.1.0 is installed"):
        fast_records.install(Consumer())
    monkeypatch.setattr(kafka, "__version__", KAFKA_PYTHON_CHECKED[-1])
    consumer = Consumer()
    fast_records.install(consumer)
    assert consumer._fetcher.PartitionRecords is LeanPartitionRecords
