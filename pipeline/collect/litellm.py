"""LiteLLM proxy's generic API logger (``POST /v1/litellm``) -> calls (docs/sources.md,
"LiteLLM").

::

    payloads = json_records(body)                                     # BodyError: 400
    for outcome in litellm_outcomes(payloads, mapping.litellm, builder): ...

The body is one StandardLoggingPayload (``log_format: single``), a JSON array of them
(``json_array``) or one per line (``ndjson``). A payload is read for ``id`` (the event id's
key), ``model``, ``custom_llm_provider``, ``prompt_tokens`` (it INCLUDES the cached tokens,
OpenAI's meaning), ``completion_tokens``, the cache counts of ``metadata.usage_object`` when
present (``cache_read_input_tokens`` or ``prompt_tokens_details.cached_tokens``,
``cache_creation_input_tokens``), ``startTime``/``endTime``, ``status``, ``request_tags``
(``role:<name>``, ``task:<id>``), ``trace_id`` and ``metadata`` (team and key aliases).
``response_cost`` is never read: the price book prices every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline._exceptions import ContractError
from pipeline.collect.records import (
    BodyError,
    CallBuilder,
    Found,
    Outcome,
    RecordError,
    as_count,
    from_epoch_seconds,
)
from pipeline.collect.sources import LiteLLMMapping
from pipeline.providers import anthropic_tokens

__all__ = ["litellm_outcomes"]


def _tags(payload: dict[str, Any]) -> list[str]:
    tags = payload.get("request_tags") or []
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _found(payload: Any, mapping: LiteLLMMapping) -> Found:
    if not isinstance(payload, dict):
        raise RecordError("bad value", f"expected a JSON object, got {type(payload).__name__}")
    record_id, model = payload.get("id"), payload.get("model")
    if not isinstance(record_id, str) or not record_id:
        raise RecordError("missing field", "no id")
    if not isinstance(model, str) or not model:
        raise RecordError("missing field", f"{record_id:.64}: no model")
    metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    usage = metadata.get("usage_object") if isinstance(metadata.get("usage_object"), dict) else {}
    assert isinstance(usage, dict)
    prompt = as_count(payload.get("prompt_tokens", 0), "prompt_tokens")
    completion = as_count(payload.get("completion_tokens", 0), "completion_tokens")
    details = usage.get("prompt_tokens_details")
    read = usage.get("cache_read_input_tokens")
    if read is None and isinstance(details, dict):
        read = details.get("cached_tokens")
    read_count = 0 if read is None else as_count(read, "cache_read_input_tokens")
    write = usage.get("cache_creation_input_tokens")
    write_count = 0 if write is None else as_count(write, "cache_creation_input_tokens")
    if read_count + write_count > prompt:
        raise RecordError(
            "inconsistent tokens",
            f"{record_id:.64}: prompt_tokens ({prompt}) fewer than the cached part"
            f" ({read_count} read + {write_count} written)",
        )
    try:
        tokens = anthropic_tokens(
            {
                "input_tokens": prompt - read_count - write_count,
                "output_tokens": completion,
                "cache_read_input_tokens": read_count,
                "cache_creation_input_tokens": write_count,
            }
        )
    except ContractError as exc:
        raise RecordError("bad number", str(exc)) from None
    start = payload.get("startTime")
    if start is None:
        raise RecordError("missing field", f"{record_id:.64}: no startTime")
    occurred = from_epoch_seconds(start, "startTime")
    end = payload.get("endTime")
    latency = None
    if isinstance(end, int | float) and not isinstance(end, bool) and end >= start:
        latency = int(round((end - start) * 1000))
    tags = _tags(payload)
    role_names = [
        t.removeprefix(mapping.role_tag_prefix)
        for t in tags
        if t.startswith(mapping.role_tag_prefix)
    ]
    role_map: dict[str, str] = {}
    team = metadata.get("user_api_key_team_alias")
    key_alias = metadata.get("user_api_key_alias")
    for name, table in ((team, mapping.teams), (key_alias, mapping.key_aliases)):
        if isinstance(name, str) and name:
            role_names.append(name)
            if name in table:
                role_map[name] = table[name]
    task = (
        next(
            (
                t.removeprefix(mapping.task_tag_prefix)
                for t in tags
                if t.startswith(mapping.task_tag_prefix)
            ),
            None,
        )
        or payload.get("trace_id")
        or record_id
    )
    provider = payload.get("custom_llm_provider")
    hint = mapping.provider_names.get(provider, provider) if isinstance(provider, str) else None
    agent = key_alias or metadata.get("user_api_key_end_user_id") or payload.get("end_user")
    return Found(
        source="litellm",
        key=(record_id,),
        model=model,
        tokens=tokens,
        occurred_at=occurred,
        task_id=str(task),
        agent_id=str(agent or "litellm"),
        role_names=role_names,
        role_map=role_map,
        provider_hint=hint,
        latency_ms=latency,
        status="error" if payload.get("status") == "failure" else "ok",
    )


def litellm_outcomes(
    payloads: list[Any], mapping: LiteLLMMapping, builder: CallBuilder
) -> Iterator[Outcome]:
    """One outcome per payload: the call's fields or a refusal."""
    for payload in payloads:
        if isinstance(payload, BodyError):
            yield RecordError("not json", str(payload))
            continue
        try:
            yield builder.fields(_found(payload, mapping))
        except RecordError as exc:
            yield exc
