"""Every form of the contract agrees with the pydantic models, at every bound of every field.

The models (pipeline/contract/models.py) are the truth. Derived from them: the field table
(``pipeline.contract.EVENT_FIELDS``), the consumer's fast path (msgspec structs and Arrow
column checks, pipeline/consumer/validate.py), the lake's Arrow schemas (pipeline/lake.py),
the SDK's compiled check (``fast_validator``) and the JSON Schema. For every field of every
event type, values on each bound and just past it (lengths in code points, integer ranges,
enumerations, booleans, nulls, absence, printable identifiers, patterns, timestamp bounds,
a field present exactly when its flag is true, a key named twice) get the same verdict from
each form as from pydantic, and what pydantic accepts the fast forms take themselves; the
Arrow type of each column holds every value its field allows; the JSON Schema states the
same bounds. The derivation refuses what a derived form could not honour.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from pipeline._exceptions import ContractError
from pipeline.consumer import validate as fast_path
from pipeline.consumer.validate import one_line, validate_batch
from pipeline.contract import (
    EVENT_FIELDS,
    EVENT_MODELS,
    EVENT_TYPES,
    IDENTIFIER_FIELDS,
    SCHEMA_VERSION,
    ContractDerivationError,
    FieldSpec,
    contract_error,
    event_fields,
    export_json_schema,
    fast_validator,
    parse_event,
    to_row,
)
from pipeline.contract.rules import PRINTABLE, LakeType, PresentIff, Rfc3339
from pipeline.lake import EVENT_TABLES, SCHEMAS, arrow_type
from tests.fixtures.events import DROP, NOW, enc, feedback, llm_call

BASES = {"llm_call": llm_call, "task_feedback": feedback}
CASES = [(event_type, spec) for event_type, specs in EVENT_FIELDS.items() for spec in specs]
IDS = [f"{event_type}.{spec.name}" for event_type, spec in CASES]


def value_cases(spec: FieldSpec, now: dt.datetime) -> list[Any]:
    """Values of ``spec``'s field on each of its bounds and just past them, wrong types,
    null and (DROP) absence; JSON values, or datetimes for a timestamp."""
    cases: list[Any] = []
    if spec.timestamp is not None:
        earliest, future = spec.timestamp.earliest, spec.timestamp.max_future
        us = dt.timedelta(microseconds=1)
        cases += [
            earliest,
            earliest - us,
            now + future,
            now + future + us,
            earliest.astimezone(dt.timezone(dt.timedelta(hours=1))),
        ]
    elif spec.values:
        for value in spec.values:
            cases += [value, value + "x", value.upper(), value[:-1]]
        cases += ["", 1]
    elif spec.type is bool:
        cases += [True, False, 0, 1, "true"]
    elif spec.type is int:
        cases += [spec.ge, spec.le, spec.ge - 1, spec.le + 1, float(spec.ge), str(spec.le), True]
    elif spec.type is str:
        low, high = spec.min_length or 0, spec.max_length or 1000
        for char in ("x", "\u00e9", "\U0001f680"):  # 1, 2 and 4 bytes of UTF-8: code points count
            cases += [char * high, char * (high + 1)]
        cases += ["x" * low, "x" * max(low - 1, 0), 1]
        if spec.printable:
            cases += ["x y", "\u67b6\u6784 x", "x\u200by", "x\x1by", "x\u202ey", "x\xa0y"]
        if spec.pattern:
            cases += ["x y", "x/y", "x\n"]
    cases += [None, DROP]
    return cases


def event_with(event_type: str, spec: FieldSpec, value: Any, now: dt.datetime) -> dict[str, Any]:
    """The fixture event of ``event_type`` with ``spec``'s field set to ``value``, its other
    timestamps an hour before ``now``, and its flag set to true when the field must then be
    present (so that the field's own bounds are what is tested)."""
    event = BASES[event_type]()
    for other in EVENT_FIELDS[event_type]:
        if other.timestamp is not None:
            event[other.name] = now - dt.timedelta(hours=1)
    if spec.present_iff is not None:
        event[spec.present_iff] = value is not None and value is not DROP
    event[spec.name] = value
    return {k: v for k, v in event.items() if v is not DROP}


def as_json(event: dict[str, Any]) -> bytes:
    """The event as the SDK would send it (timestamps in RFC 3339, UTC as Z)."""
    return enc(
        {
            k: (v.isoformat().replace("+00:00", "Z") if isinstance(v, dt.datetime) else v)
            for k, v in event.items()
        }
    )


def cross_field_cases(event_type: str) -> list[bytes]:
    """A field present exactly when its flag is true: each combination."""
    out = []
    for spec in EVENT_FIELDS[event_type]:
        if spec.present_iff is not None:
            for flag, value in (
                (True, None),
                (True, DROP),
                (False, "x"),
                (True, "x"),
                (False, None),
            ):
                event = BASES[event_type]()
                event[spec.present_iff], event[spec.name] = flag, value
                out.append(enc({k: v for k, v in event.items() if v is not DROP}))
    return out


def duplicate_key_cases(event_type: str) -> list[bytes]:
    """Every field of the event named twice, with the same value and with another."""
    event = BASES[event_type]()
    body = enc(event)
    out = []
    for name, value in event.items():
        out.append(body[:-1] + b"," + enc({name: value})[1:])
        out.append(enc({name: value})[:-1] + b"," + body[1:])
    return out


def reference(raw: bytes | None, now: dt.datetime):
    """pydantic's verdict, as the consumer records it."""
    try:
        return "ok", to_row(parse_event(raw, now=now))
    except ContractError as exc:
        return "bad", str(exc)
    except Exception as exc:
        return "bad", one_line(f"value: {type(exc).__name__}: {exc}")


def consumer_verdict(raw: bytes, now: dt.datetime):
    """(verdict, taken by the fast path) of the consumer's batch validation for one message."""
    result = validate_batch(
        [raw], partitions=[0], offsets=[7], keys=[None], topic="t", ingested_at=now, now=now
    )
    if result.rejects:
        return ("bad", result.rejects[0].error), False
    [table] = result.tables.values()
    [row] = table.to_pylist()
    for source in ("kafka_topic", "kafka_partition", "kafka_offset", "ingested_at"):
        del row[source]
    return ("ok", row), result.fast == 1


# --- the consumer's fast path -------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "spec"), CASES, ids=IDS)
def test_the_fast_path_gives_pydantics_verdict_at_every_bound_and_takes_what_it_accepts(
    event_type, spec
):
    accepted = refused = 0
    for value in value_cases(spec, NOW):
        raw = as_json(event_with(event_type, spec, value, NOW))
        verdict, fast = consumer_verdict(raw, NOW)
        expected = reference(raw, NOW)
        assert verdict == expected, f"{spec.name}={value!r}"
        if expected[0] == "ok":
            accepted += 1
            # every field present, spelled as the SDK spells it: the fast path's own
            assert fast or value is DROP, f"{spec.name}={value!r} accepted by pydantic only"
        else:
            refused += 1
    assert accepted and refused, "each field has values on both sides of its bounds"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_duplicate_keys_and_cross_field_rules_get_pydantics_verdict(event_type):
    values = duplicate_key_cases(event_type) + cross_field_cases(event_type)
    for raw in values:
        verdict, fast = consumer_verdict(raw, NOW)
        expected = reference(raw, NOW)
        assert verdict == expected, raw
    dup = [consumer_verdict(raw, NOW)[0] for raw in duplicate_key_cases(event_type)]
    assert all(v[0] == "bad" and "duplicate key" in v[1] for v in dup)


def test_a_batch_of_every_bound_case_gets_the_verdicts_one_by_one():
    """The same cases in one mixed batch (column checks over rows of both types, and the
    shortcuts that skip a check when a whole column passes)."""
    values = [
        as_json(event_with(t, spec, v, NOW)) for t, spec in CASES for v in value_cases(spec, NOW)
    ]
    values += [raw for t in EVENT_TYPES for raw in duplicate_key_cases(t) + cross_field_cases(t)]
    result = validate_batch(
        values,
        partitions=[0] * len(values),
        offsets=list(range(len(values))),
        keys=[None] * len(values),
        topic="t",
        ingested_at=NOW,
        now=NOW,
    )
    got: dict[int, tuple] = {r.offset: ("bad", r.error) for r in result.rejects}
    for table in result.tables.values():
        for row in table.to_pylist():
            offset = row.pop("kafka_offset")
            for source in ("kafka_topic", "kafka_partition", "ingested_at"):
                del row[source]
            got[offset] = ("ok", row)
    assert [got[i] for i in range(len(values))] == [reference(raw, NOW) for raw in values]
    # and exactly the messages it takes one by one go the fast path
    assert result.fast == sum(consumer_verdict(raw, NOW)[1] for raw in values) > 50


def test_every_event_type_has_a_fast_path():
    """A field type msgspec cannot express sends its whole event type to pydantic (same
    verdicts, slower): none of today's contract does."""
    assert set(fast_path._STRUCTS) == set(EVENT_TYPES)
    decimal = FieldSpec(
        name="amount", type=Decimal, nullable=False, required=True, max_digits=12, decimal_places=6
    )
    assert fast_path._msgspec_type(decimal) is None


# --- the SDK's compiled check -------------------------------------------------------------


def _outcome(validate, data: dict) -> tuple:
    try:
        event = validate(data)
    except ValidationError as exc:  # the clock's reading differs between two validations
        return ("rejected", re.sub(r"\(now [^)]*\)", "(now)", str(contract_error(exc))))
    return ("accepted", event.__dict__, event.model_fields_set)


@pytest.mark.parametrize(("event_type", "spec"), CASES, ids=IDS)
def test_the_compiled_check_gives_pydantics_verdict_at_every_bound(event_type, spec, monkeypatch):
    model = EVENT_MODELS[event_type]
    fast = fast_validator(model)
    assert fast.fast
    now = dt.datetime.now(dt.UTC)
    values = value_cases(spec, now - dt.timedelta(seconds=30))  # the clock moves on: no exact
    if spec.timestamp is not None:  # future bound here
        values.append(now + spec.timestamp.max_future + dt.timedelta(minutes=1))
    accepted = 0
    for value in values:
        if value is DROP:
            continue  # the SDK passes every field
        event = event_with(event_type, spec, value, now)
        data = {name: event.get(name, field.default) for name, field in model.model_fields.items()}
        expected = _outcome(model.model_validate, data)
        assert _outcome(lambda d: fast(**d), data) == expected, f"{spec.name}={value!r}"
        if expected[0] == "accepted":
            accepted += 1
            with monkeypatch.context() as patch:  # taken without pydantic's model validation
                patch.setitem(fast.__globals__, "_validate_python", None)
                assert _outcome(lambda d: fast(**d), data) == expected
    assert accepted


# --- the lake's Arrow schemas -------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "spec"), CASES, ids=IDS)
def test_each_lake_column_holds_every_value_its_field_allows(event_type, spec):
    column = SCHEMAS[event_type].field(spec.name)
    assert column.type == arrow_type(spec) and column.nullable == spec.nullable
    if spec.type is int:
        assert pa.types.is_integer(column.type)
        assert pa.array([spec.ge, spec.le], column.type).to_pylist() == [spec.ge, spec.le]
        bits = column.type.bit_width - pa.types.is_signed_integer(column.type)
        assert spec.le < 2**bits and spec.ge >= (
            -(2**bits) if pa.types.is_signed_integer(column.type) else 0
        )
    elif spec.timestamp is not None:
        assert column.type == pa.timestamp("us", tz="UTC")
    elif spec.type is str:
        assert column.type == pa.string()
        if spec.max_length:
            longest = "\U0001f680" * spec.max_length
            assert pa.array([longest], column.type).to_pylist() == [longest]
    elif spec.type is bool:
        assert column.type == pa.bool_()


def test_lake_columns_are_the_model_fields_in_order_then_the_source_columns():
    for event_type, model in EVENT_MODELS.items():
        assert SCHEMAS[event_type].names == [
            *model.model_fields,
            "kafka_topic",
            "kafka_partition",
            "kafka_offset",
            "ingested_at",
        ]
    assert EVENT_TABLES == EVENT_TYPES  # lake_files names the tables without importing the models


def test_a_decimal_field_is_a_decimal_column_of_its_precision_and_scale():
    class Priced(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        amount: Annotated[Decimal, Field(max_digits=12, decimal_places=6, ge=0, le=Decimal("1e6"))]
        share: Annotated[int, Field(ge=0, le=100), LakeType("int8")]

    amount, share = event_fields(Priced)
    assert (amount.max_digits, amount.decimal_places) == (12, 6)
    assert arrow_type(amount) == pa.decimal128(12, 6)
    assert pa.array([Decimal("999999.999999")], arrow_type(amount)).to_pylist() == [
        Decimal("999999.999999")
    ]
    assert arrow_type(share) == pa.int8()


# --- the JSON Schema ----------------------------------------------------------------------

_JSON_TYPES = {str: "string", int: "integer", bool: "boolean", dt.datetime: "string"}


@pytest.mark.parametrize(("event_type", "spec"), CASES, ids=IDS)
def test_the_json_schema_states_the_same_bounds(event_type, spec):
    model = EVENT_MODELS[event_type]
    definition = export_json_schema()["$defs"][model.__name__]
    assert definition["additionalProperties"] is False
    assert (spec.name in definition["required"]) == spec.required
    prop = definition["properties"][spec.name]
    if not spec.required:
        assert prop["default"] == spec.default
    arms = prop.get("anyOf", [prop])
    assert ({"type": "null"} in arms) == spec.nullable
    [arm] = [a for a in arms if a != {"type": "null"}]
    assert arm["type"] == _JSON_TYPES[spec.type]
    assert (arm.get("minLength"), arm.get("maxLength")) == (spec.min_length, spec.max_length)
    assert (arm.get("minimum"), arm.get("maximum")) == (spec.ge, spec.le)
    assert arm.get("pattern") == spec.pattern
    if spec.values:
        assert arm.get("enum", [arm.get("const")]) == list(spec.values)
    if spec.ge is not None and spec.ge == spec.le:
        assert prop["const"] == spec.ge
    if spec.timestamp is not None:
        assert arm["format"] == "date-time"
        text = prop["description"]
        assert spec.timestamp.earliest.date().isoformat() in text
        assert f"{spec.timestamp.max_future // dt.timedelta(minutes=1)} minutes" in text
    rules = [r for r in definition.get("allOf", []) if spec.name in r["then"]["properties"]]
    if spec.present_iff is not None:
        assert rules == [
            {
                "if": {
                    "properties": {spec.present_iff: {"const": True}},
                    "required": [spec.present_iff],
                },
                "then": {"properties": {spec.name: {"type": arm["type"]}}, "required": [spec.name]},
                "else": {"properties": {spec.name: {"type": "null"}}},
            }
        ]
    else:
        assert not rules


def test_data_quality_expectations_state_the_models_bounds():
    """schemas/expectations/ re-checks landed rows against some bounds of the contract: each
    literal bound or value set it states on an event field is the model's."""
    directory = Path(__file__).resolve().parents[2] / "schemas" / "expectations"
    checked = 0
    for event_type, specs in EVENT_FIELDS.items():
        suite = json.loads((directory / f"{event_type}.json").read_text(encoding="utf-8"))
        by_name = {spec.name: spec for spec in specs}
        for expectation in suite["expectations"]:
            kwargs = expectation["kwargs"]
            spec = by_name.get(kwargs.get("column"))
            if spec is None:
                continue  # a derived column (prompt_tokens, null_columns, ...)
            if expectation["type"] == "expect_column_values_to_be_between":
                for key, bound in (("min_value", spec.ge), ("max_value", spec.le)):
                    if isinstance(kwargs.get(key), int):
                        assert kwargs[key] == bound, (event_type, spec.name, key)
                        checked += 1
            elif expectation["type"] == "expect_column_values_to_be_in_set" and spec.values:
                assert kwargs["value_set"] == list(spec.values), (event_type, spec.name)
                checked += 1
    assert checked >= 10


def test_the_field_table_is_the_models():
    """Every model field has its spec, in order; the derived constants follow the models."""
    for event_type, model in EVENT_MODELS.items():
        assert [s.name for s in EVENT_FIELDS[event_type]] == list(model.model_fields)
        assert (
            export_json_schema()["$defs"][model.__name__]["properties"]["event_type"]["const"]
            == event_type
        )
    assert IDENTIFIER_FIELDS == (
        "agent_id",
        "task_id",
        "role",
        "provider",
        "model",
        "escalation_trigger",
        "policy_version",
        "task_type",
    )
    assert SCHEMA_VERSION == 1 and EVENT_TYPES == ("llm_call", "task_feedback")


# --- what the derivation refuses ----------------------------------------------------------

_STRICT = ConfigDict(strict=True, extra="forbid")


class _NotStrict(BaseModel):
    x: Annotated[int, Field(ge=0, le=1)]


class _FieldValidator(BaseModel):
    model_config = _STRICT
    x: Annotated[int, Field(ge=0, le=10)]

    @field_validator("x")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("odd")
        return value


class _MultipleOf(BaseModel):
    model_config = _STRICT
    x: Annotated[int, Field(ge=0, le=10, multiple_of=2)]


class _Unbounded(BaseModel):
    model_config = _STRICT
    x: int


class _Float(BaseModel):
    model_config = _STRICT
    x: float


class _BareDatetime(BaseModel):
    model_config = _STRICT
    x: dt.datetime


class _PresentWithoutDefault(BaseModel):
    model_config = _STRICT
    flag: bool = False
    x: Annotated[str | None, PresentIff("flag")] = None


class _PresentBeforeFlag(BaseModel):
    model_config = _STRICT
    x: Annotated[str | None, PresentIff("flag")] = Field(None, validate_default=True)
    flag: bool = False


class _WideningPattern(BaseModel):
    model_config = _STRICT
    x: Annotated[str, Field(pattern=r"^\D+$")]


class _PrintableInt(BaseModel):
    model_config = _STRICT
    x: Annotated[Annotated[int, Field(ge=0, le=1)], PRINTABLE]


class _Alias(BaseModel):
    model_config = _STRICT
    x: Annotated[str, Field(max_length=3, alias="X")]


class _Serializer(BaseModel):
    model_config = _STRICT
    x: Annotated[str, Field(max_length=3)]

    @field_serializer("x")
    def _upper(self, value: str) -> str:
        return value.upper()


@pytest.mark.parametrize(
    "model",
    [
        _NotStrict,
        _FieldValidator,
        _MultipleOf,
        _Unbounded,
        _Float,
        _BareDatetime,
        _PresentWithoutDefault,
        _PresentBeforeFlag,
        _WideningPattern,
        _PrintableInt,
        _Alias,
        _Serializer,
    ],
    ids=lambda m: m.__name__,
)
def test_the_derivation_refuses_what_a_derived_form_could_not_honour(model):
    with pytest.raises(ContractDerivationError, match=model.__name__):
        event_fields(model)


def test_a_lake_type_too_narrow_for_the_bounds_is_refused():
    class Narrow(BaseModel):
        model_config = _STRICT
        x: Annotated[int, Field(ge=0, le=1000), LakeType("int8")]
        when: Annotated[dt.datetime, Rfc3339(NOW, dt.timedelta(0)), LakeType("string")]

    narrow, when = event_fields(Narrow)
    with pytest.raises(ContractDerivationError, match="does not fit int8"):
        arrow_type(narrow)
    with pytest.raises(ContractDerivationError, match="UTC timestamp"):
        arrow_type(when)
