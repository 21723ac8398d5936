"""Batch validation of raw Kafka values against the v1 event contract.

Two paths, one verdict:

* the **fast path** decodes each value with orjson, groups the objects by key shape, builds
  Arrow columns and checks every contract rule on whole columns (types by exact Python type,
  bounds, lengths and patterns with ``pyarrow.compute``). It only ever *accepts* a message
  that obviously satisfies the contract; anything unusual is flagged.
* every flagged message goes through :func:`pipeline.contract.parse_event` (pydantic, the
  source of truth): it either accepts it (the row comes from ``to_row``) or gives the exact
  one-line reason used in the dead-letter ``error`` header.

So the fast path may be stricter than pydantic but never looser;
``tests/unit/test_consumer_validate.py`` feeds the bad-input catalogue and random mutations
to both and asserts identical verdicts and identical rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contract import EVENT_ID_PATTERN, EVENT_TYPES, MAX_FUTURE, MAX_TOKENS, MIN_OCCURRED_AT
from pipeline.lake import LLM_CALL_SCHEMA, TASK_FEEDBACK_SCHEMA

__all__ = ["Reject", "BatchResult", "validate_batch", "one_line"]

_TS = pa.timestamp("us", tz="UTC")
_NONE = type(None)
# Canonical RFC 3339 with an explicit offset and at most microseconds; other spellings that
# pydantic may still accept are left to the slow path.
_RFC3339 = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
            r"(\.\d{1,6})?(Z|[+-](0\d|1[0-3]):[0-5]\d)$")


@dataclass(frozen=True, slots=True)
class _Field:
    """How the fast path checks one contract field (conservatively)."""

    name: str
    kind: str  # "str", "int", "bool", "enum", "ts", "event_id", "const"
    arrow: pa.DataType
    required: bool = True
    nullable: bool = False
    default: Any = None  # value when the field is absent (optional fields only)
    lo: int | None = None  # int bounds, or string length bounds
    hi: int | None = None
    values: tuple[Any, ...] = ()


_ENVELOPE = (
    _Field("event_id", "event_id", pa.string()),
    _Field("event_type", "enum", pa.string(), values=EVENT_TYPES),
    _Field("schema_version", "const", pa.int32(), values=(1,)),
    _Field("occurred_at", "ts", _TS),
    _Field("agent_id", "str", pa.string(), lo=1, hi=128),
    _Field("task_id", "str", pa.string(), lo=1, hi=128),
    _Field("role", "str", pa.string(), lo=1, hi=64),
)


def _tokens(name: str, required: bool = False) -> _Field:
    return _Field(name, "int", pa.int64(), required=required, default=0, lo=0, hi=MAX_TOKENS)


_SPECS: dict[str, tuple[_Field, ...]] = {
    "llm_call": _ENVELOPE + (
        _Field("provider", "str", pa.string(), lo=1, hi=128),
        _Field("model", "str", pa.string(), lo=1, hi=128),
        _tokens("input_tokens", True),
        _tokens("output_tokens", True),
        _tokens("cache_read_tokens"),
        _tokens("cache_write_5m_tokens"),
        _tokens("cache_write_1h_tokens"),
        _Field("latency_ms", "int", pa.int64(), required=False, nullable=True, lo=0,
               hi=86_400_000),
        _Field("status", "enum", pa.string(), required=False, default="ok",
               values=("ok", "error")),
        _Field("escalated", "bool", pa.bool_(), required=False, default=False),
        _Field("escalation_trigger", "str", pa.string(), required=False, nullable=True,
               lo=1, hi=64),
        _Field("policy_version", "str", pa.string(), required=False, nullable=True, lo=1,
               hi=64),
        _Field("task_type", "str", pa.string(), required=False, nullable=True, lo=1, hi=128),
    ),
    "task_feedback": _ENVELOPE + (
        _Field("satisfaction", "int", pa.int32(), required=False, nullable=True, lo=1, hi=5),
        _Field("escalation_needed", "bool", pa.bool_(), required=False, nullable=True),
        _Field("review_consistent", "bool", pa.bool_(), required=False, nullable=True),
    ),
}
_OUTPUT_SCHEMAS = {"llm_call": LLM_CALL_SCHEMA, "task_feedback": TASK_FEEDBACK_SCHEMA}
_TYPES: dict[str, set[type]] = {"str": {str}, "event_id": {str}, "enum": {str}, "ts": {str}, "int": {int},
          "const": {int}, "bool": {bool}}


@dataclass(slots=True)
class Reject:
    """A message that breaks the contract, with where it came from and why."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: str


@dataclass(slots=True)
class BatchResult:
    """Valid rows as Arrow tables (lake schemas, source columns included) and the rejects."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    fast: int = 0  # messages accepted by the fast path
    slow: int = 0  # messages decided by pydantic


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line, at most ``limit`` characters (for the ``error`` header)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_BAD = object()


def _loads(value: bytes | None) -> Any:
    if not value:
        return _BAD
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return _BAD


def _and(ok: pa.Array | None, cond: pa.Array) -> pa.Array:
    """``ok AND cond`` where ``ok`` None means all true."""
    return cond if ok is None else pc.and_(ok, cond)


def _check_column(spec: _Field, col: Sequence[Any], n: int, now: dt.datetime
                  ) -> tuple[pa.Array, pa.Array | None]:
    """(arrow array of the column, mask of rows whose value passes ``spec``; None = all)."""
    allowed = _TYPES[spec.kind] | ({_NONE} if spec.nullable else set())
    types = set(map(type, col))
    ok: pa.Array | None = None
    if not types <= allowed:  # rare: some values of a wrong type; null them and flag their rows
        good = [type(v) in allowed for v in col]
        col = [v if g else None for v, g in zip(col, good, strict=True)]
        ok = pa.array(good, pa.bool_())
    kind = spec.kind
    if kind == "ts":
        strings = pa.array(col, pa.string())
        shaped = pc.fill_null(pc.match_substring_regex(strings, _RFC3339), False)
        ok = _and(ok, shaped)
        candidates = pc.if_else(shaped, strings, pa.scalar(None, pa.string()))
        try:
            arr = candidates.cast(_TS)
        except (pa.ArrowInvalid, ValueError):  # impossible date etc.: per element, rare
            parsed = []
            for s in candidates.to_pylist():
                try:
                    parsed.append(None if s is None else dt.datetime.fromisoformat(s))
                except ValueError:
                    parsed.append(None)
            arr = pa.array(parsed, _TS)
            ok = _and(ok, pc.is_valid(arr))
        in_range = pc.and_(pc.greater_equal(arr, pa.scalar(MIN_OCCURRED_AT, _TS)),
                           pc.less_equal(arr, pa.scalar(now + MAX_FUTURE, _TS)))
        return arr, _and(ok, pc.fill_null(in_range, False))
    if kind in ("int", "const"):
        try:
            arr = pa.array(col, pa.int64())
        except (OverflowError, pa.ArrowInvalid):  # beyond int64: flag those rows
            fits = [v is None or -(2**63) <= v < 2**63 for v in col]
            arr = pa.array([v if f else None for v, f in zip(col, fits, strict=True)], pa.int64())
            ok = _and(ok, pa.array(fits, pa.bool_()))
        if kind == "const":
            cond = pc.is_in(arr, value_set=pa.array(spec.values, pa.int64()))
        else:
            cond = pc.and_(pc.greater_equal(arr, spec.lo), pc.less_equal(arr, spec.hi))
        arr = arr.cast(spec.arrow, safe=False)  # out-of-range rows are flagged by cond
    elif kind == "bool":
        arr = pa.array(col, pa.bool_())
        cond = None
    else:
        arr = pa.array(col, pa.string())
        if kind == "enum":
            cond = pc.is_in(arr, value_set=pa.array(spec.values, pa.string()))
        elif kind == "event_id":
            cond = pc.match_substring_regex(arr, EVENT_ID_PATTERN)
        else:
            length = pc.utf8_length(arr)
            cond = pc.and_(pc.greater_equal(length, spec.lo), pc.less_equal(length, spec.hi))
    if cond is not None:
        # a null where nulls are allowed passes; a null that replaced a bad value is
        # already flagged in ``ok``
        ok = _and(ok, pc.fill_null(cond, True))
    if not spec.nullable and arr.null_count:
        ok = _and(ok, pc.is_valid(arr))
    return arr, ok


def _fast_group(event_type: str, shape: tuple[str, ...], objs: list[dict[str, Any]],
                now: dt.datetime) -> tuple[dict[str, pa.Array], pa.Array] | None:
    """Columns and row mask for objects of one key shape, or None to send all to pydantic."""
    specs = _SPECS[event_type]
    names = {s.name for s in specs}
    if not set(shape) <= names or any(s.required and s.name not in shape for s in specs):
        return None
    n = len(objs)
    rows = list(map(itemgetter(*shape), objs)) if len(shape) > 1 else [(o[shape[0]],) for o in objs]
    cols = dict(zip(shape, zip(*rows, strict=True), strict=True))
    arrays: dict[str, pa.Array] = {}
    ok: pa.Array | None = None
    for spec in specs:
        if spec.name in cols:
            arr, col_ok = _check_column(spec, cols[spec.name], n, now)
            if col_ok is not None:
                ok = _and(ok, col_ok)
        else:
            arr = pa.nulls(n, spec.arrow)
            if spec.default is not None:
                arr = pc.fill_null(arr, pa.scalar(spec.default, spec.arrow))
        arrays[spec.name] = arr
    if event_type == "llm_call":
        # escalated <=> escalation_trigger
        has_trigger = pc.is_valid(arrays["escalation_trigger"])
        escalated = pc.fill_null(arrays["escalated"], False)
        ok = _and(ok, pc.equal(escalated, has_trigger))
    if ok is None:
        ok = pa.array([True] * n, pa.bool_())
    return arrays, pc.fill_null(ok, False)


def _source_columns(partitions: Sequence[int], offsets: Sequence[int], topic: str,
                    ingested_at: dt.datetime) -> dict[str, pa.Array]:
    n = len(offsets)
    return {  # constants repeated in C: no per-row Python object conversion
        "kafka_topic": pa.repeat(pa.scalar(topic, pa.string()), n),
        "kafka_partition": pa.array(partitions, pa.int32()),
        "kafka_offset": pa.array(offsets, pa.int64()),
        "ingested_at": pa.repeat(pa.scalar(ingested_at, _TS), n),
    }


def validate_batch(values: Sequence[bytes | None], *, partitions: Sequence[int],
                   offsets: Sequence[int], keys: Sequence[bytes | None], topic: str,
                   ingested_at: dt.datetime, now: dt.datetime | None = None) -> BatchResult:
    """Validate one batch of raw message values; every message ends up in a table or a reject."""
    now = now or dt.datetime.now(dt.UTC)
    result = BatchResult()
    parsed = [_loads(v) for v in values]
    groups: dict[tuple[Any, ...], list[int]] = {}
    slow: list[int] = []
    for i, obj in enumerate(parsed):
        event_type = obj.get("event_type") if type(obj) is dict else None
        if type(event_type) is str and event_type in _SPECS:
            groups.setdefault((event_type, tuple(obj)), []).append(i)
        else:
            slow.append(i)
    fast_tables: dict[str, list[pa.Table]] = {}
    for (event_type, shape), idx in groups.items():
        checked = _fast_group(event_type, shape, [parsed[i] for i in idx], now)
        if checked is None:
            slow.extend(idx)
            continue
        arrays, ok = checked
        arrays.update(_source_columns([partitions[i] for i in idx], [offsets[i] for i in idx],
                                      topic, ingested_at))
        table = pa.Table.from_pydict(arrays, schema=_OUTPUT_SCHEMAS[event_type])
        n_ok = pc.sum(ok).as_py() or 0
        if n_ok < len(idx):
            slow.extend(i for i, good in zip(idx, ok.to_pylist(), strict=True) if not good)
            table = table.filter(ok)
        result.fast += table.num_rows
        fast_tables.setdefault(event_type, []).append(table)
    slow_rows: dict[str, list[dict[str, Any]]] = {}
    if slow:
        from pipeline._exceptions import ContractError
        from pipeline.contract import parse_event, to_row

        slow.sort()
        for i in slow:
            value = values[i]
            try:
                event = parse_event(value, now=now)
                row = to_row(event)
            except ContractError as exc:
                error = one_line(str(exc))
            except Exception as exc:  # never let one message stop the consumer
                error = one_line(f"value: {type(exc).__name__}: {exc}")
            else:
                row.update(kafka_topic=topic, kafka_partition=partitions[i],
                           kafka_offset=offsets[i], ingested_at=ingested_at)
                slow_rows.setdefault(row["event_type"], []).append(row)
                result.slow += 1
                continue
            result.rejects.append(Reject(partitions[i], offsets[i], keys[i], value, error))
    for event_type, schema in _OUTPUT_SCHEMAS.items():
        parts = fast_tables.get(event_type, [])
        if event_type in slow_rows:
            parts.append(pa.Table.from_pylist(slow_rows[event_type], schema=schema))
        if parts:
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            result.tables[event_type] = table
    return result
