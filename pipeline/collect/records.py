"""What the ``collect http`` sources share: a record's fields turned into the ``llm_call``
fields of the SDK, deterministic event ids, and typed reading of loosely typed values.

::

    builder = CallBuilder(mapping, policy)
    fields = builder.fields(Found(source="otel", key=("cc", session, "17"), model="glm-4.5",
                                  tokens=..., role_names=["architect"], ...))
    producer.llm_call(**fields)

A record that cannot become a call raises :class:`RecordError` (its ``kind`` is the metrics
label, its message the reason the sender is told). No source's cost is read: events carry
tokens, the warehouse prices them from the price book.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.collect.sources import UNKNOWN_PROVIDER, SourceMapping
from pipeline.policy import Policy
from pipeline.providers import TokenCounts

__all__ = [
    "BodyError",
    "RecordError",
    "Outcome",
    "Found",
    "CallBuilder",
    "event_id_of",
    "json_records",
    "as_count",
    "as_bool",
    "identifier",
    "from_unix_nanos",
    "from_iso",
    "from_epoch_seconds",
]


class BodyError(Exception):
    """A body that cannot be parsed at all: answered 400 with this one-line reason."""


class RecordError(Exception):
    """A record refused: ``kind`` (a short label for metrics) and the reason (the message)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


#: What a source record became: the call's fields, a refusal, or None (not a call).
Outcome = dict[str, Any] | RecordError | None


def event_id_of(prefix: str, *parts: str) -> str:
    """``prefix-`` and 40 hex digits of a BLAKE2b hash of ``parts``: the same record, the same
    id, whichever collector receives it, however often."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=20).hexdigest()
    return f"{prefix}-{digest}"


def as_count(value: Any, name: str) -> int:
    """A token count sent as an integer or a string of digits (OTLP JSON, Claude Code)."""
    if isinstance(value, bool):
        raise RecordError("bad number", f"{name}: expected an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        number = int(value.strip())
    else:
        raise RecordError("bad number", f"{name}: expected an integer, got {value!r:.40}")
    if number < 0:
        raise RecordError("bad number", f"{name}: must be >= 0, got {number}")
    return number


def as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise RecordError("bad value", f"{name}: expected true or false, got {value!r:.40}")


def identifier(text: Any, limit: int = 128) -> str:
    """A contract identifier from source text: printable, at most ``limit`` characters."""
    text = str(text)
    clean = text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)
    return clean[:limit] or "?"


def from_unix_nanos(nanos: int) -> dt.datetime:
    """Exact to the microsecond (a float of the nanoseconds would not be)."""
    seconds, rest = divmod(nanos, 1_000_000_000)
    return dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(microseconds=rest // 1000)


def from_epoch_seconds(value: Any, name: str) -> dt.datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError("bad time", f"{name}: expected epoch seconds, got {value!r:.40}")
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise RecordError("bad time", f"{name}: {value!r:.40} is not a time") from None


def from_iso(value: Any, name: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise RecordError("bad time", f"{name}: not an ISO 8601 time: {value!r:.40}") from None
    if when.tzinfo is None:
        raise RecordError("bad time", f"{name}: a time without offset: {value!r:.40}")
    return when


@dataclass(slots=True)
class Found:
    """What a source record says about one call, before the mapping and the policy."""

    source: str  # event id prefix: "otel", "litellm"
    key: tuple[str, ...]
    model: str
    tokens: TokenCounts
    occurred_at: dt.datetime
    task_id: str
    agent_id: str
    role_names: list[str] = field(default_factory=list)  # candidates, in order
    role_map: dict[str, str] = field(default_factory=dict)  # names -> roles (the mapping's)
    provider_hint: str | None = None  # the source's own provider field, already mapped
    latency_ms: int | None = None
    status: str = "ok"
    escalated: bool | None = None  # None: the record does not say
    escalation_trigger: str | None = None
    policy_version: str | None = None


class CallBuilder:
    """A :class:`Found` -> the keyword arguments of :meth:`UsageProducer.llm_call`."""

    def __init__(self, mapping: SourceMapping, policy: Policy) -> None:
        self.mapping = mapping
        self.policy = policy
        self.roles = frozenset(policy.roles)

    def role_of(self, names: Iterable[str], role_map: dict[str, str]) -> str:
        """The first name that is a role of the policy, or that the mapping maps to one; else
        the policy's unresolved role (kept and flagged, never dropped, never guessed)."""
        for name in names:
            if name in self.roles:
                return name
            mapped = role_map.get(name)
            if mapped is not None:
                return mapped
        return self.policy.unresolved_role

    def provider_of(self, model: str, hint: str | None) -> str:
        provider = self.mapping.provider_of(model)
        if provider == UNKNOWN_PROVIDER and hint:
            return identifier(hint)
        return provider

    def fields(self, found: Found) -> dict[str, Any]:
        role = self.role_of(found.role_names, found.role_map)
        model = identifier(found.model)
        provider = self.provider_of(model, found.provider_hint)
        escalated = found.escalated
        trigger = found.escalation_trigger
        if escalated is None:
            # the record does not say: a call on its role's premium model is an escalation
            # whose trigger nobody named
            spec = self.policy.roles.get(role)
            premium = spec.premium if spec is not None else None
            escalated = premium is not None and (premium.provider, premium.model) == (
                provider,
                model,
            )
            trigger = None
        if escalated and trigger is None:
            trigger = self.policy.unresolved_trigger
        return {
            "event_id": event_id_of(found.source, *found.key),
            "occurred_at": found.occurred_at,
            "agent_id": identifier(found.agent_id),
            "task_id": identifier(found.task_id),
            "role": identifier(role, 64),
            "provider": provider,
            "model": model,
            "latency_ms": found.latency_ms,
            "status": found.status,
            "escalated": escalated,
            "escalation_trigger": None if trigger is None else identifier(trigger, 64),
            "policy_version": None
            if found.policy_version is None
            else identifier(found.policy_version, 64),
            **found.tokens,
        }


def json_records(body: bytes) -> list[Any]:
    """The records of a body that is one JSON value, a JSON array of them, or JSON lines;
    a line of JSON lines that is not JSON is a :class:`BodyError` in its place."""
    text = body.strip()
    if not text:
        raise BodyError("empty body")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
        lines = [line for line in text.split(b"\n") if line.strip()]
        if len(lines) < 2:
            raise BodyError("not JSON, a JSON array or JSON lines") from None
        out: list[Any] = []
        for number, line in enumerate(lines, 1):
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                out.append(BodyError(f"line {number}: not JSON: {exc}"))
        return out
    return data if isinstance(data, list) else [data]
