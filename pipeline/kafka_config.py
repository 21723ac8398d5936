"""Kafka connection settings in each library's terms: the bootstrap servers, the TLS trust
(:func:`ssl_context`) and the librdkafka properties (:func:`confluent_config`) that
:mod:`pipeline.kafka_connect` makes every client with."""

from __future__ import annotations

import ssl
from typing import Any

from pipeline._exceptions import ConfigError
from pipeline.settings import SASL_PROTOCOLS, TLS_PROTOCOLS, Settings

__all__ = ["bootstrap_addresses", "ssl_context", "confluent_config"]


def bootstrap_addresses(settings: Settings) -> list[tuple[str, int]]:
    """``host:port`` pairs of the bootstrap servers (``[v6]:port`` accepted)."""
    out = []
    for item in settings.kafka_bootstrap_servers.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS: {item!r} is not host:port")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is empty")
    return out


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The trust settings both clients use (TLS >= 1.2, host name checked, CA file or the
    system store)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    try:
        if settings.kafka_ssl_cafile:
            ctx.load_verify_locations(str(settings.kafka_ssl_cafile))
        else:
            ctx.load_default_certs()
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"KAFKA_SSL_CAFILE {settings.kafka_ssl_cafile}: not a PEM CA certificate"
            f" ({exc.__class__.__name__})"
        ) from None
    return ctx


# kafka-python option -> librdkafka property (options a caller may pass to the SDK's
# producer or to the consumer).
_CONFLUENT_NAMES = {
    "acks": "acks",
    "enable_idempotence": "enable.idempotence",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "delivery_timeout_ms": "message.timeout.ms",
    "request_timeout_ms": "request.timeout.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "compression_type": "compression.type",
    "client_id": "client.id",
    "max_request_size": "message.max.bytes",
    "retries": "retries",
    "partitioner": "partitioner",  # a librdkafka partitioner name, e.g. murmur2_random
    # consumer
    "group_id": "group.id",
    "group_instance_id": "group.instance.id",
    "enable_auto_commit": "enable.auto.commit",
    "auto_offset_reset": "auto.offset.reset",
    "fetch_max_bytes": "fetch.max.bytes",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
}


def confluent_config(settings: Settings, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka properties for ``settings``: the same security settings kafka-python gets
    (protocol, SASL mechanism and credentials, CA file, host name verification), then
    ``options`` in kafka-python names (``linger_ms``...) or librdkafka names (``linger.ms``).
    An option with no librdkafka equivalent is a :class:`ConfigError`."""
    settings.check_kafka_security()
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(
            f"{h}:{p}" if ":" not in h else f"[{h}]:{p}" for h, p in bootstrap_addresses(settings)
        ),
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        password = settings.sasl_password()
        assert password is not None  # check_kafka_security made sure
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = password.get_secret_value()
    if settings.kafka_security_protocol in TLS_PROTOCOLS:
        config["ssl.endpoint.identification.algorithm"] = "https"
        if settings.kafka_ssl_cafile:
            config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    for name, value in (options or {}).items():
        if "." in name:
            config[name] = value
        elif name in _CONFLUENT_NAMES:
            config[_CONFLUENT_NAMES[name]] = value
        else:
            raise ConfigError(
                f"Kafka option {name!r} has no confluent-kafka (librdkafka)"
                " equivalent; use MODELMETER_KAFKA_CLIENT=kafka-python for it"
            )
    return config
