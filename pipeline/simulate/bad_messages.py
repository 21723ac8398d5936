"""The bad-message catalogue of the simulator (``--bad-fraction``).

Each kind breaks the event contract (docs/events.md) in exactly one way; an unknown model is
NOT bad (it is a valid, unpriced event). A bad message is made from a valid event, with an
event_id of its own that never collides with a valid one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["BAD_KINDS", "bad_message"]


def _mutate(**changes: Any) -> Callable[[dict[str, Any], random.Random], bytes]:
    def make(ev: dict[str, Any], rng: random.Random) -> bytes:
        out = dict(ev)
        for k, v in changes.items():
            if v is _DROP:
                out.pop(k, None)
            else:
                out[k] = v
        return orjson.dumps(out)

    return make


_DROP = object()

BAD_KINDS: dict[str, Callable[[dict[str, Any], random.Random], bytes | None]] = {
    "not_json": lambda ev, rng: b"agent-usage: " + orjson.dumps(ev)[:40],
    "truncated_json": lambda ev, rng: orjson.dumps(ev)[: rng.randrange(10, 60)],
    "not_utf8": lambda ev, rng: b'{"event_id": "\xff\xfe", "event_type": "llm_call"}',
    "not_an_object": lambda ev, rng: orjson.dumps([ev["event_id"], ev["task_id"]]),
    "empty_value": lambda ev, rng: b"",
    "missing_event_id": _mutate(event_id=_DROP),
    "missing_model": _mutate(model=_DROP),
    "missing_occurred_at": _mutate(occurred_at=_DROP),
    "tokens_as_string": lambda ev, rng: _mutate(input_tokens=str(ev["input_tokens"]))(ev, rng),
    "tokens_as_float": lambda ev, rng: _mutate(output_tokens=ev["output_tokens"] + 0.5)(ev, rng),
    "tokens_as_bool": _mutate(cache_read_tokens=True),
    "negative_tokens": _mutate(output_tokens=-17),
    "too_many_tokens": _mutate(input_tokens=100_000_001),
    "unknown_field": lambda ev, rng: _mutate(inptu_tokens=ev["input_tokens"])(ev, rng),
    "unknown_event_type": _mutate(event_type="llm_response"),
    "wrong_schema_version": _mutate(schema_version=2),
    "timestamp_without_offset": lambda ev, rng: _mutate(
        occurred_at=ev["occurred_at"].replace("+00:00", "")
    )(ev, rng),
    "timestamp_not_a_date": _mutate(occurred_at="yesterday afternoon"),
    "escalated_without_trigger": _mutate(escalated=True, escalation_trigger=None),
    "trigger_without_escalation": _mutate(
        escalated=False, escalation_trigger="three_plus_services"
    ),
    "bad_event_id_characters": lambda ev, rng: _mutate(event_id=ev["event_id"] + "/retry#1")(
        ev, rng
    ),
    "status_unknown": _mutate(status="timeout"),
}


def bad_message(ev: dict[str, Any], rng: random.Random, bad_id: str) -> tuple[str, bytes | None]:
    """(kind, raw value) of a bad message made from the valid event ``ev``; its id is ``bad_id``."""
    kind = rng.choice(list(BAD_KINDS))
    template = dict(ev)
    if "event_id" in template:
        template["event_id"] = bad_id  # never collides with a valid event's id
    return kind, BAD_KINDS[kind](template, rng)
