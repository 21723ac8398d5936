"""Producer transports without a broker: the librdkafka configuration carries the same
security settings as kafka-python's, option names are mapped or refused, and the transport
is picked by MODELMETER_KAFKA_CLIENT / --kafka-client (tests/integration/test_sdk.py runs
the SDK on both against the real broker)."""

from __future__ import annotations

import pytest

from pipeline._exceptions import ConfigError
from pipeline.cli import main
from pipeline.kafka_connect import confluent_config
from pipeline.sdk import UsageProducer
from pipeline.settings import Settings
from pipeline.transport import kafka_python_config


def test_confluent_config_has_the_same_security_settings_as_kafka_python(tmp_path):
    """SASL_SSL + SCRAM + CA file map to librdkafka's names, with host name verification."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings(kafka_bootstrap_servers="b1:9093, b2:9093",
                        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_sasl_username="meter", kafka_sasl_password="s3cret",
                        kafka_ssl_cafile=ca)
    config = confluent_config(settings)
    python = settings.kafka_client_config()
    assert config == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": python["security_protocol"],
        "sasl.mechanism": python["sasl_mechanism"],
        "sasl.username": python["sasl_plain_username"],
        "sasl.password": python["sasl_plain_password"],
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": python["ssl_cafile"],
    }


def test_confluent_config_refuses_inconsistent_security_like_kafka_python():
    """SASL without credentials is the same ConfigError for both clients."""
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN")
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME"):
        confluent_config(settings)


def test_confluent_options_are_mapped_from_kafka_python_names_or_passed_through():
    """linger_ms -> linger.ms, delivery_timeout_ms -> message.timeout.ms; dotted names as is."""
    config = confluent_config(Settings(), {"linger_ms": 5, "delivery_timeout_ms": 4000,
                                           "batch_size": 1024, "queue.buffering.max.ms": 7})
    assert (config["linger.ms"], config["message.timeout.ms"], config["batch.size"],
            config["queue.buffering.max.ms"]) == (5, 4000, 1024, 7)


def test_an_option_librdkafka_lacks_is_a_config_error_before_any_connection():
    """A kafka-python-only option with the confluent transport: ConfigError naming it (exit 2),
    raised before the broker (here: nothing listening) is contacted."""
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", kafka_client="confluent",
                        kafka_bootstrap_timeout=60)
    with pytest.raises(ConfigError, match="'max_in_flight_requests_per_connection' has no"):
        UsageProducer(settings, create_topics=False, max_in_flight_requests_per_connection=1)


def test_kafka_python_config_is_idempotent_acks_all_with_the_caching_partitioner():
    """The default transport's settings: acks=all, idempotence, murmur2 partitioner; options win."""
    config = kafka_python_config({"linger_ms": 0})
    assert config["acks"] == "all" and config["enable_idempotence"] is True
    assert config["linger_ms"] == 0
    assert type(config["partitioner"]).__name__ == "TaskPartitioner"


def test_kafka_client_setting_from_environment_and_cli(monkeypatch, capsys):
    """MODELMETER_KAFKA_CLIENT picks the transport (default kafka-python); a bad value is a
    one-line error, exit 2."""
    assert Settings().kafka_client == "kafka-python"
    monkeypatch.setenv("MODELMETER_KAFKA_CLIENT", "confluent")
    assert Settings().kafka_client == "confluent"
    assert main(["policy", "check", "--kafka-client", "librdkafka"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("modelmeter: error: setting kafka_client:") and err.count("\n") == 1


def test_the_lean_send_is_kafka_pythons_send_on_an_unchecked_version(monkeypatch):
    """On a kafka-python version its internals were not checked against, the SDK's
    kafka-python transport sends through KafkaProducer.send itself."""
    import kafka

    from pipeline.transport import _lean_send

    class Producer:
        config = {"key_serializer": None, "value_serializer": None}

        def send(self, topic, value=None, key=None):
            return ("stock", topic, value, key)

    monkeypatch.setattr(kafka, "__version__", "9.9.9")
    send = _lean_send(Producer(), "usage")
    assert send(b"v", b"k") == ("stock", "usage", b"v", b"k")
