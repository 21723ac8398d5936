"""The one place that reads the environment (DESIGN.md section 2).

Explicit arguments win over the environment::

    settings = Settings()                                   # environment + defaults
    settings = Settings(MODELMETER_TOPIC="other-topic")     # explicit override
    settings = Settings.from_cli(args)                      # CLI options override

Secrets are :class:`pydantic.SecretStr` and never printed (``repr`` masks them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "DEFAULT_TOPIC", "dlq_topic_for"]

DEFAULT_TOPIC = "agent-usage"


def dlq_topic_for(topic: str) -> str:
    """Dead-letter topic of ``topic`` (``agent-usage`` -> ``agent-usage.dlq``)."""
    return f"{topic}.dlq"


def _env(name: str, field: str) -> Any:
    return AliasChoices(name, field)


class Settings(BaseSettings):
    """modelmeter's settings; environment names as in DESIGN.md section 2."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"))
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"))
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias=_env("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism"))
    kafka_sasl_username: str | None = Field(
        None, validation_alias=_env("KAFKA_SASL_USERNAME", "kafka_sasl_username"))
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=_env("KAFKA_SASL_PASSWORD", "kafka_sasl_password"))
    kafka_ssl_cafile: Path | None = Field(
        None, validation_alias=_env("KAFKA_SSL_CAFILE", "kafka_ssl_cafile"))
    topic: str = Field(DEFAULT_TOPIC, validation_alias=_env("MODELMETER_TOPIC", "topic"))
    lake: Path = Field(Path("data/lake"), validation_alias=_env("MODELMETER_LAKE", "lake"))
    warehouse: Path = Field(
        Path("data/warehouse.duckdb"), validation_alias=_env("MODELMETER_WAREHOUSE", "warehouse"))
    policy: Path = Field(
        Path("schemas/routing_policy.yaml"), validation_alias=_env("MODELMETER_POLICY", "policy"))
    prices: Path = Field(
        Path("schemas/prices.csv"), validation_alias=_env("MODELMETER_PRICES", "prices"))

    @property
    def dlq_topic(self) -> str:
        return dlq_topic_for(self.topic)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the non-None ``overrides`` applied (CLI options win over the environment)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        return self.model_copy(update=values) if values else self

    def kafka_client_config(self) -> dict[str, Any]:
        """Connection keyword arguments common to kafka-python's producer, consumer and admin."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            config["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None)
        if self.kafka_ssl_cafile:
            config["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return config
