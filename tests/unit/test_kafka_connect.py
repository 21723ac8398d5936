"""Making Kafka clients: address parsing, bad CA files, an unreachable broker (no broker)."""

from __future__ import annotations

import socket

import pytest
from kafka import KafkaProducer

from pipeline._exceptions import ConfigError, KafkaUnavailableError
from pipeline.kafka_connect import bootstrap_addresses, create_client
from pipeline.settings import Settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bootstrap_addresses_parse_hosts_and_ports() -> None:
    """host:port lists, with spaces and IPv6 brackets, are split; junk is a ConfigError."""
    s = Settings(kafka_bootstrap_servers="a:1, [::1]:2,b.example:9093")
    assert bootstrap_addresses(s) == [("a", 1), ("::1", 2), ("b.example", 9093)]
    for bad in ("nohostport", "a:b", " , "):
        with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
            bootstrap_addresses(Settings(kafka_bootstrap_servers=bad))


def test_unreachable_broker_is_one_line_after_the_bootstrap_timeout() -> None:
    """Nothing listening: KafkaUnavailableError (exit 2) naming the servers, the timeout and
    the last connection error, in one line."""
    port = closed_port()
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_bootstrap_timeout=1)
    with pytest.raises(KafkaUnavailableError) as err:
        create_client(KafkaProducer, settings)
    message = str(err.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message and "within 1 s" in message
    assert "MODELMETER_BOOTSTRAP_TIMEOUT" in message
    assert err.value.exit_code == 2


def test_a_ca_file_that_is_not_pem_is_a_config_error(tmp_path) -> None:
    """A garbage CA file is reported as such before any connection."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    settings = Settings(
        kafka_bootstrap_servers=f"127.0.0.1:{closed_port()}",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=ca,
    )
    with pytest.raises(ConfigError, match="not a PEM CA certificate"):
        create_client(KafkaProducer, settings)


def test_unreachable_broker_is_the_same_one_line_for_librdkafka() -> None:
    """The default client (librdkafka) is made after the same probe: nothing listening is
    KafkaUnavailableError naming the servers and the timeout, before any client exists."""
    from confluent_kafka import Producer

    from pipeline.kafka_connect import create_confluent_client

    port = closed_port()
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_bootstrap_timeout=1)
    with pytest.raises(KafkaUnavailableError) as err:
        create_confluent_client(Producer, settings, {"linger_ms": 5})
    message = str(err.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "within 1 s" in message
