"""The poll loop: Kafka -> :class:`~pipeline.consumer.sink.Sink` -> offset commits.

The parent process polls kafka-python (``enable_auto_commit=False``), hands each poll's raw
messages to the sink (by default in a child process, see :class:`SinkProcess`), and commits
``last + 1`` of a partition only when the sink reports that flush durable. Rebalances go
through :class:`_Rebalance`: on revocation the durable flushes are committed and the rest of
the buffer is dropped (the next owner re-reads it); on assignment :func:`recover_partition`
cleans what a crashed flush left and says where to resume.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

from pipeline._exceptions import LakeWriteError
from pipeline.consumer.recovery import recover_partition
from pipeline.consumer.sink import Flushed, RawBatch, Sink, SinkProcess
from pipeline.settings import Settings

__all__ = ["Consumer", "ConsumerStats", "CONSUMER_DEFAULTS"]

log = logging.getLogger(__name__)

# kafka-python fetch tuning: large fetches, few round trips; memory stays bounded because a
# poll never returns more than max_poll_records and the sink flushes by size.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "max_poll_records": 5000,
    "fetch_max_bytes": 8 * 1024 * 1024,
    "max_partition_fetch_bytes": 1024 * 1024,
    "fetch_max_wait_ms": 200,
    "max_poll_interval_ms": 300_000,
    "metadata_max_age_ms": 60_000,
    # a SIGKILLed member blocks its group's next rebalance until its session expires: keep
    # that short so that a restarted consumer resumes within seconds
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 2_000,
}


@dataclass
class ConsumerStats:
    """Counters of one consumer run (read by the progress line and by metrics)."""

    consumed: int = 0  # messages polled
    landed: int = 0  # valid events written to the lake and committed
    rejected: int = 0  # invalid messages written to _rejected (and dead-lettered) and committed
    dlq_failed: int = 0  # invalid messages too large/refused for the DLQ (kept in _rejected)
    flushes: int = 0
    files: int = 0
    commits: int = 0
    recovered_files_deleted: int = 0
    assignments: int = 0  # partition assignments received (1 per rebalance that gave us some)
    started_monotonic: float = field(default_factory=time.monotonic)
    last_commit_monotonic: float | None = None
    flush_seconds: list[float] = field(default_factory=list)  # the latest flush durations
    positions: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read
    committed: dict[int, int] = field(default_factory=dict)  # partition -> committed offset
    highwater: dict[int, int] = field(default_factory=dict)

    def lag(self) -> int | None:
        if not self.highwater:
            return None
        return sum(max(0, hw - self.positions.get(p, hw)) for p, hw in self.highwater.items())

    def record(self, flushed: Flushed) -> None:
        self.landed += flushed.landed
        self.rejected += flushed.rejected
        self.dlq_failed += flushed.dlq_failed
        self.flushes += 1
        self.files += flushed.files
        self.flush_seconds = (self.flush_seconds + [flushed.seconds])[-100:]


class _Rebalance(AsyncConsumerRebalanceListener):
    """Flush and commit on revocation; recover the lake on assignment.

    kafka-python 3 runs listeners on its network thread, where blocking consumer calls are
    refused; the coroutine variants are awaited there instead, and the blocking flush runs
    in a helper thread so that heartbeats go on.
    """

    def __init__(self, owner: Consumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self.owner._on_revoked(list(revoked), commit=True)

    async def on_partitions_lost(self, lost: Iterable[Any]) -> None:
        await self.owner._on_revoked(list(lost), commit=False)

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        await self.owner._on_assigned(list(assigned))


class Consumer:
    """``modelmeter consume``: run until told to stop (signal, idle time, event count)."""

    def __init__(self, settings: Settings, *, group: str = "modelmeter-lake",
                 flush_events: int = 50_000, flush_seconds: float = 10.0,
                 progress_seconds: float = 5.0, max_events: int | None = None,
                 until_idle: float | None = None, in_process: bool = False,
                 out: TextIO | None = None, **consumer_config: Any) -> None:
        self.settings = settings
        self.group = group
        self.flush_events = flush_events
        self.flush_seconds = flush_seconds
        self.progress_seconds = progress_seconds
        self.max_events = max_events
        self.until_idle = until_idle
        self.in_process = in_process
        self.out = out if out is not None else sys.stderr
        self.consumer_config = {**CONSUMER_DEFAULTS, **consumer_config}
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._consumer: Any = None
        self._sink: Sink | SinkProcess | None = None
        self._assigned: set[int] = set()
        self._no_flush = False  # set when stopping after an error: never flush again
        self._unflushed: dict[int, int] = {}  # partition -> consumed messages not yet flushed

    def request_stop(self, *_: Any) -> None:
        """Ask the loop to flush, commit and return (signal-handler safe)."""
        self._stop.set()

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> ConsumerStats:
        from kafka import KafkaConsumer

        from pipeline.kafka_admin import ensure_topics
        from pipeline.kafka_connect import create_client

        self._check_lake()
        ensure_topics(self.settings)
        options: dict[str, Any] = {"flush_events": self.flush_events,
                                   "flush_seconds": self.flush_seconds}
        if self.in_process:
            from pipeline.consumer.sink import DeadLetter
            self._sink = Sink(self.settings, dead_letter=DeadLetter(self.settings), **options)
        else:  # fork before any Kafka client thread exists
            self._sink = SinkProcess(self.settings, **options)
        committed_ok = False
        try:
            self._consumer = create_client(KafkaConsumer, self.settings, group_id=self.group,
                                           client_id="modelmeter-consume",
                                           **self.consumer_config)
            self._consumer.subscribe([self.settings.topic], listener=_Rebalance(self))
            self._wait_for_topic_metadata()
            self._loop()
            self._commit(self._sink.flush())
            committed_ok = True
        finally:
            self._shutdown(committed_ok)
        self._print_line("done")
        return self.stats

    def _loop(self) -> None:
        consumer, sink = self._consumer, self._sink
        assert sink is not None
        topic = self.settings.topic
        last_message = time.monotonic()
        next_progress = time.monotonic() + self.progress_seconds
        next_highwater = time.monotonic()  # lag, for the progress line and pipeline.metrics
        max_records = self.consumer_config["max_poll_records"]
        while not self._stop.is_set():
            limit = max_records
            if self.max_events is not None:
                limit = min(limit, self.max_events - self.stats.consumed)
                if limit <= 0:
                    break
            # long enough for a whole rebalance to finish inside one poll (see _on_revoked)
            records = consumer.poll(timeout_ms=1000, max_records=limit)
            self._raise_fatal()
            now = time.monotonic()
            if records:
                last_message = now
                self._commit(sink.add(self._raw_batch(records)))
            else:
                self._commit(sink.tick())
                if not self._assigned and not self.stats.assignments:
                    # the idle clock starts once partitions were ours; a member left with
                    # none after a rebalance (more members than partitions) may go idle
                    last_message = now
            if self.until_idle is not None and now - last_message >= self.until_idle:
                break
            if now >= next_highwater:
                next_highwater = now + 1.0
                self._update_highwater(topic)
            if self.progress_seconds and now >= next_progress:
                next_progress = now + self.progress_seconds
                self._print_line("progress")

    def _raw_batch(self, records: dict[Any, list[Any]]) -> RawBatch:
        partitions: list[int] = []
        offsets: list[int] = []
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        segments = []
        for tp, recs in records.items():
            start = len(offsets)
            partitions += [tp.partition] * len(recs)
            offsets += [r.offset for r in recs]
            keys += [r.key for r in recs]
            values += [r.value for r in recs]
            segments.append((tp.partition, start, len(offsets)))
            self.stats.positions[tp.partition] = recs[-1].offset + 1
            self._unflushed[tp.partition] = self._unflushed.get(tp.partition, 0) + len(recs)
        self.stats.consumed += len(offsets)
        return RawBatch(partitions, offsets, keys, values, dt.datetime.now(dt.UTC), segments)

    def _offsets(self, flushed: list[Flushed]) -> dict[Any, Any]:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        offsets = {}
        for f in flushed:
            self.stats.record(f)
            self._unflushed[f.partition] = self._unflushed.get(f.partition, 0) - (
                f.landed + f.rejected)
            offsets[TopicPartition(self.settings.topic, f.partition)] = OffsetAndMetadata(
                f.last_offset + 1, "", -1)
        return offsets

    def _committed(self, offsets: dict[Any, Any]) -> None:
        for tp, meta in offsets.items():
            self.stats.committed[tp.partition] = meta.offset
        self.stats.commits += 1
        self.stats.last_commit_monotonic = time.monotonic()

    def _commit(self, flushed: list[Flushed]) -> None:
        if not flushed:
            return
        offsets = self._offsets(flushed)
        try:
            # retries retriable errors (coordinator moved, broker restarting) by itself
            self._consumer.commit(offsets)
        except self._membership_errors() as exc:
            # the partition moved to another consumer meanwhile: its recovery deletes these
            # uncommitted files and re-reads the offsets
            log.warning("commit refused after a rebalance (%s); the new owner re-reads %s",
                        type(exc).__name__, sorted(tp.partition for tp in offsets))
            return
        self._committed(offsets)

    @staticmethod
    def _membership_errors() -> tuple[type[BaseException], ...]:
        import kafka.errors as ke

        return (ke.CommitFailedError, ke.IllegalGenerationError, ke.UnknownMemberIdError,
                ke.RebalanceInProgressError, ke.FencedInstanceIdError)

    # -- rebalances (run on kafka-python's network thread) ----------------------------------
    async def _in_thread(self, fn: Any) -> Any:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc

        helper = threading.Thread(target=target, name="modelmeter-rebalance-flush")
        helper.start()
        net = self._consumer._coordinator._net
        while helper.is_alive():
            await net.sleep(0.01)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    async def _on_revoked(self, revoked: list[Any], *, commit: bool) -> None:
        """Give partitions up: commit the flushes already durable, drop what is buffered.

        Buffered messages are not flushed here: the new owner re-reads them from the
        committed offset. A long listener makes kafka-python 3.0.12 lose track of the
        rebalance when the poll timeout expires meanwhile (the consumer then never gets its
        partitions back), so this only waits for the writes already under way.
        """
        partitions = [tp.partition for tp in revoked if tp.topic == self.settings.topic]
        sink = self._sink
        if not partitions or sink is None or self._no_flush:
            return  # stopping after an error: nothing more is written or committed
        try:
            sink.forget(partitions)
            # barrier: the writer finishes what it was doing, so no file of these
            # partitions appears after the new owner's recovery
            flushed = await self._in_thread(lambda: sink.flush([]))
            offsets = self._offsets(flushed)
            if commit and offsets and self._fatal is None:
                await self._consumer._coordinator._commit_offsets_sync_async(offsets)
                self._committed(offsets)
        except self._membership_errors() as exc:
            log.warning("commit on revocation refused (%s); the new owner re-reads", exc)
        except BaseException as exc:  # kafka-python would only log it: keep it for the loop
            log.error("giving partitions up failed: %s", exc)
            self._fatal = exc
        finally:
            self._assigned.difference_update(partitions)
            for p in partitions:  # dropped messages will be read again: not consumed yet
                self.stats.consumed -= self._unflushed.pop(p, 0)

    async def _on_assigned(self, assigned: list[Any]) -> None:
        mine = [tp for tp in assigned if tp.topic == self.settings.topic]
        if self._fatal is not None or not mine:
            return
        self.stats.assignments += 1
        try:
            committed = await self._consumer._coordinator.fetch_committed_offsets_async(mine)
            for tp in mine:
                offset = committed[tp].offset if tp in committed else None
                if offset is not None and offset < 0:
                    offset = None
                rec = recover_partition(self.settings.lake, tp.topic, tp.partition, offset)
                self.stats.recovered_files_deleted += len(rec.deleted)
                if rec.deleted or rec.temp_removed:
                    log.warning("partition %s: removed %s uncommitted lake files and %s "
                                "temporary files (committed offset %s)", tp.partition,
                                len(rec.deleted), rec.temp_removed, offset)
                # always seek: after a rebalance kafka-python keeps its in-memory position,
                # which is past the messages dropped on revocation
                if rec.position is not None:
                    self._consumer.seek(tp, rec.position)
                elif offset is not None:
                    self._consumer.seek(tp, offset)
                else:
                    self._consumer.seek_to_beginning(tp)
                if rec.position is not None and rec.position != offset:
                    # the lake already holds everything before it: make Kafka agree
                    from kafka.structs import OffsetAndMetadata
                    await self._consumer._coordinator._commit_offsets_sync_async(
                        {tp: OffsetAndMetadata(rec.position, "", -1)})
                    offset = rec.position
                if offset is not None:
                    self.stats.committed[tp.partition] = offset
                self._assigned.add(tp.partition)
        except BaseException as exc:
            log.error("recovery on assignment failed: %s", exc)
            self._fatal = exc

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            exc, self._fatal = self._fatal, None
            if isinstance(exc, OSError):
                raise LakeWriteError(f"cannot clean the lake: {exc.strerror or exc}",
                                     path=getattr(exc, "filename", None)) from None
            raise exc

    # -- helpers ----------------------------------------------------------------------------
    def _check_lake(self) -> None:
        lake = self.settings.lake
        try:
            lake.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LakeWriteError(f"cannot create the lake: {exc.strerror or exc}",
                                 path=str(lake)) from None
        if not lake.is_dir():
            raise LakeWriteError("the lake is not a directory", path=str(lake))

    def _wait_for_topic_metadata(self, timeout_s: float = 30.0) -> None:
        """Fetch the subscribed topic's metadata (blocking) before the first poll joins the group.

        kafka-python's coordinator remembers the partitions of the subscribed topics as of the
        last metadata response. ``subscribe()`` only *requests* an update, so a join that wins
        the race against that response makes the leader assign from an empty snapshot; the
        response then differs from it and the consumer rebalances again right after its first
        assignment (the messages read meanwhile are dropped and re-read). A blocking metadata
        fetch after ``subscribe()`` makes the snapshot current before the join. A group leader
        without the topic's partitions would also assign nothing until the next refresh.
        """
        deadline = time.monotonic() + timeout_s
        topic = self.settings.topic
        while True:
            # topics() always asks the broker (blocking) and updates the coordinator's snapshot
            if topic in self._consumer.topics() and self._consumer.partitions_for_topic(topic):
                return
            if time.monotonic() > deadline:
                from pipeline._exceptions import KafkaError
                raise KafkaError(f"topic {topic} has no partitions after {timeout_s:g} s")
            time.sleep(0.2)

    def _update_highwater(self, topic: str) -> None:
        from kafka.structs import TopicPartition

        for p in set(self.stats.highwater) - self._assigned:  # revoked: not our lag any more
            self.stats.highwater.pop(p, None)
        for p in list(self._assigned):
            hw = self._consumer.highwater(TopicPartition(topic, p))
            if hw is not None:
                self.stats.highwater[p] = hw

    def _print_line(self, kind: str) -> None:
        s = self.stats
        elapsed = max(1e-9, time.monotonic() - s.started_monotonic)
        lag = s.lag()
        line = (f"consume {kind}: {s.consumed / elapsed:,.0f} events/s, consumed={s.consumed:,}"
                f" landed={s.landed:,} rejected={s.rejected:,}"
                + (f" lag={lag:,}" if lag is not None else "")
                + (f" dlq_failed={s.dlq_failed}" if s.dlq_failed else "")
                + (f" elapsed={elapsed:.1f}s" if kind == "done" else ""))
        if kind == "progress" and not self.progress_seconds:
            return
        print(line, file=self.out, flush=True)

    def _shutdown(self, committed_ok: bool) -> None:
        self._no_flush = not committed_ok
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception as exc:  # closing must not hide the real error
                log.warning("closing the Kafka consumer: %s", exc)
        if self._sink is not None:
            try:
                self._sink.close()
            except Exception as exc:
                log.warning("closing the lake writer: %s", exc)
        if not committed_ok:
            log.info("stopped without a final commit; uncommitted files are recovered on restart")


def install_signal_handlers(consumer: Consumer) -> None:
    """SIGTERM and SIGINT ask ``consumer`` to flush, commit and exit 0."""
    signal.signal(signal.SIGTERM, consumer.request_stop)
    signal.signal(signal.SIGINT, consumer.request_stop)

