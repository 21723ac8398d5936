"""What ``modelmeter consume`` serves on ``/metrics`` and ``/healthz``: the metric names, the
health verdict and the Prometheus collector that reads the consumer's
:class:`~pipeline.consumer.ConsumerStats` at scrape time (so the consumer's hot loop pays
nothing for them). The HTTP server around them is :mod:`pipeline.metrics`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pipeline.token_kinds import TOKEN_KINDS

__all__ = ["ConsumerCollector", "Health", "FLUSH_BUCKETS", "METRIC_NAMES"]


# Flushes write one Parquet file per (table, day): tens of ms for small ones, seconds for
# 50k-event ones on a slow disk.
FLUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

METRIC_NAMES = (
    "modelmeter_consumer_consumed_total",
    "modelmeter_consumer_landed_total",
    "modelmeter_consumer_rejected_total",
    "modelmeter_consumer_dlq_failed_total",
    "modelmeter_consumer_commits_total",
    "modelmeter_consumer_tokens_total",
    "modelmeter_consumer_lag_messages",
    "modelmeter_consumer_last_commit_age_seconds",
    "modelmeter_consumer_flush_duration_seconds",
    "modelmeter_consumer_healthy",
)


@dataclass(frozen=True, slots=True)
class Health:
    """The verdict of /healthz."""

    ok: bool
    lag: int | None
    last_commit_age_seconds: float
    max_commit_age_seconds: float
    reason: str

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "status": "ok" if self.ok else "unhealthy",
                "reason": self.reason,
                "lag": self.lag,
                "last_commit_age_seconds": round(self.last_commit_age_seconds, 3),
                "max_commit_age_seconds": self.max_commit_age_seconds,
            }
        ).encode()


class ConsumerCollector(Collector):
    """Prometheus collector reading a ConsumerStats-like object at scrape time.

    ``stats`` needs: ``consumed``, ``landed``, ``rejected``, ``dlq_failed``, ``commits``,
    ``flushes`` (ints), ``tokens`` ((provider, model, role) -> counts in the order of
    :data:`~pipeline.token_kinds.TOKEN_KINDS`), ``flush_seconds`` (the latest flush durations, newest last),
    ``started_monotonic``, ``last_commit_monotonic`` (``time.monotonic()`` values or None),
    and ``highwater`` / ``committed`` / ``positions`` (partition -> offset).
    """

    def __init__(
        self,
        stats: Any,
        *,
        topic: str,
        max_commit_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self.topic = topic
        self.max_commit_age = max_commit_age
        self.clock = clock
        self._lock = threading.Lock()
        self._bucket_counts = [0] * (len(FLUSH_BUCKETS) + 1)  # last one is +Inf
        self._flush_sum = 0.0
        self._flushes_seen = 0

    # -- reading the stats ----------------------------------------------------------------
    def partition_lag(self) -> dict[int, int]:
        """Partition -> messages not yet committed (log end offset - committed offset; the
        read position stands in for a partition with no commit yet)."""
        s = self.stats
        out = {}
        for partition, end in dict(s.highwater).items():
            done = s.committed.get(partition, s.positions.get(partition))
            if done is not None:
                out[partition] = max(0, end - done)
        return out

    def last_commit_age(self) -> float:
        s = self.stats
        since = (
            s.last_commit_monotonic if s.last_commit_monotonic is not None else s.started_monotonic
        )
        return max(0.0, self.clock() - since)

    def health(self) -> Health:
        lags = self.partition_lag()
        lag = sum(lags.values()) if lags else None
        age = self.last_commit_age()
        if lag and age > self.max_commit_age:
            reason = f"lag {lag} and no commit for {age:.0f} s (limit {self.max_commit_age:g} s)"
            return Health(False, lag, age, self.max_commit_age, reason)
        reason = "no lag" if not lag else f"lag {lag}, last commit {age:.0f} s ago"
        return Health(True, lag, age, self.max_commit_age, reason)

    def _ingest_flushes(self) -> None:
        # ConsumerStats keeps the latest durations and a running count: the durations added
        # since the last scrape are the newest (flushes - seen) ones.
        s = self.stats
        total, recent = s.flushes, list(s.flush_seconds)
        new = min(max(0, total - self._flushes_seen), len(recent))
        for seconds in recent[len(recent) - new :]:
            self._flush_sum += seconds
            for i, bound in enumerate(FLUSH_BUCKETS):
                if seconds <= bound:
                    self._bucket_counts[i] += 1
                    break
            else:
                self._bucket_counts[-1] += 1
        self._flushes_seen = max(self._flushes_seen, total)

    def _tokens(self) -> CounterMetricFamily:
        tokens = CounterMetricFamily(
            "modelmeter_consumer_tokens_total",
            "Tokens of the llm_call events written to the lake and committed, by provider,"
            " model, role and token kind (keys beyond the consumer's limit under 'other').",
            labels=["provider", "model", "role", "kind"],
        )
        # a copy: the consumer's thread adds keys while this one reads
        for (provider, model, role), counts in sorted(dict(self.stats.tokens).items()):
            for kind, count in zip(TOKEN_KINDS, list(counts), strict=True):
                tokens.add_metric([provider, model, role, kind], count)
        return tokens

    # -- the Collector protocol -------------------------------------------------------------
    def collect(self) -> Iterable[Metric]:
        s = self.stats
        for name, value, text in (
            ("consumed", s.consumed, "Messages polled from Kafka."),
            ("landed", s.landed, "Valid events written to the lake and committed."),
            (
                "rejected",
                s.rejected,
                "Invalid messages written to _rejected and dead-lettered, committed.",
            ),
            (
                "dlq_failed",
                s.dlq_failed,
                "Invalid messages the dead-letter topic refused (kept in _rejected).",
            ),
            ("commits", s.commits, "Offset commits."),
        ):
            yield CounterMetricFamily(f"modelmeter_consumer_{name}", text, value=value)
        yield self._tokens()
        lag = GaugeMetricFamily(
            "modelmeter_consumer_lag_messages",
            "Log end offset minus committed offset, per partition.",
            labels=["topic", "partition"],
        )
        for partition, value in sorted(self.partition_lag().items()):
            lag.add_metric([self.topic, str(partition)], value)
        yield lag
        yield GaugeMetricFamily(
            "modelmeter_consumer_last_commit_age_seconds",
            "Seconds since the last successful offset commit (since start when none yet).",
            value=self.last_commit_age(),
        )
        with self._lock:
            self._ingest_flushes()
            cumulative, running = [], 0
            for bound, count in zip(
                (*FLUSH_BUCKETS, float("inf")), self._bucket_counts, strict=True
            ):
                running += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
            flush_sum = self._flush_sum
        yield HistogramMetricFamily(
            "modelmeter_consumer_flush_duration_seconds",
            "Duration of lake flushes (Parquet write + fsync + rename).",
            buckets=cumulative,
            sum_value=flush_sum,
        )
        yield GaugeMetricFamily(
            "modelmeter_consumer_healthy",
            "1 when /healthz reports ok, 0 when it reports unhealthy.",
            value=1 if self.health().ok else 0,
        )
