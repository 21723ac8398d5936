"""The start-up probe of every Kafka client (:func:`wait_for_broker`): reachable, TLS
trusted, SASL accepted, or a one-line error at once instead of a client retrying forever."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any

from pipeline._exceptions import ConfigError, KafkaAuthError, KafkaUnavailableError
from pipeline.kafka_config import bootstrap_addresses, confluent_config, ssl_context
from pipeline.settings import SASL_PROTOCOLS, TLS_PROTOCOLS, Settings

__all__ = ["wait_for_broker"]


def wait_for_broker(settings: Settings, *, deadline: float) -> None:
    """Return once a bootstrap server accepts a connection and, for SSL/SASL, the TLS
    handshake and SASL authentication succeed with it; retry with back-off until
    ``deadline`` (a ``time.monotonic()`` value).

    Raises :class:`KafkaUnavailableError` when no bootstrap server answered in time (the
    client is then never made, so nothing of it is left behind), and
    :class:`KafkaAuthError` at once when a broker's certificate is not trusted, the port
    does not speak TLS, the SASL mechanism is not enabled or the credentials are refused.

    Why not leave this to the clients: kafka-python retries a TLS failure until its
    bootstrap timeout and drops the broker's "authentication failed" answer (the broker
    closes the connection right after it), so a wrong password would look like an
    unreachable broker; librdkafka retries both for ever. The TLS handshake is tried here
    with the standard library, the SASL authentication with a short-lived librdkafka client
    (:func:`_sasl_probe`), which reports the broker's answer.
    """
    tls = settings.kafka_security_protocol in TLS_PROTOCOLS
    ctx = ssl_context(settings) if tls else None
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
            except (TimeoutError, ConnectionError, EOFError) as exc:
                # went away mid-probe (restarting?): try again
                last_error = f"{host}:{port}: {exc.__class__.__name__}"
                continue
            finally:
                sock.close()  # the TLS socket owns the descriptor once wrapped
                raw.close()
            if settings.kafka_security_protocol not in SASL_PROTOCOLS:
                return
            error = _sasl_probe(settings, host, port, timeout)
            if error is None:
                return
            last_error = f"{host}:{port}: {error}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KafkaUnavailableError(
                f"cannot reach Kafka at {settings.kafka_bootstrap_servers} within"
                f" {settings.kafka_bootstrap_timeout:g} s (KAFKA_BOOTSTRAP_SERVERS,"
                f" MODELMETER_BOOTSTRAP_TIMEOUT); last error: {last_error}"
            )
        time.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, 1.0)


def _tls_handshake(
    ctx: ssl.SSLContext, sock: socket.socket, host: str, port: int, settings: Settings
) -> ssl.SSLSocket:
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or "verification failed"
        raise KafkaAuthError(
            f"TLS: the certificate of Kafka broker {host}:{port} is not trusted ({reason});"
            " check KAFKA_SSL_CAFILE"
        ) from None
    except (ssl.SSLError, ConnectionResetError, EOFError) as exc:
        raise KafkaAuthError(
            f"TLS handshake with Kafka broker {host}:{port} failed ({exc.__class__.__name__});"
            f" is it a TLS listener? (KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol})"
        ) from None


def _sasl_probe(settings: Settings, host: str, port: int, timeout: float) -> str | None:
    """Authenticate once at ``host:port`` with a throwaway librdkafka client.

    None when the broker accepted the credentials (a metadata request went through);
    raises :class:`KafkaAuthError` when it refused them or the mechanism; else (the broker
    went away, a timeout) the reason, to try again."""
    from confluent_kafka import KafkaError as CKError
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config = confluent_config(settings)
    config["bootstrap.servers"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    errors: list[Any] = []
    config.update(
        {
            "error_cb": errors.append,
            "log_level": 0,
            "logger": _silent,
            "client.id": "modelmeter-preflight",
            "reconnect.backoff.max.ms": 1000,
        }
    )
    try:
        probe = AdminClient(config)
    except KafkaException as exc:
        raise ConfigError(f"confluent-kafka settings: {exc.args[0]}") from None
    # short metadata requests, serving the error callbacks in between (librdkafka reports a
    # refused authentication there, and goes on retrying), until one succeeds or it is time
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe.list_topics(timeout=max(0.1, min(0.5, deadline - time.monotonic())))
        except KafkaException as exc:
            probe.poll(0)
            if (
                any(e.code() in (CKError._AUTHENTICATION, CKError._SSL) for e in errors)
                or time.monotonic() >= deadline
            ):
                errors.append(exc.args[0])
                break
        else:
            return None
    auth = [e for e in errors if e.code() == CKError._AUTHENTICATION]
    if auth:
        text = auth[-1].str()
        mechanism = settings.kafka_sasl_mechanism
        if "mechanism" in text.lower() and (
            "not supported" in text.lower() or "unsupported" in text.lower()
        ):
            raise KafkaAuthError(
                f"Kafka broker {host}:{port} does not accept SASL mechanism {mechanism}"
                f" ({text[:200]}); check KAFKA_SASL_MECHANISM"
            )
        raise KafkaAuthError(
            f"Kafka authentication failed at {host}:{port} for user"
            f" {settings.kafka_sasl_username!r} ({mechanism}); check KAFKA_SASL_USERNAME"
            " and KAFKA_SASL_PASSWORD"
        )
    if any("security.protocol" in e.str() for e in errors):  # plaintext client, TLS port
        raise KafkaAuthError(
            f"Kafka broker {host}:{port} closed the connection before answering; does"
            f" KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} match its listener?"
        )
    if any(e.code() == CKError._SSL for e in errors):
        raise KafkaAuthError(
            f"TLS with Kafka broker {host}:{port} failed ({errors[-1].str()[:200]});"
            " check KAFKA_SSL_CAFILE and KAFKA_SECURITY_PROTOCOL"
        )
    return errors[-1].str()[:200] if errors else "no answer"


_silent = logging.getLogger("pipeline.kafka_connect.probe")
_silent.addHandler(logging.NullHandler())
_silent.propagate = False
