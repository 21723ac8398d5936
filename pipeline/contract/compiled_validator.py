"""The SDK's compiled contract check: :func:`fast_validator`, generated from a model.

The SDK checks events built from Python arguments with it (pydantic's verdicts and errors,
a fraction of the cost per event)::

    check = fast_validator(LlmCall)
    event = check(event_id, "llm_call", 1, occurred_at, ...)   # every field, in field order
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic_core import SchemaValidator, core_schema

__all__ = ["fast_validator"]


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


def _split_field(schema: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """(the field's schema without its validators, those validators innermost first): a
    field's validators are plain or after validators with info, one around the other."""
    if schema["type"] == "default":  # every field is given: the default never applies
        return _split_field(schema["schema"])
    functions = []
    while schema["type"] in ("function-plain", "function-after"):
        function = schema["function"]
        if function["type"] != "with-info":
            raise _NotTranslated(schema["type"])
        functions.append(function["function"])
        schema = schema["schema"] if schema["type"] == "function-after" else {"type": "any"}
    if _has_function(schema):
        raise _NotTranslated(schema["type"])
    return schema, functions[::-1]


def fast_validator(model: type[BaseModel]) -> Callable[..., Any]:
    """``validate(*fields) -> model``: validate one event given every field of ``model`` (in
    the model's field order, or by name) with the verdicts of ``model.model_validate`` at
    a fraction of its cost, which the SDK pays per event.

    Derived from the model's pydantic-core schema, the models staying the only statement of
    the contract: every field's own schema (types, bounds, lengths, patterns, literals, in
    the model's strict config) is checked by pydantic-core in ONE call on the tuple of
    values, without pydantic's per-model machinery; then the fields' validators (the rules
    of :mod:`pipeline.contract.rules`, field validators) run in field order, called as
    pydantic calls them (``info.data`` = the fields before); then
    the model instance is made as ``model_construct`` makes it. Whatever that path does not
    accept is validated by pydantic itself, which raises its ``ValidationError`` (or
    returns the model). A model whose schema holds anything else (model validators,
    aliases, nested validators, ...) gets pydantic's validator (``validate.fast`` False).
    """
    schema = model.__pydantic_core_schema__
    fields = list(model.model_fields)
    namespace: dict[str, Any] = {
        "_model": model,
        "_validate_python": model.__pydantic_validator__.validate_python,
        "_new": object.__new__,
        "_set": object.__setattr__,
        "_fields_set": set(fields),
    }
    names = ", ".join(fields)
    # the values pydantic-core returns, apart from the arguments (the fallback gets those)
    valid = {name: f"_v{i}" for i, name in enumerate(fields)}
    as_dict = "{" + ", ".join(f"{name!r}: {name}" for name in fields) + "}"
    try:
        config = schema.get("config") or {}
        if (
            schema["type"] != "model"
            or schema.get("custom_init")
            or schema.get("root_model")
            or schema.get("post_init")
            or model.__pydantic_post_init__
            or model.__private_attributes__
            or config.get("extra_fields_behavior") == "allow"
        ):
            raise _NotTranslated("model")
        inner = schema["schema"]
        if (
            inner["type"] != "model-fields"
            or inner.get("computed_fields")
            or set(inner) - {"type", "fields", "model_name", "computed_fields"}
            or list(inner["fields"]) != fields
        ):
            raise _NotTranslated("model-fields")
        leaves: list[Any] = []
        lines: list[str] = []
        plain: list[str] = []
        info = False
        for name, field in inner["fields"].items():
            if set(field) - {"type", "schema", "metadata"}:
                raise _NotTranslated(f"field {name}")
            leaf, functions = _split_field(field["schema"])
            leaves.append(leaf)
            if not functions:
                plain.append(name)
                continue
            # the fields so far, in order, then this one through its validators
            lines.append(
                f"_out = {{{', '.join(f'{n!r}: {valid[n]}' for n in plain)}}}"
                if not lines
                else "\n        ".join(f"_out[{n!r}] = {valid[n]}" for n in plain)
            )
            call = valid[name]
            for j, function in enumerate(functions):  # innermost first
                namespace[f"_f_{name}_{j}"] = function
                call = f"_f_{name}_{j}({call}, _info)"
            # one info per event, its field_name set for each validated field in turn
            lines.append(
                f"_info = _Info(_out, {name!r})" if not info else f"_info.field_name = {name!r}"
            )
            lines.append(f"_out[{name!r}] = {call}")
            plain, info = [], True
        if not lines:
            lines.append(f"_out = {{{', '.join(f'{n!r}: {valid[n]}' for n in plain)}}}")
        elif plain:
            lines.append("\n        ".join(f"_out[{n!r}] = {valid[n]}" for n in plain))
        namespace["_leaves"] = SchemaValidator(
            core_schema.tuple_schema(leaves),
            config,  # type: ignore[arg-type]
        ).validate_python
        namespace["_Info"] = type("_Info", (_Info,), {"__slots__": (), "config": config})
        body = f"{', '.join(valid.values())}, = _leaves(({names},))\n        " + "\n        ".join(
            lines
        )
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
