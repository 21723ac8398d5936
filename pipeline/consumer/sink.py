"""Buffers validated messages per Kafka partition and flushes them to the lake and the DLQ.

One flush of partition ``p`` covering offsets ``[first, last]``:

0. makes sure the partition's index (:func:`pipeline.lake_files.update_partition_index`)
   bounds every directory it is about to write with at least ``last`` (rewritten ahead of
   the files when it does not, with headroom so that this happens about once in
   :data:`INDEX_HEADROOM_FLUSHES` flushes), so that recovery lists only those directories;
1. writes one Parquet file per (table, day) touched, all named
   ``<topic>+<p>+<first>+<last>.parquet`` (:func:`pipeline.lake.write_lake_file`:
   temporary name, fsync, rename, directory fsync; one PUT in a bucket);
2. sends the flush's invalid messages to the dead-letter topic and waits for the acks
   (:class:`~pipeline.consumer.dead_letter.DeadLetter`: a message the DLQ refuses gets a
   reduced dead letter, never an exception);
3. only then reports :class:`Flushed` so that the caller commits ``last + 1``.

:class:`Sink` does this in the calling process;
:class:`~pipeline.consumer.sink_process.SinkProcess` runs one in a child process.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline._exceptions import LakeWriteError, PipelineError
from pipeline.consumer.batches import TOKEN_KINDS, Flushed, RawBatch, TokenSums
from pipeline.consumer.dead_letter import DLQ_MAX_REQUEST_BYTES, DeadLetter
from pipeline.consumer.validate import Reject, validate_batch
from pipeline.lake import (
    REJECTED_SCHEMA,
    REJECTED_TABLE,
    FileName,
    partition_dir,
    read_lake_file,
    write_lake_file,
)
from pipeline.lake_files import update_partition_index
from pipeline.settings import Settings

__all__ = ["RawBatch", "Flushed", "Sink", "DeadLetter", "DLQ_MAX_REQUEST_BYTES"]

log = logging.getLogger(__name__)

_TS = pa.timestamp("us", tz="UTC")
#: An index bound is raised to ``last`` plus this many flushes of the current size.
INDEX_HEADROOM_FLUSHES = 64
#: The table whose rows carry tokens, and the key and token columns summed per flush for the
#: live token counters (:func:`token_sums`), tokens in the order of ``TOKEN_KINDS``.
TOKENS_TABLE = "llm_call"
TOKEN_KEYS = ("provider", "model", "role")
TOKEN_COLUMNS = tuple(f"{kind}_tokens" for kind in TOKEN_KINDS)


@dataclass(slots=True)
class _Buffer:
    first: int
    last: int
    since: float
    tables: dict[str, list[pa.Table]] = field(default_factory=dict)
    rejects: list[tuple[Reject, dt.datetime]] = field(default_factory=list)
    count: int = 0
    nbytes: int = 0
    fast: int = 0


def _min_max(column: pa.ChunkedArray) -> tuple[Any, Any]:
    mm = pc.min_max(column)
    return mm["min"].as_py(), mm["max"].as_py()


def token_sums(table: pa.Table) -> TokenSums:
    """The sums of the token columns of llm_call rows per (provider, model, role): one
    vectorised group-by over the flush's rows (a handful of groups, however many rows)."""
    if not table.num_rows:
        return {}
    grouped = table.group_by(list(TOKEN_KEYS), use_threads=False).aggregate(
        [(column, "sum") for column in TOKEN_COLUMNS]
    )
    keys = [grouped[name].to_pylist() for name in TOKEN_KEYS]
    sums = [grouped[f"{column}_sum"].to_pylist() for column in TOKEN_COLUMNS]
    return {
        (provider, model, role): (a, b, c, d, e)
        for provider, model, role, a, b, c, d, e in zip(*keys, *sums, strict=True)
    }


def _ascending(column: pa.ChunkedArray) -> bool:
    """Whether the values only increase (offsets of one partition: no duplicates)."""
    return len(column) < 2 or pc.all(pc.greater(column[1:], column[:-1])).as_py()


class Sink:
    """Validates raw batches, buffers them per partition, flushes by size, age and memory."""

    def __init__(
        self,
        settings: Settings,
        *,
        flush_events: int = 50_000,
        flush_seconds: float = 10.0,
        max_buffer_bytes: int = 24 * 1024 * 1024,
        dead_letter: DeadLetter | None = None,
        write_threads: int = 4,
    ) -> None:
        self.lake = settings.lake
        self.topic = settings.topic
        self.flush_events = max(1, flush_events)
        self.flush_seconds = flush_seconds
        self.max_buffer_bytes = max_buffer_bytes
        self._dead_letter = dead_letter
        self._buffers: dict[int, _Buffer] = {}
        # partition -> its index as last written or read here (bounds only ever grow)
        self._index: dict[int, dict[str, int]] = {}
        self._pool = ThreadPoolExecutor(write_threads, thread_name_prefix="lake-write")

    # -- intake -----------------------------------------------------------------------------
    def add(self, batch: RawBatch) -> list[Flushed]:
        """Validate ``batch`` and buffer it; returns the flushes this triggered (size, memory)."""
        result = validate_batch(
            batch.values,
            partitions=batch.partitions,
            offsets=batch.offsets,
            keys=batch.keys,
            topic=self.topic,
            ingested_at=batch.ingested_at,
        )
        single = len(batch.segments) == 1
        by_partition: dict[int, list[tuple[Reject, dt.datetime]]] = {}
        for r in result.rejects:
            by_partition.setdefault(r.partition, []).append((r, batch.ingested_at))
        for partition, start, end in batch.segments:
            buf = self._buffers.get(partition)
            if buf is None:
                buf = self._buffers[partition] = _Buffer(
                    batch.offsets[start], batch.offsets[end - 1], time.monotonic()
                )
            buf.last = batch.offsets[end - 1]
            buf.count += end - start
            for name, table in result.tables.items():
                if not single:
                    table = table.filter(pc.equal(table["kafka_partition"], partition))
                if table.num_rows:
                    buf.tables.setdefault(name, []).append(table)
                    buf.nbytes += table.nbytes
            rejects = by_partition.get(partition, [])
            buf.rejects.extend(rejects)
            buf.nbytes += sum(len(r.value or b"") + len(r.key or b"") for r, _ in rejects)
        if single:
            self._buffers[batch.segments[0][0]].fast += result.fast
        flushed = self._flush_many(
            [p for p, b in self._buffers.items() if b.count >= self.flush_events]
        )
        while self._buffers and self.buffered_bytes() > self.max_buffer_bytes:
            largest = max(self._buffers, key=lambda p: self._buffers[p].nbytes)
            flushed.append(self._flush_one(largest))
        return flushed

    def tick(self) -> list[Flushed]:
        """Flush the buffers older than ``flush_seconds``."""
        now = time.monotonic()
        return self._flush_many(
            [p for p, b in self._buffers.items() if now - b.since >= self.flush_seconds]
        )

    def flush(self, partitions: Iterable[int] | None = None) -> list[Flushed]:
        """Flush ``partitions`` (all when None) now."""
        wanted = (
            list(self._buffers)
            if partitions is None
            else [p for p in partitions if p in self._buffers]
        )
        return self._flush_many(wanted)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop buffered messages (their offsets were not committed; they will be re-read)."""
        for p in partitions:
            self._buffers.pop(p, None)
            self._index.pop(p, None)  # the next owner may write it: read it again

    def redeliver(self, paths: Iterable[PurePath]) -> int:
        """Dead-letter again the rejects of ``_rejected`` files whose flush was never
        committed (crash recovery, see :mod:`pipeline.consumer.recovery`); returns how many
        were sent. The DLQ is at-least-once: some may be there already."""
        if self._dead_letter is None:
            return 0
        sent = 0
        for path in paths:
            columns = ["raw_key", "raw_value", "error", "kafka_partition", "kafka_offset"]
            count, failed = self._dead_letter.send_rejected(
                read_lake_file(self.lake, path, columns)
            )
            sent += count
            if failed:
                log.error(
                    "%s: %s of its %s dead letters were sent reduced or not at all",
                    path,
                    failed,
                    count,
                )
        return sent

    def buffered_bytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())

    def buffered_events(self) -> int:
        return sum(b.count for b in self._buffers.values())

    # -- flush ------------------------------------------------------------------------------
    def _flush_one(self, partition: int) -> Flushed:
        return self._flush_many([partition])[0]

    def _flush_many(self, partitions: list[int]) -> list[Flushed]:
        """Flush ``partitions``: the files of all of them written at once (the write pool),
        then each one's dead letters; a partition is reported only after both."""
        started = time.monotonic()
        planned = [(p, *self._plan(p)) for p in partitions]
        for p, jobs, _, _ in planned:
            self._index_ahead(p, [path for _, path in jobs])
        self._write_all([job for _, jobs, _, _ in planned for job in jobs])
        return [
            self._finish(p, len(jobs), landed, started, tokens)
            for p, jobs, landed, tokens in planned
        ]

    def _index_ahead(self, partition: int, paths: list[PurePath]) -> None:
        """Bound the directories of ``paths`` in the partition's index before they are written."""
        buf = self._buffers[partition]
        known = self._index.get(partition, {})
        dirs = {f"{p.parent.parent.name}/{p.parent.name}" for p in paths}
        short = [d for d in dirs if known.get(d, -1) < buf.last]
        if not short:
            return
        bound = buf.last + (buf.last - buf.first + 1) * INDEX_HEADROOM_FLUSHES
        try:
            self._index[partition] = update_partition_index(
                self.lake, self.topic, partition, {d: bound for d in short}
            )
        except OSError as exc:
            raise LakeWriteError(
                f"cannot write the lake's index: {exc.strerror or exc}",
                path=getattr(exc, "filename", None),
            ) from None

    def _plan(self, partition: int) -> tuple[list[tuple[pa.Table, PurePath]], int, TokenSums]:
        """The files one flush of ``partition`` writes, how many valid rows they hold, and
        the token sums of its llm_call rows (:func:`token_sums`)."""
        buf = self._buffers[partition]
        name = str(FileName(self.topic, partition, buf.first, buf.last))
        jobs: list[tuple[pa.Table, PurePath]] = []
        landed = 0
        tokens: TokenSums = {}
        for table_name, parts in buf.tables.items():
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            landed += table.num_rows
            if table_name == TOKENS_TABLE:
                tokens = token_sums(table)
            first, last = _min_max(table["occurred_at"])
            if first.date() == last.date():  # one day, the usual flush: no sort by day
                offsets = table["kafka_offset"]
                if not _ascending(offsets):  # rows pydantic decided follow the fast ones
                    table = table.take(pc.sort_indices(offsets))
                jobs.append((table, partition_dir(self.lake, table_name, first.date()) / name))
                continue
            # one sort by (day, offset), then one slice per day
            days = pc.cast(table["occurred_at"], pa.date32())
            order = pc.sort_indices(
                pa.table({"d": days, "o": table["kafka_offset"]}),
                sort_keys=[("d", "ascending"), ("o", "ascending")],
            )
            table, days = table.take(order), days.take(order)
            start = 0
            for run in pc.value_counts(days).to_pylist():
                count = run["counts"]
                jobs.append(
                    (
                        table.slice(start, count),
                        partition_dir(self.lake, table_name, run["values"]) / name,
                    )
                )
                start += count
        if buf.rejects:
            received = [ingested.date() for _, ingested in buf.rejects]
            for day in sorted(set(received)):
                rows = [
                    (r, ingested)
                    for (r, ingested), d in zip(buf.rejects, received, strict=True)
                    if d == day
                ]
                jobs.append(
                    (
                        self._rejected_table(rows),
                        partition_dir(self.lake, REJECTED_TABLE, day) / name,
                    )
                )
        return jobs, landed, tokens

    def _finish(
        self, partition: int, files: int, landed: int, started: float, tokens: TokenSums
    ) -> Flushed:
        """Dead-letter a written partition's rejects and drop its buffer."""
        buf = self._buffers[partition]
        failed = 0
        if buf.rejects and self._dead_letter is not None:
            failed = self._dead_letter.send([r for r, _ in buf.rejects])
        del self._buffers[partition]
        if landed + len(buf.rejects) != buf.count:  # a bug, never expected: do not commit
            raise PipelineError(
                f"partition {partition} offsets {buf.first}-{buf.last}: "
                f"{buf.count} messages but {landed} landed + "
                f"{len(buf.rejects)} rejected"
            )
        return Flushed(
            partition,
            buf.first,
            buf.last,
            landed,
            len(buf.rejects),
            files,
            time.monotonic() - started,
            failed,
            buf.fast,
            tokens,
        )

    def _rejected_table(self, rows: list[tuple[Reject, dt.datetime]]) -> pa.Table:
        rejects = [r for r, _ in rows]
        return pa.Table.from_pydict(
            {
                "raw_key": pa.array([r.key for r in rejects], pa.binary()),
                "raw_value": pa.array([r.value for r in rejects], pa.binary()),
                "error": pa.array([r.error for r in rejects], pa.string()),
                "kafka_topic": pa.array([self.topic] * len(rows), pa.string()),
                "kafka_partition": pa.array([r.partition for r in rejects], pa.int32()),
                "kafka_offset": pa.array([r.offset for r in rejects], pa.int64()),
                "ingested_at": pa.array([ingested for _, ingested in rows], _TS),
            },
            schema=REJECTED_SCHEMA,
        )

    def _write_all(self, jobs: list[tuple[pa.Table, PurePath]]) -> None:
        def write(job: tuple[pa.Table, PurePath]) -> None:
            table, path = job
            try:
                write_lake_file(self.lake, table, path)
            except OSError as exc:
                raise LakeWriteError(
                    f"cannot write the lake: {exc.strerror or exc}", path=str(path)
                ) from None

        if len(jobs) == 1:
            write(jobs[0])
        else:
            for future in [self._pool.submit(write, job) for job in jobs]:
                future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._dead_letter is not None:
            self._dead_letter.close()
