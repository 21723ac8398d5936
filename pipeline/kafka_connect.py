"""Make kafka-python clients from :class:`~pipeline.settings.Settings`, failing in one line.

Every Kafka client of modelmeter (SDK producer, consumer, simulator, admin) is made here::

    from kafka import KafkaConsumer, KafkaProducer
    producer = create_client(KafkaProducer, settings, acks="all")
    consumer = create_client(KafkaConsumer, settings, settings.topic, group_id="modelmeter-lake")

so that they all get the same security settings (SASL_SSL, SCRAM/PLAIN, a custom CA) and
the same start-up behaviour:

- broker unreachable for ``settings.kafka_bootstrap_timeout`` seconds ->
  :class:`~pipeline.KafkaUnavailableError` (exit 2, a supervisor restarts the process);
- wrong user or password, untrusted broker certificate, a SASL mechanism the broker does
  not offer, a TLS client talking to a plaintext port -> :class:`~pipeline.KafkaAuthError`
  (exit 2) at once, not after the timeout (see :func:`wait_for_broker`);
- inconsistent settings -> :class:`~pipeline.ConfigError` (exit 2).

Messages name the broker and the setting to look at, never the password. Once a client is
made, riding out broker outages is the client's job (it reconnects with back-off).

The optional confluent-kafka (librdkafka) clients, the SDK's producer and the consumer's
(``MODELMETER_KAFKA_CLIENT=confluent``), are made here too (:func:`create_confluent_producer`,
:func:`create_confluent_consumer`): the same probe first, and :func:`confluent_config` maps
the same security settings to librdkafka's names.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pipeline._exceptions import ConfigError, KafkaAuthError, KafkaUnavailableError, PipelineError
from pipeline.settings import SASL_PROTOCOLS, TLS_PROTOCOLS, Settings

__all__ = ["create_client", "translate_kafka_error", "wait_for_broker", "bootstrap_addresses",
           "confluent_config", "create_confluent_producer", "create_confluent_consumer",
           "KAFKA_PYTHON_CHECKED", "kafka_python_checked"]

log = logging.getLogger(__name__)

# kafka-python versions whose internals modelmeter's fast paths were checked against (the
# consumer's message decoding, pipeline/consumer/fast_records.py; the SDK's send,
# pipeline/transport.py); pyproject.toml pins the newest
KAFKA_PYTHON_CHECKED = ("3.0.12",)


def kafka_python_checked() -> bool:
    """Whether the installed kafka-python is one of :data:`KAFKA_PYTHON_CHECKED`."""
    import kafka

    return kafka.__version__ in KAFKA_PYTHON_CHECKED

T = TypeVar("T")


def bootstrap_addresses(settings: Settings) -> list[tuple[str, int]]:
    """``host:port`` pairs of the bootstrap servers (``[v6]:port`` accepted)."""
    out = []
    for item in settings.kafka_bootstrap_servers.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(
                f"KAFKA_BOOTSTRAP_SERVERS: {item!r} is not host:port")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is empty")
    return out


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """The trust settings kafka-python uses (TLS >= 1.2, host name checked, CA file or the
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
            f" ({exc.__class__.__name__})") from None
    return ctx


def wait_for_broker(settings: Settings, *, deadline: float) -> None:
    """Return once a bootstrap server accepts a connection and, for SSL/SASL, the TLS
    handshake and SASL authentication succeed with it; retry with back-off until
    ``deadline`` (a ``time.monotonic()`` value).

    Raises :class:`KafkaUnavailableError` when no bootstrap server answered in time (the
    kafka-python client is then never made, so nothing of it is left behind), and
    :class:`KafkaAuthError` at once when a broker's certificate is not trusted, the port
    does not speak TLS, the SASL mechanism is not enabled or the credentials are refused.

    Why not leave this to kafka-python: it retries a TLS failure until its bootstrap
    timeout, and it drops the broker's "authentication failed" answer because the broker
    closes the connection right after it, so a wrong password would look like an
    unreachable broker. This probe reads the answer itself, with kafka-python's own
    protocol and SASL classes.
    """
    tls = settings.kafka_security_protocol in TLS_PROTOCOLS
    ctx = _ssl_context(settings) if tls else None
    addresses = bootstrap_addresses(settings)
    last_error = "no attempt"
    backoff = 0.1
    while True:
        for host, port in addresses:
            timeout = max(0.2, min(5.0, deadline - time.monotonic()))
            try:
                raw = socket.create_connection((host, port), timeout=timeout)
            except OSError as exc:
                last_error = f"{host}:{port}: {exc.strerror or exc.__class__.__name__}"
                continue
            sock: socket.socket = raw
            try:
                if ctx:
                    sock = _tls_handshake(ctx, raw, host, port, settings)
                if settings.kafka_security_protocol in SASL_PROTOCOLS:
                    _sasl_probe(sock, host, port, settings)
                return
            except (TimeoutError, ConnectionError, EOFError) as exc:
                # went away mid-probe (restarting?): try again
                last_error = f"{host}:{port}: {exc.__class__.__name__}"
            finally:
                sock.close()  # the TLS socket owns the descriptor once wrapped
                raw.close()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KafkaUnavailableError(
                f"cannot reach Kafka at {settings.kafka_bootstrap_servers} within"
                f" {settings.kafka_bootstrap_timeout:g} s (KAFKA_BOOTSTRAP_SERVERS,"
                f" MODELMETER_BOOTSTRAP_TIMEOUT); last error: {last_error}")
        time.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, 1.0)


def _tls_handshake(ctx: ssl.SSLContext, sock: socket.socket, host: str, port: int,
                   settings: Settings) -> ssl.SSLSocket:
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or "verification failed"
        raise KafkaAuthError(
            f"TLS: the certificate of Kafka broker {host}:{port} is not trusted ({reason});"
            " check KAFKA_SSL_CAFILE") from None
    except (ssl.SSLError, ConnectionResetError, EOFError) as exc:
        raise KafkaAuthError(
            f"TLS handshake with Kafka broker {host}:{port} failed ({exc.__class__.__name__});"
            f" is it a TLS listener? (KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol})"
        ) from None


def _sasl_probe(sock: socket.socket, host: str, port: int, settings: Settings) -> None:
    import kafka.errors
    from kafka.net.sasl import get_sasl_mechanism
    from kafka.protocol.parser import KafkaProtocol
    from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

    protocol = KafkaProtocol(client_id="modelmeter-preflight")

    def call(request: Any) -> Any:
        protocol.send_request(request)
        sock.sendall(protocol.send_bytes())
        while True:
            data = sock.recv(65536)
            if not data:
                raise EOFError
            responses = protocol.receive_bytes(data)
            if responses:
                return responses[0][1]

    mechanism_name = settings.kafka_sasl_mechanism
    try:
        handshake = call(SaslHandshakeRequest(mechanism=mechanism_name, version=1))
    except kafka.errors.KafkaError as exc:  # e.g. a TLS alert read as a Kafka frame
        raise KafkaAuthError(
            f"Kafka broker {host}:{port} did not answer the SASL handshake"
            f" ({exc.__class__.__name__}); does KAFKA_SECURITY_PROTOCOL="
            f"{settings.kafka_security_protocol} match its listener?") from None
    if handshake.error_code != 0 or mechanism_name not in handshake.mechanisms:
        raise KafkaAuthError(
            f"Kafka broker {host}:{port} does not accept SASL mechanism {mechanism_name}"
            f" (it offers {', '.join(handshake.mechanisms) or 'none'}); check KAFKA_SASL_MECHANISM")
    config = settings.kafka_client_config()
    mechanism = get_sasl_mechanism(mechanism_name)(host=host, **config)
    while not mechanism.is_done():
        response = call(SaslAuthenticateRequest(auth_bytes=mechanism.auth_bytes(), version=1))
        if response.error_code != 0:
            raise KafkaAuthError(
                f"Kafka authentication failed at {host}:{port} for user"
                f" {settings.kafka_sasl_username!r} ({mechanism_name}); check KAFKA_SASL_USERNAME"
                " and KAFKA_SASL_PASSWORD")
        mechanism.receive(response.auth_bytes)
    if not mechanism.is_authenticated():
        raise KafkaAuthError(
            f"Kafka broker {host}:{port} could not be verified by SASL {mechanism_name}"
            " (server signature mismatch)")


def translate_kafka_error(exc: BaseException, settings: Settings) -> PipelineError | None:
    """The one-line modelmeter error for a kafka-python exception, or None when it is not a
    connection, authentication or authorization failure."""
    import kafka.errors as ke

    servers = settings.kafka_bootstrap_servers
    if isinstance(exc, ke.SaslAuthenticationFailedError):
        return KafkaAuthError(
            f"Kafka authentication failed at {servers} for user {settings.kafka_sasl_username!r}"
            f" ({settings.kafka_sasl_mechanism}); check KAFKA_SASL_USERNAME and"
            " KAFKA_SASL_PASSWORD")
    if isinstance(exc, ke.UnsupportedSaslMechanismError | ke.IllegalSaslStateError):
        return KafkaAuthError(
            f"Kafka broker {servers} does not accept SASL mechanism"
            f" {settings.kafka_sasl_mechanism}; check KAFKA_SASL_MECHANISM")
    if isinstance(exc, ke.AuthorizationError):
        return KafkaAuthError(
            f"Kafka user {settings.kafka_sasl_username!r} is not authorized at {servers}:"
            f" {exc.__class__.__name__}")
    if isinstance(exc, ke.KafkaTimeoutError | ke.KafkaConnectionError):
        return KafkaUnavailableError(
            f"cannot reach Kafka at {servers} within {settings.kafka_bootstrap_timeout:g} s"
            " (KAFKA_BOOTSTRAP_SERVERS, MODELMETER_BOOTSTRAP_TIMEOUT)")
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
    """``client_class(*args, **settings.kafka_client_config(), **kwargs)``, with one-line
    failures (see the module docstring). ``kwargs`` win over the settings."""
    config = settings.kafka_client_config()
    config.update(kwargs)
    deadline = time.monotonic() + config["bootstrap_timeout_ms"] / 1000
    wait_for_broker(settings, deadline=deadline)
    # The broker answered: what is left of the timeout (at least 5 s) is the client's.
    config["bootstrap_timeout_ms"] = int(max(5.0, deadline - time.monotonic()) * 1000)
    log.debug("connecting to Kafka at %s (%s, bootstrap timeout %g s)",
              settings.kafka_bootstrap_servers, settings.kafka_security_protocol,
              config["bootstrap_timeout_ms"] / 1000)
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


# -- confluent-kafka (librdkafka), the optional producer transport ---------------------------

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
        "bootstrap.servers": ",".join(f"{h}:{p}" if ":" not in h else f"[{h}]:{p}"
                                      for h, p in bootstrap_addresses(settings)),
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        assert settings.kafka_sasl_password is not None  # check_kafka_security made sure
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
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
            raise ConfigError(f"Kafka option {name!r} has no confluent-kafka (librdkafka)"
                              " equivalent; use MODELMETER_KAFKA_CLIENT=kafka-python for it")
    return config


def _confluent_client(client_class: Any, settings: Settings, config: dict[str, Any],
                      topic: str) -> Any:
    """A librdkafka client after the same start-up probe as kafka-python clients
    (:func:`wait_for_broker`), with ``topic``'s metadata fetched."""
    from confluent_kafka import KafkaException

    errors: list[str] = []
    config["error_cb"] = lambda err: errors.append(f"{err.name()}: {err.str()}")
    config["logger"] = log  # librdkafka's own log lines go through logging, not stderr
    deadline = time.monotonic() + settings.kafka_bootstrap_timeout
    wait_for_broker(settings, deadline=deadline)
    try:
        client = client_class(config)
    except KafkaException as exc:
        raise ConfigError(f"confluent-kafka settings: {exc.args[0]}") from None
    remaining = max(5.0, deadline - time.monotonic())
    try:
        metadata = client.list_topics(topic, timeout=remaining)
    except KafkaException as exc:
        client.close()
        raise KafkaUnavailableError(
            f"no metadata for Kafka topic {topic!r} from {settings.kafka_bootstrap_servers}"
            f" within {remaining:.0f} s: {exc.args[0]}") from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        client.close()
        reason = found.error if found is not None and found.error is not None else "no partitions"
        raise KafkaUnavailableError(
            f"no metadata for Kafka topic {topic!r} from {settings.kafka_bootstrap_servers}:"
            f" {reason}{'; ' + errors[-1] if errors else ''}")
    return client


def _import_confluent() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        raise ConfigError("MODELMETER_KAFKA_CLIENT=confluent needs the confluent-kafka package"
                          " (pip install 'modelmeter[confluent]')") from None
    return confluent_kafka


def create_confluent_producer(settings: Settings, topic: str, options: dict[str, Any], *,
                              buffer_messages: int) -> Any:
    """A confluent-kafka ``Producer`` with the SDK's guarantees (acks=all, idempotence,
    murmur2 partitioning like the Java client and kafka-python, at most ``buffer_messages``
    queued), after the same start-up probe as kafka-python clients (:func:`wait_for_broker`:
    unreachable -> :class:`KafkaUnavailableError`, refused credentials or certificate ->
    :class:`KafkaAuthError`, in one line), with ``topic``'s metadata fetched."""
    confluent_kafka = _import_confluent()
    config = confluent_config(settings, {
        "acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random",
        "linger.ms": 50, "message.timeout.ms": 120_000, "client.id": "modelmeter-sdk",
        "queue.buffering.max.messages": buffer_messages,
        **options,
    })
    return _confluent_client(confluent_kafka.Producer, settings, config, topic)


def create_confluent_consumer(settings: Settings, options: dict[str, Any]) -> Any:
    """A confluent-kafka ``Consumer`` (``options`` in kafka-python or librdkafka names), made
    like :func:`create_confluent_producer`: one-line start-up failures, the topic's metadata
    fetched (the consumer subscribes to ``settings.topic``)."""
    confluent_kafka = _import_confluent()
    config = confluent_config(settings, options)
    return _confluent_client(confluent_kafka.Consumer, settings, config, settings.topic)
