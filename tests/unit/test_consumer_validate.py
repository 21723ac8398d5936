"""The consumer's batch validation gives exactly pydantic's verdicts and rows.

The fast path (msgspec structs + Arrow column checks) may only accept what
:func:`pipeline.contract.parse_event` accepts, with identical lake values; whatever it flags
is decided by pydantic. Fed here: valid events of many shapes, the whole bad-input catalogue
(tests/fixtures/events.py), the hazards of the fast path's own machinery (msgspec's JSON reading and
constraints, per-column shortcuts that skip the per-row masks when a whole column obviously
passes) and thousands of random mutations.
"""

from __future__ import annotations

import datetime as dt
import random

import orjson
import pytest

from pipeline._exceptions import ContractError
from pipeline.consumer.validate import one_line, validate_batch
from pipeline.contract import parse_event, to_row
from tests.fixtures.events import DROP as _DROP
from tests.fixtures.events import (
    IDENTIFIERS,
    NON_PRINTABLE,
    NOW,
    catalogue,
    enc,
    feedback,
    hostile,
    llm_call,
)
from tests.fixtures.events import iso as _iso

INGESTED = dt.datetime(2026, 11, 26, 1, 0, 5, tzinfo=dt.UTC)


def _raw_replace(old: bytes, new: bytes, event: dict | None = None) -> bytes:
    raw = enc(event or llm_call())
    assert old in raw
    return raw.replace(old, new, 1)


def hazards(now: dt.datetime = NOW) -> list[bytes]:
    """Inputs aimed at the fast path's machinery rather than at the contract.

    msgspec reads the JSON and checks types, lengths, bounds, literals and the key set;
    Arrow checks the timestamp's shape and bounds, the event_id characters and the
    escalation rule on whole columns. Each case is valid or invalid in a way one of those
    could get wrong: key spellings and order, duplicate keys, number spellings, code-point
    versus byte lengths, explicit nulls, JSON text around the object."""
    astral = "\U0001f600"
    return [
        # key spellings, order and repetition
        _raw_replace(b'"role"', b'"\\u0072ole"'),
        _raw_replace(b'"event_type"', b'"event\\u005ftype"'),
        _raw_replace(
            b'"input_tokens"',
            b'"input_tokens ',
        ),
        _raw_replace(b'"input_tokens"', b'"Input_tokens"'),
        enc(
            {**{k: v for k, v in llm_call().items() if k != "event_type"}, "event_type": "llm_call"}
        ),
        enc(dict(reversed(list(feedback().items())))),
        _raw_replace(
            b'"event_type":"llm_call"', b'"event_type":"llm_call","event_type":"llm_call"'
        ),
        _raw_replace(
            b'"event_type":"llm_call"', b'"event_type":"task_feedback","event_type":"llm_call"'
        ),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":7,"input_tokens":8'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":-1,"input_tokens":8'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":8,"input_tokens":-1'),
        _raw_replace(b'"status":"ok"', b'"status":"fail","status":"ok"'),
        _raw_replace(b'"escalated":false', b'"escalated":true,"escalated":false'),
        _raw_replace(b'"latency_ms":1234', b'"latency_ms":null,"latency_ms":5'),
        _raw_replace(b'"latency_ms":1234', b'"latency_ms":5,"latency_ms":null'),
        # number spellings in int fields
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":-0'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":1000.0'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":1E3'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":01000'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":+1000'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":100000000'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":100000001'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":18446744073709551616'),
        _raw_replace(b'"input_tokens":1000', b'"input_tokens":-9223372036854775809'),
        _raw_replace(b'"latency_ms":1234', b'"latency_ms":86400000'),
        _raw_replace(b'"latency_ms":1234', b'"latency_ms":Infinity'),
        _raw_replace(b'"schema_version":1', b'"schema_version":1.0'),
        _raw_replace(b'"schema_version":1', b'"schema_version":-1'),
        enc(feedback(satisfaction=True)),
        enc(feedback(satisfaction=5)),
        enc(feedback(satisfaction=1)),
        enc(feedback(escalation_needed=1)),
        enc(feedback(review_consistent="true")),
        enc(llm_call(escalated=0)),
        enc(llm_call(escalated=None)),
        # explicit nulls where only absence is allowed, and the other way round
        enc(llm_call(cache_read_tokens=None)),
        enc(llm_call(escalated=None)),
        enc(llm_call(schema_version=None)),
        enc(llm_call(provider=None)),
        enc(llm_call(escalation_trigger=None, escalated=_DROP)),
        enc(llm_call(escalated=True, escalation_trigger=None)),
        enc(feedback(satisfaction=None, escalation_needed=None, review_consistent=None)),
        enc(feedback(satisfaction=_DROP, escalation_needed=_DROP, review_consistent=_DROP)),
        # lengths are code points, not bytes nor UTF-16 units
        enc(llm_call(role="é" * 64)),
        enc(llm_call(role="é" * 65)),
        enc(llm_call(role=astral * 64)),
        enc(llm_call(role=astral * 65)),
        enc(llm_call(role="e\u0301" * 32)),
        enc(llm_call(role="e\u0301" * 33)),
        _raw_replace(b'"role":"implementer"', b'"role":"' + b"\\u00e9" * 64 + b'"'),
        _raw_replace(b'"role":"implementer"', b'"role":"' + b"\\u00e9" * 65 + b'"'),
        _raw_replace(b'"role":"implementer"', b'"role":"' + b"\\ud83d\\ude00" * 64 + b'"'),
        _raw_replace(b'"role":"implementer"', b'"role":"' + b"\\ud83d\\ude00" * 65 + b'"'),
        _raw_replace(b'"role":"implementer"', b'"role":"\\ude00\\ud83d"'),
        _raw_replace(b'"role":"implementer"', b'"role":"\xc0\xaf"'),  # overlong UTF-8
        _raw_replace(b'"role":"implementer"', b'"role":"\xed\xa0\x80"'),  # encoded surrogate
        _raw_replace(b'"role":"implementer"', b'"role":"a\tb"'),  # raw control character
        _raw_replace(b'"role":"implementer"', b'"role":"a\\tb"'),
        _raw_replace(b'"role":"implementer"', b'"role":"a\\/b\\"c"'),
        enc(llm_call(agent_id="a" * 127 + "é")),
        enc(llm_call(agent_id="é" * 128)),
        enc(llm_call(agent_id="é" * 129)),
        enc(llm_call(task_type="")),
        enc(llm_call(escalated=True, escalation_trigger="t" * 64)),
        enc(llm_call(escalated=True, escalation_trigger="t" * 65)),
        # event_id characters (Arrow regex) and length (msgspec)
        enc(llm_call(event_id="a:b.c_d-E9")),
        enc(llm_call(event_id="a/b")),
        enc(llm_call(event_id="x\n")),
        enc(llm_call(event_id="\u0661")),
        enc(llm_call(event_id="ｘ")),
        enc(llm_call(event_id="é" * 10)),
        enc(llm_call(event_id="x" * 63 + "é")),
        # timestamps the Arrow parser would take but the contract refuses, and the reverse
        enc(llm_call(occurred_at="2026-11-25T10Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00+02")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00+0200")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00+02")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00.1234567Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00-00:00")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00+23:59")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00+02:60")),
        enc(llm_call(occurred_at="2028-02-29T10:00:00Z")),
        enc(llm_call(occurred_at="2026-02-29T10:00:00Z")),
        enc(llm_call(occurred_at="2020-01-01T00:00:00Z")),
        enc(llm_call(occurred_at="2020-01-01T01:00:00+01:00")),
        enc(llm_call(occurred_at="2020-01-01T00:59:59.999999+01:00")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00Z\n")),
        # the SDK's spelling (checked without the regular expression when a whole column
        # has it): impossible dates and times, bounds, and near misses of the spelling
        enc(llm_call(occurred_at="2026-11-25T10:00:00.123456Z")),
        enc(llm_call(occurred_at="2026-13-25T10:00:00.123456Z")),
        enc(llm_call(occurred_at="2026-00-25T10:00:00.123456Z")),
        enc(llm_call(occurred_at="2026-02-30T10:00:00.123456Z")),
        enc(llm_call(occurred_at="2026-11-25T24:00:00.000000Z")),
        enc(llm_call(occurred_at="2026-11-25T10:60:00.000000Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:60.000000Z")),
        enc(llm_call(occurred_at="2019-12-31T23:59:59.999999Z")),
        enc(llm_call(occurred_at="2036-11-25T10:00:00.000000Z")),
        enc(llm_call(occurred_at=_iso(now + dt.timedelta(minutes=10)).replace("Z", ".000000Z"))),
        enc(llm_call(occurred_at="0000-01-01T00:00:00.000000Z")),
        enc(llm_call(occurred_at="2026-11-25t10:00:00.123456Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00.123456z")),
        enc(llm_call(occurred_at="2026-11-25 10:00:00.123456Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00.12345Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00.1234567Z")),
        enc(llm_call(occurred_at="2026-11-2５T10:00:00.123456Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00.123456Z\n2026-11-25T10:00:00.123456Z")),
        # years Arrow parses but Python's datetime cannot hold once in UTC: compared as
        # integers, never turned into datetimes by the fast path
        enc(llm_call(occurred_at="0000-01-01T00:00:00Z")),
        enc(llm_call(occurred_at="0001-01-01T00:00:00+01:00")),
        enc(llm_call(occurred_at="9999-12-31T23:59:59.999999-13:59")),
        enc(llm_call(occurred_at="9999-12-31T23:59:59Z")),
        enc(llm_call(occurred_at=" 2026-11-25T10:00:00Z")),
        # JSON text around and inside the object
        b"\t" + enc(llm_call()) + b"\r\n",
        enc([llm_call()]),
        enc(llm_call()) + b"\x00",
        enc(llm_call(extra=None)),
        enc(llm_call(provider={"name": "zai"})),
        enc(llm_call(role=["implementer"])),
        b"{}",
        b'{"event_type":"llm_call"}',
    ]


def test_hazards_of_the_fast_path_get_pydantics_verdict():
    values = hazards()
    mixed = []
    for i, raw in enumerate(values):  # valid neighbours of both types around every case
        mixed += [enc(llm_call(i)), raw, enc(feedback(i))]
    result = assert_same_as_pydantic(mixed)
    assert result.fast >= 2 * len(values)


@pytest.mark.parametrize(
    "raw", [*catalogue(), *hazards()], ids=range(len(catalogue()) + len(hazards()))
)
def test_a_batch_where_every_row_has_the_same_input_gets_pydantics_verdict(raw):
    """Whole-column shortcuts (min/max of a column, a regex count) decide a column at once;
    a defect shared by every row of a batch must still be caught for each row."""
    assert_same_as_pydantic([raw] * 5)


@pytest.mark.parametrize(
    "odd",
    [
        "2026-11-25T10Z",
        "2026-11-25T10:00Z",
        "2026-11-25T10:00:00+0200",
        "2026-11-25T10:00:00+02",
        "2026-11-25T10:00:00.12345Z",
        "2026-11-25 10:00:00.123456Z",
        "2026-02-30T10:00:00.123456Z",
        "0000-01-01T00:00:00.000000Z",
        "2036-11-25T10:00:00.000000Z",
    ],
)
def test_one_odd_timestamp_among_sdk_spelled_ones_gets_pydantics_verdict(odd):
    """A column of SDK-spelled timestamps skips the regular expression; one value spelled
    otherwise (anywhere in the column) sends the column through it."""
    sdk = "2026-11-25T10:00:00.123456Z"
    for where in (0, 3, 7):
        stamps = [sdk] * 8
        stamps[where] = odd
        assert_same_as_pydantic([enc(llm_call(i, occurred_at=t)) for i, t in enumerate(stamps)])


def test_the_future_bound_is_exact():
    """10 minutes after the consumer's clock lands; one microsecond more is rejected."""
    edge = NOW + dt.timedelta(minutes=10)
    result = assert_same_as_pydantic(
        [
            enc(llm_call(1, occurred_at=_iso(edge))),
            enc(llm_call(2, occurred_at=_iso(edge + dt.timedelta(microseconds=1)))),
        ]
    )
    assert result.fast == 1 and [r.offset for r in result.rejects] == [101]


_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    5,
    6,
    2**31,
    2**62,
    2**63,
    0.5,
    1.0,
    "",
    "x",
    "1",
    "x" * 64,
    "x" * 65,
    "x" * 128,
    "x" * 129,
    "é" * 64,
    "é" * 65,
    "\U0001f600" * 64,
    "\U0001f600" * 65,
    "a b",
    "x\u0000",
    [],
    {},
    "2026-11-25T10:00:00Z",
    "2026-11-25T10:00:00+0200",
    "2026-11-25T10Z",
    "zai",
    "ok",
    "error",
    "llm_call",
    "task_feedback",
    "é",
]


def mutate(rng: random.Random, raw: bytes) -> bytes:
    """A random byte-level, key-level or value-level mutation of a valid event."""
    if not raw:
        return b"{}"
    choice = rng.randrange(8)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        choice = min(choice, 1)
    if choice == 0:  # flip a byte
        i = rng.randrange(len(raw))
        return raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1 :]
    if choice == 1:  # cut
        return raw[: rng.randrange(len(raw))]
    if not isinstance(obj, dict) or not obj:
        return raw + b" "
    name = rng.choice(list(obj))
    if choice == 2:
        del obj[name]
    elif choice == 6:  # the key once more, before or after, with another value
        extra = orjson.dumps({name: rng.choice(_VALUES)})[1:-1]
        body = orjson.dumps(obj)[1:-1]
        return b"{" + (extra + b"," + body if rng.random() < 0.5 else body + b"," + extra) + b"}"
    elif choice == 7:  # the key spelled with a JSON escape, or the keys in another order
        if rng.random() < 0.5:
            return orjson.dumps(dict(rng.sample(list(obj.items()), len(obj))))
        key = orjson.dumps(name)
        escaped = b'"\\u%04x' % key[1] + key[2:]
        return orjson.dumps(obj).replace(key + b":", escaped + b":", 1)
    else:
        obj[name] = rng.choice(_VALUES)
    return orjson.dumps(obj)


def reference(raw: bytes | None):
    """pydantic's verdict: ('ok', row) or ('bad', error message); any other exception is a
    reject naming it, as the consumer makes it (a year-1 timestamp with a positive offset
    overflows in the contract's own UTC conversion)."""
    try:
        return "ok", to_row(parse_event(raw, now=NOW))
    except ContractError as exc:
        return "bad", str(exc)
    except Exception as exc:
        return "bad", one_line(f"value: {type(exc).__name__}: {exc}")


def run_batch(values):
    offsets = list(range(100, 100 + len(values)))
    keys = [b"k%d" % i for i in range(len(values))]
    parts = [i % 3 for i in range(len(values))]
    result = validate_batch(
        values,
        partitions=parts,
        offsets=offsets,
        keys=keys,
        topic="agent-usage",
        ingested_at=INGESTED,
        now=NOW,
    )
    got: dict[int, tuple] = {}
    for table in result.tables.values():
        for row in table.to_pylist():
            offset = row.pop("kafka_offset")
            assert offset not in got, f"offset {offset} landed twice"
            assert row.pop("kafka_topic") == "agent-usage"
            assert row.pop("kafka_partition") == (offset - 100) % 3
            assert row.pop("ingested_at") == INGESTED
            got[offset] = ("ok", row)
    for rej in result.rejects:
        assert rej.offset not in got, f"offset {rej.offset} both landed and rejected"
        assert rej.value is values[rej.offset - 100]
        assert rej.key == keys[rej.offset - 100]
        assert "\n" not in rej.error
        got[rej.offset] = ("bad", rej.error)
    assert sorted(got) == offsets, "every message is accounted for exactly once"
    return result, [got[o] for o in offsets]


def assert_same_as_pydantic(values):
    result, verdicts = run_batch(values)
    for raw, verdict in zip(values, verdicts, strict=True):
        assert verdict == reference(raw), f"verdict differs for {raw[:200]!r}"
    return result


def test_valid_events_take_the_fast_path_with_pydantics_exact_values():
    values = [enc(llm_call(i)) for i in range(300)] + [enc(feedback(i)) for i in range(100)]
    result = assert_same_as_pydantic(values)
    assert result.fast == 400 and result.slow == 0 and not result.rejects


def test_bad_input_catalogue_gets_pydantics_verdict_and_reason():
    values = catalogue()
    mixed = []
    for i, bad in enumerate(values):  # valid neighbours around every bad message
        mixed += [enc(llm_call(i)), bad, enc(feedback(i))]
    result = assert_same_as_pydantic(mixed)
    assert result.fast >= 2 * len(values), "valid neighbours stay on the fast path"
    assert len(result.rejects) > 100


@pytest.mark.parametrize("seed", range(4))
def test_random_mutations_get_pydantics_verdict(seed):
    rng = random.Random(seed)
    sources = [enc(llm_call(i)) for i in range(50)] + [enc(feedback(i)) for i in range(50)]
    values = [mutate(rng, rng.choice(sources)) for _ in range(1500)]
    values += [mutate(rng, mutate(rng, rng.choice(sources))) for _ in range(500)]
    result = assert_same_as_pydantic(values)
    assert result.fast > 0 and result.rejects


def test_one_bad_value_in_a_column_does_not_reject_its_neighbours():
    """A wrong type in one row flags that row only; the rest of its shape group lands."""
    values = [enc(llm_call(i)) for i in range(20)]
    values[7] = enc(llm_call(7, input_tokens="7"))
    values[9] = enc(llm_call(9, occurred_at="2026-02-30T10:00:00Z"))
    result = assert_same_as_pydantic(values)
    assert result.fast == 18
    assert [r.offset for r in result.rejects] == [107, 109]
    assert result.rejects[0].error.startswith("input_tokens:")


def test_hostile_identifiers_and_duplicate_keys_get_pydantics_verdict():
    values = hostile()
    result = assert_same_as_pydantic(values)
    errors = [r.error for r in result.rejects]
    assert (
        sum("must be printable" in e for e in errors) == len(IDENTIFIERS) * len(NON_PRINTABLE) + 3
    )
    assert sum("duplicate key" in e for e in errors) == 7
    assert all(e.isprintable() for e in errors), "error headers are one printable line"
    assert any("\\x1b]0;title\\x07: unknown field" in e for e in errors)


def test_a_duplicate_key_is_never_taken_by_the_fast_path():
    """msgspec keeps the last of two equal keys; the fast path must not accept such a
    message even when every field is there and the count of keys looks right."""
    base = enc(llm_call())
    dup = base.replace(b'"policy_version":"2026-11-01",', b"").replace(
        b'"role":"implementer"', b'"role":"implementer","role":"architect"'
    )
    result, verdicts = run_batch([base, dup, base])
    assert result.fast == 2
    assert verdicts[1] == ("bad", "role: duplicate key (a JSON object may name a field once)")


def test_importing_the_lake_writer_modules_does_not_import_pandas():
    """pyarrow imports pandas (~0.2 s, ~35 MB) on its first scalar or array; the validator
    and the sink make none at import time, so the poller never loads pandas and the forked
    lake writer can refuse it."""
    import subprocess
    import sys

    code = (
        "import sys, pipeline.consumer.validate, pipeline.consumer.sink; "
        "sys.exit('pandas' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_msgspec_spells_every_character_the_shortest_way_json_allows():
    """The fast path's duplicate-key check rests on this: a message is never shorter than
    msgspec's encoding of what it decoded to (module docstring of pipeline.consumer.validate).
    If a msgspec release escapes more than JSON requires, this fails."""
    import msgspec

    short = {'"': 2, "\\": 2, "\b": 2, "\f": 2, "\n": 2, "\r": 2, "\t": 2}
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    encoded = msgspec.json.encode(text)
    assert len(encoded) - 2 == sum(short.get(c, 6 if c < " " else len(c.encode())) for c in text)
    for number in (0, 7, -7, 10**18, -(2**63)):
        assert msgspec.json.encode(number) == str(number).encode()
