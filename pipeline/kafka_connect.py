"""Make Kafka clients from :class:`~pipeline.settings.Settings`, failing in one line.

Every Kafka client of modelmeter (SDK producer, consumer, dead-letter producer, simulator,
topic administration) is made here, on the library ``MODELMETER_KAFKA_CLIENT`` names:
confluent-kafka (librdkafka, the default) or kafka-python::

    producer = create_confluent_client(confluent_kafka.Producer, settings, {"acks": "all"})
    consumer = create_client(KafkaConsumer, settings, group_id="modelmeter-lake")  # kafka-python

so that they all get the same security settings (SASL_SSL, SCRAM/PLAIN, a custom CA; for
librdkafka :func:`confluent_config` maps them to its names) and the same start-up behaviour:

- broker unreachable for ``settings.kafka_bootstrap_timeout`` seconds ->
  :class:`~pipeline.KafkaUnavailableError` (exit 2, a supervisor restarts the process);
- wrong user or password, untrusted broker certificate, a SASL mechanism the broker does
  not offer, a TLS client talking to a plaintext port -> :class:`~pipeline.KafkaAuthError`
  (exit 2) at once, not after the timeout (see :func:`wait_for_broker`);
- inconsistent settings -> :class:`~pipeline.ConfigError` (exit 2).

Messages name the broker and the setting to look at, never the password. Once a client is
made, riding out broker outages is the client's job (both libraries reconnect with back-off).
Only the libraries' public APIs are used.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pipeline._exceptions import ConfigError, KafkaAuthError, KafkaUnavailableError, PipelineError
from pipeline.kafka_config import bootstrap_addresses, confluent_config
from pipeline.kafka_probe import wait_for_broker
from pipeline.settings import Settings

__all__ = [
    "create_client",
    "translate_kafka_error",
    "wait_for_broker",
    "bootstrap_addresses",
    "confluent_config",
    "create_confluent_client",
    "create_confluent_producer",
    "create_confluent_consumer",
    "create_confluent_admin",
]

log = logging.getLogger(__name__)
# librdkafka's own log lines (connection errors during an outage, ...), through logging
librdkafka_log = logging.getLogger(f"{__name__}.librdkafka")

T = TypeVar("T")


def translate_kafka_error(exc: BaseException, settings: Settings) -> PipelineError | None:
    """The one-line modelmeter error for a kafka-python exception, or None when it is not a
    connection, authentication or authorization failure."""
    import kafka.errors as ke

    servers = settings.kafka_bootstrap_servers
    if isinstance(exc, ke.SaslAuthenticationFailedError):
        return KafkaAuthError(
            f"Kafka authentication failed at {servers} for user {settings.kafka_sasl_username!r}"
            f" ({settings.kafka_sasl_mechanism}); check KAFKA_SASL_USERNAME and"
            " KAFKA_SASL_PASSWORD"
        )
    if isinstance(exc, ke.UnsupportedSaslMechanismError | ke.IllegalSaslStateError):
        return KafkaAuthError(
            f"Kafka broker {servers} does not accept SASL mechanism"
            f" {settings.kafka_sasl_mechanism}; check KAFKA_SASL_MECHANISM"
        )
    if isinstance(exc, ke.AuthorizationError):
        return KafkaAuthError(
            f"Kafka user {settings.kafka_sasl_username!r} is not authorized at {servers}:"
            f" {exc.__class__.__name__}"
        )
    if isinstance(exc, ke.KafkaTimeoutError | ke.KafkaConnectionError):
        return KafkaUnavailableError(
            f"cannot reach Kafka at {servers} within {settings.kafka_bootstrap_timeout:g} s"
            " (KAFKA_BOOTSTRAP_SERVERS, MODELMETER_BOOTSTRAP_TIMEOUT)"
        )
    return None


class _ConnectionErrors(logging.Handler):
    """Collects the exceptions kafka-python logs while a client bootstraps."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors.extend(a for a in args if isinstance(a, BaseException))


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: tuple[bool, int] = (True, logging.NOTSET)


@contextmanager
def _quiet_bootstrap() -> Iterator[_ConnectionErrors]:
    """While a client bootstraps, kafka-python's per-attempt warnings are collected instead
    of printed: a failed start is one line that names the last error, not a screenful.
    Safe when several threads make clients at once (the last one out restores logging)."""
    global _quiet_depth, _quiet_saved
    handler = _ConnectionErrors()
    kafka_log = logging.getLogger("kafka")
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = (kafka_log.propagate, kafka_log.level)
            kafka_log.propagate = False
            if kafka_log.getEffectiveLevel() > logging.WARNING:
                kafka_log.setLevel(logging.WARNING)
        _quiet_depth += 1
        kafka_log.addHandler(handler)
    try:
        yield handler
    finally:
        with _quiet_lock:
            kafka_log.removeHandler(handler)
            _quiet_depth -= 1
            if _quiet_depth == 0:
                kafka_log.propagate = _quiet_saved[0]
                kafka_log.setLevel(_quiet_saved[1])  # setLevel: also clears logging's level cache


def _explain(errors: list[BaseException]) -> str:
    import kafka.errors as ke

    errors = [e for e in errors if not isinstance(e, ke.KafkaTimeoutError)]
    if not errors:
        return ""
    last = errors[-1]
    text = str(last).splitlines()[0] if str(last) else last.__class__.__name__
    return f"; last error: {text[:200]}"


def create_client(client_class: type[T], settings: Settings, /, *args: Any, **kwargs: Any) -> T:
    """A kafka-python client: ``client_class(*args, **settings.kafka_client_config(),
    **kwargs)``, with one-line failures (see the module docstring). ``kwargs`` win over the
    settings."""
    config = settings.kafka_client_config()
    config.update(kwargs)
    deadline = time.monotonic() + config.pop("bootstrap_timeout_ms") / 1000
    wait_for_broker(settings, deadline=deadline)
    # The broker answered: what is left of the timeout (at least 5 s) is the client's, under
    # the name of the installed kafka-python (3.x bootstrap_timeout_ms, 2.x
    # api_version_auto_timeout_ms)
    left_ms = int(max(5.0, deadline - time.monotonic()) * 1000)
    known = getattr(client_class, "DEFAULT_CONFIG", {})
    for name in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if name in known:
            config.setdefault(name, left_ms)
            break
    log.debug(
        "connecting to Kafka at %s (%s, bootstrap timeout %g s)",
        settings.kafka_bootstrap_servers,
        settings.kafka_security_protocol,
        left_ms / 1000,
    )
    with _quiet_bootstrap() as seen:
        try:
            return client_class(*args, **config)
        except Exception as exc:
            # An auth failure seen on the way explains a timeout better than the timeout.
            for cause in [exc, *reversed(seen.errors)]:
                error = translate_kafka_error(cause, settings)
                if isinstance(error, KafkaAuthError):
                    raise error from None
            error = translate_kafka_error(exc, settings)
            if error is None:
                raise
            if isinstance(error, KafkaUnavailableError):
                error = KafkaUnavailableError(f"{error}{_explain(seen.errors)}")
            raise error from None


def create_confluent_client(
    client_class: Any,
    settings: Settings,
    options: dict[str, Any] | None = None,
    *,
    topic: str | None = None,
) -> Any:
    """A librdkafka client (``confluent_kafka.Producer``, ``Consumer`` or
    ``admin.AdminClient``) with ``options`` (kafka-python or librdkafka names), after the
    same start-up probe as kafka-python clients (:func:`wait_for_broker`: unreachable ->
    :class:`KafkaUnavailableError`, refused credentials or certificate ->
    :class:`KafkaAuthError`, in one line); with ``topic``'s metadata fetched when given."""
    from confluent_kafka import KafkaException

    config = confluent_config(settings, options)
    errors: list[str] = []
    config["error_cb"] = lambda err: errors.append(f"{err.name()}: {err.str()}")
    config["logger"] = librdkafka_log
    deadline = time.monotonic() + settings.kafka_bootstrap_timeout
    wait_for_broker(settings, deadline=deadline)
    log.debug(
        "connecting to Kafka at %s (%s, librdkafka %s)",
        settings.kafka_bootstrap_servers,
        settings.kafka_security_protocol,
        client_class.__name__,
    )
    try:
        client = client_class(config)
    except KafkaException as exc:
        raise ConfigError(f"confluent-kafka settings: {exc.args[0]}") from None
    remaining = max(5.0, deadline - time.monotonic())
    try:
        metadata = client.list_topics(topic, timeout=remaining)
    except KafkaException as exc:
        _close(client)
        raise KafkaUnavailableError(
            f"no metadata {f'for Kafka topic {topic!r} ' if topic else ''}from"
            f" {settings.kafka_bootstrap_servers} within {remaining:.0f} s: {exc.args[0]}"
        ) from None
    if topic is not None:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            _close(client)
            reason = (
                found.error if found is not None and found.error is not None else "no partitions"
            )
            raise KafkaUnavailableError(
                f"no metadata for Kafka topic {topic!r} from {settings.kafka_bootstrap_servers}:"
                f" {reason}{'; ' + errors[-1] if errors else ''}"
            )
    return client


def _close(client: Any) -> None:
    close = getattr(client, "close", None)  # a Consumer's; a Producer's in newer releases
    if close is not None:
        close()


def create_confluent_producer(
    settings: Settings, options: dict[str, Any], *, topic: str | None = None
) -> Any:
    """A ``confluent_kafka.Producer`` (see :func:`create_confluent_client`)."""
    from confluent_kafka import Producer

    return create_confluent_client(Producer, settings, options, topic=topic)


def create_confluent_consumer(settings: Settings, options: dict[str, Any]) -> Any:
    """A ``confluent_kafka.Consumer`` (``options`` in kafka-python or librdkafka names), with
    the metadata of ``settings.topic`` (the topic it subscribes to) fetched."""
    from confluent_kafka import Consumer

    return create_confluent_client(Consumer, settings, options, topic=settings.topic)


def create_confluent_admin(settings: Settings, options: dict[str, Any] | None = None) -> Any:
    """A ``confluent_kafka.admin.AdminClient`` (see :func:`create_confluent_client`)."""
    from confluent_kafka.admin import AdminClient

    return create_confluent_client(AdminClient, settings, options)
