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
from pipeline.transport import CONFLUENT_PRODUCER_DEFAULTS, kafka_python_config


def test_confluent_config_has_the_same_security_settings_as_kafka_python(tmp_path):
    """SASL_SSL + SCRAM + CA file map to librdkafka's names, with host name verification."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings(
        kafka_bootstrap_servers="b1:9093, b2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="meter",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=ca,
    )
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
    config = confluent_config(
        Settings(),
        {
            "linger_ms": 5,
            "delivery_timeout_ms": 4000,
            "batch_size": 1024,
            "queue.buffering.max.ms": 7,
        },
    )
    assert (
        config["linger.ms"],
        config["message.timeout.ms"],
        config["batch.size"],
        config["queue.buffering.max.ms"],
    ) == (5, 4000, 1024, 7)


def test_an_option_librdkafka_lacks_is_a_config_error_before_any_connection():
    """A kafka-python-only option with the confluent transport: ConfigError naming it (exit 2),
    raised before the broker (here: nothing listening) is contacted."""
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1", kafka_client="confluent", kafka_bootstrap_timeout=60
    )
    with pytest.raises(ConfigError, match="'max_in_flight_requests_per_connection' has no"):
        UsageProducer(settings, create_topics=False, max_in_flight_requests_per_connection=1)


def test_kafka_python_config_is_idempotent_acks_all():
    """The kafka-python transport's settings: acks=all, idempotence; options win; its own
    (murmur2) partitioner, like librdkafka's murmur2_random on the default transport."""
    config = kafka_python_config({"linger_ms": 0})
    assert config["acks"] == "all" and config["enable_idempotence"] is True
    assert config["linger_ms"] == 0
    assert "partitioner" not in config
    assert CONFLUENT_PRODUCER_DEFAULTS["partitioner"] == "murmur2_random"
    assert CONFLUENT_PRODUCER_DEFAULTS["enable.idempotence"] is True
    assert CONFLUENT_PRODUCER_DEFAULTS["acks"] == "all"


def test_kafka_client_setting_from_environment_and_cli(monkeypatch, capsys):
    """MODELMETER_KAFKA_CLIENT picks the client (default confluent); a bad value is a
    one-line error, exit 2."""
    monkeypatch.delenv("MODELMETER_KAFKA_CLIENT", raising=False)
    assert Settings().kafka_client == "confluent"
    monkeypatch.setenv("MODELMETER_KAFKA_CLIENT", "kafka-python")
    assert Settings().kafka_client == "kafka-python"
    assert main(["policy", "check", "--kafka-client", "librdkafka"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("modelmeter: error: setting kafka_client:") and err.count("\n") == 1


# the library modules pipeline/ may import: their documented entry points
_PUBLIC_MODULES = {
    "kafka",
    "kafka.errors",
    "kafka.admin",
    "kafka.structs",
    "confluent_kafka",
    "confluent_kafka.admin",
}


def test_no_private_member_of_a_kafka_library_is_used():
    """pipeline/ uses kafka-python and confluent-kafka through their public APIs only: it
    imports only their public modules, and a module that handles Kafka objects reads no
    attribute starting with an underscore except on its own objects (``self._x``, ``cls._x``). The one exception is
    confluent-kafka's documented local error codes, ``KafkaError._TRANSPORT`` and the like
    (librdkafka's ``RD_KAFKA_RESP_ERR__TRANSPORT``)."""
    import ast

    from tests.fixtures.kafka_broker import REPO_ROOT

    problems = []
    checked = 0
    for path in sorted((REPO_ROOT / "pipeline").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "kafka" not in text:  # a module that has no Kafka library object at hand
            continue
        checked += 1
        tree = ast.parse(text)
        where = path.relative_to(REPO_ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                for name in names:
                    if name.split(".")[0] in ("kafka", "confluent_kafka") and (
                        name not in _PUBLIC_MODULES
                    ):
                        problems.append(f"{where}:{node.lineno}: imports {name}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                error_code = (
                    isinstance(node.value, ast.Name)
                    and node.value.id == "CKError"
                    and node.attr[1:].isupper()
                )
                if not (own or error_code):
                    problems.append(
                        f"{where}:{node.lineno}: .{node.attr} of {ast.unparse(node.value)}"
                    )
    assert checked >= 6  # transport, sdk, kafka_connect, kafka_admin, clients, dead_letter, ...
    assert not problems, "\n".join(problems)
