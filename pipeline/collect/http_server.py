"""``modelmeter collect http [--listen HOST:PORT]``: one asyncio HTTP server (aiohttp) that
turns what agents and their tools already report into contract events and produces them to
the usage topic through the SDK (docs/sources.md, "HTTP collector").

========================  ================================================================
``POST /v1/logs``         OTLP/HTTP logs (protobuf or JSON, gzip or plain): Claude Code's
                          ``claude_code.api_request`` events, GenAI events
``POST /v1/traces``       OTLP/HTTP spans: GenAI semantic-convention spans
``POST /v1/metrics``      accepted, not counted (deltas of the same calls)
``POST /v1/litellm``      LiteLLM's generic API logger (ndjson, json_array or single)
``POST /v1/events``       contract events as JSON lines or a JSON array; a result per event
``GET /healthz``          ``{"status": "ok"}``
``GET /metrics``          Prometheus: requests and records accepted and refused
========================  ================================================================

A request is answered 200 only after the broker acknowledged every event made from it (the
SDK's ``flush``); a record that is not a valid call is refused on its own (OTLP
``partial_success``, the per-record results of the other endpoints), the rest is sent. A body
that cannot be parsed: 400 and a one-line reason; larger than ``--max-body-mb`` (after gzip
too): 413; a bearer token missing or wrong (when ``MODELMETER_COLLECT_TOKEN`` or
``MODELMETER_COLLECT_TOKEN_FILE`` is set): 401; an unknown path: 404; the broker not
acknowledging within ``--flush-timeout``: 503, so that the sender retries (the event ids
are deterministic: a retry is counted once).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from pipeline._exceptions import ConfigError, ContractError, KafkaError, ProducerBufferFullError
from pipeline.collect import otlp
from pipeline.collect.litellm import litellm_outcomes
from pipeline.collect.records import BodyError, CallBuilder, Outcome, RecordError, json_records
from pipeline.collect.sources import SourceMapping, load_sources
from pipeline.contract import parse_event
from pipeline.policy import Policy, load_policy
from pipeline.resources import default_data_file
from pipeline.settings import Settings

__all__ = ["HttpCollector", "run_http_cli", "parse_listen", "read_token", "SOURCES"]

log = logging.getLogger(__name__)

#: Path -> the ``source`` label of the metrics.
SOURCES = {
    "/v1/logs": "otel_logs",
    "/v1/traces": "otel_traces",
    "/v1/metrics": "otel_metrics",
    "/v1/litellm": "litellm",
    "/v1/events": "events",
}
_MAX_REASONS = 5  # reasons quoted in an OTLP partial_success message


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:4318")
    return host.strip("[]"), int(port)


def read_token(settings: Settings) -> str | None:
    """The bearer token senders must present, or None when none is configured."""
    if settings.collect_token is not None and settings.collect_token_file is not None:
        raise ConfigError(
            "MODELMETER_COLLECT_TOKEN and MODELMETER_COLLECT_TOKEN_FILE are both set; set one"
        )
    if settings.collect_token is not None:
        token = settings.collect_token.get_secret_value()
    elif settings.collect_token_file is not None:
        path = settings.collect_token_file
        try:
            token = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"MODELMETER_COLLECT_TOKEN_FILE {path}: cannot read it ({type(exc).__name__})"
            ) from None
    else:
        return None
    if not token:
        raise ConfigError("the collect token is empty")
    return token


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "modelmeter_collect_requests",
            "HTTP requests by source (endpoint) and status code.",
            ["source", "code"],
            registry=self.registry,
        )
        self.records = Counter(
            "modelmeter_collect_records",
            "Records by source, outcome (accepted, refused, skipped) and reason.",
            ["source", "outcome", "reason"],
            registry=self.registry,
        )


class HttpCollector:
    """The endpoints, around a :class:`~pipeline.sdk.UsageProducer` (or anything with its
    ``llm_call``, ``send`` and ``flush``); usable without the CLI."""

    def __init__(
        self,
        producer: Any,
        *,
        mapping: SourceMapping,
        policy: Policy,
        token: str | None = None,
        max_body: int = 16 * 1024 * 1024,
        flush_timeout: float = 10.0,
    ) -> None:
        mapping.require("otel", "litellm")
        self.producer = producer
        self.mapping = mapping
        self.builder = CallBuilder(mapping, policy)
        self._token = None if token is None else f"Bearer {token}".encode()
        self.max_body = max_body
        self.flush_timeout = flush_timeout
        self.metrics = _Metrics()
        # one sending thread; the requests that arrive while it waits for the broker are sent
        # together next, with one flush (a group commit): a flush's failure answers 503 to every
        # request of its group, which the senders retry (the event ids make that harmless)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collect-send")
        self._pending: list[tuple[list[tuple[str, Any]], asyncio.Future[list[str | None]]]] = []
        self._sender: asyncio.Future[None] | None = None

    # -- the application -------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self._middleware])
        app.router.add_post("/v1/logs", self._otlp("logs"))
        app.router.add_post("/v1/traces", self._otlp("traces"))
        app.router.add_post("/v1/metrics", self._otlp("metrics"))
        app.router.add_post("/v1/litellm", self._litellm)
        app.router.add_post("/v1/events", self._events)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._prometheus)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        source = SOURCES.get(request.path, "other")
        try:
            if source != "other" and self._token is not None:
                given = request.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(given, self._token):
                    raise _error(401, "missing or wrong bearer token", WWW_Authenticate="Bearer")
            if request.content_length is not None and request.content_length > self.max_body:
                raise _error(413, f"body larger than {self.max_body} bytes")
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413 and not exc.text:
                exc = _error(413, f"body larger than {self.max_body} bytes (decompressed)")
            self.metrics.requests.labels(source, str(exc.status)).inc()
            raise exc from None
        self.metrics.requests.labels(source, str(response.status)).inc()
        return response

    async def _read(self, request: web.Request) -> bytes:
        try:
            return await request.read()  # aiohttp undoes gzip/deflate, bounded by client_max_size
        except web.HTTPRequestEntityTooLarge:
            raise _error(413, f"body larger than {self.max_body} bytes") from None

    # -- sending ---------------------------------------------------------------------------

    def _send_group(self, group: list[list[tuple[str, Any]]]) -> list[list[str | None]]:
        """Queue every item of the requests of ``group``, then one flush for all of them."""
        results: list[list[str | None]] = []
        for items in group:
            request: list[str | None] = []
            for kind, data in items:
                try:
                    if kind == "call":
                        self.producer.llm_call(**data)
                    else:
                        self.producer.send(data)
                    request.append(None)
                except ContractError as exc:
                    request.append(str(exc))
            results.append(request)
        if any(None in request for request in results):
            self.producer.flush(self.flush_timeout)
        return results

    async def _send(self, items: list[tuple[str, Any]]) -> list[str | None]:
        """Per item: None (acknowledged by the broker) or why the contract refused it."""
        if not items:
            return []
        future: asyncio.Future[list[str | None]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        """Send the waiting requests, a group at a time, until none waits."""
        loop = asyncio.get_running_loop()
        while self._pending:
            group, self._pending = self._pending, []
            try:
                results = await loop.run_in_executor(
                    self._executor, self._send_group, [items for items, _ in group]
                )
            except (KafkaError, ProducerBufferFullError) as exc:
                log.warning("collect http: the broker did not acknowledge a request: %s", exc)
                for _, future in group:
                    if not future.done():
                        future.set_exception(
                            _error(503, "the Kafka broker did not acknowledge: retry later")
                        )
                continue
            except Exception as exc:  # answered 500 by aiohttp, each request on its own
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _calls(self, source: str, outcomes: list[Outcome]) -> list[tuple[int, str, str]]:
        """Send the calls among ``outcomes``; (index, kind, reason) of each refused one."""
        refused: list[tuple[int, str, str]] = []
        calls: list[tuple[int, dict[str, Any]]] = []
        skipped = 0
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, RecordError):
                refused.append((index, outcome.kind, outcome.reason))
            elif outcome is None:
                skipped += 1
            else:
                calls.append((index, outcome))
        results = await self._send([("call", fields) for _, fields in calls])
        for (index, _), result in zip(calls, results, strict=True):
            if result is not None:
                refused.append((index, "contract", result))
        refused.sort()
        self._count(source, results.count(None), refused)
        if skipped:
            self.metrics.records.labels(source, "skipped", "not a model call").inc(skipped)
        return refused

    def _count(self, source: str, accepted: int, refused: list[tuple[int, str, str]]) -> None:
        if accepted:
            self.metrics.records.labels(source, "accepted", "").inc(accepted)
        for _, kind, _ in refused:
            self.metrics.records.labels(source, "refused", kind).inc()

    # -- endpoints -------------------------------------------------------------------------

    def _otlp(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            content_type = request.content_type
            body = await self._read(request)
            try:
                message = otlp.decode(kind, body, content_type)
            except BodyError as exc:
                raise _error(400, str(exc)) from None
            if kind == "metrics":
                answer = otlp.response(kind, 0, "", content_type)
                return web.Response(body=answer, content_type=content_type)
            otel = self.mapping.otel
            assert otel is not None  # required in __init__
            if kind == "logs":
                outcomes = list(otlp.log_outcomes(message, otel, self.builder))  # type: ignore[arg-type]
            else:
                outcomes = list(otlp.span_outcomes(message, otel, self.builder))  # type: ignore[arg-type]
            refused = await self._calls(SOURCES[request.path], outcomes)
            text = ""
            if refused:
                shown = "; ".join(f"#{i}: {reason}" for i, _, reason in refused[:_MAX_REASONS])
                more = len(refused) - _MAX_REASONS
                text = f"{len(refused)} records refused: {shown}" + (
                    f"; and {more} more" if more > 0 else ""
                )
            answer = otlp.response(kind, len(refused), text, content_type)
            return web.Response(body=answer, content_type=content_type)

        return handle

    async def _litellm(self, request: web.Request) -> web.Response:
        try:
            payloads = json_records(await self._read(request))
        except BodyError as exc:
            raise _error(400, str(exc)) from None
        litellm = self.mapping.litellm
        assert litellm is not None
        outcomes = list(litellm_outcomes(payloads, litellm, self.builder))
        refused = await self._calls("litellm", outcomes)
        return _json(
            {
                "accepted": len(outcomes) - len(refused),
                "refused": [{"index": i, "reason": reason} for i, _, reason in refused],
            }
        )

    async def _events(self, request: web.Request) -> web.Response:
        try:
            records = json_records(await self._read(request))
        except BodyError as exc:
            raise _error(400, str(exc)) from None
        results: list[dict[str, Any]] = []
        events: list[tuple[int, Any]] = []
        for index, record in enumerate(records):
            if isinstance(record, BodyError):
                results.append({"index": index, "status": "refused", "reason": str(record)})
                continue
            event_id = record.get("event_id") if isinstance(record, dict) else None
            results.append({"index": index, "event_id": event_id, "status": "accepted"})
            try:
                events.append((index, parse_event(orjson.dumps(record))))
            except ContractError as exc:
                results[index] |= {"status": "refused", "reason": str(exc)}
        sent = await self._send([("event", event) for _, event in events])
        for (index, _), reason in zip(events, sent, strict=True):
            if reason is not None:
                results[index] |= {"status": "refused", "reason": reason}
        refused = [r for r in results if r["status"] == "refused"]
        self._count("events", len(results) - len(refused), [(0, "contract", "")] * len(refused))
        return _json(
            {"accepted": len(results) - len(refused), "refused": len(refused), "results": results}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "pending": getattr(self.producer, "pending", None)})

    async def _prometheus(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _error(status: int, reason: str, **headers: str) -> web.HTTPException:
    line = " ".join(reason.split())[:500]
    cls: type[web.HTTPException] = web.HTTPException
    for candidate in (
        web.HTTPBadRequest,
        web.HTTPUnauthorized,
        web.HTTPRequestEntityTooLarge,
        web.HTTPServiceUnavailable,
    ):
        if candidate.status_code == status:
            cls = candidate
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    if status == 503:
        extra["Retry-After"] = "5"
    if cls is web.HTTPRequestEntityTooLarge:
        exc: web.HTTPException = web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=line + "\n", headers=extra
        )
    else:
        exc = cls(text=line + "\n", headers=extra)
    return exc


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def serve(
    collector: HttpCollector,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None)."""
    runner = web.AppRunner(collector.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    address = runner.addresses[0]
    bound_host, bound_port = address[0], int(address[1])
    if ready is not None:
        ready(bound_host, bound_port)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_http_cli(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.sdk import UsageProducer

    host, port = parse_listen(args.listen)
    mapping = load_sources(args.sources or default_data_file("sources.yaml"))
    mapping.require("otel", "litellm")
    policy = load_policy(settings.policy)
    token = read_token(settings)
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"collect http: warning: listening on {host} without a bearer token"
            " (set MODELMETER_COLLECT_TOKEN)",
            file=sys.stderr,
        )

    def ready(bound_host: str, bound_port: int) -> None:
        print(f"collect http: listening on http://{bound_host}:{bound_port}", file=sys.stderr)
        if args.port_file:
            Path(args.port_file).write_text(f"{bound_port}\n", encoding="utf-8")

    with UsageProducer(settings) as producer:
        collector = HttpCollector(
            producer,
            mapping=mapping,
            policy=policy,
            token=token,
            max_body=int(args.max_body_mb * 1024 * 1024),
            flush_timeout=args.flush_timeout,
        )
        try:
            asyncio.run(serve(collector, host, port, ready=ready))
        finally:
            collector.close()
    return 0
