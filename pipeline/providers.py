"""Map the usage objects that provider SDKs return to the contract's token fields.

The contract counts tokens the Anthropic way: ``input_tokens`` are billed at the plain input
rate and exclude cache reads and cache writes. Each helper returns the five token fields of
:class:`~pipeline.contract.LlmCall`, ready to splat into the SDK::

    response = anthropic_client.messages.create(...)
    producer.llm_call(..., **anthropic_tokens(response.usage))

    response = glm_client.chat.completions.create(...)      # OpenAI-compatible (Z.ai GLM)
    producer.llm_call(..., **openai_tokens(response.usage))

    producer.llm_call(..., **usage_tokens(response.usage))  # either shape, detected

Usage may be a dict (raw JSON) or an object with attributes (the official SDKs return
pydantic objects). Missing or ``None`` counts are 0. Inconsistent usage (a negative count,
more cached tokens than prompt tokens, a 5m/1h split that does not add up) raises
:class:`~pipeline._exceptions.ContractError` naming the field.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pipeline._exceptions import ContractError
from pipeline.contract import MAX_TOKENS

__all__ = ["TokenCounts", "anthropic_tokens", "openai_tokens", "usage_tokens"]


class TokenCounts(TypedDict):
    """The token fields of an ``llm_call`` event."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int


_MISSING = object()


def _get(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` otherwise; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, _MISSING)
    if value is _MISSING:
        # Some SDK objects keep unknown fields in a dict (pydantic "extra", OpenAI model_extra).
        extra = getattr(obj, "model_extra", None)
        return extra.get(name) if isinstance(extra, dict) else None
    return value


def _count(obj: Any, name: str, where: str) -> int:
    value = _get(obj, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(
            f"{where}.{name}: must be an integer, got {type(value).__name__}",
            field=f"{where}.{name}",
        )
    if value < 0:
        raise ContractError(f"{where}.{name}: must be >= 0, got {value}", field=f"{where}.{name}")
    if value > MAX_TOKENS:
        raise ContractError(
            f"{where}.{name}: must be <= {MAX_TOKENS}, got {value}", field=f"{where}.{name}"
        )
    return value


def _has(obj: Any, name: str) -> bool:
    return _get(obj, name) is not None


def anthropic_tokens(usage: Any) -> TokenCounts:
    """Token fields from an Anthropic Messages ``usage``.

    ``input_tokens`` already excludes cache reads and writes. Cache writes are split by TTL
    in ``cache_creation.ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``; when
    only the total ``cache_creation_input_tokens`` is given, it is the default 5-minute TTL.
    """
    if usage is None:
        raise ContractError("usage: missing (None)", field="usage")
    split = _get(usage, "cache_creation")
    total_write = _count(usage, "cache_creation_input_tokens", "usage")
    if split is not None and (
        _has(split, "ephemeral_5m_input_tokens") or _has(split, "ephemeral_1h_input_tokens")
    ):
        write_5m = _count(split, "ephemeral_5m_input_tokens", "usage.cache_creation")
        write_1h = _count(split, "ephemeral_1h_input_tokens", "usage.cache_creation")
        if _has(usage, "cache_creation_input_tokens") and write_5m + write_1h != total_write:
            raise ContractError(
                f"usage.cache_creation: 5m ({write_5m}) + 1h ({write_1h}) cache writes do not add"
                f" up to cache_creation_input_tokens ({total_write})",
                field="usage.cache_creation",
            )
    else:
        write_5m, write_1h = total_write, 0
    return TokenCounts(
        input_tokens=_count(usage, "input_tokens", "usage"),
        output_tokens=_count(usage, "output_tokens", "usage"),
        cache_read_tokens=_count(usage, "cache_read_input_tokens", "usage"),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
    )


def openai_tokens(usage: Any) -> TokenCounts:
    """Token fields from an OpenAI-compatible ``usage`` (as Z.ai's GLM API returns it).

    ``prompt_tokens`` INCLUDES the cached tokens (``prompt_tokens_details.cached_tokens``),
    so the plain input is ``prompt_tokens - cached_tokens``; ``completion_tokens`` (which
    includes any reasoning tokens) is the output. These APIs bill no cache writes.
    """
    if usage is None:
        raise ContractError("usage: missing (None)", field="usage")
    prompt = _count(usage, "prompt_tokens", "usage")
    cached = _count(
        _get(usage, "prompt_tokens_details"), "cached_tokens", "usage.prompt_tokens_details"
    )
    if cached > prompt:
        raise ContractError(
            f"usage.prompt_tokens_details.cached_tokens ({cached}) exceeds usage.prompt_tokens"
            f" ({prompt}), which includes them",
            field="usage.prompt_tokens_details.cached_tokens",
        )
    return TokenCounts(
        input_tokens=prompt - cached,
        output_tokens=_count(usage, "completion_tokens", "usage"),
        cache_read_tokens=cached,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
    )


def usage_tokens(usage: Any) -> TokenCounts:
    """Token fields from either usage shape: OpenAI-compatible when it has ``prompt_tokens``,
    Anthropic when it has ``input_tokens``."""
    if _has(usage, "prompt_tokens"):
        return openai_tokens(usage)
    if _has(usage, "input_tokens"):
        return anthropic_tokens(usage)
    raise ContractError(
        "usage: neither Anthropic (input_tokens) nor OpenAI-compatible (prompt_tokens) usage",
        field="usage",
    )
