"""modelmeter: usage analytics for hybrid LLM routing (Kafka -> Parquet lake -> DuckDB).

The public API for agents::

    from pipeline import UsageProducer, anthropic_tokens, openai_tokens

    with UsageProducer() as meter:
        meter.llm_call(role="coder", agent_id="agent-7", task_id="T-42", provider="zai",
                       model="glm-4.5", **openai_tokens(response.usage))

See ``docs/events.md`` for the event contract. Names are imported on first use, so that
``import pipeline`` (and ``modelmeter --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # producer SDK
    "UsageProducer": "pipeline.sdk",
    "RawMessage": "pipeline.sdk",
    "new_event_id": "pipeline.sdk",
    # the v1 event contract
    "LlmCall": "pipeline.contract",
    "TaskFeedback": "pipeline.contract",
    "Event": "pipeline.contract",
    "EVENT_ADAPTER": "pipeline.contract",
    "parse_event": "pipeline.contract",
    "validate_event": "pipeline.contract",
    "to_row": "pipeline.contract",
    "event_date": "pipeline.contract",
    "export_json_schema": "pipeline.contract",
    # provider usage mappings
    "TokenCounts": "pipeline.providers",
    "anthropic_tokens": "pipeline.providers",
    "openai_tokens": "pipeline.providers",
    "usage_tokens": "pipeline.providers",
    # settings
    "Settings": "pipeline.settings",
    # exceptions
    "PipelineError": "pipeline._exceptions",
    "ConfigError": "pipeline._exceptions",
    "PolicyError": "pipeline._exceptions",
    "PriceBookError": "pipeline._exceptions",
    "NoDataError": "pipeline._exceptions",
    "ContractError": "pipeline._exceptions",
    "KafkaError": "pipeline._exceptions",
    "KafkaUnavailableError": "pipeline._exceptions",
    "KafkaAuthError": "pipeline._exceptions",
    "ProducerBufferFullError": "pipeline._exceptions",
    "LakeWriteError": "pipeline._exceptions",
    "ObjectStoreUnavailableError": "pipeline._exceptions",
    "WarehouseError": "pipeline._exceptions",
    "Transient": "pipeline._exceptions",
    "Terminal": "pipeline._exceptions",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from pipeline._exceptions import (  # noqa: F401
        ConfigError,
        ContractError,
        KafkaAuthError,
        KafkaError,
        KafkaUnavailableError,
        LakeWriteError,
        NoDataError,
        ObjectStoreUnavailableError,
        PipelineError,
        PolicyError,
        PriceBookError,
        ProducerBufferFullError,
        Terminal,
        Transient,
        WarehouseError,
    )
    from pipeline.contract import (  # noqa: F401
        EVENT_ADAPTER,
        Event,
        LlmCall,
        TaskFeedback,
        event_date,
        export_json_schema,
        parse_event,
        to_row,
        validate_event,
    )
    from pipeline.providers import TokenCounts, anthropic_tokens, openai_tokens, usage_tokens  # noqa: F401
    from pipeline.sdk import RawMessage, UsageProducer, new_event_id  # noqa: F401
    from pipeline.settings import Settings  # noqa: F401
