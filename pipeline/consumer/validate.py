"""Batch validation of raw Kafka values against the event contract.

Two paths, one verdict:

* the **fast path** decodes each value with msgspec into a struct derived from the event
  models' fields (:data:`pipeline.contract.EVENT_FIELDS`: strict types - a JSON integer for
  an int, never a float, a boolean or a string -, code-point lengths, integer bounds,
  literals, no unknown field, and *every* field present, optional ones included, as the SDK
  and the simulator write them), then moves each field into an Arrow column of its lake
  type with one typed conversion and checks what msgspec does not, per column: a
  timestamp's RFC 3339 shape (one regular expression) and bounds (``min_max``), a field's
  pattern (Arrow's RE2), printable identifiers, a field present exactly when its flag is
  true (``escalated`` <=> ``escalation_trigger``), and no duplicate key: msgspec keeps the
  last of two equal keys, so a message is only taken when it is as long as msgspec's own
  encoding of the struct it decoded to. That encoding spells every value and key the
  shortest way JSON allows (a unit test checks every code point), every field once and no
  space, so a message can only be longer than it, and is exactly as long only when it
  names each field once (in any order); a message with a second key, a space or an
  unneeded escape goes to the slow path, which decides. One encoding of the whole batch
  checks every row at once. It only ever *accepts* a message that obviously satisfies the
  contract; anything msgspec refuses or a column check flags goes to the slow path. An
  event type with a field msgspec has no translation for (a ``Decimal``) has no struct:
  all its messages take the slow path.
* every flagged message goes through :func:`pipeline.contract.parse_event` (pydantic, the
  source of truth): it either accepts it (the row comes from ``to_row``) or gives the exact
  one-line reason used in the dead-letter ``error`` header.

So the fast path may be stricter than pydantic but never looser;
``tests/unit/test_consumer_validate.py`` feeds the bad-input catalogue and random mutations
to both and asserts identical verdicts and identical rows, and
``tests/unit/test_contract_forms.py`` every bound of every field.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import is_
from typing import Annotated, Any, Literal, Union

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from msgspec.structs import astuple

from pipeline.contract.fields import EVENT_FIELDS, FieldSpec
from pipeline.lake import SCHEMAS, arrow_type
from pipeline.safe_text import visible

__all__ = ["Reject", "BatchResult", "validate_batch", "one_line"]

_TS = pa.timestamp("us", tz="UTC")
_STRING = pa.string()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
# Canonical RFC 3339 with an explicit offset and at most microseconds; other spellings that
# pydantic may still accept are left to the slow path (Arrow's own timestamp parser would
# also take "T10Z", "+0200" and other forms that the contract refuses).
_RFC3339 = (
    r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d{1,6})?(?:Z|[+-](?:0\d|1[0-3]):[0-5]\d)$"
)
# The SDK's spelling with every digit as 0 (one line per value), to check a whole column of
# SDK timestamps without the regular expression
_SDK_TIMESTAMP = b"0000-00-00T00:00:00.000000Z\n"
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
# a pattern made of one character class (no escapes, no nested brackets) and its counts
_COUNTED_CLASS = re.compile(r"\^(\[[^\]\\\[]+\])\{(\d+),(\d+)\}\$")


def _msgspec_type(spec: FieldSpec) -> Any:
    """The field's msgspec type: exactly what pydantic's strict model takes, or less; None
    when the fast path has no translation for the field (its event type goes to pydantic)."""
    typ: Any
    if spec.timestamp is not None:
        typ = str  # shape and bounds: checked on the Arrow column
    elif spec.values:
        typ = Literal[spec.values]
    elif spec.type is bool:
        typ = bool
    elif spec.type is int:
        typ = Annotated[int, msgspec.Meta(ge=int(spec.ge), le=int(spec.le))]  # type: ignore[arg-type]
    elif spec.type is str:  # a pattern and printable: checked on the Arrow column
        typ = Annotated[str, msgspec.Meta(min_length=spec.min_length, max_length=spec.max_length)]
    else:
        return None
    return typ | None if spec.nullable else typ


def _column_pattern(spec: FieldSpec) -> str | None:
    """The field's pattern as the Arrow column check applies it: ``^[class]{m,n}$`` whose
    counts are the field's length bounds (msgspec checks those) as ``^[class]+$``, which RE2
    matches faster; any other pattern as it is."""
    if spec.pattern is None:
        return None
    m = _COUNTED_CLASS.fullmatch(spec.pattern)
    if m and (int(m[2]), int(m[3])) == (spec.min_length, spec.max_length) and spec.min_length:
        return f"^{m[1]}+$"
    return spec.pattern


def _struct(event_type: str) -> type[msgspec.Struct] | None:
    """The msgspec struct of ``event_type``: tagged by ``event_type``, every field required
    (a message without an optional field is left to pydantic), unknown fields refused, not
    tracked by the garbage collector (it holds only str, int, bool and None). None when a
    field has no msgspec translation."""
    fields = [
        (spec.name, _msgspec_type(spec))
        for spec in EVENT_FIELDS[event_type]
        if spec.name != "event_type"
    ]  # the tag
    if any(typ is None for _, typ in fields):
        return None
    return msgspec.defstruct(
        f"_{event_type}",
        fields,
        tag_field="event_type",
        tag=event_type,
        forbid_unknown_fields=True,
        gc=False,
    )


_STRUCTS = {
    event_type: struct for event_type in EVENT_FIELDS if (struct := _struct(event_type)) is not None
}
_DECODER = msgspec.json.Decoder(Union[tuple(_STRUCTS.values())]) if _STRUCTS else None  # noqa: UP007
_OUTPUT_SCHEMAS = {event_type: SCHEMAS[event_type] for event_type in EVENT_FIELDS}
# (field, Arrow type its values convert to, pattern its column is checked against) of each
# struct field, in struct (= lake) order
_PULLED = {
    event_type: tuple(
        (spec, _STRING if spec.timestamp else arrow_type(spec), _column_pattern(spec))
        for spec in EVENT_FIELDS[event_type]
        if spec.name != "event_type"
    )
    for event_type in _STRUCTS
}
# where the tag goes back among the columns
_TAG_COLUMN = {
    event_type: [spec.name for spec in EVENT_FIELDS[event_type]].index("event_type")
    for event_type in _STRUCTS
}
# (column, flag column) of each field present exactly when its flag is true (lake positions)
_PRESENT_IFF = {
    event_type: [
        (
            _OUTPUT_SCHEMAS[event_type].get_field_index(spec.name),
            _OUTPUT_SCHEMAS[event_type].get_field_index(spec.present_iff),
        )
        for spec in EVENT_FIELDS[event_type]
        if spec.present_iff
    ]
    for event_type in _STRUCTS
}
# the earliest valid timestamp of each timestamp field, in microseconds since the epoch
# (Arrow's timestamp values); no Arrow scalar is made at import: pyarrow imports pandas on
# its first scalar or array, which the lake writer refuses and the poller does not need
_EARLIEST_US = {
    spec.timestamp: (spec.timestamp.earliest - _EPOCH) // _US
    for specs in EVENT_FIELDS.values()
    for spec in specs
    if spec.timestamp
}
assert all(
    tuple(spec.name for spec, _, _ in _PULLED[t]) == _STRUCTS[t].__struct_fields__ for t in _STRUCTS
)
_ENCODE = msgspec.json.Encoder().encode


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
    """``text`` on one printable line (:func:`~pipeline.safe_text.visible`), at most
    ``limit`` characters (for the ``error`` header and ``_rejected.error``)."""
    flat = visible(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _decode_one(value: bytes | None) -> Any:
    try:
        return _DECODER.decode(value)  # type: ignore[arg-type, union-attr]
    except Exception:  # anything msgspec refuses (or a tombstone): pydantic decides
        return None


def _decode(values: Sequence[bytes | None]) -> list[Any]:
    """Every value as a struct, None where msgspec refuses it; one C call per value."""
    if _DECODER is None:  # no event type has a fast path
        return [None] * len(values)
    decode = _DECODER.decode
    try:
        return [decode(v) for v in values]  # type: ignore[arg-type]
    except Exception:  # some value is refused: one by one
        return [_decode_one(v) for v in values]


def _and(ok: pa.Array | None, cond: pa.Array) -> pa.Array:
    """``ok AND cond`` where ``ok`` None means all true."""
    return cond if ok is None else pc.and_(ok, cond)


def _sdk_spelling(col: Sequence[str]) -> bool:
    """Whether every string is spelled ``dddd-dd-ddTdd:dd:dd.ddddddZ`` (the SDK's), checked in
    three C passes over the joined column (cheaper than the regular expression)."""
    try:
        joined = ("\n".join(col) + "\n").encode()
    except UnicodeEncodeError:
        return False
    return joined.translate(_DIGITS_TO_ZERO) == _SDK_TIMESTAMP * len(col)


def _timestamps(
    col: Sequence[str], earliest: int, latest: pa.Scalar
) -> tuple[pa.Array, pa.Array | None]:
    """Timestamp strings as UTC timestamps, and the mask of the good ones (None = all): the
    ones between ``earliest`` (microseconds since the epoch) and ``latest``.

    The spelling is checked first (the SDK's, else the regular expression): Arrow's parser
    alone would also take spellings the contract refuses. Impossible dates and times in a
    good spelling (month 13, February 30, 24:00) make the cast fail."""
    ok: pa.Array | None = None
    strings = pa.array(col, _STRING)
    if not _sdk_spelling(col):
        shaped = pc.match_substring_regex(strings, _RFC3339)
        if shaped.true_count != len(strings):
            ok = pc.fill_null(shaped, False)
            strings = pc.if_else(ok, strings, pa.scalar(None, _STRING))
    try:
        arr = strings.cast(_TS)
    except (pa.ArrowInvalid, ValueError):  # impossible date etc.: per element, rare
        parsed = []
        for s in strings.to_pylist():
            try:
                parsed.append(None if s is None else dt.datetime.fromisoformat(s))
            except ValueError:
                parsed.append(None)
        arr = pa.array(parsed, _TS)
        ok = _and(ok, pc.is_valid(arr))
    # compared as integers: years 0 to 9999 parse, and some are no Python datetime (as_py
    # would raise OverflowError)
    mm = pc.min_max(arr)
    first, last = mm["min"].value, mm["max"].value
    if first is not None and (first < earliest or last > latest.value):
        in_range = pc.and_(
            pc.greater_equal(arr, pa.scalar(earliest, _TS)), pc.less_equal(arr, latest)
        )
        ok = _and(ok, pc.fill_null(in_range, False))
    return arr, ok


def _printable(columns: list[Sequence[str | None]]) -> pa.Array | None:
    """The mask of the rows whose identifiers (``columns``) are all printable (None = all):
    one C pass over every value joined, row by row only when it finds a non-printable one."""
    if "".join(chain.from_iterable(filter(None, col) for col in columns)).isprintable():
        return None
    rows = zip(*columns, strict=True)
    return pa.array([all(s is None or s.isprintable() for s in row) for row in rows], pa.bool_())


def _canonical(objs: list[Any], raw: Sequence[bytes]) -> pa.Array | None:
    """The mask of the messages spelled as msgspec encodes what they decoded to (None = all):
    see the module docstring (a duplicate key). Every message is at least that long, so
    equal totals mean every one is; row by row only when they differ."""
    # the encoded list: each struct's encoding, a comma between two, the brackets
    if len(_ENCODE(objs)) == sum(map(len, raw)) + len(objs) + 1:
        return None
    return pa.array([len(r) == len(_ENCODE(o)) for r, o in zip(raw, objs, strict=True)], pa.bool_())


def _fast_group(
    event_type: str, objs: list[Any], raw: Sequence[bytes], now: dt.datetime
) -> tuple[list[pa.Array], pa.Array | None]:
    """Arrow columns (lake order, source columns excluded) of structs msgspec accepted from
    the messages ``raw``, and the mask of the rows that also pass the column checks (None =
    all): per field, what its spec says and msgspec does not check (a timestamp's spelling
    and bounds, a pattern, printable identifiers, a field present exactly when its flag is
    true), and no duplicate key."""
    n = len(objs)
    arrays: list[pa.Array] = []
    ok = _canonical(objs, raw)
    identifiers: list[Sequence[str | None]] = []
    # one tuple per struct (C), transposed to one tuple per field: fewer passes over the
    # structs than one attribute getter per field
    columns = zip(*map(astuple, objs), strict=True)
    for (spec, arrow, pattern), col in zip(_PULLED[event_type], columns, strict=True):
        if spec.timestamp is not None:
            latest = pa.scalar(now + spec.timestamp.max_future, _TS)
            arr, ts_ok = _timestamps(col, _EARLIEST_US[spec.timestamp], latest)
            if ts_ok is not None:
                ok = _and(ok, ts_ok)
            arrays.append(arr)
            continue
        arr = pa.array(col, arrow)
        if spec.printable:
            identifiers.append(col)
        if pattern is not None:  # Arrow's RE2, as pydantic's regex: a search
            matches = pc.match_substring_regex(arr, pattern)
            if matches.true_count != n - arr.null_count:
                ok = _and(ok, pc.fill_null(matches, True))
        arrays.append(arr)
    printable = _printable(identifiers)
    if printable is not None:
        ok = _and(ok, printable)
    arrays.insert(_TAG_COLUMN[event_type], pa.repeat(pa.scalar(event_type, _STRING), n))
    for at, flag_at in _PRESENT_IFF[event_type]:  # present exactly when the flag is true
        flag, present = arrays[flag_at], arrays[at]
        if flag.true_count or present.null_count != n:
            ok = _and(ok, pc.equal(flag, pc.is_valid(present)))
    return arrays, ok


def validate_batch(
    values: Sequence[bytes | None],
    *,
    partitions: Sequence[int],
    offsets: Sequence[int],
    keys: Sequence[bytes | None],
    topic: str,
    ingested_at: dt.datetime,
    now: dt.datetime | None = None,
) -> BatchResult:
    """Validate one batch of raw message values; every message ends up in a table or a reject."""
    now = now or dt.datetime.now(dt.UTC)
    result = BatchResult()
    decoded = _decode(values)
    kinds = list(map(type, decoded))
    slow: list[int] = []
    source: list[pa.Array] = []
    fast_tables: dict[str, list[pa.Table]] = {}
    taken = 0
    for event_type, struct in _STRUCTS.items():
        mine = list(map(is_, kinds, repeat(struct)))
        count = mine.count(True)
        if not count:
            continue
        taken += count
        raw: Sequence[bytes]
        if count == len(values):
            idx: Sequence[int] = range(count)
            objs, raw = decoded, values  # type: ignore[assignment]  # decoded: none is None
        else:
            idx = list(compress(range(len(values)), mine))
            objs = list(compress(decoded, mine))
            raw = list(compress(values, mine))  # type: ignore[arg-type]
        arrays, ok = _fast_group(event_type, objs, raw, now)
        if not source:  # once per batch
            source = [pa.array(partitions, pa.int32()), pa.array(offsets, pa.int64())]
        if count == len(values):
            where = source
        else:
            take = pa.array(idx, pa.int32())
            where = [source[0].take(take), source[1].take(take)]
        arrays += [
            pa.repeat(pa.scalar(topic, _STRING), count),
            *where,
            pa.repeat(pa.scalar(ingested_at, _TS), count),
        ]
        table = pa.Table.from_arrays(arrays, schema=_OUTPUT_SCHEMAS[event_type])
        if ok is not None and ok.false_count:
            slow.extend(idx[j] for j in pc.indices_nonzero(pc.invert(ok)).to_pylist())
            table = table.filter(ok)
        result.fast += table.num_rows
        fast_tables.setdefault(event_type, []).append(table)
    if taken < len(values):  # refused by msgspec
        slow.extend(compress(range(len(values)), map(is_, decoded, repeat(None))))
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
                row.update(
                    kafka_topic=topic,
                    kafka_partition=partitions[i],
                    kafka_offset=offsets[i],
                    ingested_at=ingested_at,
                )
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
