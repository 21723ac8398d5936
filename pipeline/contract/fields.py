"""The event models' fields as data: what every form derived from the models reads.

:data:`EVENT_FIELDS` holds, per event type, one :class:`FieldSpec` per field of the event's
model in the model's field order (the lake's column order): the non-null type, whether null
is valid, whether the field must be present, its default, its ``Literal`` values, length
and numeric bounds, pattern, decimal digits, and the rules of
:mod:`pipeline.contract.rules`. Read by the consumer's fast path
(:mod:`pipeline.consumer.validate`: msgspec structs and Arrow column checks), the lake's
Arrow schemas (:mod:`pipeline.lake`) and the contract's error messages; the SDK's compiled
check (:func:`pipeline.contract.fast_validator`) and the JSON Schema are derived by pydantic
itself.

Derived at import from pydantic's public description of a model: ``model_config``,
``model_fields`` (``FieldInfo.annotation``, ``.metadata``, ``.is_required()``,
``.default``, ``.validate_default``), ``typing.get_args`` for ``Literal``, ``Optional`` and
``Annotated``, the ``annotated_types`` constraints pydantic puts in the metadata, and the
model's core schema (``__pydantic_core_schema__``) to see every Python function its
validation calls. Anything a derived form could not honour raises
:class:`ContractDerivationError` at import - a constraint, a type or a validator that the
fast path does not know would make it accept what the models refuse. To add one, teach
:func:`event_fields` (and the forms that read the new attribute) first.
"""

from __future__ import annotations

import datetime as dt
import types
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.contract.models import EVENT_MODELS
from pipeline.contract.rules import LakeType, PresentIff, Printable, Rfc3339, Rule

__all__ = [
    "FieldSpec",
    "ContractDerivationError",
    "event_fields",
    "EVENT_FIELDS",
    "IDENTIFIER_FIELDS",
]

_TYPES = (str, int, bool, dt.datetime, Decimal)
# pydantic's own field metadata besides annotated_types (its attribute names)
_GENERAL = frozenset({"pattern", "max_digits", "decimal_places"})


class ContractDerivationError(TypeError):
    """An event model states something the forms derived from it cannot honour."""


class FieldSpec(NamedTuple):
    """One field of an event model, as the derived forms read it (a named tuple: lighter at
    import than a dataclass)."""

    name: str
    type: type  # str, int, bool, datetime.datetime or decimal.Decimal: the non-null values
    nullable: bool  # null is a valid value
    required: bool  # must be present (no default)
    default: Any = None  # the value when absent (not required)
    values: tuple[Any, ...] = ()  # a Literal's values: the only valid ones
    min_length: int | None = None  # code points
    max_length: int | None = None
    ge: int | Decimal | None = None  # inclusive bounds
    le: int | Decimal | None = None
    pattern: str | None = None  # as pydantic applies it: a search (anchor it)
    max_digits: int | None = None  # Decimal: precision and scale
    decimal_places: int | None = None
    printable: bool = False  # rules.Printable
    timestamp: Rfc3339 | None = None  # rules.Rfc3339: the whole validator of a datetime
    present_iff: str | None = None  # rules.PresentIff: the boolean field it depends on
    lake_type: str | None = None  # rules.LakeType: the lake column's Arrow type name


def _fail(model: type[BaseModel], name: str | None, problem: str) -> ContractDerivationError:
    where = f"{model.__name__}.{name}" if name else model.__name__
    return ContractDerivationError(f"{where}: {problem} (see pipeline/contract/fields.py)")


def _unwrap(model: type[BaseModel], name: str, info: FieldInfo) -> tuple[Any, bool, list[Any]]:
    """(the non-null type, nullable, every metadata item) of a field: ``FieldInfo.metadata``
    plus what an ``Optional[Annotated[...]]`` holds inside."""
    annotation, metadata, nullable = info.annotation, list(info.metadata), False
    if get_origin(annotation) in (Union, types.UnionType):
        arms = get_args(annotation)
        kept = [arm for arm in arms if arm is not type(None)]
        if len(kept) != 1:
            raise _fail(model, name, f"a union other than X | None: {annotation}")
        annotation, nullable = kept[0], len(kept) < len(arms)
    while get_origin(annotation) is Annotated:
        annotation, *extras = get_args(annotation)
        for extra in extras:
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return annotation, nullable, metadata


def _spec(model: type[BaseModel], name: str, info: FieldInfo) -> FieldSpec:
    annotation, nullable, metadata = _unwrap(model, name, info)
    values: tuple[Any, ...] = ()
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        annotation = type(values[0])
        if annotation is not str or any(type(v) is not str for v in values):
            raise _fail(model, name, f"a Literal of other than strings: {values}")
    if annotation not in _TYPES:
        raise _fail(
            model,
            name,
            f"type {annotation} (the derived forms know {[t.__name__ for t in _TYPES]})",
        )
    found: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if key in found and found[key] != value:
            raise _fail(model, name, f"{key} stated twice ({found[key]!r}, {value!r})")
        found[key] = value

    for item in metadata:
        if isinstance(item, at.MinLen):
            put("min_length", item.min_length)
        elif isinstance(item, at.MaxLen):
            put("max_length", item.max_length)
        elif isinstance(item, at.Ge):
            put("ge", item.ge)
        elif isinstance(item, at.Le):
            put("le", item.le)
        elif isinstance(item, at.Gt) and annotation is int:
            put("ge", item.gt + 1)  # type: ignore[operator]
        elif isinstance(item, at.Lt) and annotation is int:
            put("le", item.lt - 1)  # type: ignore[operator]
        elif isinstance(item, Printable):
            put("printable", True)
        elif isinstance(item, Rfc3339):
            put("timestamp", item)
        elif isinstance(item, PresentIff):
            put("present_iff", item.flag)
        elif isinstance(item, LakeType):
            put("lake_type", item.arrow)
        elif (
            not isinstance(item, Rule)
            and hasattr(item, "__dict__")
            and vars(item)
            and set(vars(item)) <= _GENERAL
        ):  # pydantic's pattern / max_digits / decimal_places
            for key, value in vars(item).items():
                put(key, value)
        else:
            raise _fail(model, name, f"{item!r} is not understood by the derived forms")
    kind = annotation
    misplaced = [
        key
        for key, types_ in (
            ("min_length", (str,)),
            ("max_length", (str,)),
            ("pattern", (str,)),
            ("printable", (str,)),
            ("ge", (int, Decimal)),
            ("le", (int, Decimal)),
            ("max_digits", (Decimal,)),
            ("decimal_places", (Decimal,)),
            ("timestamp", (dt.datetime,)),
        )
        if key in found and (kind not in types_ or (kind is str and values))
    ]
    if misplaced:
        raise _fail(
            model,
            name,
            f"{', '.join(misplaced)} on a {kind.__name__}" + (" Literal" if values else ""),
        )
    if kind is dt.datetime and "timestamp" not in found:
        raise _fail(model, name, "a datetime without rules.Rfc3339 (its format and bounds)")
    if kind is int and ("ge" not in found or "le" not in found):
        raise _fail(
            model, name, "an int without both bounds (ge and le): no lake column holds any int"
        )
    if kind is Decimal and ("max_digits" not in found or "decimal_places" not in found):
        raise _fail(
            model, name, "a Decimal without max_digits and decimal_places (its lake column)"
        )
    pattern = found.get("pattern")
    if pattern is not None and any(c in pattern for c in ("\\D", "\\W", "\\S", "\\B", "\\P", "(?")):
        # the consumer checks a pattern with Arrow (RE2), whose negated classes are wider
        # than pydantic's regex engine's (ASCII \d against Unicode \d, ...)
        raise _fail(model, name, f"pattern {pattern!r}: write character classes out")
    if info.alias is not None or info.validation_alias is not None or info.exclude:
        raise _fail(
            model,
            name,
            "an alias or exclude (the fast path reads and writes the field by its name)",
        )
    required = info.is_required()
    return FieldSpec(
        name=name,
        type=kind,
        nullable=nullable,
        required=required,
        default=None if required else info.get_default(call_default_factory=True),
        values=values,
        **found,
    )


def _functions(schema: Any) -> list[Any]:
    """Every Python function a core schema calls, to validate or to serialise (a serialiser
    would make pydantic's lake rows differ from the fast path's)."""
    if isinstance(schema, dict):
        found = []
        kind = schema.get("type")
        if isinstance(kind, str) and kind.startswith("function-"):
            function = schema["function"]
            found.append(function["function"] if isinstance(function, dict) else function)
        for key, value in schema.items():
            if key not in ("function", "metadata"):
                found += _functions(value)
        return found
    if isinstance(schema, list | tuple):
        return [f for item in schema for f in _functions(item)]
    return []


def event_fields(model: type[BaseModel]) -> tuple[FieldSpec, ...]:
    """The fields of ``model`` as :class:`FieldSpec`, in field order; raises
    :class:`ContractDerivationError` for anything a derived form could not honour."""
    config = model.model_config
    if config.get("strict") is not True or config.get("extra") != "forbid":
        raise _fail(model, None, "not strict=True, extra='forbid' (the fast path is both)")
    if model.model_computed_fields:
        raise _fail(model, None, "computed fields (a lake row is the fields)")
    for function in _functions(model.__pydantic_core_schema__):
        if not isinstance(getattr(function, "__self__", None), Rule):
            raise _fail(
                model,
                None,
                f"validator {getattr(function, '__qualname__', function)!r}"
                " is not a rule of pipeline.contract.rules (the derived forms"
                " would not know it)",
            )
    specs = tuple(_spec(model, name, info) for name, info in model.model_fields.items())
    seen: dict[str, FieldSpec] = {}
    for spec in specs:
        if spec.present_iff is not None:
            flag = seen.get(spec.present_iff)
            if flag is None or flag.type is not bool or flag.nullable:
                raise _fail(
                    model,
                    spec.name,
                    f"PresentIff({spec.present_iff!r}) needs a non-null "
                    "bool field declared before it",
                )
            if not spec.nullable or not model.model_fields[spec.name].validate_default:
                raise _fail(
                    model, spec.name, "PresentIff needs a nullable field with validate_default=True"
                )
        seen[spec.name] = spec
    return specs


EVENT_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    event_type: event_fields(model) for event_type, model in EVENT_MODELS.items()
}
# the printable identifiers, in the order of the models' fields
IDENTIFIER_FIELDS = tuple(
    dict.fromkeys(spec.name for specs in EVENT_FIELDS.values() for spec in specs if spec.printable)
)
