"""Shared fixtures: a real Kafka broker, per-test topics, and settings pointing at both.

- ``kafka_broker`` (session): a real Apache Kafka KRaft broker started from the project's jars
  on free loopback ports with its own temporary data dir (or the broker named by the
  ``KAFKA_BOOTSTRAP_SERVERS`` environment variable when set). ``.bootstrap``, ``.stop()``,
  ``.start()``, ``.restart()``.
- ``topic_factory(partitions=6)``: a fresh uniquely named topic and its ``.dlq`` twin.
- ``make_settings(**overrides)``: ``Settings`` for the test broker, a fresh topic, and a lake
  and warehouse under ``tmp_path``.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings, dlq_topic_for
from tests.kafka_broker import REPO_ROOT, ExternalBroker, LocalBroker

__all__ = ["REPO_ROOT"]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | ExternalBroker]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield ExternalBroker(external)
        return
    broker = LocalBroker(data_dir=tmp_path_factory.mktemp("kafka-data"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def create_topics(bootstrap: str, names: list[str], partitions: int,
                  configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create ``names`` (topic configs by name from ``configs``) and wait until every
    partition has a leader."""
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-admin")
    try:
        admin.create_topics([NewTopic(n, partitions, 1, topic_configs=(configs or {}).get(n, {}))
                             for n in names])
    finally:
        admin.close()
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(len(probe.partitions_for_topic(n) or ()) == partitions for n in names):
                return
            time.sleep(0.1)
        raise TimeoutError(f"topics {names} have no leaders after 30 s")
    finally:
        probe.close()


_counter = itertools.count()


@pytest.fixture
def topic_factory(kafka_broker, request) -> Callable[..., str]:
    def make(partitions: int = 6) -> str:
        base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
        name = f"t-{base}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
        create_topics(kafka_broker.bootstrap, [name, dlq_topic_for(name)], partitions)
        return name

    return make


@pytest.fixture
def make_settings(request, tmp_path: Path) -> Callable[..., Settings]:
    """``make_settings(kafka=False)`` gives settings without starting a broker (pure tests)."""

    def make(*, kafka: bool = True, **overrides) -> Settings:
        values: dict = {}
        if kafka:
            values["kafka_bootstrap_servers"] = request.getfixturevalue("kafka_broker").bootstrap
            if "topic" not in overrides:
                values["topic"] = request.getfixturevalue("topic_factory")()
        values |= {
            "lake": tmp_path / "lake",
            "warehouse": tmp_path / "warehouse.duckdb",
            "policy": REPO_ROOT / "schemas" / "routing_policy.yaml",
            "prices": REPO_ROOT / "schemas" / "prices.csv",
        }
        values.update(overrides)
        return Settings(**values)

    return make
