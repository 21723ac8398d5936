"""The consumer's batch validation gives exactly pydantic's verdicts and rows.

The fast path (orjson + Arrow column checks) may only accept what
:func:`pipeline.contract.parse_event` accepts, with identical lake values; whatever it flags
is decided by pydantic. Fed here: valid events of many shapes, the whole bad-input catalogue
of issue 3 and thousands of random mutations.
"""

from __future__ import annotations

import datetime as dt
import random

import orjson
import pytest

from pipeline._exceptions import ContractError
from pipeline.consumer.validate import validate_batch
from pipeline.contract import parse_event, to_row

NOW = dt.datetime(2026, 11, 26, 1, 0, tzinfo=dt.UTC)
INGESTED = dt.datetime(2026, 11, 26, 1, 0, 5, tzinfo=dt.UTC)


def llm_call(i: int = 0, **over):
    event = {
        "event_id": f"01JD{i:022d}", "event_type": "llm_call", "schema_version": 1,
        "occurred_at": "2026-11-25T10:00:00.123456+02:00", "agent_id": f"agent-{i % 7}",
        "task_id": f"task-{i // 3}", "role": "implementer", "provider": "zai",
        "model": "glm-4.5", "input_tokens": 1000 + i, "output_tokens": 200,
        "cache_read_tokens": 50, "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0,
        "latency_ms": 1234, "status": "ok", "escalated": False, "escalation_trigger": None,
        "policy_version": "2026-11-01", "task_type": "feature",
    }
    event.update(over)
    return {k: v for k, v in event.items() if v is not _DROP}


def feedback(i: int = 0, **over):
    event = {
        "event_id": f"fb-{i}", "event_type": "task_feedback", "schema_version": 1,
        "occurred_at": "2026-11-24T23:59:59Z", "agent_id": "agent-1", "task_id": f"task-{i}",
        "role": "reviewer", "satisfaction": 1 + i % 5, "escalation_needed": None,
        "review_consistent": True,
    }
    event.update(over)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def enc(obj) -> bytes:
    return orjson.dumps(obj)


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def catalogue(now: dt.datetime = NOW) -> list[bytes | None]:
    """The bad-input catalogue of issue 3 item 4, plus valid variants of every optional.

    Cases near the future bound are relative to ``now``; only those exactly on the bound
    depend on the validating clock (unit tests pass ``now=NOW`` to both sides).
    """
    bad: list[bytes | None] = [
        b"", None, b"not json", enc(llm_call())[:-7], b'{"event_id": "\xff\xfe"}',
        b"[1, 2, 3]", b'"a string"', b"42", b"null", b"   ",
        b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000,
        enc(llm_call(note="x" * 900_000)),
    ]
    base = llm_call()
    for name in base:
        bad.append(enc({k: v for k, v in base.items() if k != name}))
    fb = feedback()
    for name in fb:
        bad.append(enc({k: v for k, v in fb.items() if k != name}))
    for field in ("input_tokens", "output_tokens", "cache_read_tokens", "latency_ms"):
        for wrong in ("100", 1.0, 1.5, True, None, -1, 100_000_001, 2**70, [1], {"a": 1}):
            bad.append(enc(llm_call(**{field: wrong})) if not isinstance(wrong, int) or
                       wrong < 2**63 else enc(llm_call())[:-1] + b',"x":1}')
        bad.append(enc(llm_call()).replace(b'"input_tokens":1000', b'"input_tokens":NaN'))
        bad.append(enc(llm_call()).replace(b'"input_tokens":1000', b'"input_tokens":1e3'))
        bad.append(enc(llm_call()).replace(b'"input_tokens":1000',
                                           b'"input_tokens":100000000000000000000000'))
    bad += [
        enc(llm_call(event_type="llm_cal")), enc(llm_call(event_type=None)),
        enc(llm_call(schema_version=2)), enc(llm_call(schema_version=True)),
        enc(llm_call(schema_version="1")), enc(llm_call(occurred_at="2026-11-25T10:00:00")),
        enc(llm_call(occurred_at="2019-12-31T23:59:59Z")),
        enc(llm_call(occurred_at="2036-11-25T10:00:00Z")),
        enc(llm_call(occurred_at=_iso(now + dt.timedelta(hours=1)))),
        enc(llm_call(occurred_at=_iso(now + dt.timedelta(minutes=9)))),
        enc(llm_call(occurred_at="2026-02-30T10:00:00Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:60Z")),
        enc(llm_call(occurred_at="2026-11-25T24:00:00Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00+24:00")),
        enc(llm_call(occurred_at="2026-11-25 10:00:00Z")),
        enc(llm_call(occurred_at="2026-11-25t10:00:00z")),
        enc(llm_call(occurred_at="2026-11-25T10:00:00.123456789Z")),
        enc(llm_call(occurred_at="2026-11-25T10:00Z")), enc(llm_call(occurred_at=1764000000)),
        enc(llm_call(occurred_at="2026-11-25")), enc(llm_call(occurred_at="")),
        enc(llm_call(extra_field=1)), enc(llm_call(escalated=True)),
        enc(llm_call(escalation_trigger="security_sensitive")),
        enc(llm_call(escalated=True, escalation_trigger="security_sensitive")),
        enc(llm_call(escalated=True, escalation_trigger="")),
        enc(llm_call(escalated="true", escalation_trigger="x")),
        enc(llm_call(escalated=1, escalation_trigger="x")),
        enc(llm_call(event_id="x" * 65)), enc(llm_call(event_id="x" * 64)),
        enc(llm_call(event_id="")), enc(llm_call(event_id="has space")),
        enc(llm_call(event_id="é")), enc(llm_call(agent_id="a" * 129)),
        enc(llm_call(agent_id="a" * 128)), enc(llm_call(task_id="")),
        enc(llm_call(role="r" * 65)), enc(llm_call(role="é" * 64)), enc(llm_call(role="é" * 65)),
        enc(llm_call(provider="")), enc(llm_call(model="m" * 129)), enc(llm_call(status="fail")),
        enc(llm_call(status=None)), enc(llm_call(latency_ms=86_400_001)),
        enc(llm_call(latency_ms=None)), enc(llm_call(latency_ms=_DROP)),
        enc(llm_call(policy_version="")), enc(llm_call(policy_version=None)),
        enc(llm_call(task_type="t" * 128)), enc(llm_call(task_type="t" * 129)),
        enc(llm_call(cache_read_tokens=_DROP, status=_DROP, escalated=_DROP,
                     escalation_trigger=_DROP, task_type=_DROP, policy_version=_DROP)),
        enc(feedback(satisfaction=0)), enc(feedback(satisfaction=6)),
        enc(feedback(satisfaction=None)), enc(feedback(satisfaction=_DROP)),
        enc(feedback(satisfaction=3.0)), enc(feedback(escalation_needed="no")),
        enc(feedback(escalation_needed=False)), enc(feedback(review_consistent=0)),
        enc(feedback(provider="zai")), enc(llm_call(satisfaction=3)),
        enc(llm_call(role=" implementer ")), enc(llm_call(role="x\u0000y")),
        b'{"event_type":"llm_call","event_type":"task_feedback"}',
        enc(llm_call()).replace(b'"input_tokens":1000', b'"input_tokens":"x","input_tokens":7'),
        enc(llm_call()).replace(b'"input_tokens":1000', b'"input_tokens":7,"input_tokens":"x"'),
        enc(llm_call()).replace(b'"role":"implementer"', b'"role":"\\ud800"'),
        enc(llm_call()).replace(b'"role":"implementer"', b'"role":"\\u00e9t\\u00e9"'),
        b"\xef\xbb\xbf" + enc(llm_call()), b"  " + enc(llm_call()) + b"\n ",
        enc(llm_call()) + b" x", enc(llm_call()) + enc(llm_call()),
        enc(llm_call()).replace(b",", b",\n  "),
        enc(llm_call(occurred_at="2026-11-25T10:00:00.5-03:30")),
    ]
    return bad


def test_the_future_bound_is_exact():
    """10 minutes after the consumer's clock lands; one microsecond more is rejected."""
    edge = NOW + dt.timedelta(minutes=10)
    result = assert_same_as_pydantic([
        enc(llm_call(1, occurred_at=_iso(edge))),
        enc(llm_call(2, occurred_at=_iso(edge + dt.timedelta(microseconds=1))))])
    assert result.fast == 1 and [r.offset for r in result.rejects] == [101]


def mutate(rng: random.Random, raw: bytes) -> bytes:
    """A random byte-level or value-level mutation of a valid event."""
    if not raw:
        return b"{}"
    choice = rng.randrange(6)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        choice = min(choice, 1)
    if choice == 0:  # flip a byte
        i = rng.randrange(len(raw))
        return raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1:]
    if choice == 1:  # cut
        return raw[: rng.randrange(len(raw))]
    if not isinstance(obj, dict) or not obj:
        return raw + b" "
    name = rng.choice(list(obj))
    if choice == 2:
        del obj[name]
    else:
        obj[name] = rng.choice([None, True, False, 0, -1, 1, 5, 6, 2**31, 2**62, 0.5, "", "x",
                                "1", "x" * 65, "x" * 129, [], {}, "2026-11-25T10:00:00Z",
                                "zai", "ok", "error", "llm_call", "task_feedback", "é"])
    return orjson.dumps(obj)


def reference(raw: bytes | None):
    """pydantic's verdict: ('ok', row) or ('bad', error message)."""
    try:
        return "ok", to_row(parse_event(raw, now=NOW))
    except ContractError as exc:
        return "bad", str(exc)


def run_batch(values):
    offsets = list(range(100, 100 + len(values)))
    keys = [b"k%d" % i for i in range(len(values))]
    parts = [i % 3 for i in range(len(values))]
    result = validate_batch(values, partitions=parts, offsets=offsets, keys=keys,
                            topic="agent-usage", ingested_at=INGESTED, now=NOW)
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
