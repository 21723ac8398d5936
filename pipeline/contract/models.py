"""The v1 usage events as pydantic models: the one statement of the contract.

Everything else about an event is derived from these classes (:mod:`pipeline.contract`
lists the derived forms). A field states its whole rule in its annotation: the type,
pydantic's constraints (``min_length``, ``max_length``, ``ge``, ``le``, ``pattern``), a
``Literal`` for an enumeration, ``| None`` for a nullable field, a default for an optional
one, and the rules of :mod:`pipeline.contract.rules` (printable identifiers, the RFC 3339
timestamp and its bounds, a field present exactly when a flag is true, a lake column type
other than the default).

Types are strict: a token count is a JSON integer (``"1"``, ``true``, ``1.0`` and ``NaN``
are rejected, never coerced); strings are JSON strings; unknown fields are rejected.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pipeline.contract.rules import (
    PRINTABLE,
    LakeType,
    PresentIff,
    Rfc3339,
    duration_text,
    iso_utc,
    json_schema_rules,
)

__all__ = [
    "SCHEMA_VERSION",
    "MIN_OCCURRED_AT",
    "MAX_FUTURE",
    "MAX_TOKENS",
    "EVENT_ID_PATTERN",
    "LlmCall",
    "TaskFeedback",
    "EVENT_MODELS",
    "EVENT_TYPES",
    "Event",
    "EVENT_ADAPTER",
    "to_row",
    "event_date",
]

SCHEMA_VERSION = 1
MIN_OCCURRED_AT = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
MAX_FUTURE = dt.timedelta(minutes=10)
MAX_TOKENS = 100_000_000
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"

TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Timestamp = Annotated[dt.datetime, Rfc3339(earliest=MIN_OCCURRED_AT, max_future=MAX_FUTURE)]
Text64 = Annotated[str, Field(min_length=1, max_length=64)]
Text128 = Annotated[str, Field(min_length=1, max_length=128)]
# Identifiers (agent, task, role, provider, model, trigger, policy version, task type) are
# grouped on and printed: they must be printable (rules.Printable says why).
Identifier64 = Annotated[Text64, PRINTABLE]
Identifier128 = Annotated[Text128, PRINTABLE]


class _Envelope(BaseModel):
    """Fields every event carries; the field order is the lake's column order."""

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, json_schema_extra=json_schema_rules
    )

    event_id: str = Field(
        pattern=EVENT_ID_PATTERN,
        min_length=1,
        max_length=64,
        description="Made by the producer (UUID/ULID); a retry reuses it; the idempotency key.",
    )
    event_type: str
    schema_version: Annotated[int, LakeType("int32")] = Field(
        ge=SCHEMA_VERSION,
        le=SCHEMA_VERSION,
        description=f"Contract version; must be {SCHEMA_VERSION}.",
        json_schema_extra={"const": SCHEMA_VERSION},
    )
    occurred_at: Timestamp = Field(
        description=f"RFC 3339 timestamp with offset; stored as UTC; not before "
        f"{iso_utc(MIN_OCCURRED_AT).removesuffix('T00:00:00Z')}, not more than "
        f"{duration_text(MAX_FUTURE)} after the consumer's clock."
    )
    agent_id: Identifier128 = Field(description="The agent that made the call.")
    task_id: Identifier128 = Field(description="The task; also the Kafka message key.")
    role: Identifier64 = Field(description="A role of the routing policy.")


class LlmCall(_Envelope):
    """One model call: who called which model with how many tokens, and why (escalation)."""

    event_type: Literal["llm_call"]
    provider: Identifier128 = Field(
        description="e.g. zai, anthropic; prices are looked up by (provider, model)."
    )
    model: Identifier128 = Field(description="e.g. glm-4.5, claude-opus-4-1.")
    input_tokens: TokenCount = Field(
        description="Input tokens billed at the plain input rate (cached tokens excluded)."
    )
    output_tokens: TokenCount
    cache_read_tokens: TokenCount = 0
    cache_write_5m_tokens: TokenCount = 0
    cache_write_1h_tokens: TokenCount = 0
    latency_ms: Annotated[int, Field(ge=0, le=86_400_000)] | None = None
    status: Literal["ok", "error"] = "ok"
    escalated: bool = Field(
        False, description="True when the premium model was chosen by an escalation trigger."
    )
    escalation_trigger: Annotated[Text64 | None, PRINTABLE, PresentIff("escalated")] = Field(
        None,
        validate_default=True,
        description="Trigger id of the policy; required when escalated is true, null otherwise.",
    )
    policy_version: Annotated[Text64 | None, PRINTABLE] = None
    task_type: Annotated[Text128 | None, PRINTABLE] = None


class TaskFeedback(_Envelope):
    """Feedback on one task: user satisfaction and reviewers' verdicts."""

    event_type: Literal["task_feedback"]
    satisfaction: Annotated[Annotated[int, Field(ge=1, le=5)] | None, LakeType("int32")] = Field(
        None, description="User satisfaction with the task's result, 1-5."
    )
    escalation_needed: bool | None = Field(
        None, description="A reviewer's verdict: was the premium model needed?"
    )
    review_consistent: bool | None = Field(
        None, description="A critic review agreed with an independent second review."
    )


Event = Annotated[LlmCall | TaskFeedback, Field(discriminator="event_type")]
EVENT_ADAPTER: TypeAdapter[LlmCall | TaskFeedback] = TypeAdapter(Event)
# event_type -> model, in the order of the union (the lake's tables)
EVENT_MODELS: dict[str, type[LlmCall | TaskFeedback]] = {
    get_args(model.model_fields["event_type"].annotation)[0]: model
    for model in get_args(get_args(Event)[0])
}
EVENT_TYPES = tuple(EVENT_MODELS)


def to_row(event: LlmCall | TaskFeedback) -> dict[str, Any]:
    """The event as a lake row: the columns of its lake schema minus the source columns."""
    return event.model_dump()


def event_date(event: LlmCall | TaskFeedback) -> dt.date:
    """UTC date of ``occurred_at``: the lake partition of the event."""
    return event.occurred_at.astimezone(dt.UTC).date()
