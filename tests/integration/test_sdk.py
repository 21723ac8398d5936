"""The producer SDK against the real broker: round trip, validation at the agent, failures.

No mock anywhere: failures are real (a closed port, a broker that refuses a record, a batch
held back by linger, a stopped broker). Every test runs with both transports
(MODELMETER_KAFKA_CLIENT=kafka-python and =confluent).
"""

from __future__ import annotations

import datetime as dt
import gc
import re
import socket
import time
import uuid
import warnings

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from pipeline import (
    ContractError,
    KafkaError,
    KafkaUnavailableError,
    LlmCall,
    ProducerBufferFullError,
    RawMessage,
    TaskFeedback,
    UsageProducer,
    anthropic_tokens,
    openai_tokens,
    parse_event,
)
from pipeline.contract import validate_event
from pipeline.sdk import serialize_event
from tests.fixtures.kafka_broker import ExternalBroker, free_port

pytestmark = pytest.mark.kafka


@pytest.fixture(params=["kafka-python", "confluent"])
def make_settings(make_settings, request):
    """The conftest's make_settings, with the producer transport under test."""

    def make(**overrides):
        return make_settings(kafka_client=request.param, **overrides)

    return make


@pytest.fixture(autouse=True)
def _close_leaked_kafka_sockets():
    """kafka-python 3.0.12 does not close a socket whose connect failed (kafka/net/inet.py,
    sock_connect) and the error logged with it keeps the socket alive; when it is finally
    collected, its ResourceWarning (an error under filterwarnings=error) lands on whatever
    runs then. Close such never-connected sockets at the end of each test here."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
        for obj in gc.get_objects():
            # type(), not isinstance(): a dead weakref proxy raises on isinstance
            if type(obj) is socket.socket and obj.fileno() != -1 and _never_connected(obj):
                obj.close()


def _never_connected(sock: socket.socket) -> bool:
    """A TCP client socket whose connect failed: no peer, not listening, unbound address."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return False
    try:
        sock.getpeername()
    except OSError:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        return not listening and sock.getsockname()[0] in ("0.0.0.0", "::")
    return False


CALL = dict(
    role="coder",
    agent_id="agent-1",
    provider="zai",
    model="glm-4.5",
    input_tokens=100,
    output_tokens=20,
)


def read_all(settings, expected: int, timeout_s: float = 20.0) -> list:
    """Every message of settings.topic (from the beginning), waiting for ``expected`` of them."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    try:
        parts = [
            TopicPartition(settings.topic, p)
            for p in sorted(consumer.partitions_for_topic(settings.topic) or ())
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        messages: list = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                messages.extend(batch)
        return messages
    finally:
        consumer.close()


def end_offsets(settings) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        parts = [
            TopicPartition(settings.topic, p)
            for p in consumer.partitions_for_topic(settings.topic) or ()
        ]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def test_round_trip_creates_topics_and_events_parse_back_equal(make_settings, kafka_broker):
    """A missing topic is created (6 partitions + .dlq); events land keyed by task_id and
    parse back equal to what the SDK returned."""
    settings = make_settings(topic=f"sdk-new-{uuid.uuid4().hex[:8]}")
    sent: list[LlmCall | TaskFeedback] = []
    with UsageProducer(settings) as meter:
        for i in range(30):
            task = f"task-{i % 7}"
            sent.append(
                meter.llm_call(
                    task_id=task,
                    **CALL,
                    cache_read_tokens=i,
                    latency_ms=i * 10,
                    policy_version="v1",
                    task_type="bugfix",
                )
            )
            if i % 3 == 0:
                sent.append(
                    meter.llm_call(
                        task_id=task,
                        role="reviewer",
                        agent_id="agent-2",
                        provider="anthropic",
                        model="claude-opus-4-1",
                        escalated=True,
                        escalation_trigger="security_sensitive",
                        **anthropic_tokens(
                            {
                                "input_tokens": 50,
                                "output_tokens": 5,
                                "cache_creation": {"ephemeral_1h_input_tokens": 9},
                            }
                        ),
                    )
                )
            if i % 5 == 0:
                sent.append(
                    meter.task_feedback(
                        task_id=task,
                        role="coder",
                        agent_id="agent-1",
                        satisfaction=4,
                        escalation_needed=False,
                    )
                )
    assert meter.pending == 0 and meter.delivered == len(sent) and not meter.undelivered

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        described = {
            t["name"]: t for t in admin.describe_topics([settings.topic, settings.dlq_topic])
        }
    finally:
        admin.close()
    assert len(described[settings.topic]["partitions"]) == 6
    assert len(described[settings.dlq_topic]["partitions"]) == 6

    messages = read_all(settings, len(sent))
    assert len(messages) == len(sent)
    by_id = {e.event_id: e for e in sent}
    partition_of_task: dict[bytes, int] = {}
    for m in messages:
        event = parse_event(m.value)
        assert event == by_id.pop(event.event_id)
        assert m.key == event.task_id.encode()
        assert partition_of_task.setdefault(m.key, m.partition) == m.partition
        # the Java client's assignment (murmur2 of the key), as librdkafka's murmur2_random
        assert m.partition == (murmur2(m.key) & 0x7FFFFFFF) % 6
    assert not by_id


def test_the_transport_lands_keyed_messages_in_order_on_murmur2s_partition(make_settings):
    """Both transports, through the libraries' public send: keyed messages land on murmur2's
    partition in send order, a message without a key lands too, and one over the client's
    request limit is refused at send (an error, never a silent drop)."""
    from pipeline.kafka_admin import ensure_topics
    from pipeline.transport import open_producer

    settings = make_settings(topic=f"sdk-send-{uuid.uuid4().hex[:8]}")
    ensure_topics(settings)
    transport = open_producer(settings, settings.topic, max_buffer=1000, options={})
    try:
        assert transport.name == settings.kafka_client
        sent = [
            (f"task-{i % 13}".encode(), f"value-{i}".encode() * (1 + i % 50)) for i in range(300)
        ]
        handles = [transport.send(value, key) for key, value in sent]
        handles.append(transport.send(b"no key", None))
        try:  # refused at send (librdkafka, kafka-python 3) or as a failed handle (2.x)
            big = transport.send(b"x" * (2 * 1024 * 1024), b"big")
        except Exception as exc:
            refusal: BaseException | None = exc
        else:
            refusal = big.exception if big.is_done else None
        assert refusal is not None and re.search(r"(?i)too.?large", repr(refusal)), refusal
        assert transport.flush(30)
        transport.serve()  # confluent: delivery reports are served in the caller's thread
        assert all(h.is_done and h.exception is None for h in handles)
    finally:
        transport.close(10)
    messages = read_all(settings, len(sent) + 1)
    expected = [*sent, (None, b"no key")]
    assert sorted((m.key or b"", m.value) for m in messages) == sorted(
        (k or b"", v) for k, v in expected
    )
    for m in messages:
        if m.key is not None:
            assert m.partition == (murmur2(m.key) & 0x7FFFFFFF) % 6
    by_partition: dict[int, list[bytes]] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        by_partition.setdefault(m.partition, []).append(m.value)
    for values in by_partition.values():  # in send order within a partition
        assert values == [v for _, v in expected if v in values]


def test_event_id_and_occurred_at_are_filled_in_or_kept(make_settings):
    """The SDK fills a fresh event_id and now (UTC); given values are kept (a re-send)."""
    settings = make_settings()
    before = dt.datetime.now(dt.UTC)
    with UsageProducer(settings) as meter:
        a = meter.llm_call(task_id="t", **CALL)
        b = meter.llm_call(task_id="t", **CALL)
        at = dt.datetime(2025, 3, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        again = meter.llm_call(task_id="t", event_id=a.event_id, occurred_at=at, **CALL)
    assert a.event_id != b.event_id and len(a.event_id) == 32
    assert before <= a.occurred_at <= dt.datetime.now(dt.UTC)
    assert again.event_id == a.event_id
    assert again.occurred_at == dt.datetime(2025, 3, 1, 10, 30, tzinfo=dt.UTC)
    ids = [parse_event(m.value).event_id for m in read_all(settings, 3)]
    assert sorted(ids) == sorted([a.event_id, b.event_id, a.event_id])


def test_every_argument_lands_in_its_own_field(make_settings):
    """llm_call / task_feedback hand each argument to its own contract field (the SDK passes
    them positionally to the compiled check): with every value distinct, the events returned
    equal the contract's own validation of the same arguments and the bytes that land are
    those events' JSON."""
    settings = make_settings()
    at = dt.datetime(2025, 7, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    call = dict(
        event_id="id-1",
        occurred_at=at,
        agent_id="agent-a",
        task_id="task-b",
        role="role-c",
        provider="prov-d",
        model="model-e",
        input_tokens=1,
        output_tokens=2,
        cache_read_tokens=3,
        cache_write_5m_tokens=4,
        cache_write_1h_tokens=5,
        latency_ms=6,
        status="error",
        escalated=True,
        escalation_trigger="trig-f",
        policy_version="pol-g",
        task_type="type-h",
    )
    feedback = dict(
        event_id="id-2",
        occurred_at=at,
        agent_id="agent-ï",
        task_id="task-j",
        role="role-k",
        satisfaction=2,
        escalation_needed=False,
        review_consistent=True,
    )
    with UsageProducer(settings) as meter:
        sent = [meter.llm_call(**call), meter.task_feedback(**feedback)]
    expected = [
        validate_event({**call, "event_type": "llm_call", "schema_version": 1}),
        validate_event({**feedback, "event_type": "task_feedback", "schema_version": 1}),
    ]
    assert sent == expected
    assert [e.model_fields_set for e in sent] == [e.model_fields_set for e in expected]
    landed = {m.key: m.value for m in read_all(settings, 2)}
    assert landed == {
        b"task-b": serialize_event(expected[0]),
        b"task-j": serialize_event(expected[1]),
    }


def test_bad_event_raises_at_the_agent_and_nothing_is_sent(make_settings):
    """A contract violation raises ContractError naming the field; the topic stays empty."""
    settings = make_settings()
    with UsageProducer(settings) as meter:
        with pytest.raises(ContractError, match="^input_tokens: must be an integer, got string$"):
            meter.llm_call(task_id="t", **{**CALL, "input_tokens": "100"})
        with pytest.raises(
            ContractError, match="^escalation_trigger: required when escalated is true$"
        ):
            meter.llm_call(task_id="t", escalated=True, **CALL)
        with pytest.raises(ContractError, match="^occurred_at: must have a UTC offset"):
            meter.llm_call(task_id="t", occurred_at=dt.datetime(2025, 1, 1), **CALL)
        with pytest.raises(ContractError, match="^satisfaction: must be <= 5, got 6$"):
            meter.task_feedback(task_id="t", role="coder", agent_id="a", satisfaction=6)
        with pytest.raises(ContractError, match=r"cached_tokens \(9\) exceeds"):
            meter.llm_call(
                task_id="t",
                role="coder",
                agent_id="a",
                provider="zai",
                model="glm-4.5",
                **openai_tokens(
                    {
                        "prompt_tokens": 5,
                        "completion_tokens": 1,
                        "prompt_tokens_details": {"cached_tokens": 9},
                    }
                ),
            )
        with pytest.raises(ContractError, match="^unknown event_type 'nope'$"):
            meter.send({"event_type": "nope"})
        unchecked = LlmCall.model_construct(
            **{
                **CALL,
                "event_id": "x",
                "event_type": "llm_call",
                "schema_version": 1,
                "task_id": "t",
                "occurred_at": dt.datetime.now(dt.UTC),
                "output_tokens": -5,
            }
        )
        with pytest.raises(ContractError, match="^output_tokens: must be >= 0, got -5$"):
            meter.send(unchecked)
        assert meter.sent == 0
    assert end_offsets(settings) == 0


def test_send_prebuilt_events_and_raw_bytes(make_settings):
    """send() takes a model or a dict (validated); send_raw() and send_raw_many() send bytes
    untouched."""
    settings = make_settings()
    model = LlmCall(
        event_id="pre-built-1",
        event_type="llm_call",
        schema_version=1,
        occurred_at=dt.datetime(2025, 5, 1, tzinfo=dt.UTC),
        agent_id="a",
        task_id="t1",
        role="coder",
        provider="zai",
        model="glm-4.5",
        input_tokens=1,
        output_tokens=1,
    )
    data = {
        "event_id": "from-dict-1",
        "event_type": "task_feedback",
        "schema_version": 1,
        "occurred_at": dt.datetime(2025, 5, 1, tzinfo=dt.UTC),
        "agent_id": "a",
        "task_id": "t2",
        "role": "coder",
        "review_consistent": True,
    }
    with UsageProducer(settings) as meter:
        meter.send(model)
        fed = meter.send(data)
        meter.send_raw(b"t3", b"not json at all")
        meter.send_raw(None, b"")
        assert meter.send_raw_many(iter([(b"t4", b"raw-%d" % i) for i in range(3000)])) == 3000
    assert isinstance(fed, TaskFeedback)
    assert meter.sent == meter.delivered == 3004
    values = {m.value: m.key for m in read_all(settings, 3004)}
    assert values[b"not json at all"] == b"t3" and values[b""] is None
    assert all(values.pop(b"raw-%d" % i) == b"t4" for i in range(3000))
    events = {parse_event(v).event_id for v in values if v.startswith(b"{")}
    assert events == {"pre-built-1", "from-dict-1"}


def test_unreachable_broker_raises_kafka_unavailable(make_settings):
    """Nothing listening at the bootstrap address: KafkaUnavailableError within the timeout."""
    settings = make_settings(
        kafka=False,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_bootstrap_timeout=1.5,
        topic="never-created",
    )
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match="cannot reach Kafka at 127.0.0.1:"):
        UsageProducer(settings)
    with pytest.raises(KafkaUnavailableError):
        UsageProducer(settings, create_topics=False)
    assert time.monotonic() - started < 60  # bounded, not a hang (the limit is generous)


def test_refused_events_go_to_on_error_and_flush_raises(make_settings, kafka_broker):
    """Events (and raw messages) the broker refuses (record too large for the topic) reach
    on_error with the error, stay in producer.undelivered, and flush() raises; accepted ones land."""
    name = f"sdk-small-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics(
            {
                name: {
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "configs": {"max.message.bytes": "600"},
                },
                f"{name}.dlq": {"num_partitions": 1, "replication_factor": 1},
            },
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    settings = make_settings(topic=name)
    failures: list = []
    meter = UsageProducer(
        settings, on_error=lambda event, error: failures.append((event, error)), linger_ms=0
    )
    small = meter.llm_call(task_id="t", **CALL)
    meter.flush()
    big = meter.llm_call(
        task_id="t",
        **{
            **CALL,
            "task_type": "x" * 128,
            "policy_version": "v" * 64,
            "agent_id": "a" * 128,
            "role": "r" * 64,
            "model": "m" * 128,
            "provider": "p" * 128,
        },
    )
    meter.send_raw_many([(b"t", b"x" * 700)])
    with pytest.raises(KafkaError, match="^2 usage events could not be delivered to 'sdk-small-"):
        meter.flush()
    assert [event for event, _ in failures] == [big, (b"t", b"x" * 700)]
    assert isinstance(failures[1][0], RawMessage) and failures[1][0].value == b"x" * 700
    assert meter.undelivered == failures
    meter.flush()  # reported once: a later flush with nothing new failing passes
    meter.close()
    assert [parse_event(m.value) for m in read_all(settings, 1)] == [small]


def test_full_buffer_raises_after_max_block_and_keeps_the_queue(make_settings):
    """When max_buffer events await the broker, send waits max_block_ms then raises
    ProducerBufferFullError; the queued events are still delivered by flush()."""
    settings = make_settings()
    # A long linger holds the batch back: the broker does not acknowledge until flush().
    meter = UsageProducer(settings, max_buffer=3, max_block_ms=300, linger_ms=60_000)
    queued = [meter.llm_call(task_id=f"t{i}", **CALL) for i in range(3)]
    started = time.monotonic()
    with pytest.raises(ProducerBufferFullError, match="3 usage events are still waiting"):
        meter.llm_call(task_id="t3", **CALL)
    assert time.monotonic() - started >= 0.3
    assert meter.pending == 3 and meter.sent == 3
    meter.flush(timeout=30)
    assert meter.pending == 0 and meter.delivered == 3
    meter.llm_call(task_id="t4", **CALL)  # room again
    meter.close()
    landed = {parse_event(m.value).event_id for m in read_all(settings, 4)}
    assert {e.event_id for e in queued} <= landed and len(landed) == 4


def test_broker_lost_mid_stream_nothing_is_dropped_silently(make_settings, kafka_broker):
    """The broker goes away after start: undelivered events reach on_error after
    delivery_timeout_ms and flush() raises; the broker comes back for the next tests."""
    if isinstance(kafka_broker, ExternalBroker):
        pytest.skip("cannot stop an external broker")
    settings = make_settings()
    failures: list = []
    meter = UsageProducer(
        settings,
        on_error=lambda event, error: failures.append(event),
        delivery_timeout_ms=4000,
        request_timeout_ms=2000,
        linger_ms=0,
        reconnect_backoff_max_ms=500,
    )
    first = meter.llm_call(task_id="t", **CALL)
    meter.flush()
    kafka_broker.stop()
    try:
        lost = [meter.llm_call(task_id=f"t{i}", **CALL) for i in range(5)]
        with pytest.raises(KafkaError, match="^5 usage events could not be delivered"):
            meter.flush(timeout=60)
        assert sorted(e.event_id for e in failures) == sorted(e.event_id for e in lost)
    finally:
        kafka_broker.start()
    meter.close()
    assert [parse_event(m.value) for m in read_all(settings, 1)] == [first]


def test_confluent_full_client_queue_raises_after_max_block(make_settings):
    """With librdkafka's own queue full (queue.buffering.max.messages below max_buffer) send
    waits max_block_ms, then raises ProducerBufferFullError; the queued events still land."""
    settings = make_settings()
    if settings.kafka_client != "confluent":
        pytest.skip("librdkafka's queue bound")
    meter = UsageProducer(
        settings,
        max_buffer=100,
        max_block_ms=300,
        linger_ms=60_000,
        **{"queue.buffering.max.messages": 2},
    )
    queued = [meter.llm_call(task_id=f"t{i}", **CALL) for i in range(2)]
    with pytest.raises(ProducerBufferFullError, match="2 usage events are still waiting"):
        meter.llm_call(task_id="t2", **CALL)
    assert meter.sent == 2
    meter.close()
    assert meter.delivered == 2
    assert {parse_event(m.value).event_id for m in read_all(settings, 2)} == {
        e.event_id for e in queued
    }


def test_confluent_transport_uses_the_same_security_settings(secure_broker, tmp_path):  # noqa: F811
    """The confluent transport over SASL_SSL (SCRAM-SHA-512 and PLAIN, trusting only the test
    CA) lands events a kafka-python consumer with the same settings reads back; a wrong
    password is KafkaAuthError at once and an untrusted CA too, as with kafka-python."""
    from kafka import KafkaConsumer

    from pipeline import KafkaAuthError
    from pipeline.kafka_connect import create_client
    from tests.fixtures.secure_kafka import secure_settings

    topic = f"secure-confluent-{uuid.uuid4().hex[:8]}"
    sent = []
    for mechanism in ("SCRAM-SHA-512", "PLAIN"):
        settings = secure_settings(secure_broker, tmp_path, mechanism=mechanism).with_overrides(
            kafka_client="confluent", topic=topic
        )
        with UsageProducer(settings) as meter:
            sent += [meter.llm_call(task_id=f"T-{i}", **CALL) for i in range(10)]
    consumer = create_client(
        KafkaConsumer,
        settings,
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        landed = {parse_event(m.value).event_id for m in consumer}
    finally:
        consumer.close()
    assert landed == {e.event_id for e in sent}
    for bad in (dict(password="wrong"), dict(ca_file=secure_broker.untrusted_ca_file)):
        settings = secure_settings(secure_broker, tmp_path, **bad).with_overrides(
            kafka_client="confluent", topic=topic
        )
        with pytest.raises(KafkaAuthError):
            UsageProducer(settings, create_topics=False)
