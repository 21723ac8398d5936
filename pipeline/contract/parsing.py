"""Parsing a raw event and the one-line reason of a refusal.

:func:`parse_event` validates one raw Kafka value (the consumer passes its batch time as
``now``); :func:`validate_event` a dict of Python values. Anything that breaks the contract
raises :class:`~pipeline._exceptions.ContractError` whose message is one readable line
naming the field and the problem, e.g. ``input_tokens: must be an integer, got string``;
``.field`` holds the field name (or None).

Besides the models' own rules, a JSON object may name a key once (:func:`parse_event`):
JSON parsers disagree on which of two values wins.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pydantic import ValidationError

from pipeline._exceptions import ContractError
from pipeline.contract.fields import EVENT_FIELDS
from pipeline.contract.models import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    SCHEMA_VERSION,
    LlmCall,
    TaskFeedback,
)
from pipeline.contract.rules import json_type_name, short_repr
from pipeline.safe_text import visible

__all__ = ["parse_event", "validate_event", "contract_error"]

_TAGS = frozenset(EVENT_TYPES)
_SIMPLE_PATTERN = re.compile(r"\^\[((?:[^\]\\]|\\.)+)\]\{(\d+),(\d+)\}\$")


def _pattern_hint(pattern: str) -> str | None:
    """``may only contain A-Z a-z 0-9 . _ : - (1-64 characters)`` for ``^[A-Za-z0-9._:-]{1,64}$``;
    None for any other shape of pattern (the error then quotes the pattern)."""
    m = _SIMPLE_PATTERN.fullmatch(pattern)
    if m is None:
        return None
    chars, parts, i = m[1], [], 0
    while i < len(chars):
        if chars[i] == "\\":
            parts.append(chars[i + 1])
            i += 2
        elif i + 2 < len(chars) and chars[i + 1] == "-":
            parts.append(chars[i : i + 3])
            i += 3
        else:
            parts.append(chars[i])
            i += 1
    return f"may only contain {' '.join(parts)} ({m[2]}-{m[3]} characters)"


_FIELD_HINTS = {
    spec.name: hint
    for specs in EVENT_FIELDS.values()
    for spec in specs
    if spec.pattern and (hint := _pattern_hint(spec.pattern))
}
# fields with one valid value (ge == le): "must be 1"
_CONSTANTS = {
    spec.name: spec.ge
    for specs in EVENT_FIELDS.values()
    for spec in specs
    if spec.ge is not None and spec.ge == spec.le
}


def _describe(err: Any, raw: bytes | None) -> tuple[str | None, str]:
    """(field, problem) of one pydantic error dict."""
    kind = err["type"]
    loc = tuple(err["loc"])
    if loc and loc[0] in _TAGS:
        loc = loc[1:]
    field = ".".join(str(part) for part in loc) or None
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "json_invalid":
        if raw is not None and not raw.strip():
            return None, "empty value" if not raw else "not valid JSON: only whitespace"
        if raw is not None:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return None, f"not valid UTF-8: {exc.reason} at byte {exc.start}"
        reason = str(ctx.get("error", err["msg"]))
        if reason.startswith("recursion limit exceeded"):
            reason = "nested too deeply (" + reason + ")"
        return None, f"not valid JSON: {reason}"
    if kind in ("dict_type", "model_type", "model_attributes_type") and field is None:
        return None, f"not a JSON object, got {json_type_name(value)}"
    if kind == "union_tag_not_found":
        return "event_type", "required (one of " + ", ".join(EVENT_TYPES) + ")"
    if kind == "union_tag_invalid":
        tag = value.get("event_type") if isinstance(value, dict) else ctx.get("tag")
        return "event_type", f"unknown event_type {short_repr(tag)}"
    if kind == "missing":
        return field, "required"
    if kind == "extra_forbidden":
        return field, f"unknown field (not in the v{SCHEMA_VERSION} contract)"
    if kind == "int_type" or kind == "int_from_float":
        return field, f"must be an integer, got {json_type_name(value)}"
    if kind in ("string_type", "str_type"):
        return field, f"must be a string, got {json_type_name(value)}"
    if kind == "bool_type":
        return field, f"must be true or false, got {json_type_name(value)}"
    if field in _CONSTANTS and kind in ("less_than_equal", "greater_than_equal"):
        return field, f"must be {_CONSTANTS[field]}, got {short_repr(value)}"
    if kind == "less_than_equal":
        return field, f"must be <= {ctx.get('le')}, got {short_repr(value)}"
    if kind == "greater_than_equal":
        return field, f"must be >= {ctx.get('ge')}, got {short_repr(value)}"
    if kind == "string_too_short":
        return field, "must not be empty"
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else "more"
        return field, f"at most {ctx.get('max_length')} characters, got {length}"
    if kind == "string_pattern_mismatch":
        return field, _FIELD_HINTS.get(
            field or "", f"must match {ctx.get('pattern')}"
        ) + f", got {short_repr(value)}"
    if kind == "literal_error":
        return field, f"must be one of {ctx.get('expected')}, got {short_repr(value)}"
    if kind == "timezone_aware":
        return (
            field,
            f"must have a UTC offset (RFC 3339, e.g. ...Z or +02:00), got {short_repr(value)}",
        )
    if kind.startswith("datetime"):
        return field, f"must be an RFC 3339 timestamp with offset, got {short_repr(value)}"
    return field, str(err["msg"])


def contract_error(exc: ValidationError, raw: bytes | None = None) -> ContractError:
    """One-line :class:`ContractError` for a pydantic ValidationError of the event models."""
    errors = exc.errors(include_url=False)
    field, problem = _describe(errors[0], raw)
    message = (
        f"{field}: {problem}" if field and not problem.startswith("unknown event_type") else problem
    )
    if len(errors) > 1:
        others = [f for f in (_describe(e, raw)[0] for e in errors[1:6]) if f]
        message += f" (+{len(errors) - 1} more" + (": " + ", ".join(others) if others else "") + ")"
    message = visible(" ".join(message.split()))  # one printable line, whatever the input held
    return ContractError(message, field=field)


def _duplicate_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(Exception):
    pass


def _check_unique_keys(raw: bytes) -> None:
    """ContractError when a JSON object of ``raw`` names a key twice: JSON parsers disagree on
    which value wins (pydantic and msgspec keep the last, others the first or refuse), so an
    event that says two things is refused. Anything else wrong is left to pydantic."""
    try:
        json.loads(
            raw if isinstance(raw, str) else str(raw, "utf-8"), object_pairs_hook=_duplicate_key
        )
    except _DuplicateKey as exc:
        key = visible(" ".join(str(exc.args[0]).split()))[:64]
        raise ContractError(
            f"{key}: duplicate key (a JSON object may name a field once)", field=key
        ) from None
    except (
        ValueError,
        TypeError,
        RecursionError,
    ):  # not UTF-8, not JSON, too deep: pydantic says why
        return


def parse_event(raw: bytes | None, *, now: dt.datetime | None = None) -> LlmCall | TaskFeedback:
    """Validate one raw Kafka message value against the contract.

    ``now`` bounds ``occurred_at`` (the models' future bound after it); the clock when None.
    Raises :class:`ContractError` (one line naming the field and the problem).
    """
    if raw is None:
        raise ContractError("no value (tombstone)")
    _check_unique_keys(raw)
    try:
        return EVENT_ADAPTER.validate_json(raw, context={"now": now} if now is not None else None)
    except ValidationError as exc:
        raise contract_error(exc, raw) from None
    except RecursionError:  # belt and braces: the JSON parser already limits nesting
        raise ContractError("not valid JSON: nested too deeply") from None


def validate_event(
    data: dict[str, Any], *, now: dt.datetime | None = None
) -> LlmCall | TaskFeedback:
    """Validate an event given as a Python dict (strict: datetimes must be aware datetime objects)."""
    try:
        return EVENT_ADAPTER.validate_python(
            data, context={"now": now} if now is not None else None
        )
    except ValidationError as exc:
        raise contract_error(exc) from None
