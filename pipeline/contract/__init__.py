"""The usage-event contract: the pydantic models and everything derived from them.

The models (:mod:`.models`) are the one statement of the contract. Derived from them:

* :mod:`.fields` - the fields as data (:data:`EVENT_FIELDS`: types, bounds, enumerations,
  required and nullable fields, rules), at import; read by the consumer's fast path
  (:mod:`pipeline.consumer.validate`, msgspec structs and Arrow column checks) and the lake's
  Arrow schemas (:mod:`pipeline.lake`);
* :mod:`.compiled_validator` - the SDK's compiled check, generated from a model's core schema;
* :mod:`.json_schema` - ``schemas/events.v1.schema.json``, exported by pydantic
  (``python -m pipeline.contract --write``; a unit test fails when it is stale);
* :mod:`.parsing` - :func:`parse_event` / :func:`validate_event` and the one-line reasons.

:mod:`.rules` holds the rules a field states in its metadata (printable identifiers, the
RFC 3339 timestamp and its bounds, a field present exactly when a flag is true, a lake
column type). ``tests/unit/test_contract_forms.py`` proves that every form agrees with the
models at every bound of every field; docs/events.md, "Changing the contract", lists the
steps of a change.

Parse one raw Kafka value (the consumer passes its batch time as ``now``)::

    event = parse_event(b'{"event_type": "llm_call", ...}', now=batch_time)
    row = to_row(event)          # lake columns minus the kafka_* / ingested_at source columns
    day = event_date(event)      # UTC date of occurred_at, the lake partition
"""

from __future__ import annotations

from pipeline.contract.compiled_validator import fast_validator
from pipeline.contract.fields import (
    EVENT_FIELDS,
    IDENTIFIER_FIELDS,
    ContractDerivationError,
    FieldSpec,
    event_fields,
)
from pipeline.contract.json_schema import SCHEMA_PATH, export_json_schema, main, render_json_schema
from pipeline.contract.models import (
    EVENT_ADAPTER,
    EVENT_ID_PATTERN,
    EVENT_MODELS,
    EVENT_TYPES,
    MAX_FUTURE,
    MAX_TOKENS,
    MIN_OCCURRED_AT,
    SCHEMA_VERSION,
    Event,
    LlmCall,
    TaskFeedback,
    event_date,
    to_row,
)
from pipeline.contract.parsing import contract_error, parse_event, validate_event

__all__ = [
    "SCHEMA_VERSION",
    "EVENT_TYPES",
    "EVENT_MODELS",
    "MIN_OCCURRED_AT",
    "MAX_FUTURE",
    "MAX_TOKENS",
    "EVENT_ID_PATTERN",
    "IDENTIFIER_FIELDS",
    "EVENT_FIELDS",
    "FieldSpec",
    "event_fields",
    "ContractDerivationError",
    "LlmCall",
    "TaskFeedback",
    "Event",
    "EVENT_ADAPTER",
    "parse_event",
    "validate_event",
    "fast_validator",
    "contract_error",
    "to_row",
    "event_date",
    "export_json_schema",
    "render_json_schema",
    "main",
    "SCHEMA_PATH",
]
