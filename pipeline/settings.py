"""The one place that reads the environment.

Explicit arguments win over the environment::

    settings = Settings()                                   # environment + defaults
    settings = Settings(topic="other-topic")                # explicit keyword wins
    settings = settings.with_overrides(lake=None, topic="x")  # CLI options: None = not given

Secrets are :class:`pydantic.SecretStr` and never printed (``repr`` masks them). The SASL
password comes from ``KAFKA_SASL_PASSWORD`` or from the file ``KAFKA_SASL_PASSWORD_FILE`` names
(:meth:`Settings.sasl_password`), never from a command-line option (``ps`` shows those); it
is unwrapped only where it is handed to a Kafka client (:meth:`Settings.kafka_client_config`,
:func:`pipeline.kafka_config.confluent_config`). Inconsistent security settings (SASL without a user, a CA
file with a plaintext protocol, ...) raise :class:`~pipeline.ConfigError` naming the
variable, when a Kafka client is about to be made - so ``report`` and ``build`` never trip
over Kafka settings they do not use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline._exceptions import ConfigError
from pipeline.object_lake import ObjectLake, is_object_url
from pipeline.resources import default_data_file

__all__ = ["Settings", "DEFAULT_TOPIC", "dlq_topic_for", "SASL_PROTOCOLS", "TLS_PROTOCOLS"]

SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")

DEFAULT_TOPIC = "agent-usage"

_PASSWORD_FILE_LIMIT = 64 * 1024  # KAFKA_SASL_PASSWORD_FILE: a password, not a document


def dlq_topic_for(topic: str) -> str:
    """Dead-letter topic of ``topic`` (``agent-usage`` -> ``agent-usage.dlq``)."""
    return f"{topic}.dlq"


def _env(name: str, field: str) -> Any:
    return AliasChoices(name, field)


class Settings(BaseSettings):
    """modelmeter's settings, each with its environment name (docs/operations.md, "Settings")."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol")
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias=_env("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism")
    )
    kafka_sasl_username: str | None = Field(
        None, validation_alias=_env("KAFKA_SASL_USERNAME", "kafka_sasl_username")
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=_env("KAFKA_SASL_PASSWORD", "kafka_sasl_password")
    )
    kafka_sasl_password_file: Path | None = Field(
        None,
        validation_alias=_env("KAFKA_SASL_PASSWORD_FILE", "kafka_sasl_password_file"),
        description="a file holding the SASL password (instead of KAFKA_SASL_PASSWORD), read "
        "when a Kafka client is made",
    )
    kafka_ssl_cafile: Path | None = Field(
        None, validation_alias=_env("KAFKA_SSL_CAFILE", "kafka_ssl_cafile")
    )
    kafka_client: Literal["confluent", "kafka-python"] = Field(
        "confluent",
        validation_alias=_env("MODELMETER_KAFKA_CLIENT", "kafka_client"),
        description="Kafka client of the SDK producer, simulate, consume, the dead-letter "
        "producer and topic administration: confluent (librdkafka, the default) "
        "or kafka-python",
    )
    topic: str = Field(DEFAULT_TOPIC, validation_alias=_env("MODELMETER_TOPIC", "topic"))
    lake: Path | ObjectLake = Field(
        Path("data/lake"), validation_alias=_env("MODELMETER_LAKE", "lake")
    )
    warehouse: Path = Field(
        Path("data/warehouse.duckdb"), validation_alias=_env("MODELMETER_WAREHOUSE", "warehouse")
    )
    # ./schemas/<file> when present, else the file shipped with modelmeter (pipeline.resources)
    policy: Path = Field(
        default_factory=lambda: default_data_file("routing_policy.yaml"),
        validation_alias=_env("MODELMETER_POLICY", "policy"),
    )
    prices: Path = Field(
        default_factory=lambda: default_data_file("prices.csv"),
        validation_alias=_env("MODELMETER_PRICES", "prices"),
    )
    models: Path = Field(
        default_factory=lambda: default_data_file("models.yaml"),
        validation_alias=_env("MODELMETER_MODELS", "models"),
        description="the model catalogue: lifecycle dates and successors",
    )
    budgets: Path = Field(
        default_factory=lambda: default_data_file("budgets.yaml"),
        validation_alias=_env("MODELMETER_BUDGETS", "budgets"),
        description="monthly budgets: total, per role, per model",
    )

    # -- operations -------------------------------------------------------------------------
    kafka_bootstrap_timeout: float = Field(
        30.0,
        gt=0,
        validation_alias=_env("MODELMETER_BOOTSTRAP_TIMEOUT", "kafka_bootstrap_timeout"),
        description="seconds to reach the broker at start before giving up (exit 2)",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        validation_alias=_env("MODELMETER_METRICS_PORT", "metrics_port"),
        description="Prometheus endpoint port of `consume`; unset = off, 0 = any free port",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        validation_alias=_env("MODELMETER_METRICS_HOST", "metrics_host"),
        description="address the metrics endpoint listens on (0.0.0.0 in a container)",
    )
    health_max_commit_age: float = Field(
        300.0,
        gt=0,
        validation_alias=_env("MODELMETER_HEALTH_MAX_COMMIT_AGE", "health_max_commit_age"),
        description="/healthz fails when there is lag and no commit for this many seconds",
    )
    dlq_retry_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias=_env("MODELMETER_DLQ_RETRY_SECONDS", "dlq_retry_seconds"),
        description="seconds a dead letter is retried on transient errors before a reduced "
        "dead letter is sent instead (the whole message stays in _rejected)",
    )
    collect_token: SecretStr | None = Field(
        None,
        validation_alias=_env("MODELMETER_COLLECT_TOKEN", "collect_token"),
        description="bearer token `collect http` requires of senders; unset = none required",
    )
    collect_token_file: Path | None = Field(
        None,
        validation_alias=_env("MODELMETER_COLLECT_TOKEN_FILE", "collect_token_file"),
        description="a file holding that token (instead of MODELMETER_COLLECT_TOKEN)",
    )
    log_format: Literal["text", "json"] = Field(
        "text", validation_alias=_env("MODELMETER_LOG_FORMAT", "log_format")
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("MODELMETER_LOG_LEVEL", "log_level")
    )
    umask: int = Field(
        0o027,
        validation_alias=_env("MODELMETER_UMASK", "umask"),
        description="file-creation mask of the consumer (octal, default 027: no access for others)",
    )

    @field_validator("umask", mode="before")
    @classmethod
    def _octal_umask(cls, value: Any) -> Any:
        # The environment gives "027"; Python callers may pass 0o027. Octal either way.
        if isinstance(value, str):
            text = value.strip().removeprefix("0o")
            if not text or any(c not in "01234567" for c in text):
                raise ValueError(f"umask must be octal digits such as 027, got {value!r}")
            value = int(text, 8)
        if isinstance(value, int) and not 0 <= value <= 0o777:
            raise ValueError("umask must be between 000 and 777 (octal)")
        return value

    @field_validator("lake", mode="before")
    @classmethod
    def _lake_location(cls, value: Any) -> Any:
        # a URL must never become a relative directory ("s3:/bucket/lake"): every consumer
        # would write its own local copy, and build would find an empty lake
        if is_object_url(value):
            return ObjectLake.parse(value)
        return value

    @field_validator("warehouse", mode="before")
    @classmethod
    def _local_path(cls, value: Any) -> Any:
        if is_object_url(value):
            raise ValueError(
                f"{value!r} is a URL; the warehouse is a local (or mounted) DuckDB file"
                " (the lake may be s3://BUCKET/PREFIX)"
            )
        return value

    @field_validator(
        "log_format", "log_level", "kafka_security_protocol", "kafka_sasl_mechanism", mode="before"
    )
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.lower() if value.lower() in ("text", "json") else value.upper()

    @property
    def dlq_topic(self) -> str:
        return dlq_topic_for(self.topic)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the non-None ``overrides`` applied (CLI options win over the environment).

        The overrides are validated like the environment is (a password becomes a SecretStr,
        "027" an octal umask); the environment is not read again.
        """
        unknown = set(overrides) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = {k: v for k, v in overrides.items() if v is not None}
        if not values:
            return self
        return type(self).model_validate({**dict(self), **values})

    def sasl_password(self) -> SecretStr | None:
        """The SASL password: ``KAFKA_SASL_PASSWORD``, or the content of
        ``KAFKA_SASL_PASSWORD_FILE`` (one trailing newline dropped); None when neither is set.

        Raises :class:`ConfigError` when both are set, or when the file cannot be read, is
        larger than 64 KiB, is not UTF-8 or holds nothing. The file is read on each call
        (when a Kafka client is made), so that ``report`` and ``build`` never read it.
        """
        path = self.kafka_sasl_password_file
        if path is None:
            return self.kafka_sasl_password
        if self.kafka_sasl_password is not None:
            raise ConfigError(
                "KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set; set one of them"
            )
        try:
            with open(path, "rb") as fh:
                data = fh.read(_PASSWORD_FILE_LIMIT + 1)
        except OSError as exc:
            raise ConfigError(
                f"KAFKA_SASL_PASSWORD_FILE {path}: cannot read it"
                f" ({exc.strerror or type(exc).__name__})"
            ) from None
        if len(data) > _PASSWORD_FILE_LIMIT:
            raise ConfigError(
                f"KAFKA_SASL_PASSWORD_FILE {path}: larger than"
                f" {_PASSWORD_FILE_LIMIT // 1024} KiB, not a password file"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"KAFKA_SASL_PASSWORD_FILE {path}: not UTF-8 text") from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise ConfigError(f"KAFKA_SASL_PASSWORD_FILE {path}: the file is empty")
        return SecretStr(text)

    def check_kafka_security(self) -> None:
        """Raise :class:`ConfigError` when the Kafka security settings do not fit together."""
        protocol = self.kafka_security_protocol
        if protocol in SASL_PROTOCOLS:
            required: tuple[tuple[object, str], ...] = (
                (self.kafka_sasl_mechanism, "KAFKA_SASL_MECHANISM (--sasl-mechanism)"),
                (self.kafka_sasl_username, "KAFKA_SASL_USERNAME (--sasl-username)"),
                (self.sasl_password(), "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"),
            )
            for field, env in required:
                if not field or (isinstance(field, SecretStr) and not field.get_secret_value()):
                    raise ConfigError(f"{env} is required with KAFKA_SECURITY_PROTOCOL={protocol}")
        else:
            unused: tuple[tuple[object, str], ...] = (
                (self.kafka_sasl_mechanism, "KAFKA_SASL_MECHANISM"),
                (self.kafka_sasl_username, "KAFKA_SASL_USERNAME"),
                (self.kafka_sasl_password, "KAFKA_SASL_PASSWORD"),
                (self.kafka_sasl_password_file, "KAFKA_SASL_PASSWORD_FILE"),
            )
            for field, env in unused:
                if field:
                    # Refuse rather than silently connecting unauthenticated.
                    raise ConfigError(
                        f"{env} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL;"
                        f" set it to {' or '.join(SASL_PROTOCOLS)}"
                    )
        if self.kafka_ssl_cafile is not None:
            if protocol not in TLS_PROTOCOLS:
                raise ConfigError(
                    f"KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use"
                    f" TLS; set it to {' or '.join(TLS_PROTOCOLS)}"
                )
            if not self.kafka_ssl_cafile.is_file():
                raise ConfigError(f"KAFKA_SSL_CAFILE {self.kafka_ssl_cafile}: no such file")
            if not os.access(self.kafka_ssl_cafile, os.R_OK):
                raise ConfigError(f"KAFKA_SSL_CAFILE {self.kafka_ssl_cafile}: not readable")

    def kafka_client_config(self) -> dict[str, Any]:
        """Connection keyword arguments common to kafka-python's producer, consumer and admin.

        Checks the security settings first (:meth:`check_kafka_security`). The result holds
        the plain password: hand it to the client, never print or log it. Prefer
        :func:`pipeline.kafka_connect.create_client`, which also turns connection failures
        into one-line errors.
        """
        self.check_kafka_security()
        config: dict[str, Any] = {
            "bootstrap_servers": [
                s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()
            ],
            "security_protocol": self.kafka_security_protocol,
            "bootstrap_timeout_ms": int(self.kafka_bootstrap_timeout * 1000),
        }
        if self.kafka_security_protocol in SASL_PROTOCOLS:
            password = self.sasl_password()
            assert password is not None  # check_kafka_security made sure
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            config["sasl_plain_password"] = password.get_secret_value()
        if self.kafka_ssl_cafile:
            config["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return config

    def secret_values(self) -> list[str]:
        """The plain secrets held by these settings (for log redaction only); a password
        file that cannot be read adds nothing here (making a Kafka client reports it)."""
        try:
            password = self.sasl_password()
        except ConfigError:
            password = self.kafka_sasl_password
        if password is None:
            return []
        secret = password.get_secret_value()
        return [secret] if secret else []

    def apply_umask(self) -> int:
        """Set the process umask to :attr:`umask` (lake files get no access for others by
        default); returns the previous mask."""
        return os.umask(self.umask)
