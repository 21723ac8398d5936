"""Topic administration: make sure the usage topic and its dead-letter twin exist.

DESIGN.md section 1: the topic is created with 6 partitions when missing. The producer SDK
and the consumer both call :func:`ensure_topics` at start, so whichever starts first creates
them; a race between the two is harmless (an existing topic is left as it is, never
re-partitioned)::

    created = ensure_topics(settings)      # [] when both topics already existed
"""

from __future__ import annotations

from pipeline._exceptions import KafkaError
from pipeline.kafka_connect import create_client, translate_kafka_error
from pipeline.settings import Settings

__all__ = ["TOPIC_PARTITIONS", "ensure_topics"]

TOPIC_PARTITIONS = 6

_TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


def ensure_topics(settings: Settings, *, partitions: int = TOPIC_PARTITIONS,
                  replication_factor: int = -1, timeout_s: float = 30.0) -> list[str]:
    """Create ``settings.topic`` and ``settings.dlq_topic`` when missing; return the ones created.

    ``replication_factor=-1`` takes the broker's ``default.replication.factor``. Waits until
    every partition of a created topic has a leader, so a producer can send at once.
    Raises :class:`KafkaUnavailableError` / :class:`KafkaAuthError` (one line) when the broker
    cannot be reached or refuses, :class:`KafkaError` when a topic cannot be created.
    """
    import kafka.errors as ke
    from kafka import KafkaAdminClient

    names = [settings.topic, settings.dlq_topic]
    admin = create_client(KafkaAdminClient, settings, client_id="modelmeter-admin")
    try:
        existing = set(admin.list_topics())
        missing = [name for name in names if name not in existing]
        if not missing:
            return []
        response = admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": replication_factor}
             for name in missing},
            timeout_ms=int(timeout_s * 1000), raise_errors=False)
        created = []
        for topic in response["topics"]:
            code = topic.get("error_code", 0)
            if code == 0:
                created.append(topic["name"])
            elif code != _TOPIC_ALREADY_EXISTS:  # someone else was faster: fine
                error = ke.for_code(code)
                detail = topic.get("error_message") or error.__name__
                raise KafkaError(f"cannot create Kafka topic {topic['name']!r}: {detail}")
        if created:
            admin.wait_for_topics(created, timeout_ms=int(timeout_s * 1000))
        return created
    except ke.KafkaError as exc:
        error = translate_kafka_error(exc, settings)
        if error is not None:
            raise error from None
        raise KafkaError(f"topic administration failed at {settings.kafka_bootstrap_servers}:"
                         f" {exc.__class__.__name__}: {exc}") from None
    finally:
        admin.close()
