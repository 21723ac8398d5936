"""Prometheus metrics and a health check for ``modelmeter consume`` (off by default).

Turn it on with ``--metrics-port PORT`` (or ``MODELMETER_METRICS_PORT``; ``0`` picks a free
port) and ``--metrics-host`` / ``MODELMETER_METRICS_HOST`` (default ``127.0.0.1``)::

    GET /metrics   Prometheus text format
    GET /healthz   200 {"status": "ok", ...}, or 503 {"status": "unhealthy", ...} when the
                   consumer has lag but has not committed for --health-max-commit-age seconds

HEAD works on both; any other path is 404, any other method 405 (``Allow: GET, HEAD``).
The server (:class:`MetricsServer`) answers one request per connection, closes a
connection that sends nothing for :data:`CONNECTION_TIMEOUT` seconds, and serves at most
:data:`MAX_CONNECTIONS` connections at once: one more gets ``503`` and is closed at once,
so idle or slow clients can neither pile up threads nor hold the consumer's port forever.

The numbers are read from the consumer's :class:`~pipeline.consumer.ConsumerStats` when
Prometheus scrapes, so the consumer's hot loop pays nothing for them. Served metrics (the
contract of docs/operations.md, "Monitoring and alerts"):

======================================================  ======================================
``modelmeter_consumer_consumed_total``                  messages polled from Kafka
``modelmeter_consumer_landed_total``                    valid events written and committed
``modelmeter_consumer_rejected_total``                  invalid messages to ``_rejected`` + DLQ
``modelmeter_consumer_dlq_failed_total``                rejects the DLQ refused (kept in lake)
``modelmeter_consumer_commits_total``                   offset commits
``modelmeter_consumer_tokens_total``                    committed llm_call tokens, labelled
  ``{provider,model,role,kind}``                        (kind: input, output, cache_read, ...)
``modelmeter_consumer_lag_messages{topic,partition}``   log end offset - committed offset
``modelmeter_consumer_last_commit_age_seconds``         seconds since the last commit (or start)
``modelmeter_consumer_flush_duration_seconds``          histogram of flush durations
``modelmeter_consumer_healthy``                         1 when /healthz says ok, else 0
``process_*``                                           prometheus-client's process metrics
======================================================  ======================================
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

from pipeline._exceptions import ConfigError
from pipeline.metrics_collector import FLUSH_BUCKETS, METRIC_NAMES, ConsumerCollector, Health
from pipeline.settings import Settings

__all__ = [
    "ConsumerCollector",
    "Health",
    "MetricsServer",
    "serve_metrics",
    "FLUSH_BUCKETS",
    "METRIC_NAMES",
    "CONNECTION_TIMEOUT",
    "MAX_CONNECTIONS",
]

log = logging.getLogger(__name__)

#: Seconds a connection may stay silent (no byte of its request, or a response it does not
#: read) before the server closes it. Prometheus sends its request at once.
CONNECTION_TIMEOUT = 5.0
#: Connections served at once (one thread each); one more gets 503 and is closed.
MAX_CONNECTIONS = 16

_ROUTES = ("/metrics", "/healthz")
_METHODS = ("GET", "HEAD")
_ALLOW = ", ".join(_METHODS)
# Sent, without reading the request, to a connection beyond MAX_CONNECTIONS (no thread is
# started for it, so it cannot be answered through the WSGI app).
_BUSY_BODY = b"metrics server busy: too many connections\n"
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)
# At most one "busy" warning per this many seconds (a flood must not flood the log too).
_BUSY_LOG_INTERVAL = 60.0


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread per connection, with a connection timeout and a cap."""

    daemon_threads = True
    request_queue_size = 64  # the accept backlog; refusals beyond the cap are immediate

    def __init__(
        self, address: tuple[str, int], *, connection_timeout: float, max_connections: int
    ) -> None:
        self.connection_timeout = connection_timeout
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._active = 0
        self.refused = 0
        self._busy_logged_at: float | None = None
        super().__init__(address, _Handler)

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
        if full:
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)  # starts the thread
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        """503 and close, in the accepting thread, never blocking it."""
        self.refused += 1
        try:
            request.setblocking(False)
            with suppress(OSError):
                request.recv(65536)  # what already came, so that closing does not reset
            request.send(_BUSY)  # a new socket's send buffer always has room for it
        except OSError:
            pass
        self.shutdown_request(request)
        now = time.monotonic()
        if self._busy_logged_at is None or now - self._busy_logged_at >= _BUSY_LOG_INTERVAL:
            self._busy_logged_at = now
            log.warning(
                "metrics: %d connections open (the limit), refused %s with 503 (%d refused so far)",
                self.max_connections,
                client_address[0],
                self.refused,
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # timed out, reset, gone: the client's doing
            log.debug(
                "metrics: connection from %s closed: %s",
                client_address[0],
                exc if str(exc) else type(exc).__name__,
            )
        else:
            log.warning("metrics: error serving %s", client_address[0], exc_info=exc)


class _LogStream:
    """wsgiref writes application errors to the handler's stderr: send them to the log."""

    def write(self, text: str) -> None:
        if text.strip():
            log.debug("metrics: %s", text.rstrip())

    def flush(self) -> None:
        pass


class _Handler(WSGIRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        # every read and write of the connection times out; the thread then closes it
        self.connection.settimeout(self.server.connection_timeout)

    def get_stderr(self) -> Any:
        return _LogStream()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("metrics: " + format, *args)


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP in a daemon thread::

        server = MetricsServer(stats, topic="agent-usage", max_commit_age=300).start("127.0.0.1", 0)
        print(server.port)
        server.stop()

    ``connection_timeout`` (seconds) and ``max_connections`` bound what clients can hold:
    see the module docstring.
    """

    def __init__(
        self,
        stats: Any,
        *,
        topic: str,
        max_commit_age: float,
        connection_timeout: float = CONNECTION_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if connection_timeout <= 0 or max_connections < 1:
            raise ValueError("connection_timeout must be > 0 and max_connections >= 1")
        self.collector = ConsumerCollector(stats, topic=topic, max_commit_age=max_commit_age)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        self._metrics_app = make_wsgi_app(self.registry)
        self.connection_timeout = connection_timeout
        self.max_connections = max_connections
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application: GET/HEAD of /metrics and /healthz, 404 and 405 otherwise."""
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        headers: list[tuple[str, str]]
        if path not in _ROUTES:
            status, body = "404 Not Found", f"not found: {path}; try /metrics or /healthz\n"
            headers, content = [("Content-Type", "text/plain; charset=utf-8")], body.encode()
        elif method not in _METHODS:
            status = "405 Method Not Allowed"
            headers = [("Content-Type", "text/plain; charset=utf-8"), ("Allow", _ALLOW)]
            content = f"method {method} not allowed on {path}; use {_ALLOW}\n".encode()
        elif path == "/healthz":
            health = self.collector.health()
            status = "200 OK" if health.ok else "503 Service Unavailable"
            headers, content = [("Content-Type", "application/json")], health.as_json()
        else:  # /metrics, by prometheus-client's app (content negotiation, gzip, name[] filter)
            status, headers, content = self._scrape(environ)
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers.append(("Content-Length", str(len(content))))
        start_response(status, headers)
        return [] if method == "HEAD" else [content]  # HEAD: the GET headers, no body

    def _scrape(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        response: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> None:
            response[:] = [status, list(headers)]

        body = b"".join(self._metrics_app({**environ, "REQUEST_METHOD": "GET"}, start_response))
        return response[0], response[1], body

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_port)

    @property
    def active_connections(self) -> int:
        """Connections being served right now (each holds a thread)."""
        return self._server.active if self._server is not None else 0

    @property
    def refused_connections(self) -> int:
        """Connections refused with 503 since the start (the cap was reached)."""
        return self._server.refused if self._server is not None else 0

    def start(self, host: str, port: int) -> MetricsServer:
        try:
            server = _Server(
                (host, port),
                connection_timeout=self.connection_timeout,
                max_connections=self.max_connections,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
                " (--metrics-port, MODELMETER_METRICS_PORT)"
            ) from None
        server.set_app(self.app)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="modelmeter-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics on http://%s:%s/metrics, health on /healthz", host, self.port)
        return self

    def stop(self) -> None:
        """Stop accepting; connections still open end within the connection timeout."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def serve_metrics(settings: Settings, stats: Any) -> Iterator[MetricsServer | None]:
    """A running :class:`MetricsServer` while the block runs when ``settings.metrics_port``
    is set (None otherwise)::

        with serve_metrics(settings, consumer.stats):
            consumer.run()
    """
    if settings.metrics_port is None:
        yield None
        return
    server = MetricsServer(
        stats, topic=settings.topic, max_commit_age=settings.health_max_commit_age
    )
    server.start(settings.metrics_host, settings.metrics_port)
    try:
        yield server
    finally:
        server.stop()
