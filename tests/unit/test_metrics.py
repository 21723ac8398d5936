"""The consumer's Prometheus collector and /healthz, fed by a real ConsumerStats."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.consumer import Consumer, ConsumerStats
from pipeline.consumer.batches import Flushed
from pipeline.consumer.loop import MAX_TOKEN_SERIES, OTHER
from pipeline.metrics import METRIC_NAMES, ConsumerCollector, MetricsServer, serve_metrics
from pipeline.settings import Settings
from tests.fixtures.http_requests import read_all, request


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
    hits = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
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
    families = scrape(
        ConsumerCollector(s, topic="agent-usage", max_commit_age=60, clock=Clock(10.0))
    )
    assert (
        value(families["modelmeter_consumer_consumed"], "modelmeter_consumer_consumed_total") == 120
    )
    assert value(families["modelmeter_consumer_landed"], "modelmeter_consumer_landed_total") == 100
    assert (
        value(families["modelmeter_consumer_rejected"], "modelmeter_consumer_rejected_total") == 15
    )
    assert (
        value(families["modelmeter_consumer_dlq_failed"], "modelmeter_consumer_dlq_failed_total")
        == 1
    )
    assert value(families["modelmeter_consumer_commits"], "modelmeter_consumer_commits_total") == 4


class Committer:
    """A stand-in Kafka client for :meth:`Consumer._commit`: accepts or refuses commits."""

    def __init__(self) -> None:
        self.accept = True

    def commit(self, offsets: dict[int, int]) -> bool:
        return self.accept


def flushed(partition: int, last: int, tokens: dict) -> Flushed:
    return Flushed(partition, 0, last, last + 1, 0, 1, 0.01, tokens=tokens)


def test_token_counters_follow_committed_flushes_only(make_settings) -> None:
    """modelmeter_consumer_tokens_total{provider,model,role,kind}: each committed flush's
    token sums are added; a flush whose commit Kafka refused adds nothing."""
    consumer = Consumer(make_settings(kafka=False))
    client = consumer._client = Committer()  # type: ignore[assignment]
    zai, opus = ("zai", "glm-4.5", "coder"), ("anthropic", "claude-opus-4-5", "architect")
    consumer._commit([flushed(0, 9, {zai: (100, 20, 5, 0, 0), opus: (7, 3, 2, 1, 4)})])
    consumer._commit([flushed(1, 4, {zai: (1, 2, 3, 4, 5)})])
    client.accept = False
    consumer._commit([flushed(0, 19, {zai: (1000, 1000, 1000, 1000, 1000)})])
    collector = ConsumerCollector(consumer.stats, topic="t", max_commit_age=60)
    samples = scrape(collector)["modelmeter_consumer_tokens"]
    expected = {
        (*zai, "input"): 101,
        (*zai, "output"): 22,
        (*zai, "cache_read"): 8,
        (*zai, "cache_write_5m"): 4,
        (*zai, "cache_write_1h"): 5,
        (*opus, "input"): 7,
        (*opus, "output"): 3,
        (*opus, "cache_read"): 2,
        (*opus, "cache_write_5m"): 1,
        (*opus, "cache_write_1h"): 4,
    }
    got = {
        (s.labels["provider"], s.labels["model"], s.labels["role"], s.labels["kind"]): s.value
        for s in samples
        if s.name == "modelmeter_consumer_tokens_total"
    }
    assert got == expected
    assert consumer.stats.landed == 10 + 5 + 20  # landed counts the refused flush; tokens not


def test_token_series_are_bounded_the_rest_counted_under_other() -> None:
    """Keys beyond the limit go to (provider, other, other) for a provider with series, else
    to (other, other, other); no token is lost."""
    s = ConsumerStats(max_token_series=2)
    s.add_tokens({("zai", "a", "r1"): (1, 0, 0, 0, 0), ("zai", "b", "r1"): (2, 0, 0, 0, 0)})
    s.add_tokens({("zai", "c", "r9"): (4, 1, 0, 0, 0), ("zai", "a", "r1"): (8, 0, 0, 0, 0)})
    s.add_tokens({("acme", "x", "r"): (16, 0, 0, 0, 0), ("acme", "y", "r"): (32, 0, 0, 0, 0)})
    s.add_tokens({("zai", "d", "r2"): (64, 0, 0, 0, 0)})
    assert s.tokens == {
        ("zai", "a", "r1"): [9, 0, 0, 0, 0],
        ("zai", "b", "r1"): [2, 0, 0, 0, 0],
        ("zai", OTHER, OTHER): [68, 1, 0, 0, 0],
        (OTHER, OTHER, OTHER): [48, 0, 0, 0, 0],
    }
    assert ConsumerStats().max_token_series == MAX_TOKEN_SERIES


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
    assert (
        value(samples, "modelmeter_consumer_lag_messages", partition="0", topic="agent-usage") == 60
    )
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
    assert value(
        families["modelmeter_consumer_last_commit_age_seconds"],
        "modelmeter_consumer_last_commit_age_seconds",
    ) == pytest.approx(5.0)


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


# -- the HTTP server's limits: routes, methods, idle connections, a connection cap -------------


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@contextmanager
def running(**limits) -> Iterator[MetricsServer]:
    s = ConsumerStats()
    server = MetricsServer(s, topic="t", max_commit_age=60, **limits).start("127.0.0.1", 0)
    try:
        yield server
    finally:
        server.stop()


def idle_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def handler_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


@pytest.fixture(scope="module")
def served() -> Iterator[MetricsServer]:
    """One server with the default limits for the route tests."""
    with running() as server:
        yield server


def test_get_and_head_of_metrics_and_healthz_are_200_head_without_a_body(served) -> None:
    status, headers, body = request(served.port, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"modelmeter_consumer_consumed_total" in body
    assert int(headers["content-length"]) == len(body)
    status, headers, body = request(served.port, "HEAD", "/metrics")
    assert status == 200 and body == b"" and headers["content-type"].startswith("text/plain")
    assert int(headers["content-length"]) > 0  # what a GET would send
    status, headers, body = request(served.port, "GET", "/healthz?verbose=1")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert headers["content-type"] == "application/json"
    status, headers, body = request(served.port, "HEAD", "/healthz")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


@pytest.mark.parametrize("path", ["/", "/metrics/", "/favicon.ico", "/healthz/x", "/../metrics2"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_other_paths_are_404(served, path: str, method: str) -> None:
    status, _, body = request(served.port, method, path)
    assert status == 404
    assert (body == b"") if method == "HEAD" else (b"not found" in body)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("path", ["/metrics", "/healthz"])
def test_other_methods_are_405_with_an_allow_header(served, path: str, method: str) -> None:
    status, headers, body = request(served.port, method, path)
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert b"use GET, HEAD" in body


@pytest.mark.parametrize(
    "sent", [b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"], ids=["silent", "half-a-request"]
)
def test_an_idle_connection_is_closed_after_the_timeout(sent: bytes) -> None:
    """A client that connects and sends nothing (or stops mid-request) is closed after the
    connection timeout and its thread ends (before: one thread per idle connection, forever)."""
    with running(connection_timeout=0.3) as server:
        sock = idle_connection(server.port)
        sock.sendall(sent)
        wait_for(lambda: server.active_connections == 1)
        started = time.monotonic()
        assert read_all(sock) == b""  # closed by the server, no response
        assert 0.2 < time.monotonic() - started < 4
        sock.close()
        wait_for(lambda: server.active_connections == 0)
        status, _, _ = request(server.port, "GET", "/healthz")
        assert status == 200


def test_connections_beyond_the_cap_get_503_and_are_closed() -> None:
    """With the cap held by idle clients, one more connection gets 503 at once; when a slot
    frees, requests are served again."""
    with running(connection_timeout=30, max_connections=2) as server:
        held = [idle_connection(server.port) for _ in range(2)]
        wait_for(lambda: server.active_connections == 2)
        extra = idle_connection(server.port)
        started = time.monotonic()
        answer = read_all(extra)
        assert time.monotonic() - started < 2, "refused at once, not after a timeout"
        assert answer.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        assert b"too many connections" in answer
        extra.close()
        assert server.active_connections == 2
        held.pop().close()
        wait_for(lambda: server.active_connections == 1)
        status, _, _ = request(server.port, "GET", "/metrics")
        assert status == 200
        for sock in held:
            sock.close()


def test_fifty_idle_connections_hold_at_most_the_cap_of_threads() -> None:
    before = handler_threads()
    with running(connection_timeout=30, max_connections=16) as server:
        socks = [idle_connection(server.port) for _ in range(50)]
        try:
            wait_for(lambda: server.refused_connections == 34)
            assert server.active_connections == 16
            assert handler_threads() - before <= 16
        finally:
            for sock in socks:
                sock.close()
        wait_for(lambda: server.active_connections == 0)
    wait_for(lambda: handler_threads() <= before)


def test_limits_must_be_positive() -> None:
    for limits in (dict(connection_timeout=0), dict(max_connections=0)):
        with pytest.raises(ValueError):
            MetricsServer(ConsumerStats(), topic="t", max_commit_age=60, **limits)
