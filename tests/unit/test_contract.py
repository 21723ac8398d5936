"""The v1 event contract: every rule of the models, each refusal with one reason naming the field."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import zoneinfo

import orjson
import pyarrow as pa
import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline._exceptions import ContractError
from pipeline.contract import (
    EVENT_ADAPTER,
    LlmCall,
    TaskFeedback,
    contract_error,
    event_date,
    fast_validator,
    parse_event,
    to_row,
    validate_event,
)
from pipeline.lake import LLM_CALL_SCHEMA, TASK_FEEDBACK_SCHEMA

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)

LLM_MIN = {
    "event_id": "01J0ABCDEF",
    "event_type": "llm_call",
    "schema_version": 1,
    "occurred_at": "2025-06-01T11:00:00Z",
    "agent_id": "agent-1",
    "task_id": "task-1",
    "role": "coder",
    "provider": "zai",
    "model": "glm-4.5",
    "input_tokens": 1200,
    "output_tokens": 300,
}
LLM_MAX = {
    **LLM_MIN,
    "cache_read_tokens": 5000,
    "cache_write_5m_tokens": 10,
    "cache_write_1h_tokens": 20,
    "latency_ms": 1834,
    "status": "error",
    "escalated": True,
    "escalation_trigger": "security_sensitive",
    "policy_version": "2025-06-01",
    "task_type": "bugfix",
}
FEEDBACK_MIN = {
    "event_id": "fb-1",
    "event_type": "task_feedback",
    "schema_version": 1,
    "occurred_at": "2025-06-01T11:30:00+00:00",
    "agent_id": "agent-1",
    "task_id": "task-1",
    "role": "coder",
}
FEEDBACK_MAX = {
    **FEEDBACK_MIN,
    "satisfaction": 5,
    "escalation_needed": False,
    "review_consistent": True,
}


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


def event(base: dict, **changes: object) -> bytes:
    data = {**base, **changes}
    return raw({k: v for k, v in data.items() if v is not DROP})


DROP = object()


def reject(value: bytes | None) -> ContractError:
    with pytest.raises(ContractError) as info:
        parse_event(value, now=NOW)
    message = str(info.value)
    assert "\n" not in message, "the reason must be one line"
    return info.value


# --- valid events -------------------------------------------------------------------------


def test_minimal_llm_call_gets_defaults():
    """A minimal llm_call validates; cache counts default to 0, status ok, not escalated."""
    e = parse_event(raw(LLM_MIN), now=NOW)
    assert isinstance(e, LlmCall)
    assert (e.cache_read_tokens, e.cache_write_5m_tokens, e.cache_write_1h_tokens) == (0, 0, 0)
    assert (e.status, e.escalated, e.escalation_trigger, e.latency_ms) == ("ok", False, None, None)


def test_maximal_llm_call_keeps_every_value():
    """Every optional llm_call field is kept as sent."""
    e = parse_event(raw(LLM_MAX), now=NOW)
    dumped = e.model_dump(mode="json")
    for key, value in LLM_MAX.items():
        if key != "occurred_at":
            assert dumped[key] == value, key


def test_task_feedback_minimal_and_maximal():
    """task_feedback validates with and without its optional verdicts."""
    e = parse_event(raw(FEEDBACK_MIN), now=NOW)
    assert isinstance(e, TaskFeedback)
    assert (e.satisfaction, e.escalation_needed, e.review_consistent) == (None, None, None)
    e = parse_event(raw(FEEDBACK_MAX), now=NOW)
    assert (e.satisfaction, e.escalation_needed, e.review_consistent) == (5, False, True)


def test_nullable_fields_accept_explicit_null():
    """Optional fields may be sent as null."""
    e = parse_event(
        event(
            LLM_MIN, latency_ms=None, escalation_trigger=None, policy_version=None, task_type=None
        ),
        now=NOW,
    )
    assert e.latency_ms is None
    parse_event(
        event(FEEDBACK_MIN, satisfaction=None, escalation_needed=None, review_consistent=None),
        now=NOW,
    )


def test_occurred_at_is_normalised_to_utc():
    """An offset timestamp is stored as the same instant in UTC."""
    e = parse_event(event(LLM_MIN, occurred_at="2025-06-01T02:30:00-07:00"), now=NOW)
    assert e.occurred_at == dt.datetime(2025, 6, 1, 9, 30, tzinfo=dt.UTC)
    assert e.occurred_at.utcoffset() == dt.timedelta(0)


def test_event_date_is_the_utc_date():
    """event_date is the UTC date, not the sender's local date."""
    e = parse_event(event(LLM_MIN, occurred_at="2025-06-01T01:00:00+05:00"), now=NOW)
    assert event_date(e) == dt.date(2025, 5, 31)


def test_token_bounds_are_inclusive():
    """0 and 100,000,000 tokens are both valid."""
    e = parse_event(event(LLM_MIN, input_tokens=0, output_tokens=100_000_000), now=NOW)
    assert (e.input_tokens, e.output_tokens) == (0, 100_000_000)


def test_ten_minutes_ahead_is_accepted_eleven_is_not():
    """occurred_at may run up to 10 minutes ahead of the consumer's clock (clock skew)."""
    parse_event(event(LLM_MIN, occurred_at="2025-06-01T12:10:00Z"), now=NOW)
    err = reject(event(LLM_MIN, occurred_at="2025-06-01T12:11:00Z"))
    assert err.field == "occurred_at" and "future" in str(err)


def test_now_defaults_to_the_clock():
    """Without now, the bound is the wall clock: a timestamp a day ahead is rejected."""
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    with pytest.raises(ContractError, match="occurred_at: more than 10 minutes in the future"):
        parse_event(event(LLM_MIN, occurred_at=tomorrow))


def test_events_are_frozen():
    """A validated event cannot be changed afterwards."""
    e = parse_event(raw(LLM_MIN), now=NOW)
    with pytest.raises(ValueError):
        e.input_tokens = 5  # type: ignore[misc]


# --- rejected: structure ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty value"),
        (None, "no value (tombstone)"),
        (b"   ", "not valid JSON: only whitespace"),
        (b"not json", "not valid JSON: "),
        (raw(LLM_MIN)[:-10], "not valid JSON: EOF while parsing"),
        (b'{"event_type": "llm_call"} trailing', "not valid JSON: trailing characters"),
        (b"\xff\xfe{}", "not valid UTF-8: invalid start byte at byte 0"),
        (raw(LLM_MIN).replace(b"coder", b"cod\xc3er"), "not valid UTF-8"),
        (b"[1, 2]", "not a JSON object, got array"),
        (b'"llm_call"', "not a JSON object, got string"),
        (b"42", "not a JSON object, got integer"),
        (b"null", "not a JSON object, got null"),
    ],
)
def test_structurally_broken_values_are_rejected(value, reason):
    """Empty, tombstone, not JSON, truncated, invalid UTF-8 and non-object values are rejected."""
    err = reject(value)
    assert str(err).startswith(reason)
    assert err.field is None


@pytest.mark.parametrize("depth", [300, 100_000])
def test_deeply_nested_json_is_rejected_without_recursion_error(depth):
    """Deep nesting is refused by the JSON parser's depth limit, never a RecursionError."""
    err = reject(b"[" * depth + b"]" * depth)
    assert str(err).startswith("not valid JSON: nested too deeply")
    nested = b'{"event_id": "x", "pad": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    assert "nested too deeply" in str(reject(nested))


def test_900kb_value_is_rejected_with_the_field_named():
    """A 900 KB string is reported by field and length, not echoed into the reason."""
    err = reject(event(LLM_MIN, task_type="x" * 900_000))
    assert str(err) == "task_type: at most 128 characters, got 900000"
    err = reject(event(LLM_MIN, padding="y" * 900_000))
    assert str(err) == "padding: unknown field (not in the v1 contract)"
    assert len(str(err)) < 200


def test_lone_surrogate_escape_is_rejected():
    """A JSON string with a lone UTF-16 surrogate cannot be stored as UTF-8 and is rejected."""
    assert str(reject(event(LLM_MIN, role="x").replace(b'"x"', b'"\\ud800"'))).startswith(
        "not valid JSON"
    )


# --- rejected: envelope and type rules ----------------------------------------------------


@pytest.mark.parametrize("field", list(LLM_MIN))
def test_each_missing_llm_call_field_is_named(field):
    """Dropping any required llm_call field names that field."""
    err = reject(event(LLM_MIN, **{field: DROP}))
    if field == "event_type":
        assert str(err) == "event_type: required (one of llm_call, task_feedback)"
    else:
        assert str(err) == f"{field}: required"
    assert err.field == field


@pytest.mark.parametrize("field", list(FEEDBACK_MIN))
def test_each_missing_task_feedback_field_is_named(field):
    """Dropping any required task_feedback field names that field."""
    err = reject(event(FEEDBACK_MIN, **{field: DROP}))
    assert err.field == field and "required" in str(err)


def test_several_problems_are_summarised_on_one_line():
    """Several problems: the first is explained and the others are named."""
    err = reject(event(LLM_MIN, role=DROP, input_tokens="5", model=DROP))
    assert str(err) == "role: required (+2 more: model, input_tokens)"


@pytest.mark.parametrize(
    "field",
    [
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
    ],
)
@pytest.mark.parametrize(
    ("bad", "got"),
    [
        ('"12"', "string"),
        ("true", "boolean"),
        ("false", "boolean"),
        ("1.0", "float 1.0"),
        ("12.5", "float 12.5"),
        ("1e3", "float 1000.0"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("null", "null"),
        ("[1]", "array"),
    ],
)
def test_token_counts_must_be_json_integers(field, bad, got):
    """A token count that is a string, bool, float, NaN, null or array is rejected, not coerced."""
    value = event(LLM_MIN, **{field: 7}).replace(
        f'"{field}": 7'.encode(), f'"{field}": {bad}'.encode()
    )
    err = reject(value)
    assert str(err) == f"{field}: must be an integer, got {got}"
    assert err.field == field


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("input_tokens", -1, "input_tokens: must be >= 0, got -1"),
        ("output_tokens", 100_000_001, "output_tokens: must be <= 100000000, got 100000001"),
        ("cache_read_tokens", 10**30, "cache_read_tokens: must be <= 100000000"),
        ("latency_ms", -5, "latency_ms: must be >= 0, got -5"),
        ("latency_ms", 1.5, "latency_ms: must be an integer, got float 1.5"),
        ("status", "failed", "status: must be one of 'ok' or 'error', got 'failed'"),
        ("escalated", "true", "escalated: must be true or false, got string"),
        ("escalated", 1, "escalated: must be true or false, got integer"),
        ("agent_id", 42, "agent_id: must be a string, got integer"),
        ("task_id", "", "task_id: must not be empty"),
        ("role", "r" * 65, "role: at most 64 characters, got 65"),
        ("agent_id", "a" * 129, "agent_id: at most 128 characters, got 129"),
        ("task_id", "t" * 129, "task_id: at most 128 characters, got 129"),
        ("provider", "p" * 129, "provider: at most 128 characters, got 129"),
        ("model", "", "model: must not be empty"),
        ("policy_version", "v" * 65, "policy_version: at most 64 characters, got 65"),
        ("event_id", "e" * 65, "event_id: at most 64 characters, got 65"),
        ("event_id", "", "event_id: must not be empty"),
        (
            "event_id",
            "has space",
            "event_id: may only contain A-Z a-z 0-9 . _ : - (1-64 characters), got 'has space'",
        ),
        ("event_id", "évènement", "event_id: may only contain"),
        ("event_id", 123, "event_id: must be a string, got integer"),
        ("schema_version", 2, "schema_version: must be 1, got 2"),
        ("schema_version", 0, "schema_version: must be 1, got 0"),
        ("schema_version", True, "schema_version: must be an integer, got boolean"),
        ("schema_version", 1.0, "schema_version: must be an integer, got float 1.0"),
        ("schema_version", "1", "schema_version: must be an integer, got string"),
        ("unexpected", 1, "unexpected: unknown field (not in the v1 contract)"),
        ("inputTokens", 5, "inputTokens: unknown field (not in the v1 contract)"),
    ],
)
def test_llm_call_values_out_of_contract_are_rejected(field, value, reason):
    """Wrong types, out-of-bound values, over-long ids, schema_version 2 and extra fields."""
    err = reject(event(LLM_MIN, **{field: value}))
    assert str(err).startswith(reason)
    assert err.field == field


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("satisfaction", 0, "satisfaction: must be >= 1, got 0"),
        ("satisfaction", 6, "satisfaction: must be <= 5, got 6"),
        ("satisfaction", 4.0, "satisfaction: must be an integer, got float 4.0"),
        ("satisfaction", "5", "satisfaction: must be an integer, got string"),
        ("escalation_needed", "no", "escalation_needed: must be true or false, got string"),
        ("review_consistent", 0, "review_consistent: must be true or false, got integer"),
        ("input_tokens", 5, "input_tokens: unknown field (not in the v1 contract)"),
    ],
)
def test_task_feedback_values_out_of_contract_are_rejected(field, value, reason):
    """task_feedback's own rules; llm_call fields are extra fields there."""
    err = reject(event(FEEDBACK_MIN, **{field: value}))
    assert str(err) == reason


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("foo", "unknown event_type 'foo'"),
        ("LLM_CALL", "unknown event_type 'LLM_CALL'"),
        (1, "unknown event_type 1"),
        (None, "unknown event_type None"),
    ],
)
def test_unknown_event_type_is_rejected(tag, reason):
    """Only llm_call and task_feedback are event types."""
    err = reject(event(LLM_MIN, event_type=tag))
    assert str(err) == reason and err.field == "event_type"


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("2025-06-01T11:00:00", "must be an RFC 3339 timestamp with offset"),
        ("2025-06-01 11:00:00", "must be an RFC 3339 timestamp with offset"),
        ("2025-06-01", "must be an RFC 3339 timestamp with offset"),
        ("2025-06-01T11:00Z", "must be an RFC 3339 timestamp with offset"),
        ("2025-06-01_11:00:00Z", "must be an RFC 3339 timestamp with offset"),
        ("2025-13-01T11:00:00Z", "must be an RFC 3339 timestamp with offset"),
        ("yesterday", "must be an RFC 3339 timestamp with offset"),
        (1748775600, "must be an RFC 3339 timestamp string, got integer"),
        ("2019-12-31T23:59:59Z", "before 2020-01-01T00:00:00Z, got 2019-12-31T23:59:59Z"),
        ("2020-01-01T00:30:00+01:00", "before 2020-01-01T00:00:00Z"),
        # before year 1 once in UTC: a contract error, not Python's OverflowError
        ("0001-01-01T00:00:00+01:00", "before 2020-01-01T00:00:00Z, got 0001-01-01T00:00:00+01:00"),
        (
            "2030-01-01T00:00:00Z",
            "more than 10 minutes in the future, got 2030-01-01T00:00:00Z (now 2025-06-01T12:00:00Z)",
        ),
    ],
)
def test_bad_timestamps_are_rejected(stamp, reason):
    """Naive, non-RFC 3339, before 2020 and far-future timestamps are rejected."""
    err = reject(event(LLM_MIN, occurred_at=stamp))
    assert str(err).startswith(f"occurred_at: {reason}")
    assert err.field == "occurred_at"


@pytest.mark.parametrize(
    "stamp",
    [
        "2025-06-01T11:00:00Z",
        "2025-06-01t11:00:00z",
        "2025-06-01 11:00:00+00:00",
        "2025-06-01T11:00:00.123456789Z",
        "2025-06-01T13:00:00+02:00",
    ],
)
def test_rfc3339_forms_are_accepted(stamp):
    """The RFC 3339 variants (lower-case t/z, space, nanoseconds, offsets) are accepted."""
    parse_event(event(LLM_MIN, occurred_at=stamp), now=NOW)


def test_escalated_without_trigger_is_rejected():
    """escalated=true requires a trigger."""
    err = reject(event(LLM_MIN, escalated=True))
    assert str(err) == "escalation_trigger: required when escalated is true"
    assert str(reject(event(LLM_MIN, escalated=True, escalation_trigger=None))) == (
        "escalation_trigger: required when escalated is true"
    )
    assert str(reject(event(LLM_MIN, escalated=True, escalation_trigger=""))) == (
        "escalation_trigger: must not be empty"
    )


def test_trigger_without_escalation_is_rejected():
    """A trigger on a call that was not escalated is rejected (explicit false or default)."""
    for body in (
        event(LLM_MIN, escalation_trigger="x"),
        event(LLM_MIN, escalated=False, escalation_trigger="x"),
    ):
        assert (
            str(reject(body)) == "escalation_trigger: must be null when escalated is false, got 'x'"
        )


def test_invalid_escalated_is_reported_without_a_trigger_error():
    """When escalated itself is invalid, only that is reported."""
    assert str(reject(event(LLM_MIN, escalated="yes", escalation_trigger="x"))) == (
        "escalated: must be true or false, got string"
    )


# --- Python-side validation (the SDK's path) ----------------------------------------------


def test_python_validation_is_strict_too():
    """Built from Python, a naive datetime or a string token count is rejected the same way."""
    data = {**LLM_MIN, "occurred_at": dt.datetime(2025, 6, 1, 11)}
    with pytest.raises(ContractError, match="^occurred_at: must have a UTC offset"):
        validate_event(data, now=NOW)
    data["occurred_at"] = dt.datetime(2025, 6, 1, 11, tzinfo=dt.UTC)
    assert validate_event(data, now=NOW).occurred_at == data["occurred_at"]
    with pytest.raises(ContractError, match="^input_tokens: must be an integer, got string$"):
        validate_event({**data, "input_tokens": "5"}, now=NOW)
    with pytest.raises(ContractError, match="^input_tokens: must be an integer, got boolean$"):
        validate_event({**data, "input_tokens": True}, now=NOW)


# --- lake rows ----------------------------------------------------------------------------


def _columns(schema: pa.Schema) -> list[str]:
    source = {"kafka_topic", "kafka_partition", "kafka_offset", "ingested_at"}
    return [name for name in schema.names if name not in source]


def test_to_row_has_exactly_the_lake_columns_in_order():
    """to_row gives the lake schema's columns (minus the source columns), in order."""
    assert list(to_row(parse_event(raw(LLM_MAX), now=NOW))) == _columns(LLM_CALL_SCHEMA)
    assert list(to_row(parse_event(raw(FEEDBACK_MAX), now=NOW))) == _columns(TASK_FEEDBACK_SCHEMA)


def test_to_row_values_fit_the_lake_schema():
    """Rows convert to Arrow with the lake schema (UTC timestamp, ints, nulls where optional)."""
    rows = [to_row(parse_event(raw(b), now=NOW)) for b in (LLM_MIN, LLM_MAX)]
    schema = pa.schema([LLM_CALL_SCHEMA.field(n) for n in _columns(LLM_CALL_SCHEMA)])
    table = pa.Table.from_pylist(rows, schema=schema)
    assert table.column("occurred_at")[0].as_py() == dt.datetime(2025, 6, 1, 11, tzinfo=dt.UTC)
    assert table.column("escalation_trigger").to_pylist() == [None, "security_sensitive"]
    rows = [to_row(parse_event(raw(b), now=NOW)) for b in (FEEDBACK_MIN, FEEDBACK_MAX)]
    schema = pa.schema([TASK_FEEDBACK_SCHEMA.field(n) for n in _columns(TASK_FEEDBACK_SCHEMA)])
    assert pa.Table.from_pylist(rows, schema=schema).column("satisfaction").to_pylist() == [None, 5]


def test_json_dump_round_trips_through_parse_event():
    """An event serialised to JSON parses back equal (what the SDK sends is what lands)."""
    for body in (LLM_MIN, LLM_MAX, FEEDBACK_MAX):
        e = parse_event(raw(body), now=NOW)
        assert parse_event(EVENT_ADAPTER.dump_json(e, exclude_none=True), now=NOW) == e


# --- fast_validator: the SDK's compiled check, held to pydantic's verdicts -----------------


class _Str(str):
    pass


class _Int(int):
    pass


class _Datetime(dt.datetime):
    pass


_LONG = {n: "x" * n for n in (64, 65, 128, 129)}
_STRINGS = [
    "a",
    "",
    " ",
    "agent-7",
    "é-ünï",
    "\ud800",
    "tab\t",
    "line\n",
    _LONG[64],
    _LONG[65],
    _LONG[128],
    _LONG[129],
    _Str("sub"),
    5,
    None,
    True,
    b"bytes",
    1.5,
]
_COUNTS = [
    0,
    1,
    17,
    100_000_000,
    100_000_001,
    -1,
    2**70,
    True,
    False,
    1.0,
    float("nan"),
    "1",
    None,
    _Int(3),
]
_NOW = dt.datetime.now(dt.UTC)
_TIMES = [
    _NOW,
    _NOW - dt.timedelta(days=3),
    _NOW.astimezone(dt.timezone(dt.timedelta(hours=2))),
    (_NOW - dt.timedelta(hours=1)).astimezone(zoneinfo.ZoneInfo("Europe/Paris")),
    _NOW + dt.timedelta(minutes=5),
    _NOW + dt.timedelta(hours=1),
    dt.datetime(2019, 12, 31, 23, 59, tzinfo=dt.UTC),
    _NOW.replace(tzinfo=None),
    _Datetime(2025, 6, 1, tzinfo=dt.UTC),
    "2025-06-01T11:00:00Z",
    "2025-06-01 11:00:00+02:00",
    "2025-06-01T11:00:00",
    "2025-13-01T11:00:00Z",
    "yesterday",
    1_700_000_000,
    None,
]
# per field: values the contract accepts and values it refuses (types, bounds, edges)
_POOLS = {
    "event_id": [
        "01J0ABCDEF",
        "a.b:c_d-e",
        "has space",
        "new\nline",
        "ünï",
        _LONG[64],
        _LONG[65],
        "",
        _Str("ok-id"),
        7,
        None,
    ],
    "event_type": ["llm_call", "task_feedback", "LLM_CALL", "", None, 1, _Str("llm_call")],
    "schema_version": [1, 2, 0, True, "1", 1.0, None, _Int(1)],
    "occurred_at": _TIMES,
    "agent_id": _STRINGS,
    "task_id": _STRINGS,
    "role": _STRINGS,
    "provider": _STRINGS,
    "model": _STRINGS,
    "policy_version": _STRINGS,
    "task_type": _STRINGS,
    "escalation_trigger": [*_STRINGS, "security_sensitive", None, None],
    "input_tokens": _COUNTS,
    "output_tokens": _COUNTS,
    "cache_read_tokens": _COUNTS,
    "cache_write_5m_tokens": _COUNTS,
    "cache_write_1h_tokens": _COUNTS,
    "latency_ms": [None, 0, 1834, 86_400_000, 86_400_001, -1, True, 1.5, "9"],
    "status": ["ok", "error", "OK", "", None, 1, _Str("ok")],
    "escalated": [True, False, False, None, 1, 0, "true"],
    "satisfaction": [None, 1, 3, 5, 0, 6, True, 3.0, "4"],
    "escalation_needed": [None, True, False, 1, "yes"],
    "review_consistent": [None, True, False, 0, "no"],
}


def _complete(model: type[BaseModel], base: dict) -> dict:
    """Every field of ``model`` (the SDK always passes them all), from ``base`` or defaults."""
    return {name: base.get(name, field.default) for name, field in model.model_fields.items()}


def _outcome(validate, data: dict) -> tuple:
    """What a validator makes of ``data``: the error line, or everything the model holds."""
    try:
        event = validate(data)
    except ValidationError as exc:  # the clock's reading differs between two validations
        return ("rejected", re.sub(r"\(now [^)]*\)", "(now)", str(contract_error(exc))))
    return (
        "accepted",
        type(event),
        event.__dict__,
        {k: type(v) for k, v in event.__dict__.items()},
        event.model_fields_set,
        event.__pydantic_extra__,
        event.__pydantic_private__,
        orjson.dumps(event.__dict__),
    )


@pytest.mark.parametrize(("model", "base"), [(LlmCall, LLM_MAX), (TaskFeedback, FEEDBACK_MAX)])
def test_fast_validator_gives_pydantics_verdict_on_thousands_of_mutated_events(model, base):
    """fast_validator(model) accepts exactly what model validation accepts, with an equal
    model (same values and types, fields set, extra, private) and the same orjson bytes the
    SDK sends, and refuses exactly what it refuses, with the same one-line reason: 1 to 3
    fields of a valid event replaced by edge values (wrong types, subclasses, bounds, empty
    and too-long strings, non-ASCII and lone surrogates, naive/early/future timestamps,
    escalated/trigger combinations)."""
    fast = fast_validator(model)
    assert fast.fast
    reference = model.__pydantic_validator__.validate_python
    valid = _complete(model, {**base, "occurred_at": _NOW - dt.timedelta(minutes=1)})
    rng = random.Random(20261126)
    accepted = rejected = 0
    for _ in range(3000):
        data = dict(valid)
        for name in rng.sample(list(data), rng.randint(1, 3)):
            data[name] = rng.choice(_POOLS[name])
        expected = _outcome(reference, data)
        assert _outcome(lambda d: fast(**d), data) == expected, data
        assert _outcome(lambda d: fast(*d.values()), data) == expected, data
        accepted += expected[0] == "accepted"
        rejected += expected[0] == "rejected"
    assert accepted > 300 and rejected > 300  # both verdicts well exercised


@pytest.mark.parametrize(
    ("model", "base"),
    [
        (LlmCall, LLM_MAX),
        (LlmCall, LLM_MIN),
        (TaskFeedback, FEEDBACK_MIN),
        (TaskFeedback, FEEDBACK_MAX),
    ],
)
def test_fast_validator_takes_no_pydantic_model_validation_for_valid_events(
    model, base, monkeypatch
):
    """A valid event (ASCII or not) is checked by the compiled path alone: pydantic's model
    validator, its fallback, is not called."""
    fast = fast_validator(model)

    def fallback(data, **_):
        raise AssertionError(f"fell back to pydantic for {data}")

    monkeypatch.setitem(fast.__globals__, "_validate_python", fallback)
    for changes in ({}, {"agent_id": "agent-ü", "role": "rôle"}):
        data = _complete(model, {**base, **changes, "occurred_at": _NOW})
        assert fast(**data) == model.model_validate(data)


def test_fast_validator_rejects_like_the_sdk_promises():
    """The one-line reasons callers see, from the compiled path's pydantic fallback."""
    data = _complete(LlmCall, {**LLM_MIN, "occurred_at": _NOW})
    fast = fast_validator(LlmCall)
    cases = [
        ({"input_tokens": "100"}, "input_tokens: must be an integer, got string"),
        ({"escalated": True}, "escalation_trigger: required when escalated is true"),
        (
            {"escalation_trigger": "x"},
            "escalation_trigger: must be null when escalated is false, got 'x'",
        ),
        ({"occurred_at": dt.datetime(2025, 1, 1)}, "occurred_at: must have a UTC offset"),
        (
            {"event_id": "a b", "role": ""},
            "event_id: may only contain A-Z a-z 0-9 . _ : - "
            "(1-64 characters), got 'a b' (+1 more: role)",
        ),
    ]
    for changes, reason in cases:
        with pytest.raises(ValidationError) as info:
            fast(**{**data, **changes})
        assert str(contract_error(info.value)).startswith(reason)


class _WithModelValidator(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError("low above high")
        return self


class _WithBeforeValidator(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)
    name: str = Field(min_length=1)

    @field_validator("name", mode="before")
    @classmethod
    def _strip(cls, value):
        return value.strip() if isinstance(value, str) else value


class _WithAlias(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str = Field(alias="Name")


@pytest.mark.parametrize(
    ("model", "good", "bad"),
    [
        (_WithModelValidator, {"low": 1, "high": 2}, {"low": 3, "high": 2}),
        (_WithBeforeValidator, {"name": " x "}, {"name": "  "}),
        (_WithAlias, {"Name": "x"}, {"Name": 1}),
    ],
)
def test_fast_validator_leaves_what_it_cannot_translate_to_pydantic(model, good, bad):
    """A model with a model validator, a before-validator or an alias is not compiled
    (``fast`` is False): the validator is pydantic's, with pydantic's verdicts."""
    fast = fast_validator(model)
    assert not fast.fast
    assert fast(*good.values()) == model.model_validate(good)
    with pytest.raises(ValidationError):
        fast(*bad.values())


# --- hostile strings ----------------------------------------------------------------------

IDENTIFIERS = (
    "agent_id",
    "task_id",
    "role",
    "provider",
    "model",
    "escalation_trigger",
    "policy_version",
    "task_type",
)


@pytest.mark.parametrize("field", IDENTIFIERS)
@pytest.mark.parametrize(
    "char",
    [
        "\x1b",
        "\x07",
        "\x00",
        "\x7f",
        "\r",
        "\x85",
        "\u202e",
        "\u2067",
        "\u200b",
        "\ufeff",
        "\u2028",
        "\u00a0",
        "\U000e0001",
    ],
)
def test_identifiers_must_be_printable(field, char):
    changes = {field: f"ab{char}c"}
    if field == "escalation_trigger":
        changes["escalated"] = True
    error = reject(event(LLM_MAX, **changes))
    assert error.field == field
    assert str(error).startswith(f"{field}: must be printable")
    assert str(error).isprintable(), "the reason shows the character as an escape"


@pytest.mark.parametrize(
    "value",
    [
        "架构师",
        "Architekt für Sicherheit",
        "🚀 launch",
        "[/]",
        "<img src=x onerror=alert(1)>",
        "a|b",
        "back\\slash",
    ],
)
def test_printable_identifiers_of_any_script_and_markup_are_valid(value):
    got = parse_event(event(LLM_MAX, role=value, model=value, escalation_trigger=value), now=NOW)
    assert (got.role, got.model, got.escalation_trigger) == (value, value, value)
    check = fast_validator(LlmCall)
    assert check.fast, "the printable check keeps the SDK's compiled validator"


@pytest.mark.parametrize(
    "body",
    [
        b'{"event_type":"llm_call","event_type":"task_feedback"}',
        b'{"role":"a","role":"a"}',
        b'{"role":"a","rol\\u0065":"b"}',
        b'{"x":{"y":1,"y":2}}',
    ],
)
def test_a_duplicate_key_is_a_contract_error_with_one_reason(body):
    error = reject(body)
    assert "duplicate key (a JSON object may name a field once)" in str(error)


def test_a_duplicate_key_never_switches_the_event_type():
    body = event(LLM_MAX)[:-1] + b', "event_type": "task_feedback"}'
    assert str(reject(body)) == "event_type: duplicate key (a JSON object may name a field once)"


def test_an_unknown_field_name_is_shown_escaped():
    error = reject(event(LLM_MIN)[:-1] + b', "\\u001b[2J\\u202e": 1}')
    assert str(error).startswith("\\x1b[2J\\u202e: unknown field")
