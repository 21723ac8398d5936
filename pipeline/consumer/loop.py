"""The poll loop: Kafka -> :class:`~pipeline.consumer.sink.Sink` -> offset commits.

The parent process polls its Kafka client (:mod:`.clients`: librdkafka by default, or
kafka-python; ``enable_auto_commit=False``), hands each poll's raw messages to the sink (by
default in a child process, see :class:`SinkProcess`), and commits ``last + 1`` of a
partition only when the sink reports that flush durable.

Rebalances are handled here, the same way for both clients (the client only reports them,
from inside its ``poll``):

- **revoked** (:meth:`Consumer._on_revoke`): the partitions' buffered messages are dropped
  (the next owner re-reads them from the committed offset), the writes under way are waited
  for (a barrier: no file of these partitions appears after the next owner's recovery), and
  the flushes already durable are committed. **Lost** partitions (the group went on without
  us) are not committed: the next owner's recovery deletes their uncommitted files.
- **assigned** (:meth:`Consumer._on_assign`): the partitions are started
  (:meth:`Consumer._start_assigned`): their committed offsets fetched,
  :func:`recover_partition` cleans what a crashed flush left and says where to resume, and
  the client fetches from there. librdkafka allows that inside its callback; kafka-python 3
  does not (its callbacks run on its I/O thread), so there the partitions are paused in the
  callback and started once ``poll`` returned. Messages of a partition that are not ours, or
  from before its start position, are dropped (:func:`~.clients.keep_from`).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from pipeline._exceptions import KafkaError, LakeWriteError
from pipeline.consumer.batches import Flushed, RawBatch
from pipeline.consumer.clients import CONSUMER_DEFAULTS, ConsumerClient, keep_from
from pipeline.consumer.sink_process import SinkProcess, tune_gc
from pipeline.lake_files import prepare_lake
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.consumer.sink import Sink

__all__ = ["Consumer", "ConsumerStats", "CONSUMER_DEFAULTS", "MAX_TOKEN_SERIES", "OTHER"]

log = logging.getLogger(__name__)

#: Distinct (provider, model, role) keys that get their own token counters (see
#: :meth:`ConsumerStats.add_tokens`); later keys are counted under :data:`OTHER`.
MAX_TOKEN_SERIES = 500
#: The model and role (and provider, for a provider with no series of its own) that the
#: tokens of keys beyond :data:`MAX_TOKEN_SERIES` are counted under.
OTHER = "other"


def open_client(
    settings: Settings, group: str, config: dict[str, Any], stopping: threading.Event
) -> ConsumerClient:
    """The client ``settings.kafka_client`` names, connected (not subscribed yet).
    ``config``: consumer settings in kafka-python names (:data:`CONSUMER_DEFAULTS` and
    overrides such as ``group_instance_id``). Only the chosen library is imported."""
    if settings.kafka_client == "kafka-python":
        from pipeline.consumer.kafka_python_client import KafkaPythonClient

        return KafkaPythonClient(settings, group, config, stopping)
    from pipeline.consumer.librdkafka_client import ConfluentClient

    return ConfluentClient(settings, group, config, stopping)


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
    # (provider, model, role) -> committed token counts by kind (TOKEN_KINDS order)
    tokens: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    max_token_series: int = MAX_TOKEN_SERIES

    def add_tokens(self, sums: Mapping[tuple[str, str, str], tuple[int, ...]]) -> None:
        """Add a committed flush's token sums (:attr:`Flushed.tokens`).

        The keys come from events, that is from any producer: valid identifiers, but as many
        as the producers care to invent, and each one is a set of Prometheus series that
        stays in the consumer's memory and in Prometheus' index for its lifetime. So only the
        first ``max_token_series`` keys get their own counters; the tokens of any later key
        are counted under ``(provider, "other", "other")`` when that provider already has a
        series, else under ``("other", "other", "other")``: at most twice the limit plus one
        keys, and no token is left out of the totals."""
        tokens = self.tokens
        for key, counts in sums.items():
            row = tokens.get(key)
            if row is None:
                if len(tokens) >= self.max_token_series:
                    key = self._overflow_key(key[0])
                    row = tokens.get(key)
                if row is None:
                    row = tokens[key] = [0] * len(counts)
            for i, count in enumerate(counts):
                row[i] += count

    def _overflow_key(self, provider: str) -> tuple[str, str, str]:
        known = any(p == provider for p, _, _ in self.tokens)
        return (provider if known else OTHER, OTHER, OTHER)

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


class Consumer:
    """``modelmeter consume``: run until told to stop (signal, idle time, event count)."""

    def __init__(
        self,
        settings: Settings,
        *,
        group: str = "modelmeter-lake",
        flush_events: int = 50_000,
        flush_seconds: float = 10.0,
        progress_seconds: float = 5.0,
        max_events: int | None = None,
        until_idle: float | None = None,
        in_process: bool = False,
        out: TextIO | None = None,
        **consumer_config: Any,
    ) -> None:
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
        self._client: ConsumerClient | None = None
        self._sink: Sink | SinkProcess | None = None
        self._assigned: set[int] = set()  # partitions started (recovered, resumed)
        self._start: dict[int, int | None] = {}  # started partition -> first offset accepted
        self._pending: list[int] = []  # assigned, paused, not started yet
        self._rebalancing = False  # partitions given up, no assignment since
        self._no_flush = False  # set when stopping after an error: never flush again
        self._closing = False  # the client is being closed: its callbacks change nothing
        self._unflushed: dict[int, int] = {}  # partition -> consumed messages not yet flushed

    def request_stop(self, *_: Any) -> None:
        """Ask the loop to flush, commit and return (signal-handler safe)."""
        self._stop.set()

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> ConsumerStats:
        from pipeline.kafka_admin import ensure_topics

        prepare_lake(self.settings.lake)
        ensure_topics(self.settings)
        options: dict[str, Any] = {
            "flush_events": self.flush_events,
            "flush_seconds": self.flush_seconds,
        }
        if self.in_process:
            from pipeline.consumer.sink import DeadLetter, Sink

            self._sink = Sink(self.settings, dead_letter=DeadLetter(self.settings), **options)
        else:  # fork before any Kafka client thread exists
            self._sink = SinkProcess(self.settings, **options)
        committed_ok = False
        try:
            self._client = open_client(self.settings, self.group, self.consumer_config, self._stop)
            self._client.subscribe(self._on_assign, self._on_revoke)
            if not self.in_process:  # the CLI's poller process (an embedding caller keeps its GC)
                tune_gc()
            self._loop()
            self._commit(self._sink.flush())
            committed_ok = True
        finally:
            self._shutdown(committed_ok)
        self._print_line("done")
        return self.stats

    def _loop(self) -> None:
        client, sink = self._client, self._sink
        assert sink is not None and client is not None
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
            # short while no partition is ours: a paused assignment (kafka-python) is started
            # right after the poll that received it returns
            batch = client.poll(limit, 1.0 if self._assigned else 0.02)
            self._raise_fatal()
            if self._pending:
                self._start_assigned()
            if batch is not None:
                batch = keep_from(batch, self._start)
            now = time.monotonic()
            if batch is not None:
                last_message = now
                self._count(batch)
                self._commit(sink.add(batch))
            else:
                self._commit(sink.tick())
                if self._rebalancing or (not self._assigned and not self.stats.assignments):
                    # the idle clock starts once partitions were ours and stops from giving
                    # them up until the next assignment (a session lost to a broker outage
                    # is not idleness); a member left with none after a rebalance (more
                    # members than partitions) may go idle
                    last_message = now
            if self.until_idle is not None and now - last_message >= self.until_idle:
                if self._caught_up():
                    break
                last_message = now
            if now >= next_highwater:
                next_highwater = now + 1.0
                self._update_highwater()
            if self.progress_seconds and now >= next_progress:
                next_progress = now + self.progress_seconds
                self._print_line("progress")

    def _caught_up(self) -> bool:
        """Idle for ``until_idle`` seconds: stop only if the broker confirms that nothing is
        left to read in our partitions. A broker that does not answer, or messages that
        arrived during an outage and are not fetched yet, restart the idle clock."""
        assert self._client is not None
        partitions = sorted(self._assigned)
        if not partitions:
            return True
        marks = self._client.watermarks(partitions, timeout=5.0)
        if marks is None:
            log.warning(
                "idle for %g s, but Kafka does not answer: going on until it confirms"
                " that nothing is left to read",
                self.until_idle,
            )
            return False
        positions = self.stats.positions
        behind = sum(
            max(0, high - max(low, positions.get(p, low))) for p, (low, high) in marks.items()
        )
        if behind:
            log.info(
                "idle for %g s, but %s messages are still to be read: going on",
                self.until_idle,
                behind,
            )
        return behind == 0

    def _count(self, batch: RawBatch) -> None:
        for partition, start, end in batch.segments:
            self.stats.positions[partition] = batch.offsets[end - 1] + 1
            self._unflushed[partition] = self._unflushed.get(partition, 0) + end - start
        self.stats.consumed += len(batch.offsets)

    def _offsets(self, flushed: list[Flushed]) -> dict[int, int]:
        """Record ``flushed`` in the stats; partition -> offset to commit."""
        offsets = {}
        for f in flushed:
            self.stats.record(f)
            self._unflushed[f.partition] = self._unflushed.get(f.partition, 0) - (
                f.landed + f.rejected
            )
            offsets[f.partition] = f.last_offset + 1
        return offsets

    def _committed(self, offsets: dict[int, int]) -> None:
        self.stats.committed.update(offsets)
        self.stats.commits += 1
        self.stats.last_commit_monotonic = time.monotonic()

    def _commit(self, flushed: list[Flushed]) -> None:
        if not flushed:
            return
        offsets = self._offsets(flushed)
        assert self._client is not None
        # refused: the partition moved to another consumer meanwhile; its recovery deletes
        # these uncommitted files and re-reads the offsets
        if self._client.commit(offsets):
            for f in flushed:  # tokens count once committed (a refused commit is re-read)
                self.stats.add_tokens(f.tokens)
            self._committed(offsets)

    # -- rebalances (the client reports them from inside poll or close) ---------------------
    def _on_revoke(self, partitions: list[int], lost: bool) -> None:
        """Partitions are being given up (``lost``: the group already went on without us).

        Their buffered messages are dropped, not flushed: the new owner re-reads them from
        the committed offset. The writes under way are waited for (``sink.flush([])``, a
        barrier, so that no file of these partitions appears after the new owner's
        recovery), then what is durable is committed, unless lost. Errors are kept for the
        loop (``_fatal``): a client's callback must not raise into the library."""
        for p in partitions:
            if p in self._pending:
                self._pending.remove(p)
            self._start.pop(p, None)
        sink = self._sink
        try:
            if partitions and sink is not None and not self._no_flush and not self._closing:
                sink.forget(partitions)
                flushed = sink.flush([])
                offsets = self._offsets(flushed)
                assert self._client is not None
                if not lost and offsets and self._fatal is None and self._client.commit(offsets):
                    for f in flushed:
                        self.stats.add_tokens(f.tokens)
                    self._committed(offsets)
        except BaseException as exc:
            log.error("giving partitions up failed: %s", exc)
            self._fatal = exc
        finally:
            self._assigned.difference_update(partitions)
            self._rebalancing = True
            for p in partitions:  # dropped messages will be read again: not consumed yet
                self.stats.consumed -= self._unflushed.pop(p, 0)

    def _on_assign(self, partitions: list[int]) -> None:
        """Partitions of our topic are assigned (called on every assignment, even an empty
        one: the rebalance is over). They are started (:meth:`_start_assigned`) right here
        when the client allows blocking calls in its callbacks, else paused here and started
        right after the current poll."""
        self._rebalancing = False
        if not partitions or self._closing or self._fatal is not None:
            return  # nothing more is recovered or read after an error: the loop raises it
        self.stats.assignments += 1
        assert self._client is not None
        self._pending += [p for p in partitions if p not in self._pending]
        try:
            if self._client.callbacks_may_block:
                self._start_assigned()
            else:
                self._client.pause(partitions)
        except BaseException as exc:  # raised by the loop, after the poll
            log.error("recovery on assignment failed: %s", exc)
            self._fatal = exc

    def _start_assigned(self) -> None:
        """Start the assigned partitions: committed offsets, lake recovery (:meth:`_recover`),
        then fetching from where the lake says (``client.start``)."""
        client = self._client
        assert client is not None
        pending, self._pending = self._pending, []
        committed = client.committed(pending)
        positions: dict[int, int | None] = {}
        for p in pending:
            try:
                position, commit_to = self._recover(p, committed.get(p))
            except OSError as exc:
                raise LakeWriteError(
                    f"cannot clean the lake: {exc.strerror or exc}",
                    path=getattr(exc, "filename", None),
                ) from None
            if commit_to is not None and not client.commit({p: commit_to}):
                raise KafkaError(f"partition {p} moved during its assignment")
            self._assigned_one(p, commit_to if commit_to is not None else committed.get(p))
            self._start[p] = positions[p] = position
        client.start(positions)

    def _recover(self, partition: int, committed: int | None) -> tuple[int | None, int | None]:
        """Clean the lake of an assigned partition (:func:`recover_partition`).

        Returns (position to read from, None = the beginning; offset to commit first, or
        None): with no committed offset the lake's complete flushes give the position, and
        Kafka is then made to agree with the lake.
        """
        if committed is not None and committed < 0:
            committed = None
        from pipeline.consumer.recovery import recover_partition

        rec = recover_partition(self.settings.lake, self.settings.topic, partition, committed)
        self.stats.recovered_files_deleted += len(rec.deleted)
        if rec.deleted or rec.temp_removed:
            log.warning(
                "partition %s: removed %s uncommitted lake files and %s temporary files"
                " (committed offset %s)",
                partition,
                len(rec.deleted),
                rec.temp_removed,
                committed,
            )
        if rec.redeliver and self._sink is not None:
            sent = self._sink.redeliver(rec.redeliver)
            log.warning(
                "partition %s: %s dead letters of the last flush sent again (it was "
                "never committed; the DLQ is at-least-once)",
                partition,
                sent,
            )
        if rec.position is not None:
            return rec.position, (rec.position if rec.position != committed else None)
        return committed, None

    def _assigned_one(self, partition: int, committed: int | None) -> None:
        """``partition`` is ours from offset ``committed`` on (None: from its beginning)."""
        if committed is not None:
            self.stats.committed[partition] = committed
            self.stats.positions[partition] = committed
        else:
            self.stats.positions.pop(partition, None)
        self._assigned.add(partition)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            exc, self._fatal = self._fatal, None
            if isinstance(exc, OSError):
                raise LakeWriteError(
                    f"cannot clean the lake: {exc.strerror or exc}",
                    path=getattr(exc, "filename", None),
                ) from None
            raise exc

    # -- helpers ----------------------------------------------------------------------------
    def _update_highwater(self) -> None:
        assert self._client is not None
        for p in set(self.stats.highwater) - self._assigned:  # revoked: not our lag any more
            self.stats.highwater.pop(p, None)
        for p in list(self._assigned):
            hw = self._client.highwater(p)
            if hw is not None:
                self.stats.highwater[p] = hw

    def _print_line(self, kind: str) -> None:
        s = self.stats
        elapsed = max(1e-9, time.monotonic() - s.started_monotonic)
        lag = s.lag()
        line = (
            f"consume {kind}: {s.consumed / elapsed:,.0f} events/s, consumed={s.consumed:,}"
            f" landed={s.landed:,} rejected={s.rejected:,}"
            + (f" lag={lag:,}" if lag is not None else "")
            + (f" dlq_failed={s.dlq_failed}" if s.dlq_failed else "")
            + (f" elapsed={elapsed:.1f}s" if kind == "done" else "")
        )
        if kind == "progress" and not self.progress_seconds:
            return
        print(line, file=self.out, flush=True)

    def _shutdown(self, committed_ok: bool) -> None:
        self._no_flush = not committed_ok
        self._closing = True
        if self._client is not None:
            try:
                self._client.close()
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
