"""Provider usage objects map to the contract's token fields (Anthropic convention)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ConfigDict

from pipeline._exceptions import ContractError
from pipeline.contract import LlmCall
from pipeline.providers import anthropic_tokens, openai_tokens, usage_tokens


class SdkObject(BaseModel):
    """Like the official SDKs' response objects: attributes, unknown keys kept as extras."""

    model_config = ConfigDict(extra="allow")


def tokens(i: int, o: int, read: int = 0, w5: int = 0, w1: int = 0) -> dict[str, int]:
    return {
        "input_tokens": i,
        "output_tokens": o,
        "cache_read_tokens": read,
        "cache_write_5m_tokens": w5,
        "cache_write_1h_tokens": w1,
    }


# --- Anthropic ----------------------------------------------------------------------------


def test_anthropic_plain_usage():
    """input/output map one to one; absent cache fields are 0."""
    assert anthropic_tokens({"input_tokens": 120, "output_tokens": 30}) == tokens(120, 30)


def test_anthropic_null_cache_fields_are_zero():
    """The API sends null cache counts when caching was not used."""
    usage = {
        "input_tokens": 5,
        "output_tokens": 6,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation": None,
    }
    assert anthropic_tokens(usage) == tokens(5, 6)


def test_anthropic_total_cache_write_without_split_is_5m():
    """cache_creation_input_tokens alone is the default 5-minute TTL."""
    usage = {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_input_tokens": 700,
        "cache_creation_input_tokens": 300,
    }
    assert anthropic_tokens(usage) == tokens(10, 2, read=700, w5=300)


def test_anthropic_split_cache_writes():
    """The cache_creation split fills the 5m and 1h fields."""
    usage = {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300},
    }
    assert anthropic_tokens(usage) == tokens(10, 2, w5=200, w1=300)


def test_anthropic_split_without_total():
    """The split alone is enough."""
    usage = {
        "input_tokens": 1,
        "output_tokens": 1,
        "cache_creation": {"ephemeral_1h_input_tokens": 40},
    }
    assert anthropic_tokens(usage) == tokens(1, 1, w1=40)


def test_anthropic_split_that_does_not_add_up_is_rejected():
    """5m + 1h must equal cache_creation_input_tokens when both are given."""
    usage = {
        "input_tokens": 1,
        "output_tokens": 1,
        "cache_creation_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30},
    }
    with pytest.raises(
        ContractError, match=r"^usage\.cache_creation: 5m \(20\) \+ 1h \(30\) .* \(100\)$"
    ):
        anthropic_tokens(usage)


def test_anthropic_sdk_style_objects():
    """Objects with attributes (nested too) work like dicts."""
    usage = SdkObject(
        input_tokens=9,
        output_tokens=8,
        cache_read_input_tokens=7,
        cache_creation_input_tokens=6,
        cache_creation=SimpleNamespace(ephemeral_5m_input_tokens=1, ephemeral_1h_input_tokens=5),
        service_tier="standard",
    )
    assert anthropic_tokens(usage) == tokens(9, 8, read=7, w5=1, w1=5)


# --- OpenAI-compatible (GLM) --------------------------------------------------------------


def test_openai_cached_tokens_are_taken_out_of_prompt_tokens():
    """prompt_tokens includes cached tokens: input = prompt - cached, cache_read = cached."""
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 250,
        "total_tokens": 1250,
        "prompt_tokens_details": {"cached_tokens": 600},
    }
    assert openai_tokens(usage) == tokens(400, 250, read=600)


def test_openai_without_details():
    """No prompt_tokens_details (or null) means nothing was cached."""
    assert openai_tokens({"prompt_tokens": 10, "completion_tokens": 3}) == tokens(10, 3)
    assert openai_tokens(
        {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": None}
    ) == tokens(10, 3)


def test_openai_sdk_style_objects():
    """CompletionUsage-like objects with a nested details object."""
    usage = SimpleNamespace(
        prompt_tokens=50,
        completion_tokens=5,
        total_tokens=55,
        prompt_tokens_details=SimpleNamespace(cached_tokens=20),
        completion_tokens_details=SimpleNamespace(reasoning_tokens=2),
    )
    assert openai_tokens(usage) == tokens(30, 5, read=20)


def test_openai_more_cached_than_prompt_is_rejected():
    """cached > prompt is inconsistent usage."""
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 11},
    }
    with pytest.raises(
        ContractError, match=r"cached_tokens \(11\) exceeds usage\.prompt_tokens \(10\)"
    ) as info:
        openai_tokens(usage)
    assert info.value.field == "usage.prompt_tokens_details.cached_tokens"


# --- shared rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapper", "usage", "reason"),
    [
        (
            openai_tokens,
            {"prompt_tokens": -1, "completion_tokens": 1},
            "usage.prompt_tokens: must be >= 0, got -1",
        ),
        (
            openai_tokens,
            {"prompt_tokens": 1, "completion_tokens": "2"},
            "usage.completion_tokens: must be an integer, got str",
        ),
        (
            openai_tokens,
            {"prompt_tokens": 1.0, "completion_tokens": 2},
            "usage.prompt_tokens: must be an integer, got float",
        ),
        (
            anthropic_tokens,
            {"input_tokens": True, "output_tokens": 2},
            "usage.input_tokens: must be an integer, got bool",
        ),
        (
            anthropic_tokens,
            {"input_tokens": 1, "output_tokens": -3},
            "usage.output_tokens: must be >= 0, got -3",
        ),
        (
            anthropic_tokens,
            {
                "input_tokens": 1,
                "output_tokens": 1,
                "cache_creation": {"ephemeral_5m_input_tokens": -1},
            },
            "usage.cache_creation.ephemeral_5m_input_tokens: must be >= 0, got -1",
        ),
        (
            anthropic_tokens,
            {"input_tokens": 200_000_000, "output_tokens": 1},
            "usage.input_tokens: must be <= 100000000",
        ),
        (anthropic_tokens, None, "usage: missing (None)"),
    ],
)
def test_bad_counts_are_rejected_with_the_field(mapper, usage, reason):
    """Negative, non-integer and out-of-contract counts are refused, naming the field."""
    with pytest.raises(ContractError) as info:
        mapper(usage)
    assert str(info.value).startswith(reason)


def test_usage_tokens_detects_the_shape():
    """usage_tokens picks the mapping by the fields present."""
    assert usage_tokens(
        {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2}}
    ) == tokens(3, 1, read=2)
    assert usage_tokens({"input_tokens": 5, "output_tokens": 1}) == tokens(5, 1)
    with pytest.raises(ContractError, match="^usage: neither Anthropic"):
        usage_tokens({"tokens": 5})


def test_mapped_tokens_make_a_valid_event():
    """The mapping splats straight into an llm_call."""
    import datetime as dt

    event = LlmCall(
        event_id="e",
        event_type="llm_call",
        schema_version=1,
        occurred_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        agent_id="a",
        task_id="t",
        role="r",
        provider="zai",
        model="glm-4.5",
        **openai_tokens({"prompt_tokens": 9, "completion_tokens": 1}),
    )
    assert (event.input_tokens, event.output_tokens) == (9, 1)
