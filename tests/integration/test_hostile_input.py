"""Hostile messages against the real broker: the consumer never stops on message content.

Poison pills (a null key with a null value), dead letters the DLQ topic refuses (larger than
its ``max.message.bytes``, larger than the producer's request limit), control characters and
duplicate keys: every offset is landed or rejected exactly once, every reject is in
``_rejected`` whole and in the DLQ (as it is, or as a reduced dead letter that says why and
carries the original's length and hash), and a restart changes nothing. A flush that was
written but never dead-lettered (a crash between the two) is dead-lettered on restart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from decimal import Decimal
from itertools import zip_longest

import pytest
from kafka import KafkaProducer

from pipeline.consumer.batches import RawBatch
from pipeline.consumer.dead_letter import REDUCED_VALUE_BYTES
from pipeline.consumer.sink import Sink
from pipeline.settings import dlq_topic_for
from tests.fixtures.broker import create_topics
from tests.fixtures.consume import (
    both_kafka_clients,  # noqa: F401 (the fixture make_settings: both Kafka clients)
    consume_cli,
    read_dlq,
)
from tests.fixtures.consume import table_rows as lake_rows
from tests.fixtures.events import enc, llm_call

pytestmark = pytest.mark.kafka

BIG = 2 * 1024 * 1024  # over the DLQ topic's default max.message.bytes (~1 MB)
HUGE = 17 * 1024 * 1024  # over the dead-letter producer's own request limit (16 MB)
_RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _topic(kafka_broker, name: str) -> str:
    """A one-partition topic that takes messages up to 20 MB; its DLQ keeps the defaults."""
    create_topics(
        kafka_broker.bootstrap,
        [name, dlq_topic_for(name)],
        1,
        {name: {"max.message.bytes": str(20 * 1024 * 1024)}},
    )
    return name


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    """Send with librdkafka (it sends a null key with a null value; kafka-python does not),
    in list order to partition 0."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "message.max.bytes": 20 * 1024 * 1024,
        }
    )
    for key, value in messages:
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(60) == 0


def _hostile_messages() -> list[tuple[bytes | None, bytes | None]]:
    valid = [enc(llm_call(i, occurred_at="2026-11-25T10:00:00Z")) for i in range(4)]
    return [
        (b"task-0", valid[0]),
        (None, None),  # the poison pill that stopped the consumer for good
        (b"task-x", None),  # a tombstone with a key
        (None, b'{"event_type": '),
        (b"big", b'{"x": "' + b"a" * BIG + b'"}'),
        (b"task-1", valid[1]),
        (b"huge", b'{"x": "' + b"b" * HUGE + b'"}'),
        (b"k" * 5000, enc(llm_call(9, role="arch\u202eitect\x1b[31m"))),
        (
            b"dup",
            enc(llm_call(10)).replace(
                b'"role":"implementer"', b'"role":"implementer","role":"architect"'
            ),
        ),
        (b"task-2", valid[2]),
        (b"esc", enc(llm_call(11))[:-1] + b',"\\u001b]0;pwned\\u0007":1}'),
        (b"task-3", valid[3]),
    ]


def test_poison_pills_and_oversized_dead_letters_never_stop_the_consumer(
    make_settings, kafka_broker
):  # noqa: F811
    settings = make_settings(topic=_topic(kafka_broker, f"hostile-{uuid.uuid4().hex[:12]}"))
    messages = _hostile_messages()
    _produce(settings.kafka_bootstrap_servers, settings.topic, messages)

    first = consume_cli(settings, "--until-idle", "1", "--flush-seconds", "1", timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "dlq_failed=3" in first.stderr, first.stderr[-3000:]  # null/null, 2 MB, 17 MB
    again = consume_cli(settings, "--until-idle", "2", "--flush-seconds", "1", timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]

    landed = lake_rows(settings.lake, "llm_call")
    rejected = lake_rows(settings.lake, "_rejected")
    offsets = sorted(r["kafka_offset"] for r in landed + rejected)
    assert offsets == list(range(len(messages))), "every offset landed or rejected, once"
    assert sorted(r["kafka_offset"] for r in landed) == [0, 5, 9, 11]

    by_offset = {r["kafka_offset"]: r for r in rejected}
    for offset, (key, value) in enumerate(messages):
        if offset in (0, 5, 9, 11):
            continue
        row = by_offset[offset]
        assert (row["raw_key"], row["raw_value"]) == (key, value), "kept whole in _rejected"
        assert row["error"].isprintable(), row["error"]
    assert "duplicate key" in by_offset[8]["error"]
    assert "must be printable" in by_offset[7]["error"]
    assert "\\x1b]0;pwned\\x07" in by_offset[10]["error"]

    dlq = read_dlq(settings.kafka_bootstrap_servers, settings.topic, 8)
    letters = {int(dict(r.headers)["source_offset"]): r for r in dlq}
    assert sorted(letters) == sorted(by_offset), "a dead letter for every reject"
    for offset, record in letters.items():
        headers = {k: v.decode() for k, v in record.headers}
        assert not _RAW_CONTROL.search(headers["error"])
        key, value = messages[offset]
        if offset in (1, 4, 6):  # reduced: the original cannot go as it is
            assert headers["dead_letter"] == "reduced"
            assert headers["dead_letter_reason"]
            assert headers["original_value_length"] == (
                "null" if value is None else str(len(value))
            )
            assert headers["original_key_length"] == ("null" if key is None else str(len(key)))
            if value is not None:
                assert headers["original_value_sha256"] == hashlib.sha256(value).hexdigest()
                assert record.value == value[:REDUCED_VALUE_BYTES]
        else:  # byte for byte, with the four usual headers
            assert (record.key, record.value) == (key, value)
            assert set(headers) == {"error", "source_topic", "source_partition", "source_offset"}
    # over the producer's own 16 MB limit: refused before sending, and said so in the
    # client's words (kafka-python MessageSizeTooLargeError, librdkafka MSG_SIZE_TOO_LARGE)
    reason = dict(letters[6].headers)["dead_letter_reason"].decode()
    assert re.search(r"(?i)(message|msg)_?size_?too_?large", reason), reason


def test_a_flush_written_but_never_dead_lettered_is_dead_lettered_on_restart(make_settings):  # noqa: F811
    """A crash between writing a flush and its dead letters, before any commit: the restart
    keeps the complete flush (no committed offset: the lake says where to resume) and sends
    its rejects to the DLQ, so _rejected and the DLQ agree."""
    settings = make_settings()
    values = [
        enc(llm_call(0, occurred_at="2026-11-25T10:00:00Z")),
        b"not json",
        enc(llm_call(1, occurred_at="2026-11-25T10:00:00Z")),
        None,
    ]
    keys = [b"task-0", b"bad-1", b"task-1", b"bad-2"]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    try:
        for key, value in zip(keys, values, strict=True):
            producer.send(settings.topic, key=key, value=value, partition=0).get(timeout=30)
    finally:
        producer.close()
    # the crashed consumer's flush: files written, dead letters never sent, nothing committed
    sink = Sink(settings, dead_letter=None)
    try:
        sink.add(
            RawBatch([0] * 4, list(range(4)), keys, values, dt.datetime.now(dt.UTC), [(0, 0, 4)])
        )
        (flushed,) = sink.flush()
        assert (flushed.landed, flushed.rejected) == (2, 2)
    finally:
        sink.close()

    proc = consume_cli(settings, "--until-idle", "2", "--flush-seconds", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dead letters of the last flush sent again" in proc.stderr
    dlq = read_dlq(settings.kafka_bootstrap_servers, settings.topic, 2)
    assert sorted((r.key, r.value, int(dict(r.headers)["source_offset"])) for r in dlq) == [
        (b"bad-1", b"not json", 1),
        (b"bad-2", None, 3),
    ]
    rows = lake_rows(settings.lake, "llm_call") + lake_rows(settings.lake, "_rejected")
    assert sorted(r["kafka_offset"] for r in rows) == [0, 1, 2, 3], "nothing read twice"


# Raw characters no output may contain (newline and tab are layout, never data: data with
# them is refused or escaped); and tags no HTML output may contain where data was shown.
_RAW = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]"
)
_MARKUP = [
    "[/]",
    "[/bold]",
    "arch[i]itect",
    "[bold red]glm-4.5[/]",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "![t](https://example.invalid/t.png)",
    "a|b\\c",
]


def _cost(book, row: dict) -> Decimal:
    occurred = dt.datetime.fromisoformat(row["occurred_at"])
    price = book.price_at(row["provider"], row["model"], occurred)
    assert price is not None
    return (
        row["input_tokens"] * price.usd_per_mtok_input
        + row["output_tokens"] * price.usd_per_mtok_output
        + row["cache_read_tokens"] * price.usd_per_mtok_cache_read
        + row["cache_write_5m_tokens"] * price.usd_per_mtok_cache_write_5m
        + row["cache_write_1h_tokens"] * price.usd_per_mtok_cache_write_1h
    ) / 1_000_000


def test_a_hostile_run_through_consume_build_report_and_dq(make_settings, kafka_broker, tmp_path):  # noqa: F811
    """Null key and value, oversized invalid messages on a topic that allows them, markup,
    control characters, bidi overrides and HTML in every string field, duplicate keys, mixed
    with valid events: consume (twice) exits 0, every offset is landed or rejected and in the
    DLQ, no output holds a raw control character or a tag made from data, and the valid
    events' costs are exact."""
    import duckdb

    from pipeline.cli import main
    from pipeline.prices import load_price_book

    settings = make_settings(topic=_topic(kafka_broker, f"hostile-run-{uuid.uuid4().hex[:8]}"))
    day = dt.date.today() - dt.timedelta(days=1)
    at = f"{day.isoformat()}T12:00:00Z"
    valid: list[dict] = []
    for i, markup in enumerate(_MARKUP):  # valid: markup and HTML are ordinary characters
        valid.append(
            llm_call(
                100 + i,
                occurred_at=at,
                role=markup,
                agent_id=markup,
                task_id=markup,
                policy_version=markup,
                task_type=markup,
            )
        )
        valid.append(
            llm_call(
                200 + i,
                occurred_at=at,
                provider="anthropic",
                model="claude-opus-4-1",
                escalated=True,
                escalation_trigger=markup,
            )
        )
        valid.append(llm_call(300 + i, occurred_at=at, provider=markup, model=markup))
    valid += [llm_call(400 + i, occurred_at=at, role="architect") for i in range(5)]
    messages: list[tuple[bytes | None, bytes | None]] = [(b"v", enc(e)) for e in valid]
    hostile = [m for m in _hostile_messages() if not (m[0] or b"").startswith(b"task-")]
    for field in (
        "agent_id",
        "task_id",
        "role",
        "provider",
        "model",
        "policy_version",
        "task_type",
    ):
        for char in ("\x1b[2J", "\x07", "\x00", "\x7f", "\r", "\u202e", "\u200b"):
            hostile.append((b"h", enc(llm_call(500, occurred_at=at, **{field: f"a{char}b"}))))
    messages = [m for pair in zip_longest(messages, hostile) for m in pair if m is not None]
    _produce(settings.kafka_bootstrap_servers, settings.topic, messages)

    for _ in range(2):
        proc = consume_cli(settings, "--until-idle", "2", "--flush-seconds", "1", timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
    landed = lake_rows(settings.lake, "llm_call")
    rejected = lake_rows(settings.lake, "_rejected")
    assert sorted(r["kafka_offset"] for r in landed + rejected) == list(range(len(messages)))
    assert len(landed) == len(valid)
    dlq = read_dlq(settings.kafka_bootstrap_servers, settings.topic, len(rejected))
    assert {int(dict(r.headers)["source_offset"]) for r in dlq} == {
        r["kafka_offset"] for r in rejected
    }

    common = [
        "--lake",
        str(settings.lake),
        "--warehouse",
        str(settings.warehouse),
        "--policy",
        str(settings.policy),
        "--prices",
        str(settings.prices),
    ]
    assert main(["build", *common]) == 0
    outputs = {}
    for fmt in ("text", "markdown", "json", "html"):
        path = tmp_path / f"report.{fmt}"
        assert (
            main(
                [
                    "report",
                    "--warehouse",
                    str(settings.warehouse),
                    "--date",
                    day.isoformat(),
                    "--format",
                    fmt,
                    "--output",
                    str(path),
                ]
            )
            == 0
        )
        outputs[fmt] = path.read_text(encoding="utf-8")
    dq_json = tmp_path / "dq.json"
    code = main(["dq", "--date", day.isoformat(), *common, "--output", str(dq_json)])
    assert code in (0, 1)  # unknown roles and models fail checks; it must run and say so
    outputs["dq"] = dq_json.read_text(encoding="utf-8")
    docs = list((settings.lake.parent / "dq" / "data_docs").rglob("*.html"))
    assert docs, "dq built its data docs"
    for page in docs:
        outputs[str(page)] = page.read_text(encoding="utf-8")

    for name, text in outputs.items():
        assert not _RAW.search(text), (name, _RAW.search(text))
        if name in ("html",) or name.endswith(".html"):
            for tag in ("<img src=x", "<script>alert"):
                assert tag not in text, (name, tag)
    assert "[bold red]glm-4.5[/]" in outputs["text"], "markup shown as text, not interpreted"
    assert not re.search(r"(?<!\\)(<img|<script|!\[t)", outputs["markdown"]), "inert markdown"

    book = load_price_book(settings.prices)
    want = sum(
        (
            _cost(book, e)
            for e in valid
            if book.price_at(e["provider"], e["model"], dt.datetime.fromisoformat(e["occurred_at"]))
        ),
        Decimal(0),
    )
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        got = con.execute("select sum(cost_usd) from fct_llm_calls").fetchone()[0]
    finally:
        con.close()
    assert got == want
