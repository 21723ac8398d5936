"""OTLP/HTTP bodies (``/v1/logs``, ``/v1/traces``, ``/v1/metrics``) -> calls
(docs/sources.md, "OpenTelemetry").

::

    request = decode("logs", body, "application/x-protobuf")    # BodyError: answer 400
    for outcome in log_outcomes(request, mapping.otel, builder):  # fields | RecordError | None
        ...

Decoding uses opentelemetry-proto's generated classes: protobuf as it is; JSON through
``google.protobuf.json_format`` (lowerCamelCase or proto field names, 64-bit integers as
strings or numbers, unknown fields ignored) after the hex trace and span ids OTLP JSON uses
are turned into the base64 protobuf's JSON mapping expects.

Two kinds of record are calls:

- Claude Code's ``claude_code.api_request`` log events: ``input_tokens`` excludes the cache
  (Anthropic's meaning); ``cache_creation_tokens`` has no 5m/1h split and counts as 5-minute
  writes (:func:`pipeline.providers.anthropic_tokens`). Key: ``session.id`` +
  ``event.sequence``, else ``request_id``, else the record's bytes.
- GenAI semantic-convention spans and log events with a model and token usage, whose
  ``gen_ai.operation.name`` (when present) is a call operation of the mapping: the input
  count INCLUDES cache reads and writes, which are subtracted. Key: the trace and span id
  (a span and the event it carries are one call), else the record's bytes.

Every other record is not a call (``None``). ``cost_usd`` and the like are never read.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from pipeline._exceptions import ContractError
from pipeline.collect.records import (
    BodyError,
    CallBuilder,
    Found,
    Outcome,
    RecordError,
    as_bool,
    as_count,
    from_iso,
    from_unix_nanos,
)
from pipeline.collect.sources import OtelMapping
from pipeline.providers import TokenCounts, anthropic_tokens

__all__ = [
    "Outcome",
    "decode",
    "log_outcomes",
    "span_outcomes",
    "response",
    "REQUEST_TYPES",
]


REQUEST_TYPES: dict[str, type[Message]] = {
    "logs": ExportLogsServiceRequest,
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_HEX = frozenset("0123456789abcdefABCDEF")


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP JSON writes trace and span ids as hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value and set(value) <= _HEX:
                if len(value) % 2:
                    raise BodyError(f"{key}: odd number of hex digits")
                value = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                value = _hex_ids_to_base64(value)
            out[key] = value
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def decode(kind: str, body: bytes, content_type: str) -> Message:
    """The export request of ``kind`` (logs, traces, metrics) in ``body``."""
    message = REQUEST_TYPES[kind]()
    if content_type == "application/json":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BodyError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BodyError("expected a JSON object at the top level")
        try:
            json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise BodyError(f"not an OTLP {kind} request: {str(exc).splitlines()[0]}") from None
    elif content_type == "application/x-protobuf":
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise BodyError(f"not an OTLP {kind} protobuf: {exc}") from None
    else:
        raise BodyError(
            f"content type {content_type!r:.60}: send application/x-protobuf or application/json"
        )
    return message


def response(kind: str, rejected: int, message: str, content_type: str) -> bytes:
    """The export response: empty, or ``partial_success`` with the rejected count and why."""
    if kind == "logs":
        out: Message = ExportLogsServiceResponse()
        if rejected:
            out = ExportLogsServiceResponse(
                partial_success=ExportLogsPartialSuccess(
                    rejected_log_records=rejected, error_message=message
                )
            )
    elif kind == "traces":
        out = ExportTraceServiceResponse()
        if rejected:
            out = ExportTraceServiceResponse(
                partial_success=ExportTracePartialSuccess(
                    rejected_spans=rejected, error_message=message
                )
            )
    else:
        out = ExportMetricsServiceResponse()
    if content_type == "application/json":
        return json_format.MessageToJson(out, indent=None).encode()
    return out.SerializeToString()


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        out[pair.key] = _value(pair.value)
    return out


def _first(attrs: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _digest(message: Message) -> str:
    return hashlib.blake2b(
        message.SerializeToString(deterministic=True), digest_size=16
    ).hexdigest()


def _found(
    attrs: dict[str, Any],
    mapping: OtelMapping,
    *,
    key: tuple[str, ...],
    model: Any,
    tokens: TokenCounts,
    occurred_at: dt.datetime,
    latency_ms: int | None,
    status: str,
    fallback_task: str,
) -> Found:
    escalated_value = attrs.get("modelmeter.escalated")
    session = attrs.get("session.id")
    task = _first(
        attrs, ("modelmeter.task_id", "session.id", "prompt.id", "gen_ai.conversation.id")
    )
    agent = _first(attrs, ("modelmeter.agent_id", "gen_ai.agent.id"))
    if agent is None:
        agent = f"session-{session}" if session else _first(attrs, ("service.name",))
    provider = _first(attrs, mapping.attributes["provider"])
    if provider is not None:
        provider = mapping.provider_names.get(str(provider), str(provider).lower())
    names = [str(attrs[n]) for n in mapping.role_attributes if attrs.get(n) not in (None, "")]
    trigger = attrs.get("modelmeter.escalation_trigger")
    version = attrs.get("modelmeter.policy_version")
    return Found(
        source="otel",
        key=key,
        model=str(model),
        tokens=tokens,
        occurred_at=occurred_at,
        task_id=str(task or fallback_task),
        agent_id=str(agent or "otel"),
        role_names=names,
        role_map=mapping.roles,
        provider_hint=provider,
        latency_ms=latency_ms,
        status=status,
        escalated=None
        if escalated_value is None
        else as_bool(escalated_value, "modelmeter.escalated"),
        escalation_trigger=None if trigger in (None, "") else str(trigger),
        policy_version=None if version in (None, "") else str(version),
    )


def _anthropic(inp: int, out: int, read: int, write: int) -> TokenCounts:
    try:
        return anthropic_tokens(
            {
                "input_tokens": inp,
                "output_tokens": out,
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": write,
            }
        )
    except ContractError as exc:
        raise RecordError("bad number", str(exc)) from None


def _claude_code(attrs: dict[str, Any], record: Any, mapping: OtelMapping) -> Found:
    def count(name: str, required: bool = False) -> int:
        value = attrs.get(name)
        if value is None or value == "":
            if required:
                raise RecordError("missing field", f"claude_code.api_request: no {name}")
            return 0
        return as_count(value, name)

    model = attrs.get("model")
    if not model:
        raise RecordError("missing field", "claude_code.api_request: no model")
    tokens = _anthropic(
        count("input_tokens", True),
        count("output_tokens", True),
        count("cache_read_tokens"),
        count("cache_creation_tokens"),
    )
    session, sequence = attrs.get("session.id"), attrs.get("event.sequence")
    request_id = attrs.get("request_id")
    if session and sequence not in (None, ""):
        key: tuple[str, ...] = (
            "claude_code",
            str(session),
            str(as_count(sequence, "event.sequence")),
        )
    elif request_id:
        key = ("claude_code", "request", str(request_id))
    else:
        key = ("claude_code", "record", _digest(record))
    if attrs.get("event.timestamp"):
        when = from_iso(attrs["event.timestamp"], "event.timestamp")
    elif record.time_unix_nano or record.observed_time_unix_nano:
        when = from_unix_nanos(record.time_unix_nano or record.observed_time_unix_nano)
    else:
        raise RecordError("missing field", "claude_code.api_request: no time")
    duration = attrs.get("duration_ms")
    latency = None if duration in (None, "") else as_count(duration, "duration_ms")
    return _found(
        attrs,
        mapping,
        key=key,
        model=model,
        tokens=tokens,
        occurred_at=when,
        latency_ms=latency,
        status="ok",
        fallback_task=key[-1],
    )


def _genai_tokens(attrs: dict[str, Any], mapping: OtelMapping) -> tuple[Any, TokenCounts] | None:
    """(model, tokens) of a GenAI record, or None when it is not a model call."""
    names = mapping.attributes
    operation = attrs.get("gen_ai.operation.name")
    if operation not in (None, "") and operation not in mapping.call_operations:
        return None
    model = _first(attrs, names["model"])
    inp, out = _first(attrs, names["input_tokens"]), _first(attrs, names["output_tokens"])
    if model is None or (inp is None and out is None):
        return None
    total_in = 0 if inp is None else as_count(inp, names["input_tokens"][0])
    read_value = _first(attrs, names["cache_read_tokens"])
    write_value = _first(attrs, names["cache_write_tokens"])
    read = 0 if read_value is None else as_count(read_value, names["cache_read_tokens"][0])
    write = 0 if write_value is None else as_count(write_value, names["cache_write_tokens"][0])
    if read + write > total_in:
        raise RecordError(
            "inconsistent tokens",
            f"input tokens ({total_in}) fewer than their cached part ({read} read + {write}"
            " written): the input count includes the cache",
        )
    output = 0 if out is None else as_count(out, names["output_tokens"][0])
    return model, _anthropic(total_in - read - write, output, read, write)


def _log_record(
    record: Any, resource: dict[str, Any], mapping: OtelMapping, builder: CallBuilder
) -> dict[str, Any] | None:
    attrs = {**resource, **_attributes(record.attributes)}
    body = record.body.string_value if record.body.HasField("string_value") else ""
    names = {record.event_name, body, str(attrs.get("event.name", ""))}
    if names & mapping.claude_code_events:
        return builder.fields(_claude_code(attrs, record, mapping))
    found = _genai_tokens(attrs, mapping)
    if found is None:
        return None
    if record.span_id:
        key: tuple[str, ...] = ("span", record.trace_id.hex(), record.span_id.hex())
    else:
        key = ("record", _digest(record))
    nanos = record.time_unix_nano or record.observed_time_unix_nano
    if not nanos:
        raise RecordError("missing field", "log record: no time")
    return builder.fields(
        _found(
            attrs,
            mapping,
            key=key,
            model=found[0],
            tokens=found[1],
            occurred_at=from_unix_nanos(nanos),
            latency_ms=None,
            status="ok",
            fallback_task=record.trace_id.hex() or key[-1],
        )
    )


def _span(
    span: Any, resource: dict[str, Any], mapping: OtelMapping, builder: CallBuilder
) -> dict[str, Any] | None:
    attrs = {**resource, **_attributes(span.attributes)}
    found = _genai_tokens(attrs, mapping)
    if found is None:
        return None
    if span.span_id:
        key: tuple[str, ...] = ("span", span.trace_id.hex(), span.span_id.hex())
    else:
        key = ("record", _digest(span))
    nanos = span.end_time_unix_nano or span.start_time_unix_nano
    if not nanos:
        raise RecordError("missing field", "span: no start or end time")
    latency = None
    if span.start_time_unix_nano and span.end_time_unix_nano:
        latency = max(0, span.end_time_unix_nano - span.start_time_unix_nano) // 1_000_000
    return builder.fields(
        _found(
            attrs,
            mapping,
            key=key,
            model=found[0],
            tokens=found[1],
            occurred_at=from_unix_nanos(nanos),
            latency_ms=latency,
            status="error" if span.status.code == Status.STATUS_CODE_ERROR else "ok",
            fallback_task=span.trace_id.hex() or key[-1],
        )
    )


def log_outcomes(
    request: ExportLogsServiceRequest, mapping: OtelMapping, builder: CallBuilder
) -> Iterator[Outcome]:
    """One outcome per log record: the call's fields, a refusal, or None (not a call)."""
    for resource_logs in request.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                try:
                    yield _log_record(record, resource, mapping, builder)
                except RecordError as exc:
                    yield exc


def span_outcomes(
    request: ExportTraceServiceRequest, mapping: OtelMapping, builder: CallBuilder
) -> Iterator[Outcome]:
    """One outcome per span: the call's fields, a refusal, or None (not a model call)."""
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                try:
                    yield _span(span, resource, mapping, builder)
                except RecordError as exc:
                    yield exc
