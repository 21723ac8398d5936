"""The SDK's pure parts: event ids and argument checks (no broker; see
tests/integration/test_sdk.py for everything that crosses Kafka)."""

from __future__ import annotations

import os
import random
import re

import pytest

from pipeline._exceptions import ConfigError
from pipeline.contract import EVENT_ID_PATTERN
from pipeline.sdk import RawMessage, UsageProducer, new_event_id


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


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"max_buffer": 0}, "max_buffer must be >= 1, got 0"),
    ({"max_block_ms": -1}, "max_block_ms must be >= 0, got -1"),
])
def test_bad_arguments_are_config_errors_before_any_connection(make_settings, kwargs, reason):
    """Bad SDK arguments raise ConfigError (exit 2) before touching Kafka."""
    settings = make_settings(kafka=False, kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(ConfigError, match=reason):
        UsageProducer(settings, **kwargs)
