"""The consumer's Prometheus collector and /healthz, fed by a real ConsumerStats."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.consumer import ConsumerStats
from pipeline.metrics import METRIC_NAMES, ConsumerCollector, MetricsServer, serve_metrics
from pipeline.settings import Settings


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scrape(collector: ConsumerCollector) -> dict[str, list]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(samples: list, name: str, **labels: str) -> float:
    hits = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v
                                                               for k, v in labels.items())]
    assert len(hits) == 1, (name, labels, samples)
    return hits[0]


def stats_at(start: float) -> ConsumerStats:
    s = ConsumerStats()
    s.started_monotonic = start
    return s


def test_counters_follow_the_stats() -> None:
    """consumed/landed/rejected/dlq_failed/commits are served as *_total counters."""
    s = stats_at(0.0)
    s.consumed, s.landed, s.rejected, s.dlq_failed, s.commits = 120, 100, 15, 1, 4
    families = scrape(ConsumerCollector(s, topic="agent-usage", max_commit_age=60,
                                        clock=Clock(10.0)))
    assert value(families["modelmeter_consumer_consumed"], "modelmeter_consumer_consumed_total") == 120
    assert value(families["modelmeter_consumer_landed"], "modelmeter_consumer_landed_total") == 100
    assert value(families["modelmeter_consumer_rejected"], "modelmeter_consumer_rejected_total") == 15
    assert value(families["modelmeter_consumer_dlq_failed"],
                 "modelmeter_consumer_dlq_failed_total") == 1
    assert value(families["modelmeter_consumer_commits"], "modelmeter_consumer_commits_total") == 4


def test_lag_per_partition_is_end_offset_minus_committed() -> None:
    """Lag uses the committed offset; a partition without a commit uses the read position;
    one with neither is not reported."""
    s = stats_at(0.0)
    s.highwater = {0: 100, 1: 50, 2: 7}
    s.committed = {0: 40}
    s.positions = {0: 90, 1: 45}
    collector = ConsumerCollector(s, topic="agent-usage", max_commit_age=60, clock=Clock(1.0))
    assert collector.partition_lag() == {0: 60, 1: 5}
    samples = scrape(collector)["modelmeter_consumer_lag_messages"]
    assert value(samples, "modelmeter_consumer_lag_messages", partition="0", topic="agent-usage") == 60
    assert value(samples, "modelmeter_consumer_lag_messages", partition="1") == 5


def test_last_commit_age_counts_from_start_then_from_the_commit() -> None:
    """Before any commit the age runs from the start; after one, from that commit."""
    s = stats_at(100.0)
    clock = Clock(130.0)
    collector = ConsumerCollector(s, topic="t", max_commit_age=60, clock=clock)
    assert collector.last_commit_age() == pytest.approx(30.0)
    s.last_commit_monotonic = 125.0
    assert collector.last_commit_age() == pytest.approx(5.0)
    families = scrape(collector)
    assert value(families["modelmeter_consumer_last_commit_age_seconds"],
                 "modelmeter_consumer_last_commit_age_seconds") == pytest.approx(5.0)


def test_flush_histogram_counts_each_flush_once_across_scrapes() -> None:
    """Flush durations land in the right buckets; a second scrape adds only new flushes."""
    s = stats_at(0.0)
    collector = ConsumerCollector(s, topic="t", max_commit_age=60, clock=Clock(1.0))
    s.flushes, s.flush_seconds = 2, [0.02, 3.0]
    samples = scrape(collector)["modelmeter_consumer_flush_duration_seconds"]
    name = "modelmeter_consumer_flush_duration_seconds"
    assert value(samples, f"{name}_count") == 2
    assert value(samples, f"{name}_sum") == pytest.approx(3.02)
    assert value(samples, f"{name}_bucket", le="0.025") == 1
    assert value(samples, f"{name}_bucket", le="2.5") == 1
    assert value(samples, f"{name}_bucket", le="5.0") == 2
    s.flushes, s.flush_seconds = 3, [0.02, 3.0, 0.2]
    samples = scrape(collector)["modelmeter_consumer_flush_duration_seconds"]
    assert value(samples, f"{name}_count") == 3
    assert value(samples, f"{name}_bucket", le="0.25") == 2
    samples = scrape(collector)["modelmeter_consumer_flush_duration_seconds"]
    assert value(samples, f"{name}_count") == 3


def test_health_fails_only_with_lag_and_an_old_commit() -> None:
    """Healthy with no lag however old the commit; healthy with lag and a recent commit;
    unhealthy with lag and no commit for longer than the limit."""
    s = stats_at(0.0)
    clock = Clock(1000.0)
    collector = ConsumerCollector(s, topic="t", max_commit_age=300, clock=clock)
    assert collector.health().ok  # nothing known: no lag
    s.highwater, s.committed = {0: 10}, {0: 10}
    assert collector.health().ok  # caught up, idle for 1000 s: fine
    s.highwater = {0: 25}
    s.last_commit_monotonic = 900.0
    assert collector.health().ok  # lag 15, commit 100 s ago
    clock.now = 1300.0
    health = collector.health()
    assert not health.ok and health.lag == 15
    assert "no commit for 400 s" in health.reason
    healthy = scrape(collector)["modelmeter_consumer_healthy"]
    assert value(healthy, "modelmeter_consumer_healthy") == 0


def test_server_serves_metrics_and_healthz_over_http() -> None:
    """/metrics has every documented name; /healthz is 200 then 503 with a JSON reason."""
    s = ConsumerStats()
    s.started_monotonic -= 10  # started 10 s ago, never committed
    s.highwater, s.committed = {0: 5}, {0: 5}
    server = MetricsServer(s, topic="t", max_commit_age=5).start("127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        for name in METRIC_NAMES:
            assert name in text
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["status"] == "ok"
        s.highwater = {0: 9}  # lag 4, no commit for 10 s, limit 5 s
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert err.value.code == 503
        body = json.loads(err.value.read())
        assert body["status"] == "unhealthy" and body["lag"] == 4
    finally:
        server.stop()


def test_serve_metrics_is_off_by_default_and_a_busy_port_is_a_config_error() -> None:
    """No port set: nothing served. A port in use: ConfigError naming the option."""
    from pipeline._exceptions import ConfigError

    s = ConsumerStats()
    with serve_metrics(Settings(), s) as server:
        assert server is None
    with serve_metrics(Settings(metrics_port=0), s) as first:
        assert first is not None
        busy = Settings(metrics_port=first.port)
        with pytest.raises(ConfigError, match="--metrics-port"), serve_metrics(busy, s):
            pass
