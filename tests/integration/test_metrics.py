"""``modelmeter consume --metrics-port``: the endpoint serves the documented metrics while
the consumer runs, /healthz answers, lake files get the restrictive umask, and the endpoint
holds its limits (routes, methods, idle connections, a connection cap)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import CONNECTION_TIMEOUT, MAX_CONNECTIONS, METRIC_NAMES
from pipeline.sdk import UsageProducer
from tests.fixtures.http_requests import read_all, request
from tests.fixtures.kafka_broker import REPO_ROOT, free_port

pytestmark = pytest.mark.kafka

EVENTS = 300


def scrape(port: int) -> dict[str, float] | None:
    """Sample name (with labels) -> value, or None while the endpoint is not up yet."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except (urllib.error.URLError, ConnectionError):
        return None
    samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def test_consume_serves_documented_metrics_and_health(make_settings) -> None:
    """During a consume run: every documented metric name is served, landed_total reaches
    the events produced, lag is reported per partition, flushes are in the histogram,
    /healthz is 200; after the run the lake files have no permissions for others."""
    settings = make_settings()
    kinds = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
    produced: dict[tuple[str, str, str, str], int] = {}
    with UsageProducer(settings) as meter:
        for i in range(EVENTS):
            provider, model = ("zai", "glm-4.5") if i % 3 else ("anthropic", "claude-opus-4-5")
            role = "coder" if i % 2 else "reviewer"
            tokens = {
                "input": 100 + i,
                "output": 20 + i % 7,
                "cache_read": i % 5,
                "cache_write_5m": i % 11,
                "cache_write_1h": 3 if i % 13 == 0 else 0,
            }
            meter.llm_call(
                role=role,
                agent_id="agent-1",
                task_id=f"T-{i}",
                provider=provider,
                model=model,
                **{f"{kind}_tokens": n for kind, n in tokens.items()},
            )
            for kind in kinds:
                key = (provider, model, role, kind)
                produced[key] = produced.get(key, 0) + tokens[kind]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MODELMETER_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MODELMETER_TOPIC": settings.topic,
        "MODELMETER_LAKE": str(settings.lake),
        "MODELMETER_UMASK": "027",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "consume",
            "--until-idle",
            "3",
            "--flush-seconds",
            "0.5",
            "--progress-seconds",
            "0",
            "--metrics-port",
            str(port),
            "--health-max-commit-age",
            "120",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            samples = scrape(port)
            lags = [
                v
                for k, v in (samples or {}).items()
                if k.startswith("modelmeter_consumer_lag_messages{")
            ]
            if (
                samples
                and samples.get("modelmeter_consumer_landed_total") == EVENTS
                and samples.get("modelmeter_consumer_commits_total", 0) >= 1
                and lags
                and sum(lags) == 0
            ):  # all landed, committed, caught up
                seen = samples
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    health_status, health = r.status, json.loads(r.read())
                break
            time.sleep(0.2)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert seen, f"the metrics never showed {EVENTS} landed events; stderr: {err}"
    names = {key.split("{")[0] for key in seen}
    for name in METRIC_NAMES:
        assert any(n == name or n.startswith(f"{name}_") for n in names), name
    assert seen["modelmeter_consumer_consumed_total"] == EVENTS
    assert seen["modelmeter_consumer_rejected_total"] == 0
    assert seen["modelmeter_consumer_commits_total"] >= 1
    assert seen["modelmeter_consumer_flush_duration_seconds_count"] >= 1
    lags = {k: v for k, v in seen.items() if k.startswith("modelmeter_consumer_lag_messages{")}
    assert all(f"topic={settings.topic}" in k for k in lags) and sum(lags.values()) == 0
    assert seen["modelmeter_consumer_healthy"] == 1
    token_samples = {
        k: v for k, v in seen.items() if k.startswith("modelmeter_consumer_tokens_total{")
    }
    assert token_samples == {
        f"modelmeter_consumer_tokens_total{{kind={kind},model={model},"
        f"provider={provider},role={role}}}": n
        for (provider, model, role, kind), n in produced.items()
    }
    assert health_status == 200 and health["status"] == "ok"

    files = list(settings.lake.rglob("*.parquet"))
    assert files
    for path in files:
        assert path.stat().st_mode & 0o007 == 0, f"{path} is accessible to others"


def test_consume_endpoint_limits_routes_methods_and_connections(make_settings) -> None:
    """The running consumer's endpoint with its default limits: GET and HEAD of /metrics and
    /healthz, 404 elsewhere, 405 with Allow for other methods, 503 for the connection beyond
    MAX_CONNECTIONS while that many idle clients hold theirs, an idle connection closed after
    CONNECTION_TIMEOUT; the consumer is unaffected and stops cleanly on SIGTERM."""
    settings = make_settings()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MODELMETER_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MODELMETER_TOPIC": settings.topic,
        "MODELMETER_LAKE": str(settings.lake),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "consume",
            "--progress-seconds",
            "0",
            "--metrics-port",
            str(port),
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while scrape(port) is None:
            assert proc.poll() is None and time.monotonic() < deadline, "endpoint never came up"
            time.sleep(0.2)

        for method in ("GET", "HEAD"):
            for path in ("/metrics", "/healthz"):
                status, headers, body = request(port, method, path)
                assert status == 200, (method, path)
                assert (body == b"") == (method == "HEAD") and int(headers["content-length"]) > 0
        assert request(port, "GET", "/")[0] == 404
        assert request(port, "GET", "/admin")[0] == 404
        status, headers, _ = request(port, "POST", "/metrics")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        assert request(port, "DELETE", "/healthz")[0] == 405

        held = [
            socket.create_connection(("127.0.0.1", port), timeout=15)
            for _ in range(MAX_CONNECTIONS)
        ]
        one_more = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert read_all(one_more).startswith(b"HTTP/1.0 503 "), "the cap did not hold"
        one_more.close()
        started = time.monotonic()
        assert read_all(held[0]) == b"", "an idle connection got an answer"
        waited = time.monotonic() - started
        assert CONNECTION_TIMEOUT - 1 < waited < CONNECTION_TIMEOUT + 5, waited
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 15
        while request(port, "GET", "/healthz")[0] != 200:  # slots free again
            assert time.monotonic() < deadline
            time.sleep(0.1)

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        for sock in held:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
