"""Rules a field of the event models states in its metadata: pydantic runs them, the derived
forms read them.

Each rule is a marker in a field's ``Annotated[...]``: it gives pydantic the field's
validator, and :mod:`pipeline.contract.fields` finds the same marker in
``FieldInfo.metadata`` for the forms derived from the models (the consumer's fast path, the
lake's Arrow schema, the SDK's compiled check, the JSON Schema)::

    agent_id: Annotated[str, Field(min_length=1, max_length=128), PRINTABLE]
    occurred_at: Annotated[dt.datetime, Rfc3339(earliest=..., max_future=...)]
    escalation_trigger: Annotated[Text64 | None, PRINTABLE, PresentIff("escalated")] = Field(
        None, validate_default=True)
    satisfaction: Annotated[Annotated[int, Field(ge=1, le=5)] | None, LakeType("int32")] = None

Every validator here is called as pydantic calls a validator with info (``value, info``);
the errors are pydantic custom errors whose message is the reason callers see
(:func:`pipeline.contract.contract_error`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

__all__ = [
    "Rule",
    "Printable",
    "PRINTABLE",
    "Rfc3339",
    "PresentIff",
    "LakeType",
    "json_schema_rules",
    "iso_utc",
    "short_repr",
    "json_type_name",
    "duration_text",
]

# RFC 3339 section 5.6 date-time; pydantic alone would also take "_" as separator, a missing
# seconds field and other ISO 8601 forms that agents in other languages may not produce.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_UTC = dt.UTC
_datetime = dt.datetime
_fromisoformat = dt.datetime.fromisoformat
_now = dt.datetime.now


def iso_utc(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type_name(value: Any) -> str:
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


def duration_text(value: dt.timedelta) -> str:
    """``10 minutes``, ``90 seconds``: a bound as the error messages spell it."""
    seconds = value // dt.timedelta(seconds=1)
    if seconds % 60 == 0:
        return f"{seconds // 60} minute" + ("s" if seconds != 60 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


class _Marker:
    """An immutable value: equal, hashed and shown by its slots (lighter at import than a
    dataclass, which compiles its methods when the class is made)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *values: Any) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values() == self._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({args})"


class Rule(_Marker):
    """A rule of :mod:`pipeline.contract.rules`: its ``validate`` is the only Python code
    the event models' validation may call (:mod:`pipeline.contract.fields` checks it)."""

    __slots__ = ()

    def validate(self, value: Any, info: ValidationInfo) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Printable(Rule):
    """An identifier (grouped on and printed): printable as Python's ``str.isprintable``
    says - letters, digits, punctuation, symbols and the ASCII space of any script; no
    control, format (bidi, zero-width), separator, private-use or unassigned character,
    which would make two report rows look the same, text read backwards or a terminal obey.
    None (a nullable field's null) passes."""

    def validate(self, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.isprintable():
            raise PydanticCustomError(
                "printable",
                "must be printable (no control, format, bidi, zero-width or "
                "separator characters other than space), got {value}",
                {"value": short_repr(value)},
            )
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.with_info_after_validator_function(self.validate, handler(source))


PRINTABLE = Printable()


class Rfc3339(Rule):
    """A timestamp: an RFC 3339 string with an offset (JSON) or an aware datetime (Python),
    stored in UTC, not before ``earliest``, at most ``max_future`` after the validating
    clock (the context's ``now``, else the system clock). The whole validator of its field
    (one plain function instead of pydantic's datetime parser plus hooks: the same verdicts
    for less, which the SDK and the consumer pay per event); serialised as
    pydantic serialises datetimes."""

    __slots__ = ("earliest", "max_future")
    earliest: dt.datetime
    max_future: dt.timedelta

    def __init__(self, earliest: dt.datetime, max_future: dt.timedelta) -> None:
        super().__init__(earliest, max_future)

    def validate(self, value: Any, info: ValidationInfo) -> dt.datetime:
        if isinstance(value, dt.datetime):
            if value.utcoffset() is None:  # naive, or a tzinfo without an offset
                raise PydanticCustomError(
                    "timezone_aware",
                    "must have a UTC offset (RFC 3339, e.g. ...Z or +02:00), got {value}",
                    {"value": short_repr(value, 60)},
                )
        elif isinstance(value, str):
            if not _RFC3339.fullmatch(value):
                raise PydanticCustomError(
                    "rfc3339",
                    "must be an RFC 3339 timestamp with offset (e.g. 2025-01-31T12:00:00Z), got {value}",
                    {"value": short_repr(value)},
                )
            try:
                value = _fromisoformat(
                    value if value[10] == "T" and value[-1] != "z" else value.upper()
                )
            except ValueError as exc:  # e.g. month 13, February 30, second 60
                raise PydanticCustomError(
                    "rfc3339",
                    "must be an RFC 3339 timestamp with offset, got {value} ({reason})",
                    {"value": short_repr(value), "reason": str(exc)[:80]},
                ) from None
        else:
            raise PydanticCustomError(
                "rfc3339",
                "must be an RFC 3339 timestamp string, got {value}",
                {"value": json_type_name(value)},
            )
        try:
            value = value.astimezone(_UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise self._too_early(value.isoformat()) from None
        if (
            value.__class__ is not _datetime
        ):  # a subclass (pandas.Timestamp): JSON writers want the base
            value = _datetime(
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
                tzinfo=_UTC,
            )
        if value < self.earliest:
            raise self._too_early(iso_utc(value))
        context = info.context
        now = context.get("now") if context else None
        if now is None:
            now = _now(_UTC)
        if value > now + self.max_future:
            raise PydanticCustomError(
                "too_late",
                f"more than {duration_text(self.max_future)} in the future, got {{value}} (now {{now}})",
                {"value": iso_utc(value), "now": iso_utc(now)},
            )
        return value

    def _too_early(self, value: str) -> PydanticCustomError:
        return PydanticCustomError(
            "too_early", f"before {iso_utc(self.earliest)}, got {{value}}", {"value": value}
        )

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.with_info_plain_validator_function(
            self.validate, serialization=core_schema.simple_ser_schema("datetime")
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "date-time"}


class PresentIff(Rule):
    """A nullable field that is required when the boolean field ``flag`` (declared before
    it) is true and must be null when it is false; when ``flag`` itself is invalid, only
    that is reported. The field needs ``validate_default=True`` so that the rule also holds
    when it is absent (:mod:`pipeline.contract.fields` checks both). The JSON Schema states
    it as an ``if``/``then``/``else`` of the model (:func:`json_schema_rules`)."""

    __slots__ = ("flag",)
    flag: str

    def __init__(self, flag: str) -> None:
        super().__init__(flag)

    def validate(self, value: Any, info: ValidationInfo) -> Any:
        flag = info.data.get(self.flag)
        if flag is None:  # the flag was invalid and is reported on its own
            return value
        if flag and value is None:
            raise PydanticCustomError("present_required", f"required when {self.flag} is true")
        if not flag and value is not None:
            raise PydanticCustomError(
                "present_forbidden",
                f"must be null when {self.flag} is false, got {{value}}",
                {"value": short_repr(value)},
            )
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.with_info_after_validator_function(self.validate, handler(source))


class LakeType(_Marker):
    """The lake column's Arrow type (a ``pyarrow.type_for_alias`` name such as ``"int32"``)
    when it is not the default for the field's Python type (:func:`pipeline.lake.arrow_type`).
    Not a validation rule: pydantic ignores it."""

    __slots__ = ("arrow",)
    arrow: str

    def __init__(self, arrow: str) -> None:
        super().__init__(arrow)


def json_schema_rules(schema: dict[str, Any], model: type) -> None:
    """``json_schema_extra`` of the event models: each :class:`PresentIff` field as an
    ``if``/``then``/``else`` of ``allOf``, for JSON Schema validators in other languages."""
    rules = []
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        for rule in info.metadata:
            if isinstance(rule, PresentIff):
                present = [
                    arm
                    for arm in schema["properties"][name].get("anyOf", ())
                    if arm.get("type") != "null"
                ]
                rules.append(
                    {
                        "if": {"properties": {rule.flag: {"const": True}}, "required": [rule.flag]},
                        "then": {
                            "properties": {name: {"type": present[0]["type"]}},
                            "required": [name],
                        },
                        "else": {"properties": {name: {"type": "null"}}},
                    }
                )
    if rules:
        schema["allOf"] = rules
