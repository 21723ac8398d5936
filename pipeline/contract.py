"""The v1 usage-event contract (DESIGN.md section 1): pydantic models, parsing, lake rows.

The models are the source of truth; ``schemas/events.v1.schema.json`` is exported from them::

    python -m pipeline.contract --write     # re-export after changing a model
    python -m pipeline.contract --check     # exit 1 when the committed file is stale

Parse one raw Kafka value (the consumer passes its batch time as ``now``)::

    event = parse_event(b'{"event_type": "llm_call", ...}', now=batch_time)
    row = to_row(event)          # lake columns minus the kafka_* / ingested_at source columns
    day = event_date(event)      # UTC date of occurred_at, the lake partition

Anything that breaks the contract raises :class:`~pipeline._exceptions.ContractError` whose
message is one readable line naming the field and the problem, e.g.
``input_tokens: must be an integer, got string``; ``.field`` holds the field name (or None).

The SDK checks events built from Python arguments with :func:`fast_validator`, compiled from
the same models (pydantic's verdicts and errors, a fraction of the cost per event)::

    check = fast_validator(LlmCall)
    event = check(event_id, "llm_call", 1, occurred_at, ...)   # every field, in field order

Types are strict: a token count is a JSON integer (``"1"``, ``true``, ``1.0`` and ``NaN``
are rejected, never coerced); strings are JSON strings; unknown fields are rejected.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError, SchemaValidator, core_schema

from pipeline._exceptions import ContractError
from pipeline.safe_text import visible

__all__ = [
    "SCHEMA_VERSION",
    "EVENT_TYPES",
    "MIN_OCCURRED_AT",
    "MAX_FUTURE",
    "MAX_TOKENS",
    "EVENT_ID_PATTERN",
    "IDENTIFIER_FIELDS",
    "LlmCall",
    "TaskFeedback",
    "Event",
    "EVENT_ADAPTER",
    "parse_event",
    "validate_event",
    "fast_validator",
    "contract_error",
    "to_row",
    "event_date",
    "export_json_schema",
    "SCHEMA_PATH",
]

SCHEMA_VERSION = 1
EVENT_TYPES = ("llm_call", "task_feedback")
MIN_OCCURRED_AT = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
MAX_FUTURE = dt.timedelta(minutes=10)
MAX_TOKENS = 100_000_000
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "events.v1.schema.json"

EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"

# RFC 3339 section 5.6 date-time; pydantic alone would also take "_" as separator, a missing
# seconds field and other ISO 8601 forms that agents in other languages may not produce.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII)


_UTC = dt.UTC
_datetime = dt.datetime
_fromisoformat = dt.datetime.fromisoformat
_now = dt.datetime.now


def _timestamp(value: Any, info: ValidationInfo) -> dt.datetime:
    """occurred_at: an RFC 3339 string (JSON) or an aware datetime (Python), to UTC, bounded.

    One plain validator instead of pydantic's datetime parser plus before/after hooks: the
    same verdicts at a third of the cost, which the SDK and the consumer pay per event.
    """
    if isinstance(value, dt.datetime):
        if value.utcoffset() is None:  # naive, or a tzinfo without an offset
            raise PydanticCustomError(
                "timezone_aware", "must have a UTC offset (RFC 3339, e.g. ...Z or +02:00), got {value}",
                {"value": _short(value, 60)})
    elif isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise PydanticCustomError(
                "rfc3339", "must be an RFC 3339 timestamp with offset (e.g. 2025-01-31T12:00:00Z), got {value}",
                {"value": _short(value)})
        try:
            value = _fromisoformat(value if value[10] == "T" and value[-1] != "z" else value.upper())
        except ValueError as exc:  # e.g. month 13, February 30, second 60
            raise PydanticCustomError(
                "rfc3339", "must be an RFC 3339 timestamp with offset, got {value} ({reason})",
                {"value": _short(value), "reason": str(exc)[:80]}) from None
    else:
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 timestamp string, got {value}", {"value": _json_type(value)})
    try:
        value = value.astimezone(_UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise PydanticCustomError(
            "too_early", "before 2020-01-01T00:00:00Z, got {value}", {"value": value.isoformat()}
        ) from None
    if value.__class__ is not _datetime:  # a subclass (pandas.Timestamp): JSON writers want the base
        value = _datetime(value.year, value.month, value.day, value.hour, value.minute,
                          value.second, value.microsecond, tzinfo=_UTC)
    if value < MIN_OCCURRED_AT:
        raise PydanticCustomError(
            "too_early", "before 2020-01-01T00:00:00Z, got {value}", {"value": _iso(value)})
    context = info.context
    now = context.get("now") if context else None
    if now is None:
        now = _now(_UTC)
    if value > now + MAX_FUTURE:
        raise PydanticCustomError(
            "too_late", "more than 10 minutes in the future, got {value} (now {now})",
            {"value": _iso(value), "now": _iso(now)})
    return value


TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
class _TimestampSchema:
    """``_timestamp`` as the whole validator; serialised as pydantic serialises datetimes."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_plain_validator_function(
            _timestamp, serialization=core_schema.simple_ser_schema("datetime"))


Timestamp = Annotated[
    dt.datetime, _TimestampSchema(),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="validation")]


def _text(max_length: int, description: str) -> Any:
    return Field(min_length=1, max_length=max_length, description=description)


# Identifiers (agent, task, role, provider, model, trigger, policy version, task type) are
# grouped on and printed: a control character, a bidi override or a zero-width space in one
# would make the reports lie (two rows that look the same, text that reads backwards,
# terminal escapes). They must be printable as Python's str.isprintable says (letters,
# digits, punctuation, symbols and the ASCII space of any script).
IDENTIFIER_FIELDS = ("agent_id", "task_id", "role", "provider", "model", "escalation_trigger",
                     "policy_version", "task_type")


def _printable(value: str | None) -> str | None:
    if value is not None and not value.isprintable():
        raise PydanticCustomError(
            "printable", "must be printable (no control, format, bidi, zero-width or "
            "separator characters other than space), got {value}", {"value": _short(value)})
    return value


class _Envelope(BaseModel):
    """Fields every event carries; the field order is the lake's column order."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: str = Field(
        pattern=EVENT_ID_PATTERN, min_length=1, max_length=64,
        description="Made by the producer (UUID/ULID); a retry reuses it; the idempotency key.")
    event_type: str
    schema_version: int = Field(
        ge=SCHEMA_VERSION, le=SCHEMA_VERSION, description="Contract version; must be 1.",
        json_schema_extra={"const": SCHEMA_VERSION})
    occurred_at: Timestamp = Field(
        description="RFC 3339 timestamp with offset; stored as UTC; not before 2020-01-01, "
                    "not more than 10 minutes after the consumer's clock.")
    agent_id: str = _text(128, "The agent that made the call.")
    task_id: str = _text(128, "The task; also the Kafka message key.")
    role: str = _text(64, "A role of the routing policy.")

    @field_validator("agent_id", "task_id", "role")
    @classmethod
    def _printable_identifier(cls, value: str, info: ValidationInfo) -> str:
        return _printable(value)  # type: ignore[return-value]


class LlmCall(_Envelope):
    """One model call: who called which model with how many tokens, and why (escalation)."""

    # The escalated <=> escalation_trigger rule, for JSON Schema validators in other languages.
    model_config = ConfigDict(json_schema_extra={"allOf": [{
        "if": {"properties": {"escalated": {"const": True}}, "required": ["escalated"]},
        "then": {"properties": {"escalation_trigger": {"type": "string"}},
                 "required": ["escalation_trigger"]},
        "else": {"properties": {"escalation_trigger": {"type": "null"}}},
    }]})

    event_type: Literal["llm_call"]
    provider: str = _text(128, "e.g. zai, anthropic; prices are looked up by (provider, model).")
    model: str = _text(128, "e.g. glm-4.5, claude-opus-4-1.")
    input_tokens: TokenCount = Field(
        description="Input tokens billed at the plain input rate (cached tokens excluded).")
    output_tokens: TokenCount
    cache_read_tokens: TokenCount = 0
    cache_write_5m_tokens: TokenCount = 0
    cache_write_1h_tokens: TokenCount = 0
    latency_ms: Annotated[int, Field(ge=0, le=86_400_000)] | None = None
    status: Literal["ok", "error"] = "ok"
    escalated: bool = Field(
        False, description="True when the premium model was chosen by an escalation trigger.")
    escalation_trigger: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, validate_default=True,
        description="Trigger id of the policy; required when escalated is true, null otherwise.")
    policy_version: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    task_type: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @field_validator("provider", "model", "policy_version", "task_type")
    @classmethod
    def _printable_call_identifier(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _printable(value)

    @field_validator("escalation_trigger")
    @classmethod
    def _trigger_iff_escalated(cls, value: str | None, info: ValidationInfo) -> str | None:
        _printable(value)
        escalated = info.data.get("escalated")
        if escalated is None:  # escalated itself was invalid and is reported on its own
            return value
        if escalated and value is None:
            raise PydanticCustomError("trigger_required", "required when escalated is true")
        if not escalated and value is not None:
            raise PydanticCustomError(
                "trigger_forbidden", "must be null when escalated is false, got {value}",
                {"value": _short(value)})
        return value


class TaskFeedback(_Envelope):
    """Feedback on one task: user satisfaction and reviewers' verdicts."""

    event_type: Literal["task_feedback"]
    satisfaction: Annotated[int, Field(ge=1, le=5)] | None = Field(
        None, description="User satisfaction with the task's result, 1-5.")
    escalation_needed: bool | None = Field(
        None, description="A reviewer's verdict: was the premium model needed?")
    review_consistent: bool | None = Field(
        None, description="A critic review agreed with an independent second review.")


Event = Annotated[LlmCall | TaskFeedback, Field(discriminator="event_type")]
EVENT_ADAPTER: TypeAdapter[LlmCall | TaskFeedback] = TypeAdapter(Event)


# --- errors -------------------------------------------------------------------------------

_TAGS = frozenset(EVENT_TYPES)
_FIELD_HINTS = {"event_id": "may only contain A-Z a-z 0-9 . _ : - (1-64 characters)"}


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, as agent authors know it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return f"float {value!r}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


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
        return None, f"not a JSON object, got {_json_type(value)}"
    if kind == "union_tag_not_found":
        return "event_type", "required (one of " + ", ".join(EVENT_TYPES) + ")"
    if kind == "union_tag_invalid":
        tag = value.get("event_type") if isinstance(value, dict) else ctx.get("tag")
        return "event_type", f"unknown event_type {_short(tag)}"
    if kind == "missing":
        return field, "required"
    if kind == "extra_forbidden":
        return field, "unknown field (not in the v1 contract)"
    if kind == "int_type" or kind == "int_from_float":
        return field, f"must be an integer, got {_json_type(value)}"
    if kind in ("string_type", "str_type"):
        return field, f"must be a string, got {_json_type(value)}"
    if kind == "bool_type":
        return field, f"must be true or false, got {_json_type(value)}"
    if field == "schema_version" and kind in ("less_than_equal", "greater_than_equal"):
        return field, f"must be {SCHEMA_VERSION}, got {_short(value)}"
    if kind == "less_than_equal":
        return field, f"must be <= {ctx.get('le')}, got {_short(value)}"
    if kind == "greater_than_equal":
        return field, f"must be >= {ctx.get('ge')}, got {_short(value)}"
    if kind == "string_too_short":
        return field, "must not be empty"
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else "more"
        return field, f"at most {ctx.get('max_length')} characters, got {length}"
    if kind == "string_pattern_mismatch":
        return field, _FIELD_HINTS.get(field or "", f"must match {ctx.get('pattern')}") + f", got {_short(value)}"
    if kind == "literal_error":
        return field, f"must be one of {ctx.get('expected')}, got {_short(value)}"
    if kind == "timezone_aware":
        return field, f"must have a UTC offset (RFC 3339, e.g. ...Z or +02:00), got {_short(value)}"
    if kind.startswith("datetime"):
        return field, f"must be an RFC 3339 timestamp with offset, got {_short(value)}"
    return field, str(err["msg"])


def contract_error(exc: ValidationError, raw: bytes | None = None) -> ContractError:
    """One-line :class:`ContractError` for a pydantic ValidationError of the event models."""
    errors = exc.errors(include_url=False)
    field, problem = _describe(errors[0], raw)
    message = f"{field}: {problem}" if field and not problem.startswith("unknown event_type") else problem
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
        json.loads(raw if isinstance(raw, str) else str(raw, "utf-8"),
                   object_pairs_hook=_duplicate_key)
    except _DuplicateKey as exc:
        key = visible(" ".join(str(exc.args[0]).split()))[:64]
        raise ContractError(f"{key}: duplicate key (a JSON object may name a field once)",
                            field=key) from None
    except (ValueError, TypeError, RecursionError):  # not UTF-8, not JSON, too deep: pydantic says why
        return


def parse_event(raw: bytes | None, *, now: dt.datetime | None = None) -> LlmCall | TaskFeedback:
    """Validate one raw Kafka message value against the v1 contract.

    ``now`` bounds ``occurred_at`` (at most 10 minutes after it); the clock when None.
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


def validate_event(data: dict[str, Any], *, now: dt.datetime | None = None) -> LlmCall | TaskFeedback:
    """Validate an event given as a Python dict (strict: datetimes must be aware datetime objects)."""
    try:
        return EVENT_ADAPTER.validate_python(data, context={"now": now} if now is not None else None)
    except ValidationError as exc:
        raise contract_error(exc) from None


# --- a faster validator, generated from the models ---------------------------------------

class _NotTranslated(Exception):
    """A part of a model's core schema that :func:`fast_validator` does not translate."""


class _Info:
    """The ``ValidationInfo`` pydantic gives a field validator of a model validated without
    context: the fields validated before it (``data``), the field's name, the model's config
    (a subclass per model)."""

    __slots__ = ("data", "field_name")
    context = None
    mode = "python"
    config: Any = None

    def __init__(self, data: dict[str, Any], field_name: str) -> None:
        self.data, self.field_name = data, field_name


_FUNCTIONS = ("function-before", "function-after", "function-wrap", "function-plain")


def _has_function(schema: Any) -> bool:
    """Whether a core schema calls Python code anywhere (it would need a field's context)."""
    if isinstance(schema, dict):
        return schema.get("type") in _FUNCTIONS or any(_has_function(v) for v in schema.values())
    if isinstance(schema, list | tuple):
        return any(_has_function(v) for v in schema)
    return False


def _split_field(schema: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(the field's schema without its field validator, that validator or None)."""
    if schema["type"] == "default":  # every field is given: the default never applies
        return _split_field(schema["schema"])
    if schema["type"] in ("function-plain", "function-after"):
        function = schema["function"]
        if function["type"] != "with-info" or _has_function(schema.get("schema")):
            raise _NotTranslated(schema["type"])
        inner = schema["schema"] if schema["type"] == "function-after" else {"type": "any"}
        return inner, function["function"]
    if _has_function(schema):
        raise _NotTranslated(schema["type"])
    return schema, None


def fast_validator(model: type[BaseModel]) -> Callable[..., Any]:
    """``validate(*fields) -> model``: validate one event given every field of ``model`` (in
    the model's field order, or by name) with the verdicts of ``model.model_validate`` at
    a fraction of its cost, which the SDK pays per event.

    Derived from the model's pydantic-core schema, the models staying the only statement of
    the contract: every field's own schema (types, bounds, lengths, patterns, literals, in
    the model's strict config) is checked by pydantic-core in ONE call on the tuple of
    values, without pydantic's per-model machinery; then the model's field validators run
    in field order, called as pydantic calls them (``info.data`` = the fields before); then
    the model instance is made as ``model_construct`` makes it. Whatever that path does not
    accept is validated by pydantic itself, which raises its ``ValidationError`` (or
    returns the model). A model whose schema holds anything else (model validators,
    aliases, nested validators, ...) gets pydantic's validator (``validate.fast`` False).
    """
    schema = model.__pydantic_core_schema__
    fields = list(model.model_fields)
    namespace: dict[str, Any] = {
        "_model": model, "_validate_python": model.__pydantic_validator__.validate_python,
        "_new": object.__new__, "_set": object.__setattr__, "_fields_set": set(fields)}
    names = ", ".join(fields)
    # the values pydantic-core returns, apart from the arguments (the fallback gets those)
    valid = {name: f"_v{i}" for i, name in enumerate(fields)}
    as_dict = "{" + ", ".join(f"{name!r}: {name}" for name in fields) + "}"
    try:
        config = schema.get("config") or {}
        if (schema["type"] != "model" or schema.get("custom_init") or schema.get("root_model")
                or schema.get("post_init") or model.__pydantic_post_init__
                or model.__private_attributes__ or config.get("extra_fields_behavior") == "allow"):
            raise _NotTranslated("model")
        inner = schema["schema"]
        if (inner["type"] != "model-fields" or inner.get("computed_fields")
                or set(inner) - {"type", "fields", "model_name", "computed_fields"}
                or list(inner["fields"]) != fields):
            raise _NotTranslated("model-fields")
        leaves: list[Any] = []
        lines: list[str] = []
        plain: list[str] = []
        info = False
        for name, field in inner["fields"].items():
            if set(field) - {"type", "schema", "metadata"}:
                raise _NotTranslated(f"field {name}")
            leaf, function = _split_field(field["schema"])
            leaves.append(leaf)
            if function is None:
                plain.append(name)
                continue
            # the fields so far, in order, then this one through its validator
            lines.append(f"_out = {{{', '.join(f'{n!r}: {valid[n]}' for n in plain)}}}" if not lines
                         else "\n        ".join(f"_out[{n!r}] = {valid[n]}" for n in plain))
            namespace[f"_f_{name}"] = function
            # one info per event, its field_name set for each validator in turn
            lines.append(f"_info = _Info(_out, {name!r})" if not info else f"_info.field_name = {name!r}")
            lines.append(f"_out[{name!r}] = _f_{name}({valid[name]}, _info)")
            plain, info = [], True
        if not lines:
            lines.append(f"_out = {{{', '.join(f'{n!r}: {valid[n]}' for n in plain)}}}")
        elif plain:
            lines.append("\n        ".join(f"_out[{n!r}] = {valid[n]}" for n in plain))
        namespace["_leaves"] = SchemaValidator(
            core_schema.tuple_schema(leaves), config).validate_python  # type: ignore[arg-type]
        namespace["_Info"] = type("_Info", (_Info,), {"__slots__": (), "config": config})
        body = (f"{', '.join(valid.values())}, = _leaves(({names},))\n        "
                + "\n        ".join(lines))
        fast = True
    except _NotTranslated:
        body, fast = "raise _NotTranslated", False
    namespace["_NotTranslated"] = _NotTranslated
    source = f"""
def validate({names}):
    try:
        {body}
    except Exception:  # pydantic's verdict: its ValidationError, or the model
        return _validate_python({as_dict}, by_name=True)
    _event = _new(_model)
    _set(_event, "__dict__", _out)
    _set(_event, "__pydantic_fields_set__", _fields_set.copy())
    _set(_event, "__pydantic_extra__", None)
    _set(_event, "__pydantic_private__", None)
    return _event
"""
    exec(compile(source, f"<fast_validator {model.__name__}>", "exec"), namespace)  # noqa: S102
    validate = namespace["validate"]
    validate.fast, validate.source = fast, source
    return validate  # type: ignore[no-any-return]


# --- lake rows ----------------------------------------------------------------------------

def to_row(event: LlmCall | TaskFeedback) -> dict[str, Any]:
    """The event as a lake row: the columns of its lake schema minus the source columns."""
    return event.model_dump()


def event_date(event: LlmCall | TaskFeedback) -> dt.date:
    """UTC date of ``occurred_at``: the lake partition of the event."""
    return event.occurred_at.astimezone(dt.UTC).date()


# --- JSON Schema export -------------------------------------------------------------------

def export_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a v1 event, exported from the models."""
    schema = EVENT_ADAPTER.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "modelmeter/events.v1.schema.json",
        "title": "modelmeter usage event, schema_version 1",
        "description": "One Kafka message value on the usage topic. Generated by "
                       "`python -m pipeline.contract --write` from pipeline/contract.py; do not edit.",
        **schema,
    }


def render_json_schema() -> str:
    return json.dumps(export_json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.contract",
                                     description="Export the v1 event JSON Schema.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"write {SCHEMA_PATH.name}")
    action.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    parser.add_argument("--path", type=Path, default=SCHEMA_PATH)
    args = parser.parse_args(argv)
    text = render_json_schema()
    if args.write:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run python -m pipeline.contract --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
