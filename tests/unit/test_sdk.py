"""The SDK's pure parts: event ids and argument checks (no broker; see
tests/integration/test_sdk.py for everything that crosses Kafka)."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import zoneinfo

import pytest

from pipeline import sdk
from pipeline._exceptions import ConfigError
from pipeline.contract import EVENT_ADAPTER, EVENT_ID_PATTERN, LlmCall, TaskFeedback, parse_event
from pipeline.sdk import RawMessage, UsageProducer, new_event_id, serialize_event


def test_event_ids_are_32_hex_digits_and_fit_the_contract():
    """Generated ids are 128-bit hex and satisfy the contract's event_id pattern."""
    ids = {new_event_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) and re.fullmatch(EVENT_ID_PATTERN, i) for i in ids)


def test_event_ids_ignore_the_global_random_seed():
    """Seeding the global random module (the simulator does) does not repeat event ids."""
    random.seed(42)
    first = [new_event_id() for _ in range(3)]
    random.seed(42)
    assert [new_event_id() for _ in range(3)] != first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_draw_different_event_ids():
    """A forked process is reseeded, so parent and child ids differ."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != new_event_id()


def test_raw_message_is_key_and_value():
    """send_raw's on_error item exposes the key and value it was given."""
    message = RawMessage((b"k", b"v"))
    assert (message.key, message.value) == (b"k", b"v") == tuple(message)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"max_buffer": 0}, "max_buffer must be >= 1, got 0"),
        ({"max_block_ms": -1}, "max_block_ms must be >= 0, got -1"),
    ],
)
def test_bad_arguments_are_config_errors_before_any_connection(make_settings, kwargs, reason):
    """Bad SDK arguments raise ConfigError (exit 2) before touching Kafka."""
    settings = make_settings(kafka=False, kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(ConfigError, match=reason):
        UsageProducer(settings, **kwargs)


def test_the_sdks_checks_are_the_compiled_contract_and_send_the_same_bytes():
    """llm_call/task_feedback check events with the validators compiled from the models
    (not pydantic's fallback); the bytes sent for such an event are those of the same event
    validated by pydantic, and the consumer's parse_event reads them back equal."""
    assert sdk._validate_llm_call.fast and sdk._validate_task_feedback.fast
    at = dt.datetime.now(zoneinfo.ZoneInfo("Europe/Paris")) - dt.timedelta(minutes=3)
    for model, check, data in [
        (
            LlmCall,
            sdk._validate_llm_call,
            {
                "event_id": new_event_id(),
                "event_type": "llm_call",
                "schema_version": 1,
                "occurred_at": at,
                "agent_id": "agent-é",
                "task_id": "T-1",
                "role": "coder",
                "provider": "anthropic",
                "model": "claude-opus-4-1",
                "input_tokens": 10,
                "output_tokens": 2,
                "cache_read_tokens": 0,
                "cache_write_5m_tokens": 3,
                "cache_write_1h_tokens": 0,
                "latency_ms": None,
                "status": "ok",
                "escalated": True,
                "escalation_trigger": "security_sensitive",
                "policy_version": None,
                "task_type": "x",
            },
        ),
        (
            TaskFeedback,
            sdk._validate_task_feedback,
            {
                "event_id": "fb-1",
                "event_type": "task_feedback",
                "schema_version": 1,
                "occurred_at": at,
                "agent_id": "a",
                "task_id": "T-1",
                "role": "coder",
                "satisfaction": None,
                "escalation_needed": False,
                "review_consistent": True,
            },
        ),
    ]:
        event = check(*data.values())
        reference = model.model_validate(data)
        assert serialize_event(event) == serialize_event(reference)
        assert parse_event(serialize_event(event)) == event == reference
        # a failed event is reported rebuilt from these bytes: equal to the one returned
        assert (
            EVENT_ADAPTER.validate_json(serialize_event(event), context=sdk._REBUILD_CONTEXT)
            == event
        )
