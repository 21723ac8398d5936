"""``modelmeter consume --metrics-port``: the endpoint serves the documented metrics while
the consumer runs, /healthz answers, and lake files get the restrictive umask."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import METRIC_NAMES
from pipeline.sdk import UsageProducer
from tests.kafka_broker import REPO_ROOT, free_port

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
    with UsageProducer(settings) as meter:
        for i in range(EVENTS):
            meter.llm_call(role="coder", agent_id="agent-1", task_id=f"T-{i}", provider="zai",
                           model="glm-4.5", input_tokens=100, output_tokens=20)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MODELMETER_"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "MODELMETER_TOPIC": settings.topic, "MODELMETER_LAKE": str(settings.lake),
            "MODELMETER_UMASK": "027"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "consume", "--until-idle", "3",
         "--flush-seconds", "0.5", "--progress-seconds", "0", "--metrics-port", str(port),
         "--health-max-commit-age", "120"],
        env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            samples = scrape(port)
            lags = [v for k, v in (samples or {}).items()
                    if k.startswith("modelmeter_consumer_lag_messages{")]
            if samples and samples.get("modelmeter_consumer_landed_total") == EVENTS \
                    and samples.get("modelmeter_consumer_commits_total", 0) >= 1 \
                    and lags and sum(lags) == 0:  # all landed, committed, caught up
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
    assert health_status == 200 and health["status"] == "ok"

    files = list(settings.lake.rglob("*.parquet"))
    assert files
    for path in files:
        assert path.stat().st_mode & 0o007 == 0, f"{path} is accessible to others"
