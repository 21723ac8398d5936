"""The report as JSON for machines; the shape is documented in docs/report.md.

Money and ratios are strings holding the exact decimal from the warehouse
(``"123.456789012345"``), never floats; dates are ``YYYY-MM-DD``; timestamps are RFC 3339 UTC;
absent values are ``null``. ``schema_version`` changes only when a field is removed or
changes meaning (added fields keep the version). The file is ASCII (``ensure_ascii``): a
control, bidi or zero-width character in a role or model is a ``\\u`` escape in the file and
the exact value again once decoded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from typing import Any

from pipeline.report.figures import DailyReport

__all__ = ["render_json", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Plain JSON values for a report object (exact decimal strings for money and ratios)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def render_json(report: DailyReport) -> str:
    """The report as an indented JSON document (``schema_version`` first)."""
    body = to_jsonable(report)
    ordered = {"schema_version": body.pop("schema_version"), **body}
    ordered["warnings"]["count"] = report.warnings.count
    return json.dumps(ordered, indent=2, ensure_ascii=True) + "\n"
