"""Topic administration: make sure the usage topic and its dead-letter twin exist.

The topic is created with 6 partitions when missing. The producer SDK and the consumer both
call :func:`ensure_topics` at start, so whichever starts first creates them; a race between
the two is harmless (an existing topic is left as it is, never re-partitioned)::

    created = ensure_topics(settings)      # [] when both topics already existed

On the client ``MODELMETER_KAFKA_CLIENT`` names: librdkafka's ``AdminClient`` (default) or
kafka-python's ``KafkaAdminClient``, public APIs only.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline._exceptions import KafkaError
from pipeline.settings import Settings

__all__ = ["TOPIC_PARTITIONS", "ensure_topics"]

TOPIC_PARTITIONS = 6


def ensure_topics(
    settings: Settings,
    *,
    partitions: int = TOPIC_PARTITIONS,
    replication_factor: int = -1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create ``settings.topic`` and ``settings.dlq_topic`` when missing; return the ones created.

    ``replication_factor=-1`` takes the broker's ``default.replication.factor``. Waits until
    every partition of a created topic has a leader, so a producer can send at once.
    Raises :class:`KafkaUnavailableError` / :class:`KafkaAuthError` (one line) when the broker
    cannot be reached or refuses, :class:`KafkaError` when a topic cannot be created.
    """
    names = [settings.topic, settings.dlq_topic]
    if settings.kafka_client == "kafka-python":
        return _ensure_kafka_python(settings, names, partitions, replication_factor, timeout_s)
    return _ensure_confluent(settings, names, partitions, replication_factor, timeout_s)


def _ensure_confluent(
    settings: Settings, names: list[str], partitions: int, replication_factor: int, timeout_s: float
) -> list[str]:
    from confluent_kafka import KafkaError as CKError
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    from pipeline.kafka_connect import create_confluent_admin

    admin = create_confluent_admin(settings, {"client_id": "modelmeter-admin"})
    existing = _confluent_topics(admin, settings, timeout_s)
    missing = [name for name in names if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
            for name in missing
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s + 5)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == CKError.TOPIC_ALREADY_EXISTS:  # someone else was faster: fine
                continue
            raise KafkaError(f"cannot create Kafka topic {name!r}: {error.str()}") from None
        created.append(name)
    deadline = time.monotonic() + timeout_s
    while created:  # every partition of a created topic has a leader
        metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        ready = all(
            (topic := metadata.topics.get(name)) is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
            for name in created
        )
        if ready:
            break
        if time.monotonic() > deadline:
            raise KafkaError(f"Kafka topics {created} have no leaders after {timeout_s:g} s")
        time.sleep(0.1)
    return created


def _confluent_topics(admin: Any, settings: Settings, timeout_s: float) -> set[str]:
    from confluent_kafka import KafkaException

    from pipeline._exceptions import KafkaUnavailableError

    try:
        return set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"topic administration failed at {settings.kafka_bootstrap_servers}:"
            f" {exc.args[0].str()}"
        ) from None


def _ensure_kafka_python(
    settings: Settings, names: list[str], partitions: int, replication_factor: int, timeout_s: float
) -> list[str]:
    import kafka.errors as ke
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from pipeline.kafka_connect import create_client, translate_kafka_error

    admin = create_client(KafkaAdminClient, settings, client_id="modelmeter-admin")
    try:
        existing = set(admin.list_topics())
        missing = [name for name in names if name not in existing]
        created = []
        for name in missing:  # one at a time: "already exists" is then about this one
            try:
                admin.create_topics(
                    [NewTopic(name, partitions, replication_factor)],
                    timeout_ms=int(timeout_s * 1000),
                )
            except ke.TopicAlreadyExistsError:  # someone else was faster: fine
                continue
            created.append(name)
        deadline = time.monotonic() + timeout_s
        while created:  # every partition of a created topic has a leader
            # kafka-python 3 names a topic "name" and a leader "leader_id"; 2.x "topic", "leader"
            described = {t.get("name", t.get("topic")): t for t in admin.describe_topics(created)}
            if all(_kafka_python_ready(described.get(name), partitions) for name in created):
                break
            if time.monotonic() > deadline:
                raise KafkaError(f"Kafka topics {created} have no leaders after {timeout_s:g} s")
            time.sleep(0.1)
        return created
    except ke.KafkaError as exc:
        error = translate_kafka_error(exc, settings)
        if error is not None:
            raise error from None
        raise KafkaError(
            f"topic administration failed at {settings.kafka_bootstrap_servers}:"
            f" {exc.__class__.__name__}: {exc}"
        ) from None
    finally:
        admin.close()


def _kafka_python_ready(topic: dict[str, Any] | None, partitions: int) -> bool:
    if not topic or topic.get("error_code", 0) != 0:
        return False
    found = topic.get("partitions") or []
    return len(found) == partitions and all(
        p.get("leader_id", p.get("leader", -1)) >= 0 for p in found
    )
